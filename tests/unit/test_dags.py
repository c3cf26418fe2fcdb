"""DAG integrity: every DAG in dags/ imports, has no cycle, tags, an owner, retries and a timeout
on every task, and every task runs a job script that exists. Parsed by Airflow's DagBag in a child
process with a private AIRFLOW_HOME, as the DAG processor parses them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARSE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder="dags")
dags = {}
for dag_id, dag in bag.dags.items():
    order = [t.task_id for t in dag.topological_sort()]
    tasks = {}
    for t in dag.tasks:
        timeout = t.execution_timeout.total_seconds() if t.execution_timeout else None
        tasks[t.task_id] = {"owner": t.owner, "retries": t.retries, "timeout": timeout,
                            "args": list(getattr(t, "op_args", []) or []),
                            "downstream": sorted(t.downstream_task_ids),
                            "inlets": [a.name for a in t.inlets], "outlets": [a.name for a in t.outlets]}
    dags[dag_id] = {"tags": sorted(dag.tags), "schedule": str(dag.schedule), "catchup": dag.catchup,
                    "max_active_runs": dag.max_active_runs, "max_active_tasks": dag.max_active_tasks,
                    "doc": bool(dag.doc_md), "order": order, "tasks": tasks}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    result = subprocess.run([sys.executable, "-c", PARSE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"lake_promotion", "lake_maintenance", "model_retraining", "stack_health"}


def test_every_dag_is_documented_tagged_and_runs_one_at_a_time_without_catch_up(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["doc"] and dag["tags"], dag_id
        assert dag["catchup"] is False and dag["max_active_runs"] == 1, dag_id


def test_every_task_has_an_owner_retries_and_a_timeout_and_runs_a_job_that_exists(parsed):
    for dag_id, dag in parsed["dags"].items():
        for task_id, task in dag["tasks"].items():
            assert task["owner"] == "data-engineering", (dag_id, task_id)
            assert task["retries"] == (1 if dag_id == "stack_health" else 2), (dag_id, task_id)
            assert task["timeout"] and task["timeout"] <= 2 * 3600, (dag_id, task_id)
            assert (ROOT / task["args"][0]).is_file(), (dag_id, task_id, task["args"])


def test_promotion_goes_bronze_silver_gold_and_maintenance_retains_before_it_compacts_and_reports(parsed):
    promotion, maintenance = parsed["dags"]["lake_promotion"], parsed["dags"]["lake_maintenance"]
    assert promotion["order"] == ["land_bronze", "build_silver", "build_gold"]
    assert promotion["tasks"]["land_bronze"]["downstream"] == ["build_silver"]
    assert promotion["tasks"]["build_silver"]["downstream"] == ["build_gold"]
    assert maintenance["order"] == ["erase_requests", "enforce_retention", "optimize", "historical_report"]
    assert maintenance["tasks"]["erase_requests"]["args"] == ["jobs/batch/erase_subject.py", "--pending"]
    assert maintenance["tasks"]["optimize"]["args"] == ["impetus/cli.py", "lake", "optimize"]


def test_retraining_is_weekly_one_model_at_a_time_and_reads_what_the_promotion_dag_writes(parsed):
    retraining, promotion = parsed["dags"]["model_retraining"], parsed["dags"]["lake_promotion"]
    assert retraining["max_active_tasks"] == 1 and "0 4 * * 0" in retraining["schedule"]
    tasks = retraining["tasks"]
    assert {t: (task["args"], task["downstream"]) for t, task in tasks.items()} == {
        "retrain_flow_anomaly": (["jobs/batch/retrain_model.py", "--model", "flow_anomaly"], []),
        "retrain_urban_baseline": (["jobs/batch/retrain_model.py", "--model", "urban_baseline"], []),
        "tune_alert_thresholds": (["jobs/batch/retrain_model.py", "--model", "alert_thresholds"], []),
    }
    read = {name for task in tasks.values() for name in task["inlets"]}
    written = {name for task in promotion["tasks"].values() for name in task["outlets"]}
    assert read == {"gold.flow_features", "silver.sensor_readings", "silver.alerts"} and read <= written


def test_health_checks_the_broker_before_the_jobs(parsed):
    health = parsed["dags"]["stack_health"]
    assert health["tasks"]["broker"]["downstream"] == ["consumer_lag", "flink_jobs"]
    assert health["tasks"]["consumer_lag"]["args"] == ["jobs/batch/check_health.py", "--check", "consumer_lag"]


def test_a_held_back_batch_fails_the_step_without_retry_and_other_failures_are_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from impetus.orchestration import StepFailed, run_step

    script = tmp_path / "step.py"
    script.write_text("import sys\nprint('done')\nsys.exit(int(sys.argv[1]))\n")
    assert run_step(str(script), "0", home=tmp_path).strip() == "done"
    with pytest.raises(AirflowFailException, match="a data-quality gate held a batch back"):
        run_step(str(script), "3", home=tmp_path)
    with pytest.raises(StepFailed, match="exited 1"):
        run_step(str(script), "1", home=tmp_path)
    with pytest.raises(AirflowSkipException, match="nothing to work on yet"):
        run_step(str(script), "4", home=tmp_path)
