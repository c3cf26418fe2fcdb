"""Benchmark of the lakehouse (Kafka -> Delta bronze, analysis on silver), side by side in one run.

Three parts, each against its own temporary lake under /tmp (removed at the end):

- **landing**: the first N real Auckland sensor readings (``impetus.replay.sensors``) are produced
  to a private topic (3 partitions like ``sensors.readings``, ``retention.ms=-1``, deleted
  afterwards) and landed into a fresh bronze table by ``impetus.landing.land`` in a process of its
  own; the Spark session start is timed apart from ``land()``. The same messages also go through
  the simple alternative, one Python process: kafka-python consumer -> ``treat_payload`` (the
  landing's own per-message function) -> Arrow -> ``deltalake.write_deltalake`` in batches.
  Rate per size = N / time; a straight-line fit of time against N over the sizes splits each into a
  fixed cost and a marginal rate.
- **queries**: a ``silver.sensor_readings`` Delta table of 1M and 10M rows is generated with Spark
  through the lake's own silver transform (the real 1.22M readings, tiled over synthetic copies of
  the sensors and areas for more rows; deterministic). Three analysis queries run on Spark (the
  lake's ``gold_area_hourly`` / ``gold_sensor_profile`` and Spark SQL) and on DuckDB (SQL over the
  same Delta table read with delta-rs as an Arrow dataset), each engine in one process of its own
  that queries the tables smallest first; the results of the two engines are compared row by row.
  Spark also runs the profile with broadcast joins off (``sensor_profile_no_broadcast``).
- **memory**: the sensor profile (median and MAD per sensor and hour of week) of the largest table
  under one cap on resident memory (the run's process group is killed above it, as a container's
  limit would): pandas (deltalake -> pandas -> groupby; the whole table, and only the columns it
  needs), Spark at ``IMPETUS_SPARK_DRIVER_MEMORY=1g`` (as the lake plans it, and with broadcast joins
  off) and DuckDB (its default ``memory_limit``, and ``'1GB'``). pandas
  is also run without a cap (what it needs) and under an address-space limit (``RLIMIT_AS``), the
  in-process way, which a JVM cannot start under (tried too).

Peak memory = max over 0.5 s samples of the summed ``VmHWM`` of a run's process group (Python
driver, JVM, Python workers). Figures are ratios within one run on one machine, never asserted.
Results go to bench/results/lakehouse-<timestamp>.json (and a PNG chart next to it); BENCHMARKS.md
holds the command and the tables of a run.

    .venv/bin/python bench/lakehouse.py                      # full run (~16 min on 2 idle cores)
    .venv/bin/python bench/lakehouse.py --parts landing      # one part (each under about 20 minutes)
    .venv/bin/python bench/lakehouse.py --quick              # small sizes
    .venv/bin/python bench/lakehouse.py --parts queries --rows 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# shared with the sibling benchmark
from streaming import Sampler, choose, delete_topics, log, pyplot, write_chart  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()

PARTS = ("landing", "queries", "memory")
SIZES = {"full": (20_000, 100_000, 400_000), "quick": (5_000, 20_000, 50_000)}
ROWS = {"full": (1_000_000, 10_000_000), "quick": (200_000, 1_000_000)}
# below about 1.5 GB of address space, importing pyarrow, deltalake and duckdb fails already
CAP_GB = {"full": 2.5, "quick": 1.5}
# each query runs REPEAT times per engine on tables of up to REPEAT_UP_TO rows (the best time is reported), once
# on larger ones (both engines are warm by then: the tables are queried smallest first in one process per engine)
REPEAT = 2
REPEAT_UP_TO = 2_000_000
PLAIN_BATCH = 50_000        # rows per Delta commit of the plain landing loop
LAND_PARTITIONS = 3         # as sensors.readings in schemas/topics.yaml
# a fixed, non-secret key: pseudonyms do not matter here, only that landing has a key to use
BENCH_KEY = "impetus-benchmark-pseudonym-key-not-a-secret"
INGESTED_AT = "2026-01-01 00:00:00"   # fixed landing time of the generated silver rows (deterministic)
ARROW = {"spark.sql.execution.arrow.pyspark.enabled": "true"}
PROFILE_CELL = ["tenant", "sensor_id", "kind", "hour_of_week"]


# ------------------------------------------------------------------------------------ processes

def group_rss_bytes(pgid: int) -> int:
    """Sum of VmRSS over the live processes of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                if int(handle.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry}/status") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) * 1024
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return total


class RssCap(threading.Thread):
    """Kills process group ``pgid`` once its resident memory exceeds ``cap`` bytes, as a container's
    memory limit would (checked every 0.2 s, so a spike shorter than that can pass)."""

    def __init__(self, pgid: int, cap: int):
        super().__init__(daemon=True)
        self.pgid, self.cap, self.killed_at, self.stopped = pgid, cap, None, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            rss = group_rss_bytes(self.pgid)
            if rss > self.cap:
                self.killed_at = rss
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            self.stopped.wait(0.2)


def run_child(task: str, spec: dict, work: Path, env: dict | None = None, timeout: float = 1800,
              rss_cap: int | None = None) -> dict:
    """Run ``task`` of this script in its own process group: its JSON result, wall seconds, peak MB, exit code.

    ``rss_cap``: kill the group when its resident memory exceeds this many bytes (:class:`RssCap`).
    """
    result_path = work / f"{task}-{uuid.uuid4().hex[:6]}.json"
    spec_path = result_path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--child", task, "--spec", str(spec_path),
                                "--result", str(result_path)], cwd=ROOT, start_new_session=True,
                               env={**os.environ, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(process.pid)
    sampler.start()
    watchdog = RssCap(process.pid, rss_cap) if rss_cap else None
    if watchdog:
        watchdog.start()
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        output, _ = process.communicate()
        timed_out = True
    finally:
        sampler.stopped.set()
        sampler.join()
        if watchdog:
            watchdog.stopped.set()
            watchdog.join()
    seconds = time.monotonic() - began
    try:
        os.killpg(process.pid, 9)   # stray Python workers, if any
    except ProcessLookupError:
        pass
    figures = json.loads(result_path.read_text()) if result_path.is_file() else {}
    # other work on the machine slows a run down: the 1-minute load average before and after says how busy it was
    figures.update(wall_s=seconds, peak_mb=sampler.peak, returncode=process.returncode,
                   load_1min=[load_before, os.getloadavg()[0]])
    if process.returncode != 0:
        figures["output_tail"] = output[-3000:]
        figures["error_lines"] = error_lines(output)
    if timed_out:
        figures["timed_out_after_s"] = timeout
    if watchdog and watchdog.killed_at:
        figures["killed_at_rss_mb"] = watchdog.killed_at / 2 ** 20
    return figures


def error_lines(output: str, most: int = 6) -> list[str]:
    """The first distinct lines of ``output`` that name an error (not stack frames)."""
    found = []
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("at ") or not any(w in text for w in ("Error", "Exception", "error:")):
            continue
        if text[:200] not in found:
            found.append(text[:200])
        if len(found) >= most:
            break
    return found


def first_line(err: BaseException) -> str:
    """What went wrong, in one line; for an error from the JVM its innermost Java cause."""
    text = str(err).strip().splitlines()
    java = ([line[len("Caused by: "):] for line in text if line.startswith("Caused by: ")][-1:]
            or [line[2:] for line in text if line.startswith(": ")][:1])
    return java[0][:240] if java else f"{type(err).__name__}: {text[0][:240] if text else ''}"


def check(figures: dict, what: str) -> dict:
    if figures["returncode"] != 0:
        raise RuntimeError(f"{what} exited {figures['returncode']}:\n{figures.get('output_tail', '')}")
    return figures


def lake_env(lake: Path, **extra: str) -> dict:
    return {"IMPETUS_LAKE_URI": (lake / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (lake / "checkpoints").as_uri(),
            "IMPETUS_PSEUDONYM_KEY": BENCH_KEY, **extra}


# -------------------------------------------------------------------------------------- landing

def land_spark(spec: dict) -> dict:
    """``impetus.landing.land`` of one topic into the lake of this process's environment."""
    from impetus.config import load_settings
    from impetus.landing import land
    from impetus.spark import spark_session

    settings = load_settings()
    began = time.perf_counter()
    spark_session(settings, "land_bronze")      # land() gets this session back from getOrCreate
    session_s = time.perf_counter() - began
    began = time.perf_counter()
    summary = land(settings, ["sensors_readings"], sources={"sensors_readings": spec["topic"]},
                   max_per_batch=spec["max_per_batch"])[0]
    return {"session_s": session_s, "land_s": time.perf_counter() - began, "summary": summary}


def land_plain(spec: dict) -> dict:
    """The simple alternative in one process: kafka-python -> treat_payload -> Arrow -> write_deltalake."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    from deltalake import write_deltalake
    from kafka import KafkaConsumer, TopicPartition
    from pyspark.sql.pandas.types import to_arrow_schema

    from impetus.config import load_settings
    from impetus.landing import LANDING_COLUMNS, QUARANTINE_TABLE, bronze_table, treat_payload
    from impetus.privacy import load_keyring
    from impetus.schemas import load_schema, spark_schema
    from impetus.topics import end_offsets

    began = time.perf_counter()
    settings = load_settings()
    table = bronze_table(settings, "sensors_readings")
    keyring = load_keyring(settings)
    bronze = settings.lake_path("bronze", table.name)
    quarantine = settings.lake_path("quarantine", QUARANTINE_TABLE)
    # nullable throughout, as Spark's from_json output is
    schema = pa.schema([f.with_nullable(True) for f in to_arrow_schema(spark_schema(load_schema(table.schema_name)))])
    event_schema = pa.schema([f for f in schema if f.name not in LANDING_COLUMNS])
    parse = pj.ParseOptions(explicit_schema=event_schema, unexpected_field_behavior="ignore")
    ends = {TopicPartition(spec["topic"], p): end for p, end in end_offsets(settings, spec["topic"]).items() if end}
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    consumer.assign(list(ends))
    for tp in ends:
        consumer.seek(tp, 0)
    pending: dict[str, list] = {"doc": [], "partition": [], "offset": [], "timestamp": []}
    rejected: list[dict] = []
    counts = {"messages_in": 0, "landed": 0, "quarantined": 0, "commits": 0}
    setup_s = time.perf_counter() - began

    def flush() -> None:
        if not pending["doc"]:
            return
        events = pj.read_json(io.BytesIO("\n".join(pending["doc"]).encode("utf-8")), parse_options=parse)
        n = events.num_rows
        event_time = events.column(table.event_time)
        columns = {name: events.column(name) for name in event_schema.names}
        columns.update(
            kafka_topic=pa.array([spec["topic"]] * n), kafka_partition=pa.array(pending["partition"], pa.int64()),
            kafka_offset=pa.array(pending["offset"], pa.int64()),
            kafka_timestamp=pa.array(pending["timestamp"], pa.timestamp("ms", tz="UTC")),
            ingested_at=pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
            event_date=pc.cast(event_time, pa.date32()),
            event_month=pc.cast(pc.floor_temporal(event_time, unit="month"), pa.date32()),
            pseudonym_key=pa.array([keyring.current_id] * n))
        rows = pa.table([pc.cast(columns[f.name], f.type) for f in schema], schema=schema)
        write_deltalake(bronze, rows, mode="append", partition_by=list(table.partition_by))
        counts["landed"] += n
        counts["commits"] += 1
        for values in pending.values():
            values.clear()

    while ends:
        for tp, messages in consumer.poll(timeout_ms=500, max_records=10_000).items():
            for message in messages:
                if message.offset >= ends.get(tp, 0):
                    continue
                counts["messages_in"] += 1
                doc, reason, excerpt = treat_payload(table.event_schema, message.value, keyring.current)
                if doc is None:
                    rejected.append({"bronze_table": table.name, "kafka_topic": tp.topic,
                                     "kafka_partition": tp.partition, "kafka_offset": message.offset,
                                     "reason": reason, "payload_redacted": excerpt})
                    continue
                pending["doc"].append(doc)
                pending["partition"].append(tp.partition)
                pending["offset"].append(message.offset)
                pending["timestamp"].append(message.timestamp)
            if len(pending["doc"]) >= spec["batch"]:
                flush()
            if tp in ends and consumer.position(tp) >= ends[tp]:
                del ends[tp]
    flush()
    if rejected:
        write_deltalake(quarantine, pa.Table.from_pylist(rejected), mode="append", partition_by=["bronze_table"])
        counts["quarantined"] = len(rejected)
    consumer.close()
    return {"setup_s": setup_s, "land_s": time.perf_counter() - began - setup_s, "summary": counts}


def treat_probe(payloads: list[bytes]) -> dict:
    """Messages/s of ``treat_payload`` alone, as it is and with the schema directory looked up once."""
    import impetus.schemas
    from impetus.config import load_settings
    from impetus.landing import treat_payload
    from impetus.privacy import load_keyring

    key = load_keyring(load_settings(), env={"IMPETUS_PSEUDONYM_KEY": BENCH_KEY}).current
    rates = {}
    looked_up = impetus.schemas.schemas_dir
    folder = looked_up()
    try:
        for variant in ("as_is", "schemas_dir_once"):
            if variant == "schemas_dir_once":
                impetus.schemas.schemas_dir = lambda: folder   # this process only, to size the finding
            began = time.perf_counter()
            for payload in payloads:
                treat_payload("sensors.readings", payload, key)
            rates[variant] = len(payloads) / (time.perf_counter() - began)
    finally:
        impetus.schemas.schemas_dir = looked_up
    return rates


def fit(points: list[tuple[int, float]]) -> dict:
    """Least-squares line seconds = fixed + events / rate over (events, seconds)."""
    if len(points) < 2:
        return {"fixed_s": None, "rate": None}
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return {"fixed_s": my - slope * mx, "rate": 1 / slope if slope > 0 else None}


def bronze_digest(path: str) -> dict:
    """Rows, distinct sensors and value total of a bronze table: the two landings must agree."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    con.register("bronze", DeltaTable(path).to_pyarrow_dataset())
    rows, sensors, total, first, last = con.execute(
        "SELECT count(*), count(DISTINCT sensor_id), sum(value), min(event_time), max(event_time) FROM bronze"
    ).fetchone()
    return {"rows": rows, "sensors": sensors, "value_sum": total, "first": str(first), "last": str(last)}


def landing(settings, sizes: list[int], work: Path, run: str) -> dict:
    from kafka.admin import NewTopic

    from impetus.alerts import parse_time
    from impetus.replay.producer import make_producer
    from impetus.replay.sensors import readings
    from impetus.topics import admin_client

    result = {"sizes": sizes, "max_per_batch": 200_000, "plain_batch": PLAIN_BATCH, "runs": []}
    log(f"landing: reading {max(sizes):,} real sensor readings")
    docs = []
    for doc in readings("2019-01-01"):
        docs.append(doc)
        if len(docs) >= max(sizes):
            break
    topics = {n: f"bench.{run}.land.{n}" for n in sizes}
    admin = admin_client(settings)
    admin.create_topics([NewTopic(t, LAND_PARTITIONS, 1, topic_configs={"retention.ms": "-1"})
                         for t in topics.values()])
    admin.close()
    try:
        payloads = [(json.dumps(d).encode("utf-8"), int(parse_time(d["event_time"]).timestamp() * 1000)) for d in docs]
        producer = make_producer(settings, linger_ms=50, batch_size=1 << 20)
        for n, topic in topics.items():
            for value, stamp in payloads[:n]:
                producer.send(topic, value, timestamp_ms=stamp)   # stamped with event time, as replays are
            producer.flush()
            log(f"landing: produced {n:,} readings to {topic}")
        producer.close()
        log("landing: treat_payload alone (per-message ceiling of both landings)")
        result["treat_payload_rate"] = treat_probe([value for value, _ in payloads[:20_000]])
        log("landing: treat_payload " + ", ".join(f"{k} {v:,.0f}/s" for k, v in result["treat_payload_rate"].items()))
        for n in sizes:
            entry = {"events": n}
            for variant, task in (("spark", "land-spark"), ("plain", "land-plain")):
                lake = work / f"landing-{variant}-{n}"
                log(f"landing: {variant} over {n:,} events ...")
                figures = check(run_child(task, {"topic": topics[n], "max_per_batch": result["max_per_batch"],
                                                 "batch": PLAIN_BATCH}, work, env=lake_env(lake)), f"{task} {n}")
                summary = figures["summary"]
                if summary["messages_in"] != n:
                    raise RuntimeError(f"{variant} landing read {summary['messages_in']} of {n} messages: {summary}")
                figures["rate"] = n / figures["land_s"]
                figures["digest"] = bronze_digest(str(lake / "lake" / "bronze" / "sensors_readings"))
                entry[variant] = figures
                log(f"landing: {variant} n={n:,}: land {figures['land_s']:.1f} s ({figures['rate']:,.0f} ev/s), "
                    f"start-up {figures.get('session_s', figures.get('setup_s')):.1f} s, landed {summary['landed']:,}, "
                    f"quarantined {summary['quarantined']}, process {figures['wall_s']:.1f} s, "
                    f"peak {figures['peak_mb']:.0f} MB")
            entry["same_rows"] = entry["spark"]["digest"] == entry["plain"]["digest"]
            if not entry["same_rows"]:
                log(f"landing: the two bronze tables differ: {entry['spark']['digest']} vs {entry['plain']['digest']}")
            result["runs"].append(entry)
    finally:
        delete_topics(settings, list(topics.values()))
    for variant in ("spark", "plain"):
        result[f"{variant}_fit"] = fit([(e["events"], e[variant]["land_s"]) for e in result["runs"]])
    return result


# ------------------------------------------------------------------------------- silver tables

def generate(spec: dict) -> dict:
    """silver.sensor_readings tables of the sizes asked, through the lake's own silver transform.

    Row i of copy c (0 = the real readings, in load order) is kept while c * R + i < N (R real
    readings); copies c > 0 are synthetic sensors ``<id>-x<c>`` in areas ``<area> ~<c>`` with
    values scaled by 1 + c/10, so larger tables have more sensors and areas, not more readings
    per sensor and hour.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    from impetus.config import load_settings
    from impetus.lake import conform, silver_sensor_readings
    from impetus.replay.sensors import SOURCE, TENANT, area_of, load_counts, sensor_id
    from impetus.spark import spark_session

    settings = load_settings()
    spark = spark_session(settings, "bench_generate", ARROW)
    counts = load_counts()
    real = pd.DataFrame({"i": range(len(counts)), "sensor_id": counts["address"].map(sensor_id),
                         "area": counts["address"].map(area_of), "value": counts["value"].astype(float),
                         "lat": counts["lat"], "lon": counts["lon"],
                         "event_time": counts["event_time"].dt.tz_convert("UTC")})
    frame = spark.createDataFrame(real).cache()
    made = {"real_readings": len(real), "tables": {}}
    for n in spec["rows"]:
        began = time.perf_counter()
        copies = math.ceil(n / len(real))
        copy = F.col("copy")
        synthetic = copy > 0
        tiled = (frame.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
                 .where(copy * len(real) + F.col("i") < n))
        area = F.when(synthetic, F.concat("area", F.lit(" ~"), copy)).otherwise(F.col("area"))
        location = F.struct(area.alias("area"), (F.col("lat") + copy * 0.001).alias("lat"),
                            (F.col("lon") + copy * 0.001).alias("lon"))
        sensor = F.when(synthetic, F.concat("sensor_id", F.lit("-x"), copy)).otherwise(F.col("sensor_id"))
        bronze_like = (tiled.select(
            F.lit(TENANT).alias("tenant"),
            sensor.alias("sensor_id"),
            F.lit("pedestrian_count").alias("kind"), F.round(F.col("value") * (1 + copy / 10)).alias("value"),
            F.lit("persons/h").alias("unit"), "event_time", location.alias("location"), F.lit(SOURCE).alias("source"),
            F.lit(INGESTED_AT).cast("timestamp").alias("ingested_at"))
            .withColumn("event_date", F.to_date("event_time"))
            .withColumn("event_month", F.trunc("event_date", "month")))
        path = f"{spec['root']}/rows-{n}/lake/silver/sensor_readings"
        (conform(silver_sensor_readings(bronze_like, settings), "silver.sensor_readings")
         .repartition("tenant", "event_month").write.format("delta").mode("overwrite")
         .partitionBy("tenant", "event_month").save(path))
        files = [p for p in Path(path).rglob("*.parquet")]
        made["tables"][str(n)] = {"path": path, "rows": spark.read.format("delta").load(path).count(),
                                  "copies": copies, "files": len(files),
                                  "mb": sum(p.stat().st_size for p in files) / 1e6,
                                  "seconds": time.perf_counter() - began}
    return made


# ------------------------------------------------------------------------------------ queries

AREA_WEEK_SQL = """
WITH area_hourly AS (
    SELECT tenant, area, kind, date_trunc('hour', event_time) AS hour, min(hour_of_week) AS hour_of_week,
           count(DISTINCT sensor_id) AS sensors, sum(value) AS value_sum
    FROM silver WHERE area IS NOT NULL
    GROUP BY tenant, area, kind, date_trunc('hour', event_time))
SELECT tenant, area, kind, hour_of_week, count(*) AS hours, avg(value_sum) AS mean_hourly,
       max(value_sum) AS max_hourly, avg(sensors) AS mean_sensors
FROM area_hourly GROUP BY tenant, area, kind, hour_of_week
"""

# {pct}(x, q): percentile in Spark, quantile_cont in DuckDB (both exact, linear interpolation)
PROFILE_SQL = """
WITH stats AS (
    SELECT tenant, sensor_id, kind, hour_of_week, {first_area} AS area, count(value) AS n, avg(value) AS mean,
           {pct}(value, 0.5) AS median, {pct}(value, 0.1) AS p10, {pct}(value, 0.9) AS p90,
           min(event_time) AS first_time, max(event_time) AS last_time
    FROM silver GROUP BY tenant, sensor_id, kind, hour_of_week),
mad AS (
    SELECT r.tenant, r.sensor_id, r.kind, r.hour_of_week, {pct}(abs(r.value - s.median), 0.5) AS mad
    FROM silver r JOIN stats s ON r.tenant = s.tenant AND r.sensor_id = s.sensor_id AND r.kind = s.kind
                               AND r.hour_of_week = s.hour_of_week
    GROUP BY r.tenant, r.sensor_id, r.kind, r.hour_of_week)
SELECT s.*, m.mad FROM stats s JOIN mad m ON s.tenant = m.tenant AND s.sensor_id = m.sensor_id AND s.kind = m.kind
                                          AND s.hour_of_week = m.hour_of_week
"""

# busiest areas on Friday nights (local Friday 18:00 to Saturday 04:00) of one year; the event_month
# bounds let both engines skip partitions (local dates of Auckland run ahead of UTC ones)
FRIDAY_TOP_SQL = """
SELECT tenant, area, sum(value) AS people, count(DISTINCT sensor_id) AS sensors, count(*) AS readings
FROM silver
WHERE event_month BETWEEN DATE '{year_before}-12-01' AND DATE '{year}-12-01'
  AND year(local_date) = {year} AND hour_of_week BETWEEN 114 AND 123 AND area IS NOT NULL
GROUP BY tenant, area
ORDER BY people DESC, area
LIMIT 10
"""
TOP_YEAR = 2019

QUERIES = {
    "area_week": {"keys": ["tenant", "area", "kind", "hour_of_week"], "ordered": False,
                  "what": "hourly volume per area and hour of week (gold.area_hourly, then per hour of week)"},
    "sensor_profile": {"keys": PROFILE_CELL, "ordered": False,
                       "what": "n, mean, median, p10, p90, MAD per sensor and hour of week (gold.sensor_profile)"},
    "friday_top": {"keys": ["tenant", "area"], "ordered": True,
                   "what": f"top 10 areas by people on Friday nights in {TOP_YEAR}"},
    # gold_sensor_profile's joins may be planned as broadcast joins (one of them, since made a sort-merge join,
    # ran Spark out of memory at 10M rows); this variant turns broadcasting off (Spark only; DuckDB's
    # sensor_profile result is its reference)
    "sensor_profile_no_broadcast": {"keys": PROFILE_CELL, "ordered": False, "duckdb": "sensor_profile",
                                    "spark_conf": {"spark.sql.autoBroadcastJoinThreshold": "-1"},
                                    "what": "sensor_profile with spark.sql.autoBroadcastJoinThreshold=-1"},
}


def friday_sql() -> str:
    return FRIDAY_TOP_SQL.format(year=TOP_YEAR, year_before=TOP_YEAR - 1)


def spark_queries(spark, settings) -> dict:
    """Query name -> function returning the Spark DataFrame; the lake's own gold code where it exists."""
    from pyspark.sql import functions as F

    from impetus.lake import gold_area_hourly, gold_sensor_profile

    def area_week():
        return (gold_area_hourly(spark, settings).groupBy("tenant", "area", "kind", "hour_of_week")
                .agg(F.count("*").alias("hours"), F.avg("value_sum").alias("mean_hourly"),
                     F.max("value_sum").alias("max_hourly"), F.avg("sensors").alias("mean_sensors")))

    def sensor_profile():
        return gold_sensor_profile(spark, settings)

    def friday_top():
        silver = spark.read.format("delta").load(settings.lake_path("silver", "sensor_readings"))
        silver.createOrReplaceTempView("silver")
        return spark.sql(friday_sql())

    return {"area_week": area_week, "sensor_profile": sensor_profile, "friday_top": friday_top,
            "sensor_profile_no_broadcast": sensor_profile}


def duckdb_sql(name: str) -> str:
    if name == "area_week":
        return AREA_WEEK_SQL
    if name == "sensor_profile":
        return PROFILE_SQL.format(pct="quantile_cont", first_area="any_value(area)")
    return friday_sql()


def query_spark(spec: dict) -> dict:
    """Every query on every table of ``spec``, smallest first, in one Spark session."""
    from impetus.config import load_settings
    from impetus.spark import spark_session

    base = load_settings()
    began = time.perf_counter()
    spark = spark_session(base, "bench_queries", ARROW)
    figures = {"session_s": time.perf_counter() - began, "tables": {}}
    for table in spec["tables"]:
        settings = dataclasses.replace(base, lake_uri=table["lake_uri"])
        done = figures["tables"][str(table["rows"])] = {}
        for name, query in spark_queries(spark, settings).items():
            times = []
            conf = QUERIES[name].get("spark_conf", {})
            before = {key: spark.conf.get(key) for key in conf}
            try:
                for key, value in conf.items():
                    spark.conf.set(key, value)
                for _ in range(table["repeat"]):
                    began = time.perf_counter()
                    frame = query().toPandas()
                    times.append(time.perf_counter() - began)
            except Exception as err:  # noqa: BLE001 - a failed query is a result too (e.g. out of memory)
                done[name] = {"seconds": times, "error": first_line(err), "failed_after_s": time.perf_counter() - began}
                continue
            finally:
                for key, value in before.items():
                    spark.conf.set(key, value)
            frame.to_parquet(Path(table["out"]) / f"spark-{name}.parquet")
            done[name] = {"seconds": times, "rows": len(frame)}
            print(f"spark {table['rows']} {name}: {times}", flush=True)
    return figures


def duckdb_connection(threads: int | None = None, memory_limit: str | None = None, temp: str | None = None):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if temp:
        con.execute(f"SET temp_directory = '{temp}'")
    return con


def query_duckdb(spec: dict) -> dict:
    """Every query on every table of ``spec``, smallest first, in one process."""
    from deltalake import DeltaTable

    figures = {"tables": {}}
    for table in spec["tables"]:
        done = figures["tables"][str(table["rows"])] = {}
        for name in [q for q, spec in QUERIES.items() if "duckdb" not in spec]:
            times = []
            try:
                for _ in range(table["repeat"]):
                    began = time.perf_counter()
                    # a new connection on the table's current snapshot each time, as Spark's spark.read opens it anew
                    con = duckdb_connection()
                    con.register("silver", DeltaTable(table["path"]).to_pyarrow_dataset())
                    frame = con.execute(duckdb_sql(name)).df()
                    times.append(time.perf_counter() - began)
                    figures["threads"] = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
                    con.close()
            except Exception as err:  # noqa: BLE001 - a failed query is a result too (e.g. out of memory)
                done[name] = {"seconds": times, "error": first_line(err), "failed_after_s": time.perf_counter() - began}
                continue
            frame.to_parquet(Path(table["out"]) / f"duckdb-{name}.parquet")
            done[name] = {"seconds": times, "rows": len(frame)}
    return figures


def normalised(frame):
    """Timestamps as naive UTC, so results of both engines compare."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("datetime64[us]")
    return frame


def compare(left, right, keys: list[str], ordered: bool, rtol: float = 1e-9) -> dict:
    """Same rows (by ``keys``, in order if ``ordered``) and values within ``rtol``?"""
    import numpy as np
    import pandas as pd

    left, right = normalised(left), normalised(right)
    outcome = {"rows": [len(left), len(right)], "max_rel_diff": 0.0, "differing_columns": []}
    if len(left) != len(right) or sorted(left.columns) != sorted(right.columns):
        outcome.update(same=False, why="row counts or columns differ")
        return outcome
    right = right[list(left.columns)]
    if not ordered:
        left = left.sort_values(keys, kind="stable").reset_index(drop=True)
        right = right.sort_values(keys, kind="stable").reset_index(drop=True)
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            both_nan = np.isnan(x) & np.isnan(y)
            scale = np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-12)
            rel = np.where(both_nan, 0.0, np.abs(x - y) / scale)
            worst = float(np.nanmax(rel)) if len(rel) else 0.0
            outcome["max_rel_diff"] = max(outcome["max_rel_diff"], worst)
            if not worst <= rtol:
                outcome["differing_columns"].append(column)
        elif not a.astype(str).equals(b.astype(str)):
            outcome["differing_columns"].append(column)
    outcome["same"] = not outcome["differing_columns"]
    return outcome


def queries(rows: list[int], work: Path, repeat: int | None) -> dict:
    import pandas as pd

    log(f"queries: generating silver.sensor_readings of {', '.join(f'{n:,}' for n in rows)} rows with Spark")
    made = check(run_child("generate", {"rows": rows, "root": str(work)}, work, timeout=2400), "generate")
    result = {"real_readings": made["real_readings"], "generate_s": made["wall_s"],
              "queries": {name: spec["what"] for name, spec in QUERIES.items()}, "tables": [], "engines": {}}
    spec = {"tables": []}
    for n in rows:
        table = made["tables"][str(n)]
        log(f"queries: {n:,} rows ({table['rows']:,} written, {table['files']} files, {table['mb']:.0f} MB, "
            f"{table['seconds']:.0f} s to write)")
        out = work / f"results-{n}"
        out.mkdir(exist_ok=True)
        spec["tables"].append({"rows": n, "path": table["path"], "lake_uri": Path(table["path"]).parents[1].as_uri(),
                               "out": str(out), "repeat": repeat or (REPEAT if n <= REPEAT_UP_TO else 1)})
        result["tables"].append({"rows": n, "table": table, "repeat": spec["tables"][-1]["repeat"], "engines": {},
                                 "same": {}})
    for engine in ("spark", "duckdb"):
        log(f"queries: {engine} ...")
        figures = check(run_child(f"query-{engine}", spec, work, env=lake_env(work / "unused"), timeout=3600),
                        f"{engine} queries")
        for entry in result["tables"]:
            entry["engines"][engine] = figures["tables"][str(entry["rows"])]
            log(f"queries: {engine} on {entry['rows']:,} rows: " + ", ".join(
                f"{q} {seconds(f)}" for q, f in entry["engines"][engine].items()))
        result["engines"][engine] = {k: v for k, v in figures.items() if k != "tables"}
        log(f"queries: {engine}: process {figures['wall_s']:.0f} s, peak {figures['peak_mb']:.0f} MB")
    for entry in result["tables"]:
        out = work / f"results-{entry['rows']}"
        for name, query in QUERIES.items():
            duck = query.get("duckdb", name)
            if "error" in entry["engines"]["spark"][name] or "error" in entry["engines"]["duckdb"][duck]:
                entry["same"][name] = None
                continue
            same = entry["same"][name] = compare(pd.read_parquet(out / f"spark-{name}.parquet"),
                                                 pd.read_parquet(out / f"duckdb-{duck}.parquet"),
                                                 query["keys"], query["ordered"])
            log(f"queries: {name} on {entry['rows']:,} rows: {'same' if same['same'] else 'DIFFERENT'} results "
                f"({same['rows'][0]} rows, max relative difference {same['max_rel_diff']:.1e})")
    return result


# ------------------------------------------------------------------------------------- memory

def seconds(figures: dict) -> str:
    """Best time of a query, or how it failed."""
    if "error" in figures:
        return f"failed after {figures['failed_after_s']:.0f} s ({figures['error']})"
    return f"{min(figures['seconds']):.2f} s"


def limit_address_space(cap_bytes: int | None) -> None:
    if cap_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))


def profile_pandas(spec: dict) -> dict:
    """gold.sensor_profile the pandas way: the Delta table into memory, then groupby medians."""
    limit_address_space(spec.get("cap_bytes"))
    figures = {"cap_bytes": spec.get("cap_bytes")}
    began = time.perf_counter()
    try:
        from deltalake import DeltaTable

        # the whole table (the usual DeltaTable.to_pandas()), or only the columns the profile needs
        # (the most a careful pandas user can save)
        columns = None if spec["columns"] == "all" else PROFILE_CELL + ["area", "value", "event_time"]
        frame = DeltaTable(spec["path"]).to_pandas(columns=columns)
        figures["loaded_s"] = time.perf_counter() - began
        figures["frame_mb"] = frame.memory_usage(deep=True).sum() / 1e6
        frame["deviation"] = (frame["value"] - frame.groupby(PROFILE_CELL)["value"].transform("median")).abs()
        grouped = frame.groupby(PROFILE_CELL)
        profile = grouped.agg(area=("area", "first"), n=("value", "count"), mean=("value", "mean"),
                              median=("value", "median"), first_time=("event_time", "min"),
                              last_time=("event_time", "max"), mad=("deviation", "median"))
        # pandas' quantile interpolates linearly, as Spark's percentile does
        profile["p10"] = grouped["value"].quantile(0.1)
        profile["p90"] = grouped["value"].quantile(0.9)
        figures.update(outcome="completed", rows=len(profile))
        if spec.get("out"):
            profile.reset_index().to_parquet(spec["out"])
    except MemoryError as err:    # pyarrow's ArrowMemoryError is one too
        figures.update(outcome=first_line(err))
    figures["seconds"] = time.perf_counter() - began
    figures["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def profile_spark(spec: dict) -> dict:
    """gold.sensor_profile with the lake's own Spark code, at the driver memory of the environment."""
    from impetus.config import load_settings
    from impetus.lake import gold_sensor_profile
    from impetus.spark import spark_session

    limit_address_space(spec.get("cap_bytes"))
    settings = dataclasses.replace(load_settings(), lake_uri=spec["lake_uri"])
    began = time.perf_counter()
    spark = spark_session(settings, "bench_profile", {**ARROW, **spec.get("conf", {})})
    figures = {"driver_memory": settings.spark_driver_memory, "conf": spec.get("conf", {}),
               "session_s": time.perf_counter() - began}
    began = time.perf_counter()
    try:
        profile = gold_sensor_profile(spark, settings).toPandas()
    except Exception as err:  # noqa: BLE001 - running out of memory is the outcome measured here
        figures.update(outcome=first_line(err), seconds=time.perf_counter() - began)
        return figures
    figures.update(outcome="completed", rows=len(profile), seconds=time.perf_counter() - began)
    if spec.get("out"):
        profile.to_parquet(spec["out"])
    return figures


def profile_duckdb(spec: dict) -> dict:
    """The same profile in DuckDB with a memory limit (beyond it, DuckDB spills to disk where it can)."""
    limit_address_space(spec.get("cap_bytes"))
    figures = {"cap_bytes": spec.get("cap_bytes"), "memory_limit": spec.get("memory_limit")}
    began = time.perf_counter()
    try:
        from deltalake import DeltaTable

        con = duckdb_connection(memory_limit=spec.get("memory_limit"), temp=spec["temp"])
        # fetchall: DuckDB refuses other work on a connection while a result is not read to its end
        figures["memory_limit"] = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        con.register("silver", DeltaTable(spec["path"]).to_pyarrow_dataset())
        profile = con.execute(duckdb_sql("sensor_profile")).df()
        figures.update(outcome="completed", rows=len(profile))
    except Exception as err:  # noqa: BLE001 - duckdb.OutOfMemoryException and kin: the outcome is the figure
        figures.update(outcome=first_line(err))
    figures["seconds"] = time.perf_counter() - began
    figures["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def outcome_of(figures: dict) -> str:
    if figures.get("killed_at_rss_mb"):
        return f"killed at the cap (resident {figures['killed_at_rss_mb']:,.0f} MB)"
    if figures.get("timed_out_after_s"):
        return f"hung: killed after {figures['timed_out_after_s']:.0f} s"
    if figures.get("outcome"):
        return figures["outcome"]
    code = figures["returncode"]
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    lines = figures.get("error_lines") or figures.get("output_tail", "").strip().splitlines()[-1:]
    return f"exited {code}: {lines[0][:200] if lines else ''}"


def memory(path: str, cap_gb: float, work: Path) -> dict:
    """The sensor profile of one table by pandas, Spark and DuckDB under one memory cap.

    The common cap is on resident memory of the run's process group (:class:`RssCap`). An address-space
    limit (``RLIMIT_AS``) is tried too, on pandas and on Spark: it is the classic in-process way, but a
    JVM reserves far more address space than it uses and does not start under it.
    """
    import pandas as pd

    cap = int(cap_gb * 2 ** 30)
    lake_uri = Path(path).parents[1].as_uri()
    result = {"path_rows": Path(path).parents[2].name, "cap_gb": cap_gb, "runs": {}}
    spark_env = {"IMPETUS_SPARK_DRIVER_MEMORY": "1g"}
    no_broadcast = {"spark.sql.autoBroadcastJoinThreshold": "-1"}
    spill = str(work / "duckdb-spill")
    plans = [  # label, task, spec, extra environment, resident cap
        ("pandas, whole table, no cap", "profile-pandas", {"path": path, "columns": "all"}, {}, None),
        ("pandas, whole table", "profile-pandas", {"path": path, "columns": "all"}, {}, cap),
        (f"pandas, whole table, RLIMIT_AS {cap_gb:g} GB (no resident cap)", "profile-pandas",
         {"path": path, "columns": "all", "cap_bytes": cap}, {}, None),
        ("pandas, needed columns only", "profile-pandas",
         {"path": path, "columns": "needed", "out": str(work / "pandas-profile.parquet")}, {}, cap),
        (f"Spark, driver memory 1g, RLIMIT_AS {cap_gb:g} GB (no resident cap)", "profile-spark",
         {"lake_uri": lake_uri, "cap_bytes": cap}, spark_env, None),
        ("Spark, driver memory 1g (the lake's settings)", "profile-spark", {"lake_uri": lake_uri}, spark_env, cap),
        ("Spark, driver memory 1g, broadcast joins off", "profile-spark",
         {"lake_uri": lake_uri, "conf": no_broadcast, "out": str(work / "spark-profile.parquet")}, spark_env, cap),
        ("DuckDB, default memory_limit", "profile-duckdb", {"path": path, "temp": spill}, {}, cap),
        ("DuckDB, memory_limit 1GB", "profile-duckdb", {"path": path, "memory_limit": "1GB", "temp": spill}, {}, cap),
    ]
    for label, task, spec, env, rss_cap in plans:
        label += f", resident cap {cap_gb:g} GB" if rss_cap else ""
        log(f"memory: sensor profile of {result['path_rows']}, {label} ...")
        figures = run_child(task, spec, work, env=lake_env(work / "unused", **env), timeout=900, rss_cap=rss_cap)
        figures["outcome"] = outcome_of(figures)
        result["runs"][label] = figures
        log(f"memory: {label}: {figures['outcome']} after {figures.get('seconds', figures['wall_s']):.1f} s, "
            f"peak {figures['peak_mb']:.0f} MB")
    if (work / "pandas-profile.parquet").is_file() and (work / "spark-profile.parquet").is_file():
        result["pandas_vs_spark"] = compare(pd.read_parquet(work / "pandas-profile.parquet"),
                                            pd.read_parquet(work / "spark-profile.parquet"), PROFILE_CELL, False)
        log(f"memory: pandas and Spark profiles {'agree' if result['pandas_vs_spark']['same'] else 'DIFFER'}")
    return result


# ------------------------------------------------------------------------------------ reporting

def tables(results: dict) -> str:
    lines = []
    land = results.get("landing")
    if land:
        lines += ["| input events | Spark session start s | Spark land() s | Spark ev/s | plain loop s | plain ev/s | "
                  "Spark / plain time | peak MB Spark / plain | same bronze rows |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for e in land["runs"]:
            s, p = e["spark"], e["plain"]
            lines.append(f"| {e['events']:,} | {s['session_s']:.1f} | {s['land_s']:.1f} | {s['rate']:,.0f} | "
                         f"{p['land_s']:.1f} | {p['rate']:,.0f} | {s['land_s'] / p['land_s']:.2f} | "
                         f"{s['peak_mb']:.0f} / {p['peak_mb']:.0f} | {'yes' if e['same_rows'] else 'NO'} |")
        sf, pf = land["spark_fit"], land["plain_fit"]
        lines.append(f"| fit: fixed s + events / rate | | {num(sf['fixed_s'], 1)} | {num(sf['rate'])} | "
                     f"{num(pf['fixed_s'], 1)} | {num(pf['rate'])} | | | |")
        probe = land.get("treat_payload_rate")
        if probe:
            lines += ["", f"`treat_payload` alone: {probe['as_is']:,.0f} messages/s as it is; "
                          f"{probe['schemas_dir_once']:,.0f}/s with the schema directory looked up once."]
    query = results.get("queries")
    if query:
        lines += ["", "| query | rows | Spark s | DuckDB s | DuckDB / Spark | result rows | same result |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for entry in query["tables"]:
            for name, spec in QUERIES.items():
                s, d = entry["engines"]["spark"][name], entry["engines"]["duckdb"][spec.get("duckdb", name)]
                same = entry["same"][name]
                if same is None:
                    lines.append(f"| {name} | {entry['rows']:,} | {seconds(s)} | {seconds(d)} | | | |")
                    continue
                s, d = min(s["seconds"]), min(d["seconds"])
                lines.append(f"| {name} | {entry['rows']:,} | {s:.2f} | {d:.2f} | {d / s:.2f} | {same['rows'][0]:,} | "
                             f"{'yes' if same['same'] else 'NO: ' + ', '.join(same['differing_columns'])} "
                             f"(max rel. diff {same['max_rel_diff']:.0e}) |")
        s, d = query["engines"]["spark"], query["engines"]["duckdb"]
        lines += ["", f"Spark session start {s['session_s']:.1f} s (not in the query times); peak memory over all "
                      f"tables: Spark {s['peak_mb']:.0f} MB, DuckDB {d['peak_mb']:.0f} MB."]
    mem = results.get("memory")
    if mem:
        lines += ["", f"| sensor profile of {mem['path_rows']} | outcome | seconds | peak MB |", "|---|---|---:|---:|"]
        for label, f in mem["runs"].items():
            lines.append(f"| {label} | {f['outcome']} | {f.get('seconds', f['wall_s']):.1f} | {f['peak_mb']:.0f} |")
    return "\n".join(lines)


def num(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def chart(results: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    land, query = results.get("landing"), results.get("queries")
    panels = [p for p in (land, query) if p]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.2), squeeze=False)
    axes = list(axes[0])
    if land:
        ax = axes.pop(0)
        for variant, label in (("spark", "Spark land()"), ("plain", "kafka-python + deltalake")):
            xs = [e["events"] for e in land["runs"]]
            ax.plot(xs, [e[variant]["land_s"] for e in land["runs"]], "o-", label=label)
        ax.set_xlabel("events landed")
        ax.set_ylabel("seconds (Spark session start excluded)")
        ax.set_title("Landing into bronze")
        ax.legend(fontsize=8)
    if query:
        ax = axes.pop(0)
        labels, spark, duck = [], [], []
        for entry in query["tables"]:
            for name, spec in QUERIES.items():
                if entry["same"][name] is None:
                    continue
                labels.append(f"{name.replace('_no_broadcast', ', no broadcast')} {entry['rows'] / 1e6:g}M")
                spark.append(min(entry["engines"]["spark"][name]["seconds"]))
                duck.append(min(entry["engines"]["duckdb"][spec.get("duckdb", name)]["seconds"]))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], spark, 0.4, label="Spark")
        ax.bar([x + 0.2 for x in xs], duck, 0.4, label="DuckDB")
        ax.set_xticks(list(xs), labels, fontsize=7, rotation=35, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("seconds (best of runs)")
        ax.set_title("Analysis queries over the same Delta table")
        ax.legend(fontsize=8)
    write_chart(plt, fig, path)


# ------------------------------------------------------------------------------------------ main

CHILDREN = {"land-spark": land_spark, "land-plain": land_plain, "generate": generate, "query-spark": query_spark,
            "query-duckdb": query_duckdb, "profile-pandas": profile_pandas, "profile-spark": profile_spark,
            "profile-duckdb": profile_duckdb}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/lakehouse.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"small run: landing sizes {SIZES['quick']}, tables {ROWS['quick']} rows, "
                        f"{CAP_GB['quick']:g} GB cap (default {SIZES['full']}, {ROWS['full']}, {CAP_GB['full']:g} GB)")
    p.add_argument("--sizes", help="landing input sizes, comma-separated (e.g. 20000,100000,400000)")
    p.add_argument("--rows", help="silver table sizes for the queries, comma-separated (e.g. 1000000,10000000); "
                                  "the memory part uses the largest")
    p.add_argument("--cap-gb", type=float, help="address-space limit of the pandas and DuckDB memory runs, in GB")
    p.add_argument("--repeat", type=int, help=f"runs of each query per engine (default {REPEAT} on tables of up to "
                                              f"{REPEAT_UP_TO:,} rows, 1 on larger ones)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS)
                                                            + " (default all)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/lakehouse-<timestamp>.json)")
    p.add_argument("--keep", action="store_true", help="keep the temporary lakes under /tmp")
    # internal: every measured run is a process of its own (timed, memory sampled)
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p


def numbers(text: str | None, default: tuple[int, ...]) -> list[int]:
    return sorted(int(float(x)) for x in text.split(",")) if text else list(default)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        figures = CHILDREN[args.child](json.loads(args.spec.read_text()))
        args.result.write_text(json.dumps(figures, default=str))
        return 0

    from impetus.config import load_settings

    parts = choose(args.parts, PARTS, "--parts")
    mode = "quick" if args.quick else "full"
    sizes, rows = numbers(args.sizes, SIZES[mode]), numbers(args.rows, ROWS[mode])
    cap_gb = args.cap_gb or CAP_GB[mode]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"lakehouse-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    work = Path(f"/tmp/bench-lake-{run}")
    work.mkdir(parents=True)
    settings = load_settings()
    results = {"command": " ".join(["bench/lakehouse.py", *(argv if argv is not None else sys.argv[1:])]),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": mode,
               "machine": machine(), "versions": versions(), "git": git_state()}
    began = time.monotonic()
    try:
        if "landing" in parts:
            results["landing"] = landing(settings, sizes, work, run)
            save(results, out)
        if "queries" in parts or "memory" in parts:
            if "queries" in parts:
                results["queries"] = queries(rows, work, args.repeat)
            else:
                made = check(run_child("generate", {"rows": rows[-1:], "root": str(work)}, work, timeout=2400),
                             "generate")
                log(f"memory: generated {rows[-1]:,} rows in {made['wall_s']:.0f} s")
            save(results, out)
        if "memory" in parts:
            path = str(work / f"rows-{rows[-1]}" / "lake" / "silver" / "sensor_readings")
            results["memory"] = memory(path, cap_gb, work)
    finally:
        results["seconds"] = time.monotonic() - began
        results["load_average_end"] = os.getloadavg()
        save(results, out)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + tables(results) + "\n", flush=True)
    chart(results, out.with_suffix(".png"))
    log(f"results: {out} ({results['seconds'] / 60:.1f} min)")
    return 0


def machine() -> dict:
    with open("/proc/meminfo") as handle:
        ram_mb = int(handle.readline().split()[1]) // 1024
    return {"nproc": os.cpu_count(), "ram_mb": ram_mb, "python": sys.version.split()[0],
            "load_average_start": os.getloadavg()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pyspark", "delta-spark", "duckdb", "deltalake", "pandas", "pyarrow", "kafka-python"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["delta jar"] = ", ".join(p.name for p in (ROOT / "var" / "jars" / "spark").glob("delta-spark*.jar"))
    return found


def git_state() -> dict:
    """Commit, and whether impetus/ had uncommitted changes (others may edit it during a run)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"head": git("rev-parse", "--short", "HEAD"), "impetus_changed": git("status", "--short", "impetus")}


def save(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
