"""impetus.access: the catalogue generated from schemas/tables/, and reading a tiny Delta table written
here with delta-rs through every analyst path (delta-rs, DuckDB, polars)."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from impetus import access
from impetus.config import load_settings
from impetus.lake import LakeError
from impetus.schemas import load_schema, privacy_tags, table_names

# two literal rows of gold.rule_feedback, in its declared column order
FEEDBACK_ROWS = [
    {"tenant": "oslo", "detector_kind": "rule", "detector_name": "default-brute_force", "detector_version": "r1",
     "alerts": 10, "decided": 4, "confirmed": 1, "dismissed": 3, "confirmation_rate": 0.25, "dismissal_rate": 0.75},
    {"tenant": "padova", "detector_kind": "model", "detector_name": "flow_anomaly", "detector_version": "m2",
     "alerts": 5, "decided": 0, "confirmed": 0, "dismissed": 0, "confirmation_rate": None, "dismissal_rate": None},
]
FEEDBACK_SCHEMA = pa.schema([("tenant", pa.string()), ("detector_kind", pa.string()), ("detector_name", pa.string()),
                             ("detector_version", pa.string()), ("alerts", pa.int64()), ("decided", pa.int64()),
                             ("confirmed", pa.int64()), ("dismissed", pa.int64()),
                             ("confirmation_rate", pa.float64()), ("dismissal_rate", pa.float64())])


@pytest.fixture
def empty_lake(tmp_path):
    return load_settings(env={"IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri()})


@pytest.fixture
def small_lake(empty_lake):
    """A lake holding gold.rule_feedback only (two rows, written in two commits: version 1)."""
    from deltalake import write_deltalake

    uri = empty_lake.lake_path("gold", "rule_feedback")
    write_deltalake(uri, pa.Table.from_pylist(FEEDBACK_ROWS[:1], schema=FEEDBACK_SCHEMA))
    write_deltalake(uri, pa.Table.from_pylist(FEEDBACK_ROWS[1:], schema=FEEDBACK_SCHEMA), mode="append")
    return empty_lake


def test_catalogue_has_every_declared_table_with_its_declaration(empty_lake):
    entries = {e["table"]: e for e in access.catalogue(empty_lake)}
    assert sorted(entries) == table_names(empty_lake.schemas_dir)
    counts = entries["gold.alert_counts"]
    assert counts["grain"] == "one row per tenant, category, detector, area, severity and UTC hour of the event."
    assert "Grain:" not in counts["description"] and counts["description"].startswith("Alerts per tenant")
    assert counts["key"] == ["tenant", "category", "detector_name", "area", "severity", "hour"]
    assert counts["partition_by"] == ["tenant"]
    assert (counts["retention"], counts["owner"]) == ("400d", "analytics")
    assert counts["purpose"] == "Alert volumes for the operations centre; hot spots."
    assert counts["build"] == "python jobs/batch/build_gold.py --table alert_counts"
    assert entries["bronze.network_flows"]["build"] == "python jobs/batch/land_bronze.py --table network_flows"
    assert entries["silver.alerts"]["build"] == "python jobs/batch/build_silver.py --table alerts"
    for entry in entries.values():
        assert entry["grain"], f"{entry['table']} declares no grain"


def test_catalogue_lists_every_column_with_type_and_privacy_tag(empty_lake):
    for entry in access.catalogue(empty_lake):
        schema = load_schema(entry["table"], empty_lake.schemas_dir)
        columns = {c["name"]: c for c in entry["columns"]}
        # every column, nested fields as dotted names, each with the tag its schema gives it
        assert {name: c["privacy"] for name, c in columns.items()} == privacy_tags(schema), entry["table"]
        assert all(c["description"] for c in entry["columns"]), entry["table"]
    flows = {c["name"]: c for c in next(e for e in access.catalogue(empty_lake)
                                        if e["table"] == "silver.network_flows")["columns"]}
    assert (flows["src_ip"]["type"], flows["src_ip"]["privacy"]) == ("string", "pseudonymise")
    assert flows["event_time"]["type"] == "timestamp" and flows["event_month"]["type"] == "date"
    alerts = {c["name"]: c for c in next(e for e in access.catalogue(empty_lake)
                                         if e["table"] == "bronze.alerts")["columns"]}
    assert alerts["detector"]["type"] == "struct<kind:string,name:string,version:string>"
    assert alerts["detector.name"]["privacy"] == "none" and alerts["entity.id"]["privacy"] == "pseudonymise"
    assert alerts["evidence"]["privacy"] == "redact" and alerts["evidence"]["type"].startswith("map<string,")


def test_column_types_are_spark_sql_names():
    assert access.column_type({"type": "integer"}) == "bigint"
    assert access.column_type({"type": ["number", "null"]}) == "double"
    assert access.column_type({"type": "string", "format": "date-time"}) == "timestamp"
    assert access.column_type({"type": "array", "items": {"type": "string"}}) == "array<string>"
    assert access.column_type({"type": "object", "additionalProperties": {"type": "string"}}) == "map<string,string>"
    # a union of scalars travels as text
    assert access.column_type({"type": ["string", "number"]}) == "string"


def test_catalogue_markdown_shows_every_table_column_and_privacy_tag(empty_lake):
    text = access.catalogue_markdown(empty_lake)
    for entry in access.catalogue(empty_lake, live=False):
        assert f"\n### {entry['table']}\n" in text
        assert f"[{entry['table']}](#{entry['table'].replace('.', '')})" in text
        for column in entry["columns"]:
            assert f"| `{column['name']}` | `{column['type']}` | {column['privacy']} |" in text, column
    assert "| `src_ip` | `string` | pseudonymise | " in text
    assert "| `payload_redacted` | `string` | redact | " in text
    assert "- **Now:** not built yet: `python jobs/batch/build_gold.py --table area_hourly`" in text
    assert "- `pseudonymise`: " in text


def test_catalogue_without_live_state_depends_on_the_schemas_alone(empty_lake, tmp_path):
    other = load_settings(env={"IMPETUS_LAKE_URI": (tmp_path / "elsewhere").as_uri()})
    text = access.catalogue_markdown(empty_lake, live=False)
    assert text == access.catalogue_markdown(other, live=False)
    assert "Now:" not in text and "not built yet" not in text


def test_catalogue_reports_what_the_lake_holds(small_lake):
    entries = {e["table"]: e for e in access.catalogue(small_lake)}
    feedback = entries["gold.rule_feedback"]
    assert (feedback["exists"], feedback["version"], feedback["rows"]) == (True, 1, 2)
    assert datetime.strptime(feedback["updated"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc) \
        <= datetime.now(timezone.utc)
    assert [t for t, e in entries.items() if e["exists"]] == ["gold.rule_feedback"]
    assert (entries["gold.area_hourly"]["exists"], entries["gold.area_hourly"]["rows"]) == (False, None)
    assert "| [gold.rule_feedback](#goldrule_feedback) | one row per tenant, detector name and version. | " \
           "tenant, detector_name, detector_version | 400d | analytics | version 1, 2 rows |" \
           in access.catalogue_markdown(small_lake)


def test_a_missing_table_says_how_to_build_it(empty_lake):
    with pytest.raises(access.TableMissing) as missing:
        access.open_table(empty_lake, "gold.area_hourly")
    assert "gold.area_hourly does not exist yet at file://" in str(missing.value)
    assert "`python jobs/batch/build_gold.py --table area_hourly`" in str(missing.value)
    with pytest.raises(LakeError, match=r"no table 'gold.nothing' is declared .*gold.area_hourly"):
        access.open_table(empty_lake, "gold.nothing")
    with pytest.raises(access.TableMissing, match="land_bronze.py --table alerts"):
        access.duckdb_connection(empty_lake, ["bronze.alerts"])


def test_delta_rs_duckdb_and_polars_read_the_same_rows(small_lake):
    assert access.existing_tables(small_lake) == ["gold.rule_feedback"]
    key = lambda row: row["tenant"]  # noqa: E731
    assert sorted(access.arrow_dataset(small_lake, "gold.rule_feedback").to_table().to_pylist(), key=key) \
        == FEEDBACK_ROWS
    assert access.open_table(small_lake, "gold.rule_feedback", version=0).to_pyarrow_table().to_pylist() \
        == FEEDBACK_ROWS[:1]

    con = access.duckdb_connection(small_lake)
    query = "SELECT tenant, detector_name, dismissal_rate FROM {} ORDER BY tenant"
    expected = [("oslo", "default-brute_force", 0.75), ("padova", "flow_anomaly", None)]
    assert con.execute(query.format("gold.rule_feedback")).fetchall() == expected
    assert con.execute(query.format("gold_rule_feedback")).fetchall() == expected

    frame = access.polars_frame(small_lake, "gold.rule_feedback").sort("tenant").collect()
    assert frame.to_dicts() == FEEDBACK_ROWS
