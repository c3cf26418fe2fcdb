"""The Flink job on the real broker: known readings in, exact alerts and dead letters out."""

import json
import uuid

from impetus.alerts import ALERT_NAMESPACE

from .conftest import run_script


def reading(tenant, sensor, value, hour):
    return json.dumps({"tenant": tenant, "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
                       "unit": "persons/h", "event_time": f"2024-01-01T{hour:02d}:00:00+01:00",
                       "location": {"area": "Piazza", "lat": 45.4, "lon": 11.87}}).encode()


def test_known_input_gives_exact_alerts_and_dead_letters(scratch):
    t = scratch.tenant
    good = [
        reading(t, "s1", 10.0, 1),     # below
        reading(t, "s1", 3500.0, 2),   # medium
        reading(t, "s2", 3000.0, 2),   # equal: no alert
        reading(t, "s2", 4600.0, 3),   # high (>= 1.5 x 3000)
        reading(t, "s3", 2999.5, 4),   # below
    ]
    bad = [
        b"not json at all",
        json.dumps({"tenant": t, "sensor_id": "s9"}).encode(),
        reading("ghost", "s1", 5000.0, 5),  # tenant without an alert topic
        b"\x00\x01\x02",
    ]
    scratch.produce([good[0], bad[0], good[1], good[2], bad[1], good[3], bad[2], good[4], bad[3]])

    run_script("jobs/streaming/sensor_thresholds.py", "--bounded", "--source-topic", scratch.source,
               "--tenants", t, "--group-id", f"test-{t}")

    alerts = scratch.read(scratch.alerts)
    assert sorted((a["entity"]["id"], a["event_time"], a["severity"], a["evidence"]["value"]) for a in alerts) == [
        ("s1", "2024-01-01T01:00:00.000Z", "medium", 3500.0),
        ("s2", "2024-01-01T02:00:00.000Z", "high", 4600.0),
    ]
    by_sensor = {a["entity"]["id"]: a for a in alerts}
    assert by_sensor["s1"]["alert_id"] == str(uuid.uuid5(
        ALERT_NAMESPACE, "sensor_threshold|sensor|s1|2024-01-01T01:00:00.000Z"))
    assert all(a["tenant"] == t and a["category"] == "threshold" and a["class_uid"] == 2004 for a in alerts)

    letters = scratch.read(scratch.dlq)
    assert [(d["reason"], d["payload"]) for d in letters] == [
        ("not JSON: Expecting value at line 1 column 1", "not json at all"),
        ("does not match schema sensors.readings: data must contain ['event_time', 'kind', 'value'] "
         "properties", json.dumps({"tenant": t, "sensor_id": "s9"})),
        ("unknown tenant 'ghost' (no alert topic for it)", bad[2].decode()),
        ("not JSON: Expecting value at line 1 column 1", "\x00\x01\x02"),
    ]
    assert all(d["source_topic"] == scratch.source and d["job"] == "sensor_thresholds" for d in letters)
    # nothing lost: every message is a valid reading or a dead letter
    assert len(good) + len(letters) == len(good) + len(bad)


def test_rerun_gives_the_same_alert_ids(scratch):
    t = scratch.tenant
    scratch.produce([reading(t, "s1", 3200.0, 6), reading(t, "s2", 3300.0, 7)])
    args = ["--bounded", "--source-topic", scratch.source, "--tenants", t]
    run_script("jobs/streaming/sensor_thresholds.py", *args, "--group-id", f"a-{t}")
    run_script("jobs/streaming/sensor_thresholds.py", *args, "--group-id", f"b-{t}")
    ids = [a["alert_id"] for a in scratch.read(scratch.alerts)]
    assert len(ids) == 4
    assert sorted(ids[:2]) == sorted(ids[2:])
