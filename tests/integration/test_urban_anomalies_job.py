"""The urban-anomaly Flink job on the real broker: known readings in, exact alerts, dead letters and counts out."""

import json
import uuid
from datetime import datetime, timedelta, timezone

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.urban import baseline_version, save_baseline

from .conftest import run_script

T0 = datetime(2026, 5, 4, 0, 0, tzinfo=timezone.utc)  # a Monday: hour of week 0 in UTC


def reading(tenant, sensor, value, hour, area="Piazza", kind="pedestrian_count"):
    moment = T0 + timedelta(hours=hour)
    doc = {"tenant": tenant, "sensor_id": sensor, "kind": kind, "value": value, "unit": "persons/h",
           "event_time": moment.isoformat().replace("+00:00", "Z"),
           "location": {"area": area, "lat": 45.4, "lon": 11.87}}
    return json.dumps(doc).encode(), int(moment.timestamp() * 1000)


def tiny_baseline(tenant, sensors):
    """Every hour of the week: median 100, MAD 10 for each sensor (written as a real baseline file)."""
    series = {tenant: {s: {"pedestrian_count": [[100.0, 10.0, 20]] * 168} for s in sensors}}
    baseline = {"name": "urban_baseline", "timezones": {tenant: "UTC"}, "series": series,
                "training_window": ["2026-01-01", "2026-05-01"], "created_from": "test"}
    baseline["version"] = baseline_version(baseline)
    return baseline


def test_known_readings_give_exact_alerts_dead_letters_and_counts(scratch, tmp_path):
    t = scratch.tenant
    save_baseline(tmp_path / "urban_baseline" / "baseline.json", tiny_baseline(t, ["s1", "s2", "s3", "s4"]))
    good = [
        reading(t, "s1", 100.0, 0),     # usual
        reading(t, "s4", 105.0, 0),     # s4 then falls silent
        reading(t, "s1", 3500.0, 1),    # above the 3000 threshold (medium) and far above usual
        reading(t, "s2", 98.0, 1),
        reading(t, "s2", 4600.0, 2),    # high threshold alert, and a second anomaly in the Piazza
        reading(t, "s3", 102.0, 2, area="Molo"),
        reading(t, "s3", 101.0, 3, area="Molo"),
        reading(t, "s1", 99.0, 4),
        reading(t, "s2", 97.0, 5),
        reading(t, "s3", 100.0, 6, area="Molo"),
    ]
    bad = [
        (b"not json at all", good[0][1]),
        (json.dumps({"tenant": t, "sensor_id": "s9"}).encode(), good[0][1]),
        (reading("ghost", "s1", 5000.0, 5)[0], good[8][1]),   # tenant without an alert topic
        (b"\x00\x01\x02", good[8][1]),
    ]
    order = [good[0], bad[0], good[1], good[2], good[3], bad[1], good[4], good[5], good[6], bad[2], good[7],
             good[8], bad[3], good[9]]
    scratch.produce([m for m, _ in order], timestamps=[ts for _, ts in order])

    run_id = f"test-{uuid.uuid4().hex[:8]}"
    run_script("jobs/streaming/urban_anomalies.py", "--bounded", "--topic", f"sensors.readings={scratch.source}",
               "--tenants", t, "--group-id", f"test-{t}", "--rules-topic", scratch.rules, "--run-id", run_id,
               env={"IMPETUS_MODELS_DIR": str(tmp_path)})

    alerts = scratch.read(scratch.alerts)
    found = sorted((a["category"], a["entity"]["id"], a["event_time"], a["severity"]) for a in alerts)
    assert found == [
        ("area_anomaly", "Piazza", "2026-05-04T02:00:00.000Z", "high"),
        ("silent_sensor", "s4", "2026-05-04T03:00:00.000Z", "low"),
        ("threshold", "s1", "2026-05-04T01:00:00.000Z", "medium"),
        ("threshold", "s2", "2026-05-04T02:00:00.000Z", "high"),
        ("urban_anomaly", "s1", "2026-05-04T01:00:00.000Z", "high"),
        ("urban_anomaly", "s2", "2026-05-04T02:00:00.000Z", "high"),
    ]
    by_key = {(a["category"], a["entity"]["id"]): a for a in alerts}
    assert by_key[("threshold", "s1")]["alert_id"] == str(uuid.uuid5(
        ALERT_NAMESPACE, "sensor_threshold|sensor|s1|2026-05-04T01:00:00.000Z"))
    anomaly = by_key[("urban_anomaly", "s1")]["evidence"]
    assert (anomaly["expected"], anomaly["mad"], anomaly["z"], anomaly["direction"]) == (100.0, 10.0, 340.0, "above")
    assert by_key[("area_anomaly", "Piazza")]["evidence"]["sensors"] == "s1,s2"
    assert by_key[("silent_sensor", "s4")]["evidence"]["last_event_time"] == "2026-05-04T00:00:00.000Z"
    assert all(a["tenant"] == t and a["class_uid"] == 2004 for a in alerts)

    letters = scratch.read(scratch.dlq)
    assert [(d["reason"], d["payload"]) for d in letters] == [
        ("not JSON: Expecting value at line 1 column 1", "not json at all"),
        ("does not match schema sensors.readings: data must contain ['event_time', 'kind', 'value'] "
         "properties", json.dumps({"tenant": t, "sensor_id": "s9"})),
        ("unknown tenant 'ghost' (no alert topic for it)", bad[2][0].decode()),
        ("not JSON: Expecting value at line 1 column 1", "\x00\x01\x02"),
    ]
    assert all(d["source_topic"] == scratch.source and d["job"] == "urban_anomalies" for d in letters)
    # nothing lost: the job's own count of this run, against what was sent and what the DLQ holds
    counts = scratch.accounting(run_id)
    assert counts == {"messages_in": 14, "processed": 10, "dead_lettered": 4, "late": 0, "reports": 1}


def test_alert_topic_option_keeps_a_trial_runs_alerts_off_the_tenants_topic(scratch):
    t = scratch.tenant
    sent = [reading(t, "s1", 100.0, 0), reading(t, "s1", 3500.0, 1)]
    scratch.produce([m for m, _ in sent], timestamps=[ts for _, ts in sent])
    trial = scratch.source2  # a private topic of this test
    run_script("jobs/streaming/urban_anomalies.py", "--bounded", "--topic", f"sensors.readings={scratch.source}",
               "--tenants", t, "--group-id", f"test-{t}", "--rules-topic", scratch.rules, "--alert-topic", trial)

    assert [(a["category"], a["entity"]["id"], a["tenant"]) for a in scratch.read(trial)] == [("threshold", "s1", t)]
    assert scratch.read(scratch.alerts) == []
