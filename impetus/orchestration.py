"""What the Airflow DAGs in dags/ share: every batch step is one of the project's job scripts.

A DAG stays thin: :func:`job_task` makes a task that runs ``jobs/batch/<script>.py`` with this
interpreter and the project's settings (the ``IMPETUS_*`` environment of the worker), the same
command a data engineer runs by hand, so what a DAG schedules is what the tests exercise.

Exit statuses decide what Airflow does:

* 0: the step succeeded;
* 3: a data-quality gate held a batch back (:class:`impetus.promotion.GatesFailed`). The task
  fails **without retrying**: the batch is quarantined and the stream has moved past it, so a
  retry would succeed and hide the failure. Downstream tasks do not run (``upstream_failed``);
* 4: nothing to work on yet (e.g. a retraining whose table is still empty): the task is skipped;
* anything else: a transient or code failure; the task is retried (``retries`` in
  :data:`DEFAULT_ARGS`) and then fails.
"""

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from impetus.config import DEFAULT_HOME

GATE_HELD_BACK = 3
NOTHING_TO_DO = 4
# the owner, retries and timeouts every DAG's tasks get (a task may shorten its timeout)
DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(hours=1),
}
# DAGs start from here and never catch up on missed intervals (each run brings everything up to date)
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class StepFailed(RuntimeError):
    """A job exited with an error; the message carries the end of its output."""


def run_step(script: str, *args: str, home=DEFAULT_HOME, env: dict | None = None) -> str:
    """Run ``script`` (relative to the project) with ``args``; return its stdout.

    Raises :class:`StepFailed` when it fails, or Airflow's ``AirflowFailException`` (no retry)
    when it exits with :data:`GATE_HELD_BACK`.
    """
    command = [sys.executable, str(home / script), *args]
    print("running: " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=home, capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    sys.stderr.write(result.stderr[-20_000:])
    print(result.stdout[-20_000:], flush=True)
    if result.returncode == GATE_HELD_BACK:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{script}: a data-quality gate held a batch back (quarantined and alerted); "
                                   f"not retried, downstream steps do not run:\n{_tail(result.stderr)}")
    if result.returncode == NOTHING_TO_DO:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{script}: nothing to work on yet:\n{_tail(result.stderr, 5)}")
    if result.returncode != 0:
        raise StepFailed(f"{script} exited {result.returncode}:\n{_tail(result.stderr)}")
    return result.stdout


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def job_task(task_id: str, script: str, *args: str, timeout: timedelta | None = None, doc: str | None = None,
             **options):
    """An Airflow task (PythonOperator) that runs one job script through :func:`run_step`; ``options``
    go to the operator (e.g. ``inlets``/``outlets`` assets, ``retries``)."""
    from airflow.providers.standard.operators.python import PythonOperator

    if timeout:
        options["execution_timeout"] = timeout
    # the job's output is in the task log; no XCom (nothing downstream reads it)
    return PythonOperator(task_id=task_id, python_callable=run_step, op_args=[script, *args], do_xcom_push=False,
                          doc_md=doc or f"Runs `python {' '.join([script, *args])}`.", **options)


def lake_asset(qualified: str):
    """The Airflow Asset of a lake table (``gold.flow_features``): its Delta location under the configured lake."""
    from airflow.sdk import Asset

    from impetus.config import load_settings
    from impetus.lake import table_path

    return Asset(name=qualified, uri=table_path(load_settings(), qualified), group="lake")
