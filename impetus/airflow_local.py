"""Airflow on this machine: ``impetus airflow up | down | status``.

``up`` runs ``airflow standalone`` (database migration, API server and UI, scheduler, DAG
processor, triggerer) in the background on SQLite under ``var/airflow`` with the DAGs in
``dags/`` and the LocalExecutor, bound to 127.0.0.1, and waits until its health endpoint says
the scheduler is healthy. ``down`` stops what ``up`` started. State: ``var/airflow/standalone.json``
(pid, port), log ``var/airflow/standalone.out``. The UI login is ``admin``; its generated password
is in ``var/airflow/simple_auth_manager_passwords.json.generated``.

For production, point Airflow at PostgreSQL and a distributed executor instead (README,
"Airflow in production"); the DAGs do not change.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from impetus.config import Settings, airflow_environment
from impetus.stack import StackError, _alive, _check_port_free, _stop_pid, _tail

READY_TIMEOUT_S = 240
HOST = "127.0.0.1"


def _state_file(settings: Settings) -> Path:
    return settings.airflow_home / "standalone.json"


def _log_file(settings: Settings) -> Path:
    return settings.airflow_home / "standalone.out"


def environment(settings: Settings) -> dict[str, str]:
    """The environment Airflow runs in: the project's (``airflow_environment``), bound to localhost."""
    # standalone starts its components as `airflow ...` commands: this environment's first on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **airflow_environment(settings), "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(settings.airflow_port), "PATH": path}


def migrate(settings: Settings) -> None:
    """Create or upgrade Airflow's database and parse the DAGs into it (idempotent; ``up`` does both
    through ``standalone``)."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    for step in (["db", "migrate"], ["dags", "reserialize"]):
        result = subprocess.run([str(Path(sys.executable).parent / "airflow"), *step], cwd=settings.home,
                                env=environment(settings), capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"`airflow {' '.join(step)}` failed (exit {result.returncode}):\n"
                             f"{result.stderr[-3000:]}")


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/v2/monitor/health", timeout=3) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _healthy(report: dict | None) -> bool:
    return bool(report) and (report.get("scheduler") or {}).get("status") == "healthy" and \
        (report.get("metadatabase") or {}).get("status") == "healthy"


def running(settings: Settings) -> dict | None:
    """The state of the Airflow ``up`` started, if it still runs."""
    try:
        state = json.loads(_state_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if _alive(state["pid"]) else None


def up(settings: Settings, log=print, timeout_s: float = READY_TIMEOUT_S) -> dict:
    """Start Airflow standalone in the background (idempotent) and wait until it is healthy."""
    if settings.profile != "local":
        raise StackError(f"profile {settings.profile}: Airflow is the cluster's; impetus starts it only locally")
    state = running(settings)
    if state:
        log(f"Airflow already running (pid {state['pid']}) at http://{HOST}:{state['port']}")
        return state
    _check_port_free(HOST, settings.airflow_port, "IMPETUS_AIRFLOW_PORT")
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).parent / "airflow"
    if not airflow.is_file():
        raise StackError(f"no airflow command next to {sys.executable}: run `make setup` to install the environment")
    log(f"starting Airflow standalone on http://{HOST}:{settings.airflow_port} (SQLite in {settings.airflow_home}, "
        f"DAGs from {settings.home / 'dags'}); log: {_log_file(settings)}")
    with open(_log_file(settings), "ab") as out:
        process = subprocess.Popen([str(airflow), "standalone"], cwd=settings.home, env=environment(settings),
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    state = {"pid": process.pid, "port": settings.airflow_port, "started_at": time.time()}
    _state_file(settings).write_text(json.dumps(state))
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            _state_file(settings).unlink(missing_ok=True)
            raise StackError(f"Airflow exited with status {process.returncode} while starting; the end of "
                             f"{_log_file(settings)}:\n{_tail(_log_file(settings))}")
        if _healthy(_health(settings.airflow_port)):
            log(f"Airflow ready after {time.monotonic() - started:.0f} s: http://{HOST}:{settings.airflow_port} "
                f"(user admin, password in {settings.airflow_home / 'simple_auth_manager_passwords.json.generated'})")
            return state
        time.sleep(2)
    _stop_pid(process.pid)
    _state_file(settings).unlink(missing_ok=True)
    raise StackError(f"Airflow was not healthy within {timeout_s:.0f} s; the end of {_log_file(settings)}:\n"
                     f"{_tail(_log_file(settings))}")


def down(settings: Settings, log=print) -> bool:
    """Stop the Airflow ``up`` started; returns whether anything was stopped."""
    state = running(settings)
    if state is None:
        _state_file(settings).unlink(missing_ok=True)
        log("no Airflow started by impetus is running")
        return False
    log(f"stopping Airflow (pid {state['pid']})")
    _stop_pid(state["pid"])
    _state_file(settings).unlink(missing_ok=True)
    return True


def status(settings: Settings) -> dict:
    """Whether Airflow runs and is healthy, and the DAGs it has parsed (through its REST API)."""
    state = running(settings)
    health = _health(settings.airflow_port)
    return {"home": str(settings.airflow_home), "url": f"http://{HOST}:{settings.airflow_port}",
            "running": bool(state), "pid": state and state["pid"], "healthy": _healthy(health), "health": health,
            "log": str(_log_file(settings))}
