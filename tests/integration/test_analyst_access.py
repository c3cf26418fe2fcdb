"""Analysts read the lake without Spark (impetus.access): every gold table the real jobs built (conftest's
``lake``) reads the same with delta-rs, DuckDB and polars as with Spark, row for row, and the same SQL
text gives the same answer in Spark SQL (tables registered as ``impetus sql`` does) and in DuckDB."""

import math
from datetime import datetime, timezone
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from impetus import access

# Spark SQL that DuckDB runs unchanged over the views of impetus.access.duckdb_connection
SHARED_SQL = [
    "SELECT tenant, area, kind, count(*) AS hours, sum(value_sum) AS total, max(hour) AS last_hour "
    "FROM gold.area_hourly GROUP BY tenant, area, kind",
    "SELECT tenant, detector_name, severity, sum(alerts) AS alerts, sum(dismissed) AS dismissed, "
    "min(hour_of_week) AS first_hour_of_week FROM gold.alert_counts GROUP BY tenant, detector_name, severity",
    "SELECT r.detector_name, r.dismissal_rate, c.alerts FROM gold.rule_feedback r "
    "JOIN (SELECT detector_name, sum(alerts) AS alerts FROM gold.alert_counts GROUP BY detector_name) c "
    "ON r.detector_name = c.detector_name",
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def gold_tables(lake):
    tables = access.existing_tables(lake.settings, layers=("gold",))
    # the fixture lands sensors, alerts, feedback, flows and syslog: every gold table of build_gold.py exists
    assert {"gold.area_hourly", "gold.sensor_hourly", "gold.alert_counts", "gold.rule_feedback"} <= set(tables)
    return tables


@pytest.fixture(scope="module")
def spark(lake):
    """A Spark session with the lake's tables registered as ``<layer>.<name>``, as ``impetus sql`` has them."""
    from impetus.lake import register_tables
    from impetus.spark import spark_session

    session = spark_session(lake.settings, "test-analyst-access")
    register_tables(session, lake.settings)
    yield session
    session.stop()


def _sortable(value):
    if value is None:
        return (0, 0)
    if isinstance(value, float):
        # rounded, so that rows differing only in the last bits of a float sort alike
        return (2, 0) if math.isnan(value) else (1, float(f"{value:.9g}"))
    return (1, value)


def canonical(table: pa.Table) -> tuple[list[str], list[tuple]]:
    """Column names and sorted rows; timestamps as UTC instants whatever zone or unit the engine gave them."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            column = column.cast(pa.string())
        columns.append(column.to_pylist())
    rows = list(zip(*columns)) if columns else []
    return table.column_names, sorted(rows, key=lambda row: tuple(_sortable(v) for v in row))


def assert_same_rows(actual: pa.Table, expected: pa.Table, what: str) -> None:
    names, rows = canonical(actual)
    expected_names, expected_rows = canonical(expected)
    assert names == expected_names, f"{what}: columns differ"
    assert len(rows) == len(expected_rows), f"{what}: {len(rows)} rows, expected {len(expected_rows)}"
    for row, expected_row in zip(rows, expected_rows):
        for name, value, wanted in zip(names, row, expected_row):
            if isinstance(value, float) and isinstance(wanted, float):
                same = math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12) or (
                    math.isnan(value) and math.isnan(wanted))
            else:  # DuckDB's sums are decimals where Spark's are integers: equal values are equal
                same = value == wanted
            assert same, f"{what}: column {name}: {value!r} != {wanted!r}\nrow {row}\nexpected {expected_row}"


def spark_rows(spark, qualified: str) -> pa.Table:
    return spark.table(qualified).toArrow()


def test_tables_are_registered_in_spark_at_their_lake_paths(spark, lake, gold_tables):
    def path(uri: str) -> str:  # Spark writes file:/x where delta-rs writes file:///x
        parsed = urlparse(uri)
        return f"{parsed.scheme}:{parsed.netloc}:{parsed.path.rstrip('/')}"

    for qualified in gold_tables:
        location = spark.sql(f"DESCRIBE DETAIL {qualified}").collect()[0]["location"]
        assert path(location) == path(lake.settings.lake_path(*qualified.split("."))), qualified


def test_the_catalogue_gives_the_types_spark_reads(spark, lake, gold_tables):
    entries = {e["table"]: e for e in access.catalogue(lake.settings)}
    for qualified in gold_tables:
        entry = entries[qualified]
        assert entry["exists"] and entry["rows"] == spark.table(qualified).count(), qualified
        declared = {c["name"]: c["type"] for c in entry["columns"] if "." not in c["name"]}
        assert declared == {f.name: f.dataType.simpleString() for f in spark.table(qualified).schema}, qualified


def test_every_gold_table_reads_the_same_with_delta_rs_as_with_spark(spark, lake, gold_tables):
    for qualified in gold_tables:
        from_spark = spark_rows(spark, qualified)
        assert from_spark.num_rows > 0, f"{qualified} is empty: the fixture's documents should reach it"
        assert_same_rows(access.arrow_dataset(lake.settings, qualified).to_table(), from_spark,
                         f"{qualified} delta-rs vs Spark")


def test_every_gold_table_reads_the_same_with_duckdb_and_polars(spark, lake, gold_tables):
    con = access.duckdb_connection(lake.settings, gold_tables)
    for qualified in gold_tables:
        from_spark = spark_rows(spark, qualified)
        flat = qualified.replace(".", "_")
        assert_same_rows(con.sql(f"SELECT * FROM {qualified}").to_arrow_table(), from_spark,
                         f"{qualified} DuckDB vs Spark")
        assert_same_rows(con.sql(f"SELECT * FROM {flat}").to_arrow_table(), from_spark,
                         f"{flat} DuckDB vs Spark")
        assert_same_rows(access.polars_frame(lake.settings, qualified).collect().to_arrow(), from_spark,
                         f"{qualified} polars vs Spark")


@pytest.mark.parametrize("sql", SHARED_SQL, ids=["area_hourly", "alert_counts", "rule_feedback_join"])
def test_the_same_sql_gives_the_same_answer_in_spark_and_duckdb(spark, lake, gold_tables, sql):
    con = access.duckdb_connection(lake.settings)
    from_duckdb = con.sql(sql).to_arrow_table()
    assert from_duckdb.num_rows > 0
    assert_same_rows(from_duckdb, spark.sql(sql).toArrow(), sql)


def test_duckdb_answers_with_the_fixture_values_in_utc(lake):
    """The known readings (conftest.lake_documents) as an analyst sees them: one s1 reading at 10:30 was
    corrected from 150 to 120, the s2 reading of 1 April arrived late; hours are UTC."""
    con = access.duckdb_connection(lake.settings, ["gold.area_hourly"])
    rows = con.execute("SELECT area, hour, sensors, value_sum FROM gold.area_hourly WHERE tenant = ? "
                       "ORDER BY area, hour", [lake.tenant]).fetchall()
    assert rows == [("Queen Street", utc("2026-05-01T10:00:00Z"), 1, 220.0),
                    ("Queen Street", utc("2026-05-01T11:00:00Z"), 1, 900.0),
                    ("Vulcan Lane", utc("2026-04-01T09:00:00Z"), 1, 60.0),
                    ("Vulcan Lane", utc("2026-05-01T10:00:00Z"), 1, 40.0)]
    assert all(hour.utcoffset().total_seconds() == 0 for _, hour, _, _ in rows)
