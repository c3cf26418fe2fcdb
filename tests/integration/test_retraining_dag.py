"""The weekly retraining DAG run by Airflow (`airflow dags test`) against the real local stack: the
flow model is retrained from the lake, registered and promoted in MLflow; the models whose tables
do not exist yet are skipped, not failed."""

import json
import os

from impetus.config import airflow_environment, load_settings
from impetus.registry import versions

from .test_lake_dag import airflow
from .test_model_lifecycle import control_messages, registry  # noqa: F401 (fixture)


def test_the_retraining_dag_promotes_the_flow_model_and_skips_what_has_no_data(registry, tmp_path):  # noqa: F811
    env, settings, control = registry
    # the promotion is announced on this test's own topic, not on the models.control the local jobs read
    env = {**env, "IMPETUS_AIRFLOW_HOME": str(tmp_path / "airflow"), "IMPETUS_CONTROL_TOPIC": control}
    settings = load_settings(env={**os.environ, **env})
    env = {**os.environ, **env, **airflow_environment(settings)}
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    run = airflow(env, "dags", "test", "model_retraining", "2026-05-03")

    runs = json.loads(airflow(env, "dags", "list-runs", "model_retraining", "-o", "json").stdout.strip()
                      .splitlines()[-1])
    assert [r["state"] for r in runs] == ["success"], run.stdout[-5000:] + run.stderr[-5000:]
    states = airflow(env, "tasks", "states-for-dag-run", "model_retraining", runs[0]["run_id"], "-o", "json")
    by_task = {t["task_id"]: t["state"] for t in json.loads(states.stdout.strip().splitlines()[-1])}
    assert by_task == {"retrain_flow_anomaly": "success", "retrain_urban_baseline": "skipped",
                       "tune_alert_thresholds": "skipped"}
    log = run.stdout + run.stderr
    assert "silver.sensor_readings does not exist" in log
    [version] = versions(settings, "flow_anomaly")
    assert version["aliases"] == ["champion"] and version["decision"] == "promoted"
    assert version["reason"].startswith("no champion yet; balanced_accuracy")
    assert version["metrics"]["balanced_accuracy"] >= 0.75
    [announced] = control_messages(settings, control)
    assert {k: v for k, v in announced.items() if k != "event_time"} == {
        "model": "flow_anomaly", "version": "1", "action": "load", "uri": "models:/flow_anomaly/1"}
