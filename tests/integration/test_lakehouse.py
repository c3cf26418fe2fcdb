"""The lake built by the real jobs from known messages: exact rows through bronze, silver and gold,
no planted personal value anywhere, quarantine accounting, idempotent re-runs."""

import hashlib
import hmac
import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from impetus.detect.flow_anomaly import FEATURES, flow_features

from .conftest import LAKE_KEY, PLANTED, run_script


def ps(value: str) -> str:
    """The pseudonym of ``value`` under the fixture's key, computed here without impetus."""
    return "ps_" + hmac.new(bytes.fromhex(LAKE_KEY), value.encode(), hashlib.sha256).hexdigest()[:20]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def by_table(summaries):
    return {s["table"]: s for s in summaries}


def test_every_message_is_landed_or_quarantined(lake):
    runs = by_table(lake.landing)
    expected = {"bronze.sensors_readings": (8, 6, 2), "bronze.security_syslog": (6, 6, 0),
                "bronze.network_flows": (2, 2, 0), "bronze.social_posts": (2, 2, 0), "bronze.cti_posts": (1, 1, 0),
                "bronze.alerts": (3, 3, 0), "bronze.alerts_feedback": (2, 2, 0)}
    assert {t: (r["messages_in"], r["landed"], r["quarantined"]) for t, r in runs.items()} == expected
    assert {t: r["bronze_rows"] for t, r in runs.items()} == {t: v[1] for t, v in expected.items()}

    quarantined = sorted(lake.rows("quarantine.landing"), key=lambda r: r["kafka_offset"])
    assert [(r["bronze_table"], r["kafka_topic"], r["kafka_offset"]) for r in quarantined] == [
        ("sensors_readings", lake.topics["sensors_readings"], 4),
        ("sensors_readings", lake.topics["sensors_readings"], 5)]
    assert quarantined[0]["reason"].startswith("not JSON: Unterminated string")
    assert quarantined[1]["reason"] == "does not match schema sensors.readings: data.value must be number"
    # the excerpt helps diagnosis without keeping the e-mail address
    assert quarantined[0]["payload_redacted"] == '{"tenant": "broken", "note": "mail ' + ps("kari.nordmann@example.no")


def test_bronze_rows_are_treated_by_privacy_tag(lake):
    flows = sorted(lake.rows("bronze.network_flows"), key=lambda r: r["kafka_offset"])
    assert [(f["src_ip"], f["dst_ip"], f["src_internal"], f["dst_internal"]) for f in flows] == [
        (ps("10.1.2.3"), ps("198.51.100.23"), True, False), (ps("198.51.100.23"), ps("10.1.2.3"), False, True)]
    posts = {p["post_id"]: p for p in lake.rows("bronze.social_posts")}
    assert posts["p1"]["author"] == ps("@kari_n")
    assert posts["p1"]["text"] == (f"Great concert tonight! Call me on {ps('4741234567')} "
                                   f"or mail {ps('kari.nordmann@example.no')}")
    assert posts["p2"]["text"] == f"Terrible: a car {ps('EL12345')} blocks the exit, my name is {ps('Kari Nordmann')}"
    readings = lake.rows("bronze.sensors_readings")
    assert {r["pseudonym_key"] for r in readings} == {hashlib.sha256(b"impetus-key-id|" + bytes.fromhex(LAKE_KEY))
                                                      .hexdigest()[:8]}
    assert DeltaTable(lake.settings.lake_path("bronze", "sensors_readings")).metadata().partition_columns == [
        "tenant", "event_month"]
    assert {(r["event_date"], r["event_month"]) for r in readings} == {
        (date(2026, 5, 1), date(2026, 5, 1)), (date(2026, 4, 1), date(2026, 4, 1))}


def test_no_planted_personal_value_anywhere_in_the_lake(lake):
    tables = [p for p in (lake.root / "lake").glob("*/*") if (p / "_delta_log").is_dir()]
    assert len(tables) >= 7 + 6 + 7  # bronze, silver, gold (and quarantine)
    for path in tables:
        text = json.dumps(DeltaTable(str(path)).to_pyarrow_table().to_pylist(), default=str)
        leaked = [value for value in PLANTED if value in text]
        assert not leaked, f"{path}: {leaked}"
    # nor in any file: data, statistics in the Delta log, checkpoints
    for file in (lake.root).rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            leaked = [value for value in PLANTED if value.encode() in data]
            assert not leaked, f"{file}: {leaked}"


def test_silver_is_conformed_and_deduplicated(lake):
    readings = sorted((r["sensor_id"], r["event_time"], r["value"], r["area"], r["hour_of_week"])
                      for r in lake.rows("silver.sensor_readings"))
    assert readings == [
        ("s1", utc("2026-05-01T10:00:00Z"), 100.0, "Queen Street", 4 * 24 + 10),  # Friday, tenant on UTC
        ("s1", utc("2026-05-01T10:30:00Z"), 120.0, "Queen Street", 4 * 24 + 10),  # the correction won
        ("s1", utc("2026-05-01T11:00:00Z"), 900.0, "Queen Street", 4 * 24 + 11),
        ("s2", utc("2026-04-01T09:00:00Z"), 60.0, "Vulcan Lane", 2 * 24 + 9),     # late, in its own month
        ("s2", utc("2026-05-01T10:00:00Z"), 40.0, "Vulcan Lane", 4 * 24 + 10),
    ]
    events = sorted((e["kind"], e["user"], e["src_ip"], e["dst_port"]) for e in lake.rows("silver.security_events"))
    assert events == sorted([("auth_failure", ps("kari.nordmann"), ps("203.0.113.77"), None)] * 3 + [
        ("sudo_command", ps("olanormann"), None, None),
        ("firewall_block", None, ps("198.51.100.23"), 22)])
    posts = {(p["channel"], p["post_id"]): p for p in lake.rows("silver.posts")}
    assert set(posts) == {("social", "p1"), ("social", "p2"), ("cti", "c1")}
    assert posts[("social", "p1")]["sentiment"] > 0.3 and posts[("social", "p2")]["sentiment"] < -0.3
    assert posts[("cti", "c1")]["text"] == f"Scanner at {ps('203.0.113.77')} targets CVE-2024-3094"

    alerts = {a["alert_id"]: a for a in lake.rows("silver.alerts")}
    assert set(alerts) == {"a-1", "a-2"}
    assert (alerts["a-1"]["count"], alerts["a-1"]["detected_at"], alerts["a-1"]["entity_id"]) == (
        3, utc("2026-05-01T10:20:00Z"), ps("203.0.113.77"))
    assert dict(alerts["a-1"]["evidence"]) == {"failures": "5", "src": ps("203.0.113.77")}
    assert (alerts["a-1"]["decision"], alerts["a-1"]["operator"]) == (
        "confirmed", ps("operator.jensen@oslo.kommune.no"))
    assert (alerts["a-2"]["decision"], alerts["a-2"]["operator"], alerts["a-2"]["area"]) == (
        "dismissed", ps("op-2"), "Queen Street")
    feedback = {f["alert_id"]: f for f in lake.rows("silver.alert_feedback")}
    assert feedback["a-1"]["comment"] == f"called {ps('0498271111')}"


def test_gold_aggregates(lake):
    hourly = sorted((r["sensor_id"], r["hour"], r["readings"], r["value_sum"], r["value_min"], r["value_max"])
                    for r in lake.rows("gold.sensor_hourly"))
    assert hourly == [("s1", utc("2026-05-01T10:00:00Z"), 2, 220.0, 100.0, 120.0),
                      ("s1", utc("2026-05-01T11:00:00Z"), 1, 900.0, 900.0, 900.0),
                      ("s2", utc("2026-04-01T09:00:00Z"), 1, 60.0, 60.0, 60.0),
                      ("s2", utc("2026-05-01T10:00:00Z"), 1, 40.0, 40.0, 40.0)]
    profile = {(r["sensor_id"], r["hour_of_week"]): (r["n"], r["median"], r["mad"])
               for r in lake.rows("gold.sensor_profile")}
    assert profile == {("s1", 106): (2, 110.0, 10.0), ("s1", 107): (1, 900.0, 0.0), ("s2", 57): (1, 60.0, 0.0),
                       ("s2", 106): (1, 40.0, 0.0)}
    areas = {(r["area"], r["hour_of_week"]): (r["hours"], r["median"]) for r in lake.rows("gold.area_profile")}
    assert areas == {("Queen Street", 106): (1, 220.0), ("Queen Street", 107): (1, 900.0),
                     ("Vulcan Lane", 57): (1, 60.0), ("Vulcan Lane", 106): (1, 40.0)}
    feedback = {r["detector_name"]: (r["alerts"], r["decided"], r["confirmed"], r["dismissed"], r["confirmation_rate"])
                for r in lake.rows("gold.rule_feedback")}
    assert feedback == {"brute_force": (1, 1, 1, 0, 1.0), "urban_baseline": (1, 1, 0, 1, 0.0)}
    counts = sorted((r["category"], r["area"], r["hour"], r["alerts"], r["occurrences"], r["confirmed"])
                    for r in lake.rows("gold.alert_counts"))
    assert counts == [("brute_force", "", utc("2026-05-01T10:00:00Z"), 1, 3, 1),
                      ("urban_anomaly", "Queen Street", utc("2026-05-01T11:00:00Z"), 1, 1, 0)]
    security = sorted((r["kind"], r["events"], r["sources"], r["users"]) for r in lake.rows("gold.security_hourly"))
    assert security == [("auth_failure", 3, 1, 1), ("firewall_block", 1, 1, 0), ("sudo_command", 1, 0, 1)]


def test_gold_flow_features_equal_the_streaming_model_input(lake):
    raw = {(f["src_port"]): f for f in lake.documents["network_flows"]}
    rows = lake.rows("gold.flow_features")
    assert len(rows) == 2
    for row in rows:
        source = raw[4444 if row["dst_port"] == 22 else 50000]
        assert [row[name] for name in FEATURES] == pytest.approx(flow_features(source))


def test_a_second_run_lands_and_merges_nothing_new(lake):
    again = by_table(lake.land())
    assert {t: r["messages_in"] for t, r in again.items()} == {t: 0 for t in again}
    assert again["bronze.sensors_readings"]["bronze_rows"] == 6
    silver = lake.run("jobs/batch/build_silver.py", "--table", "sensor_readings")
    assert [(s["rows_in"], s["rows"]) for s in silver] == [(0, 5)]


def test_sql_reads_every_layer_by_name(lake):
    result = run_script("impetus/cli.py", "sql", "--format", "json",
                        "SELECT s.sensor_id, count(*) AS n, max(g.value_max) AS peak FROM silver.sensor_readings s "
                        "JOIN gold.sensor_hourly g USING (sensor_id) GROUP BY s.sensor_id ORDER BY s.sensor_id",
                        env=lake.env)
    assert json.loads(result.stdout[result.stdout.index("["):]) == [
        {"sensor_id": "s1", "n": 6, "peak": 900.0}, {"sensor_id": "s2", "n": 4, "peak": 60.0}]


def test_optimize_compacts_and_keeps_every_row(lake):
    before = len(DeltaTable(lake.settings.lake_path("bronze", "sensors_readings")).file_uris())
    result = run_script("impetus/cli.py", "lake", "optimize", "--table", "bronze.sensors_readings",
                        "--table", "silver.sensor_readings", "--json", env=lake.env)
    done = {r["table"]: r for r in json.loads(result.stdout)["optimize"]}
    assert done["bronze.sensors_readings"]["zorder_by"] == ["sensor_id", "event_time"]
    after = DeltaTable(lake.settings.lake_path("bronze", "sensors_readings"))
    assert len(after.file_uris()) <= before
    assert len(after.to_pyarrow_table()) == 6
    assert "OPTIMIZE" in [h["operation"] for h in after.history()]


def test_lake_catalogue_names_every_table(lake):
    declared = {p.name[:-5] for p in (Path(__file__).resolve().parents[2] / "schemas" / "tables").glob("*.json")}
    built = {f"{p.parent.name}.{p.name}" for p in (lake.root / "lake").glob("*/*") if (p / "_delta_log").is_dir()}
    assert built <= declared
