"""Landing Kafka topics in Delta bronze tables with Spark Structured Streaming.

Used by jobs/batch/land_bronze.py (and later by the lake DAGs). The per-batch
logic is :func:`split_batch`: validate every message with the schema's validator,
parse the valid ones with the derived Spark schema, route the rest to quarantine.
"""

from impetus.config import Settings
from impetus.schemas import load_schema, privacy_tags, spark_schema, validation_error


class LandingError(RuntimeError):
    """A topic cannot be landed as asked; the message says why."""


def table_name(topic: str) -> str:
    return topic.replace(".", "_")


def _check_landable(topic: str, schema: dict) -> None:
    personal = {path: tag for path, tag in privacy_tags(schema).items() if tag not in ("none",)}
    if personal:
        fields = ", ".join(f"{p} ({t})" for p, t in sorted(personal.items()))
        raise LandingError(
            f"topic {topic} has personal fields that must be treated at landing: {fields}. "
            f"Bronze landing here only takes topics without personal data so far (see the lakehouse issue)."
        )


def split_batch(batch, topic: str, schema: dict):
    """(valid rows with landing columns, quarantined rows with reasons) for one micro-batch."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def rejection_reason(values: pd.Series) -> pd.Series:
        return values.map(lambda v: validation_error(topic, v))

    checked = (batch
               .select(F.col("value"), F.col("partition").alias("kafka_partition"),
                       F.col("offset").alias("kafka_offset"), F.col("timestamp").alias("kafka_timestamp"))
               .withColumn("value_text", F.col("value").cast("string"))
               .withColumn("reason", rejection_reason(F.col("value")))
               .withColumn("ingested_at", F.current_timestamp())
               .cache())
    valid = (checked.where(F.col("reason").isNull())
             .withColumn("doc", F.from_json("value_text", spark_schema(schema), {"mode": "FAILFAST"}))
             .select("doc.*", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
             .withColumn("event_date", F.to_date(F.col("event_time"))))
    quarantined = (checked.where(F.col("reason").isNotNull())
                   .select("kafka_partition", "kafka_offset", "kafka_timestamp", "reason",
                           F.coalesce(F.length("value"), F.lit(0)).cast("long").alias("payload_bytes"),
                           "ingested_at"))
    return checked, valid, quarantined


def land_topic(settings: Settings, topic: str, source_topic: str | None = None, table: str | None = None,
               continuous: bool = False, interval: str = "10 seconds") -> dict:
    """Land ``topic`` (read from ``source_topic`` if given) into bronze; returns row counts and paths."""
    from impetus.spark import spark_session

    schema = load_schema(topic)
    _check_landable(topic, schema)
    table = table or table_name(topic)
    bronze = settings.lake_path("bronze", table)
    quarantine = settings.lake_path("quarantine", table)
    checkpoint = settings.checkpoint_path(f"bronze/{table}")
    app_id = f"impetus-land-{table}"

    spark = spark_session(settings, f"land_bronze[{table}]")
    stream = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
              .option("subscribe", source_topic or topic)
              .option("startingOffsets", "earliest")
              .option("maxOffsetsPerTrigger", 200_000)
              .load())

    def write_batch(batch, batch_id: int) -> None:
        checked, valid, quarantined = split_batch(batch, topic, schema)
        # txnAppId/txnVersion make a replayed micro-batch a no-op: exactly once with the checkpoint
        (valid.write.format("delta").mode("append").partitionBy("event_date")
         .option("txnAppId", app_id).option("txnVersion", batch_id).save(bronze))
        (quarantined.write.format("delta").mode("append")
         .option("txnAppId", app_id + "-quarantine").option("txnVersion", batch_id).save(quarantine))
        checked.unpersist()

    writer = stream.writeStream.foreachBatch(write_batch).option("checkpointLocation", checkpoint)
    writer = writer.trigger(processingTime=interval) if continuous else writer.trigger(availableNow=True)
    query = writer.queryName(app_id).start()
    query.awaitTermination()

    def count(path: str) -> int:
        try:
            return spark.read.format("delta").load(path).count()
        except Exception as err:  # a table is only created by its first write
            if "is not a Delta table" in str(err) or "PATH_NOT_FOUND" in str(err):
                return 0
            raise
    return {"topic": topic, "bronze": bronze, "quarantine": quarantine,
            "bronze_rows": count(bronze), "quarantine_rows": count(quarantine)}
