"""Model retraining and promotion, weekly (Sunday 04:00 UTC): each model from the lake, into MLflow.

1. `retrain_flow_anomaly`: `jobs/batch/retrain_model.py --model flow_anomaly` trains an
   IsolationForest on `gold.flow_features`;
2. `retrain_urban_baseline`: `--model urban_baseline`, medians and MADs from `silver.sensor_readings`;
3. `tune_alert_thresholds`: `--model alert_thresholds`, thresholds from operators' decisions in
   `silver.alerts`.

Each reads its table at its current Delta version, holds out the newest window, scores the
candidate and the current `@champion` on it, logs one MLflow run (parameters, table version,
metrics of both, the decision and why) and registers the version. When the candidate wins by the
margin declared in `models/lifecycle.yaml`, `@champion` moves and `models.control` tells the
streaming jobs to load it without a restart; tuned thresholds are published as rules. A candidate
that does not win is not an error: the task succeeds and the version stays a candidate, tagged
`rejected`, with the comparison in MLflow. A model with nothing to train on yet is skipped.

The three are independent (one failing does not stop the others) and run one at a time: they share
two cores with the streaming jobs. The tables they read are declared as inlets, the lake
promotion DAG's tasks write them as outlets, so Airflow's asset graph shows where each model's
data comes from. Retraining stays on a weekly clock rather than on those assets: gold is rewritten
every hour, and a model retrained hourly would mostly be judged on the same held-out week.
"""

from datetime import timedelta

from airflow.sdk import DAG

from impetus.orchestration import DEFAULT_ARGS, START, job_task, lake_asset

with DAG(
    dag_id="model_retraining",
    description="retrain from the lake, compare with @champion on held-out data, promote by the declared margin",
    schedule="0 4 * * 0",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=DEFAULT_ARGS,
    tags=["models", "mlflow", "weekly"],
    doc_md=__doc__,
) as dag:
    for model, table in (("flow_anomaly", "gold.flow_features"), ("urban_baseline", "silver.sensor_readings"),
                         ("alert_thresholds", "silver.alerts")):
        verb = "tune" if model == "alert_thresholds" else "retrain"
        job_task(f"{verb}_{model}", "jobs/batch/retrain_model.py", "--model", model, timeout=timedelta(hours=1),
                 inlets=[lake_asset(table)])
