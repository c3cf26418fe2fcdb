"""MLflow and Airflow run embedded on SQLite stores under var/, from the one locked environment."""

import os
import subprocess
import sys
from pathlib import Path

from impetus.config import airflow_environment, load_settings


def test_mlflow_tracks_a_run_in_the_configured_sqlite_store(tmp_path):
    import mlflow

    settings = load_settings(env={"IMPETUS_VAR_DIR": str(tmp_path)})
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    (tmp_path / "mlflow").mkdir()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        experiment = mlflow.create_experiment("foundation-check", artifact_location=(tmp_path / "art").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_param("threshold", 3000)
            mlflow.log_metric("alerts", 15)
        found = mlflow.search_runs(experiment_ids=[experiment], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert [(r.info.run_id, r.data.params, r.data.metrics) for r in found] == [
        (run.info.run_id, {"threshold": "3000"}, {"alerts": 15.0})]
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()


def test_airflow_migrates_its_sqlite_store_under_var(tmp_path):
    settings = load_settings(env={"IMPETUS_VAR_DIR": str(tmp_path)})
    env = {**os.environ, **airflow_environment(settings)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "airflow" / "airflow.db").is_file()
    version = subprocess.run([airflow, "version"], env=env, capture_output=True, text=True, timeout=120)
    assert version.stdout.strip().startswith("3.3.")
