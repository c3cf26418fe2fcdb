"""The weekly retraining DAG run by Airflow (`airflow dags test`) against the real local stack: the
flow model is retrained from the lake, registered and promoted in MLflow; the models whose tables
do not exist yet are skipped, not failed."""

import json
import os

import pyarrow as pa
from deltalake import write_deltalake

from impetus.config import airflow_environment, load_settings
from impetus.registry import versions

from .test_lake_dag import airflow
from .test_model_lifecycle import flow_feature_rows


def test_the_retraining_dag_promotes_the_flow_model_and_skips_what_has_no_data(broker, tmp_path):
    env = {"IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "IMPETUS_MLFLOW_ARTIFACT_URI": (tmp_path / "artifacts").as_uri(),
           "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(), "IMPETUS_AIRFLOW_HOME": str(tmp_path / "airflow")}
    settings = load_settings(env={**os.environ, **env})
    write_deltalake(settings.lake_path("gold", "flow_features"), pa.Table.from_pylist(flow_feature_rows()))
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
