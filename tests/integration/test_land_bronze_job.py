"""The Spark landing on the real broker: Delta bronze rows read back identically with delta-rs."""

import json

import pyarrow as pa
from deltalake import DeltaTable

from .conftest import run_script


def test_landing_writes_bronze_and_quarantine_exactly_once(scratch, tmp_path):
    t = scratch.tenant
    docs = [
        {"tenant": t, "sensor_id": "s1", "kind": "pedestrian_count", "value": 12.0, "unit": "persons/h",
         "event_time": "2024-01-01T23:00:00+13:00", "location": {"area": "Queen Street", "lat": -36.85, "lon": 174.76}},
        {"tenant": t, "sensor_id": "s2", "kind": "pm2_5", "value": 7.5, "event_time": "2024-01-02T10:30:00Z"},
    ]
    scratch.produce([json.dumps(docs[0]).encode(), b"{broken", json.dumps(docs[1]).encode(),
                     json.dumps({**docs[1], "value": None}).encode()])
    env = {"IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (tmp_path / "chk").as_uri()}
    args = ["--topic", "sensors.readings", "--source-topic", scratch.source, "--table", "sensors_readings"]

    first = run_script("jobs/batch/land_bronze.py", *args, env=env)
    summary = json.loads(first.stdout[first.stdout.index("{"):])
    assert (summary["bronze_rows"], summary["quarantine_rows"]) == (2, 2)

    # read without Spark
    bronze = DeltaTable((tmp_path / "lake" / "bronze" / "sensors_readings").as_uri())
    rows = pa.table(bronze.to_pyarrow_table()).sort_by("kafka_offset").to_pylist()
    assert [(r["sensor_id"], r["kind"], r["value"], r["unit"], r["kafka_offset"]) for r in rows] == [
        ("s1", "pedestrian_count", 12.0, "persons/h", 0),
        ("s2", "pm2_5", 7.5, None, 2),
    ]
    assert [r["event_time"].isoformat() for r in rows] == ["2024-01-01T10:00:00+00:00", "2024-01-02T10:30:00+00:00"]
    assert [str(r["event_date"]) for r in rows] == ["2024-01-01", "2024-01-02"]
    assert rows[0]["location"] == {"area": "Queen Street", "lat": -36.85, "lon": 174.76}
    assert rows[1]["location"] is None
    assert bronze.metadata().partition_columns == ["event_date"]

    quarantine = DeltaTable((tmp_path / "lake" / "quarantine" / "sensors_readings").as_uri())
    rejected = pa.table(quarantine.to_pyarrow_table()).sort_by("kafka_offset").to_pylist()
    assert [(r["kafka_offset"], r["reason"], r["payload_bytes"]) for r in rejected] == [
        (1, "not JSON: Expecting property name enclosed in double quotes at line 1 column 2", 7),
        (3, "does not match schema sensors.readings: data.value must be number",
         len(json.dumps({**docs[1], "value": None}))),
    ]

    # a second run finds nothing new: no duplicates
    second = run_script("jobs/batch/land_bronze.py", *args, env=env)
    summary = json.loads(second.stdout[second.stdout.index("{"):])
    assert (summary["bronze_rows"], summary["quarantine_rows"]) == (2, 2)
