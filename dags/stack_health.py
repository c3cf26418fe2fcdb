"""Stack health, every 10 minutes: the broker, the streaming jobs and their consumer lag.

1. `broker`: the broker answers and every declared topic exists;
2. `flink_jobs`: on a cluster, Flink's REST API lists every job of `jobs/streaming/` as RUNNING
   (locally each job is its own embedded mini-cluster: reported, not failed);
3. `consumer_lag`: no streaming job is more than 100,000 messages behind on its inputs (per
   consumer group `impetus-<job>`, committed at each checkpoint).

Each task runs `jobs/batch/check_health.py --check <name>`, which exits 1 when its check fails: the
task fails (after one quick retry) and Airflow's failure notifications apply. `impetus health`
runs the same checks by hand.
"""

from datetime import timedelta

from airflow.sdk import DAG

from impetus.orchestration import DEFAULT_ARGS, START, job_task

with DAG(
    dag_id="stack_health",
    description="broker, streaming jobs (Flink REST on a cluster) and consumer lag",
    schedule="*/10 * * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["streaming", "health"],
    doc_md=__doc__,
) as dag:
    broker = job_task("broker", "jobs/batch/check_health.py", "--check", "broker", timeout=timedelta(minutes=2))
    flink = job_task("flink_jobs", "jobs/batch/check_health.py", "--check", "flink", timeout=timedelta(minutes=2))
    lag = job_task("consumer_lag", "jobs/batch/check_health.py", "--check", "consumer_lag",
                   timeout=timedelta(minutes=5))
    broker >> [flink, lag]
