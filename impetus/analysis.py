"""Historical analysis for analysts: hot spots, trends and seasonality, before/after comparisons.

Called by jobs/batch/historical_report.py (which writes the tables and the HTML report) and
by the tests. Reads the gold tables jobs/batch/build_gold.py recomputes from silver
(``gold.area_hourly``, ``gold.alert_counts``) and derives three tables declared in
``schemas/tables/``:

* ``gold.hotspots``: per tenant, area and local hour of the week, the alerts and anomaly
  alerts raised there, the people usually about, and a robust z-score of the cell against
  the tenant's other cells (median and MAD across cells), ranked. Without any alert the
  score ranks people volume instead (``score_basis``), so a lake of counts alone still
  shows where and when the city is busiest.
* ``gold.trends``: daily totals per area (and ``(all)`` areas) and kind, a 7-day rolling
  mean, the same weekday a year before, and a weekly seasonality index.
* ``gold.before_after``: the mean daily value in a window before a date and from it on,
  with the change, and the alerts of each window.

Dates, weekdays and hours of the week are the tenant's local ones (gold.area_hourly
carries them; alerts' UTC hours are converted with ``schemas/topics.yaml``'s time zones).
A day is *complete* with at least :data:`COMPLETE_DAY_HOURS` hours of data: the first and
last day of a history, or a day of outage, would otherwise read as a collapse in people
flow. Incomplete days are kept in ``gold.trends`` (flagged) but enter no mean.

The transforms are plain functions from DataFrames to DataFrames, so the tests feed them
literal rows; :func:`build_historical` reads and writes the lake, :func:`render_report`
turns the tables (as pandas frames) into ``index.html`` and PNG figures.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from impetus.config import Settings
from impetus.detect.urban import BASELINE_NAME, WEEKDAYS
from impetus.lake import LakeError, conform, declared, table_exists, table_path, within_retention
from impetus.topics import tenant_timezones

HOTSPOTS, TRENDS, BEFORE_AFTER = "gold.hotspots", "gold.trends", "gold.before_after"
OUTPUTS = (HOTSPOTS, TRENDS, BEFORE_AFTER)
AREA_HOURLY, ALERT_COUNTS = "gold.area_hourly", "gold.alert_counts"
# the kind whose hourly sum over an area's counters is "people about"
PEOPLE_KIND = "pedestrian_count"
# the area value of the rows that sum over all of a tenant's areas
ALL_AREAS = "(all)"
# 23, not 24: the day clocks go forward has 23 hours, and the replayed counts skip the repeated hour
COMPLETE_DAY_HOURS = 23
# New Zealand's first COVID-19 lockdown (alert level 4) began on 26 March 2020
DEFAULT_CHANGE_DATE = date(2020, 3, 26)
DEFAULT_WINDOW_DAYS = 28
ROLLING_DAYS = 7
# "the same weekday a year before": 52 weeks back
YEAR_AGO_DAYS = 364
# detectors whose alerts are anomalies whatever their category says
ANOMALY_DETECTORS = (BASELINE_NAME,)
MAD_SCALE = 1.4826
# Floors of the spread, as in the urban baseline: most cells of a tenant have no alert at all
# (median and MAD 0), and without a floor a single alert would be an infinite score.
SPREAD_FLOOR_FRACTION = 0.05
SPREAD_FLOOR_ABSOLUTE = 1.0
WEEKDAY_ABBREVIATIONS = tuple(day[:3] for day in WEEKDAYS)
# as in the topics' schemas; a tenant name also goes into a Delta replaceWhere predicate
TENANT_NAME = re.compile(r"[a-z0-9_-]+")


class AnalysisInputMissing(LakeError):
    """The gold tables the analysis reads are missing or empty; the message says what to run."""


# --------------------------------------------------------------------------- transforms

def _with_area(frame):
    from pyspark.sql import functions as F

    return frame.where(F.col("area").isNotNull() & (F.col("area") != ""))


def _weekday(column: str):
    """0 = Monday .. 6 = Sunday of a date column (Spark's dayofweek is 1 = Sunday .. 7 = Saturday)."""
    from pyspark.sql import functions as F

    return ((F.dayofweek(column) + 5) % 7).cast("long")


def is_anomaly_alert():
    """Column: the alert (row of gold.alert_counts) is an anomaly: urban_anomaly, area_anomaly, flow_anomaly...
    or raised by the urban baseline model, whatever its category."""
    from pyspark.sql import functions as F

    return (F.lower(F.coalesce(F.col("category"), F.lit(""))).contains("anomal")
            | F.col("detector_name").isin(*ANOMALY_DETECTORS))


def hotspots(area_hourly, alert_counts=None, people_kind: str = PEOPLE_KIND):
    """gold.hotspots from gold.area_hourly and (when the lake has alerts) gold.alert_counts.

    Cells are the (tenant, area, local hour of week) with sensor data or alerts. ``score`` is
    the robust z-score of the cell's alerts against all the tenant's cells, or of its mean
    people count when the tenant has no alert with an area (``score_basis``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cell = ["tenant", "area", "hour_of_week"]
    sensors = _with_area(area_hourly)
    places = sensors.groupBy("tenant", "area").agg(F.avg("lat").alias("sensor_lat"), F.avg("lon").alias("sensor_lon"),
                                                   F.max("sensors").alias("sensors"))
    people = (sensors.where(F.col("kind") == people_kind).groupBy(*cell)
              .agg(F.avg("value_sum").alias("people_mean"), F.count("value_sum").alias("people_hours")))
    cells = sensors.select(*cell)
    if alert_counts is not None:
        located = _with_area(alert_counts)
        alerts = located.groupBy(*cell).agg(
            F.sum("alerts").alias("alerts"),
            F.sum(F.when(is_anomaly_alert(), F.col("alerts")).otherwise(0)).alias("anomaly_alerts"))
        alert_places = located.groupBy("tenant", "area").agg(F.avg("lat").alias("alert_lat"),
                                                             F.avg("lon").alias("alert_lon"))
        cells = cells.unionByName(located.select(*cell))
        frame = (cells.distinct().join(alerts, cell, "left")
                 .join(alert_places, ["tenant", "area"], "left"))
    else:
        frame = (cells.distinct().withColumn("alerts", F.lit(None).cast("long"))
                 .withColumn("anomaly_alerts", F.lit(None).cast("long"))
                 .withColumn("alert_lat", F.lit(None).cast("double"))
                 .withColumn("alert_lon", F.lit(None).cast("double")))
    frame = (frame.join(people, cell, "left").join(places, ["tenant", "area"], "left")
             .withColumn("alerts", F.coalesce("alerts", F.lit(0)))
             .withColumn("anomaly_alerts", F.coalesce("anomaly_alerts", F.lit(0)))
             .withColumn("sensors", F.coalesce("sensors", F.lit(0)))
             # the sensors' own coordinates; an area known only from alerts takes theirs
             .withColumn("lat", F.coalesce("sensor_lat", "alert_lat"))
             .withColumn("lon", F.coalesce("sensor_lon", "alert_lon")))

    tenant = Window.partitionBy("tenant")
    frame = frame.withColumn("score_basis", F.when(F.sum("alerts").over(tenant) > 0, F.lit("alerts"))
                             .otherwise(F.lit("people")))
    x = F.when(F.col("score_basis") == "alerts", F.col("alerts").cast("double")).otherwise(F.col("people_mean"))
    frame = (frame.withColumn("_x", x)
             .withColumn("_median", F.percentile("_x", 0.5).over(tenant))
             .withColumn("_mad", F.percentile(F.abs(F.col("_x") - F.col("_median")), 0.5).over(tenant)))
    spread = F.greatest(F.lit(MAD_SCALE) * F.col("_mad"), F.lit(SPREAD_FLOOR_FRACTION) * F.abs(F.col("_median")),
                        F.lit(SPREAD_FLOOR_ABSOLUTE))
    order = Window.partitionBy("tenant").orderBy(F.col("score").desc_nulls_last(), F.col("alerts").desc(),
                                                 F.col("people_mean").desc_nulls_last(), "area", "hour_of_week")
    return (frame.withColumn("score", (F.col("_x") - F.col("_median")) / spread)
            .withColumn("rank", F.row_number().over(order))
            .withColumn("weekday", F.floor(F.col("hour_of_week") / 24).cast("long"))
            .withColumn("local_hour", (F.col("hour_of_week") % 24).cast("long")))


def daily_totals(area_hourly, min_hours: int = COMPLETE_DAY_HOURS):
    """Per tenant, area (and :data:`ALL_AREAS`), kind and local date: the day's total over the area's
    sensors, the hours with data, the weekday, and whether the day is complete."""
    from pyspark.sql import functions as F

    located = _with_area(area_hourly)
    totals = [F.sum("value_sum").alias("daily_total"), F.countDistinct("hour").alias("hours")]
    per_area = located.groupBy("tenant", "area", "kind", "local_date").agg(*totals)
    overall = located.groupBy("tenant", "kind", "local_date").agg(*totals).withColumn("area", F.lit(ALL_AREAS))
    return (per_area.unionByName(overall)
            .withColumn("weekday", _weekday("local_date"))
            .withColumn("complete", F.col("hours") >= min_hours))


def trends(area_hourly, min_hours: int = COMPLETE_DAY_HOURS):
    """gold.trends: :func:`daily_totals` with a 7-day rolling mean, the same weekday 52 weeks
    before, and the weekly seasonality index, all over complete days only."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    series = ["tenant", "area", "kind"]
    daily = daily_totals(area_hourly, min_hours)
    complete_total = F.when(F.col("complete"), F.col("daily_total"))
    # a range over day numbers: a missing day shortens the window instead of stretching it
    last_week = (Window.partitionBy(*series).orderBy(F.unix_date(F.col("local_date")))
                 .rangeBetween(-(ROLLING_DAYS - 1), 0))
    year_ago = daily.where("complete").select(*series, F.col("local_date").alias("year_ago_date"),
                                              F.col("daily_total").alias("year_ago_total"))
    weekday_means = (daily.where("complete").groupBy(*series, "weekday")
                     .agg(F.avg("daily_total").alias("_weekday_mean"))
                     .withColumn("_week_mean", F.avg("_weekday_mean").over(Window.partitionBy(*series))))
    index = weekday_means.select(*series, "weekday", F.when(
        F.col("_week_mean") > 0, F.col("_weekday_mean") / F.col("_week_mean")).alias("weekday_index"))
    return (daily.withColumn("rolling_mean_7d", F.avg(complete_total).over(last_week))
            .withColumn("rolling_days", F.count(complete_total).over(last_week))
            .withColumn("year_ago_date", F.date_sub("local_date", YEAR_AGO_DAYS))
            .join(year_ago, series + ["year_ago_date"], "left")
            .join(index, series + ["weekday"], "left"))


def _local_date_of(column: str, timezones: dict[str, str]):
    """Local date of a UTC timestamp column in each row's tenant's time zone (UTC when not declared)."""
    from pyspark.sql import functions as F

    zone = F.lit("UTC")
    for tenant, name in timezones.items():
        zone = F.when(F.col("tenant") == tenant, F.lit(name)).otherwise(zone)
    return F.to_date(F.from_utc_timestamp(F.col(column), zone))


def window_bounds(change_date: date, window_days: int) -> tuple[date, date, date]:
    """(first day before, the change date, first day after the after window): before is
    [first, change_date), after is [change_date, end)."""
    if window_days < 1:
        raise ValueError(f"window_days must be at least 1, not {window_days}")
    return change_date - timedelta(days=window_days), change_date, change_date + timedelta(days=window_days)


def before_after(area_hourly, alert_counts, change_date: date, window_days: int, timezones: dict[str, str],
                 min_hours: int = COMPLETE_DAY_HOURS):
    """gold.before_after: mean daily total over the complete days of the ``window_days`` before
    ``change_date`` and of the ``window_days`` from it on, per tenant, area (and ``(all)``) and kind;
    with the alerts of each window per area when ``alert_counts`` is given (None: the lake has none)."""
    from pyspark.sql import functions as F

    first, change, end = window_bounds(change_date, window_days)
    series = ["tenant", "area", "kind"]
    daily = daily_totals(area_hourly, min_hours).where(
        F.col("complete") & (F.col("local_date") >= F.lit(first)) & (F.col("local_date") < F.lit(end)))
    before = F.col("local_date") < F.lit(change)
    after = ~before
    frame = daily.groupBy(*series).agg(
        F.count(F.when(before, 1)).alias("days_before"), F.count(F.when(after, 1)).alias("days_after"),
        F.avg(F.when(before, F.col("daily_total"))).alias("mean_before"),
        F.avg(F.when(after, F.col("daily_total"))).alias("mean_after"))
    frame = (frame.withColumn("change", F.col("mean_after") - F.col("mean_before"))
             .withColumn("change_pct", F.when(F.col("mean_before") > 0,
                                              F.lit(100.0) * F.col("change") / F.col("mean_before")))
             .withColumn("date", F.lit(change))
             .withColumn("window_days", F.lit(window_days).cast("long")))
    if alert_counts is None:
        return (frame.withColumn("alerts_before", F.lit(None).cast("long"))
                .withColumn("alerts_after", F.lit(None).cast("long")))
    alerts = (_with_area(alert_counts).withColumn("local_date", _local_date_of("hour", timezones))
              .where((F.col("local_date") >= F.lit(first)) & (F.col("local_date") < F.lit(end))))
    counts = [F.sum(F.when(F.col("local_date") < F.lit(change), F.col("alerts")).otherwise(0)).alias("alerts_before"),
              F.sum(F.when(F.col("local_date") >= F.lit(change), F.col("alerts")).otherwise(0)).alias("alerts_after")]
    per_area = alerts.groupBy("tenant", "area").agg(*counts)
    overall = alerts.groupBy("tenant").agg(*counts).withColumn("area", F.lit(ALL_AREAS))
    return (frame.join(per_area.unionByName(overall), ["tenant", "area"], "left")
            .withColumn("alerts_before", F.coalesce("alerts_before", F.lit(0)))
            .withColumn("alerts_after", F.coalesce("alerts_after", F.lit(0))))


# --------------------------------------------------------------------------- lake

def _read_input(spark, settings: Settings, qualified: str, tenant: str | None, log: Callable):
    """The table (of ``tenant`` only, when given), or None when it is missing or has no rows."""
    from pyspark.sql import functions as F

    path = table_path(settings, qualified)
    if not table_exists(spark, path):
        log(f"{qualified}: missing at {path}")
        return None
    frame = spark.read.format("delta").load(path)
    if tenant:
        frame = frame.where(F.col("tenant") == tenant)
    rows = frame.count()
    log(f"{qualified}: {rows} rows" + (f" of tenant {tenant}" if tenant else ""))
    return frame if rows else None


def _tenants_in(spark, settings: Settings) -> list[str]:
    tenants = set()
    for qualified in (AREA_HOURLY, ALERT_COUNTS):
        path = table_path(settings, qualified)
        if table_exists(spark, path):
            tenants |= {r["tenant"] for r in spark.read.format("delta").load(path).select("tenant").distinct()
                        .collect()}
    return sorted(t for t in tenants if t)


def _empty(spark, qualified: str):
    from impetus.schemas import load_schema, spark_schema

    return spark.createDataFrame([], spark_schema(load_schema(qualified)))


def write_table(spark, settings: Settings, frame, qualified: str, tenant: str | None = None, promotion=None,
                source: str = "gold.area_hourly, gold.alert_counts"):
    """Overwrite table ``qualified`` with ``frame`` (only ``tenant``'s rows when one is given) and
    return what it now holds (of ``tenant``) as a pandas DataFrame, for the report. With a
    ``promotion`` (:mod:`impetus.promotion`) the new rows first pass the table's gate; when they
    fail, the table keeps what it had."""
    from pyspark.sql import functions as F

    path = table_path(settings, qualified)
    if tenant and not TENANT_NAME.fullmatch(tenant):
        raise ValueError(f"{tenant!r} is not a tenant name (lower-case letters, digits, '_' and '-')")
    rows = conform(frame, qualified)
    if promotion is not None:
        rows = within_retention(rows, qualified, promotion.now)
    rows = rows.cache()
    try:
        if promotion is None or promotion.admit(rows, qualified, source):
            writer = rows.write.format("delta").mode("overwrite").partitionBy(
                *declared(qualified).get("x-partition-by", []))
            if tenant and table_exists(spark, path):
                # the other tenants' analyses stay as they were
                writer = writer.option("replaceWhere", f"tenant = '{tenant}'")
            else:
                writer = writer.option("overwriteSchema", "true")
            writer.save(path)
    finally:
        rows.unpersist()
    if not table_exists(spark, path):
        return _empty(spark, qualified).toPandas()
    written = spark.read.format("delta").load(path)
    if tenant:
        written = written.where(F.col("tenant") == tenant)
    return written.toPandas()


def _coverage(trend_rows, most: int = 6) -> str:
    """The stretches of complete days in gold.trends rows, e.g. '2019-03-01 .. 2019-03-07, 2026-11-12 .. 2026-11-19'."""
    if trend_rows.empty:
        return "no sensor data"
    complete = trend_rows[trend_rows["complete"].fillna(False).astype(bool)]
    if complete.empty:
        return "no complete day"
    spans = [f"{first} .. {last}" for first, last in stretches(complete["local_date"], max_gap_days=7)]
    return ", ".join(spans[:most]) + (f" and {len(spans) - most} more" if len(spans) > most else "")


def build_historical(settings: Settings, change_date: date = DEFAULT_CHANGE_DATE,
                     window_days: int = DEFAULT_WINDOW_DAYS, tenant: str | None = None,
                     log: Callable = print, promotion=None) -> dict:
    """Compute and write gold.hotspots, gold.trends and gold.before_after from the lake's gold tables.

    Returns ``{"tables": [{"table", "rows", "path"}...], "frames": {table: pandas DataFrame}}``,
    the frames being the written rows (of ``tenant``, when given) for :func:`render_report`.
    Each table passes its gate first when a ``promotion`` is given (the job always gives one).
    Raises :class:`AnalysisInputMissing` when there is nothing to analyse.
    """
    from impetus.spark import spark_session

    window_bounds(change_date, window_days)
    if tenant is not None and not TENANT_NAME.fullmatch(tenant):
        raise ValueError(f"{tenant!r} is not a tenant name (lower-case letters, digits, '_' and '-')")
    spark = spark_session(settings, "historical_report")
    area_hourly = _read_input(spark, settings, AREA_HOURLY, tenant, log)
    alert_counts = _read_input(spark, settings, ALERT_COUNTS, tenant, log)
    if area_hourly is None and alert_counts is None:
        present = _tenants_in(spark, settings) if tenant else []
        if present:
            raise AnalysisInputMissing(
                f"no rows of tenant {tenant!r} in {AREA_HOURLY} or {ALERT_COUNTS} at {settings.lake_uri} "
                f"(tenants there: {', '.join(present)}); choose one of those with --tenant")
        raise AnalysisInputMissing(
            f"nothing to analyse: {AREA_HOURLY} and {ALERT_COUNTS} are missing or empty in {settings.lake_uri}. "
            "Build them from silver with `python jobs/batch/build_gold.py` (after land_bronze.py and "
            "build_silver.py have brought sensor readings or alerts into the lake).")
    if area_hourly is None:
        log(f"{AREA_HOURLY}: no sensor data, so hot spots come from alerts alone and trends and "
            "before/after are empty")
        area_hourly = _empty(spark, AREA_HOURLY)
    if alert_counts is None:
        log(f"{ALERT_COUNTS}: no alerts, so hot spots rank people volume and before/after has no alert counts")
    area_hourly = area_hourly.cache()
    timezones = tenant_timezones(settings)

    tables = []
    builders = [
        (HOTSPOTS, lambda: hotspots(area_hourly, alert_counts)),
        (TRENDS, lambda: trends(area_hourly)),
        (BEFORE_AFTER, lambda: before_after(area_hourly, alert_counts, change_date, window_days, timezones)),
    ]
    frames = {}
    for qualified, build in builders:
        frames[qualified] = write_table(spark, settings, build(), qualified, tenant, promotion=promotion)
        path = table_path(settings, qualified)
        log(f"{qualified}: {len(frames[qualified])} rows written to {path}")
        tables.append({"table": qualified, "rows": len(frames[qualified]), "path": path})
    area_hourly.unpersist()
    if frames[BEFORE_AFTER].empty and not frames[TRENDS].empty:
        first, _, end = window_bounds(change_date, window_days)
        log(f"{BEFORE_AFTER}: no complete day between {first} and {end - timedelta(days=1)} "
            f"(complete days in the lake: {_coverage(frames[TRENDS])}); pass a --date inside those")
    return {"tables": tables, "frames": frames}


# --------------------------------------------------------------------------- report

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", str(text).lower()).strip("-") or "x"


def _kinds(frame, people_kind: str = PEOPLE_KIND, limit: int = 4) -> list[str]:
    kinds = sorted(set(frame["kind"]), key=lambda k: (k != people_kind, k)) if not frame.empty else []
    return kinds[:limit]


def _figure(width: float, height: float):
    # a Figure without pyplot: no global state, no display backend (Agg renders the PNG)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure, path: Path) -> str:
    figure.savefig(path, format="png")
    return path.name


def area_summary(cells):
    """Per area of one tenant's gold.hotspots rows: position, alerts, people per hour and best cell."""
    import pandas as pd

    if cells.empty:
        return pd.DataFrame(columns=["area", "lat", "lon", "sensors", "alerts", "anomaly_alerts", "people_mean",
                                     "top_score", "top_rank"])
    grouped = cells.groupby("area", sort=True)
    return pd.DataFrame({
        "lat": grouped["lat"].first(), "lon": grouped["lon"].first(), "sensors": grouped["sensors"].max(),
        "alerts": grouped["alerts"].sum(),
        "anomaly_alerts": grouped["anomaly_alerts"].sum(), "people_mean": grouped["people_mean"].mean(),
        "top_score": grouped["score"].max(), "top_rank": grouped["rank"].min(),
    }).reset_index().sort_values("top_rank", kind="stable")


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _place_labels(ax, renderer, points: list[tuple[float, float, str]], obstacles: list) -> None:
    """Annotate each (x, y, text) at the one of a few offsets that overlaps earlier labels and the
    ``obstacles`` (display-space boxes, e.g. the markers) least. The layout must be final."""
    from matplotlib.text import Text

    offsets = [(dx * side, dy, "left" if side > 0 else "right")
               for dx, dy in ((12, 10), (12, -30), (24, 34), (24, -54), (40, 64), (40, -84)) for side in (1, -1)]
    placed = []
    for x, y, text in points:
        best = None
        for dx, dy, align in offsets:
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=align,
                                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85}, zorder=5,
                                arrowprops={"arrowstyle": "-", "color": "dimgrey", "linewidth": 0.6},
                                annotation_clip=False)
            label.set_in_layout(False)
            # the text's own box (the annotation's extent would include its arrow), once it is in place
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).expanded(1.1, 1.2)
            cost = sum(_overlap(box, other) for other in placed) + 0.3 * sum(_overlap(box, o) for o in obstacles)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
            if cost == 0:
                break
        placed.append(best[2])


def plot_hotspot_map(cells, path: Path, labels: int = 6) -> str | None:
    """Areas on their sensors' coordinates, sized by alerts (or people), coloured by their hottest cell."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    areas = area_summary(cells).dropna(subset=["lat", "lon"])
    if areas.empty:
        return None
    by_alerts = (cells["score_basis"] == "alerts").any()
    weight = (areas["alerts"] if by_alerts else areas["people_mean"].fillna(0)).astype(float)
    sizes = [40 + 900 * math.sqrt(w / weight.max()) if weight.max() > 0 else 80.0 for w in weight]
    figure = _figure(9, 7)
    ax = figure.subplots()
    points = ax.scatter(areas["lon"], areas["lat"], s=sizes, c=areas["top_score"], cmap="YlOrRd",
                        edgecolors="black", linewidths=0.6, alpha=0.85, zorder=3)
    figure.colorbar(points, ax=ax, label="score of the area's hottest hour of the week", shrink=0.8)
    # one degree of longitude is shorter than one of latitude away from the equator
    ax.set_aspect(1 / max(math.cos(math.radians(float(areas["lat"].mean()))), 0.1), adjustable="datalim")
    ax.margins(0.25)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("Hot spots: size = " + ("alerts raised there" if by_alerts else "people per hour")
                 + ", colour = score")
    ax.grid(True, alpha=0.3)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw_without_rendering()  # settle layout and limits: labels are placed in display space
    # a marker of size s (points squared) has a radius of sqrt(s) / 2 points
    radii = [math.sqrt(size) / 2 * figure.dpi / 72 for size in sizes]
    centres = ax.transData.transform(areas[["lon", "lat"]].to_numpy(dtype=float))
    markers = [Bbox.from_extents(x - r, y - r, x + r, y + r) for (x, y), r in zip(centres, radii)]
    texts = [f"{row.area}\n" + (f"{int(row.alerts):,} alerts" if by_alerts else f"{row.people_mean:,.0f} people/h")
             for row in areas.head(labels).itertuples(index=False)]
    _place_labels(ax, renderer, list(zip(areas["lon"], areas["lat"], texts)), markers)
    return _save(figure, path)


def plot_hour_of_week_heatmap(cells, path: Path, max_areas: int = 15) -> str | None:
    """Score of every (area, local hour of week) cell, the hottest areas on top."""
    import numpy as np
    from matplotlib.colors import Normalize

    if cells.empty or cells["score"].isna().all():
        return None
    areas = list(area_summary(cells)["area"].head(max_areas))
    grid = (cells[cells["area"].isin(areas)].pivot_table(index="area", columns="hour_of_week", values="score")
            .reindex(index=areas, columns=range(168)))
    values = grid.to_numpy(dtype=float)
    # symmetric: a cell as far below the median as another is above gets as deep a blue as that one's red
    limit = max(float(np.nanmax(np.abs(values))), 1.0)
    norm = Normalize(vmin=-limit, vmax=limit)
    figure = _figure(12, 1.6 + 0.38 * len(areas))
    ax = figure.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
    figure.colorbar(image, ax=ax, label="score (0 = the tenant's median cell)", pad=0.01)
    ax.set_yticks(range(len(areas)), labels=areas, fontsize=8)
    ax.set_xticks([d * 24 + 12 for d in range(7)], labels=WEEKDAY_ABBREVIATIONS)
    for day in range(1, 7):
        ax.axvline(day * 24 - 0.5, color="black", linewidth=0.6)
    basis = "alerts" if (cells["score_basis"] == "alerts").any() else "people per hour"
    ax.set_title(f"Hour of the week (local time) x area: how unusual each cell's {basis} are; blank = no data")
    return _save(figure, path)


def stretches(days, max_gap_days: int = 31) -> list[tuple[date, date]]:
    """(first, last) of each run of ``days`` without a gap longer than ``max_gap_days``, oldest first."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][1]).days <= max_gap_days:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(first, last) for first, last in runs]


def _daily_series(frame, first: date, last: date):
    """The rows of ``frame`` from ``first`` to ``last``, one per day, so missing days show as gaps."""
    import pandas as pd

    series = frame.assign(local_date=pd.to_datetime(frame["local_date"])).set_index("local_date").sort_index()
    return series.reindex(pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq="D"))


def plot_trend_lines(rows, path: Path, kind: str, change_date: date | None = None, areas: int = 5,
                     max_stretches: int = 3) -> str | None:
    """Daily totals and their 7-day rolling mean: all areas together, then the busiest areas.

    A history of separate stretches (a week in 2019, a week in 2026) gets one panel per stretch,
    the long gaps between them cut out, rather than two specks on a seven-year axis."""
    import pandas as pd
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    rows = rows[rows["kind"] == kind]
    if rows.empty:
        return None
    overall = rows[rows["area"] == ALL_AREAS]
    per_area = rows[rows["area"] != ALL_AREAS]
    busiest = (per_area[per_area["complete"]].groupby("area")["daily_total"].mean()
               .sort_values(ascending=False).head(areas).index.tolist())
    spans = stretches(pd.to_datetime(rows["local_date"]).dt.date)
    shown = spans[-max_stretches:]
    note = "" if len(spans) == 1 else (f" ({len(spans)} stretches of data" + (
        f", the last {len(shown)} shown" if len(shown) < len(spans) else "") + "; gaps between them cut out)")
    figure = _figure(12, 7.5)
    top, bottom = figure.subfigures(2, 1)
    widths = [max((last - first).days + 1, 10) for first, last in shown]
    upper = top.subplots(1, len(shown), sharey=True, squeeze=False, width_ratios=widths)[0]
    lower = bottom.subplots(1, len(shown), sharey=True, squeeze=False, width_ratios=widths)[0]
    top.suptitle(f"{kind}: all areas{note}", fontsize=11)
    bottom.suptitle(f"{kind}: the {len(busiest)} busiest areas (faint: daily total; bold: 7-day rolling mean)",
                    fontsize=11)
    colours = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown")
    for column, (first, last) in enumerate(shown):
        series = _daily_series(overall, first, last)
        upper[column].plot(series.index, series["daily_total"], color="grey", linewidth=0.8, alpha=0.7,
                           label="daily total")
        upper[column].plot(series.index, series["rolling_mean_7d"], color="black", linewidth=2,
                           label="7-day rolling mean")
        if series["year_ago_total"].notna().any():
            upper[column].plot(series.index, series["year_ago_total"], color="tab:orange", linewidth=0.8,
                               linestyle="--", label="same weekday a year before")
        for colour, area in zip(colours, busiest):
            one = _daily_series(per_area[per_area["area"] == area], first, last)
            lower[column].plot(one.index, one["daily_total"], color=colour, linewidth=0.6, alpha=0.35)
            lower[column].plot(one.index, one["rolling_mean_7d"], color=colour, linewidth=1.8, label=area)
        for ax in (upper[column], lower[column]):
            ax.set_xlim(pd.Timestamp(first) - pd.Timedelta(hours=12), pd.Timestamp(last) + pd.Timedelta(hours=12))
            locator = AutoDateLocator(minticks=2, maxticks=max(3, widths[column] // 30 + 2))
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            if change_date is not None and first <= change_date <= last:
                ax.axvline(pd.Timestamp(change_date), color="tab:red", linestyle=":", linewidth=1.2)
            ax.grid(True, alpha=0.3)
    for ax in (upper[0], lower[0]):
        ax.set_ylabel("per day")
        ax.legend(fontsize=8, loc="upper left")
    return _save(figure, path)


def plot_weekday_index(rows, path: Path, kind: str) -> str | None:
    """The weekly seasonality index of all areas together."""
    overall = rows[(rows["kind"] == kind) & (rows["area"] == ALL_AREAS)].dropna(subset=["weekday_index"])
    if overall.empty:
        return None
    index = overall.groupby("weekday")["weekday_index"].first().reindex(range(7))
    figure = _figure(6, 3.2)
    ax = figure.subplots()
    ax.bar(WEEKDAY_ABBREVIATIONS, index.fillna(0), color=["tab:blue"] * 5 + ["tab:orange"] * 2)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_title(f"{kind}: weekday index (1 = an average day)")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def plot_before_after(rows, path: Path, kind: str, max_areas: int = 15) -> str | None:
    """Mean daily value before and after the date per area, with the relative change."""
    import numpy as np

    rows = rows[(rows["kind"] == kind) & (rows["area"] != ALL_AREAS)]
    rows = rows.dropna(subset=["mean_before", "mean_after"], how="all")
    if rows.empty:
        return None
    rows = rows.sort_values("mean_before", ascending=True, na_position="first").tail(max_areas)
    first = rows.iloc[0]
    positions = np.arange(len(rows))
    figure = _figure(10, 1.5 + 0.42 * len(rows))
    ax = figure.subplots()
    ax.barh(positions + 0.2, rows["mean_before"].fillna(0), height=0.4, color="tab:blue",
            label=f"{int(first['window_days'])} days before")
    ax.barh(positions - 0.2, rows["mean_after"].fillna(0), height=0.4, color="tab:orange",
            label=f"{int(first['window_days'])} days from {first['date']}")
    for y, row in zip(positions, rows.itertuples(index=False)):
        if row.change_pct == row.change_pct and row.change_pct is not None:  # not NaN
            ax.annotate(f"{row.change_pct:+.0f}%", (max(row.mean_before or 0, row.mean_after or 0), y),
                        xytext=(4, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(positions, labels=rows["area"], fontsize=8)
    ax.set_xlabel(f"mean {kind} per day (complete days)")
    ax.set_title(f"{kind}: before and after {first['date']}")
    ax.legend(fontsize=8, loc="lower right")
    ax.margins(x=0.12)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Historical analysis</title>
<style>
body { font-family: sans-serif; max-width: 1250px; margin: 2em auto; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; max-width: 900px; }
</style></head><body>
<h1>Historical analysis</h1>
<p class="note">Generated {{ generated }} from <code>{{ lake }}</code> by jobs/batch/historical_report.py.
Tables: <code>gold.hotspots</code>, <code>gold.trends</code>, <code>gold.before_after</code>.
Before/after compares the {{ window_days }} days before {{ date }} with the {{ window_days }} days from it on.
Dates and hours are each tenant's local time; only complete days (at least {{ min_hours }} hours of data) enter means.
How to read it: docs/historical-analysis.md.</p>
{% for t in tenants %}
<h2>{{ t.name }}</h2>
<p class="note">Complete days of sensor data: {{ t.coverage }}; {{ t.areas }} areas; {{ t.alerts }} alerts with an area
({{ t.anomalies }} anomalies). Hot spots rank <b>{{ t.basis }}</b>.</p>
<h3>Hot spots</h3>
{% if t.map %}<img src="{{ t.map }}" alt="hot-spot map">{% else %}<p>No area has coordinates.</p>{% endif %}
{% if t.heatmap %}<img src="{{ t.heatmap }}" alt="hour of week by area">{% endif %}
{% if t.top %}<table><tr><th>rank</th><th class="text">area</th><th class="text">when (local)</th>
<th>counters</th><th>alerts</th><th>anomalies</th><th>people/h</th><th>score</th></tr>
{% for r in t.top %}<tr><td>{{ r.rank }}</td><td class="text">{{ r.area }}</td><td class="text">{{ r.when }}</td>
<td>{{ r.sensors }}</td><td>{{ r.alerts }}</td><td>{{ r.anomaly_alerts }}</td><td>{{ r.people }}</td>
<td>{{ r.score }}</td></tr>
{% endfor %}</table>{% else %}<p>No hot-spot cells.</p>{% endif %}
{% if t.areas_table %}<table><tr><th class="text">area</th><th>counters</th><th>alerts</th><th>anomalies</th>
<th>people/h (mean)</th><th class="text">hottest hour (local)</th><th>its score</th><th>lat</th><th>lon</th></tr>
{% for r in t.areas_table %}<tr><td class="text">{{ r.area }}</td><td>{{ r.sensors }}</td><td>{{ r.alerts }}</td>
<td>{{ r.anomaly_alerts }}</td><td>{{ r.people }}</td><td class="text">{{ r.when }}</td><td>{{ r.score }}</td>
<td>{{ r.lat }}</td><td>{{ r.lon }}</td></tr>
{% endfor %}</table>{% endif %}
<h3>Trends and seasonality</h3>
{% for k in t.kinds %}
{% if k.trend %}<img src="{{ k.trend }}" alt="{{ k.kind }} trend">{% endif %}
{% if k.weekdays %}<img src="{{ k.weekdays }}" alt="{{ k.kind }} weekday index">{% endif %}
{% else %}<p>No sensor data: no trends.</p>{% endfor %}
<h3>Before and after {{ date }}</h3>
{% for k in t.kinds %}{% if k.before_after %}<img src="{{ k.before_after }}" alt="{{ k.kind }} before/after">
{% endif %}{% endfor %}
{% if t.comparison %}<table><tr><th class="text">area</th><th class="text">kind</th><th>days before</th>
<th>mean before</th><th>days after</th><th>mean after</th><th>change</th><th>alerts before</th>
<th>alerts after</th></tr>
{% for r in t.comparison %}<tr><td class="text">{{ r.area }}</td><td class="text">{{ r.kind }}</td>
<td>{{ r.days_before }}</td><td>{{ r.mean_before }}</td><td>{{ r.days_after }}</td><td>{{ r.mean_after }}</td>
<td>{{ r.change }}</td><td>{{ r.alerts_before }}</td><td>{{ r.alerts_after }}</td></tr>
{% endfor %}</table>
{% else %}<p>No complete day of sensor data within {{ window_days }} days of {{ date }}
(complete days: {{ t.coverage }}).{% if t.has_days %} Run the job with a <code>--date</code> inside those.
{% endif %}</p>
{% endif %}
{% endfor %}
{% if not tenants %}<p>No data to report.</p>{% endif %}
</body></html>
"""


def _number(value, digits: int = 0, sign: bool = False) -> str:
    if value is None or value != value:  # None or NaN
        return ""
    return f"{value:{'+' if sign else ''},.{digits}f}"


def _when(hour_of_week) -> str:
    return f"{WEEKDAYS[int(hour_of_week) // 24]} {int(hour_of_week) % 24:02d}:00"


def _tenant_section(name: str, hot, trend, comparison, out_dir: Path, change_date: date) -> dict:
    prefix = _slug(name)
    hot = hot.sort_values("rank", kind="stable")
    located = hot[hot["alerts"] > 0]
    top = [{"rank": int(r.rank), "area": r.area, "when": _when(r.hour_of_week), "sensors": int(r.sensors),
            "alerts": int(r.alerts), "anomaly_alerts": int(r.anomaly_alerts), "people": _number(r.people_mean),
            "score": _number(r.score, 1)} for r in hot.head(10).itertuples(index=False)]
    hottest = hot.drop_duplicates("area").set_index("area")["hour_of_week"]
    areas_table = [{"area": r.area, "sensors": int(r.sensors), "alerts": int(r.alerts),
                    "anomaly_alerts": int(r.anomaly_alerts), "people": _number(r.people_mean),
                    "when": _when(hottest[r.area]), "score": _number(r.top_score, 1), "lat": _number(r.lat, 5),
                    "lon": _number(r.lon, 5)} for r in area_summary(hot).itertuples(index=False)]
    kinds = []
    for kind in _kinds(trend if not trend.empty else comparison):
        slug = _slug(kind)
        kinds.append({
            "kind": kind,
            "trend": plot_trend_lines(trend, out_dir / f"{prefix}-trend-{slug}.png", kind, change_date),
            "weekdays": plot_weekday_index(trend, out_dir / f"{prefix}-weekdays-{slug}.png", kind),
            "before_after": plot_before_after(comparison, out_dir / f"{prefix}-before-after-{slug}.png", kind),
        })
    ordered = comparison.assign(_all=comparison["area"] != ALL_AREAS).sort_values(
        ["kind", "_all", "mean_before"], ascending=[True, True, False], na_position="last", kind="stable")
    rows = [{"area": r.area, "kind": r.kind, "days_before": int(r.days_before), "days_after": int(r.days_after),
             "mean_before": _number(r.mean_before), "mean_after": _number(r.mean_after),
             "change": (_number(r.change, sign=True) + (f" ({_number(r.change_pct, 1, sign=True)}%)"
                                                        if r.change_pct == r.change_pct else "")),
             "alerts_before": "" if r.alerts_before != r.alerts_before else int(r.alerts_before),
             "alerts_after": "" if r.alerts_after != r.alerts_after else int(r.alerts_after)}
            for r in ordered.itertuples(index=False)]
    return {
        "name": name, "coverage": _coverage(trend), "has_days": bool(trend["complete"].fillna(False).any()),
        "areas": hot["area"].nunique(),
        "alerts": int(located["alerts"].sum()), "anomalies": int(located["anomaly_alerts"].sum()),
        "basis": "alerts" if (hot["score_basis"] == "alerts").any() else "people per hour (no alerts)",
        "map": plot_hotspot_map(hot, out_dir / f"{prefix}-hotspot-map.png") if not hot.empty else None,
        "heatmap": plot_hour_of_week_heatmap(hot, out_dir / f"{prefix}-hour-of-week.png") if not hot.empty else None,
        "top": top, "areas_table": areas_table, "kinds": kinds, "comparison": rows,
    }


def render_report(frames: dict, out_dir: Path, change_date: date, window_days: int, lake: str = "",
                  log: Callable = print) -> Path:
    """Write ``out_dir/index.html`` and its PNG figures from the three tables (pandas frames by
    qualified name, as :func:`build_historical` returns them); returns the path of index.html."""
    from jinja2 import Environment

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hot, trend, comparison = frames[HOTSPOTS], frames[TRENDS], frames[BEFORE_AFTER]
    names = sorted(set(hot["tenant"]) | set(trend["tenant"]) | set(comparison["tenant"]))
    sections = []
    for name in names:
        log(f"report: figures and tables of tenant {name}")
        sections.append(_tenant_section(name, hot[hot["tenant"] == name], trend[trend["tenant"] == name],
                                        comparison[comparison["tenant"] == name], out_dir, change_date))
    html = Environment(autoescape=True).from_string(_TEMPLATE).render(
        tenants=sections, lake=lake, date=change_date, window_days=window_days, min_hours=COMPLETE_DAY_HOURS,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
