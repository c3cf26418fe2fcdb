"""Lake maintenance, daily: erasure requests, retention, compaction and the historical report.

0. `erase_requests`: `jobs/batch/erase_subject.py --pending` carries out every queued erasure
   request (`impetus erase --queue`), recorded in `audit.erasure_requests`;
1. `enforce_retention`: `jobs/batch/enforce_retention.py` deletes the rows of every table older
   than its policy allows, VACUUMs them away and appends to `audit.retention_runs`
   (docs/governance.md); silver is brought up to date with bronze first;
2. `optimize`: `impetus lake optimize` compacts small files and Z-orders each table;
3. `historical_report`: `jobs/batch/historical_report.py` rewrites `gold.hotspots`, `gold.trends`
   and `gold.before_after` (each through its gate) and the HTML report.

Erasure and retention run first so that nothing erased or past retention is compacted, analysed or
reported. Requests are queued in a secret folder (impetus/erasure_queue.py), never passed in a DAG
run's configuration: the identifier would stay in Airflow's database; the task log shows request
ids and pseudonyms only. An urgent request: `python jobs/batch/erase_subject.py --subject -`.
"""

from datetime import timedelta

from airflow.sdk import DAG

from impetus.orchestration import DEFAULT_ARGS, START, job_task

with DAG(
    dag_id="lake_maintenance",
    description="queued erasure requests, retention (delete, vacuum, audit), compaction, historical report",
    schedule="30 2 * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lake", "governance", "daily"],
    doc_md=__doc__,
) as dag:
    erasure = job_task("erase_requests", "jobs/batch/erase_subject.py", "--pending", timeout=timedelta(hours=2))
    retention = job_task("enforce_retention", "jobs/batch/enforce_retention.py", timeout=timedelta(hours=2))
    optimize = job_task("optimize", "impetus/cli.py", "lake", "optimize", timeout=timedelta(hours=2))
    report = job_task("historical_report", "jobs/batch/historical_report.py", timeout=timedelta(hours=1))
    erasure >> retention >> optimize >> report
