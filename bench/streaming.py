"""Benchmark of the streaming detection jobs (jobs/streaming/), side by side in one run.

For each job (urban_anomalies, cyber_threats, text_intelligence) on the same private input topics:

- throughput of the Flink job (bounded run, ``--delivery at-least-once``; jobs that run in PyFlink's
  ``thread`` mode also once in ``process`` mode, ``IMPETUS_FLINK_PYTHON_MODE=process``), of a Flink Kafka->Kafka
  pass-through job with no Python operator (the engine's own limit here) and of the simple
  alternative, a kafka-python loop that validates, runs the same logic object and produces alerts;
  throughput = (N_big - N_small) / (T_big - T_small), T = wall time of the bounded run's process,
  so start-up (JVM, mini-cluster, Python workers) cancels out;
- peak memory: the sum of VmHWM over the run's process group (driver, JVM, Python workers),
  sampled every 0.5 s, max over the samples;
- for each job, the rate an unbounded run sustains (fed at rising rates, in steps of 1/8 of its
  bounded rate, until the alerts fall behind), then its event-to-alert latency (p50/p99) at half
  that rate and at a light load, with ``--delivery at-least-once`` and ``exactly-once`` (what is sent
  and which alert is timed: ``PROBES``).

Figures are ratios within one run on one machine; they are reported, never asserted. Every run starts the job
scripts of this checkout afresh: do not edit it while a benchmark runs. Runs never go side by side: a run starts
by deleting the ``bench.`` topics earlier runs left when they were stopped. It needs the broker (``impetus stack
up``).
Results go to bench/results/<timestamp>.json (and a PNG chart next to it); BENCHMARKS.md
holds the command and the table of a run.

    .venv/bin/python bench/streaming.py                 # full run (about 35 minutes on 2 cores)
    .venv/bin/python bench/streaming.py --quick         # smaller inputs, shorter latency phases
    .venv/bin/python bench/streaming.py --jobs urban    # one job
    .venv/bin/python bench/streaming.py --jobs text --latency-from 2300   # latency phases only
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()

# job name -> script, inputs (declared topic, schema, parse function name or None), tenants accepted
JOBS = {
    "urban": {"script": "jobs/streaming/urban_anomalies.py", "job": "urban_anomalies",
              "inputs": [("sensors.readings", "sensors.readings", None)], "tenants": ["auckland"],
              "out_of_orderness_ms": 600_000},
    "cyber": {"script": "jobs/streaming/cyber_threats.py", "job": "cyber_threats",
              "inputs": [("security.syslog", "security.syslog", "syslog_event"),
                         ("network.flows", "network.flows", None)],
              "tenants": ["oslo", "padova"], "out_of_orderness_ms": 5000},
    "text": {"script": "jobs/streaming/text_intelligence.py", "job": "text_intelligence",
             "inputs": [("social.posts", "social.posts", None), ("cti.posts", "cti.posts", None)],
             "tenants": ["oslo", "padova"], "out_of_orderness_ms": 5000},
}
# urban: the Auckland counts replayed from URBAN_FROM on, judged by a baseline trained on the twelve months
# before (what the retraining DAG keeps a live job on), so that about 2 % of the readings raise urban_anomaly.
# The models folder's own baseline (2019) would flag 12 % of these 2024 readings, the registry's champion
# whatever it was last trained on: neither is used (urban_models).
URBAN_FROM = "2024-03-01"
URBAN_TRAINED = ("2023-03-01", URBAN_FROM)
SIZES = {"full": (5_000, 40_000), "quick": (2_000, 12_000)}
LATENCY_SECONDS = {"full": 30.0, "quick": 20.0}
RAMP_SECONDS = {"full": 20.0, "quick": 15.0}
WARM_UP_SECONDS = 20.0
# the pass-through is so much faster that N events take less time than the jitter of its start-up: it reads
# readings/s of the light-load latency phase: what an alert costs when nothing queues
LIGHT_RATE = 50.0
# PASSTHROUGH_REPEAT copies of the same documents (its rate is still per event)
PASSTHROUGH_REPEAT = 8
HIT_EVERY = 20          # latency phases: one event in HIT_EVERY starts a hit (PROBES: one that must raise an alert)
# the unbounded job's sustainable rate is searched in steps of this fraction of its bounded rate, from
# 2 steps up to RAMP_STEPS steps
RAMP_STEP = 0.125
RAMP_STEPS = 16
# a phase whose last fifth of hits took longer than this (median) to be answered left a growing backlog
KEPT_UP_MS = 1000.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------- data

def documents(name: str, n: int) -> dict[str, list[dict]]:
    """``{declared topic: documents}`` for ``n`` events of job ``name`` (the first ones of a fixed stream)."""
    if name == "urban":
        from impetus.replay.sensors import readings, weeks_to_present

        # 21 counters x 24 h a day: about 500 readings a day; shifted to the present by whole weeks
        days = math.ceil(n / 450) + 2
        end = (datetime.fromisoformat(URBAN_FROM) + timedelta(days=days)).strftime("%Y-%m-%d")
        docs = list(readings(URBAN_FROM, end, shift_weeks=weeks_to_present(end)))[:n]
        return {"sensors.readings": docs}
    if name == "cyber":
        from impetus.replay import flows, security_logs

        half = n // 2
        syslog, _ = security_logs.generate(hours=half / 4000 + 0.2)
        flow_docs, _ = flows.generate(hours=(n - half) / 10000 + 0.2)
        return {"security.syslog": syslog[:half], "network.flows": flow_docs[:n - half]}
    if name == "text":
        from impetus.replay import text

        social, cti, _ = text.generate(hours=n / 1500 + 0.2)
        n_cti = n // 5
        return {"social.posts": social[:n - n_cti], "cti.posts": cti[:n_cti]}
    raise ValueError(name)


def event_stamp(doc: dict) -> int | None:
    from impetus.detect.urban import event_ms

    moment = doc.get("event_time") or doc.get("received_time")
    return event_ms(moment) if moment else None


def produce(settings, topic: str, docs: list[dict]) -> None:
    from impetus.replay.producer import make_producer

    producer = make_producer(settings)
    sent = [producer.send(topic, json.dumps(doc).encode("utf-8"), timestamp_ms=event_stamp(doc)) for doc in docs]
    producer.flush()
    producer.close()
    failed = [future for future in sent if future.failed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(sent)} records were not written to {topic}: {failed[0].exception!r}")


def create_topics(settings, names: list[str], compacted: tuple[str, ...] = ()) -> None:
    from kafka.admin import NewTopic

    from impetus.topics import admin_client

    admin = admin_client(settings)
    keep = {"retention.ms": "-1"}
    admin.create_topics([NewTopic(n, 1, 1, topic_configs={**keep, "cleanup.policy": "compact"}
                                  if n in compacted else keep) for n in names])
    admin.close()


def delete_topics(settings, names: list[str]) -> None:
    from impetus.topics import admin_client

    admin = admin_client(settings)
    try:
        admin.delete_topics(names)
    except Exception as err:  # noqa: BLE001 - cleanup must not hide the results
        log(f"could not delete some topics: {err}")
    admin.close()


def remove_stale_topics(settings) -> None:
    """Delete the ``bench.`` topics of earlier runs that were stopped before they cleaned up (a run deletes its
    own as it goes): left behind, they hold gigabytes on the broker's disk. Benchmarks never run side by side
    (BENCHMARKS.md), so every such topic is stale when a run starts."""
    from impetus.topics import admin_client

    admin = admin_client(settings)
    try:
        stale = sorted(name for name in admin.list_topics() if name.startswith("bench."))
    finally:
        admin.close()
    if stale:
        log(f"deleting {len(stale)} bench.* topics left by earlier runs that did not finish")
        for start in range(0, len(stale), 100):
            delete_topics(settings, stale[start:start + 100])


def written(settings, topics: list[str]) -> int:
    """Messages on ``topics`` now (uncommitted ones too), summed."""
    from impetus.topics import end_offsets

    return sum(sum(end_offsets(settings, t, committed_only=False).values()) for t in topics)


# ---------------------------------------------------------------------------------- process runs

def group_peak_mb(pgid: int) -> float:
    """Sum of VmHWM (MB) over the live processes of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


class Sampler(threading.Thread):
    """Max over 0.5 s samples of :func:`group_peak_mb` for one process group."""

    def __init__(self, pgid: int):
        super().__init__(daemon=True)
        self.pgid, self.peak, self.stopped = pgid, 0.0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.peak = max(self.peak, group_peak_mb(self.pgid))
            self.stopped.wait(0.5)


def job_mode(spec: dict) -> str:
    """The PyFlink execution mode the job script declares (``PYTHON_MODE``)."""
    import importlib

    sys.path.insert(0, str(ROOT / "jobs" / "streaming"))
    return importlib.import_module(spec["job"]).PYTHON_MODE


def choose(text: str, known, option: str) -> list[str]:
    """The comma-separated names in ``text`` (an option's value), each one of ``known``; else a usage error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"{option}: unknown {unknown}; choose from {', '.join(known)}")
    return names


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def run_bounded(args: list[str], timeout: float = 900, env: dict | None = None) -> dict:
    """Run to completion in its own process group (``env``: extra variables): wall seconds and peak memory."""
    began = time.monotonic()
    process = start(args, env)
    sampler = Sampler(process.pid)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise RuntimeError(f"{' '.join(args[:1])} timed out after {timeout} s:\n{output[-3000:]}") from None
    finally:
        sampler.stopped.set()
        sampler.join()
    seconds = time.monotonic() - began
    _kill_group(process.pid)  # stray Python workers, if any
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} exited {process.returncode}:\n{output[-4000:]}")
    return {"seconds": seconds, "peak_mb": sampler.peak}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------ pass-through

def passthrough(sources: list[str], sink: str, group_id: str) -> None:
    """Flink Kafka -> Kafka job, no Python operator: the engine's limit on this machine."""
    from impetus.config import load_settings
    from impetus.flink import event_time, kafka_sink, kafka_source, stream_environment

    settings = load_settings()
    env = stream_environment(settings, "bench_passthrough", restart=False, delivery="at-least-once")
    streams = [env.from_source(kafka_source(settings, topic, group_id, bounded=True), event_time(5000),
                               f"kafka: {topic}") for topic in sources]
    stream = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
    stream.sink_to(kafka_sink(settings, topic=sink, delivery="at-least-once")).name(f"kafka: {sink}")
    env.execute("bench_passthrough")


# -------------------------------------------------------------------------------- plain consumer

def plain_logic(name: str, settings):
    """(logic objects in order, defaults) as the Flink job builds them."""
    from impetus.detect.streams import AreaWatch, PostWatch, SensorWatch, SourceWatch
    from impetus.rules import defaults_from, rule_kinds

    sys.path.insert(0, str(ROOT / "jobs" / "streaming"))
    if name == "urban":
        from urban_anomalies import load_baseline

        defaults = defaults_from(rule_kinds(), ["urban_anomaly", "silent_sensor", "area_burst"])
        return [SensorWatch(dict(settings.sensor_thresholds), load_baseline(settings)), AreaWatch()], defaults
    if name == "cyber":
        from cyber_threats import load_flow_scorer

        defaults = defaults_from(rule_kinds(), ["brute_force", "sudo_brute_force", "port_scan", "flow_anomaly"])
        return [SourceWatch(load_flow_scorer(settings))], defaults
    defaults = defaults_from(rule_kinds(), ["threat_language"])
    return [PostWatch()], defaults


class Keyed:
    """One keyed operator without Flink: state per key, event-time timers on a heap."""

    def __init__(self, logic, book):
        self.logic, self.book, self.states, self.timers = logic, book, {}, []

    def on_event(self, doc, ts_ms):
        key = self.logic.key(doc)
        self.states[key], alerts = self.logic.on_event(self.states.get(key), doc, self.book, ts_ms)
        due = self.logic.deadline(self.states[key])
        if due is not None:
            heapq.heappush(self.timers, (due, key))
        return alerts

    def advance(self, watermark):
        alerts = []
        while self.timers and self.timers[0][0] <= watermark:
            due, key = heapq.heappop(self.timers)
            if self.logic.deadline(self.states.get(key)) != due:
                continue  # superseded by a later event of the key
            self.states[key], out = self.logic.on_timer(self.states[key], due, self.book)
            alerts.extend(out)
            nxt = self.logic.deadline(self.states[key])
            if nxt is not None and nxt > due:
                heapq.heappush(self.timers, (nxt, key))
        return alerts


def plain(name: str, topics: dict[str, str], group_id: str, alert_topic: str) -> None:
    """The simple alternative: kafka-python loop, validate, same logic objects, produce alerts.

    Reads ``topics`` (declared -> actual) up to their end offsets at start, like a bounded job run.
    No suppression (the Flink operator's) and no checkpoints; alerts go to ``alert_topic``
    (at-least-once), dead letters to ``<actual>.dlq``.
    """
    from kafka import KafkaConsumer, TopicPartition

    from impetus.config import load_settings
    from impetus.detect import streams
    from impetus.dlq import dead_letter_json
    from impetus.replay.producer import make_producer
    from impetus.rules import RuleBook
    from impetus.schemas import PayloadRejected, check_payload
    from impetus.topics import dlq_topic, end_offsets

    spec = JOBS[name]
    settings = load_settings()
    logics, defaults = plain_logic(name, settings)
    book = RuleBook(None, defaults)
    operators = [Keyed(logic, book) for logic in logics]
    tenants = frozenset(spec["tenants"])
    by_actual = {topics[declared]: (schema, getattr(streams, parse) if parse else None)
                 for declared, schema, parse in spec["inputs"]}
    ends = {}
    for topic in by_actual:
        for p, end in end_offsets(settings, topic, committed_only=True).items():
            if end > 0:
                ends[TopicPartition(topic, p)] = end
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group_id, enable_auto_commit=False,
                             isolation_level="read_committed", max_partition_fetch_bytes=16 << 20)
    consumer.assign(list(ends))
    for tp in ends:
        consumer.seek(tp, 0)
    producer = make_producer(settings, acks=1)
    watermark = None
    lag = spec["out_of_orderness_ms"]
    counts = {"in": 0, "alerts": 0, "dead": 0}

    def emit(alerts, ts_ms):
        for alert in alerts:
            producer.send(alert_topic, json.dumps(alert, ensure_ascii=False).encode("utf-8"))
            counts["alerts"] += 1
            if name == "urban" and alert["category"] == "urban_anomaly" and (alert.get("location") or {}).get("area"):
                emit(operators[1].on_event(alert, ts_ms), ts_ms)

    while ends:
        for tp, messages in consumer.poll(timeout_ms=500, max_records=2000).items():
            schema, parse = by_actual[tp.topic]
            for message in messages:
                counts["in"] += 1
                try:
                    doc = check_payload(schema, message.value)
                    if doc["tenant"] not in tenants:
                        raise PayloadRejected(f"unknown tenant {doc['tenant']!r}")
                    if parse is not None:
                        doc = parse(doc)
                except ValueError as err:
                    counts["dead"] += 1
                    letter = dead_letter_json(tp.topic, str(err), message.value, "plain")
                    producer.send(dlq_topic(tp.topic), letter.encode("utf-8"))
                    continue
                ts_ms = message.timestamp
                if watermark is None or ts_ms - lag > watermark:
                    watermark = ts_ms - lag
                    for operator in operators:
                        emit(operator.advance(watermark), ts_ms)
                emit(operators[0].on_event(doc, ts_ms), ts_ms)
            if tp in ends and consumer.position(tp) >= ends[tp]:
                del ends[tp]
                consumer.pause(tp)
    producer.flush()
    consumer.commit()
    consumer.close()
    producer.close()
    print(json.dumps({"plain": name, **counts}), flush=True)


# ------------------------------------------------------------------------------------ throughput

def urban_models(settings) -> dict:
    """Environment for urban's job and loop runs: a models folder of the bench's own with the baseline of
    URBAN_TRAINED (built now, in a few seconds) and no registry, so that every run judges the same readings by
    the same baseline whatever this machine's registry or models folder holds."""
    folder = settings.var_dir / "bench" / f"models-{URBAN_TRAINED[0]}--{URBAN_TRAINED[1]}"
    out = folder / "urban_baseline" / "baseline.json"
    log(f"urban: training its baseline on {URBAN_TRAINED[0]} .. {URBAN_TRAINED[1]} into {out}")
    subprocess.run([sys.executable, str(ROOT / "models" / "urban_baseline" / "build.py"), "--out", str(out),
                    "--start", URBAN_TRAINED[0], "--end", URBAN_TRAINED[1]],
                   check=True, stdout=subprocess.DEVNULL)
    # a tracking URI of a database that does not exist: the job finds no champion and reads the folder's file
    return {"IMPETUS_MODELS_DIR": str(folder), "IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'no-registry.db'}"}


def job_args(spec: dict, topics: dict[str, str], rules: str, group: str, delivery: str, bounded: bool,
             alerts: str) -> list[str]:
    args = [str(ROOT / spec["script"]), "--tenants", ",".join(spec["tenants"]), "--rules-topic", rules,
            "--group-id", group, "--delivery", delivery, "--run-id", group[-12:], "--alert-topic", alerts]
    for declared, actual in topics.items():
        args += ["--topic", f"{declared}={actual}"]
    return args + (["--bounded"] if bounded else [])


def throughput(settings, name: str, sizes: tuple[int, int], run: str, rules: str) -> dict:
    spec = JOBS[name]
    log(f"{name}: generating {sizes[1]} events")
    data = documents(name, sizes[1])
    mode = job_mode(spec)
    models = urban_models(settings) if name == "urban" else {}
    result = {"job": spec["job"], "mode": mode, "sizes": list(sizes), "runs": {},
              **({"baseline_trained": list(URBAN_TRAINED)} if models else {})}
    for size in sizes:
        prefix = f"bench.{run}.{name}.{size}"
        topics = {declared: f"{prefix}.{declared}" for declared in data}
        sink = f"{prefix}.passthrough"
        alerts = f"{prefix}.alerts"  # not alerts.<tenant>: benchmark alerts stay out of the tenants' history
        copies = {declared: f"{actual}.copies" for declared, actual in topics.items()}
        names = [*topics.values(), *(f"{t}.dlq" for t in topics.values()), *copies.values(), sink, alerts]
        create_topics(settings, names)
        try:
            share = {declared: docs[:round(size * len(docs) / sizes[1])] for declared, docs in data.items()}
            for declared, docs in share.items():
                produce(settings, topics[declared], docs)
                produce(settings, copies[declared], docs * PASSTHROUGH_REPEAT)
            n = sum(len(d) for d in share.values())
            variants = {
                "passthrough": [str(SCRIPT), "--passthrough", ",".join(copies.values()), "--sink", sink,
                                "--group-id", f"{prefix}.pt"],
                "flink": job_args(spec, topics, rules, f"{prefix}.job-{uuid.uuid4().hex[:6]}", "at-least-once", True,
                                  alerts),
                "plain": [str(SCRIPT), "--plain", name, "--topics", ",".join(f"{d}={a}" for d, a in topics.items()),
                          "--group-id", f"{prefix}.plain", "--alert-topic", alerts],
            }
            if mode == "thread":
                variants["flink_process"] = job_args(spec, topics, rules, f"{prefix}.proc-{uuid.uuid4().hex[:6]}",
                                                     "at-least-once", True, alerts)
            for variant, args in variants.items():
                before = written(settings, [sink if variant == "passthrough" else alerts])
                log(f"{name}: {variant} over {n} events ...")
                env = dict(models) if variant != "passthrough" else {}
                if variant == "flink_process":
                    env["IMPETUS_FLINK_PYTHON_MODE"] = "process"
                figures = run_bounded(args, env=env)
                figures["out"] = written(settings, [sink if variant == "passthrough" else alerts]) - before
                figures["events"] = n * (PASSTHROUGH_REPEAT if variant == "passthrough" else 1)
                result["runs"].setdefault(variant, {})[str(size)] = figures
                log(f"{name}: {variant} n={figures['events']}: {figures['seconds']:.1f} s, "
                    f"peak {figures['peak_mb']:.0f} MB, "
                    f"{figures['out']} out")
        finally:
            delete_topics(settings, names)
    for variant, runs in result["runs"].items():
        small, big = runs[str(sizes[0])], runs[str(sizes[1])]
        dt = big["seconds"] - small["seconds"]
        runs["rate"] = (big["events"] - small["events"]) / dt if dt > 0 else float("nan")
        runs["peak_mb"] = max(small["peak_mb"], big["peak_mb"])
    return result


# --------------------------------------------------------------------------------------- latency

class AlertWatch:
    """A separate process consuming the run's alert topic (read_committed) from its end now; :attr:`received` is
    the time the alert answering each hit of ``probe`` first arrived. Its own process, so that the producer of
    the events (this process) does not delay the clock it reads."""

    def __init__(self, settings, topic: str, probe: Probe):
        import multiprocessing
        import tempfile

        self.probe = probe
        self.path = Path(tempfile.mkstemp(prefix="bench-alerts-", suffix=".tsv")[1])
        ready = multiprocessing.Event()
        self.stopped = multiprocessing.Event()
        self.process = multiprocessing.get_context("fork").Process(
            target=_watch_alerts, args=(settings.kafka_bootstrap, topic, self.path, ready, self.stopped), daemon=True)
        self.process.start()
        if not ready.wait(60):
            raise RuntimeError(f"the alert consumer of {topic} did not start within 60 s")

    @property
    def received(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            category, entity, stamp = line.split("\t")
            if category == self.probe.category:
                first.setdefault(self.probe.hit_of(entity), float(stamp))
        return first

    def close(self) -> None:
        self.stopped.set()
        self.process.join(30)
        self.path.unlink(missing_ok=True)


def _watch_alerts(bootstrap: str, topic: str, path: Path, ready, stopped) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", fetch_max_wait_ms=50)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_end()
    for tp in partitions:
        consumer.position(tp)
    ready.set()
    with open(path, "a") as out:
        while not stopped.is_set():
            for messages in consumer.poll(timeout_ms=100).values():
                now = time.time()
                for message in messages:
                    alert = json.loads(message.value)
                    out.write(f"{alert.get('category')}\t{(alert.get('entity') or {}).get('id', '')}\t{now}\n")
            out.flush()
    consumer.close()


def reading(sensor: str, value: float, moment: float) -> dict:
    return {"tenant": "auckland", "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
            "unit": "persons/h", "event_time": _iso(moment), "location": {"area": "bench"}, "source": "bench"}


def _iso(moment: float) -> str:
    from impetus.alerts import utc_iso

    return utc_iso(datetime.fromtimestamp(moment, timezone.utc))


@dataclass
class Probe:
    """What the latency phases send to one job: ordinary events, and every HIT_EVERY events a *hit* — ``size``
    events of which the last must raise an alert of ``category`` at once (its latency is measured from that
    event); ``hit_of`` maps the alert's entity id back to the hit's id."""
    input: str                                   # declared input topic the events go to
    tenant: str
    category: str
    size: int
    hit_id: Callable[[str, int, int], str]       # (run tag, phase, hit number) -> id
    hit: Callable[[str, int, float], dict]       # (hit id, event of the hit, now) -> document
    normal: Callable[[int, float], dict]         # (event number, now) -> document
    hit_of: Callable[[str], str] = str


def _failed_login(ip: str, moment: float) -> dict:
    return {"tenant": "oslo", "collector": "bench", "received_time": _iso(moment),
            "line": f"<38>1 {_iso(moment)} bastion-oslo sshd 4242 - - Failed password for invalid user admin "
                    f"from {ip} port 50022 ssh2"}


def _cron(i: int, moment: float) -> dict:
    return {"tenant": "oslo", "collector": "bench", "received_time": _iso(moment),
            "line": f"<86>1 {_iso(moment)} os-web01 CRON {20000 + i % 5000} - - pam_unix(cron:session): "
                    "session opened for user root(uid=0) by (uid=0)"}


def _web_flow(i: int, moment: float) -> dict:
    return {"tenant": "oslo", "event_time": _iso(moment), "src_ip": f"10.255.{i // 250 % 250}.{i % 250 + 1}",
            "src_port": 49152 + i % 16000, "dst_ip": "198.51.100.20", "dst_port": 443, "protocol": "tcp",
            "bytes_out": 2300, "bytes_in": 48000, "packets": 52, "duration_ms": 350}


def _upload_flow(ip: str, moment: float) -> dict:
    # 1.5 GB out to a drop server in a 25-minute connection: the shape of the replay's exfiltration episodes
    return {"tenant": "oslo", "event_time": _iso(moment), "src_ip": ip, "src_port": 50123, "dst_ip": "192.0.2.77",
            "dst_port": 443, "protocol": "tcp", "bytes_out": 1_500_000_000, "bytes_in": 3000,
            "packets": 1_050_000, "duration_ms": 1_500_000}


def _post(post_id: str, text: str, moment: float) -> dict:
    return {"tenant": "oslo", "post_id": post_id, "platform": "bench", "author": "bench", "text": text,
            "lang": "en", "event_time": _iso(moment)}


PROBES = {
    # a reading over the pedestrian_count threshold (3000) from a sensor of its own (nothing suppressed)
    "urban": Probe("sensors.readings", "auckland", "threshold", 1,
                   lambda tag, phase, k: f"bench-{tag}-p{phase}-hit-{k}",
                   lambda hid, j, now: reading(hid, 5000.0, now),
                   lambda i, now: reading(f"bench-n-{i % 40}", 100.0, now)),
    # five failed SSH logins from an address of their own: the fifth raises brute_force (default threshold 5)
    "cyber": Probe("security.syslog", "oslo", "brute_force", 5,
                   lambda tag, phase, k: f"10.{phase % 256}.{k // 256 % 256}.{k % 256}",
                   lambda ip, j, now: _failed_login(ip, now), _cron),
    # a flow uploading 1.5 GB from an address of its own: the flow model flags it (flow_anomaly) once the job's
    # scoring stage has scored its batch
    "cyber_flows": Probe("network.flows", "oslo", "flow_anomaly", 1,
                         lambda tag, phase, k: f"10.{phase % 255}.{k // 256 % 256}.{k % 256}",
                         lambda ip, j, now: _upload_flow(ip, now), _web_flow),
    # a post with a threat word in a negative tone raises threat_language (a built-in rule)
    "text": Probe("social.posts", "oslo", "threat_language", 1,
                  lambda tag, phase, k: f"bench-{tag}-p{phase}-{k}",
                  lambda hid, j, now: _post(hid, "I will bomb the station tonight, I hate you all", now),
                  lambda i, now: _post(f"bench-n-{i}", "Lovely sunny morning at the harbour", now),
                  hit_of=lambda entity: entity.rsplit(":", 1)[-1]),
}
WARM, WARM_UP = 251, 252  # phase numbers of the first answered hits and of the warm-up


def latency(settings, name: str, run: str, rules: str, rates: list[float], seconds: float, delivery: str,
            ramp: bool = False, probe_name: str | None = None) -> list[dict]:
    """One unbounded run of job ``name`` fed each of ``rates`` events/s in turn for ``seconds`` (its
    :data:`PROBES` entry says what is sent and which alert answers a hit). A phase per rate, each followed by
    a pause that lets stragglers arrive; before them an unmeasured WARM_UP_SECONDS at the first rate (a fresh
    JVM and interpreter are slower for their first seconds). ``ramp``: stop after the first phase the job did
    not keep up with (:func:`kept_up`). ``probe_name``: another :data:`PROBES` entry than the job's."""
    from impetus.replay.producer import make_producer
    from impetus.topics import end_offsets

    spec, probe = JOBS[name], PROBES[probe_name or name]
    tag = f"{run}-{'eo' if delivery == 'exactly-once' else 'alo'}-{uuid.uuid4().hex[:4]}"
    topics = {declared: f"bench.{run}.latency.{tag}.{n}" for n, (declared, _, _) in enumerate(spec["inputs"])}
    alerts = f"bench.{run}.latency.{tag}.alerts"  # not alerts.<tenant> (see throughput)
    created = [t for topic in topics.values() for t in (topic, f"{topic}.dlq")] + [alerts]
    create_topics(settings, created)
    watch = AlertWatch(settings, alerts, probe)
    producer = make_producer(settings, linger_ms=0, acks=1)
    topic = topics[probe.input]
    log(f"latency ({delivery}): starting {spec['job']} unbounded")
    process = start(job_args(spec, topics, rules, f"bench.{tag}", delivery, False, alerts))
    sampler = Sampler(process.pid)
    sampler.start()
    phases = []
    # stragglers; exactly-once: then quiet, so that no record written since the last checkpoint leaves an
    # open transaction when the job is killed
    pause = 3.0 if delivery == "at-least-once" else 3 + 3 * settings.flink_checkpoint_interval_ms / 1000 + 5
    try:
        # wait until the job answers a hit
        deadline, k = time.monotonic() + 240, 0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"job exited {process.returncode}:\n{process.stdout.read()[-4000:]}")
            hid = probe.hit_id(tag, WARM, k)
            for j in range(probe.size):
                now = time.time()
                producer.send(topic, json.dumps(probe.hit(hid, j, now)).encode(), timestamp_ms=int(now * 1000))
            producer.flush()
            received = watch.received
            if any(probe.hit_id(tag, WARM, n) in received for n in range(k + 1)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{spec['job']} raised no alert within 240 s of start")
            k += 1
            time.sleep(1.0)
        log(f"latency ({delivery}): job answering; warming up at {rates[0]:.0f} events/s for {WARM_UP_SECONDS:.0f} s")
        offer(producer, topic, probe, tag, WARM_UP, rates[0], WARM_UP_SECONDS)
        time.sleep(pause)
        for number, rate in enumerate(rates):
            log(f"latency ({delivery}): {rate:.0f} events/s for {seconds:.0f} s")
            sent, achieved = offer(producer, topic, probe, tag, number, rate, seconds)
            time.sleep(pause)
            phase = phase_result(sent, watch.received, rate, achieved, seconds, delivery)
            phases.append(phase)
            log(f"latency ({delivery}): {achieved:.0f}/s: p50 {fmt(phase['p50_ms'])} ms, p99 {fmt(phase['p99_ms'])} "
                f"ms, {phase['alerts_received']}/{phase['sent_hits']} answered"
                + ("" if phase["kept_up"] or not ramp else " - did not keep up"))
            if ramp and not phase["kept_up"]:
                break
            if ramp and achieved < 0.95 * rate:
                log(f"latency ({delivery}): the benchmark's producer reached only {achieved:.0f} of {rate:.0f} "
                    "events/s: the ramp ends here")
                break
    finally:
        sampler.stopped.set()
        _kill_group(process.pid)
        process.wait()
        producer.close()
        watch.close()
        sampler.join()
    if end_offsets(settings, alerts, False) != end_offsets(settings, alerts, True):
        log(f"warning: {alerts} has an open transaction after the kill (it times out in 10 min)")
    delete_topics(settings, created)
    for phase in phases:
        phase["peak_mb"] = sampler.peak
    return phases


def offer(producer, topic: str, probe: Probe, tag: str, phase: int, rate: float,
          seconds: float) -> tuple[dict[str, float], float]:
    """Produce ``rate`` events/s for ``seconds``, stamped now; ({hit id: time its last event was sent},
    achieved rate)."""
    sent: dict[str, float] = {}
    began = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        wait = began + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        moment = time.time()
        j = i % HIT_EVERY
        if j < probe.size:
            hid = probe.hit_id(tag, phase, i // HIT_EVERY)
            doc = probe.hit(hid, j, moment)
            if j == probe.size - 1:
                sent[hid] = moment
        else:
            doc = probe.normal(i, moment)
        producer.send(topic, json.dumps(doc).encode(), timestamp_ms=int(moment * 1000))
    producer.flush()
    return sent, total / (time.perf_counter() - began)


def phase_result(sent: dict[str, float], received: dict[str, float], rate: float, achieved: float, seconds: float,
                 delivery: str) -> dict:
    latencies = sorted((received[s] - t) * 1000 for s, t in sent.items() if s in received)
    # the hits of the phase's last fifth, in the order they were sent: a backlog that grows shows there
    ordered = sorted(sent.items(), key=lambda item: item[1])
    tail = [(received[s] - t) * 1000 if s in received else math.inf for s, t in ordered[-max(1, len(ordered) // 5):]]
    tail_p50 = percentile(tail, 50)
    return {"delivery": delivery, "rate": rate, "achieved_rate": achieved, "seconds": seconds,
            "sent_hits": len(sent), "alerts_received": len(latencies),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1] if latencies else None, "tail_p50_ms": tail_p50,
            "kept_up": kept_up(len(sent), len(latencies), tail_p50)}


def kept_up(hits: int, answered: int, tail_p50_ms: float | None) -> bool:
    """Whether the job kept up with a phase: every hit answered, and the median latency of the phase's last
    fifth under KEPT_UP_MS (offered above what the job sustains, its backlog, so that median, grows by
    seconds over a phase)."""
    return hits > 0 and answered == hits and tail_p50_ms is not None and tail_p50_ms < KEPT_UP_MS


def latency_phases(settings, name: str, run: str, rules: str, bounded: float, mode: str) -> dict:
    """Job ``name``'s sustainable rate unbounded (at-least-once; a ramp in steps of RAMP_STEP of its bounded rate,
    up to RAMP_STEPS of them), then its latency at half that rate and at LIGHT_RATE, once per delivery mode.
    The cyber job's flows take another path (scored in batches) than its syslog lines: they get a ramp and
    latency phases of their own (``flows``)."""
    result = {"job": JOBS[name]["job"], "latency": []}
    for probe, what in [(None, "")] + ([("cyber_flows", "flows")] if name == "cyber" else []):
        steps = [bounded * RAMP_STEP * k for k in range(2, RAMP_STEPS + 1)]
        ramp = latency(settings, name, run, rules, steps, RAMP_SECONDS[mode], "at-least-once", ramp=True,
                       probe_name=probe)
        kept = [phase["achieved_rate"] for phase in ramp if phase["kept_up"]]
        sustainable = max(kept) if kept else None
        if sustainable is None:
            log(f"{name}{' ' + what if what else ''}: the unbounded job did not keep up with {steps[0]:.0f} events/s, "
                "the ramp's first step")
        half = (sustainable if sustainable is not None else steps[0]) / 2
        if what:
            result.setdefault("ramps", {})[what] = {"ramp": ramp, "sustainable_rate": sustainable}
        else:
            result.update(ramp=ramp, sustainable_rate=sustainable)
        for delivery in ("at-least-once", "exactly-once"):
            for phase, label in zip(latency(settings, name, run, rules, [half, LIGHT_RATE], LATENCY_SECONDS[mode],
                                            delivery, probe_name=probe), ("½ sustainable", "light")):
                result["latency"].append(dict(phase, load=f"{label}, {what}" if what else label))
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    rank = max(0, math.ceil(q / 100 * len(values)) - 1)
    return values[rank]


# ------------------------------------------------------------------------------------ reporting

def table(results: dict) -> str:
    lines = ["| job | PyFlink mode | Flink job ev/s | same job, process mode ev/s | pass-through ev/s | "
             "plain loop ev/s | job / pass-through | job / plain | peak MB job / pass-through / plain |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for entry in results["throughput"]:
        runs = entry["runs"]
        job, pt, pl = runs["flink"]["rate"], runs["passthrough"]["rate"], runs["plain"]["rate"]
        process = f"{runs['flink_process']['rate']:,.0f}" if "flink_process" in runs else "(is process mode)"
        lines.append(f"| {entry['job']} | {entry.get('mode', '?')} | {job:,.0f} | {process} | {pt:,.0f} | {pl:,.0f} | "
                     f"{job / pt:.2f} | {job / pl:.2f} | "
                     f"{runs['flink']['peak_mb']:.0f} / {runs['passthrough']['peak_mb']:.0f} / "
                     f"{runs['plain']['peak_mb']:.0f} |")
    for job in results["latency"]:
        ramps = [("", job)] + [(f" ({what})", ramp) for what, ramp in job.get("ramps", {}).items()]
        for what, ramp in ramps:
            sustainable = ramp["sustainable_rate"]
            found = "below the first step" if sustainable is None else f"{sustainable:,.0f} events/s"
            lines += ["", f"Unbounded {job['job']}{what}, at-least-once, rate stepped up until it falls behind: "
                          f"sustainable {found}",
                      "", "| offered ev/s | hits | alerts | p50 ms | p99 ms | last fifth p50 ms | kept up |",
                      "|---:|---:|---:|---:|---:|---:|---|"]
            for entry in ramp["ramp"]:
                lines.append(f"| {entry['achieved_rate']:,.0f} | {entry['sent_hits']} | {entry['alerts_received']} | "
                             f"{fmt(entry['p50_ms'])} | {fmt(entry['p99_ms'])} | {fmt(entry['tail_p50_ms'])} | "
                             f"{'yes' if entry['kept_up'] else 'no'} |")
        lines += ["", f"| {job['job']} latency | load | offered ev/s | hits | alerts | p50 ms | p99 ms | max ms "
                      "| peak MB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for entry in job["latency"]:
            lines.append(f"| {entry['delivery']} | {entry.get('load', '')} | {entry['achieved_rate']:,.0f} | "
                         f"{entry['sent_hits']} | {entry['alerts_received']} | {fmt(entry['p50_ms'])} | "
                         f"{fmt(entry['p99_ms'])} | {fmt(entry['max_ms'])} | {entry['peak_mb']:.0f} |")
    return "\n".join(lines)


def fmt(value) -> str:
    return "-" if value is None else "∞" if value == math.inf else f"{value:,.0f}"


def pyplot():
    """matplotlib's pyplot without a display, or None (and a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart")
        return None
    return plt


def write_chart(plt, fig, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` as PNG and free it (shared by the benchmarks)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"chart: {path}")


def chart(results: dict, path: Path) -> None:
    """Throughput bars (``path``) and, when latency was measured, latency against offered rate per job
    (``<path stem>-latency.png``)."""
    plt = pyplot()
    if plt is None:
        return
    entries = results["throughput"]
    if entries:
        variants = [("passthrough", "Flink pass-through"), ("flink", "Flink detection job"),
                    ("flink_process", "same job, PyFlink process mode"), ("plain", "kafka-python loop")]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.2
        for i, (variant, label) in enumerate(variants):
            ax.bar([j + (i - 1.5) * width for j in range(len(entries))],
                   [e["runs"].get(variant, {}).get("rate", float("nan")) for e in entries], width, label=label)
        ax.set_xticks(range(len(entries)), [e["job"] for e in entries])
        ax.set_ylabel("events / s")
        ax.set_yscale("log")
        ax.set_title("Streaming throughput (bounded runs, start-up subtracted)")
        ax.legend(fontsize=8)
        write_chart(plt, fig, path)
    jobs = results["latency"]
    if jobs:
        fig, axes = plt.subplots(1, len(jobs), figsize=(4.2 * len(jobs), 3.5), squeeze=False)
        for ax, job in zip(axes[0], jobs):
            rates = [p["achieved_rate"] for p in job["ramp"]]
            for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
                ax.plot(rates, [p[key] if p[key] is not None else float("nan") for p in job["ramp"]], "o-",
                        label=f"ramp {label} (at-least-once)")
            for phase in job["latency"]:
                marker = "s" if phase["delivery"] == "at-least-once" else "^"
                ax.plot([phase["achieved_rate"]], [phase["p99_ms"]], marker, label=f"p99 {phase['delivery']}, "
                        f"{phase.get('load', '')} (fresh job)")
            ax.axhline(500, color="grey", linestyle=":", linewidth=1)
            if job["sustainable_rate"]:
                ax.axvline(job["sustainable_rate"], color="grey", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("offered events / s")
            ax.set_ylabel("event-to-alert latency, ms")
            ax.set_title(f"{job['job']} (dashed: sustainable)", fontsize=9)
            ax.legend(fontsize=6)
        write_chart(plt, fig, path.with_name(f"{path.stem}-latency.png"))


# ------------------------------------------------------------------------------------------ main

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/streaming.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smaller runs: {SIZES['quick']} events per job, {LATENCY_SECONDS['quick']:.0f} s latency "
                        f"phases (default {SIZES['full']}, {LATENCY_SECONDS['full']:.0f} s)")
    p.add_argument("--sizes", metavar="SMALL,BIG",
                   help="events in the two bounded runs whose difference gives the throughput (default "
                        f"{SIZES['full'][0]},{SIZES['full'][1]}); larger runs narrow the start-up jitter's share "
                        "(about a second) of a fast job's difference; urban has about 338,000 readings "
                        "(2024-03 .. 2025-12)")
    p.add_argument("--jobs", default="urban,cyber,text", help="comma-separated subset of urban,cyber,text "
                                                              "(default %(default)s)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency phases")
    p.add_argument("--latency-from", type=float, metavar="RATE",
                   help="only the latency phases, ramping in steps of 1/8 of RATE events/s (e.g. the job's bounded "
                        "rate from an earlier run; with several --jobs, the same RATE for each)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/<timestamp>.json)")
    # internal: the pass-through job and the plain loop run in their own processes (timed, memory sampled)
    p.add_argument("--passthrough", help=argparse.SUPPRESS)
    p.add_argument("--sink", help=argparse.SUPPRESS)
    p.add_argument("--plain", choices=sorted(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--topics", help=argparse.SUPPRESS)
    p.add_argument("--group-id", help=argparse.SUPPRESS)
    p.add_argument("--alert-topic", help=argparse.SUPPRESS)
    return p


def parse_sizes(text: str) -> tuple[int, int]:
    """``--sizes SMALL,BIG`` -> (SMALL, BIG), or SystemExit saying what is expected."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or not 0 < sizes[0] < sizes[1]:
        raise SystemExit(f"--sizes {text!r}: expected SMALL,BIG, two whole numbers with 0 < SMALL < BIG, "
                         "e.g. 20000,120000")
    return sizes


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.passthrough:
        passthrough(args.passthrough.split(","), args.sink, args.group_id)
        return 0
    if args.plain:
        plain(args.plain, dict(pair.split("=", 1) for pair in args.topics.split(",")), args.group_id, args.alert_topic)
        return 0

    from impetus.config import load_settings

    names = choose(args.jobs, JOBS, "--jobs")
    mode = "quick" if args.quick else "full"
    sizes = parse_sizes(args.sizes) if args.sizes else SIZES[mode]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    from impetus.health import broker_health

    broker = broker_health(settings)
    if not broker["ok"]:
        print(f"bench/streaming.py: {broker['detail']}", file=sys.stderr)
        return 2
    remove_stale_topics(settings)
    run = uuid.uuid4().hex[:8]
    rules = f"bench.{run}.rules"
    create_topics(settings, [rules], compacted=(rules,))
    results = {"command": " ".join(["bench/streaming.py", *(argv if argv is not None else sys.argv[1:])]),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": mode,
               "machine": {"nproc": os.cpu_count(), "ram_mb": _ram_mb(), "python": sys.version.split()[0]},
               "checkpoint_interval_ms": settings.flink_checkpoint_interval_ms,
               "throughput": [], "latency": []}
    began = time.monotonic()
    try:
        for name in names if args.latency_from is None else []:
            results["throughput"].append(throughput(settings, name, sizes, run, rules))
            _save(results, out)
        for name in names if not args.no_latency else []:
            bounded = args.latency_from or next(e for e in results["throughput"]
                                                if e["job"] == JOBS[name]["job"])["runs"]["flink"]["rate"]
            results["latency"].append(latency_phases(settings, name, run, rules, bounded, mode))
            _save(results, out)
    finally:
        delete_topics(settings, [rules])
    results["seconds"] = time.monotonic() - began
    _save(results, out)
    print("\n" + table(results) + "\n", flush=True)
    chart(results, out.with_suffix(".png"))
    log(f"results: {out} ({results['seconds'] / 60:.1f} min)")
    return 0


def _ram_mb() -> int:
    with open("/proc/meminfo") as handle:
        return int(handle.readline().split()[1]) // 1024


def _save(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
