"""Flink wiring shared by the jobs in jobs/streaming/: environment, Kafka source and sinks.

Everything location-specific comes from :class:`impetus.config.Settings`: on the
``local`` profile a job runs in PyFlink's embedded mini-cluster with the Kafka
connector jar fetched by ``make jars``; on ``cluster`` it is submitted to the
configured JobManager and ships the ``impetus`` package with it.
"""

from __future__ import annotations

import sys

from impetus.config import PACKAGE_DIR, Settings


def stream_environment(settings: Settings, job_name: str):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    config = Configuration()
    config.set_string("pipeline.name", job_name)
    config.set_string("pipeline.jars", ";".join(j.as_uri() for j in settings.jars("flink")))
    # Python workers must use this interpreter (the one with the locked stack), not whatever is on PATH.
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    # checkpoints commit the Kafka source's offsets, so a restarted job resumes where it stopped
    config.set_string("execution.checkpointing.interval", f"{settings.flink_checkpoint_interval_ms} ms")
    config.set_string("execution.checkpointing.dir", settings.checkpoint_path(f"flink/{job_name}"))
    if settings.flink_jobmanager != "local":
        host, _, port = settings.flink_jobmanager.partition(":")
        config.set_string("execution.target", "remote")
        config.set_string("rest.address", host)
        config.set_string("rest.port", port or "8081")
    else:
        # a small embedded cluster: the machine has 2 cores
        config.set_string("taskmanager.memory.process.size", "1600m")
        config.set_string("rest.bind-port", "0")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink_parallelism)
    if settings.flink_jobmanager != "local":
        env.add_python_file(str(PACKAGE_DIR))
    return env


def kafka_source(settings: Settings, topic: str, group_id: str, bounded: bool = False,
                 from_timestamp_ms: int | None = None):
    """A source of raw message values (str) from ``topic``.

    Starts at the group's committed offsets (earliest when it has none), or at the
    first message stamped at or after ``from_timestamp_ms``. ``bounded`` stops at the
    offsets that were the latest when the job started (demo, tests, backfills);
    otherwise the source runs forever.
    """
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    starting = (KafkaOffsetsInitializer.timestamp(from_timestamp_ms) if from_timestamp_ms is not None
                else KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
    builder = (KafkaSource.builder()
               .set_bootstrap_servers(settings.kafka_bootstrap)
               .set_topics(topic)
               .set_group_id(group_id)
               .set_starting_offsets(starting)
               .set_value_only_deserializer(SimpleStringSchema()))
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def kafka_sink(settings: Settings, topic: str | None = None, topic_selector=None):
    """A sink of str values to a fixed ``topic`` or to ``topic_selector(value)``."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    record = KafkaRecordSerializationSchema.builder().set_value_serialization_schema(SimpleStringSchema())
    record = record.set_topic(topic) if topic else record.set_topic_selector(topic_selector)
    return (KafkaSink.builder()
            .set_bootstrap_servers(settings.kafka_bootstrap)
            .set_record_serializer(record.build())
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
            .build())
