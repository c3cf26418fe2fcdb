"""Long-running jobs on the real broker: rules changed while the job runs, and a job killed mid-stream and
resumed from its last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from impetus.rules import deletion_marker, make_rule, publish
from impetus.topics import end_offsets, read_messages

from .conftest import ROOT, run_script
from .test_cyber_threats_job import syslog


def start_job(script, *args, env=None, log=None):
    """The job as its users start it, in its own process group (so a kill takes the JVM with it)."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def kill(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for(condition, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def post(tenant, post_id, text, minute):
    document = {"tenant": tenant, "post_id": post_id, "platform": "forum", "author": "@someone", "text": text,
                "lang": "en", "event_time": f"2026-05-04T10:{minute:02d}:00Z"}
    return json.dumps(document).encode()


def test_rules_added_paused_and_deleted_while_the_text_job_runs(scratch, tmp_path):
    t, settings = scratch.tenant, scratch.settings
    # a watched asset that is always on: its alert on a sentinel post shows the job got that far
    publish(settings, [make_rule("watch-domain", t, "watched_asset", {"indicator_type": "domain",
                                                                      "value": "city.example"})], scratch.rules)
    log = open(tmp_path / "job.log", "w")
    job = start_job("jobs/streaming/text_intelligence.py", "--topic", f"social.posts={scratch.source}",
                    "--topic", f"cti.posts={scratch.source2}", "--tenants", t, "--group-id", f"test-{t}",
                    "--rules-topic", scratch.rules, "--delivery", "at-least-once", log=log)
    now_ms = int(time.time() * 1000)

    def send_and_sync(post_id, text, minute):
        """Send a post, then a sentinel; return the alerts once the sentinel's alert is out."""
        sentinel = post(t, f"{post_id}-sentinel", "Outage at portal.city.example again", minute)
        scratch.produce([post(t, post_id, text, minute), sentinel], timestamps=[now_ms + minute * 60_000] * 2)

        def sentinel_out():
            alerts = scratch.read(scratch.alerts, committed_only=False, job_running=True)
            return alerts if any(a["entity"]["id"].endswith(f"{post_id}-sentinel") for a in alerts) else None

        return wait_for(sentinel_out, what=f"the sentinel after {post_id}")

    def hits(alerts, post_id):
        return sorted(a["detector"]["name"] for a in alerts
                      if a["entity"]["id"] == f"social.posts:{post_id}" and a["category"] == "investigation_hit")

    try:
        alerts = send_and_sync("p1", "Huge crowd expected for the derby tonight near the stadium", 1)
        assert hits(alerts, "p1") == []

        publish(settings, [make_rule("derby", t, "investigation", {"match": "phrase", "terms": "derby tonight"})],
                scratch.rules)
        time.sleep(3)
        alerts = send_and_sync("p2", "Police everywhere for the derby tonight", 2)
        assert hits(alerts, "p2") == ["derby"]

        publish(settings, [make_rule("derby", t, "investigation", {"match": "phrase", "terms": "derby tonight"},
                                     enabled=False)], scratch.rules)
        time.sleep(3)
        alerts = send_and_sync("p3", "Tickets left for the derby tonight?", 3)
        assert hits(alerts, "p3") == []

        publish(settings, [make_rule("derby", t, "investigation", {"match": "keyword", "terms": "derby,stadium"})],
                scratch.rules)
        time.sleep(3)
        alerts = send_and_sync("p4", "Queues at the stadium gates", 4)
        assert hits(alerts, "p4") == ["derby"]

        publish(settings, [deletion_marker("derby", t, "investigation")], scratch.rules)
        time.sleep(3)
        alerts = send_and_sync("p5", "Stadium lights on for the derby", 5)
        assert hits(alerts, "p5") == []
        assert job.poll() is None, "the job must still be the same run"
    finally:
        kill(job)
        log.close()


def brute_force_burst(tenant, second, attacker):
    return [syslog(tenant, second + s, f"<38>May  4 10:{(second + s) // 60:02d}:{(second + s) % 60:02d} gw "
                                       f"sshd[412]: Failed password for root from {attacker} port {50000 + s} ssh2")
            for s in range(5)]


def killed_and_resumed(scratch, tmp_path, script, args, env, first, second, split, expected,
                       resumed_env=None) -> list[dict]:
    """``script`` run unbounded, exactly-once, on what ``scratch`` holds: killed once its first alert is committed
    (``first``: how many) and ``second[:split]`` has been sent while it runs (a kill before the checkpoint that
    would commit it), then ``second[split:]`` sent and the job resumed from its last checkpoint (with
    ``resumed_env`` added to ``env``) until ``expected`` alerts are committed. Returns the committed alerts (the
    killed run's open transaction never commits)."""
    log = open(tmp_path / "job.log", "w")
    job = start_job(script, *args, "--group-id", f"killed-{scratch.tenant}", env=env, log=log)
    try:
        wait_for(lambda: len(scratch.read(scratch.alerts, job_running=True)) >= first,
                 what=f"the first {first} alert(s), committed")
        scratch.produce([m for m, _ in second[:split]], timestamps=[ts for _, ts in second[:split]])
    finally:
        kill(job)
    scratch.produce([m for m, _ in second[split:]], timestamps=[ts for _, ts in second[split:]])
    job = start_job(script, *args, "--group-id", f"killed-{scratch.tenant}", "--resume", "latest",
                    env={**env, **(resumed_env or {})}, log=log)
    try:
        wait_for(lambda: len(scratch.read(scratch.alerts, job_running=True)) >= expected,
                 what=f"all {expected} alerts, committed")
        time.sleep(5)  # anything duplicated would be committed by now
    finally:
        kill(job)
        log.close()
    text = (tmp_path / "job.log").read_text()
    assert "resume_from" in text and "chk-" in text
    return scratch.read(scratch.alerts, job_running=True)


def test_killed_job_resumed_from_its_checkpoint_gives_the_alerts_of_an_uninterrupted_run(scratch, tmp_path):
    t = scratch.tenant
    first = [m for i in range(6) for m in brute_force_burst(t, i * 20, f"203.0.113.{i + 1}")]
    second = [m for i in range(6) for m in brute_force_burst(t, 200 + i * 20, f"198.51.100.{i + 1}")]
    scratch.produce([m for m, _ in first], timestamps=[ts for _, ts in first])
    topics = ["--topic", f"security.syslog={scratch.source}", "--topic", f"network.flows={scratch.source2}",
              "--tenants", t, "--rules-topic", scratch.rules]

    # the job killed mid-stream and resumed from its last checkpoint, exactly-once
    env = {"IMPETUS_CHECKPOINT_URI": (tmp_path / "checkpoints").as_uri(), "IMPETUS_MODELS_DIR": str(tmp_path)}
    resumed = killed_and_resumed(scratch, tmp_path, "jobs/streaming/cyber_threats.py", topics, env, 6, second, 15, 12)

    # the same input through an uninterrupted bounded run
    before = end_offsets(scratch.settings, scratch.alerts)
    run_script("jobs/streaming/cyber_threats.py", *topics, "--bounded", "--group-id", f"whole-{t}",
               env={"IMPETUS_MODELS_DIR": str(tmp_path)})
    whole = [json.loads(m.value) for m in read_messages(scratch.settings, scratch.alerts, before, settle_s=10)]

    assert len(whole) == 12
    assert Counter(a["alert_id"] for a in resumed) == Counter(a["alert_id"] for a in whole)
    assert sorted(a["entity"]["id"] for a in resumed) == sorted(
        [f"203.0.113.{i}" for i in range(1, 7)] + [f"198.51.100.{i}" for i in range(1, 7)])


def test_urban_job_killed_and_resumed_keeps_each_sensors_state_and_silence_timers(scratch, tmp_path):
    from .test_urban_anomalies_job import reading

    t = scratch.tenant
    # s4 reports once, s3 until 03:00; s1 and s2 every hour; one reading above the 3000 threshold in each part
    first = [reading(t, "s4", 100.0, 0)] + [reading(t, s, 3500.0 if (s, h) == ("s1", 1) else 100.0, h)
                                            for h in range(4) for s in ("s1", "s2", "s3")]
    second = [reading(t, s, 3600.0 if (s, h) == ("s2", 5) else 100.0, h) for h in range(4, 10) for s in ("s1", "s2")]
    scratch.produce([m for m, _ in first], timestamps=[ts for _, ts in first])
    topics = ["--topic", f"sensors.readings={scratch.source}", "--tenants", t, "--rules-topic", scratch.rules]
    # no baseline here: thresholds and silence only
    env = {"IMPETUS_CHECKPOINT_URI": (tmp_path / "checkpoints").as_uri(), "IMPETUS_MODELS_DIR": str(tmp_path),
           "IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'no-registry.db'}"}
    resumed = killed_and_resumed(scratch, tmp_path, "jobs/streaming/urban_anomalies.py", topics, env, 1, second, 5, 4)

    before = end_offsets(scratch.settings, scratch.alerts)
    run_script("jobs/streaming/urban_anomalies.py", *topics, "--bounded", "--group-id", f"whole-{t}",
               env={name: env[name] for name in ("IMPETUS_MODELS_DIR", "IMPETUS_MLFLOW_TRACKING_URI")})
    whole = [json.loads(m.value) for m in read_messages(scratch.settings, scratch.alerts, before, settle_s=10)]

    assert sorted((a["category"], a["entity"]["id"], a["event_time"]) for a in whole) == [
        ("silent_sensor", "s3", "2026-05-04T06:00:00.000Z"),
        ("silent_sensor", "s4", "2026-05-04T03:00:00.000Z"),
        ("threshold", "s1", "2026-05-04T01:00:00.000Z"),
        ("threshold", "s2", "2026-05-04T05:00:00.000Z"),
    ]
    assert Counter(a["alert_id"] for a in resumed) == Counter(a["alert_id"] for a in whole)


def test_urban_job_resumed_at_another_parallelism_keeps_each_sensors_silence_clock(scratch, tmp_path):
    from .test_urban_anomalies_job import reading

    t = scratch.tenant
    # s1 and s2 report every hour throughout, each once above the 3000 threshold; s3 stops after 01:00
    first = [reading(t, s, 3500.0 if (s, h) == ("s1", 1) else 100.0, h) for h in range(2) for s in ("s1", "s2", "s3")]
    second = [reading(t, s, 3600.0 if (s, h) == ("s2", 8) else 100.0, h) for h in range(2, 10) for s in ("s1", "s2")]
    scratch.produce([m for m, _ in first], timestamps=[ts for _, ts in first])
    topics = ["--topic", f"sensors.readings={scratch.source}", "--tenants", t, "--rules-topic", scratch.rules]
    env = {"IMPETUS_CHECKPOINT_URI": (tmp_path / "checkpoints").as_uri(), "IMPETUS_MODELS_DIR": str(tmp_path),
           "IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'no-registry.db'}", "IMPETUS_FLINK_PARALLELISM": "1"}
    # killed at parallelism 1 (one bucket of sensors in Python), resumed at 2 (16 buckets): the silence clocks are
    # kept by the JVM gate under each sensor's own key, which Flink hands to the subtask that now owns it
    resumed = killed_and_resumed(scratch, tmp_path, "jobs/streaming/urban_anomalies.py", topics, env, 1, second, 4,
                                 3, resumed_env={"IMPETUS_FLINK_PARALLELISM": "2"})
    found = sorted((a["category"], a["entity"]["id"], a["event_time"]) for a in resumed)
    assert ("threshold", "s1", "2026-05-04T01:00:00.000Z") in found
    assert ("threshold", "s2", "2026-05-04T08:00:00.000Z") in found
    # s1 and s2 never fell silent; s3, last heard at 01:00, is silent at 04:00 (its deadline pending at the kill)
    assert [a for a in found if a[0] == "silent_sensor"] == [("silent_sensor", "s3", "2026-05-04T04:00:00.000Z")]


def test_rules_changed_while_the_urban_job_runs_reach_its_gate(scratch, tmp_path):
    """The urban job stops usual readings in the JVM (io.impetus.flink.QuietGate) by a spec compiled from the
    rules: readings it stopped before a rule change must reach the Python watch after it, and back."""
    from impetus.detect.urban import save_baseline

    from .test_urban_anomalies_job import reading, tiny_baseline

    t, settings = scratch.tenant, scratch.settings
    save_baseline(tmp_path / "urban_baseline" / "baseline.json", tiny_baseline(t, ["s1", "s2", "s3", "s4"]))
    log = open(tmp_path / "job.log", "w")
    job = start_job("jobs/streaming/urban_anomalies.py", "--topic", f"sensors.readings={scratch.source}",
                    "--tenants", t, "--group-id", f"test-{t}", "--rules-topic", scratch.rules,
                    "--delivery", "at-least-once", env={"IMPETUS_MODELS_DIR": str(tmp_path)}, log=log)

    def send_and_sync(sensor, value, hour):
        """A reading, then a sentinel above the threshold; the alerts once the sentinel's alert is out."""
        sent = [reading(t, sensor, value, hour), reading(t, f"sentinel-{hour}", 5000.0, hour)]
        scratch.produce([m for m, _ in sent], timestamps=[ts for _, ts in sent])

        def sentinel_out():
            alerts = scratch.read(scratch.alerts, committed_only=False, job_running=True)
            return alerts if any(a["entity"]["id"] == f"sentinel-{hour}" for a in alerts) else None

        return wait_for(sentinel_out, what=f"the sentinel at hour {hour}")

    def raised(alerts, sensor):
        return sorted(a["category"] for a in alerts if a["entity"]["id"] == sensor)

    try:
        # usual for the baseline (median 100, MAD 10) and far below the 3000 threshold: stopped at the gate
        assert raised(send_and_sync("s1", 104.0, 1), "s1") == []
        publish(settings, [make_rule("low-limit", t, "sensor_threshold",
                                     {"kind": "pedestrian_count", "threshold": 100.0})], scratch.rules)
        time.sleep(3)
        assert raised(send_and_sync("s2", 104.0, 2), "s2") == ["threshold"]
        publish(settings, [make_rule("low-limit", t, "sensor_threshold",
                                     {"kind": "pedestrian_count", "threshold": 100.0}, enabled=False)], scratch.rules)
        time.sleep(3)
        assert raised(send_and_sync("s3", 104.0, 3), "s3") == []
        # a tighter anomaly rule: 125 is 2.5 MADs and 25 persons/h from usual
        publish(settings, [make_rule("tight", t, "urban_anomaly", {"k": 2.0, "min_abs": 10.0})], scratch.rules)
        time.sleep(3)
        assert raised(send_and_sync("s4", 125.0, 4), "s4") == ["urban_anomaly"]
        assert job.poll() is None, "the job must still be the same run"
    finally:
        kill(job)
        log.close()
