"""Landing killed mid-stream resumes from its checkpoint: no row lost, none duplicated; silver then
merges corrections and late rows incrementally."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from .conftest import LAKE_KEY, ROOT, run_script

N = 6_000
BATCH = 500


def reading(tenant: str, i: int, value: float | None = None) -> dict:
    when = datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(hours=i // 20)
    return {"tenant": tenant, "sensor_id": f"s{i % 20}", "kind": "pedestrian_count",
            "value": float(i if value is None else value), "event_time": when.isoformat()}


def bronze_rows(lake_root) -> list[dict]:
    path = lake_root / "lake" / "bronze" / "sensors_readings"
    try:
        table = DeltaTable(str(path))
    except TableNotFoundError:  # not created yet, or its first commit is being written
        return []
    return table.to_pyarrow_table(columns=["kafka_offset", "sensor_id", "value"]).to_pylist()


def test_landing_killed_mid_stream_resumes_exactly_once(scratch, tmp_path):
    scratch.produce([json.dumps(reading(scratch.tenant, i)).encode() for i in range(N)])
    env = {**os.environ, "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(),
           "IMPETUS_CHECKPOINT_URI": (tmp_path / "chk").as_uri(), "IMPETUS_PSEUDONYM_KEY": LAKE_KEY}
    args = ["--table", "sensors_readings", "--source-topic", scratch.source, "--max-per-batch", str(BATCH)]

    job = subprocess.Popen([sys.executable, str(ROOT / "jobs/batch/land_bronze.py"), *args, "--continuous",
                            "--interval", "0 seconds"], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(bronze_rows(tmp_path)) < 3 * BATCH:
            assert job.poll() is None, "the landing job ended before it was killed"
            assert time.monotonic() < deadline, "no batches landed within 5 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the Python driver and its Spark JVM, mid-batch
        job.wait()
    at_kill = len(bronze_rows(tmp_path))
    assert 3 * BATCH <= at_kill < N

    # the resumed run replays the batch in flight as it was planned, then takes the rest in one batch
    resumed = run_script("jobs/batch/land_bronze.py", *args[:-1], str(N), env=env)
    summary = json.loads(resumed.stdout[resumed.stdout.index("["):])[0]
    rows = bronze_rows(tmp_path)
    offsets = sorted(r["kafka_offset"] for r in rows)
    assert offsets == list(range(N)), f"{len(offsets)} rows, {len(set(offsets))} distinct offsets of {N}"
    # the resumed run read what was not committed before the kill (a batch in flight is read again)
    assert summary["messages_in"] == summary["landed"]
    assert N - at_kill <= summary["messages_in"] <= N - at_kill + BATCH
    assert summary["bronze_rows"] == N

    # silver: every reading once; then corrections of 3 readings and 2 late ones, merged incrementally
    first = json.loads(run_script("jobs/batch/build_silver.py", "--table", "sensor_readings", env=env).stdout)
    assert [(s["rows_in"], s["rows"]) for s in first] == [(N, N)]
    corrections = [reading(scratch.tenant, i, value=-1.0) for i in (5, 6, 7)]
    late = [{**reading(scratch.tenant, 0), "sensor_id": "late-a", "event_time": "2025-12-31T23:00:00+00:00"},
            {**reading(scratch.tenant, 0), "sensor_id": "late-b", "event_time": "2026-01-15T08:00:00+00:00"}]
    scratch.produce([json.dumps(d).encode() for d in corrections + late])
    run_script("jobs/batch/land_bronze.py", *args, env=env)
    second = json.loads(run_script("jobs/batch/build_silver.py", "--table", "sensor_readings", env=env).stdout)
    assert [(s["rows_in"], s["rows"]) for s in second] == [(5, N + 2)]
    silver = DeltaTable(str(tmp_path / "lake" / "silver" / "sensor_readings")).to_pyarrow_table().to_pylist()
    values = {(r["sensor_id"], r["event_time"].isoformat()): r["value"] for r in silver}
    assert [values[("s5", "2026-03-01T00:00:00+00:00")], values[("s6", "2026-03-01T00:00:00+00:00")],
            values[("s7", "2026-03-01T00:00:00+00:00")]] == [-1.0, -1.0, -1.0]
    assert values[("s8", "2026-03-01T00:00:00+00:00")] == 8.0
    months = {(r["sensor_id"], str(r["event_month"])) for r in silver if r["sensor_id"].startswith("late")}
    assert months == {("late-a", "2025-12-01"), ("late-b", "2026-01-01")}
