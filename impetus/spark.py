"""Spark wiring shared by the jobs in jobs/batch/: a session with Delta Lake and Kafka.

Jars come from ``make jars`` (``var/jars/spark``) through ``spark.jars``, never
from Ivy at run time, so a machine with only Maven Central behind it works and
start-up does no network I/O. Master, memory and lake location come from
:class:`impetus.config.Settings`.
"""

from __future__ import annotations

import os
import sys

from impetus.config import Settings


def spark_session(settings: Settings, app_name: str, extra_conf: dict[str, str] | None = None):
    from pyspark.sql import SparkSession

    # executors' Python workers must be this interpreter, with the locked stack
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (SparkSession.builder.appName(app_name)
               .master(settings.spark_master)
               .config("spark.jars", ",".join(str(j) for j in settings.jars("spark")))
               .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
               .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
               .config("spark.driver.memory", settings.spark_driver_memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.warehouse.dir", str(settings.var_dir / "spark-warehouse"))
               .config("spark.databricks.delta.schema.autoMerge.enabled", "false"))
    if settings.profile == "local":
        builder = (builder.config("spark.sql.shuffle.partitions", "4")
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   # Delta's default of 50 snapshot partitions is tuned for clusters
                   .config("spark.databricks.delta.snapshotPartitions", "2")
                   .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={settings.var_dir / 'derby'}"))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
