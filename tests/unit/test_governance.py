"""impetus.governance without Spark: retention columns and cutoffs from the declarations, where erasure
looks in each table, the subject's pseudonyms, stream positions, lineage, Kafka exposure, and the data
inventory (which must list every field of every schema)."""

import runpy
from datetime import datetime, timezone
from pathlib import Path

import pytest

from impetus import governance
from impetus.config import load_settings
from impetus.privacy import Keyring, pseudonym, redact_text, treat_document
from impetus.schemas import load_schema, privacy_tags, schema_names, table_names

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, 30, tzinfo=timezone.utc)
KEY_NEW = bytes.fromhex("11" * 32)
KEY_OLD = bytes.fromhex("22" * 32)
KEYRING = Keyring((("new", KEY_NEW), ("old", KEY_OLD)))


@pytest.fixture(scope="module")
def settings():
    return load_settings()


# --------------------------------------------------------------------------- retention

# table -> (retention, time column, fallback for an empty time column); None: not aged row by row
EXPECTED_RETENTION = {
    "audit.erasure_requests": ("1825d", "requested_at", None),
    "audit.retention_runs": ("1825d", "started_at", None),
    "bronze.alerts": ("400d", "event_time", None),
    "bronze.alerts_feedback": ("400d", "event_time", None),
    "bronze.cti_posts": ("180d", "event_time", None),
    "bronze.network_flows": ("90d", "event_time", None),
    "bronze.security_syslog": ("180d", "received_time", None),
    "bronze.sensors_readings": ("3650d", "event_time", None),
    "bronze.social_posts": ("30d", "event_time", None),
    "gold.alert_counts": ("400d", "hour", None),
    "gold.area_hourly": ("3650d", "hour", None),
    "gold.area_profile": ("3650d", None, None),
    "gold.before_after": ("3650d", "date", None),
    "gold.flow_features": ("90d", "event_time", None),
    "gold.hotspots": ("400d", None, None),
    "gold.rule_feedback": ("400d", None, None),
    "gold.security_hourly": ("180d", "hour", None),
    "gold.sensor_hourly": ("3650d", "hour", None),
    "gold.sensor_profile": ("3650d", "first_time", None),
    "gold.trends": ("3650d", "local_date", None),
    "quarantine.landing": ("30d", "ingested_at", None),
    "quarantine.gates": ("30d", "quarantined_at", None),
    "audit.gate_runs": ("1825d", "validated_at", None),
    "audit.evidence_reveals": ("1825d", "revealed_at", None),
    "silver.alert_feedback": ("400d", "decided_at", "ingested_at"),
    "silver.alerts": ("400d", "event_time", "ingested_at"),
    "silver.network_flows": ("90d", "event_time", None),
    "silver.posts": ("30d", "event_time", "ingested_at"),
    "silver.security_events": ("180d", "event_time", "ingested_at"),
    "silver.sensor_readings": ("3650d", "event_time", None),
}


def test_every_table_ages_by_the_column_its_declaration_gives(settings):
    policies = {p.table: (p.retention, p.column, p.fallback) for p in governance.retention_policies(settings)}
    assert policies == EXPECTED_RETENTION


def test_retention_and_the_retention_gate_age_each_table_by_the_same_column(settings):
    from impetus.gates import time_column

    differing = {p.table: (p.column, time_column(load_schema(p.table)))
                 for p in governance.retention_policies(settings) if p.column != time_column(load_schema(p.table))}
    # quarantine rows are kept from when they were quarantined (a replayed message has an old record
    # time): quarantine.landing declares x-retention-column, which both follow
    assert differing == {}


def test_cutoffs_are_now_minus_the_declared_retention(settings):
    cutoffs = {p.table: p.cutoff(NOW) for p in governance.retention_policies(settings)}
    assert cutoffs["bronze.social_posts"] == datetime(2026, 5, 2, 12, 30, tzinfo=timezone.utc)
    assert cutoffs["bronze.network_flows"] == datetime(2026, 3, 3, 12, 30, tzinfo=timezone.utc)
    assert cutoffs["bronze.security_syslog"] == datetime(2025, 12, 3, 12, 30, tzinfo=timezone.utc)
    assert cutoffs["silver.alerts"] == datetime(2025, 4, 27, 12, 30, tzinfo=timezone.utc)
    assert cutoffs["audit.retention_runs"] == datetime(2021, 6, 2, 12, 30, tzinfo=timezone.utc)
    # profiles over all history have no time column: recomputed from aged tables instead
    assert cutoffs["gold.rule_feedback"] is None and cutoffs["gold.hotspots"] is None


def test_delete_predicates_by_column_kind(settings):
    schemas = {q: load_schema(q) for q in ("bronze.security_syslog", "silver.alerts", "gold.trends")}
    predicates = {q: governance.retention_policy(q, s).predicate(NOW) for q, s in schemas.items()}
    assert predicates == {
        "bronze.security_syslog": "`received_time` < TIMESTAMP '2025-12-03 12:30:00.000000+00:00'",
        # an alert without event time ages by when it was landed
        "silver.alerts": "coalesce(`event_time`, `ingested_at`) < TIMESTAMP '2025-04-27 12:30:00.000000+00:00'",
        # a local date goes once the whole day is older than the cutoff
        "gold.trends": "`local_date` < DATE '2016-06-03'",
    }
    # a naive time is UTC
    assert governance.retention_policy("gold.trends", schemas["gold.trends"]).cutoff(
        datetime(2026, 6, 1, 12, 30)) == datetime(2016, 6, 3, 12, 30, tzinfo=timezone.utc)


def test_retention_policy_of_literal_declarations():
    moment = {"type": "string", "format": "date-time"}
    columns = {"made": moment, "event_time": moment, "day": {"type": "string", "format": "date"},
               "name": {"type": "string"}}
    declared = governance.retention_policy("x.t", {"x-retention": "7d", "x-retention-column": "made",
                                                   "required": ["made"], "properties": columns})
    assert (declared.column, declared.column_kind) == ("made", "timestamp")
    assert declared.note == "declared x-retention-column" and declared.fallback is None
    assert declared.cutoff(NOW) == datetime(2026, 5, 25, 12, 30, tzinfo=timezone.utc)
    kept = governance.retention_policy("x.t", {"x-retention": "forever", "properties": columns})
    assert (kept.column, kept.cutoff(NOW), kept.predicate(NOW), kept.note) == (
        "event_time", None, None, "x-retention forever: kept")
    undeclared = governance.retention_policy("x.t", {"properties": columns})
    assert undeclared.cutoff(NOW) is None and undeclared.note == "no x-retention declared: kept until deleted by hand"
    with pytest.raises(governance.GovernanceError) as wrong:
        governance.retention_policy("x.t", {"x-retention": "7d", "x-retention-column": "name", "properties": columns})
    assert str(wrong.value) == ("x.t: its retention column 'name' is not a date or date-time column of the table; "
                                "fix x-retention-column / x-event-time in its schema")


# --------------------------------------------------------------------------- erasure

EXPECTED_ERASURE = {
    "bronze.alerts": [("message", "contains"), ("entity.id", "equals"), ("evidence", "any map value contains")],
    "bronze.alerts_feedback": [("operator", "equals"), ("comment", "contains")],
    "bronze.cti_posts": [("author", "equals"), ("text", "contains")],
    "bronze.network_flows": [("src_ip", "equals"), ("dst_ip", "equals")],
    "bronze.security_syslog": [("line", "contains")],
    "bronze.social_posts": [("author", "equals"), ("text", "contains")],
    "gold.flow_features": [("src_ip", "equals")],
    "quarantine.landing": [("payload_redacted", "contains")],
    "quarantine.gates": [("row_redacted", "contains")],
    "silver.alert_feedback": [("operator", "equals"), ("comment", "contains")],
    "silver.alerts": [("message", "contains"), ("entity_id", "equals"), ("evidence", "any map value contains"),
                      ("operator", "equals")],
    "silver.network_flows": [("src_ip", "equals"), ("dst_ip", "equals")],
    "silver.posts": [("author", "equals"), ("text", "contains")],
    "silver.security_events": [("src_ip", "equals"), ("user", "equals"), ("dst_ip", "equals"),
                               ("command", "contains")],
}


def test_erasure_looks_at_every_personal_column_of_every_table_but_the_audit_tables(settings):
    # tables without a personal column (sensor readings, aggregates) are not scanned at all
    assert governance.erasable_tables(settings) == EXPECTED_ERASURE


def test_erasure_targets_of_nested_maps_arrays_and_structs():
    schema = {"properties": {
        "who": {"type": "string", "x-privacy": "pseudonymise"},
        "aliases": {"type": "array", "items": {"type": "string"}, "x-privacy": "pseudonymise"},
        "notes": {"type": "array", "items": {"type": "string"}, "x-privacy": "redact"},
        "tokens": {"type": "object", "additionalProperties": {"type": "string"}, "x-privacy": "pseudonymise"},
        "report": {"type": "object", "x-privacy": "redact", "properties": {
            "text": {"type": "string", "x-privacy": "none"}, "score": {"type": "number", "x-privacy": "none"}}},
        "place": {"type": "object", "x-privacy": "none", "properties": {
            "owner": {"type": "string", "x-privacy": "pseudonymise"}, "area": {"type": "string", "x-privacy": "none"}}},
        "photo": {"type": "string", "x-privacy": "image"},
        "count": {"type": "integer", "x-privacy": "redact"},
    }}
    assert governance.erasure_targets(schema) == [
        ("who", "equals"), ("aliases", "any element equals"), ("notes", "any element contains"),
        ("tokens", "any map value equals"), ("report.text", "contains"), ("place.owner", "equals")]


def test_the_merge_condition_of_bronze_alerts(settings):
    assert governance.subject_condition(EXPECTED_ERASURE["bronze.alerts"]) == (
        "(instr(t.`message`, s.pseudonym) > 0) OR (t.`entity`.`id` = s.pseudonym) OR "
        "(exists(map_values(t.`evidence`), v -> instr(CAST(v AS STRING), s.pseudonym) > 0))")


def test_identifier_forms_landing_may_have_pseudonymised():
    assert governance.identifier_forms(" +47 41 23 45 67 ") == ["+47 41 23 45 67", "4741234567"]
    assert governance.identifier_forms("049 827 1111") == ["049 827 1111", "0498271111"]
    assert governance.identifier_forms("EL 12345") == ["EL 12345", "EL12345"]
    assert governance.identifier_forms("@Kari_N") == ["@Kari_N", "@kari_n"]
    # an address is one form: its pseudonym is the same however it is written
    assert governance.identifier_forms("203.0.113.77") == ["203.0.113.77"]
    assert governance.identifier_forms("Kari.Nordmann@Example.no") == ["Kari.Nordmann@Example.no"]


def test_the_pseudonyms_erasure_computes_are_those_landing_wrote_under_every_key():
    found = set(governance.subject_pseudonyms_all_forms("+47 41 23 45 67", KEYRING))
    assert len(found) == 4  # two forms under two keys
    for key in (KEY_NEW, KEY_OLD):
        # landing's free-text redaction pseudonymises the digits
        text = redact_text("Call me on +47 41 23 45 67 tonight", key)
        assert [p for p in found if p in text], text
        # a pseudonymised column holds the value as written
        post = treat_document(load_schema("social.posts"), {"author": "+47 41 23 45 67"}, key)
        assert post["author"] in found
    email = governance.subject_pseudonyms_all_forms("Kari.Nordmann@Example.no", KEYRING)
    assert email == [pseudonym("kari.nordmann@example.no", KEY_NEW), pseudonym("kari.nordmann@example.no", KEY_OLD)]


def test_erasure_refuses_an_empty_subject(settings):
    with pytest.raises(governance.GovernanceError) as empty:
        governance.erase_subject(settings, "  ")
    assert str(empty.value) == "no subject given: pass the identifier the subject is known by (e-mail, address...)"


def test_retention_refuses_an_undeclared_table(settings):
    with pytest.raises(governance.GovernanceError) as unknown:
        governance.enforce_retention(settings, tables=["silver.nothing"])
    assert str(unknown.value).startswith("no table silver.nothing is declared; declared: audit.erasure_requests, ")


# --------------------------------------------------------------------------- silver streams

OFFSETS = ('v1\n{"batchWatermarkMs":0,"batchTimestampMs":1795271150000,"conf":{}}\n'
           '{"sourceVersion":1,"reservoirId":"0f8bf7d0-4192-4879-83bd-f480d6ad0507","reservoirVersion":2,'
           '"index":-1,"isStartingVersion":false}\n')


def test_the_bronze_version_a_stream_checkpoint_points_at():
    assert governance.offsets_version(OFFSETS) == 2
    # inside a version (or its initial snapshot): that version is still needed
    assert governance.offsets_version(OFFSETS.replace('"index":-1', '"index":4')) == 2
    with pytest.raises(governance.GovernanceError):
        governance.offsets_version("v1\n{}\n")


# --------------------------------------------------------------------------- lineage and Kafka

def test_which_table_is_computed_from_which(settings):
    inputs = governance.table_inputs(settings)
    assert inputs["bronze.alerts"] == ["topic alerts.auckland", "topic alerts.oslo", "topic alerts.padova",
                                       "topic alerts.operations"]
    assert inputs["bronze.sensors_readings"] == ["topic sensors.readings", "topic sensors.history"]
    assert inputs["silver.posts"] == ["bronze.social_posts", "bronze.cti_posts"]
    assert inputs["silver.alerts"] == ["bronze.alerts", "silver.alert_feedback"]
    assert inputs["gold.alert_counts"] == ["silver.alerts"]
    assert inputs["gold.area_profile"] == ["silver.sensor_readings"]
    assert inputs["gold.hotspots"] == ["gold.area_hourly", "gold.alert_counts"]
    assert inputs["gold.flow_features"] == ["silver.network_flows"]
    assert governance.gold_to_recompute(settings, ["silver.alerts", "gold.flow_features"]) == [
        "gold.alert_counts", "gold.before_after", "gold.hotspots", "gold.rule_feedback"]


def test_kafka_topics_with_personal_fields_and_how_long_they_keep_them(settings):
    exposure = {e["topic"]: (e["retention"], e["personal_fields"]) for e in governance.kafka_exposure(settings)}
    assert exposure["alerts.feedback"] == ("90d", ["comment", "operator"])
    assert exposure["alerts.oslo"] == ("30d", ["entity.id", "evidence", "message"])
    assert exposure["network.flows"] == ("7d", ["dst_ip", "src_ip"])
    assert exposure["video.frames"] == ("1h", ["image"])
    # dead-letter topics keep the raw message
    assert exposure["security.syslog.dlq"] == ("14d", ["payload"])
    assert not {"sensors.readings", "sensors.history", "rules", "models.control", "jobs.accounting"} & set(exposure)


# --------------------------------------------------------------------------- inventory

@pytest.fixture(scope="module")
def record(settings):
    return governance.inventory(settings)


@pytest.mark.parametrize("name", schema_names())
def test_inventory_lists_every_field_of_every_topic_schema(record, name):
    listed = [{f["name"]: f["privacy"] for f in t["fields"]} for t in record["topics"] if t["schema"] == name]
    listed += [{f["name"]: f["privacy"] for f in s["fields"]} for s in record["schemas_without_topic"]
               if s["schema"] == name]
    assert listed, f"{name} is in no topic and not listed on its own"
    for fields in listed:
        assert fields == privacy_tags(load_schema(name))


@pytest.mark.parametrize("name", table_names())
def test_inventory_lists_every_field_of_every_table(record, name):
    (entry,) = [t for t in record["tables"] if t["table"] == name]
    assert {f["name"]: f["privacy"] for f in entry["fields"]} == privacy_tags(load_schema(name))
    assert all(f["treatment"] != "undeclared" for f in entry["fields"])
    assert entry["purpose"] and entry["owner"] and entry["retention"]


def test_inventory_says_how_each_field_is_treated_where(record):
    topics = {t["topic"]: t for t in record["topics"]}
    fields = {t: {f["name"]: f["treatment"] for f in topics[t]["fields"]} for t in topics}
    assert fields["network.flows"]["src_ip"] == "raw on the topic; keyed HMAC pseudonym at landing"
    assert fields["social.posts"]["text"] == "raw on the topic; free-text redaction at landing"
    assert fields["video.frames"]["image"] == "raw on the topic for 1h; not landed"
    assert fields["network.flows.dlq"]["payload"] == "raw on the topic for 14d; not landed"
    assert fields["sensors.readings"]["location.lat"] == "none (not personal)"
    assert topics["alerts.padova"]["landed_in"] == ["bronze.alerts"] and topics["video.frames"]["landed_in"] == []
    assert (topics["alerts.padova"]["partitions"], topics["alerts.padova"]["retention"]) == (1, "30d")
    tables = {t["table"]: t for t in record["tables"]}
    alerts = tables["silver.alerts"]
    treatments = {f["name"]: f["treatment"] for f in alerts["fields"]}
    assert treatments["entity_id"].startswith("keyed HMAC pseudonym")
    assert treatments["evidence"].startswith("free-text redaction")
    assert (alerts["retention"], alerts["retention_column"]) == ("400d", "event_time")
    assert alerts["owner"] == "data-engineering"
    assert alerts["personal_fields"] == ["message", "entity_id", "evidence", "operator"]
    assert alerts["fed_by"] == ["bronze.alerts", "silver.alert_feedback"]
    assert alerts["feeds"] == ["gold.alert_counts", "gold.rule_feedback"]
    assert tables["audit.erasure_requests"]["erasure"] == []
    assert tables["audit.erasure_requests"]["erasure_note"] == "never erased: the record of what was erased"
    assert tables["gold.sensor_hourly"]["erasure_note"] == "no personal column"


def test_inventory_as_markdown_and_html(settings, record):
    text = governance.inventory_markdown(settings, record)
    for entry in record["tables"]:
        assert f"\n### {entry['table']}\n" in text
    for entry in record["topics"]:
        assert f"\n### {entry['topic']}\n" in text
    assert ("| `network.flows` | `bronze.network_flows` | `silver.network_flows`, `gold.flow_features` |"
            in text.splitlines())
    assert "| `alerts.feedback` | 90d | `comment`, `operator` |" in text.splitlines()
    assert ("- **Erasure looks at:** `message` (contains), `entity.id` (equals), `evidence` (any map value contains)"
            in text.splitlines())
    page = governance.inventory_html(settings, record)
    assert page.startswith("<!doctype html>") and page.count("<h3 id=") == len(record["tables"]) + len(record["topics"])
    # declarations are text, never markup
    hostile = {**record, "tables": [{**record["tables"][0], "description": "<script>alert(1)</script>"}]}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in governance.inventory_html(settings, hostile)


# --------------------------------------------------------------------------- jobs

@pytest.mark.parametrize("job", ["enforce_retention", "erase_subject"])
def test_jobs_explain_themselves(job, capsys):
    main = runpy.run_path(str(ROOT / "jobs" / "batch" / f"{job}.py"))["main"]
    with pytest.raises(SystemExit) as ended:
        main(["--help"])
    assert ended.value.code == 0
    assert f"usage: {job}" in capsys.readouterr().out
