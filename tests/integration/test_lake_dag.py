"""The lake promotion DAG run by Airflow (`airflow dags test`) against the real local stack: a
bronze batch with planted raw personal data fails `build_silver` at its gate, without retry, and
`build_gold` does not run; nothing of the batch reaches silver or gold.

The DAG's `land_bronze` step is marked done rather than run: it lands the declared topics, which
other tests and the demo share on this broker; the test lands its own topic first, the same job
(landing has its own tests)."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from impetus.config import airflow_environment, load_settings

from .conftest import ROOT
from .test_gated_promotion import RAW_IP, GatedLake


def airflow(env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(os.sys.executable).parent / "airflow"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def planted(broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("dag")
    lake = GatedLake(broker, root)
    lake.produce(lake.flow(0, 50000), lake.flow(1, 50001))
    lake.land()
    lake.plant("bronze.network_flows", src_ip=RAW_IP, src_port=40000, kafka_offset=999)
    settings = load_settings(env={**os.environ, **lake.env, "IMPETUS_AIRFLOW_HOME": str(root / "airflow")})
    env = {**os.environ, **lake.env, **airflow_environment(settings)}
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield lake, env
    lake.drop()


def test_a_held_back_batch_fails_the_promotion_dag_at_the_gate_and_stops_it(planted):
    lake, env = planted

    run = airflow(env, "dags", "test", "lake_promotion", "2026-05-02", "--mark-success-pattern", "^land_bronze$")

    runs = json.loads(airflow(env, "dags", "list-runs", "lake_promotion", "-o", "json").stdout.strip().splitlines()[-1])
    assert [r["state"] for r in runs] == ["failed"], run.stdout[-5000:]
    states = airflow(env, "tasks", "states-for-dag-run", "lake_promotion", runs[0]["run_id"], "-o", "json")
    by_task = {t["task_id"]: t["state"] for t in json.loads(states.stdout.strip().splitlines()[-1])}
    assert by_task == {"land_bronze": "success", "build_silver": "failed", "build_gold": "upstream_failed"}
    log = run.stdout + run.stderr
    assert "a data-quality gate held a batch back" in log and "not retried" in log
    assert "[raw_ipv4] 1 value of pseudonymised column src_ip holding a raw IPv4 address" in log
    assert RAW_IP not in log

    # the first silver batch held all three bronze rows: none reached silver, gold was never built,
    # the batch is in quarantine
    lake_dir = Path(lake.lake_uri.removeprefix("file://"))
    assert not (lake_dir / "silver" / "network_flows").exists()
    assert not (lake_dir / "gold" / "flow_features").exists()
    held = [r for r in lake.rows("quarantine.gates") if r["target_table"] == "silver.network_flows"]
    assert sorted(json.loads(r["row_redacted"])["src_port"] for r in held) == [40000, 50000, 50001]


def test_impetus_airflow_up_runs_airflow_with_the_project_dags_and_down_stops_it(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "IMPETUS_AIRFLOW_HOME": str(tmp_path / "airflow"), "IMPETUS_AIRFLOW_PORT": str(port)}

    def impetus(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([os.sys.executable, str(ROOT / "impetus" / "cli.py"), "airflow", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=400)

    started = impetus("up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr[-3000:]
        assert "Airflow ready after" in started.stdout and f"http://127.0.0.1:{port}" in started.stdout
        status = json.loads(impetus("status", "--json").stdout)
        assert status["healthy"] and status["health"]["scheduler"]["status"] == "healthy"
        # the running DAG processor parses dags/ into Airflow's database
        expected = ["lake_maintenance", "lake_promotion", "model_retraining", "stack_health"]
        deadline, listed = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            out = impetus("run", "dags", "list", "-o", "json").stdout.strip().splitlines()
            listed = sorted(d["dag_id"] for d in json.loads(out[-1])) if out and out[-1].startswith("[") else []
            if listed == expected:
                break
            time.sleep(3)
        assert listed == expected
    finally:
        stopped = impetus("down")
    assert stopped.returncode == 0 and "stopping Airflow" in stopped.stdout
    assert impetus("status").returncode == 1
