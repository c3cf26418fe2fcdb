"""Health of the streaming side: the broker, the Flink jobs and the jobs' consumer lag.

``impetus health`` and the ``stack_health`` DAG (``jobs/batch/check_health.py``) run these checks;
each returns a report with ``ok`` and a line saying what to do when it is not.

- :func:`broker_health`: the broker answers and every declared topic exists;
- :func:`flink_health`: on a cluster (``IMPETUS_FLINK_JOBMANAGER=host:port``), Flink's REST API
  (``/jobs/overview``) lists every streaming job of ``jobs/streaming/`` as RUNNING. Locally each job
  runs its own embedded mini-cluster inside its process, with no shared REST endpoint: the check
  says so and passes;
- :func:`consumer_lag`: per streaming job, the messages on its input topics not yet committed by
  its consumer group (``impetus-<job>``; Flink commits at each checkpoint). A group that never
  committed is reported as not started; lag above ``max_lag`` fails.
"""

from __future__ import annotations

import json
from urllib.error import URLError
from urllib.request import urlopen

from impetus.config import Settings

DEFAULT_MAX_LAG = 100_000


def streaming_inputs(settings: Settings) -> dict[str, list[str]]:
    """{job name: its input topics}, from the ``JOB_NAME`` and ``INPUTS`` of each jobs/streaming/ script."""
    import runpy

    found = {}
    for path in sorted((settings.home / "jobs" / "streaming").glob("*.py")):
        module = runpy.run_path(str(path), run_name="impetus_health")
        found[module["JOB_NAME"]] = [spec.topic for spec in module["INPUTS"]]
    return found


def broker_health(settings: Settings) -> dict:
    from impetus.stack import _listening
    from impetus.topics import admin_client, declared_topics

    if not _listening(settings.kafka_bootstrap):
        return {"check": "broker", "ok": False,
                "detail": f"no broker at {settings.kafka_bootstrap}: start it (impetus stack up) or fix "
                          f"IMPETUS_KAFKA_BOOTSTRAP"}
    admin = admin_client(settings)
    try:
        present = set(admin.list_topics())
    finally:
        admin.close()
    missing = sorted(spec.name for spec in declared_topics(settings) if spec.name not in present)
    if missing:
        return {"check": "broker", "ok": False, "missing_topics": missing,
                "detail": f"declared topics missing: {', '.join(missing)} (impetus topics apply)"}
    return {"check": "broker", "ok": True, "detail": f"{settings.kafka_bootstrap} answers; all declared topics exist"}


def flink_health(settings: Settings, fetch=None) -> dict:
    """``fetch(url) -> dict`` reads the REST API (urllib by default; tests pass a recorded answer)."""
    if settings.flink_jobmanager == "local":
        return {"check": "flink", "ok": True, "checked": False,
                "detail": "local profile: each streaming job runs an embedded mini-cluster in its own process "
                          "(no shared REST API); consumer lag shows whether they keep up"}
    host, _, port = settings.flink_jobmanager.partition(":")
    url = f"http://{host}:{port or '8081'}/jobs/overview"
    try:
        overview = (fetch or _get_json)(url)
    except (URLError, OSError, ValueError) as err:
        return {"check": "flink", "ok": False, "checked": True,
                "detail": f"Flink REST API at {url} not reachable ({err}): is the JobManager up?"}
    states = {}
    for job in overview.get("jobs", []):
        # the newest job of a name wins (a restarted job leaves its FAILED/CANCELED predecessor listed)
        if job["name"] not in states or job.get("start-time", 0) > states[job["name"]][1]:
            states[job["name"]] = (job["state"], job.get("start-time", 0))
    wanted = sorted(streaming_inputs(settings))
    down = {name: states.get(name, ("NOT SUBMITTED", 0))[0] for name in wanted
            if states.get(name, ("",))[0] != "RUNNING"}
    if down:
        return {"check": "flink", "ok": False, "checked": True, "jobs": {n: s for n, (s, _) in states.items()},
                "detail": "not running: " + ", ".join(f"{n} ({s})" for n, s in sorted(down.items()))
                          + " — restart with `python jobs/streaming/<job>.py --resume latest` or flink run"}
    return {"check": "flink", "ok": True, "checked": True, "jobs": {n: s for n, (s, _) in states.items()},
            "detail": f"{len(wanted)} streaming jobs RUNNING at {url}"}


def _get_json(url: str) -> dict:
    with urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def consumer_lag(settings: Settings, max_lag: int = DEFAULT_MAX_LAG, jobs: dict[str, list[str]] | None = None) -> dict:
    """Lag of each streaming job's consumer group on its inputs (end offset - committed offset)."""
    from kafka import KafkaConsumer, TopicPartition

    from impetus.topics import admin_client

    jobs = jobs or streaming_inputs(settings)
    admin = admin_client(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    report, problems = {}, []
    try:
        for job, topics in jobs.items():
            group = f"impetus-{job}"
            committed = admin.list_group_offsets({group: None}).get(group, {})
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = consumer.end_offsets(partitions) if partitions else {}
            if not any(tp.topic in topics for tp in committed):
                report[job] = {"group": group, "started": False, "lag": None}
                continue
            lag = {t: 0 for t in topics}
            for tp in partitions:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                lag[tp.topic] += max(0, ends[tp] - done)
            total = sum(lag.values())
            report[job] = {"group": group, "started": True, "lag": total, "per_topic": lag}
            if total > max_lag:
                problems.append(f"{job} is {total} messages behind (more than {max_lag})")
    finally:
        consumer.close()
        admin.close()
    idle = [job for job, entry in report.items() if not entry["started"]]
    detail = "; ".join(problems) if problems else "every started job within " + f"{max_lag} messages"
    if idle:
        detail += f"; never committed (not started, or no checkpoint yet): {', '.join(idle)}"
    return {"check": "consumer_lag", "ok": not problems, "jobs": report, "max_lag": max_lag, "detail": detail}


CHECKS = {"broker": broker_health, "flink": flink_health, "consumer_lag": consumer_lag}


def run_checks(settings: Settings, names: list[str] | None = None, max_lag: int = DEFAULT_MAX_LAG) -> list[dict]:
    results = []
    for name in names or list(CHECKS):
        if name == "consumer_lag":
            results.append(consumer_lag(settings, max_lag))
        else:
            results.append(CHECKS[name](settings))
        if name == "broker" and not results[-1]["ok"]:
            break  # nothing else can be asked without a broker
    return results
