import json

import pytest

from impetus.schemas import (PRIVACY_TAGS, PayloadRejected, check_payload, flink_columns, flink_ddl,
                             load_schema, privacy_tags, schema_names, spark_schema, table_names,
                             untagged_fields, validation_error, validator)

EVENT_TOPICS = ["sensors.readings", "video.frames", "security.syslog", "network.flows", "social.posts",
                "cti.posts"]


def test_every_topic_of_the_design_has_a_schema():
    assert set(EVENT_TOPICS + ["alert", "alerts.feedback", "dlq"]) <= set(schema_names())
    assert {"bronze.sensors_readings", "bronze.security_syslog", "bronze.network_flows", "bronze.social_posts",
            "bronze.cti_posts", "bronze.alerts", "bronze.alerts_feedback", "quarantine.landing"} <= set(table_names())


@pytest.mark.parametrize("name", schema_names() + table_names())
def test_every_field_has_a_privacy_tag(name):
    schema = load_schema(name)
    assert untagged_fields(schema) == []
    assert set(privacy_tags(schema).values()) <= set(PRIVACY_TAGS)


@pytest.mark.parametrize("name", schema_names())
def test_examples_validate_and_derivations_cover_every_field(name):
    schema = load_schema(name)
    assert schema["examples"], f"{name} needs an example"
    for example in schema["examples"]:
        validator(name)(example)
    names = list(schema["properties"])
    assert [c for c, _ in flink_columns(schema)] == names
    assert spark_schema(schema).fieldNames() == names


def test_privacy_tags_of_personal_fields():
    tags = privacy_tags(load_schema("network.flows"))
    assert tags["src_ip"] == "pseudonymise" and tags["dst_ip"] == "pseudonymise"
    assert privacy_tags(load_schema("video.frames"))["image"] == "image"
    assert privacy_tags(load_schema("social.posts"))["text"] == "redact"
    assert privacy_tags(load_schema("sensors.readings"))["location.lat"] == "none"


def test_flink_columns_of_sensor_readings():
    assert flink_columns(load_schema("sensors.readings")) == [
        ("tenant", "STRING NOT NULL"),
        ("sensor_id", "STRING NOT NULL"),
        ("kind", "STRING NOT NULL"),
        ("value", "DOUBLE NOT NULL"),
        ("unit", "STRING"),
        ("event_time", "TIMESTAMP_LTZ(3) NOT NULL"),
        ("location", "ROW<`area` STRING, `lat` DOUBLE, `lon` DOUBLE>"),
        ("source", "STRING"),
    ]


def test_flink_types_of_alert_maps_and_integers():
    columns = dict(flink_columns(load_schema("alert")))
    assert columns["evidence"] == "MAP<STRING, STRING>"
    assert columns["class_uid"] == "BIGINT NOT NULL"
    assert columns["detector"] == "ROW<`kind` STRING, `name` STRING, `version` STRING> NOT NULL"


def test_flink_ddl_text():
    schema = {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    assert flink_ddl(schema, "t", {"connector": "kafka", "topic": "x"}) == (
        "CREATE TABLE `t` (\n  `a` STRING NOT NULL,\n  `b` BIGINT\n) WITH (\n"
        "  'connector' = 'kafka',\n  'topic' = 'x'\n)")


def test_spark_schema_of_sensor_readings():
    struct = spark_schema(load_schema("sensors.readings"))
    assert [(f.name, f.dataType.simpleString(), f.nullable) for f in struct.fields] == [
        ("tenant", "string", False),
        ("sensor_id", "string", False),
        ("kind", "string", False),
        ("value", "double", False),
        ("unit", "string", True),
        ("event_time", "timestamp", False),
        ("location", "struct<area:string,lat:double,lon:double>", True),
        ("source", "string", True),
    ]
    assert struct["tenant"].metadata["privacy"] == "none"
    assert spark_schema(load_schema("alert"))["evidence"].dataType.simpleString() == "map<string,string>"


def test_table_schema_is_topic_fields_then_landing_columns():
    table = load_schema("bronze.sensors_readings")
    assert list(table["properties"]) == [
        "tenant", "sensor_id", "kind", "value", "unit", "event_time", "location", "source",
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at", "event_date",
        "event_month", "pseudonym_key"]
    assert table["x-retention"] == "3650d"  # counters, not people: kept for long trends
    assert "kafka_offset" in table["required"] and "tenant" in table["required"]


def test_bronze_tables_leave_out_fields_landing_drops():
    # the frame's pixels are tagged image: a table fed by video.frames would have no such column
    frames = load_schema("video.frames")
    from impetus.schemas import kept_fields
    kept = kept_fields(frames)
    assert "image" in frames["properties"] and "image" not in kept["properties"]
    assert "image" not in kept["required"]
    # a table's own columns come after the flow's fields
    flows = load_schema("bronze.network_flows")
    assert list(flows["properties"])[-2:] == ["src_internal", "dst_internal"]


GOOD = {"tenant": "auckland", "sensor_id": "s1", "kind": "pedestrian_count", "value": 5.0,
        "event_time": "2024-01-01T00:00:00Z"}


def test_valid_payload_returns_the_document():
    assert check_payload("sensors.readings", json.dumps(GOOD).encode()) == GOOD


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty message"),
    (None, "empty message"),
    (b"\xff\xfe{}", "not UTF-8 text: invalid start byte at byte 0"),
    (b"{not json", "not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b"[1, 2]", "not a JSON object but a list"),
    (b'{"value": NaN}', "not JSON: NaN is not a number JSON allows"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON this system accepts: nested too deeply"),
    (b" " * (1 << 20) + b"{}", "message of 1048578 bytes exceeds the 1048576-byte limit"),
    (json.dumps({**GOOD, "value": "5"}).encode(), "does not match schema sensors.readings: data.value must be number"),
    (json.dumps({**GOOD, "tenant": "Auck land"}).encode(),
     "does not match schema sensors.readings: data.tenant must match pattern ^[a-z0-9_-]+$"),
    (json.dumps({**GOOD, "event_time": "yesterday"}).encode(),
     "does not match schema sensors.readings: data.event_time must be date-time"),
    (json.dumps({**GOOD, "owner": "x"}).encode(),
     "does not match schema sensors.readings: data must not contain {'owner'} properties"),
])
def test_rejected_payloads_carry_a_reason(payload, reason):
    with pytest.raises(PayloadRejected) as err:
        check_payload("sensors.readings", payload)
    assert str(err.value) == reason
    assert validation_error("sensors.readings", payload) == reason
