"""Landing Kafka topics in Delta bronze tables with Spark Structured Streaming, anonymised.

Used by jobs/batch/land_bronze.py, the demo and the lake DAG. Every bronze table is
declared by a schema in ``schemas/tables/bronze.*.json`` (its topic, event-time
field, partitioning, retention); :func:`bronze_tables` reads those declarations.

Per message, :func:`treat_payload` (plain Python, unit-tested) validates it with the
schema validator the Flink jobs use and treats its personal fields by their privacy
tags (:mod:`impetus.privacy`). Spark then parses the treated JSON with the schema's
``StructType`` and appends it; messages that fail go to ``quarantine.landing`` with the
reason and a redacted excerpt. The raw payload is never written anywhere.

Exactly once across restarts: offsets are checkpointed per table, and each micro-batch
is written with Delta's idempotent-write options (``txnAppId``/``txnVersion``), so a
batch replayed after a crash is skipped by the table it already reached.
"""


import json
from dataclasses import dataclass
from functools import lru_cache

from impetus.config import Settings
from impetus.lake import progress
from impetus.schemas import PayloadRejected, check_payload, load_schema, spark_schema, table_names
from impetus.topics import tenants

QUARANTINE_TABLE = "landing"
PAYLOAD_EXCERPT = 4096
LANDING_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at",
                   "event_date", "event_month", "pseudonym_key")


class LandingError(RuntimeError):
    """A topic cannot be landed as asked; the message says why."""


@dataclass(frozen=True)
class BronzeTable:
    """One bronze table as declared in ``schemas/tables/bronze.<name>.json``."""
    name: str                  # sensors_readings
    event_schema: str          # the topic schema its rows follow: sensors.readings, alert
    topics: tuple[str, ...]    # Kafka topics read
    event_time: str            # field the event date is taken from
    partition_by: tuple[str, ...]
    zorder_by: tuple[str, ...]

    @property
    def schema_name(self) -> str:
        return f"bronze.{self.name}"


def bronze_tables(settings: Settings) -> list[BronzeTable]:
    """Every declared bronze table, topics with ``{tenant}`` expanded."""
    tables = []
    for name in table_names(settings.schemas_dir):
        if not name.startswith("bronze."):
            continue
        schema = load_schema(name, settings.schemas_dir)
        source = schema["x-source-topic"]
        topics = []
        for pattern in schema.get("x-source-topics", [source]):
            topics += [pattern.format(tenant=t) for t in tenants(settings)] if "{tenant}" in pattern else [pattern]
        tables.append(BronzeTable(name=name.split(".", 1)[1], event_schema=source, topics=tuple(topics),
                                  event_time=schema.get("x-event-time", "event_time"),
                                  partition_by=tuple(schema.get("x-partition-by", ["event_month"])),
                                  zorder_by=tuple(schema.get("x-zorder-by", []))))
    return tables


def bronze_table(settings: Settings, name: str) -> BronzeTable:
    known = {t.name: t for t in bronze_tables(settings)}
    for table in known.values():
        if name in (table.name, table.schema_name) or name in table.topics:
            return table
    raise LandingError(f"no bronze table {name!r}; declared: {', '.join(sorted(known))}")


# --------------------------------------------------------------------------- per message (plain Python)

def _derived_fields(event_schema: str, document: dict) -> dict:
    """Facts landing keeps about a personal value it is about to pseudonymise."""
    if event_schema == "network.flows":
        from impetus.detect.flow_anomaly import is_internal
        return {"src_internal": is_internal(document["src_ip"]), "dst_internal": is_internal(document["dst_ip"])}
    return {}


@lru_cache(maxsize=None)
def _event_schema(name: str) -> dict:
    # looked up once per process: load_schema() without a folder reads the settings each call,
    # most of the time a message took (bench/lakehouse.py)
    return load_schema(name)


def treat_payload(event_schema: str, payload: bytes | None, key: bytes) -> tuple[str | None, str | None, str | None]:
    """``(treated JSON, None, None)`` for a valid message, ``(None, reason, redacted excerpt)`` otherwise."""
    from impetus.privacy import redacted_excerpt, treat_document

    try:
        document = check_payload(event_schema, payload)
    except PayloadRejected as err:
        text = bytes(payload or b"")[:PAYLOAD_EXCERPT * 4].decode("utf-8", errors="replace")
        return None, str(err), redacted_excerpt(text, PAYLOAD_EXCERPT, key)
    treated = treat_document(_event_schema(event_schema), document, key, topic=event_schema)
    treated.update(_derived_fields(event_schema, document))
    return json.dumps(treated, ensure_ascii=False), None, None


# --------------------------------------------------------------------------- Spark

def split_batch(batch, table: BronzeTable, key: bytes, key_name: str):
    """(all rows checked, bronze rows, quarantine rows) of one micro-batch of Kafka records."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    event_schema = table.event_schema

    @pandas_udf("doc string, reason string, excerpt string")
    def treat(values: pd.Series) -> pd.DataFrame:
        rows = [treat_payload(event_schema, value, key) for value in values]
        return pd.DataFrame(rows, columns=["doc", "reason", "excerpt"])

    bronze_struct = spark_schema(load_schema(table.schema_name))
    event_fields = [f.name for f in bronze_struct.fields if f.name not in LANDING_COLUMNS]
    doc_struct = type(bronze_struct)([f for f in bronze_struct.fields if f.name in event_fields])
    checked = (batch
               .select(F.col("topic").alias("kafka_topic"), F.col("partition").alias("kafka_partition"),
                       F.col("offset").alias("kafka_offset"), F.col("timestamp").alias("kafka_timestamp"),
                       F.coalesce(F.length("value"), F.lit(0)).cast("long").alias("payload_bytes"),
                       treat(F.col("value")).alias("t"))
               .withColumn("ingested_at", F.current_timestamp())
               .cache())
    event_date = F.to_date(F.col(table.event_time))
    valid = (checked.where(F.col("t.reason").isNull())
             .withColumn("doc", F.from_json("t.doc", doc_struct, {"mode": "FAILFAST"}))
             .select("doc.*", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
             .withColumn("event_date", event_date)
             .withColumn("event_month", F.trunc(event_date, "month"))
             .withColumn("pseudonym_key", F.lit(key_name))
             .select(*[f.name for f in bronze_struct.fields]))
    quarantined = (checked.where(F.col("t.reason").isNotNull())
                   .select(F.lit(table.name).alias("bronze_table"), "kafka_topic", "kafka_partition", "kafka_offset",
                           "kafka_timestamp", F.col("t.reason").alias("reason"), "payload_bytes",
                           F.col("t.excerpt").alias("payload_redacted"), "ingested_at"))
    return checked, valid, quarantined


def _delta_rows(spark, path: str) -> int:
    from impetus.lake import table_exists

    return spark.read.format("delta").load(path).count() if table_exists(spark, path) else 0


def start_landing(spark, settings: Settings, table: BronzeTable, *, source_topics: list[str] | None = None,
                  continuous: bool = False, interval: str = "10 seconds", max_per_batch: int = 200_000,
                  tally: dict | None = None):
    """Start the streaming query that lands ``table``; returns it (the caller awaits it)."""
    from impetus.privacy import load_keyring

    keyring = load_keyring(settings)
    key, key_name = keyring.current, keyring.current_id
    bronze = settings.lake_path("bronze", table.name)
    quarantine = settings.lake_path("quarantine", QUARANTINE_TABLE)
    app_id = f"impetus-land-{table.name}"
    counts = tally if tally is not None else {}
    for name in ("messages_in", "landed", "quarantined", "batches"):
        counts.setdefault(name, 0)  # kept when a query is started again within one run

    stream = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
              .option("subscribe", ",".join(source_topics or table.topics))
              .option("startingOffsets", "earliest")
              # a topic that does not exist yet (a tenant without alerts) is not an error
              .option("failOnDataLoss", "false")
              .option("maxOffsetsPerTrigger", max_per_batch)
              .load())

    def write_batch(batch, batch_id: int) -> None:
        checked, valid, quarantined = split_batch(batch, table, key, key_name)
        try:
            outcome = {row["ok"]: row["n"] for row in
                       checked.groupBy((checked["t.reason"].isNull()).alias("ok")).count()
                       .withColumnRenamed("count", "n").collect()}
            # txnAppId/txnVersion make a replayed micro-batch a no-op: exactly once with the checkpoint
            (valid.write.format("delta").mode("append").partitionBy(*table.partition_by)
             .option("txnAppId", app_id).option("txnVersion", batch_id).save(bronze))
            (quarantined.write.format("delta").mode("append").partitionBy("bronze_table")
             .option("txnAppId", app_id + "-quarantine").option("txnVersion", batch_id).save(quarantine))
        finally:
            checked.unpersist()
        counts["batches"] += 1
        counts["landed"] += outcome.get(True, 0)
        counts["quarantined"] += outcome.get(False, 0)
        counts["messages_in"] += sum(outcome.values())

    writer = (stream.writeStream.foreachBatch(write_batch)
              .option("checkpointLocation", settings.checkpoint_path(f"bronze/{table.name}")))
    writer = writer.trigger(processingTime=interval) if continuous else writer.trigger(availableNow=True)
    return writer.queryName(app_id).start()


# Spark 4.1.1 (SPARK-57438, fixed upstream): when a query resumes a micro-batch that an interrupted run
# had planned but not committed, the Kafka source's progress metrics throw a NullPointerException
# after the batch has been written and committed. Starting the query again goes on from the commit.
RESUME_ATTEMPTS = 3


def _is_resume_metrics_bug(err: Exception) -> bool:
    text = str(err)
    return ("KafkaMicroBatchStream" in text and "NullPointerException" in text) or (
        "Option.get()" in text and "is null" in text)


def parse_sources(items: list[str]) -> dict[str, str]:
    """``["sensors_readings=test.in", ...]`` (the ``--source`` options) -> ``{table: topics}``."""
    sources = {}
    for item in items:
        table, sep, topics = item.partition("=")
        if not sep or not topics:
            raise LandingError(f"--source {item!r}: expected TABLE=TOPIC[,TOPIC]")
        sources[table] = topics
    return sources


def land(settings: Settings, names: list[str] | None = None, *, sources: dict[str, str] | None = None,
         continuous: bool = False, interval: str = "10 seconds", max_per_batch: int = 200_000,
         log=progress) -> list[dict]:
    """Land the named bronze tables (default: all), one after the other in one Spark session.

    Returns one summary per table: messages read in this run, rows landed and
    quarantined (``messages_in = landed + quarantined``), and the tables' totals.
    (Side by side, the first batches of two tables race to create the shared quarantine
    table; one after the other is as fast on a small machine.)
    """
    from impetus.spark import spark_session

    tables = [bronze_table(settings, n) for n in names] if names else bronze_tables(settings)
    # tests and backfills read a table's messages from other topics (same schema)
    redirected = {bronze_table(settings, name).name: topic.split(",") for name, topic in (sources or {}).items()}
    spark = spark_session(settings, "land_bronze")
    runs = []
    for table in tables:
        tally: dict = {}
        topics = redirected.get(table.name, list(table.topics))
        log(f"landing {', '.join(topics)} -> bronze.{table.name}")
        for attempt in range(1, RESUME_ATTEMPTS + 1):
            query = start_landing(spark, settings, table, source_topics=topics, continuous=continuous,
                                  interval=interval, max_per_batch=max_per_batch, tally=tally)
            try:
                query.awaitTermination()
                break
            except Exception as err:
                if not _is_resume_metrics_bug(err) or attempt == RESUME_ATTEMPTS:
                    raise
                log(f"    bronze.{table.name}: the batch left over from an interrupted run was landed; Spark 4.1.1 "
                    f"then fails reporting its Kafka metrics (SPARK-57438); starting again from the checkpoint")
        runs.append((table, query, tally))
    quarantine = settings.lake_path("quarantine", QUARANTINE_TABLE)
    summaries = []
    for table, _, tally in runs:
        bronze = settings.lake_path("bronze", table.name)
        summaries.append({"table": f"bronze.{table.name}", "path": bronze, **tally,
                          "bronze_rows": _delta_rows(spark, bronze)})
    total_quarantine = _delta_rows(spark, quarantine)
    for summary in summaries:
        summary["quarantine_rows"] = total_quarantine
        summary["quarantine"] = quarantine
    return summaries
