"""Hot spots, trends and before/after (impetus.analysis) on literal gold rows, in a local Spark session."""

import runpy
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from impetus.analysis import (ALL_AREAS, AnalysisInputMissing, before_after, build_historical, daily_totals, hotspots,
                              render_report, stretches, trends, window_bounds, write_table)
from impetus.config import load_settings
from impetus.lake import conform
from impetus.schemas import load_schema, spark_schema

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = "pedestrian_count"
QUEEN = (-36.8485, 174.7652)
VULCAN = (-36.8480, 174.7655)
OSLO = (59.91, 10.74)


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    return {"IMPETUS_LAKE_URI": (root / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (root / "chk").as_uri()}


@pytest.fixture(scope="module")
def settings(lake_env):
    import os

    return load_settings(env={**os.environ, **lake_env})


@pytest.fixture(scope="module")
def spark(settings):
    from impetus.spark import spark_session

    session = spark_session(settings, "test_analysis")
    # a few literal rows: one task per shuffle is plenty, and several times faster
    session.conf.set("spark.sql.shuffle.partitions", "1")
    yield session
    session.conf.set("spark.sql.shuffle.partitions", "4")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def hourly(tenant, area, hour, how, value, local_date=None, kind=PEOPLE, where=QUEEN, sensors=1):
    """One gold.area_hourly row; ``hour`` a UTC 'YYYY-MM-DDTHH:MM' (its date is the local date unless given)."""
    moment = utc(hour)
    return (tenant, area, kind, moment, local_date or moment.date(), how, sensors, float(value), float(value),
            where[0], where[1], moment.date().replace(day=1))


def alert_row(tenant, area, hour, how, alerts, category="threshold", detector="sensor_threshold", where=QUEEN):
    """One gold.alert_counts row."""
    moment = utc(hour)
    lat, lon = where if where else (None, None)
    return (tenant, category, detector, area, "medium", moment, how, alerts, alerts, 0, 0, lat, lon,
            moment.date().replace(day=1))


def frame(spark, qualified, rows):
    return spark.createDataFrame(rows, spark_schema(load_schema(qualified)))


def collect(df, *columns):
    return sorted(tuple(r[c] for c in columns) for r in df.collect())


# --------------------------------------------------------------------------- hot spots

def test_a_planted_cluster_of_alerts_is_the_top_hot_spot(spark):
    area_hourly = frame(spark, "gold.area_hourly", [
        # two weeks of Monday 10:00 and 11:00 at Queen Street (2 counters) and Vulcan Lane
        hourly("t1", "Queen Street", "2026-05-04T10:00", 10, 300, sensors=2),
        hourly("t1", "Queen Street", "2026-05-11T10:00", 10, 500, sensors=2),
        hourly("t1", "Queen Street", "2026-05-04T11:00", 11, 200, sensors=2),
        hourly("t1", "Vulcan Lane", "2026-05-04T10:00", 10, 40, where=VULCAN),
        hourly("t1", "Vulcan Lane", "2026-05-04T11:00", 11, 60, where=VULCAN),
        # air quality is no people volume, but its cell exists
        hourly("t1", "Vulcan Lane", "2026-05-04T12:00", 12, 9, kind="pm2_5", where=VULCAN),
        # a tenant with sensors and no alerts at all: ranked by people volume
        hourly("t2", "Karl Johans gate", "2026-05-04T10:00", 10, 70, where=OSLO),
        hourly("t2", "Karl Johans gate", "2026-05-04T11:00", 11, 90, where=OSLO),
    ])
    alert_counts = frame(spark, "gold.alert_counts", [
        alert_row("t1", "Queen Street", "2026-05-04T10:00", 10, 3, "urban_anomaly", "urban_baseline"),
        alert_row("t1", "Queen Street", "2026-05-11T10:00", 10, 1, "area_anomaly", "default-area_burst"),
        alert_row("t1", "Queen Street", "2026-05-11T10:00", 10, 1),
        # a model's alert is an anomaly whatever its category
        alert_row("t1", "Vulcan Lane", "2026-05-04T11:00", 11, 1, "unusual", "urban_baseline", where=VULCAN),
        # an area without sensors: placed at its alerts' coordinates
        alert_row("t1", "Wharf", "2026-05-06T02:00", 50, 1, where=(-36.84, 174.77)),
        # no area: not a place
        alert_row("t1", "", "2026-05-04T10:00", 10, 9, "brute_force", "default-brute_force", where=None),
    ])
    result = conform(hotspots(area_hourly, alert_counts), "gold.hotspots")
    rows = collect(result, "tenant", "rank", "area", "hour_of_week", "weekday", "local_hour", "alerts",
                   "anomaly_alerts", "people_mean", "people_hours", "sensors", "lat", "lon", "score_basis", "score")
    # t1's cells' alerts are 5, 0, 0, 1, 0, 1: median 0.5, MAD 0.5, spread max(0.74, 0.025, 1) = 1
    at = {"Queen Street": QUEEN, "Vulcan Lane": VULCAN, "Wharf": (-36.84, 174.77), "Karl Johans gate": OSLO}
    # a mean of equal coordinates may differ from them in the last bit
    assert [row[:11] + (pytest.approx(row[11]), pytest.approx(row[12])) + row[13:] for row in rows] == [
        ("t1", 1, "Queen Street", 10, 0, 10, 5, 4, 400.0, 2, 2, *at["Queen Street"], "alerts", 4.5),
        ("t1", 2, "Vulcan Lane", 11, 0, 11, 1, 1, 60.0, 1, 1, *at["Vulcan Lane"], "alerts", 0.5),
        ("t1", 3, "Wharf", 50, 2, 2, 1, 0, None, None, 0, *at["Wharf"], "alerts", 0.5),
        ("t1", 4, "Queen Street", 11, 0, 11, 0, 0, 200.0, 1, 2, *at["Queen Street"], "alerts", -0.5),
        ("t1", 5, "Vulcan Lane", 10, 0, 10, 0, 0, 40.0, 1, 1, *at["Vulcan Lane"], "alerts", -0.5),
        ("t1", 6, "Vulcan Lane", 12, 0, 12, 0, 0, None, None, 1, *at["Vulcan Lane"], "alerts", -0.5),
        # median 80, MAD 10: spread max(14.826, 4, 1)
        ("t2", 1, "Karl Johans gate", 11, 0, 11, 0, 0, 90.0, 1, 1, *OSLO, "people", pytest.approx(10 / 14.826)),
        ("t2", 2, "Karl Johans gate", 10, 0, 10, 0, 0, 70.0, 1, 1, *OSLO, "people", pytest.approx(-10 / 14.826)),
    ]


def test_without_alerts_hot_spots_rank_people_volume(spark):
    area_hourly = frame(spark, "gold.area_hourly", [
        hourly("t1", "Queen Street", "2026-05-04T10:00", 10, 100),
        hourly("t1", "Queen Street", "2026-05-04T11:00", 11, 100),
        hourly("t1", "Queen Street", "2026-05-04T12:00", 12, 130),
        hourly("t1", "Vulcan Lane", "2026-05-04T10:00", 10, 100, where=VULCAN),
        hourly("t1", "Vulcan Lane", "2026-05-04T11:00", 11, 90, where=VULCAN),
    ])
    result = conform(hotspots(area_hourly, None), "gold.hotspots")
    # median 100, MAD 0: the spread is its floor of 5% of the median, 5 people
    assert collect(result, "rank", "area", "hour_of_week", "alerts", "people_mean", "score_basis", "score") == [
        (1, "Queen Street", 12, 0, 130.0, "people", 6.0),
        (2, "Queen Street", 10, 0, 100.0, "people", 0.0),
        (3, "Queen Street", 11, 0, 100.0, "people", 0.0),
        (4, "Vulcan Lane", 10, 0, 100.0, "people", 0.0),
        (5, "Vulcan Lane", 11, 0, 90.0, "people", -2.0),
    ]


# --------------------------------------------------------------------------- trends

def day_rows(tenant, area, day: str, total: float, hours: int = 2, where=QUEEN):
    """``hours`` hourly rows of the local date ``day`` (UTC = local here) summing to ``total``."""
    weekday = date.fromisoformat(day).weekday()
    return [hourly(tenant, area, f"{day}T{h:02d}:00", weekday * 24 + h, total / hours, where=where)
            for h in range(hours)]


def test_trends_rolling_mean_year_before_and_weekday_index(spark):
    totals = {"2025-01-06": 10, "2025-01-07": 20, "2025-01-08": 30, "2025-01-09": 50, "2025-01-10": 50,
              "2025-01-11": 60, "2025-01-12": 70, "2025-01-13": 10, "2025-01-14": 20,
              # 2025-01-15 missing: the windows around it are shorter, not stretched
              "2025-01-16": 30, "2025-01-17": 50, "2025-01-18": 60, "2025-01-19": 70,
              # the Thursday 52 weeks before 2025-01-09
              "2024-01-11": 40}
    rows = [row for day, total in totals.items() for row in day_rows("t1", "Queen Street", day, total)]
    rows += day_rows("t1", "Queen Street", "2025-01-20", 1000, hours=1)     # incomplete: 1 of 2 hours
    rows += day_rows("t1", "Vulcan Lane", "2025-01-06", 5, where=VULCAN)
    result = conform(trends(frame(spark, "gold.area_hourly", rows), min_hours=2), "gold.trends")
    got = {(r["area"], str(r["local_date"])): r for r in result.collect()}

    def row(area, day):
        r = got[(area, day)]
        return (r["weekday"], r["daily_total"], r["hours"], r["complete"], r["rolling_mean_7d"], r["rolling_days"],
                str(r["year_ago_date"]), r["year_ago_total"], r["weekday_index"])

    assert len(got) == 15 + 1 + 15
    assert row("Queen Street", "2025-01-06") == (0, 10.0, 2, True, 10.0, 1, "2024-01-08", None, 0.25)
    assert row("Queen Street", "2025-01-07") == (1, 20.0, 2, True, 15.0, 2, "2024-01-09", None, 0.5)
    assert row("Queen Street", "2025-01-09") == (3, 50.0, 2, True, 27.5, 4, "2024-01-11", 40.0, 1.0)
    assert row("Queen Street", "2025-01-12") == (6, 70.0, 2, True, pytest.approx(290 / 7), 7, "2024-01-14", None,
                                                 1.75)
    # 01-10 .. 01-16 without 01-15: 50 + 60 + 70 + 10 + 20 + 30 over six days
    assert row("Queen Street", "2025-01-16") == (3, 30.0, 2, True, 40.0, 6, "2024-01-18", None, 1.0)
    # the incomplete day is shown, but enters no mean: 01-14 .. 01-19 less 01-15
    assert row("Queen Street", "2025-01-20") == (0, 1000.0, 1, False, 46.0, 5, "2024-01-22", None, 0.25)
    assert row("Queen Street", "2024-01-11") == (3, 40.0, 2, True, 40.0, 1, "2023-01-12", None, 1.0)
    # weekday means 10, 20, 30, 40 (50, 30, 40), 50, 60, 70, their mean 40: the index is each over 40
    assert {got[("Queen Street", d)]["weekday"]: got[("Queen Street", d)]["weekday_index"]
            for d in ("2025-01-13", "2025-01-14", "2025-01-08", "2025-01-16", "2025-01-10", "2025-01-11",
                      "2025-01-19")} == {0: 0.25, 1: 0.5, 2: 0.75, 3: 1.0, 4: 1.25, 5: 1.5, 6: 1.75}
    # all areas: Mondays 15 (with Vulcan Lane's 5) and 10, so the weekday means are 12.5, 20, ... 70
    assert row(ALL_AREAS, "2025-01-06") == (0, 15.0, 2, True, 15.0, 1, "2024-01-08", None,
                                            pytest.approx(12.5 / (282.5 / 7)))
    assert row("Vulcan Lane", "2025-01-06") == (0, 5.0, 2, True, 5.0, 1, "2024-01-08", None, 1.0)


def test_a_day_is_complete_with_23_hours_by_default(spark):
    rows = (day_rows("t1", "Queen Street", "2025-03-30", 230, hours=23)
            + day_rows("t1", "Queen Street", "2025-03-31", 220, hours=22))
    daily = daily_totals(frame(spark, "gold.area_hourly", rows)).where(f"area != '{ALL_AREAS}'")
    assert collect(daily, "local_date", "daily_total", "hours", "complete") == [
        (date(2025, 3, 30), 230.0, 23, True), (date(2025, 3, 31), 220.0, 22, False)]


# --------------------------------------------------------------------------- before / after

def test_before_after_means_changes_and_alerts_by_local_date(spark):
    rows = []
    for day, total in (("2020-03-22", 999), ("2020-03-23", 100), ("2020-03-24", 200), ("2020-03-25", 300),
                       ("2020-03-26", 10), ("2020-03-27", 30), ("2020-03-29", 999)):
        rows += day_rows("nz", "Queen Street", day, total)
        rows += day_rows("nz", "Quay Street", day, 0, where=VULCAN)
    rows += day_rows("nz", "Queen Street", "2020-03-28", 5000, hours=1)     # incomplete: not counted
    rows += day_rows("nz", "Vulcan Lane", "2020-03-27", 80, where=VULCAN)   # after the date only
    area_hourly = frame(spark, "gold.area_hourly", rows)
    alert_counts = frame(spark, "gold.alert_counts", [
        # 23:00 on 25 March in Auckland (NZDT, UTC+13): before
        alert_row("nz", "Queen Street", "2020-03-25T10:00", 58, 2),
        # 01:00 on 26 March in Auckland, still 25 March in UTC: after
        alert_row("nz", "Queen Street", "2020-03-25T12:00", 73, 3, "urban_anomaly", "urban_baseline"),
        alert_row("nz", "Queen Street", "2020-03-15T12:00", 0, 7),                  # outside the windows
        alert_row("nz", "Wharf", "2020-03-24T00:00", 0, 4),                         # no sensors: in (all) only
        alert_row("nz", "", "2020-03-24T00:00", 0, 6, "port_scan", "default-port_scan", where=None),
    ])
    zones = {"nz": "Pacific/Auckland"}
    result = conform(before_after(area_hourly, alert_counts, date(2020, 3, 26), 3, zones, min_hours=2),
                     "gold.before_after")
    assert collect(result, "area", "kind", "date", "window_days", "days_before", "days_after", "mean_before",
                   "mean_after", "change", "change_pct", "alerts_before", "alerts_after") == [
        (ALL_AREAS, PEOPLE, date(2020, 3, 26), 3, 3, 2, 200.0, 60.0, -140.0, -70.0, 6, 3),
        ("Quay Street", PEOPLE, date(2020, 3, 26), 3, 3, 2, 0.0, 0.0, 0.0, None, 0, 0),
        ("Queen Street", PEOPLE, date(2020, 3, 26), 3, 3, 2, 200.0, 20.0, -180.0, -90.0, 2, 3),
        ("Vulcan Lane", PEOPLE, date(2020, 3, 26), 3, 0, 1, None, 80.0, None, None, 0, 0),
    ]
    # without any alert table: no alert counts, rather than zeros
    without = before_after(area_hourly, None, date(2020, 3, 26), 3, zones, min_hours=2)
    assert collect(without.where("area = 'Queen Street'"), "mean_before", "mean_after", "alerts_before",
                   "alerts_after") == [(200.0, 20.0, None, None)]


def test_window_bounds():
    assert window_bounds(date(2020, 3, 26), 28) == (date(2020, 2, 27), date(2020, 3, 26), date(2020, 4, 23))
    with pytest.raises(ValueError, match="window_days must be at least 1, not 0"):
        window_bounds(date(2020, 3, 26), 0)


# --------------------------------------------------------------------------- the lake

def test_an_empty_lake_is_explained_not_a_stack_trace(spark, settings, lake_env, monkeypatch, capsys, tmp_path):
    with pytest.raises(AnalysisInputMissing) as missing:
        build_historical(settings, log=lambda message: None)
    assert str(missing.value) == (
        f"nothing to analyse: gold.area_hourly and gold.alert_counts are missing or empty in {settings.lake_uri}. "
        "Build them from silver with `python jobs/batch/build_gold.py` (after land_bronze.py and build_silver.py "
        "have brought sensor readings or alerts into the lake).")
    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    job = runpy.run_path(str(ROOT / "jobs" / "batch" / "historical_report.py"))
    with pytest.raises(SystemExit) as ended:
        job["main"](["--out", str(tmp_path / "report")])
    assert ended.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"historical_report: {missing.value}"
    assert not (tmp_path / "report").exists()


def test_one_tenant_is_rewritten_and_the_others_kept(spark, settings):
    from deltalake import DeltaTable

    def comparison(tenant, area, days_before):
        return (tenant, area, PEOPLE, date(2025, 1, 7), 1, days_before, 0, 10.0, None, None, None, None, None)

    both = frame(spark, "gold.before_after", [comparison("t1", "Queen Street", 1), comparison("t2", "Oslo S", 1)])
    assert len(write_table(spark, settings, both, "gold.before_after")) == 2
    again = frame(spark, "gold.before_after", [comparison("t2", "Oslo S", 2), comparison("t2", "Aker brygge", 3)])
    # what the table holds of t2 now, for the report
    assert sorted(write_table(spark, settings, again, "gold.before_after", tenant="t2")["area"]) == [
        "Aker brygge", "Oslo S"]
    rows = DeltaTable(settings.lake_path("gold", "before_after")).to_pyarrow_table().to_pylist()
    assert sorted((r["tenant"], r["area"], r["days_before"]) for r in rows) == [
        ("t1", "Queen Street", 1), ("t2", "Aker brygge", 3), ("t2", "Oslo S", 2)]


def test_a_tenant_not_in_the_lake_is_named_with_those_that_are(spark, settings):
    rows = day_rows("t1", "Queen Street", "2025-01-06", 10) + day_rows("t2", "Oslo S", "2025-01-06", 20, where=OSLO)
    frame(spark, "gold.area_hourly", rows).write.format("delta").mode("overwrite").save(
        settings.lake_path("gold", "area_hourly"))
    with pytest.raises(AnalysisInputMissing) as missing:
        build_historical(settings, tenant="oslo", log=lambda message: None)
    assert str(missing.value) == (
        f"no rows of tenant 'oslo' in gold.area_hourly or gold.alert_counts at {settings.lake_uri} "
        "(tenants there: t1, t2); choose one of those with --tenant")


# --------------------------------------------------------------------------- the report

def test_stretches_of_days_split_at_long_gaps():
    days = [date(2019, 3, 1), date(2019, 3, 3), date(2019, 3, 2), date(2019, 4, 1), date(2026, 11, 12)]
    # 3 March to 1 April is a gap of 29 days: one stretch with gaps up to 31 days, two with gaps up to 7
    assert stretches(days) == [(date(2019, 3, 1), date(2019, 4, 1)), (date(2026, 11, 12), date(2026, 11, 12))]
    assert stretches(days, max_gap_days=7) == [
        (date(2019, 3, 1), date(2019, 3, 3)), (date(2019, 4, 1), date(2019, 4, 1)),
        (date(2026, 11, 12), date(2026, 11, 12))]
    assert stretches([]) == []


def test_report_of_alerts_without_sensor_data(tmp_path):
    import pandas as pd

    def empty(qualified):
        return pd.DataFrame(columns=list(load_schema(qualified)["properties"]))

    cells = pd.DataFrame([
        {"tenant": "t1", "area": "Wharf", "hour_of_week": 50, "weekday": 2, "local_hour": 2, "lat": -36.84,
         "lon": 174.77, "sensors": 0, "alerts": 4, "anomaly_alerts": 1, "people_mean": None, "people_hours": None,
         "score_basis": "alerts", "score": 1.5, "rank": 1},
        {"tenant": "t1", "area": "Ferry <Terminal>", "hour_of_week": 9, "weekday": 0, "local_hour": 9,
         "lat": -36.843, "lon": 174.768, "sensors": 0, "alerts": 1, "anomaly_alerts": 0, "people_mean": None,
         "people_hours": None, "score_basis": "alerts", "score": -1.5, "rank": 2},
    ])
    index = render_report({"gold.hotspots": cells, "gold.trends": empty("gold.trends"),
                           "gold.before_after": empty("gold.before_after")}, tmp_path / "report", date(2020, 3, 26),
                          28, lake="file:///lake", log=lambda message: None)
    html = index.read_text(encoding="utf-8")
    assert sorted(p.name for p in index.parent.glob("*.png")) == ["t1-hotspot-map.png", "t1-hour-of-week.png"]
    assert '<img src="t1-hotspot-map.png"' in html and '<img src="t1-hour-of-week.png"' in html
    assert "Ferry &lt;Terminal&gt;" in html and "<Terminal>" not in html
    assert "5 alerts with an area\n(1 anomalies)" in html
    assert "<p>No sensor data: no trends.</p>" in html
    assert "(complete days: no sensor data).</p>" in html
