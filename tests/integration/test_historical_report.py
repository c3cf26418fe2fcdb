"""The historical report end to end: planted silver rows -> build_gold.py -> historical_report.py ->
gold.hotspots, gold.trends, gold.before_after and an HTML report whose figures are real PNG images."""

import json
import re
import struct
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from impetus.schemas import _main_type, load_schema

from .conftest import run_script

TENANT = "auckland"
ZONE = ZoneInfo("Pacific/Auckland")
# two counters on Queen Street, one in Vulcan Lane (their real neighbourhood in Auckland)
SENSORS = {"q1": ("Queen Street", -36.8485, 174.7652), "q2": ("Queen Street", -36.8475, 174.7660),
           "v1": ("Vulcan Lane", -36.8481, 174.7648)}
# people per hour: Queen Street empties from Monday 4 May 2026 on, Vulcan Lane does not
BEFORE = {"q1": 100.0, "q2": 50.0, "v1": 20.0}
AFTER = {"q1": 10.0, "q2": 5.0, "v1": 20.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def arrow_schema(qualified: str) -> pa.Schema:
    """The declared columns of a table as Arrow types, as Spark writes them."""
    scalars = {"number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}
    strings = {"date-time": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
    fields = []
    for name, prop in load_schema(qualified)["properties"].items():
        kind = _main_type(prop)
        if kind == "string":
            kind = strings.get(prop.get("format"), pa.string())
        elif kind == "object":
            kind = pa.map_(pa.string(), pa.string())
        else:
            kind = scalars[kind]
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def silver_columns(moment: datetime) -> dict:
    """The time columns silver derives from an event time: UTC date and month, local date and hour of week."""
    at = moment.astimezone(timezone.utc)
    here = moment.astimezone(ZONE)
    return {"event_time": at, "event_date": at.date(), "event_month": at.date().replace(day=1),
            "local_date": here.date(), "local_hour": here.hour, "hour_of_week": here.weekday() * 24 + here.hour}


def readings() -> list[dict]:
    """Hourly counts for the local days Saturday 2 .. Tuesday 5 May 2026, and Wednesday 6 from 00:00 to 05:00."""
    rows = []
    start = local("2026-05-02T00:00")
    for hour in range(4 * 24 + 6):
        moment = start + timedelta(hours=hour)
        for sensor, (area, lat, lon) in SENSORS.items():
            value = (BEFORE if moment < local("2026-05-04T00:00") else AFTER)[sensor]
            rows.append({"tenant": TENANT, "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
                         "unit": "persons/h", "area": area, "lat": lat, "lon": lon, "source": "test",
                         "ingested_at": datetime(2026, 5, 7, tzinfo=timezone.utc), **silver_columns(moment)})
    return rows


def alert(alert_id: str, when: str, category: str, detector: str, sensor: str | None) -> dict:
    area, lat, lon = SENSORS[sensor] if sensor else (None, None, None)
    moment = local(when)
    columns = silver_columns(moment)
    return {"alert_id": alert_id, "tenant": TENANT, "detected_at": columns["event_time"], "severity": "medium",
            "severity_id": 3, "category": category, "title": category, "message": None, "detector_kind": "rule",
            "detector_name": detector, "detector_version": "1", "entity_type": "sensor", "entity_id": sensor,
            "area": area, "lat": lat, "lon": lon, "evidence": None, "countermeasure": None, "count": 1,
            "decision": None, "decided_at": None, "operator": None, "ingested_at": columns["event_time"],
            **{k: columns[k] for k in ("event_time", "event_date", "event_month")}}


ALERTS = [
    # Monday 09:30 in Auckland is still Sunday in UTC: the alerts count after the date, by local time
    alert("a1", "2026-05-04T09:30", "urban_anomaly", "urban_baseline", "q1"),
    alert("a2", "2026-05-04T09:40", "urban_anomaly", "urban_baseline", "q2"),
    alert("a3", "2026-05-04T09:50", "urban_anomaly", "urban_baseline", "q1"),
    alert("a4", "2026-05-02T14:10", "threshold", "sensor_threshold", "q1"),
    alert("a5", "2026-05-05T18:00", "area_anomaly", "default-area_burst", "v1"),
    # no place: counts nowhere here
    alert("a6", "2026-05-04T10:00", "brute_force", "default-brute_force", None),
]


def write_silver(lake, name: str, rows: list[dict]) -> None:
    schema = arrow_schema(f"silver.{name}")
    table = pa.Table.from_pylist([{f: row.get(f) for f in schema.names} for row in rows], schema=schema)
    write_deltalake(str(lake / "silver" / name), table, partition_by=["tenant", "event_month"])


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG image"
    return struct.unpack(">II", head[16:24])


def test_historical_report_tables_and_figures(tmp_path):
    lake = tmp_path / "lake"
    write_silver(lake, "sensor_readings", readings())
    write_silver(lake, "alerts", ALERTS)
    env = {"IMPETUS_LAKE_URI": lake.as_uri(), "IMPETUS_CHECKPOINT_URI": (tmp_path / "chk").as_uri()}
    run_script("jobs/batch/build_gold.py", "--table", "area_hourly", "--table", "alert_counts", env=env)
    out = tmp_path / "report"
    result = run_script("jobs/batch/historical_report.py", "--date", "2026-05-04", "--window-days", "2",
                        "--out", str(out), env=env)

    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert [(t["table"], t["rows"]) for t in summary["tables"]] == [
        ("gold.hotspots", 204), ("gold.trends", 15), ("gold.before_after", 3)]
    assert summary["report"] == str(out / "index.html")
    progress = [line.split("] ", 1)[1] for line in result.stderr.splitlines() if line.startswith("[historical_report")]
    assert "gold.hotspots: 204 rows written to " + (lake / "gold" / "hotspots").as_uri() in progress

    def rows(name):
        return DeltaTable(str(lake / "gold" / name)).to_pyarrow_table().to_pylist()

    # 2 areas x 102 local hours of the week with counts; 3 alerts in one cell, 1 in two others
    hot = sorted(rows("hotspots"), key=lambda r: r["rank"])
    assert [(r["rank"], r["area"], r["hour_of_week"], r["weekday"], r["local_hour"], r["sensors"], r["alerts"],
             r["anomaly_alerts"], r["people_mean"], r["people_hours"], r["score_basis"], r["score"])
            for r in hot[:4]] == [
        (1, "Queen Street", 9, 0, 9, 2, 3, 3, 15.0, 1, "alerts", 3.0),
        (2, "Queen Street", 134, 5, 14, 2, 1, 0, 150.0, 1, "alerts", 1.0),
        (3, "Vulcan Lane", 42, 1, 18, 1, 1, 1, 20.0, 1, "alerts", 1.0),
        (4, "Queen Street", 120, 5, 0, 2, 0, 0, 150.0, 1, "alerts", 0.0),
    ]
    # on the counters' own coordinates
    assert (hot[0]["lat"], hot[0]["lon"]) == (pytest.approx(-36.848), pytest.approx(174.7656))
    assert (hot[2]["lat"], hot[2]["lon"]) == (pytest.approx(-36.8481), pytest.approx(174.7648))

    trend = {(r["area"], str(r["local_date"])): r for r in rows("trends")}
    assert [(day, r["daily_total"], r["hours"], r["complete"], r["rolling_mean_7d"], r["rolling_days"],
             str(r["year_ago_date"]), r["year_ago_total"], r["weekday_index"])
            for (area, day), r in sorted(trend.items()) if area == "Queen Street"] == [
        ("2026-05-02", 3600.0, 24, True, 3600.0, 1, "2025-05-03", None, pytest.approx(3600 / 1980)),
        ("2026-05-03", 3600.0, 24, True, 3600.0, 2, "2025-05-04", None, pytest.approx(3600 / 1980)),
        ("2026-05-04", 360.0, 24, True, 2520.0, 3, "2025-05-05", None, pytest.approx(360 / 1980)),
        ("2026-05-05", 360.0, 24, True, 1980.0, 4, "2025-05-06", None, pytest.approx(360 / 1980)),
        ("2026-05-06", 90.0, 6, False, 1980.0, 4, "2025-05-07", None, None),
    ]
    assert [(day, r["daily_total"], r["rolling_mean_7d"]) for (area, day), r in sorted(trend.items())
            if area == "(all)"] == [("2026-05-02", 4080.0, 4080.0), ("2026-05-03", 4080.0, 4080.0),
                                    ("2026-05-04", 840.0, 3000.0), ("2026-05-05", 840.0, 2460.0),
                                    ("2026-05-06", 210.0, 2460.0)]

    assert sorted((r["area"], r["kind"], r["date"], r["window_days"], r["days_before"], r["mean_before"],
                   r["days_after"], r["mean_after"], r["change"], r["change_pct"], r["alerts_before"],
                   r["alerts_after"]) for r in rows("before_after")) == [
        ("(all)", "pedestrian_count", date(2026, 5, 4), 2, 2, 4080.0, 2, 840.0, -3240.0,
         pytest.approx(-3240 / 4080 * 100), 1, 4),
        ("Queen Street", "pedestrian_count", date(2026, 5, 4), 2, 2, 3600.0, 2, 360.0, -3240.0, -90.0, 1, 3),
        ("Vulcan Lane", "pedestrian_count", date(2026, 5, 4), 2, 2, 480.0, 2, 480.0, 0.0, 0.0, 0, 1),
    ]

    html = (out / "index.html").read_text(encoding="utf-8")
    figures = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(figures) == ["auckland-before-after-pedestrian_count.png", "auckland-hotspot-map.png",
                               "auckland-hour-of-week.png", "auckland-trend-pedestrian_count.png",
                               "auckland-weekdays-pedestrian_count.png"]
    for name in figures:
        width, height = png_size(out / name)
        assert width >= 400 and height >= 200, f"{name} is {width}x{height}"
    # the tables of the report: the top hot spot and the comparison
    assert re.search(r"<td>1</td><td class=\"text\">Queen Street</td><td class=\"text\">Monday 09:00</td>", html)
    assert "-3,240 (-90.0%)" in html
