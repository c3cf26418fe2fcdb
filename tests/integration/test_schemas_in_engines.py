"""The derived Flink DDL and Spark schemas are accepted by the real engines for every schema."""

import json

import pytest

from impetus.schemas import flink_ddl, load_schema, schema_names, spark_schema


@pytest.fixture(scope="module")
def table_env(broker):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("pipeline.jars", ";".join(j.as_uri() for j in broker.jars("flink")))
    return env


@pytest.fixture(scope="module")
def spark(broker):
    from impetus.spark import spark_session

    session = spark_session(broker, "test-schemas")
    yield session
    session.stop()


def test_flink_creates_a_kafka_table_for_every_schema(table_env, broker):
    for name in schema_names():
        table = name.replace(".", "_")
        table_env.execute_sql(flink_ddl(load_schema(name), table, {
            "connector": "kafka", "topic": name, "properties.bootstrap.servers": broker.kafka_bootstrap,
            "format": "json", "json.timestamp-format.standard": "ISO-8601"}))
        columns = [row[0] for row in table_env.execute_sql(f"DESCRIBE `{table}`").collect()]
        assert columns == list(load_schema(name)["properties"]), name


def test_spark_parses_every_example_with_the_derived_schema(spark):
    from pyspark.sql import functions as F

    for name in schema_names():
        schema = load_schema(name)
        example = schema["examples"][0]
        frame = spark.createDataFrame([(json.dumps(example),)], ["value"])
        parsed = frame.select(F.from_json("value", spark_schema(schema), {"mode": "FAILFAST"}).alias("d")) \
            .select("d.*").collect()[0].asDict(recursive=True)
        for field, value in example.items():
            assert parsed[field] is not None, f"{name}.{field} did not parse"
            plain_text = isinstance(value, str) and "format" not in schema["properties"][field]
            if isinstance(value, (int, float, bool)) or plain_text:
                assert parsed[field] == value, f"{name}.{field}"
