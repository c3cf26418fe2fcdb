"""The main run, end to end on real data (``impetus demo``, ``make demo``).

Brings the stack up, replays a bounded slice of the Auckland pedestrian counts
(plus a few deliberately malformed messages, to show the dead-letter path) into
``sensors.readings``, runs the Flink threshold job and the Spark bronze landing
over it, and reports what came out: events in, alerts out (a few shown),
dead letters with their reasons, and the Delta table's rows and location.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from impetus.config import Settings
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
    start: str = "2019-03-01"
    end: str = "2019-03-08"
    limit: int | None = None


def run_job(settings: Settings, script: str, args: list[str], log_name: str, say=print) -> float:
    """Run a job script with this interpreter, logging to var/logs; returns seconds taken."""
    log_dir = settings.var_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{log_name}.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, str(settings.home / script), *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=settings.home)
    took = time.monotonic() - started
    if result.returncode != 0:
        tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-30:])
        raise JobFailed(f"{script} failed (exit {result.returncode}) after {took:.0f} s; log {log_path}:\n{tail}")
    say(f"    done in {took:.0f} s (log: {log_path})")
    return took


def run(settings: Settings, options: DemoOptions, say=print) -> dict:
    from impetus import stack

    say("1/4  starting the local stack")
    stack.up(settings, log=lambda m: say(f"    {m}"))

    tenant = sensor_replay.TENANT
    alerts_before = end_offsets(settings, alert_topic(tenant))
    dlq_before = end_offsets(settings, dlq_topic(TOPIC))
    started_ms = int(time.time() * 1000) - 1

    say(f"2/4  replaying Auckland pedestrian counts {options.start} .. {options.end} into {TOPIC}")
    producer = make_producer(settings)
    result = replay(settings, TOPIC, sensor_replay.readings(options.start, options.end),
                    key=lambda d: d["sensor_id"], limit=options.limit, producer=producer)
    for bad in MALFORMED:
        producer.send(TOPIC, value=bad)
    producer.flush()
    producer.close()
    sent = result.sent + len(MALFORMED)
    say(f"    sent {result.sent} readings ({result.first_event_time} .. {result.last_event_time}) "
        f"and {len(MALFORMED)} malformed messages, {result.rate:.0f} ev/s")

    say("3/4  Flink: sensor_thresholds (bounded run over what was just sent)")
    flink_s = run_job(settings, "jobs/streaming/sensor_thresholds.py",
                      ["--bounded", "--from-timestamp", str(started_ms), "--group-id", "impetus-demo"],
                      "demo-sensor_thresholds", say)
    alerts = [json.loads(m.value) for m in read_messages(settings, alert_topic(tenant), alerts_before)]
    dead = [json.loads(m.value) for m in read_messages(settings, dlq_topic(TOPIC), dlq_before)]

    say("4/4  Spark: landing sensors.readings in Delta bronze")
    landed_before = _read_landing_counts(settings)
    spark_s = run_job(settings, "jobs/batch/land_bronze.py", ["--topic", TOPIC], "demo-land_bronze", say)
    landing = _read_landing_counts(settings)
    landing["bronze_added"] = landing["bronze_rows"] - landed_before["bronze_rows"]
    landing["quarantine_added"] = landing["quarantine_rows"] - landed_before["quarantine_rows"]

    summary = {"events_in": sent, "readings": result.sent, "malformed": len(MALFORMED),
               "alerts": len(alerts), "dead_letters": len(dead),
               "flink_seconds": round(flink_s, 1), "spark_seconds": round(spark_s, 1), **landing,
               "alert_topic": alert_topic(tenant), "dlq_topic": dlq_topic(TOPIC)}
    _print_summary(summary, alerts, dead, settings, say)
    return summary


def _read_landing_counts(settings: Settings) -> dict:
    """Row counts read back with delta-rs, independently of Spark."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    bronze = settings.lake_path("bronze", "sensors_readings")
    quarantine = settings.lake_path("quarantine", "sensors_readings")
    counts = {}
    for name, uri in (("bronze", bronze), ("quarantine", quarantine)):
        try:
            rows = DeltaTable(uri).to_pyarrow_table(columns=["kafka_offset"]).num_rows
        except TableNotFoundError:
            rows = 0
        counts[f"{name}_rows"] = rows
        counts[f"{name}_table"] = uri
    return counts


def _print_summary(summary: dict, alerts: list[dict], dead: list[dict], settings: Settings, say) -> None:
    say("")
    say("== impetus demo: what happened ==")
    say(f"events in             {summary['events_in']:>8}  ({summary['readings']} real readings + "
        f"{summary['malformed']} malformed)")
    say(f"alerts out            {summary['alerts']:>8}  on {summary['alert_topic']}")
    for alert in sorted(alerts, key=lambda a: a["event_time"])[:5]:
        say(f"    [{alert['severity']:<6}] {alert['event_time']}  {alert['title']}")
    say(f"dead letters          {summary['dead_letters']:>8}  on {summary['dlq_topic']}")
    for letter in dead[:5]:
        say(f"    {letter['reason']}")
    say(f"bronze rows           {summary['bronze_added']:>8}  added, {summary['bronze_rows']} in all: "
        f"{summary['bronze_table']}")
    say(f"quarantined rows      {summary['quarantine_added']:>8}  added, {summary['quarantine_rows']} in all: "
        f"{summary['quarantine_table']}")
    # Flink and Spark validate independently; both must account for every message sent.
    flink_ok = summary["dead_letters"] == summary["malformed"]
    spark_ok = summary["bronze_added"] + summary["quarantine_added"] == summary["events_in"]
    say(f"reconciled            {'yes' if flink_ok and spark_ok else 'NO'}  (Flink: dead letters = malformed sent; "
        f"Spark: bronze + quarantine added = events in)")
    say("")
    say("Look further:")
    say(f"  kcat -b {settings.kafka_bootstrap} -t {summary['alert_topic']} -C -e -o -5")
    say(f"  python -c \"from deltalake import DeltaTable; print(DeltaTable('{summary['bronze_table']}')"
        ".to_pandas().tail())\"")
    say("  impetus stack status    |    impetus stack down")
