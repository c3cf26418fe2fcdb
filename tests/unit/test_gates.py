"""Data-quality gates (impetus.gates) on literal rows of declared tables, in one local Spark session.

Each table is validated twice: a clean batch passes every expectation, and a batch with one
planted violation per row fails exactly the rules planted, says so in words, and never repeats
a planted personal value (in the result, the exception or the Data Docs page).
"""

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest

from impetus import gates
from impetus.config import load_settings
from impetus.gates import GateFailed, GateResult, Failure, check, data_quality_alert, expectations_for, validate
from impetus.privacy import redact_text
from impetus.schemas import document_error, load_schema, spark_schema

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
HOUR = NOW - timedelta(hours=1)
PS = ["ps_0123456789abcdef0123", "ps_a0a1a2a3a4a5a6a7a8a9", "ps_ffffffffffffffffffff"]
# a JPEG's first bytes, as base64
JPEG = "/9j/4AAQSkZJRgABAQEASABIAAD"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return dataclasses.replace(load_settings(), var_dir=tmp_path_factory.mktemp("gates-var"))


@pytest.fixture(scope="module")
def spark(settings):
    from impetus.spark import spark_session

    session = spark_session(settings, "test_gates")
    session.conf.set("spark.sql.shuffle.partitions", "1")
    yield session
    session.conf.set("spark.sql.shuffle.partitions", "4")


def nullable(data_type):
    """``data_type`` with every field nullable: a batch from a faulty job, whose nulls the gate must catch."""
    from pyspark.sql import types as T

    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable(f.dataType), True) for f in data_type.fields])
    return data_type


def frame(spark, qualified, rows):
    return spark.createDataFrame(rows, nullable(spark_schema(load_schema(qualified))))


def failed(result: GateResult) -> set[tuple[str, str]]:
    return {(f.rule, f.column) for f in result.failures}


def page(result: GateResult) -> str:
    return Path(urlparse(result.docs_url).path).read_text(encoding="utf-8")


def assert_never_shown(result: GateResult, raised: GateFailed, values: list[str]) -> None:
    shown = [result.to_json(), result.explain(), str(raised), page(result)]
    for value in values:
        assert not any(value in text for text in shown), f"{value!r} appears in the gate's output"


def flow(**values):
    row = dict(tenant="auckland", event_time=HOUR, src_ip=PS[0], src_port=50000, dst_ip=PS[1], dst_port=22,
               protocol="tcp", bytes_out=100, bytes_in=200, packets=3, duration_ms=40, src_internal=True,
               dst_internal=False, event_date=HOUR.date(), event_month=HOUR.date().replace(day=1), ingested_at=NOW)
    return {**row, **values}


def post(post_id, **values):
    row = dict(tenant="oslo", channel="social", post_id=post_id, source="mastodon", author=PS[2], url=None,
               text=f"crowded at the station, says {PS[0]}", lang="en", sentiment=0.2, event_time=HOUR,
               event_date=HOUR.date(), event_month=HOUR.date().replace(day=1), ingested_at=NOW)
    return {**row, **values}


def bronze_alert(offset, **values):
    row = dict(alert_id=f"a-{offset}", class_uid=2004, tenant="auckland", time=HOUR, event_time=HOUR,
               severity="medium", severity_id=3, category="threshold", title="pedestrian_count above 3000",
               message=f"seen by {PS[1]}", detector={"kind": "rule", "name": "sensor_threshold", "version": "1"},
               entity={"type": "sensor", "id": PS[0]}, location={"area": "Queen Street", "lat": -36.85, "lon": 174.76},
               evidence={"value": "3512.0", "threshold": "3000.0"}, countermeasure=None, status="new", count=1,
               kafka_topic="alerts.auckland", kafka_partition=0, kafka_offset=offset, kafka_timestamp=HOUR,
               ingested_at=NOW, event_date=HOUR.date(), event_month=HOUR.date().replace(day=1), pseudonym_key="k1")
    return {**row, **values}


# --------------------------------------------------------------------------- derived from the declaration only

def test_network_flows_gate_is_derived_from_its_declaration():
    expectations = expectations_for("silver.network_flows", now=NOW)
    rules = {(e.meta["rule"], e.meta["column"]) for e in expectations}
    columns = [e for e in expectations if e.meta["rule"] == "columns"]
    assert len(columns) == 1 and columns[0].exact_match
    assert set(columns[0].column_set) == set(spark_schema(load_schema("silver.network_flows")).fieldNames())
    assert {c for r, c in rules if r == "not_null"} == set(load_schema("silver.network_flows")["required"])
    assert {c for r, c in rules if r == "pseudonym"} == {"src_ip", "dst_ip"}
    for column in ("src_ip", "dst_ip"):
        assert {r for r, c in rules if c == column and r.startswith("raw_")} == {
            "raw_ipv4", "raw_ipv6", "raw_email", "raw_phone", "raw_mac", "raw_plate"}
    assert ("unique_key", "tenant, event_time, src_ip, src_port, dst_ip, dst_port, protocol") in rules
    retention = next(e for e in expectations if e.meta["rule"] == "retention")
    assert (retention.column, retention.min_value) == ("event_time", NOW - timedelta(days=90))
    assert not [e for e in expectations if e.meta["rule"] == "freshness"]  # the table declares none
    assert all(e.description for e in expectations)


def test_nested_fields_and_maps_get_their_own_expectations():
    rules = {(e.meta["rule"], e.meta["column"]) for e in expectations_for("bronze.alerts", now=NOW)}
    assert {("range", "location.lat"), ("enum", "detector.kind"), ("not_null", "entity.type"),
            ("pseudonym", "entity.id"), ("raw_email", "entity.id"), ("anonymisation", "evidence"),
            ("pattern", "tenant"), ("length", "title")} <= rules
    # the declared length of a redacted text is that of the raw text: not checked after treatment
    assert ("length", "message") not in rules


def test_the_age_of_a_table_is_measured_on_its_event_time_or_first_time_column():
    assert [gates.time_column(load_schema(t)) for t in (
        "silver.security_events", "gold.sensor_hourly", "silver.alert_feedback", "gold.trends", "gold.area_profile")
    ] == ["event_time", "hour", "decided_at", "local_date", None]


def test_x_freshness_adds_a_freshness_expectation(monkeypatch):
    declared = load_schema("silver.sensor_readings")
    monkeypatch.setattr(gates, "load_schema", lambda name: {**declared, "x-freshness": "2h"})
    freshness = [e for e in expectations_for("silver.sensor_readings", now=NOW) if e.meta["rule"] == "freshness"]
    assert [(e.column, e.meta["cutoff"]) for e in freshness] == [("event_time", "2026-05-01T10:00:00Z")]


# --------------------------------------------------------------------------- the regexes Spark evaluates

def test_raw_identifier_patterns_find_raw_values_and_nothing_in_redacted_text(spark):
    from pyspark.sql import functions as F

    raw = {
        "ipv4": ["10.0.0.1", "from 192.168.1.20 port 22"],
        "ipv6": ["2001:db8::1", "fe80::1%eth0", "at 2001:0db8:85a3:0000:0000:8a2e:0370:7334 now", "::1"],
        "email": ["write to jane.doe@example.org"],
        "phone": ["+47 22 33 44 55", "call 0049 30 1234567", "02 1234 5678", "12 34 56 78"],
        "mac": ["00:1A:2B:3C:4D:5E", "aa-bb-cc-dd-ee-ff"],
        "plate": ["AB 12345", "AB 123 CD", "ABC123"],
        "image": [JPEG, "iVBORw0KGgoAAAANSUhEUg", "R0lGODlhAQABAAAAACw=", "data:image/png;base64,AAAA", "QUJD" * 200],
    }
    key = b"k" * 32
    rows = [(kind, text) for kind, texts in raw.items() for text in texts]
    rows += [("", redact_text(text, key)) for kind, texts in raw.items() if kind != "image" for text in texts]
    rows += [("", text) for text in (
        PS[0], "at 10:00:00 ok", "meeting 12:30", "version 1.2.3", "std::vector", "port 8080", "+1 23 45",
        "sha256 0123456789abcdef0123456789abcdef", "https://example.org/a/9j/b",
        f"Jan  1 10:00:00 host sshd[123]: Failed password for {PS[0]} from {PS[1]} port 22 ssh2")]
    patterns = {**{k: regex for k, (_, regex) in gates.RAW_IDENTIFIERS.items()}, "image": gates.IMAGE_BYTES}
    checked = spark.createDataFrame(rows, "kind string, text string").select(
        "kind", "text", *[F.col("text").rlike(regex).alias(kind) for kind, regex in patterns.items()]).collect()
    found = {(row["kind"], row["text"]): {k for k in patterns if row[k]} for row in checked}
    assert found == {(kind, text): ({kind} if kind else set()) for kind, text in rows}


# --------------------------------------------------------------------------- gates on Spark DataFrames

def test_clean_flows_pass_and_the_data_docs_page_is_written(spark, settings):
    result = check(frame(spark, "silver.network_flows", [flow(), flow(src_port=50001)]), "silver.network_flows",
                   settings, now=NOW, batch_name="flows-clean")
    assert (result.success, result.failed, result.failures) == (True, 0, [])
    assert result.evaluated == len(expectations_for("silver.network_flows", now=NOW))
    assert result.docs_url.startswith("file://") and "flows-clean" in result.docs_url
    assert "silver.network_flows" in page(result)
    assert (gates.docs_dir(settings) / "index.html").is_file()


def test_planted_flow_violations_fail_their_rules_without_showing_addresses(spark, settings):
    from pyspark.sql import functions as F

    rows = [flow(), flow(),  # the same key twice
            flow(src_port=1, dst_port=None),
            flow(src_port=2, src_ip="10.1.2.3"),
            flow(src_port=3, dst_ip="2001:db8::7"),
            flow(src_port=4, event_time=NOW - timedelta(days=91)),
            flow(src_port=5, protocol=JPEG)]
    batch = (frame(spark, "silver.network_flows", rows)
             .withColumn("bytes_out", F.col("bytes_out").cast("string"))
             .withColumn("payload", F.lit("dropped at landing")))
    with pytest.raises(GateFailed) as raised:
        check(batch, "silver.network_flows", settings, now=NOW, batch_name="flows-planted")
    result = raised.value.result
    assert failed(result) == {
        ("columns", "*"), ("type", "bytes_out"), ("not_null", "dst_port"),
        ("unique_key", "tenant, event_time, src_ip, src_port, dst_ip, dst_port, protocol"),
        ("pseudonym", "src_ip"), ("raw_ipv4", "src_ip"), ("pseudonym", "dst_ip"), ("raw_ipv6", "dst_ip"),
        ("retention", "event_time"), ("image_bytes", "protocol")}
    words = {f.rule + ":" + f.column: f.explanation for f in result.failures}
    assert "unexpected column payload (a field landing must drop)" in words["columns:*"]
    assert words["type:bytes_out"] == "column bytes_out is StringType, declared LongType"
    assert words["raw_ipv4:src_ip"] == "1 value of pseudonymised column src_ip holding a raw IPv4 address"
    assert words["retention:event_time"].startswith("1 value of event_time older than the 90d retention "
                                                    "(before 2026-01-31T12:00:00Z), e.g. 2026-01-30T12:00:00Z")
    assert words["unique_key:tenant, event_time, src_ip, src_port, dst_ip, dst_port, protocol"].startswith("2 values")
    assert "[raw_ipv6] 1 value of pseudonymised column dst_ip holding a raw IPv6 address" in str(raised.value)
    assert result.docs_url in str(raised.value)
    assert_never_shown(result, raised.value, ["10.1.2.3", "2001:db8::7", JPEG])


def test_clean_posts_pass(spark, settings):
    result = validate(frame(spark, "silver.posts", [post("p1"), post("p2", author=None, text=None)]), "silver.posts",
                      settings, now=NOW, docs=False)
    assert (result.success, result.failures, result.docs_url) == (True, [], None)


def test_raw_identifiers_images_and_staleness_of_posts_fail_without_being_shown(spark, settings, monkeypatch):
    # no table declares x-freshness yet: give silver.posts one that its rows (an hour old) do not meet
    declared = load_schema("silver.posts")
    monkeypatch.setattr(gates, "load_schema", lambda name: {**declared, "x-freshness": "30m"})
    planted = {"e-mail": "write to jane.doe@example.org", "phone": "ring +47 22 33 44 55",
               "mac": "device 00:1A:2B:3C:4D:5E", "plate": "car AB 12345 parked", "author": "ola@example.no",
               "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}
    rows = [post("p1"), post("p2", text=planted["e-mail"]), post("p3", text=planted["phone"]),
            post("p4", text=planted["mac"]), post("p5", text=planted["plate"]), post("p6", author=planted["author"]),
            post("p7", text=planted["image"]), post("p8", tenant=None)]
    with pytest.raises(GateFailed) as raised:
        check(frame(spark, "silver.posts", rows).drop("lang"), "silver.posts", settings, now=NOW,
              batch_name="posts-planted")
    result = raised.value.result
    assert failed(result) == {("columns", "*"), ("raw_email", "text"), ("raw_phone", "text"), ("raw_mac", "text"),
                              ("raw_plate", "text"), ("pseudonym", "author"), ("raw_email", "author"),
                              ("image_bytes", "text"), ("not_null", "tenant"), ("freshness", "event_time")}
    assert all(f.values == [] for f in result.failures if f.rule not in ("not_null", "freshness"))
    # the checks of the missing column could not run: the columns failure says why, once
    words = {f.rule + ":" + f.column: f.explanation for f in result.failures}
    assert words["columns:*"] == "the columns of silver.posts do not match its declaration: missing column lang"
    assert words["freshness:event_time"] == (
        "the newest event_time is 2026-05-01T11:00:00Z, older than the 30m freshness (before 2026-05-01T11:30:00Z)")
    assert_never_shown(result, raised.value, list(planted.values()) + ["jane.doe", "22 33 44 55", "AB 12345"])


def test_clean_bronze_alerts_pass(spark, settings):
    result = validate(frame(spark, "bronze.alerts", [bronze_alert(1), bronze_alert(2, location=None, evidence=None)]),
                      "bronze.alerts", settings, now=NOW, docs=False)
    assert (result.success, result.failures) == (True, [])


def test_ranges_enums_patterns_and_nested_fields_of_bronze_alerts(spark, settings):
    rows = [bronze_alert(1),
            bronze_alert(2, location={"area": "Queen Street", "lat": -95.0, "lon": 174.76}),
            bronze_alert(3, severity="urgent"),
            bronze_alert(4, evidence={"value": "3512.0", "source": "seen from 10.9.8.7"}),
            bronze_alert(5, tenant="Auckland City"),
            bronze_alert(6, entity={"type": "sensor", "id": "akl-297-queen-street"}),
            bronze_alert(7, detector={"kind": None, "name": "sensor_threshold", "version": "1"})]
    with pytest.raises(GateFailed) as raised:
        check(frame(spark, "bronze.alerts", rows), "bronze.alerts", settings, now=NOW, batch_name="alerts-planted")
    result = raised.value.result
    assert failed(result) == {("range", "location.lat"), ("enum", "severity"), ("raw_ipv4", "evidence"),
                              ("pattern", "tenant"), ("pseudonym", "entity.id"), ("not_null", "detector.kind")}
    words = {f.rule: f.explanation for f in result.failures}
    assert words["range"] == "1 value of location.lat outside -90..90, e.g. -95.0"
    assert words["enum"].startswith("1 value of severity not one of informational, low, medium, high, critical")
    assert words["raw_ipv4"] == "1 row of redacted column evidence holding a raw IPv4 address"
    assert_never_shown(result, raised.value, ["10.9.8.7", "akl-297-queen-street"])


# --------------------------------------------------------------------------- alerting

def test_a_failed_gate_becomes_a_data_quality_alert_for_operations():
    result = GateResult(success=False, table="silver.posts", batch_name="b1", evaluated=40, failed=2, failures=[
        Failure("raw_email", "text", "expect_column_values_to_not_match_regex", 1, [],
                "1 value of redacted column text holding a raw e-mail address"),
        Failure("not_null", "tenant", "expect_column_values_to_not_be_null", 1, [None], "1 value of tenant missing")],
        docs_url="file:///var/reports/data-docs/index.html", validated_at="2026-05-01T12:00:00Z")
    alert = data_quality_alert(result, detected_at=NOW)
    assert document_error("alert", alert) is None
    assert (alert["tenant"], alert["category"], alert["severity"], alert["entity"]) == (
        "operations", "data_quality", "high", {"type": "table", "id": "silver.posts"})
    assert alert["evidence"]["rules"] == "not_null, raw_email"
    assert alert["evidence"]["data_docs"] == "file:///var/reports/data-docs/index.html"
    assert "[raw_email] 1 value of redacted column text" in alert["message"]
    medium = dataclasses.replace(result, failures=result.failures[1:], failed=1)
    assert data_quality_alert(medium)["severity"] == "medium"
    with pytest.raises(ValueError, match="passed its gate"):
        data_quality_alert(dataclasses.replace(result, success=True, failures=[], failed=0))


def test_gold_is_computed_from_what_it_may_keep_so_rows_silver_still_holds_past_retention_stay_out(spark, settings):
    from impetus.lake import within_retention

    def counts(hour, **values):
        return {"tenant": "oslo", "category": "brute_force", "detector_name": "ssh_brute_force", "area": "",
                "severity": "high", "hour": hour, "hour_of_week": 10, "alerts": 1, "occurrences": 1,
                "confirmed": 0, "dismissed": 0, "event_month": hour.date().replace(day=1), **values}

    rows = [counts(HOUR), counts(NOW - timedelta(days=399)), counts(NOW - timedelta(days=401)),
            counts(datetime(2019, 3, 6, tzinfo=timezone.utc))]
    kept = within_retention(frame(spark, "gold.alert_counts", rows), "gold.alert_counts", NOW)
    assert sorted(r["hour"].date() for r in kept.collect()) == [(NOW - timedelta(days=399)).date(), HOUR.date()]
    assert validate(kept, "gold.alert_counts", settings, now=NOW, docs=False).success
    # a table without a time column is kept whole
    profile = frame(spark, "gold.area_profile", [])
    assert within_retention(profile, "gold.area_profile", NOW) is profile
