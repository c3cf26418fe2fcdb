"""The Delta lake: bronze -> silver -> gold, and access to the tables for analysts.

Called by jobs/batch/build_silver.py, jobs/batch/build_gold.py, the demo, ``impetus sql``
and the notebooks. Every table is declared in ``schemas/tables/``; :func:`conform`
selects and casts a DataFrame to its declared columns before any write, so the
schema files stay the truth (the catalogue and the gates are generated from them).

* **silver** is built incrementally: one Structured Streaming query per silver table
  reads its bronze table as a Delta stream (only rows added since the last run, the
  position kept in a checkpoint) and MERGEs each micro-batch on the table's key
  (``x-key``). A repeat or a late correction of a row replaces it; late rows land in
  the partition of their own event month, whenever they arrive.
* **gold** is recomputed from silver on each run (aggregates over all of silver;
  seconds at this scale), overwritten atomically per table.
"""


import sys
from dataclasses import dataclass
from typing import Callable

from impetus.config import Settings
from impetus.schemas import load_schema, spark_schema, table_names
from impetus.topics import tenant_timezones

LAYERS = ("bronze", "silver", "gold", "quarantine", "audit")


def progress(message: str) -> None:
    """Progress lines go to stderr, so a job's stdout stays its JSON result."""
    print(message, file=sys.stderr, flush=True)


class LakeError(RuntimeError):
    """A lake table cannot be built or read as asked; the message says why."""


def table_exists(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Exception as err:  # a path on a file system that does not exist yet
        if "PATH_NOT_FOUND" in str(err) or "does not exist" in str(err):
            return False
        raise


def table_path(settings: Settings, qualified: str) -> str:
    """``silver.alerts`` -> its URI."""
    layer, _, name = qualified.partition(".")
    if layer not in LAYERS or not name:
        raise LakeError(f"{qualified!r} is not <layer>.<table> with layer one of {', '.join(LAYERS)}")
    return settings.lake_path(layer, name)


def conform(frame, qualified: str):
    """``frame`` with exactly the declared columns of table ``qualified``, in order, cast to their types."""
    from pyspark.sql import functions as F

    struct = spark_schema(load_schema(qualified))
    missing = [f.name for f in struct.fields if f.name not in frame.columns]
    if missing:
        raise LakeError(f"{qualified}: the job did not produce the declared columns {', '.join(missing)}")
    return frame.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in struct.fields])


def declared(qualified: str) -> dict:
    return load_schema(qualified)


# --------------------------------------------------------------------------- silver transforms

def _local_time_columns(frame, settings: Settings):
    """local_date, local_hour, hour_of_week (0 = Monday 00:00) in each tenant's time zone."""
    from pyspark.sql import functions as F

    zones = tenant_timezones(settings)
    zone = F.lit("UTC")
    for tenant, name in zones.items():
        zone = F.when(F.col("tenant") == tenant, F.lit(name)).otherwise(zone)
    local = F.from_utc_timestamp(F.col("event_time"), zone)
    return (frame.withColumn("_local", local)
            .withColumn("local_date", F.to_date("_local"))
            .withColumn("local_hour", F.hour("_local"))
            # dayofweek: 1 = Sunday .. 7 = Saturday -> 0 = Monday .. 6 = Sunday
            .withColumn("hour_of_week", ((F.dayofweek("_local") + 5) % 7) * 24 + F.hour("_local"))
            .drop("_local"))


def silver_sensor_readings(batch, settings: Settings):
    from pyspark.sql import functions as F

    frame = batch.select("*", F.col("location.area").alias("area"), F.col("location.lat").alias("lat"),
                         F.col("location.lon").alias("lon"))
    return _local_time_columns(frame, settings)


def _security_event_struct():
    from pyspark.sql import types as T

    fields = [("event_time", T.StringType()), ("host", T.StringType()), ("app", T.StringType()),
              ("kind", T.StringType()), ("src_ip", T.StringType()), ("src_port", T.LongType()),
              ("user", T.StringType()), ("dst_ip", T.StringType()), ("dst_port", T.LongType()),
              ("protocol", T.StringType()), ("method", T.StringType()), ("command", T.StringType())]
    return T.StructType([T.StructField(n, t) for n, t in fields])


def security_event_row(line: str, received_time) -> dict | None:
    """The security event of one (treated) syslog line as a silver row, or None."""
    from impetus.alerts import utc_iso
    from impetus.detect.syslog import SyslogParseError, parse_line, security_event

    try:
        record = parse_line(line, utc_iso(received_time) if received_time is not None else None)
    except (SyslogParseError, ValueError):
        return None
    event = security_event(record)
    if event is None:
        return None
    return {**{k: event[k] for k in ("event_time", "host", "kind", "src_ip", "src_port", "user", "dst_ip",
                                     "dst_port", "protocol", "method", "command")}, "app": record.get("app")}


def silver_security_events(batch, settings: Settings):
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    struct = _security_event_struct()
    names = [f.name for f in struct.fields]

    @pandas_udf(struct)
    def parse(lines: pd.Series, received: pd.Series) -> pd.DataFrame:
        rows = [security_event_row(line, None if pd.isna(moment) else moment.to_pydatetime())
                for line, moment in zip(lines, received)]
        return pd.DataFrame([row or {n: None for n in names} for row in rows], columns=names).astype(
            {"src_port": "Int64", "dst_port": "Int64"})

    parsed = batch.withColumn("e", parse(F.col("line"), F.col("received_time")))
    return (parsed.where(F.col("e.kind").isNotNull())
            .select("tenant", "collector", "received_time",
                    F.to_timestamp("e.event_time").alias("event_time"),
                    *[F.col(f"e.{n}").alias(n) for n in names if n != "event_time"],
                    F.sha2(F.col("line"), 256).alias("line_sha"), "ingested_at", "kafka_partition", "kafka_offset")
            .withColumn("event_date", F.to_date("event_time"))
            .withColumn("event_month", F.trunc(F.col("event_date"), "month")))


def silver_network_flows(batch, settings: Settings):
    return batch


def _with_sentiment(frame):
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")
    def compound(texts: pd.Series) -> pd.Series:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        return texts.map(lambda t: analyzer.polarity_scores(t)["compound"] if isinstance(t, str) else None)

    return frame.withColumn("sentiment", compound(F.col("text")))


def silver_social_posts(batch, settings: Settings):
    from pyspark.sql import functions as F

    frame = batch.select("*", F.lit("social").alias("channel"), F.col("platform").alias("source_"),
                         F.lit(None).cast("string").alias("url")).drop("source").withColumnRenamed("source_", "source")
    return _with_sentiment(frame)


def silver_cti_posts(batch, settings: Settings):
    from pyspark.sql import functions as F

    frame = batch.select("*", F.lit("cti").alias("channel"), F.lit(None).cast("string").alias("lang"))
    return _with_sentiment(frame)


def silver_alerts(batch, settings: Settings):
    from pyspark.sql import functions as F

    return batch.select(
        "alert_id", "tenant", F.col("time").alias("detected_at"), "event_time", "severity", "severity_id", "category",
        "title", "message", F.col("detector.kind").alias("detector_kind"),
        F.col("detector.name").alias("detector_name"),
        F.col("detector.version").alias("detector_version"), F.col("entity.type").alias("entity_type"),
        F.col("entity.id").alias("entity_id"), F.col("location.area").alias("area"), F.col("location.lat").alias("lat"),
        F.col("location.lon").alias("lon"), "evidence", "countermeasure", F.coalesce("count", F.lit(1)).alias("count"),
        F.lit(None).cast("string").alias("decision"), F.lit(None).cast("timestamp").alias("decided_at"),
        F.lit(None).cast("string").alias("operator"), "event_date", "event_month", "ingested_at")


def silver_alert_feedback(batch, settings: Settings):
    from pyspark.sql import functions as F

    return batch.withColumn("decided_at", F.col("event_time"))


@dataclass(frozen=True)
class SilverFlow:
    """One bronze table feeding one silver table."""
    bronze: str
    silver: str
    transform: Callable
    # newest row of a key wins by this column
    order_by: str = "ingested_at"


SILVER_FLOWS = (
    SilverFlow("sensors_readings", "sensor_readings", silver_sensor_readings),
    SilverFlow("security_syslog", "security_events", silver_security_events),
    SilverFlow("network_flows", "network_flows", silver_network_flows),
    SilverFlow("social_posts", "posts", silver_social_posts),
    SilverFlow("cti_posts", "posts", silver_cti_posts),
    SilverFlow("alerts", "alerts", silver_alerts, order_by="detected_at"),
    SilverFlow("alerts_feedback", "alert_feedback", silver_alert_feedback, order_by="decided_at"),
)


def _latest_per_key(frame, key: list[str], order_by: str):
    """One row per key: the newest by ``order_by``, then by landing time, then by Kafka offset."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col(order_by).desc_nulls_last(), F.col("ingested_at").desc()]
    order += [F.col(c).desc() for c in ("kafka_partition", "kafka_offset") if c in frame.columns]
    window = Window.partitionBy(*key).orderBy(*order)
    return frame.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def merge_into(spark, path: str, rows, qualified: str, order_by: str, keep_columns: tuple[str, ...] = ()):
    """MERGE ``rows`` (already conformed) into the table at ``path`` on its declared key.

    A row replaces the stored one when it is at least as new by ``order_by``;
    ``keep_columns`` are never overwritten by an update (e.g. an alert's decision).
    """
    from delta.tables import DeltaTable

    schema = declared(qualified)
    key = schema["x-key"]
    if not table_exists(spark, path):
        (rows.write.format("delta").mode("errorifexists").partitionBy(*schema.get("x-partition-by", []))
         .save(path))
        return
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in key)
    partition_by = schema.get("x-partition-by", [])
    if partition_by and schema.get("x-partition-follows-key"):
        # the partition columns are functions of the key: prune the target to the batch's partitions
        values = rows.select(*partition_by).distinct().collect()
        if len(values) <= 64:
            for column in partition_by:
                literals = sorted({str(v[column]) for v in values if v[column] is not None})
                if literals and len(literals) == len({v[column] for v in values}):
                    condition += f" AND t.`{column}` IN ({', '.join(repr(x) for x in literals)})"
    updates = {c: f"s.`{c}`" for c in rows.columns if c not in keep_columns}
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(rows.alias("s"), condition)
     .whenMatchedUpdate(condition=f"s.`{order_by}` >= t.`{order_by}` OR t.`{order_by}` IS NULL", set=updates)
     .whenNotMatchedInsertAll()
     .execute())


def _apply_feedback(spark, settings: Settings, feedback_rows=None, alert_ids=None) -> None:
    """Copy decisions onto silver.alerts: those in ``feedback_rows``, else the stored decisions
    (silver.alert_feedback) of ``alert_ids`` (a frame with that column: feedback that came first)."""
    from delta.tables import DeltaTable

    alerts = settings.lake_path("silver", "alerts")
    feedback = settings.lake_path("silver", "alert_feedback")
    if not (table_exists(spark, alerts) and table_exists(spark, feedback)):
        return
    source = feedback_rows
    if source is None:
        source = spark.read.format("delta").load(feedback).join(alert_ids, "alert_id", "left_semi")
    source = source.select("alert_id", "decision", "decided_at", "operator")
    (DeltaTable.forPath(spark, alerts).alias("t")
     .merge(source.alias("s"), "t.alert_id = s.alert_id")
     .whenMatchedUpdate(condition="t.decided_at IS NULL OR s.decided_at >= t.decided_at",
                        set={"decision": "s.decision", "decided_at": "s.decided_at", "operator": "s.operator"})
     .execute())


def build_silver(settings: Settings, names: list[str] | None = None, log=progress, promotion=None,
                 reprocess: bool = False) -> list[dict]:
    """Bring every silver table (or those named) up to date with bronze; returns rows merged per flow.

    Each micro-batch passes its table's gate before the MERGE (:mod:`impetus.promotion`); a batch
    that fails is held back and the build fails at the end (:class:`impetus.promotion.GatesFailed`),
    unless a caller's ``promotion`` accounts for it. With ``reprocess`` the named tables are read
    again from the start of bronze (after a fix, to promote what a gate held back; the MERGE on the
    key makes it idempotent).
    """
    from impetus.promotion import Promotion
    from impetus.spark import spark_session

    spark = spark_session(settings, "build_silver")
    own = promotion is None
    promotion = promotion or Promotion(spark, settings, log=log)
    promotion.spark = promotion.spark or spark
    if reprocess and not names:
        raise LakeError("--reprocess needs the silver tables to read again from bronze (--table NAME)")
    summaries = []
    for flow in SILVER_FLOWS:
        if names and flow.silver not in names and f"silver.{flow.silver}" not in names:
            continue
        source = settings.lake_path("bronze", flow.bronze)
        target = settings.lake_path("silver", flow.silver)
        if not table_exists(spark, source):
            log(f"silver.{flow.silver}: bronze.{flow.bronze} does not exist yet, nothing to build from")
            summaries.append({"table": f"silver.{flow.silver}", "from": f"bronze.{flow.bronze}", "rows_in": 0,
                              "rows": None})
            continue
        tally = {"rows_in": 0, "batches": 0, "held_back": 0}
        qualified = f"silver.{flow.silver}"
        checkpoint = settings.checkpoint_path(f"silver/{flow.silver}/{flow.bronze}")
        if reprocess:
            log(f"{qualified} <- bronze.{flow.bronze}: reading bronze again from the start")
            _delete_path(spark, checkpoint)

        def write_batch(batch, batch_id: int, flow=flow, target=target, qualified=qualified, tally=tally) -> None:
            fresh = _latest_per_key(flow.transform(batch, settings), declared(qualified)["x-key"], flow.order_by)
            rows = conform(fresh, qualified).cache()
            try:
                tally["rows_in"] += batch.count()
                tally["batches"] += 1
                if not promotion.admit(rows, qualified, f"bronze.{flow.bronze}", label=f"{flow.bronze}-b{batch_id}",
                                       txn=(f"impetus-gate-{flow.silver}-{flow.bronze}", batch_id)):
                    tally["held_back"] += 1
                    return
                keep = ("decision", "decided_at", "operator") if flow.silver == "alerts" else ()
                merge_into(spark, target, rows, qualified, flow.order_by, keep_columns=keep)
                if flow.silver == "alert_feedback":
                    _apply_feedback(spark, settings, rows)
                elif flow.silver == "alerts":
                    _apply_feedback(spark, settings, alert_ids=rows.select("alert_id"))
            finally:
                rows.unpersist()

        # retention and erasure delete from bronze: those commits are not new rows for silver
        query = (spark.readStream.format("delta").option("skipChangeCommits", "true").load(source)
                 .writeStream.foreachBatch(write_batch)
                 .option("checkpointLocation", checkpoint)
                 .trigger(availableNow=True)
                 .queryName(f"impetus-silver-{flow.silver}-{flow.bronze}")
                 .start())
        query.awaitTermination()
        rows = spark.read.format("delta").load(target).count() if table_exists(spark, target) else 0
        log(f"silver.{flow.silver} <- bronze.{flow.bronze}: {tally['rows_in']} new bronze rows, {rows} rows in all")
        summaries.append({"table": qualified, "from": f"bronze.{flow.bronze}", **tally, "rows": rows, "path": target})
    if own:
        promotion.finish()
    return summaries


def _delete_path(spark, uri: str) -> None:
    """Delete a folder (a streaming checkpoint) on whatever file system its URI names."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


# --------------------------------------------------------------------------- gold

def _read(spark, settings: Settings, qualified: str):
    path = table_path(settings, qualified)
    if not table_exists(spark, path):
        return None
    return spark.read.format("delta").load(path)


def gold_sensor_hourly(spark, settings: Settings):
    from pyspark.sql import functions as F

    readings = _read(spark, settings, "silver.sensor_readings")
    if readings is None:
        return None
    return (readings.withColumn("hour", F.date_trunc("hour", "event_time"))
            .groupBy("tenant", "sensor_id", "kind", "hour")
            .agg(F.first("area", ignorenulls=True).alias("area"), F.first("lat", ignorenulls=True).alias("lat"),
                 F.first("lon", ignorenulls=True).alias("lon"), F.min("local_date").alias("local_date"),
                 F.min("hour_of_week").alias("hour_of_week"), F.count("*").alias("readings"),
                 F.sum("value").alias("value_sum"), F.avg("value").alias("value_mean"),
                 F.min("value").alias("value_min"), F.max("value").alias("value_max"))
            .withColumn("event_month", F.trunc(F.to_date("hour"), "month")))


def gold_sensor_profile(spark, settings: Settings):
    from pyspark.sql import functions as F

    readings = _read(spark, settings, "silver.sensor_readings")
    if readings is None:
        return None
    cell = ["tenant", "sensor_id", "kind", "hour_of_week"]
    stats = readings.groupBy(*cell).agg(
        F.first("area", ignorenulls=True).alias("area"), F.count("value").alias("n"), F.avg("value").alias("mean"),
        F.percentile("value", 0.5).alias("median"), F.percentile("value", 0.1).alias("p10"),
        F.percentile("value", 0.9).alias("p90"), F.min("event_time").alias("first_time"),
        F.max("event_time").alias("last_time"))
    # a sort-merge join: from Delta's compressed size Spark can take the readings for the small side
    # and try to broadcast them (out of driver memory at 10M rows, bench/lakehouse.py)
    mad = (readings.join(stats.select(*cell, "median").hint("merge"), cell)
           .groupBy(*cell).agg(F.percentile(F.abs(F.col("value") - F.col("median")), 0.5).alias("mad")))
    return stats.join(mad, cell)


def gold_area_hourly(spark, settings: Settings):
    from pyspark.sql import functions as F

    readings = _read(spark, settings, "silver.sensor_readings")
    if readings is None:
        return None
    return (readings.where(F.col("area").isNotNull())
            .withColumn("hour", F.date_trunc("hour", "event_time"))
            .groupBy("tenant", "area", "kind", "hour")
            .agg(F.min("local_date").alias("local_date"), F.min("hour_of_week").alias("hour_of_week"),
                 F.countDistinct("sensor_id").alias("sensors"), F.sum("value").alias("value_sum"),
                 F.avg("value").alias("value_mean"), F.avg("lat").alias("lat"), F.avg("lon").alias("lon"))
            .withColumn("event_month", F.trunc(F.to_date("hour"), "month")))


def gold_area_profile(spark, settings: Settings):
    from pyspark.sql import functions as F

    hourly = gold_area_hourly(spark, settings)
    if hourly is None:
        return None
    return (hourly.groupBy("tenant", "area", "kind", "hour_of_week")
            .agg(F.count("*").alias("hours"), F.avg("value_sum").alias("mean"),
                 F.percentile("value_sum", 0.5).alias("median"), F.percentile("value_sum", 0.1).alias("p10"),
                 F.percentile("value_sum", 0.9).alias("p90"), F.avg("lat").alias("lat"), F.avg("lon").alias("lon")))


def gold_alert_counts(spark, settings: Settings):
    from pyspark.sql import functions as F

    alerts = _read(spark, settings, "silver.alerts")
    if alerts is None:
        return None
    # hour of week in the tenant's local time, as for the sensors
    alerts = _local_time_columns(alerts, settings)
    return (alerts.withColumn("hour", F.date_trunc("hour", "event_time"))
            .withColumn("area", F.coalesce("area", F.lit("")))
            .groupBy("tenant", "category", "detector_name", "area", "severity", "hour")
            .agg(F.min("hour_of_week").alias("hour_of_week"), F.count("*").alias("alerts"),
                 F.sum("count").alias("occurrences"),
                 F.sum(F.when(F.col("decision") == "confirmed", 1).otherwise(0)).alias("confirmed"),
                 F.sum(F.when(F.col("decision") == "dismissed", 1).otherwise(0)).alias("dismissed"),
                 F.avg("lat").alias("lat"), F.avg("lon").alias("lon"))
            .withColumn("event_month", F.trunc(F.to_date("hour"), "month")))


def gold_rule_feedback(spark, settings: Settings):
    from pyspark.sql import functions as F

    alerts = _read(spark, settings, "silver.alerts")
    if alerts is None:
        return None
    confirmed = F.sum(F.when(F.col("decision") == "confirmed", 1).otherwise(0))
    dismissed = F.sum(F.when(F.col("decision") == "dismissed", 1).otherwise(0))
    frame = (alerts.groupBy("tenant", "detector_kind", "detector_name", "detector_version")
             .agg(F.count("*").alias("alerts"), F.count("decision").alias("decided"),
                  confirmed.alias("confirmed"), dismissed.alias("dismissed")))
    return (frame.withColumn("confirmation_rate", F.when(F.col("decided") > 0, F.col("confirmed") / F.col("decided")))
            .withColumn("dismissal_rate", F.when(F.col("decided") > 0, F.col("dismissed") / F.col("decided"))))


def gold_flow_features(spark, settings: Settings):
    """The same features as :func:`impetus.detect.flow_anomaly.flow_features`, in Spark."""
    from pyspark.sql import functions as F

    flows = _read(spark, settings, "silver.network_flows")
    if flows is None:
        return None
    out, back = F.coalesce("bytes_out", F.lit(0)), F.coalesce("bytes_in", F.lit(0))
    packets, duration = F.coalesce("packets", F.lit(0)), F.coalesce("duration_ms", F.lit(0))
    return flows.select(
        "tenant", "event_time", "src_ip", "dst_port", "protocol",
        F.log1p(out).alias("log_bytes_out"), F.log1p(back).alias("log_bytes_in"),
        F.log1p(duration).alias("log_duration_ms"),
        F.log1p((out + back) / F.greatest(packets, F.lit(1))).alias("log_bytes_per_packet"),
        (F.log1p(out) - F.log1p(back)).alias("log_out_in_ratio"),
        F.when(F.col("dst_port") < 1024, 1.0).otherwise(0.0).alias("dst_port_well_known"),
        F.when(F.col("dst_internal"), 0.0).otherwise(1.0).alias("dst_external"), "event_month")


def gold_security_hourly(spark, settings: Settings):
    from pyspark.sql import functions as F

    events = _read(spark, settings, "silver.security_events")
    if events is None:
        return None
    return (events.withColumn("hour", F.date_trunc("hour", "event_time"))
            .groupBy("tenant", "kind", "hour")
            .agg(F.count("*").alias("events"), F.countDistinct("src_ip").alias("sources"),
                 F.countDistinct("user").alias("users"))
            .withColumn("event_month", F.trunc(F.to_date("hour"), "month")))


GOLD_BUILDERS = {
    "sensor_hourly": gold_sensor_hourly,
    "sensor_profile": gold_sensor_profile,
    "area_hourly": gold_area_hourly,
    "area_profile": gold_area_profile,
    "alert_counts": gold_alert_counts,
    "rule_feedback": gold_rule_feedback,
    "flow_features": gold_flow_features,
    "security_hourly": gold_security_hourly,
}


def within_retention(frame, qualified: str, now):
    """The rows of ``frame`` that table ``qualified`` may keep at ``now`` (rows without a time stay).

    Gold is recomputed hourly from silver, while retention runs daily: in between, silver holds
    rows that have just passed their retention, and a gold table computed from them would break
    its own retention rule at its gate. Gold is computed from what may be kept instead."""
    from impetus.governance import retention_policy

    expired = retention_policy(qualified, declared(qualified)).predicate(now)
    return frame if expired is None else frame.where(f"NOT coalesce(({expired}), false)")


# the silver tables each gold table is computed from
GOLD_INPUTS = {
    "sensor_hourly": "silver.sensor_readings", "sensor_profile": "silver.sensor_readings",
    "area_hourly": "silver.sensor_readings", "area_profile": "silver.sensor_readings",
    "alert_counts": "silver.alerts", "rule_feedback": "silver.alerts",
    "flow_features": "silver.network_flows", "security_hourly": "silver.security_events",
}


def build_gold(settings: Settings, names: list[str] | None = None, log=progress, promotion=None) -> list[dict]:
    """Recompute the gold tables (or those named) from silver; returns their row counts.

    Each recomputed table passes its gate before it replaces the old one (:mod:`impetus.promotion`);
    one that fails is held back, the old table stays, and the build fails at the end.
    """
    from impetus.promotion import Promotion
    from impetus.spark import spark_session

    spark = spark_session(settings, "build_gold")
    own = promotion is None
    promotion = promotion or Promotion(spark, settings, log=log)
    promotion.spark = promotion.spark or spark
    summaries = []
    for name, builder in GOLD_BUILDERS.items():
        qualified = f"gold.{name}"
        if names and name not in names and qualified not in names:
            continue
        frame = builder(spark, settings)
        if frame is None:
            log(f"{qualified}: its silver input does not exist yet, skipped")
            summaries.append({"table": qualified, "rows": None})
            continue
        path = settings.lake_path("gold", name)
        frame = within_retention(conform(frame, qualified), qualified, promotion.now).cache()
        try:
            admitted = promotion.admit(frame, qualified, GOLD_INPUTS[name])
            if admitted:
                (frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
                 .partitionBy(*declared(qualified).get("x-partition-by", [])).save(path))
        finally:
            frame.unpersist()
        rows = spark.read.format("delta").load(path).count() if table_exists(spark, path) else 0
        log(f"{qualified}: {rows} rows" + ("" if admitted else " (kept: the new version was held back)"))
        summaries.append({"table": qualified, "rows": rows, "path": path, "held_back": not admitted})
    if own:
        promotion.finish()
    return summaries


# --------------------------------------------------------------------------- access

def lake_tables(settings: Settings) -> list[str]:
    """Every declared table, ``layer.name``."""
    return [name for name in table_names(settings.schemas_dir) if name.split(".", 1)[0] in LAYERS]


def register_tables(spark, settings: Settings) -> list[str]:
    """Make every existing Delta table queryable as ``<layer>.<name>`` in this Spark session."""
    registered = []
    for qualified in lake_tables(settings):
        layer, name = qualified.split(".", 1)
        path = table_path(settings, qualified)
        if not table_exists(spark, path):
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        spark.sql(f"CREATE TABLE IF NOT EXISTS {layer}.{name} USING delta LOCATION '{path}'")
        registered.append(qualified)
    return registered


# --------------------------------------------------------------------------- maintenance

def optimize(settings: Settings, names: list[str] | None = None, target_file_mb: int = 128, log=progress) -> list[dict]:
    """Compact small files and Z-order each table by its declared common filters (``x-zorder-by``).

    Landing and MERGE write many small files (one per micro-batch and partition);
    OPTIMIZE rewrites them into files of about ``target_file_mb`` and clusters rows
    by the Z-order columns, so filters on them (a sensor, a time range) skip files.
    """
    from impetus.spark import spark_session

    spark = spark_session(settings, "optimize", {
        "spark.databricks.delta.optimize.maxFileSize": str(target_file_mb * 1024 * 1024)})
    results = []
    for qualified in lake_tables(settings):
        if names and qualified not in names and qualified.split(".", 1)[1] not in names:
            continue
        path = table_path(settings, qualified)
        if not table_exists(spark, path):
            continue
        schema = declared(qualified)
        zorder = [c for c in schema.get("x-zorder-by", []) if c not in schema.get("x-partition-by", [])]
        statement = f"OPTIMIZE delta.`{path}`" + (f" ZORDER BY ({', '.join(zorder)})" if zorder else "")
        metrics = spark.sql(statement).collect()[0]["metrics"]
        result = {"table": qualified, "zorder_by": zorder, "files_removed": metrics["numFilesRemoved"],
                  "files_added": metrics["numFilesAdded"]}
        log(f"{qualified}: {result['files_removed']} files compacted into {result['files_added']}"
            + (f", Z-ordered by {', '.join(zorder)}" if zorder else ""))
        results.append(result)
    return results


def describe_tables(settings: Settings) -> list[dict]:
    """Each declared table with its state on disk (read with delta-rs: no Spark needed)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    tables = []
    for qualified in lake_tables(settings):
        path = table_path(settings, qualified)
        entry = {"table": qualified, "path": path, "exists": False}
        try:
            table = DeltaTable(path)
        except Exception as err:  # deltalake raises TableNotFoundError, a subclass of its DeltaError
            if "no files in log segment" in str(err).lower() or "not a delta table" in str(err).lower() \
                    or type(err).__name__ == "TableNotFoundError":
                tables.append(entry)
                continue
            raise
        files = pa.table(table.get_add_actions(flatten=True)).to_pydict()
        entry.update(exists=True, version=table.version(), files=len(files.get("path", [])),
                     rows=int(sum(files.get("num_records", []) or [0])),
                     bytes=int(sum(files.get("size_bytes", []) or [0])))
        tables.append(entry)
    return tables
