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
- for urban_anomalies, event-to-alert latency (p50/p99) of an unbounded run fed at about half
  its measured rate, with ``--delivery at-least-once`` and ``exactly-once``.

Figures are ratios within one run on one machine; they are reported, never asserted.
Results go to bench/results/<timestamp>.json (and a PNG chart next to it); BENCHMARKS.md
holds the command and the table of a run.

    .venv/bin/python bench/streaming.py                 # full run (about 15 minutes on 2 cores)
    .venv/bin/python bench/streaming.py --quick         # smaller inputs, shorter latency phases
    .venv/bin/python bench/streaming.py --jobs urban    # one job
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
from datetime import datetime, timedelta, timezone
from pathlib import Path

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
SIZES = {"full": (5_000, 40_000), "quick": (2_000, 12_000)}
LATENCY_SECONDS = {"full": 30.0, "quick": 20.0}
# the pass-through is so much faster that N events take less time than the jitter of its start-up: it reads
# readings/s of the light-load latency phase: what an alert costs when nothing queues
LIGHT_RATE = 50.0
# PASSTHROUGH_REPEAT copies of the same documents (its rate is still per event)
PASSTHROUGH_REPEAT = 8
HIT_EVERY = 20          # one reading in HIT_EVERY exceeds the pedestrian_count threshold (3000)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------- data

def documents(name: str, n: int) -> dict[str, list[dict]]:
    """``{declared topic: documents}`` for ``n`` events of job ``name`` (the first ones of a fixed stream)."""
    if name == "urban":
        from impetus.replay.sensors import readings, weeks_to_present

        # 21 counters x 24 h a day: about 500 readings a day; shifted to the present by whole weeks
        days = math.ceil(n / 450) + 2
        end = (datetime(2024, 3, 1) + timedelta(days=days)).strftime("%Y-%m-%d")
        docs = list(readings("2024-03-01", end, shift_weeks=weeks_to_present(end)))[:n]
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
    for doc in docs:
        producer.send(topic, json.dumps(doc).encode("utf-8"), timestamp_ms=event_stamp(doc))
    producer.flush()
    producer.close()


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
    env = stream_environment(settings, "bench_passthrough", restart=False)
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


def plain(name: str, topics: dict[str, str], group_id: str) -> None:
    """The simple alternative: kafka-python loop, validate, same logic objects, produce alerts.

    Reads ``topics`` (declared -> actual) up to their end offsets at start, like a bounded job run.
    No suppression (the Flink operator's) and no checkpoints; alerts go to ``alerts.<tenant>``
    (at-least-once), dead letters to ``<actual>.dlq``.
    """
    from kafka import KafkaConsumer, TopicPartition

    from impetus.config import load_settings
    from impetus.detect import streams
    from impetus.dlq import dead_letter_json
    from impetus.replay.producer import make_producer
    from impetus.rules import RuleBook
    from impetus.schemas import PayloadRejected, check_payload
    from impetus.topics import alert_topic, dlq_topic, end_offsets

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
            producer.send(alert_topic(alert["tenant"]), json.dumps(alert, ensure_ascii=False).encode("utf-8"))
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

def job_args(spec: dict, topics: dict[str, str], rules: str, group: str, delivery: str, bounded: bool) -> list[str]:
    args = [str(ROOT / spec["script"]), "--tenants", ",".join(spec["tenants"]), "--rules-topic", rules,
            "--group-id", group, "--delivery", delivery, "--run-id", group[-12:]]
    for declared, actual in topics.items():
        args += ["--topic", f"{declared}={actual}"]
    return args + (["--bounded"] if bounded else [])


def throughput(settings, name: str, sizes: tuple[int, int], run: str, rules: str) -> dict:
    from impetus.topics import alert_topic

    spec = JOBS[name]
    alert_topics = [alert_topic(t) for t in spec["tenants"]]
    log(f"{name}: generating {sizes[1]} events")
    data = documents(name, sizes[1])
    mode = job_mode(spec)
    result = {"job": spec["job"], "mode": mode, "sizes": list(sizes), "runs": {}}
    for size in sizes:
        prefix = f"bench.{run}.{name}.{size}"
        topics = {declared: f"{prefix}.{declared}" for declared in data}
        sink = f"{prefix}.passthrough"
        copies = {declared: f"{actual}.copies" for declared, actual in topics.items()}
        names = [*topics.values(), *(f"{t}.dlq" for t in topics.values()), *copies.values(), sink]
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
                "flink": job_args(spec, topics, rules, f"{prefix}.job-{uuid.uuid4().hex[:6]}", "at-least-once", True),
                "plain": [str(SCRIPT), "--plain", name, "--topics", ",".join(f"{d}={a}" for d, a in topics.items()),
                          "--group-id", f"{prefix}.plain"],
            }
            if mode == "thread":
                variants["flink_process"] = job_args(spec, topics, rules, f"{prefix}.proc-{uuid.uuid4().hex[:6]}",
                                                     "at-least-once", True)
            for variant, args in variants.items():
                before = written(settings, alert_topics + ([sink] if variant == "passthrough" else []))
                log(f"{name}: {variant} over {n} events ...")
                figures = run_bounded(args, env={"IMPETUS_FLINK_PYTHON_MODE": "process"}
                                      if variant == "flink_process" else None)
                figures["out"] = written(settings, alert_topics + ([sink] if variant == "passthrough" else [])) - before
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

class AlertWatch(threading.Thread):
    """Consumes ``alerts.<tenant>`` (read_committed) from its end now; receive time per sensor id."""

    def __init__(self, settings, topic: str):
        from kafka import KafkaConsumer, TopicPartition

        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                      isolation_level="read_committed", fetch_max_wait_ms=50)
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end()
        for tp in partitions:
            self.consumer.position(tp)
        self.received: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            for messages in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for message in messages:
                    alert = json.loads(message.value)
                    sensor = (alert.get("entity") or {}).get("id", "")
                    if alert.get("category") == "threshold" and sensor not in self.received:
                        self.received[sensor] = now
        self.consumer.close()


def reading(sensor: str, value: float, moment: float) -> dict:
    stamp = datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"tenant": "auckland", "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
            "unit": "persons/h", "event_time": stamp, "location": {"area": "bench"}, "source": "bench"}


def latency(settings, run: str, rules: str, rate: float, seconds: float, delivery: str) -> dict:
    """Unbounded urban_anomalies fed ``rate`` readings/s for ``seconds``; 1 in HIT_EVERY crosses the threshold."""
    from impetus.replay.producer import make_producer
    from impetus.topics import end_offsets

    spec = JOBS["urban"]
    tag = f"{run}-{'eo' if delivery == 'exactly-once' else 'alo'}"
    topic = f"bench.{run}.latency.{tag}"
    create_topics(settings, [topic, f"{topic}.dlq"])
    watch = AlertWatch(settings, "alerts.auckland")
    watch.start()
    producer = make_producer(settings, linger_ms=0, acks=1)
    args = job_args(spec, {"sensors.readings": topic}, rules, f"bench.{tag}.{uuid.uuid4().hex[:6]}", delivery, False)
    log(f"latency ({delivery}): starting urban_anomalies unbounded")
    process = start(args)
    sampler = Sampler(process.pid)
    sampler.start()
    sent: dict[str, float] = {}
    try:
        # warm up: wait until the job answers a threshold reading
        deadline, probe = time.monotonic() + 240, 0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"job exited {process.returncode}:\n{process.stdout.read()[-4000:]}")
            sensor = f"bench-{tag}-warm-{probe}"
            producer.send(topic, json.dumps(reading(sensor, 5000.0, time.time())).encode(),
                          timestamp_ms=int(time.time() * 1000))
            producer.flush()
            probe += 1
            if any(s.startswith(f"bench-{tag}-warm-") for s in watch.received):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the job raised no alert within 240 s of start")
            time.sleep(1.0)
        log(f"latency ({delivery}): job answering; {rate:.0f} readings/s for {seconds:.0f} s")
        began = time.perf_counter()
        i = 0
        total = int(rate * seconds)
        while i < total:
            wait = began + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            moment = time.time()
            if i % HIT_EVERY == 0:
                sensor, value = f"bench-{tag}-hit-{i}", 5000.0
                sent[sensor] = moment
            else:
                sensor, value = f"bench-{tag}-n-{i % 40}", 100.0
            producer.send(topic, json.dumps(reading(sensor, value, moment)).encode(),
                          timestamp_ms=int(moment * 1000))
            i += 1
        producer.flush()
        achieved = total / (time.perf_counter() - began)
        # stragglers, then quiet: no record written since the last checkpoint leaves no open transaction
        time.sleep(3 + 3 * settings.flink_checkpoint_interval_ms / 1000 + 5)
    finally:
        watch.stopped.set()
        sampler.stopped.set()
        _kill_group(process.pid)
        process.wait()
        producer.close()
        watch.join()
        sampler.join()
    open_txn = end_offsets(settings, "alerts.auckland", False) != end_offsets(settings, "alerts.auckland", True)
    if open_txn:
        log("warning: alerts.auckland has an open transaction after the kill (it times out in 10 min)")
    delete_topics(settings, [topic, f"{topic}.dlq"])
    latencies = sorted((watch.received[s] - t) * 1000 for s, t in sent.items() if s in watch.received)
    return {"delivery": delivery, "rate": rate, "achieved_rate": achieved, "seconds": seconds,
            "sent_hits": len(sent), "alerts_received": len(latencies),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1] if latencies else None, "peak_mb": sampler.peak}


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
    if results["latency"]:
        lines += ["", "| urban_anomalies latency | offered ev/s | hits | alerts | p50 ms | p99 ms | max ms | peak MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for entry in results["latency"]:
            lines.append(f"| {entry['delivery']} | {entry['achieved_rate']:.0f} | {entry['sent_hits']} | "
                         f"{entry['alerts_received']} | {fmt(entry['p50_ms'])} | {fmt(entry['p99_ms'])} | "
                         f"{fmt(entry['max_ms'])} | {entry['peak_mb']:.0f} |")
    return "\n".join(lines)


def fmt(value) -> str:
    return "-" if value is None else f"{value:.0f}"


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
    plt = pyplot()
    if plt is None:
        return
    entries = results["throughput"]
    if not entries:
        return
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


# ------------------------------------------------------------------------------------------ main

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/streaming.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smaller runs: {SIZES['quick']} events per job, {LATENCY_SECONDS['quick']:.0f} s latency "
                        f"phases (default {SIZES['full']}, {LATENCY_SECONDS['full']:.0f} s)")
    p.add_argument("--jobs", default="urban,cyber,text", help="comma-separated subset of urban,cyber,text "
                                                              "(default %(default)s)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency phases")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/<timestamp>.json)")
    # internal: the pass-through job and the plain loop run in their own processes (timed, memory sampled)
    p.add_argument("--passthrough", help=argparse.SUPPRESS)
    p.add_argument("--sink", help=argparse.SUPPRESS)
    p.add_argument("--plain", choices=sorted(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--topics", help=argparse.SUPPRESS)
    p.add_argument("--group-id", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.passthrough:
        passthrough(args.passthrough.split(","), args.sink, args.group_id)
        return 0
    if args.plain:
        plain(args.plain, dict(pair.split("=", 1) for pair in args.topics.split(",")), args.group_id)
        return 0

    from impetus.config import load_settings

    names = choose(args.jobs, JOBS, "--jobs")
    mode = "quick" if args.quick else "full"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
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
        for name in names:
            results["throughput"].append(throughput(settings, name, SIZES[mode], run, rules))
            _save(results, out)
        if "urban" in names and not args.no_latency:
            urban = next(e for e in results["throughput"] if e["job"] == "urban_anomalies")
            rate = urban["runs"]["flink"]["rate"] / 2
            # at half the bounded rate (the target's condition), and at a light load (the floor)
            for offered in (rate, LIGHT_RATE):
                for delivery in ("at-least-once", "exactly-once"):
                    results["latency"].append(latency(settings, run, rules, offered, LATENCY_SECONDS[mode],
                                                      delivery))
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
