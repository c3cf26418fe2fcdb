"""Hard thresholds per sensor kind: the simplest urban-safety rule.

A reading whose value exceeds the threshold configured for its kind
(``Settings.sensor_thresholds``, e.g. pedestrians per hour or PM2.5) raises a
``threshold`` alert. Called by jobs/streaming/sensor_thresholds.py.
"""

from __future__ import annotations

from datetime import datetime

from impetus.alerts import make_alert

RULE = {"kind": "rule", "name": "sensor_threshold", "version": "1"}

RULE_KINDS = {
    "sensor_threshold": {
        "description": "hard upper limit for one sensor kind (overrides the configured sensor_thresholds)",
        "params": {"kind": (None, "sensor kind, e.g. pm2_5, airborne_bacteria, pedestrian_count"),
                   "threshold": (None, "alert when a reading is above this value")},
    },
}


def thresholds_for(tenant: str, book, configured: dict[str, float]) -> tuple[dict[str, float], dict[str, dict]]:
    """(thresholds, rule per kind) for ``tenant``: the configured ones, overridden per sensor kind by
    enabled ``sensor_threshold`` rules (a tenant's own rule wins over one for ``*``)."""
    thresholds = dict(configured)
    rules: dict[str, dict] = {}
    for rule in reversed(book.matching(tenant, "sensor_threshold")):  # `*` first, the tenant's own last
        params = rule["params"]
        if isinstance(params.get("kind"), str) and isinstance(params.get("threshold"), (int, float)):
            thresholds[params["kind"]] = float(params["threshold"])
            rules[params["kind"]] = rule
    return thresholds, rules


def threshold_severity(value: float, threshold: float) -> str:
    """``high`` at 1.5x the threshold or more, otherwise ``medium``."""
    if threshold > 0 and value >= 1.5 * threshold:
        return "high"
    return "medium"


def threshold_alert(reading: dict, thresholds: dict[str, float], detected_at: datetime | None = None,
                    detector: dict | None = None) -> dict | None:
    """The alert for one valid ``sensors.readings`` document, or None when it is within bounds.

    ``detector`` names the runtime rule that set the threshold; the configured thresholds
    are the built-in rule ``sensor_threshold``.
    """
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
        detector=detector or RULE,
        entity={"type": "sensor", "id": reading["sensor_id"]},
        event_time=reading["event_time"],
        location=reading.get("location"),
        evidence={"kind": reading["kind"], "value": value, "threshold": threshold, "unit": unit},
        countermeasure="Check the camera feed of the area and dispatch a patrol if the crowd is unsafe.",
        detected_at=detected_at,
    )
