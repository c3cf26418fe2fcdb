"""Lake promotion, hourly: Kafka → bronze (anonymised) → silver → gold, behind the gates.

1. `land_bronze`: `jobs/batch/land_bronze.py` lands what arrived on every topic since the last run
   (personal fields pseudonymised or redacted, invalid messages to `quarantine.landing`);
2. `build_silver`: `jobs/batch/build_silver.py` MERGEs the new bronze rows, each micro-batch
   through its data-quality gate;
3. `build_gold`: `jobs/batch/build_gold.py` recomputes the gold tables, each through its gate.

A gate that holds a batch back (exit status 3) fails its task at once, without retries, and the
steps after it do not run: the batch is in `quarantine.gates`, an alert is on `alerts.operations`,
and the task log names the failed expectations and the Data Docs page (docs/gates.md).
Other failures are retried twice, five minutes apart. One run at a time; no catch-up: each run
brings the lake up to date, whatever it missed.
"""

from datetime import timedelta

from airflow.sdk import DAG

from impetus.orchestration import DEFAULT_ARGS, START, job_task, lake_asset

with DAG(
    dag_id="lake_promotion",
    description="Kafka -> bronze -> silver -> gold behind the data-quality gates",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lake", "gates", "hourly"],
    doc_md=__doc__,
) as dag:
    land = job_task("land_bronze", "jobs/batch/land_bronze.py", timeout=timedelta(minutes=45))
    # the tables other DAGs read (model_retraining) are declared as this DAG's outputs
    silver = job_task("build_silver", "jobs/batch/build_silver.py", timeout=timedelta(minutes=45),
                      outlets=[lake_asset("silver.sensor_readings"), lake_asset("silver.alerts")])
    gold = job_task("build_gold", "jobs/batch/build_gold.py", timeout=timedelta(minutes=30),
                    outlets=[lake_asset("gold.flow_features")])
    land >> silver >> gold
