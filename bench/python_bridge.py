"""What handing records to Python costs in PyFlink on this machine, side by side in one run.

The streaming jobs (jobs/streaming/) run their detectors as PyFlink DataStream functions, one Python
call per record. This benchmark measures the ceiling each way of running Python in Flink puts on a
job, before any detection logic: every variant reads the same sensor readings from Kafka and writes
each one back unchanged to another topic. Every variant runs with the jobs' own Flink settings
(``impetus.flink.stream_environment``, e.g. ``IMPETUS_FLINK_BUNDLE_TIME_MS``).

- ``jvm``: Kafka -> Kafka with no Python operator (the engine's own limit, as in bench/streaming.py);
- ``datastream_thread`` / ``datastream_process``: one DataStream ``map`` in Python that returns its
  input, in PyFlink's ``thread`` and ``process`` execution modes;
- ``datastream_key_by``: key the raw text by the sensor id cut out of it (a Python key selector) and pass it through a
  keyed Python function (``thread`` mode): what the shuffle to a keyed operator adds;
- ``datastream_state``: the same, and the keyed function writes a small dict to keyed state per record;
- ``datastream_keyed``: the smallest shape of a keyed detector (``thread`` mode): parse the JSON,
  key by sensor, one value-state write per record, return the record;
- ``table_udf`` / ``table_udf_thread``: a Table API scalar Python function that returns its input, in a
  Python worker fed in bundles (``process`` mode) and inside the JVM (``thread`` mode);
- ``table_pandas``: a Table API pandas (vectorised) function that returns its input: one call per
  Arrow batch.

Then what the per-record work of a detector costs on the cheapest of those paths, and without Python:

- ``table_detect``: a Table API Python function (``thread`` mode) doing the urban job's own work on each
  reading: schema validation, the tenant check, thresholds, the baseline score and the silence deadline
  (the per-sensor watch on empty state: no keyed state, nothing shuffled); returns the reading;
- ``sql_json_format``: Flink SQL alone, the source parsing each reading once (``json`` format), a threshold
  check, each reading written back as JSON;
- ``sql_checks``: Flink SQL alone on the raw text: fields taken out with ``JSON_VALUE``, validity checks
  (present, tenant pattern and length) and the threshold check;
- ``sql_silence``: ``sql_checks`` and per-sensor state in SQL of the kind silent-sensor detection needs: a
  session window per sensor (ends when a sensor falls quiet) and ``LAG`` over each sensor's readings (when it
  speaks again), both to blackhole sinks.

Rate = (N_big - N_small) / (T_big - T_small) over bounded runs, T = wall time of the run's process, so
start-up cancels out; each pair is run ``--repeat`` times and every rate is kept (the machine is
noisy: a few seconds of jitter per run). Peak memory as in bench/streaming.py. Figures are ratios
within one run; reported, never asserted. Results: bench/results/bridge-<timestamp>.json (+ PNG).

    .venv/bin/python bench/python_bridge.py            # about 12 minutes on 2 cores
    .venv/bin/python bench/python_bridge.py --quick    # smaller runs, one repetition
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import streaming as common  # noqa: E402 - the shared helpers of bench/streaming.py

VARIANTS = {
    "jvm": "Kafka -> Kafka, no Python",
    "datastream_thread": "DataStream map, thread mode",
    "datastream_process": "DataStream map, process mode",
    "datastream_key_by": "DataStream key_by + keyed function, thread mode",
    "datastream_state": "DataStream key_by + keyed state write, thread mode",
    "datastream_keyed": "DataStream parse + key_by + keyed state, thread mode",
    "table_udf": "Table API Python function, process mode",
    "table_udf_thread": "Table API Python function, thread mode",
    "table_pandas": "Table API pandas function",
    "table_detect": "Table API Python function doing the urban job's per-reading work, thread mode",
    "sql_checks": "Flink SQL only: fields out of the JSON, validity and threshold checks",
    "sql_silence": "sql_checks + per-sensor silence state in SQL (session window, LAG)",
    "sql_json_format": "Flink SQL only, the JSON parsed once by the source (json format), threshold check",
}
SIZES = {"full": (20_000, 400_000), "quick": (10_000, 100_000)}


# ------------------------------------------------------------------------------------ the variants

def run_variant(variant: str, source: str, sink: str, group_id: str) -> None:
    """One bounded Kafka -> Kafka run of ``variant`` (in its own process, timed by the caller)."""
    from impetus.config import load_settings

    settings = load_settings()
    if variant.startswith(("table_", "sql_")):
        _table_job(settings, variant, source, sink, group_id)
    else:
        _datastream_job(settings, variant, source, sink, group_id)


def _datastream_job(settings, variant: str, source: str, sink: str, group_id: str) -> None:
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    from impetus.flink import event_time, kafka_sink, kafka_source, stream_environment

    class PassOn(KeyedProcessFunction):
        """Passes each record on; ``remember``: first writes a small dict to keyed state."""

        def __init__(self, remember: bool, parsed: bool):
            self.remember, self.parsed = remember, parsed

        def open(self, runtime_context):
            self.last = runtime_context.get_state(ValueStateDescriptor("last", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, record, ctx):
            if self.remember:
                self.last.update({"value": record.get("value")} if self.parsed else {"seen": ctx.timestamp()})
            yield json.dumps(record) if self.parsed else record

    mode = "process" if variant == "datastream_process" else "thread"
    env = stream_environment(settings, f"bench_bridge_{variant}", restart=False, python_mode=mode,
                             delivery="at-least-once")
    stream = env.from_source(kafka_source(settings, source, group_id, bounded=True), event_time(5000),
                             f"kafka: {source}")
    if variant in ("datastream_thread", "datastream_process"):
        stream = stream.map(lambda text: text, output_type=Types.STRING()).name("identity")
    elif variant in ("datastream_key_by", "datastream_state"):
        # the sensor id cut out of the text: a key without parsing
        stream = (stream.key_by(lambda text: text.partition('"sensor_id": "')[2][:40], key_type=Types.STRING())
                  .process(PassOn(variant == "datastream_state", parsed=False), output_type=Types.STRING())
                  .name("keyed"))
    elif variant == "datastream_keyed":
        stream = (stream.map(json.loads, output_type=Types.PICKLED_BYTE_ARRAY()).name("parse")
                  .key_by(lambda doc: str(doc.get("sensor_id")), key_type=Types.STRING())
                  .process(PassOn(True, parsed=True), output_type=Types.STRING()).name("keyed state"))
    elif variant != "jvm":
        raise ValueError(variant)
    stream.sink_to(kafka_sink(settings, topic=sink, delivery="at-least-once")).name(f"kafka: {sink}")
    env.execute(f"bench_bridge_{variant}")


def _table_job(settings, variant: str, source: str, sink: str, group_id: str) -> None:
    from pyflink.table import DataTypes, StreamTableEnvironment
    from pyflink.table.udf import udf

    from impetus.flink import stream_environment

    mode = "thread" if variant in ("table_udf_thread", "table_detect") else "process"
    env = stream_environment(settings, f"bench_bridge_{variant}", restart=False, python_mode=mode,
                             delivery="at-least-once")
    tables = StreamTableEnvironment.create(env)
    kafka = f"'connector' = 'kafka', 'properties.bootstrap.servers' = '{settings.kafka_bootstrap}', 'format' = 'raw'"
    tables.execute_sql(f"CREATE TABLE src (v STRING) WITH ({kafka}, 'topic' = '{source}', "
                       f"'properties.group.id' = '{group_id}', 'scan.startup.mode' = 'earliest-offset', "
                       "'scan.bounded.mode' = 'latest-offset')")
    tables.execute_sql(f"CREATE TABLE snk (v STRING) WITH ({kafka}, 'topic' = '{sink}')")
    if variant.startswith("sql_"):
        _sql_job(tables, kafka, variant, source, sink, group_id)
        return
    if variant in ("table_udf", "table_udf_thread"):
        identity = udf(lambda text: text, result_type=DataTypes.STRING())
    elif variant == "table_pandas":
        identity = udf(lambda texts: texts, result_type=DataTypes.STRING(), func_type="pandas")
    elif variant == "table_detect":
        identity = udf(_urban_reading_work(settings), result_type=DataTypes.STRING())
    else:
        raise ValueError(variant)
    tables.create_temporary_function("pass_on", identity)
    tables.execute_sql("INSERT INTO snk SELECT pass_on(v) FROM src").wait()


def _sql_job(tables, kafka: str, variant: str, source: str, sink: str, group_id: str) -> None:
    if variant == "sql_json_format":
        json_kafka = kafka.replace("'format' = 'raw'", "'format' = 'json'")
        columns = ("tenant STRING, sensor_id STRING, kind STRING, `value` DOUBLE, unit STRING, event_time STRING, "
                   "location ROW<area STRING, lat DOUBLE, lon DOUBLE>, source STRING")
        tables.execute_sql(f"CREATE TABLE jsrc ({columns}) WITH ({json_kafka}, 'topic' = '{source}', "
                           f"'properties.group.id' = '{group_id}', 'scan.startup.mode' = 'earliest-offset', "
                           "'scan.bounded.mode' = 'latest-offset')")
        tables.execute_sql(f"CREATE TABLE jsnk ({columns}, alert BOOLEAN) WITH ({json_kafka}, "
                           f"'topic' = '{sink}')")
        tables.execute_sql("INSERT INTO jsnk SELECT *, tenant IS NOT NULL AND `value` > 3000 FROM jsrc").wait()
        return
    tables.execute_sql(f"CREATE TABLE rsrc (v STRING, ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp', "
                       "WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE) "
                       f"WITH ({kafka}, 'topic' = '{source}', 'properties.group.id' = '{group_id}', "
                       "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')")
    tables.execute_sql("""CREATE TEMPORARY VIEW readings AS SELECT v, ts,
        JSON_VALUE(v, '$.tenant') AS tenant, JSON_VALUE(v, '$.sensor_id') AS sensor_id,
        JSON_VALUE(v, '$.kind') AS kind, JSON_VALUE(v, '$.value' RETURNING DOUBLE) AS val,
        JSON_VALUE(v, '$.event_time') AS event_time FROM rsrc""")
    tables.execute_sql("""CREATE TEMPORARY VIEW checked AS SELECT *,
        tenant IS NOT NULL AND REGEXP(tenant, '^[a-z0-9_-]+$') AND CHAR_LENGTH(tenant) <= 64
        AND sensor_id IS NOT NULL AND kind IS NOT NULL AND val IS NOT NULL AND event_time IS NOT NULL AS ok
        FROM readings""")
    statements = tables.create_statement_set()
    statements.add_insert_sql("INSERT INTO snk SELECT CASE WHEN ok AND val > 3000 THEN CONCAT('!', v) ELSE v END "
                              "FROM checked")
    if variant == "sql_silence":
        tables.execute_sql("CREATE TABLE quiet (sensor_id STRING, last_ts TIMESTAMP(3)) "
                           "WITH ('connector' = 'blackhole')")
        tables.execute_sql("CREATE TABLE resumed (sensor_id STRING, ts TIMESTAMP_LTZ(3)) "
                           "WITH ('connector' = 'blackhole')")
        statements.add_insert_sql("""INSERT INTO quiet SELECT sensor_id, window_end FROM TABLE(
            SESSION(TABLE checked PARTITION BY sensor_id, DESCRIPTOR(ts), INTERVAL '90' MINUTE))
            GROUP BY sensor_id, window_start, window_end""")
        statements.add_insert_sql("""INSERT INTO resumed SELECT sensor_id, ts FROM (
            SELECT sensor_id, ts, LAG(ts) OVER (PARTITION BY sensor_id ORDER BY ts) AS previous FROM checked)
            WHERE previous IS NULL OR previous < ts - INTERVAL '90' MINUTE""")
    statements.execute().wait()


def _urban_reading_work(settings):
    """The urban job's work on one reading as one function of its text: validate, tenant check, thresholds,
    baseline score, the silence deadline (the per-sensor watch on empty state); returns the text."""
    from impetus.rules import RuleBook
    from impetus.schemas import check_payload
    from impetus.topics import tenants

    (watch, _), defaults = common.plain_logic("urban", settings)  # the per-sensor watch, as the job builds it
    book = RuleBook(None, defaults)
    known = set(tenants(settings))

    def work(text):
        doc = check_payload("sensors.readings", text)
        if doc["tenant"] in known:
            watch.on_event(None, doc, book)
        return text

    return work


# ------------------------------------------------------------------------------------------ runs

def _readings(n: int) -> list[dict]:
    """``n`` readings in event-time order. The recorded history holds fewer (about 340,000): copies of it
    go before it, each moved back by whole weeks, so that hours of the week stay the same, no reading
    arrives late (windows would drop late readings, and do less work) and none lies in the future (the
    broker refuses records stamped more than an hour ahead)."""
    from datetime import datetime, timedelta

    docs = common.documents("urban", n)["sensors.readings"]
    first, last = (datetime.fromisoformat(docs[i]["event_time"]) for i in (0, -1))
    weeks = (last - first) // timedelta(weeks=1) + 1
    copies = -(-n // len(docs))
    out = []
    for back in range(copies - 1, 0, -1):
        shift = timedelta(weeks=weeks * back)
        out.extend(dict(doc, event_time=(datetime.fromisoformat(doc["event_time"]) - shift).isoformat())
                   for doc in docs)
    return (out + docs)[-n:]


def measure(settings, variants: list[str], sizes: tuple[int, int], repeat: int) -> dict:
    docs = _readings(sizes[1])
    run = uuid.uuid4().hex[:8]
    topics = {size: f"bench.{run}.bridge.{size}" for size in sizes}
    sinks = [f"bench.{run}.bridge.out.{v}" for v in variants]
    common.create_topics(settings, [*topics.values(), *sinks])
    results = {v: {"label": VARIANTS[v], "pairs": []} for v in variants}
    try:
        for size, topic in topics.items():
            common.log(f"producing {size} readings to {topic}")
            common.produce(settings, topic, docs[:size])
        for round_ in range(repeat):
            for variant, sink in zip(variants, sinks):
                pair = {}
                for size, topic in topics.items():
                    before = common.written(settings, [sink])
                    figures = common.run_bounded([str(Path(__file__).resolve()), "--variant", variant,
                                                  "--source", topic, "--sink", sink,
                                                  "--group-id", f"bench.{run}.{variant}.{round_}.{size}"])
                    figures["out"] = common.written(settings, [sink]) - before
                    if figures["out"] != size:
                        raise RuntimeError(f"{variant}: {figures['out']} records written for {size} read")
                    pair[str(size)] = figures
                    common.log(f"{variant} n={size}: {figures['seconds']:.1f} s, peak {figures['peak_mb']:.0f} MB")
                dt = pair[str(sizes[1])]["seconds"] - pair[str(sizes[0])]["seconds"]
                pair["rate"] = (sizes[1] - sizes[0]) / dt if dt > 0 else float("nan")
                results[variant]["pairs"].append(pair)
                common.log(f"{variant}: {pair['rate']:,.0f} records/s")
    finally:
        common.delete_topics(settings, [*topics.values(), *sinks])
    for entry in results.values():
        rates = [p["rate"] for p in entry["pairs"]]
        entry["rate"] = statistics.median(rates)
        entry["peak_mb"] = max(max(p[str(s)]["peak_mb"] for s in sizes) for p in entry["pairs"])
    return results


def table(results: dict) -> str:
    base = results["variants"].get("jvm", {}).get("rate")
    lines = ["| variant | records/s (median) | each pair | / no Python | peak MB |", "|---|---:|---|---:|---:|"]
    for variant, entry in results["variants"].items():
        pairs = ", ".join(f"{p['rate']:,.0f}" for p in entry["pairs"])
        ratio = f"{entry['rate'] / base:.2f}" if base else "-"
        lines.append(f"| {entry['label']} (`{variant}`) | {entry['rate']:,.0f} | {pairs} | {ratio} | "
                     f"{entry['peak_mb']:.0f} |")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    plt = common.pyplot()
    if plt is None:
        return
    entries = list(results["variants"].values())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([e["label"] for e in entries], [e["rate"] for e in entries], color="tab:blue")
    for i, entry in enumerate(entries):
        ax.plot([p["rate"] for p in entry["pairs"]], [i] * len(entry["pairs"]), "k|", markersize=12)
    ax.invert_yaxis()
    ax.set_xlabel("records / s (bar: median, ticks: each pair of runs)")
    ax.set_title("Kafka -> Kafka through Python in PyFlink")
    common.write_chart(plt, fig, path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/python_bridge.py", description=__doc__.split("\n\n")[0],
                                epilog="variants:\n" + "\n".join(f"  {k:20} {v}" for k, v in VARIANTS.items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller runs ({:,} and {:,} readings, one pair; default {:,} and {:,})".format(
                       *SIZES["quick"], *SIZES["full"]))
    p.add_argument("--sizes", metavar="SMALL,BIG",
                   help="the two run sizes in readings (the fast variants need a big one: their runs are otherwise "
                        "mostly start-up)")
    p.add_argument("--repeat", type=int, help="pairs of runs per variant (default 2, --quick 1)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants "
                                                                  "(default: all, listed below)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/bridge-<timestamp>.json)")
    # internal: each run is its own process (timed, memory sampled)
    p.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--sink", help=argparse.SUPPRESS)
    p.add_argument("--group-id", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.variant:
        run_variant(args.variant, args.source, args.sink, args.group_id)
        return 0

    from impetus.config import load_settings

    variants = common.choose(args.variants, VARIANTS, "--variants")
    mode = "quick" if args.quick else "full"
    sizes = common.parse_sizes(args.sizes) if args.sizes else SIZES[mode]
    repeat = args.repeat or (1 if args.quick else 2)
    out = args.out or ROOT / "bench" / "results" / f"bridge-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    results = {"command": " ".join(["bench/python_bridge.py", *(argv if argv is not None else sys.argv[1:])]),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sizes": list(sizes),
               "repeat": repeat, "machine": {"nproc": os.cpu_count(), "python": sys.version.split()[0]}}
    began = time.monotonic()
    results["variants"] = measure(settings, variants, sizes, repeat)
    results["seconds"] = time.monotonic() - began
    out.write_text(json.dumps(results, indent=2))
    print("\n" + table(results) + "\n", flush=True)
    chart(results, out.with_suffix(".png"))
    common.log(f"results: {out} ({results['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
