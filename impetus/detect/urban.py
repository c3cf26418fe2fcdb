"""Urban Anomaly Detector: is this reading unusual for this sensor at this hour of the week?

People flow in a city centre follows the week: Queen Street at 12:00 on a Tuesday is
busy, at 04:00 on a Sunday nearly empty. One fixed threshold cannot tell a quiet
lunch hour (a closure, an evacuation, a dead counter) from a normal night, so this
module learns a **baseline** per (tenant, sensor, kind, hour of week in the sensor's
local time) and judges each reading against it. Everything here is plain Python over
plain data; the streaming jobs (jobs/streaming/, written by the lead) call it from
PyFlink functions, ``models/urban_baseline/build.py`` trains and evaluates the baseline,
and the tests call it directly.

What it provides, and how the streaming side uses it:

* :func:`build_baseline` / :func:`save_baseline` / :func:`load_baseline`: median and
  MAD (scaled by 1.4826, so it estimates a standard deviation) per hour of week,
  trained on a window of history (default :data:`DEFAULT_TRAINING_WINDOW`). A cell
  with fewer than ``min_samples`` readings is absent: no judgement without history.
  The MAD is floored at ``max(MAD, 5% of the median, 1.0)``: night hours at a quiet
  counter often have a MAD of 0 or 1 person, and without a floor any change of a few
  people would be "20 sigma".
* :func:`urban_anomaly_alert`: stateless, one reading in, an ``urban_anomaly`` alert
  or None out. The lead loads the baseline once in ``open()`` and calls it per reading.
* :func:`silent_sensor_alert` and :func:`silent_sensor_deadlines`: a sensor that stops
  reporting. **Contract with the Flink side**: key the readings by
  ``(tenant, sensor_id, kind)``; keep in keyed state the largest event time seen (epoch
  ms; a late reading must not move it back) plus the reading's location; after each
  reading register an event-time timer at every time :func:`silent_sensor_deadlines`
  returns for it. When a timer fires, it is current only if it is still one of the
  deadlines of the stored last event time (otherwise a newer reading arrived: ignore
  it, no need to delete old timers); if current, emit :func:`silent_sensor_alert` with
  ``deadline_event_time`` = the timer's timestamp. The alert id is derived from the
  deadline, so a replay re-emits the same ids. Event-time timers fire only as the
  watermark advances, i.e. while *other* sensors of the stream still report: if the
  whole feed stops, nothing fires here (that is a feed-level outage for data-quality
  monitoring, or configure source idleness).
* :func:`area_burst_step` / :func:`expires_at`: a pure step keyed by
  ``(tenant, location.area)`` over ``urban_anomaly`` alerts. Anomalies of at least
  ``min_sensors`` distinct counters of one area within ``window_minutes`` of event time
  raise one ``area_anomaly`` alert; the area re-arms only after a whole window passes
  without anomalies. After each step register an event-time timer at
  ``expires_at(new_state)``; when it fires and ``expires_at(state) <= timestamp``, clear
  the state (it would behave exactly like an empty one).
* :func:`inject_anomalies` and :func:`evaluate`: labelled synthetic anomalies injected
  into real readings, and precision / recall / false-alert rate of the detector.
* :data:`DEFAULT_KIND_THRESHOLDS`: hard limits for air quality, bacteria and noise, for
  the lead to put into ``Settings.sensor_thresholds`` (see impetus/detect/thresholds.py).

No wall-clock time enters a decision: hours of week and windows come from event times;
``detected_at`` only fills the alert's ``time`` field.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from impetus.alerts import make_alert, parse_time, utc_iso
from impetus.replay import sensors as auckland

BASELINE_NAME = "urban_baseline"
# Local time zone of each tenant's sensors: hours of week are counted on the local clock,
# because people keep local hours across daylight-saving changes.
TIMEZONES = {auckland.TENANT: auckland.TIMEZONE}
# Ten months of normal life in Auckland's city centre (March-December 2019); 2020 stays
# unseen for evaluation: February 2020 is a normal month, and from 23 March 2020 the
# COVID-19 alert levels 3 and 4 emptied the streets (a genuine anomaly to flag).
DEFAULT_TRAINING_WINDOW = ("2019-03-01", "2020-01-01")
DEFAULT_CREATED_FROM = auckland.SOURCE
HOURS_PER_WEEK = 7 * 24
# Scales a median absolute deviation to the standard deviation of a normal distribution.
MAD_SCALE = 1.4826
DEFAULT_MIN_SAMPLES = 8
DEFAULT_MAD_FLOOR_FRACTION = 0.05
DEFAULT_MAD_FLOOR_ABSOLUTE = 1.0
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

RULE_KINDS = {
    "urban_anomaly": {
        "description": "A reading far from its sensor's usual value for that hour of the week "
                       "(robust z-score against the urban_baseline model).",
        "params": {
            "k": (6.0, "alert when the reading is at least this many MADs above the median (robust z-score)"),
            "k_below": (4.0, "alert when it is at least this many MADs below the median: a count cannot fall "
                             "below zero, so at a typical busy hour even a drop to zero is only about 6.5 MADs"),
            "min_abs": (50.0, "and |value - median| is at least this, in the reading's unit "
                              "(persons/h for pedestrian counts)"),
            "zero_when_expected": (100.0, "also alert on a reading of exactly 0 where the median is at least "
                                          "this, whatever the z-score (a stuck or unplugged counter); 0 = off"),
            "sensor_kind": ("*", "sensor kind the rule judges, or * for every kind the baseline knows"),
        },
    },
    "silent_sensor": {
        "description": "A sensor that has sent no reading for a while (power or network failure).",
        "params": {
            "after_minutes": (180, "alert when no reading arrived for this long after the last one "
                                   "(180 = three missed hourly counts)"),
            "escalate_after_minutes": (720, "a second alert, of medium severity, after this long"),
            "expected_interval_minutes": (60, "how often the sensor normally reports (for the operator)"),
        },
    },
    "area_burst": {
        "description": "Urban anomalies at several counters of the same area close together in time: "
                       "one area_anomaly alert per burst.",
        "params": {
            "min_sensors": (2, "distinct sensors of the area with an anomaly needed to raise the alert"),
            "window_minutes": (120, "event-time window the anomalies must fall in; the area re-arms only "
                                    "after a whole window without anomalies"),
        },
    },
}
# Numeric params must be positive, except these, for which 0 switches the condition off.
_MAY_BE_ZERO = {"min_abs", "zero_when_expected"}

URBAN_DETECTOR_KIND = "model"
DEFAULT_SILENT_DETECTOR = {"kind": "rule", "name": "silent_sensor", "version": "1"}
DEFAULT_AREA_DETECTOR = {"kind": "rule", "name": "area_burst", "version": "1"}

# Hard limits per sensor kind for impetus.detect.thresholds (an alert when value > threshold).
# Readings are hourly, whereas several of the bases below are 24-hour or 8-hour averages:
# an hourly reading above them is a screening trigger for the operator, not a breach.
DEFAULT_KIND_THRESHOLDS = {
    # US EPA AQI (PM2.5 breakpoints revised February 2024): "Unhealthy" starts at 55.5 ug/m3 (24-h).
    "pm2_5": {"threshold": 55.4, "unit": "ug/m3"},
    # US EPA AQI: PM10 "Unhealthy" starts at 255 ug/m3 (24-h). (NZ NES for Air Quality: 50 ug/m3, 24-h.)
    "pm10": {"threshold": 254.0, "unit": "ug/m3"},
    # US EPA AQI: NO2 "Unhealthy" starts at 361 ppb (1-h); 1 ppb NO2 = 1.88 ug/m3 at 25 C.
    # (The NZ NES and EU 1-hour limit, 200 ug/m3 = 106 ppb, is the stricter regulatory line.)
    "no2": {"threshold": 360.0, "unit": "ppb"},
    # US EPA AQI: O3 "Unhealthy" starts at 165 ppb on the 1-hour table; 1 ppb O3 = 1.96 ug/m3 at 25 C.
    "o3": {"threshold": 164.0, "unit": "ppb"},
    # Hong Kong EPD Indoor Air Quality Objectives for offices and public places (2003 guidance notes),
    # "Good Class": total bacteria count 1,000 CFU/m3 (8-h average). Outdoor urban air is typically
    # in the hundreds of CFU/m3, so 1,000 is unusual outdoors too.
    "airborne_bacteria": {"threshold": 1000.0, "unit": "CFU/m3"},
    # WHO Guidelines for Community Noise (1999), public addresses indoors and outdoors:
    # 85 dB LAeq over 1 h (hearing impairment).
    "noise_db": {"threshold": 85.0, "unit": "dB(A)"},
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MINUTE_MS = 60_000
# Evaluation runs the detector without a clock: the alert's ``time`` is irrelevant there.
_EVALUATION_DETECTED_AT = _EPOCH


# --------------------------------------------------------------------------- time and rules

def event_ms(moment: str | int | datetime) -> int:
    """Epoch milliseconds of an ISO 8601 timestamp with offset (or of a datetime; ints pass through)."""
    if isinstance(moment, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(moment, int):
        return moment
    if isinstance(moment, str):
        moment = parse_time(moment)
    if moment.tzinfo is None:
        raise ValueError(f"time {moment!r} has no UTC offset")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso_from_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC (``...Z``) of epoch milliseconds."""
    return utc_iso(_EPOCH + timedelta(milliseconds=epoch_ms))


def hour_of_week(event_time: str | datetime, tz_name: str) -> int:
    """``weekday * 24 + hour`` (Monday 00:00 = 0, Sunday 23:00 = 167) on the local clock of ``tz_name``."""
    moment = parse_time(event_time) if isinstance(event_time, str) else event_time
    local = moment.astimezone(ZoneInfo(tz_name))
    return local.weekday() * 24 + local.hour


def rule_params(kind: str, params: dict | None = None) -> dict:
    """The params of a rule of ``kind`` with defaults filled in, checked and typed like the defaults.

    Raises ValueError for an unknown kind or param name, a wrong type or a non-positive number,
    so that a bad rule on the ``rules`` topic is rejected instead of silently misbehaving.
    """
    given = dict(params or {})
    try:
        checked = _checked_params(kind, tuple(sorted(given.items())))
    except TypeError:  # a value that cannot be a cache key (a list, a dict): checked, and refused, below
        checked = _check_params(kind, given)
    return dict(checked)


@lru_cache(maxsize=4096)
def _checked_params(kind: str, given: tuple) -> tuple:
    # detectors judge every event with the params of one of a few rules: check each set once, not per event
    return _check_params(kind, dict(given))


def _check_params(kind: str, given: dict) -> tuple:
    if kind not in RULE_KINDS:
        raise ValueError(f"unknown rule kind {kind!r} (known: {', '.join(sorted(RULE_KINDS))})")
    spec = RULE_KINDS[kind]["params"]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ValueError(f"rule kind {kind!r} has no param {', '.join(unknown)} (known: {', '.join(spec)})")
    merged = {}
    for name, (default, _meaning) in spec.items():
        value = given.get(name)
        if value is None:
            merged[name] = default
            continue
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"{kind}.{name} must be a string, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{kind}.{name} must be a number, got {value!r}")
            if isinstance(default, int):
                if value != int(value):
                    raise ValueError(f"{kind}.{name} must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if value < 0 or (value == 0 and name not in _MAY_BE_ZERO):
                raise ValueError(f"{kind}.{name} must be positive, got {value!r}")
        merged[name] = value
    return tuple(merged.items())


def rule_detector(rule: dict) -> dict:
    """The alert ``detector`` of a ``rules`` document: its id and revision."""
    return {"kind": "rule", "name": rule["rule_id"], "version": rule["updated_at"]}


# --------------------------------------------------------------------------- baseline

def _readings_frame(data, timezones: dict[str, str]):
    """(tenant, sensor_id, kind, value, local_date, hour_of_week) from either input shape."""
    import pandas as pd

    if isinstance(data, pd.DataFrame) and "address" in data.columns:
        # the long table of impetus.replay.sensors.load_counts
        frame = pd.DataFrame({
            "tenant": auckland.TENANT,
            "sensor_id": data["address"].map(auckland.sensor_id),
            "kind": "pedestrian_count",
            "value": data["value"].astype(float),
            "event_time": data["event_time"],
        })
    elif isinstance(data, pd.DataFrame):
        frame = data[["tenant", "sensor_id", "kind", "value", "event_time"]].copy()
    else:
        frame = pd.DataFrame.from_records(
            [(r["tenant"], r["sensor_id"], r["kind"], float(r["value"]), r["event_time"]) for r in data],
            columns=["tenant", "sensor_id", "kind", "value", "event_time"])
    if not pd.api.types.is_datetime64_any_dtype(frame["event_time"]) or frame["event_time"].dt.tz is None:
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    frame["local_date"] = ""
    frame["hour_of_week"] = 0
    for tenant in frame["tenant"].unique():
        if tenant not in timezones:
            raise ValueError(f"no time zone for tenant {tenant!r}: pass timezones={{{tenant!r}: 'Area/City'}}")
        rows = frame["tenant"] == tenant
        local = frame.loc[rows, "event_time"].dt.tz_convert(timezones[tenant])
        frame.loc[rows, "local_date"] = local.dt.strftime("%Y-%m-%d")
        frame.loc[rows, "hour_of_week"] = local.dt.dayofweek * 24 + local.dt.hour
    return frame


def baseline_version(baseline: dict) -> str:
    """Short content hash: equal baselines get equal versions, any change a new one."""
    body = {key: value for key, value in baseline.items() if key != "version"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def build_baseline(data, *, start: str | None = None, end: str | None = None,
                   min_samples: int = DEFAULT_MIN_SAMPLES, mad_floor_fraction: float = DEFAULT_MAD_FLOOR_FRACTION,
                   mad_floor_absolute: float = DEFAULT_MAD_FLOOR_ABSOLUTE, timezones: dict[str, str] | None = None,
                   created_from: str = DEFAULT_CREATED_FROM) -> dict:
    """Median, floored scaled MAD and sample count per (tenant, sensor, kind, local hour of week).

    ``data`` is the table of :func:`impetus.replay.sensors.load_counts`, a DataFrame with
    columns tenant, sensor_id, kind, value, event_time, or an iterable of ``sensors.readings``
    documents. ``start``/``end`` (local dates, end exclusive) restrict the training window;
    without them the window is the data's first and last local date. Cells with fewer than
    ``min_samples`` readings, or whose median is zero (a counter out of service), are None.
    """
    timezones = dict(TIMEZONES if timezones is None else timezones)
    frame = _readings_frame(data, timezones)
    if start:
        frame = frame[frame["local_date"] >= start]
    if end:
        frame = frame[frame["local_date"] < end]
    if frame.empty:
        raise ValueError(f"no readings in the training window {start or '-'} .. {end or '-'}")
    keys = ["tenant", "sensor_id", "kind", "hour_of_week"]
    grouped = frame.groupby(keys, sort=True)["value"]
    medians = grouped.transform("median")
    frame = frame.assign(deviation=(frame["value"] - medians).abs())
    cells = frame.groupby(keys, sort=True).agg(median=("value", "median"), mad=("deviation", "median"),
                                               count=("value", "size")).reset_index()

    series: dict = {}
    for row in cells.itertuples(index=False):
        hours = series.setdefault(row.tenant, {}).setdefault(row.sensor_id, {}).setdefault(
            row.kind, [None] * HOURS_PER_WEEK)
        # A usual count of zero is a counter out of service, not history (107 Quay Street reported zeros
        # through 2019): such a cell cannot judge anything, so it is left without a baseline.
        if row.count < min_samples or row.median <= 0:
            continue
        mad = max(row.mad * MAD_SCALE, mad_floor_fraction * abs(row.median), mad_floor_absolute)
        hours[int(row.hour_of_week)] = [round(float(row.median), 3), round(float(mad), 3), int(row.count)]
    used_tenants = sorted(series)
    baseline = {
        "name": BASELINE_NAME,
        "version": "",
        "created_from": created_from,
        "training_window": {"start": start or frame["local_date"].min(),
                            "end": end or _next_day(frame["local_date"].max())},
        "timezones": {tenant: timezones[tenant] for tenant in used_tenants},
        "min_samples": int(min_samples),
        "mad_scale": MAD_SCALE,
        "mad_floor": {"fraction": float(mad_floor_fraction), "absolute": float(mad_floor_absolute)},
        "samples": int(len(frame)),
        "series": {tenant: series[tenant] for tenant in used_tenants},
    }
    baseline["version"] = baseline_version(baseline)
    return baseline


def _next_day(local_date: str, days: int = 1) -> str:
    return (datetime.strptime(local_date, "%Y-%m-%d") + timedelta(days=days)).strftime("%Y-%m-%d")


def _monday_of(local_date: str) -> str:
    day = datetime.strptime(local_date, "%Y-%m-%d")
    return (day - timedelta(days=day.weekday())).strftime("%Y-%m-%d")


def save_baseline(path: str | Path, baseline: dict) -> Path:
    """Write the baseline as compact JSON (about 0.1 MB for Auckland's 19 counters); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")
    return path


def load_baseline(path: str | Path) -> dict:
    """Read a baseline written by :func:`save_baseline`; ValueError if it is not one or was altered."""
    path = Path(path)
    baseline = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(baseline, dict) or baseline.get("name") != BASELINE_NAME:
        raise ValueError(f"{path} is not an {BASELINE_NAME} file")
    if baseline.get("version") != baseline_version(baseline):
        raise ValueError(f"{path}: content does not match its version {baseline.get('version')!r} "
                         f"(edited by hand?); rebuild it with models/urban_baseline/build.py")
    return baseline


def baseline_cell(baseline: dict, tenant: str, sensor_id: str, kind: str, how: int) -> list | None:
    """``[median, mad, count]`` for one hour of week, or None when the baseline cannot judge it."""
    hours = baseline["series"].get(tenant, {}).get(sensor_id, {}).get(kind)
    return hours[how] if hours else None


# --------------------------------------------------------------------------- urban anomalies

def score_reading(reading: dict, baseline: dict) -> dict | None:
    """Where a reading stands against its baseline cell, or None when there is no cell for it."""
    tz_name = baseline["timezones"].get(reading["tenant"])
    if tz_name is None:
        return None
    how = hour_of_week(reading["event_time"], tz_name)
    cell = baseline_cell(baseline, reading["tenant"], reading["sensor_id"], reading["kind"], how)
    if cell is None:
        return None
    median, mad, count = cell
    deviation = reading["value"] - median
    return {"hour_of_week": how, "median": median, "mad": mad, "samples": count,
            "deviation": deviation, "z": deviation / mad}


def _anomaly_countermeasure(value: float, direction: str) -> str:
    if direction == "above":
        return ("Check the area's cameras for a crowd build-up, event or incident; "
                "dispatch a patrol if the crowd is unsafe.")
    if value == 0:
        return ("A zero count where people are usually counted is more often a counter fault than an empty street: "
                "check the sensor (power, connectivity, obstruction) and confirm on the area's cameras.")
    return ("Check the area's cameras for a closure, obstruction or incident keeping people away; "
            "confirm with traffic and event management.")


def urban_anomaly_alert(reading: dict, baseline: dict, params: dict | None = None,
                        detected_at: datetime | None = None) -> dict | None:
    """The ``urban_anomaly`` alert for one valid ``sensors.readings`` document, or None when it is usual
    (or the baseline has no cell for it). ``params`` are those of an ``urban_anomaly`` rule."""
    params = rule_params("urban_anomaly", params)
    if params["sensor_kind"] not in ("*", reading["kind"]):
        return None
    score = score_reading(reading, baseline)
    if score is None:
        return None
    z, deviation = score["z"], score["deviation"]
    direction = "above" if deviation > 0 else "below"
    k = params["k"] if direction == "above" else params["k_below"]
    value, median, mad = reading["value"], score["median"], score["mad"]
    zero_where_busy = value == 0 and 0 < params["zero_when_expected"] <= median
    if not zero_where_busy and (abs(z) < k or abs(deviation) < params["min_abs"]):
        return None
    unit = reading.get("unit", "")
    how = score["hour_of_week"]
    usual = f"{median:g} {unit}".strip()
    return make_alert(
        tenant=reading["tenant"],
        category="urban_anomaly",
        # a stuck counter at a busy hour may stay below 2k: it is a fault first, so medium suits it
        severity="high" if abs(z) >= 2 * k else "medium",
        title=f"{reading['kind']} {value:g} {direction} usual {median:g} at {reading['sensor_id']} (z {z:+.1f})",
        detector={"kind": URBAN_DETECTOR_KIND, "name": BASELINE_NAME, "version": baseline["version"]},
        entity={"type": "sensor", "id": reading["sensor_id"]},
        event_time=reading["event_time"],
        location=reading.get("location"),
        message=(f"{WEEKDAYS[how // 24]} {how % 24:02d}:00 local time: usually {usual} "
                 f"(robust spread {mad:g}, {score['samples']} weeks of history), observed {value:g}."),
        evidence={"kind": reading["kind"], "value": value, "expected": median, "mad": mad, "z": round(z, 2),
                  "deviation": round(deviation, 3), "hour_of_week": how, "direction": direction, "unit": unit,
                  "trigger": "robust_z" if abs(z) >= k and abs(deviation) >= params["min_abs"] else "zero_count",
                  "samples": score["samples"], "baseline_version": baseline["version"]},
        countermeasure=_anomaly_countermeasure(value, direction),
        detected_at=detected_at,
    )


# --------------------------------------------------------------------------- silent sensors

def silent_sensor_deadlines(last_event_ms: int, params: dict | None = None) -> list[int]:
    """Event times (epoch ms) at which a sensor last heard of at ``last_event_ms`` counts as silent:
    the Flink side registers one event-time timer at each."""
    params = rule_params("silent_sensor", params)
    deadlines = [last_event_ms + params["after_minutes"] * _MINUTE_MS]
    if params["escalate_after_minutes"] > params["after_minutes"]:
        deadlines.append(last_event_ms + params["escalate_after_minutes"] * _MINUTE_MS)
    return deadlines


def silent_sensor_alert(tenant: str, sensor_id: str, kind: str, last_event_time: str | int,
                        deadline_event_time: str | int, location: dict | None, params: dict | None = None,
                        detected_at: datetime | None = None, detector: dict | None = None) -> dict:
    """The ``silent_sensor`` alert for a sensor whose last reading was at ``last_event_time`` and that is
    still silent at ``deadline_event_time`` (ISO 8601 strings or epoch ms). The deadline is the alert's
    event time, so each deadline of an outage gives one stable alert id. ``detector`` defaults to
    :data:`DEFAULT_SILENT_DETECTOR`; pass :func:`rule_detector` of the rule in force."""
    params = rule_params("silent_sensor", params)
    last_ms, deadline_ms = event_ms(last_event_time), event_ms(deadline_event_time)
    if deadline_ms <= last_ms:
        raise ValueError(f"deadline {iso_from_ms(deadline_ms)} is not after the last reading {iso_from_ms(last_ms)}")
    silent_minutes = (deadline_ms - last_ms) / _MINUTE_MS
    severity = "medium" if silent_minutes >= params["escalate_after_minutes"] else "low"
    return make_alert(
        tenant=tenant,
        category="silent_sensor",
        severity=severity,
        title=f"{sensor_id} silent for {silent_minutes:g} min (no {kind} reading since {iso_from_ms(last_ms)})",
        detector=dict(detector or DEFAULT_SILENT_DETECTOR),
        entity={"type": "sensor", "id": sensor_id},
        event_time=iso_from_ms(deadline_ms),
        location=location,
        evidence={"kind": kind, "last_event_time": iso_from_ms(last_ms), "silent_minutes": silent_minutes,
                  "after_minutes": params["after_minutes"],
                  "expected_interval_minutes": params["expected_interval_minutes"]},
        countermeasure=("Check the device's power supply and network connectivity (and its gateway); "
                        "until it reports again this spot is missing from the operations picture."),
        detected_at=detected_at,
    )


# --------------------------------------------------------------------------- area bursts

def area_burst_step(state: dict | None, anomaly_alert: dict, params: dict | None = None,
                    detected_at: datetime | None = None, detector: dict | None = None) -> tuple[dict | None, list]:
    """Feed one ``urban_anomaly`` alert of an area; returns ``(new_state, alerts)``.

    State (plain, picklable): ``{"anomalies": [[event_ms, sensor_id, abs_z], ...] sorted,
    "burst_until": event_ms | None, "window_ms": int}``; the input state is never modified.
    Alerts that are not ``urban_anomaly`` or have no ``location.area`` leave the state as it
    is. An anomaly a whole window older than the newest one seen is too late to count, and a
    re-delivered one (same sensor, same event time) counts once. The ``area_anomaly`` alert's
    event time is the end of the earliest window holding ``min_sensors`` distinct sensors, so
    for input in event-time order it does not depend on the arrival order of anomalies of the
    same hour. ``detector`` defaults to :data:`DEFAULT_AREA_DETECTOR`.
    """
    params = rule_params("area_burst", params)
    area = (anomaly_alert.get("location") or {}).get("area")
    if anomaly_alert.get("category") != "urban_anomaly" or not area:
        return state, []
    window_ms = params["window_minutes"] * _MINUTE_MS
    moment = event_ms(anomaly_alert["event_time"])
    sensor = anomaly_alert["entity"]["id"]
    abs_z = abs(float((anomaly_alert.get("evidence") or {}).get("z", 0.0)))
    anomalies = [list(item) for item in (state or {}).get("anomalies", [])]
    burst_until = (state or {}).get("burst_until")

    newest = max([moment] + [item[0] for item in anomalies])
    if moment <= newest - window_ms or any(item[0] == moment and item[1] == sensor for item in anomalies):
        return state, []
    anomalies.append([moment, sensor, abs_z])
    anomalies.sort(key=lambda item: (item[0], item[1]))
    anomalies = [item for item in anomalies if item[0] > newest - window_ms]

    if burst_until is not None and moment < burst_until:
        # the ongoing burst goes on: no new alert until a whole window is quiet
        return {"anomalies": anomalies, "burst_until": max(burst_until, moment + window_ms),
                "window_ms": window_ms}, []

    for end in sorted({item[0] for item in anomalies}):
        inside = [item for item in anomalies if end - window_ms < item[0] <= end]
        sensors = sorted({item[1] for item in inside})
        if len(sensors) < params["min_sensors"]:
            continue
        alert = make_alert(
            tenant=anomaly_alert["tenant"],
            category="area_anomaly",
            # several independent counters agreeing is stronger evidence than any one of them
            severity="high",
            title=f"Unusual people flow at {len(sensors)} counters in {area}",
            detector=dict(detector or DEFAULT_AREA_DETECTOR),
            entity={"type": "area", "id": area},
            event_time=iso_from_ms(end),
            location={"area": area},
            evidence={"sensors": ",".join(sensors), "sensor_count": len(sensors), "anomalies": len(inside),
                      "window_minutes": params["window_minutes"], "min_sensors": params["min_sensors"],
                      "first_event_time": iso_from_ms(inside[0][0]),
                      "max_abs_z": round(max(item[2] for item in inside), 2)},
            countermeasure=("Several counters in the area deviate together, so one faulty sensor is unlikely: "
                            "check the area's cameras and dispatch a patrol or coordinate with event and "
                            "traffic management."),
            detected_at=detected_at,
            count=len(inside),
        )
        return {"anomalies": anomalies, "burst_until": anomalies[-1][0] + window_ms, "window_ms": window_ms}, [alert]
    return {"anomalies": anomalies, "burst_until": None, "window_ms": window_ms}, []


def expires_at(state: dict | None) -> int | None:
    """Event time (epoch ms) from which ``state`` behaves like no state: the caller's timer clears it then."""
    if not state or not state.get("anomalies"):
        return None
    return max(state["anomalies"][-1][0] + state["window_ms"], state.get("burst_until") or 0)


def run_area_bursts(anomaly_alerts: Iterable[dict], params: dict | None = None,
                    detected_at: datetime | None = None, detector: dict | None = None) -> list[dict]:
    """Batch reference of the keyed stream: :func:`area_burst_step` per (tenant, area) over alerts
    taken in event-time order (ties by sensor id, as a replay would). Used by evaluation and tests."""
    ordered = sorted(anomaly_alerts, key=lambda alert: (event_ms(alert["event_time"]), alert["entity"]["id"]))
    states: dict[tuple, dict | None] = {}
    raised = []
    for alert in ordered:
        key = (alert["tenant"], (alert.get("location") or {}).get("area"))
        states[key], alerts = area_burst_step(states.get(key), alert, params, detected_at, detector)
        raised.extend(alerts)
    return raised


def replay_silent_sensors(readings: Iterable[dict], params: dict | None = None,
                          detected_at: datetime | None = None, detector: dict | None = None) -> list[dict]:
    """Batch reference of the silent-sensor contract over readings in event-time order.

    Mirrors the Flink side with a watermark equal to the newest event time seen minus 1 ms:
    a deadline fires once a reading (of any sensor) later than it arrives, provided the sensor
    has not reported since; nothing fires at the end of the input (an unbounded stream never
    gets there). Used by evaluation and tests, and to check the streaming job against.
    """
    last_seen: dict[tuple, tuple[int, dict | None]] = {}
    pending: list[tuple[int, tuple, int]] = []  # (deadline, series key, last event ms it was set for)
    raised = []
    for reading in readings:
        moment = event_ms(reading["event_time"])
        due = sorted(item for item in pending if item[0] < moment)
        pending = [item for item in pending if item[0] >= moment]
        for deadline, key, set_for in due:
            if last_seen[key][0] == set_for:
                tenant, sensor, kind = key
                raised.append(silent_sensor_alert(tenant, sensor, kind, set_for, deadline, last_seen[key][1],
                                                  params, detected_at, detector))
        key = (reading["tenant"], reading["sensor_id"], reading["kind"])
        if key in last_seen and last_seen[key][0] >= moment:
            continue  # a late reading does not move the last event time back
        last_seen[key] = (moment, reading.get("location"))
        pending.extend((deadline, key, moment) for deadline in silent_sensor_deadlines(moment, params))
    return raised


# --------------------------------------------------------------------------- evaluation

INJECTION_KINDS = ("spike", "drop", "stuck_zero")


def inject_anomalies(readings: list[dict], seed: int, rate: float = 0.01, kinds: tuple[str, ...] = INJECTION_KINDS,
                     *, spike_factor: float = 2.0, spike_min: float = 500.0, drop_fraction: float = 0.9,
                     drop_min_value: float = 300.0, stuck_hours: int = 3) -> tuple[list[dict], list[dict]]:
    """Copies of ``readings`` with labelled synthetic anomalies, and their ground truth.

    Synthetic on purpose: real readings are modified at seeded random places (the same seed
    and input give identical output). Each reading starts an anomaly with probability
    ``rate``, of a kind drawn from ``kinds``:

    * ``spike``: value + max(spike_factor x value, spike_min) (a crowd: +200 % or at least
      +500 persons/h by default);
    * ``drop``: value x (1 - drop_fraction), only where the value is at least
      ``drop_min_value`` (a closure keeping 90 % of people away; a drop at a quiet hour
      is indistinguishable from noise);
    * ``stuck_zero``: 0 for up to ``stuck_hours`` consecutive readings of the sensor, starting
      where the value is at least ``drop_min_value`` (a counter fault).

    Returns ``(readings, truth)``; ``truth`` lists ``{"sensor_id", "event_time", "kind",
    "original", "value"}`` per modified reading, in reading order. Labels never go inside
    the documents, which stay valid ``sensors.readings``.
    """
    unknown = sorted(set(kinds) - set(INJECTION_KINDS))
    if unknown:
        raise ValueError(f"unknown injection kind {', '.join(unknown)} (known: {', '.join(INJECTION_KINDS)})")
    rng = random.Random(seed)
    copies = [{**reading, **({"location": dict(reading["location"])} if "location" in reading else {})}
              for reading in readings]
    # positions of each series in reading order, so a stuck counter stays stuck on its next readings
    series_positions: dict[tuple, list[int]] = {}
    for index, reading in enumerate(copies):
        series_positions.setdefault((reading["tenant"], reading["sensor_id"], reading["kind"]), []).append(index)
    place_in_series = {index: (key, place) for key, positions in series_positions.items()
                       for place, index in enumerate(positions)}
    modified: dict[int, str] = {}

    for index, reading in enumerate(copies):
        # draw for every reading, so one kind's eligibility does not shift the others' positions
        start, kind = rng.random() < rate, rng.choice(kinds)
        if not start or index in modified:
            continue
        value = reading["value"]
        if kind == "spike":
            reading["value"] = float(round(value + max(spike_factor * value, spike_min)))
            modified[index] = kind
        elif value >= drop_min_value and kind == "drop":
            reading["value"] = float(round(value * (1.0 - drop_fraction)))
            modified[index] = kind
        elif value >= drop_min_value and kind == "stuck_zero":
            key, place = place_in_series[index]
            for position in series_positions[key][place:place + stuck_hours]:
                if position not in modified and copies[position]["value"] != 0:
                    copies[position]["value"] = 0.0
                    modified[position] = kind

    truth = [{"sensor_id": copies[index]["sensor_id"], "event_time": copies[index]["event_time"],
              "kind": modified[index], "original": readings[index]["value"], "value": copies[index]["value"]}
             for index in sorted(modified)]
    return copies, truth


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def evaluate(readings: Iterable[dict], baseline: dict, params: dict | None, truth: list[dict]) -> dict:
    """Precision, recall (overall and per injected kind) and false alerts per sensor-day.

    A truth record is found when its reading (sensor_id, event time) raised an alert. Alerts on
    readings not in ``truth`` count as false positives, although on real data some are genuine
    events (a holiday, a street closure): precision here is a lower bound. ``alerts_per_sensor_day``
    is the alert rate on the unmodified, judged readings (24 readings = one sensor-day).
    """
    labels = {(record["sensor_id"], event_ms(record["event_time"])): record["kind"] for record in truth}
    found: dict[str, int] = {}
    judged = readings_total = alerts = true_positives = clean_judged = false_positives = 0
    for reading in readings:
        readings_total += 1
        if score_reading(reading, baseline) is None:
            continue
        judged += 1
        label = labels.get((reading["sensor_id"], event_ms(reading["event_time"])))
        alert = urban_anomaly_alert(reading, baseline, params, detected_at=_EVALUATION_DETECTED_AT)
        clean_judged += label is None
        if alert is None:
            continue
        alerts += 1
        if label is None:
            false_positives += 1
        else:
            true_positives += 1
            found[label] = found.get(label, 0) + 1
    injected: dict[str, int] = {}
    for kind in labels.values():
        injected[kind] = injected.get(kind, 0) + 1
    return {
        "readings": readings_total,
        "judged": judged,
        "injected": len(labels),
        "injected_by_kind": dict(sorted(injected.items())),
        "alerts": alerts,
        "true_positives": true_positives,
        "false_positives": false_positives,
        "precision": _ratio(true_positives, alerts) if labels else None,
        "recall": _ratio(true_positives, len(labels)),
        "recall_by_kind": {kind: _ratio(found.get(kind, 0), count) for kind, count in sorted(injected.items())},
        "clean_sensor_days": round(clean_judged / 24, 2),
        "alerts_per_sensor_day": _ratio(false_positives, clean_judged / 24),
    }


# Evaluation periods on the Auckland counts (local dates, end exclusive), outside the default training window.
EVALUATION_PERIODS = {
    # nine ordinary weeks after the summer holidays and before the COVID-19 alert levels; real events stay in
    # (Auckland Anniversary weekend, Waitangi Day, Round the Bays), so not every "false" alert is false
    "normal": ("2020-01-13", "2020-03-16"),
    # COVID-19 Alert Level 4, from 23:59 on 25 March to 23:59 on 27 April 2020: the streets emptied
    "lockdown": ("2020-03-26", "2020-04-28"),
    # the counter at 150 K Road went quiet twice in late October 2023 (7 hours, then 5.5 days)
    "silent": ("2023-10-20", "2023-11-05"),
}
# Alternative thresholds reported next to the defaults: (k, k_below).
THRESHOLD_SWEEP = ((4.0, 3.0), (5.0, 4.0), (6.0, 3.0), (6.0, 4.0), (6.0, 5.0), (8.0, 4.0), (8.0, 6.0))
# Hours with at least this many counters alerting together are counted as city-wide events.
CITYWIDE_SENSORS = 3


def _alerts_of(readings: list[dict], baseline: dict, params: dict | None) -> list[dict]:
    alerts = (urban_anomaly_alert(reading, baseline, params, detected_at=_EVALUATION_DETECTED_AT)
              for reading in readings)
    return [alert for alert in alerts if alert is not None]


def evaluation_report(baseline: dict, params: dict | None = None, *, seed: int = 7, rate: float = 0.01,
                      periods: dict[str, tuple[str, str]] | None = None) -> dict:
    """The figures of the model card, measured on real Auckland counts the baseline was not trained on.

    ``normal``: false-alert rate (overall and per week) and recall on anomalies injected with
    ``seed`` / ``rate``, for the given params and for :data:`THRESHOLD_SWEEP`; share of alerts in
    city-wide hours; area alerts. ``lockdown``: how much of the COVID-19 lockdown is flagged.
    ``silent``: the silent-sensor alerts of a period with real outages. Loads the counts itself.
    """
    periods = periods or EVALUATION_PERIODS
    start, end = min(periods["normal"][0], periods["lockdown"][0]), max(periods["normal"][1], periods["lockdown"][1])
    documents = list(auckland.readings(start, end))
    # readings carry local time, so the first ten characters are the local date
    normal = [d for d in documents if periods["normal"][0] <= d["event_time"][:10] < periods["normal"][1]]
    lockdown = [d for d in documents if periods["lockdown"][0] <= d["event_time"][:10] < periods["lockdown"][1]]
    params = rule_params("urban_anomaly", params)

    injected, truth = inject_anomalies(normal, seed, rate)
    # moderate crowds too: counts doubled (at least +300/h)
    doubled, doubled_truth = inject_anomalies(normal, seed, rate, kinds=("spike",), spike_factor=1.0, spike_min=300.0)
    sweep = []
    for k, k_below in THRESHOLD_SWEEP:
        variant = {**params, "k": k, "k_below": k_below}
        result = evaluate(injected, baseline, variant, truth)
        sweep.append({"k": k, "k_below": k_below, "alerts_per_sensor_day": result["alerts_per_sensor_day"],
                      "precision": result["precision"],
                      **{f"recall_{kind}": value for kind, value in result["recall_by_kind"].items()},
                      "recall_spike_doubling": evaluate(doubled, baseline, variant, doubled_truth)["recall"]})
    clean_alerts = _alerts_of(normal, baseline, params)
    per_hour: dict[str, int] = {}
    for alert in clean_alerts:
        per_hour[alert["event_time"]] = per_hour.get(alert["event_time"], 0) + 1
    citywide = sum(count for count in per_hour.values() if count >= CITYWIDE_SENSORS)
    weekly = {}
    for monday in sorted({_monday_of(d["event_time"][:10]) for d in normal}):
        days = [d for d in normal if monday <= d["event_time"][:10] < _next_day(monday, 7)]
        weekly[monday] = evaluate(days, baseline, params, [])["alerts_per_sensor_day"]
    silent = replay_silent_sensors(auckland.readings(*periods["silent"]), detected_at=_EVALUATION_DETECTED_AT)

    lockdown_alerts = _alerts_of(lockdown, baseline, params)
    daytime = [d for d in lockdown if 8 <= int(d["event_time"][11:13]) < 20]
    daytime_flagged = len(_alerts_of(daytime, baseline, params))
    return {
        "params": params,
        "normal": {
            "period": list(periods["normal"]),
            "clean": evaluate(normal, baseline, params, []),
            "injected": {"seed": seed, "rate": rate, **evaluate(injected, baseline, params, truth)},
            "citywide_alert_share": _ratio(citywide, len(clean_alerts)),
            "weekly_alerts_per_sensor_day": weekly,
            "area_alerts": len(run_area_bursts(clean_alerts, detected_at=_EVALUATION_DETECTED_AT)),
            "sweep": sweep,
        },
        "lockdown": {
            "period": list(periods["lockdown"]),
            "readings": len(lockdown),
            "alerts": len(lockdown_alerts),
            "below_share": _ratio(sum(a["evidence"]["direction"] == "below" for a in lockdown_alerts),
                                  len(lockdown_alerts)),
            "flagged_share": _ratio(len(lockdown_alerts), len(lockdown)),
            "flagged_share_08_20h": _ratio(daytime_flagged, len(daytime)),
            "area_alerts": len(run_area_bursts(lockdown_alerts, detected_at=_EVALUATION_DETECTED_AT)),
        },
        "silent": {
            "period": list(periods["silent"]),
            "alerts": [{"sensor_id": a["entity"]["id"], "event_time": a["event_time"], "severity": a["severity"],
                        "last_event_time": a["evidence"]["last_event_time"]} for a in silent],
        },
    }
