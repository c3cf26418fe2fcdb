"""The main run, end to end on real data (``impetus demo``, ``make demo``).

Brings the stack up, builds the urban baseline from 2019 history if it is missing,
replays a week of the Auckland pedestrian counts (by default the week New Zealand
went into its COVID-19 lockdown in March 2020, shifted to the present) plus a few
deliberately malformed messages into ``sensors.readings``, runs the Flink
urban-anomaly job over it; replays two hours of labelled synthetic syslog, flows,
posts and CTI items and runs the cyber and text jobs over them; sends frames of the real
``vtest.avi`` clip through the video job (people counted, faces blurred, a crowd alert for a zone
given a small capacity, with anonymised evidence); then builds the lake:
the first time, two years of Auckland history (2019-2020) go to ``sensors.history``;
every topic is landed in Delta bronze (anonymised), silver and gold are built, and the
historical report (hot spots, trends, before/after the 2020 lockdown) is written; finally the
flow model and the urban baseline are retrained from the lake into MLflow and promoted only if
they beat the current champion by the declared margin. Every
batch passes its data-quality gate before silver or gold takes it; the run fails if one does
not. The data inventory (record of processing) is written next to the report. It
reports what came out: events in, alerts out by category (a few shown, with their
countermeasures), precision and recall against the synthetic ground truth, dead letters
with their reasons, the job's own accounting, the lake's tables and the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from impetus.config import Settings
from impetus.models import build_model
from impetus.replay import sensors as sensor_replay
from impetus.replay.producer import make_producer, replay
from impetus.topics import alert_topic, dlq_topic, end_offsets, read_messages

TOPIC = "sensors.readings"
# Malformed messages the demo sends on purpose: each must come back on the DLQ with its reason.
MALFORMED = [
    b"this is not JSON",
    json.dumps({"tenant": "auckland", "sensor_id": "akl-demo", "kind": "pedestrian_count",
                "value": "many", "event_time": "2019-03-01T00:00:00+13:00"}).encode(),
    json.dumps({"tenant": "nowhere", "sensor_id": "akl-demo", "kind": "pedestrian_count",
                "value": 1.0, "event_time": "2019-03-01T00:00:00+13:00"}).encode(),
]


class JobFailed(RuntimeError):
    pass


@dataclass
class DemoOptions:
    start: str = "2020-03-19"
    end: str = "2020-03-26"
    limit: int | None = None
    # history landed once for the lake's analyses (local dates, end exclusive)
    history_start: str = "2019-01-01"
    history_end: str = "2021-01-01"


def run_job(settings: Settings, script: str, args: list[str], log_name: str, say=print,
            capture: dict | None = None) -> float:
    """Run a job script with this interpreter, logging to var/logs; returns seconds taken.

    With ``capture``, the job's stdout (its JSON result) is kept in ``capture["stdout"]``
    and only its stderr goes to the log.
    """
    log_dir = settings.var_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{log_name}.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, str(settings.home / script), *args],
                                stdout=subprocess.PIPE if capture is not None else log,
                                stderr=log if capture is not None else subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=settings.home,
                                text=capture is not None)
    if capture is not None:
        capture["stdout"] = result.stdout
    took = time.monotonic() - started
    if result.returncode != 0:
        tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-30:])
        raise JobFailed(f"{script} failed (exit {result.returncode}) after {took:.0f} s; log {log_path}:\n{tail}")
    say(f"    done in {took:.0f} s (log: {log_path})")
    return took


def run(settings: Settings, options: DemoOptions, say=print) -> dict:
    from impetus import stack

    say("1/7  starting the local stack")
    stack.up(settings, log=lambda m: say(f"    {m}"))
    baseline = settings.model_path("urban_baseline") / "baseline.json"
    if not baseline.is_file():
        say("    building the urban baseline from 2019 history (impetus models build urban-baseline)")
        build_model(settings, "urban-baseline", [])
    if not (settings.model_path("flow_anomaly") / "model.onnx").is_file():
        say("    training the flow-anomaly model (impetus models build flow-anomaly)")
        build_model(settings, "flow-anomaly", [])

    tenant = sensor_replay.TENANT
    alerts_before = end_offsets(settings, alert_topic(tenant))
    dlq_before = end_offsets(settings, dlq_topic(TOPIC))
    readings_before = end_offsets(settings, TOPIC)
    run_id = f"demo-{int(time.time())}"

    weeks = sensor_replay.weeks_to_present(options.end)
    say(f"2/7  replaying Auckland pedestrian counts {options.start} .. {options.end} into {TOPIC}, "
        f"shifted {weeks} weeks to the present")
    producer = make_producer(settings)
    result = replay(settings, TOPIC, sensor_replay.readings(options.start, options.end, shift_weeks=weeks),
                    key=lambda d: d["sensor_id"], limit=options.limit, producer=producer)
    for bad in MALFORMED:
        producer.send(TOPIC, value=bad)
    producer.flush()
    producer.close()
    sent = result.sent + len(MALFORMED)
    say(f"    sent {result.sent} readings ({result.first_event_time} .. {result.last_event_time}) "
        f"and {len(MALFORMED)} malformed messages, {result.rate:.0f} ev/s")

    say("3/7  Flink: urban_anomalies (bounded run over what was just sent)")
    offsets = ",".join(f"{p}:{o}" for p, o in sorted(readings_before.items()))
    flink_s = run_job(settings, "jobs/streaming/urban_anomalies.py",
                      ["--bounded", "--start-offsets", f"{TOPIC}={offsets}", "--group-id", "impetus-demo",
                       "--run-id", run_id], "demo-urban_anomalies", say)
    alerts = [json.loads(m.value) for m in read_messages(settings, alert_topic(tenant), alerts_before, settle_s=10)]
    dead = [json.loads(m.value) for m in read_messages(settings, dlq_topic(TOPIC), dlq_before, settle_s=10)]
    counts = [json.loads(m.value) for m in read_messages(settings, "jobs.accounting", settle_s=10)]
    counts = next((c for c in reversed(counts) if c["run_id"] == run_id and c["final"]), None)

    synthetic = run_synthetic(settings, say)
    video = run_video(settings, say)

    lake = run_lake(settings, options, say)
    models = run_retraining(settings, say)
    sensors_in = _landed_since(settings, TOPIC, readings_before)
    summary = {"events_in": sent, "readings": result.sent, "malformed": len(MALFORMED),
               "alerts": len(alerts), "dead_letters": len(dead), "accounting": counts,
               "alerts_by_category": dict(Counter(a["category"] for a in alerts).most_common()),
               "flink_seconds": round(flink_s, 1), "lake": lake, "sensors_landing": sensors_in,
               "alert_topic": alert_topic(tenant), "dlq_topic": dlq_topic(TOPIC), "synthetic": synthetic,
               "models": models, "video": video}
    _print_summary(summary, alerts, dead, settings, say)
    return summary


def run_lake(settings: Settings, options: DemoOptions, say=print) -> dict:
    """Step 6: history backfill (once), landing of every topic, silver, gold and the historical report."""
    marker = settings.var_dir / "replay" / f"history-{options.history_start}-{options.history_end}.sent"
    history = 0
    if not marker.is_file():
        say(f"6/7  lake: sending Auckland history {options.history_start} .. {options.history_end} to sensors.history "
            "(first run only)")
        sent = replay(settings, "sensors.history",
                      sensor_replay.readings(options.history_start, options.history_end),
                      key=lambda d: d["sensor_id"], stamp="now")
        history = sent.sent
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"sent": history}))
    else:
        say("6/7  lake (history already sent by an earlier run)")
    say("    Spark: land every topic in bronze (anonymised), then silver, then gold (impetus lake build)")
    outcome: dict = {}
    took = run_job(settings, "impetus/cli.py", ["lake", "build", "--json"], "demo-lake_build", say,
                   capture=outcome)
    lake = json.loads(outcome["stdout"])
    say("    historical report (jobs/batch/historical_report.py)")
    report: dict = {}
    took += run_job(settings, "jobs/batch/historical_report.py", [], "demo-historical_report", say, capture=report)
    lake["report"] = _last_json(report["stdout"])
    lake["inventory"] = write_inventory(settings)
    lake["history_sent"] = history
    lake["seconds"] = round(took, 1)
    return lake


def run_video(settings: Settings, say=print, frames_sent: int = 60, capacity: int = 0) -> dict:
    """Step 5: the real clip through the video job: people counted, a crowd alert, anonymised evidence."""
    from impetus.replay import video as video_replay
    from impetus.rules import make_rule, publish

    tenant, zone = "padova", "piazza-nord"
    say(f"5/7  video: {frames_sent} frames of vtest.avi (opencv-doc) at 5 fps into video.frames; zone {zone} "
        f"closed for the demo: capacity {capacity} (impetus rules add --kind zone_capacity)")
    publish(settings, [make_rule("demo-capacity-piazza-nord", tenant, "zone_capacity",
                                 {"zone": zone, "capacity": capacity, "window_seconds": 10, "min_frames": 3})])
    before = end_offsets(settings, "video.frames")
    alerts_before = end_offsets(settings, alert_topic(tenant))
    detections_before = end_offsets(settings, "video.detections")
    sent = replay(settings, "video.frames", video_replay.frames(tenant=tenant, zone=zone, fps=5, limit=frames_sent),
                  key=lambda d: d["camera_id"], progress=False)
    offsets = ",".join(f"{p}:{o}" for p, o in sorted(before.items()))
    say("    Flink: video_analytics (decode, people and faces, anonymise, crowd density)")
    seconds = run_job(settings, "jobs/streaming/video_analytics.py",
                      ["--bounded", "--start-offsets", f"video.frames={offsets}", "--group-id", "impetus-demo"],
                      "demo-video_analytics", say)
    alerts = [json.loads(m.value) for m in read_messages(settings, alert_topic(tenant), alerts_before, settle_s=10)]
    crowd = [a for a in alerts if a["category"] == "crowd_density"]
    detections = [json.loads(m.value) for m in read_messages(settings, "video.detections", detections_before,
                                                             settle_s=5)]
    return {"frames": sent.sent, "detections": len(detections),
            "people": sum(d["people"] for d in detections), "faces": sum(d["faces"] for d in detections),
            "crowd_alerts": crowd, "seconds": round(seconds, 1), "fps": round(sent.sent / seconds, 2)}


def run_retraining(settings: Settings, say=print) -> list[dict]:
    """Step 7: retrain the flow model and the urban baseline from the lake into MLflow; promoted only if better."""
    say("7/7  models: retrain flow_anomaly and urban_baseline from the lake, compare with @champion on the "
        "held-out window, promote only by the margin in models/lifecycle.yaml (jobs/batch/retrain_model.py)")
    results = []
    for model in ("flow_anomaly", "urban_baseline"):
        outcome: dict = {}
        run_job(settings, "jobs/batch/retrain_model.py", ["--model", model], f"demo-retrain-{model}", say,
                capture=outcome)
        results.append(json.loads(outcome["stdout"]))
    return results


def write_inventory(settings: Settings) -> str:
    """The record of processing (every topic and table, field, treatment, purpose, retention) as HTML."""
    from impetus.governance import inventory_html

    path = settings.var_dir / "reports" / "inventory.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(inventory_html(settings), encoding="utf-8")
    return path.as_uri()


def _landed_since(settings: Settings, topic: str, since: dict[int, int]) -> dict:
    """Rows of ``topic`` from offsets ``since`` on, in bronze and in quarantine (read with delta-rs)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    counts = {}
    for name, table in (("landed", settings.lake_path("bronze", "sensors_readings")),
                        ("quarantined", settings.lake_path("quarantine", "landing"))):
        rows = DeltaTable(table).to_pyarrow_table(columns=["kafka_topic", "kafka_partition", "kafka_offset"])
        rows = rows.filter(pc.equal(rows["kafka_topic"], topic))
        counts[name] = sum(1 for p, o in zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist())
                           if o >= since.get(p, 0))
    return counts


def _last_json(text: str):
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {}


def run_synthetic(settings: Settings, say=print) -> dict:
    """Step 4: the cyber and text jobs over labelled synthetic data, scored against its ground truth."""
    from datetime import datetime, timedelta, timezone

    from impetus.alerts import utc_iso
    from impetus.evaluation import score_episodes
    from impetus.replay import synthetic
    from impetus.replay import text as text_replay
    from impetus.rules import publish

    start = utc_iso(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2))
    tenants = ["oslo", "padova"]
    inputs = ["security.syslog", "network.flows", "social.posts", "cti.posts"]
    before = {t: end_offsets(settings, t) for t in inputs}
    alerts_before = {t: end_offsets(settings, alert_topic(t)) for t in tenants}
    say("4/7  SYNTHETIC, labelled: 2 h of syslog, flows, posts and CTI for oslo and padova "
        "(impetus replay cyber | text)")
    cyber_feeds, episodes = synthetic.cyber_feeds(7, start, 2.0)
    text_feeds, post_truth = synthetic.text_feeds(5, start, 2.0)
    publish(settings, text_replay.example_rules())
    sent = synthetic.send(settings, cyber_feeds + text_feeds)
    say("    sent " + ", ".join(f"{r.sent} to {r.topic}" for r in sent))
    seconds = {}
    for job, topics in (("cyber_threats", inputs[:2]), ("text_intelligence", inputs[2:])):
        args = ["--bounded", "--group-id", "impetus-demo"]
        for topic in topics:
            offsets = ",".join(f"{p}:{o}" for p, o in sorted(before[topic].items()))
            args += ["--start-offsets", f"{topic}={offsets}"]
        say(f"    Flink: {job}")
        seconds[job] = run_job(settings, f"jobs/streaming/{job}.py", args, f"demo-{job}", say)
    alerts = [json.loads(m.value) for t in tenants
              for m in read_messages(settings, alert_topic(t), alerts_before[t], settle_s=10)]
    cyber = [a for a in alerts if a["category"] in ("brute_force", "port_scan", "flow_anomaly")]
    posts = [a for a in alerts if a["category"] in ("investigation_hit", "indicator_match", "threat_language")]
    quality = score_episodes(episodes, cyber)
    quality["text"] = text_replay.evaluate(post_truth, posts)
    return {"alerts": len(alerts), "alerts_by_category": dict(Counter(a["category"] for a in alerts).most_common()),
            "quality": quality, "examples": _examples(alerts), "seconds": seconds}


def _examples(alerts: list[dict]) -> list[str]:
    shown = {}
    for alert in sorted(alerts, key=lambda a: a["event_time"]):
        shown.setdefault(alert["category"], alert)
    return [f"[{a['severity']:<8}] {a['title']}  -> {a.get('countermeasure', '')[:70]}..." for a in shown.values()]


def _print_summary(summary: dict, alerts: list[dict], dead: list[dict], settings: Settings, say) -> None:
    say("")
    say("== impetus demo: what happened ==")
    say(f"events in             {summary['events_in']:>8}  ({summary['readings']} real readings + "
        f"{summary['malformed']} malformed)")
    say(f"alerts out            {summary['alerts']:>8}  on {summary['alert_topic']}: " + ", ".join(
        f"{n} {category}" for category, n in summary["alerts_by_category"].items()))
    shown = {}
    for alert in sorted(alerts, key=lambda a: a["event_time"]):
        shown.setdefault(alert["category"], []).append(alert)
    for category, some in shown.items():
        for alert in some[:2]:
            say(f"    [{alert['severity']:<6}] {alert['event_time']}  {alert['title']}")
    synthetic = summary["synthetic"]
    say(f"cyber + text alerts   {synthetic['alerts']:>8}  on alerts.oslo, alerts.padova (synthetic data): " + ", ".join(
        f"{n} {category}" for category, n in synthetic["alerts_by_category"].items()))
    for line in synthetic["examples"]:
        say(f"    {line}")
    for category, figures in synthetic["quality"].items():
        say(f"    {category:<14} precision {figures['precision']}, recall {figures['recall']} "
            "against the injected ground truth")
    say(f"dead letters          {summary['dead_letters']:>8}  on {summary['dlq_topic']}")
    for letter in dead[:5]:
        say(f"    {letter['reason']}")
    lake = summary["lake"]
    say(f"lake: landed          {sum(r['landed'] for r in lake['landing']):>8}  rows in bronze this run, "
        f"{sum(r['quarantined'] for r in lake['landing'])} quarantined with a reason "
        f"({lake['history_sent']} history readings sent this run)")
    for row in lake["landing"]:
        say(f"    {row['table']:<26} +{row['landed']:<8} {row['bronze_rows']:>9} rows  "
            f"({row['quarantined']} quarantined)")
    for row in lake["silver"]:
        if row.get("rows") is not None:
            say(f"    {row['table']:<26} <- {row['from']:<24} {row['rows']:>9} rows")
    for row in lake["gold"]:
        if row.get("rows") is not None:
            say(f"    {row['table']:<26} {row['rows']:>22} rows")
    gates = lake.get("gates") or {}
    say(f"gates                 {gates.get('passed', 0):>8}  of {gates.get('checked', 0)} batches passed their "
        f"data-quality gate before silver or gold took them (audit.gate_runs); Data Docs {gates.get('data_docs')}")
    report = lake.get("report") or {}
    if report.get("report"):
        say(f"historical report     {report['report']}")
    say(f"data inventory        {lake.get('inventory')}")
    video = summary.get("video") or {}
    if video:
        say(f"video                 {video['frames']:>8}  frames -> {video['detections']} detections "
            f"({video['people']} people, {video['faces']} faces found, blurred), "
            f"{len(video['crowd_alerts'])} crowd_density alerts, {video['fps']} frames/s through the job")
        for alert in video["crowd_alerts"][:2]:
            say(f"    [{alert['severity']:<6}] {alert['title']}")
            say(f"    anonymised evidence {alert['evidence'].get('evidence_uri')}")
    for model in summary.get("models") or []:
        verdict = "promoted to @champion" if model["promoted"] else "not promoted"
        say(f"model {model['model']:<15} version {model['version']} {verdict} (MLflow run {model['run_id'][:8]}): "
            f"{model['reason']}")
    counts = summary["accounting"] or {}
    say(f"Flink accounting       {counts.get('messages_in', '?'):>7}  in = {counts.get('processed', '?')} processed + "
        f"{counts.get('dead_lettered', '?')} dead-lettered ({counts.get('late', '?')} late) on jobs.accounting")
    # Flink and Spark validate independently; both must account for every message sent.
    flink_ok = (summary["dead_letters"] == summary["malformed"] and counts.get("messages_in") == summary["events_in"]
                and counts.get("dead_lettered") == summary["malformed"])
    sensors = summary["sensors_landing"]
    spark_ok = (sensors["landed"] + sensors["quarantined"] == summary["events_in"]
                and all(r["landed"] + r["quarantined"] == r["messages_in"] for r in lake["landing"]))
    say(f"reconciled            {'yes' if flink_ok and spark_ok else 'NO'}  (Flink: messages counted = events in, "
        f"dead letters = malformed sent; Spark: this run's {summary['events_in']} readings = "
        f"{sensors['landed']} in bronze + {sensors['quarantined']} quarantined, and per table landed + quarantined "
        f"= read)")
    say("")
    say("Look further:")
    say(f"  kcat -b {settings.kafka_bootstrap} -t {summary['alert_topic']} -C -e -o -5")
    say("  impetus lake tables   |   impetus sql \"SELECT area, sum(value_sum) FROM gold.area_hourly GROUP BY area\"")
    say("  impetus models list   |   .venv/bin/mlflow ui --backend-store-uri "
        f"{settings.mlflow_tracking_uri}")
    say("  impetus stack status    |    impetus stack down")
