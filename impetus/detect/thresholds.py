"""Hard thresholds per sensor kind: the simplest urban-safety rule.

A reading whose value exceeds the threshold configured for its kind
(``Settings.sensor_thresholds``, e.g. pedestrians per hour or PM2.5) raises a
``threshold`` alert. Called by jobs/streaming/sensor_thresholds.py.
"""

from __future__ import annotations

from datetime import datetime

from impetus.alerts import make_alert

RULE = {"kind": "rule", "name": "sensor_threshold", "version": "1"}


def threshold_severity(value: float, threshold: float) -> str:
    """``high`` at 1.5x the threshold or more, otherwise ``medium``."""
    if threshold > 0 and value >= 1.5 * threshold:
        return "high"
    return "medium"


def threshold_alert(reading: dict, thresholds: dict[str, float], detected_at: datetime | None = None) -> dict | None:
    """The alert for one valid ``sensors.readings`` document, or None when it is within bounds."""
    threshold = thresholds.get(reading["kind"])
    value = reading["value"]
    if threshold is None or value <= threshold:
        return None
    unit = reading.get("unit", "")
    return make_alert(
        tenant=reading["tenant"],
        category="threshold",
        severity=threshold_severity(value, threshold),
        title=f"{reading['kind']} {value:g} above {threshold:g} at {reading['sensor_id']}",
        detector=RULE,
        entity={"type": "sensor", "id": reading["sensor_id"]},
        event_time=reading["event_time"],
        location=reading.get("location"),
        evidence={"kind": reading["kind"], "value": value, "threshold": threshold, "unit": unit},
        countermeasure="Check the camera feed of the area and dispatch a patrol if the crowd is unsafe.",
        detected_at=detected_at,
    )
