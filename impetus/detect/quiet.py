"""Where the sensor watch would certainly raise nothing: the quiet spec the urban job's JVM gate applies.

Most readings are usual. Handing each of them to Python only to find that costs the urban job most of its time
(BENCHMARKS.md, "What handing records to Python costs in PyFlink"), so the job puts a gate in the JVM
(``io.impetus.flink.QuietGate``) in front of :class:`impetus.detect.streams.SensorWatch`: it stops the readings
this spec calls quiet and keeps each sensor's silence clock, and Python judges everything else. The spec is
compiled here, from the same rules, thresholds and baseline the watch judges by, whenever they change, so the
rules stay in one place (Python) and the gate only compares numbers.

Spec (JSON)::

    {"tenants": {"<tenant>": {
        "thresholds": {"<kind>": limit, ...},          # a reading at or above its kind's limit may alert
        "silence": [ms, ...],                          # silence deadlines after a reading (none: no silence rule)
        "anomaly": null | {"tz": "<zone>", "kind": "*" | "<kind>",
                           "bands": {"<sensor_id>": {"<kind>": [[lo, hi] | null, ...]}}}}}}   # 168 hours of the week

A reading is quiet when its value is below its kind's threshold and strictly inside ``(lo, hi)`` of its
sensor's band for its hour of the week (``null``: the baseline cannot judge that hour, so only the threshold
can alert; a sensor without bands likewise). Bands are drawn a hair inside the watch's own limits, so that a
value on an edge goes to Python, which decides it exactly. ``lo >= hi``: nothing is quiet there.
"""

from __future__ import annotations

import json
import math

from impetus.detect import thresholds, urban

# bands are drawn this much (relative) inside the watch's own limits: rounding never makes the gate stop a
# reading the watch would alert on
MARGIN = 1e-9


def band(cell, params: dict) -> list[float] | None:
    """``[lo, hi]``: the values strictly between are usual for a baseline cell ``[median, mad, samples]`` under
    the ``urban_anomaly`` params (:func:`impetus.detect.urban.urban_anomaly_alert`); None for no cell."""
    if cell is None:
        return None
    median, mad = float(cell[0]), float(cell[1])
    if not (math.isfinite(median) and math.isfinite(mad) and mad > 0):
        return [0.0, 0.0]  # nothing the gate can vouch for
    # usual above the median while z < k or the deviation < min_abs; below it likewise with k_below
    above = max(params["k"] * mad, params["min_abs"])
    below = max(params["k_below"] * mad, params["min_abs"])
    lo = median - below + MARGIN * (abs(median) + below + 1.0)
    hi = median + above - MARGIN * (abs(median) + above + 1.0)
    if 0 < params["zero_when_expected"] <= median and lo < 0.0 < hi:
        lo = 0.0  # a zero where people are usually counted alerts whatever its z-score
    return [lo, hi]


def tenant_spec(tenant: str, book, configured: dict[str, float], baseline: dict | None) -> dict:
    """One tenant's part of the spec, judged by ``book`` (:class:`impetus.rules.RuleBook`) as the watch judges."""
    limits, _ = thresholds.thresholds_for(tenant, book, configured)
    silence = book.single(tenant, "silent_sensor")
    spec = {"thresholds": {kind: float(limit) for kind, limit in limits.items()},
            "silence": urban.silent_sensor_deadlines(0, silence["params"]) if silence else [],
            "anomaly": None}
    rule = book.single(tenant, "urban_anomaly")
    zone = (baseline or {}).get("timezones", {}).get(tenant)
    if rule and baseline and zone:
        params = urban.rule_params("urban_anomaly", rule["params"])
        bands = {}
        for sensor, kinds in baseline["series"].get(tenant, {}).items():
            for kind, hours in kinds.items():
                if hours:
                    # nested, not joined: an id or kind holding the joining character could not collide
                    bands.setdefault(sensor, {})[kind] = [band(cell, params) for cell in hours]
        spec["anomaly"] = {"tz": zone, "kind": params["sensor_kind"], "bands": bands}
    return spec


def compile_spec(watch, book, tenants) -> str:
    """The spec (JSON text) for ``tenants`` under ``book`` and the thresholds and baseline of ``watch``
    (:class:`impetus.detect.streams.SensorWatch`)."""
    return json.dumps({"tenants": {tenant: tenant_spec(tenant, book, watch.configured, watch.baseline)
                                   for tenant in sorted(tenants)}},
                      separators=(",", ":"), sort_keys=True, allow_nan=False)


def is_quiet(spec: dict, reading: dict) -> bool:
    """The gate's verdict on one valid reading, in Python (for tests and the benchmark's plain loop): True when
    the spec calls it quiet."""
    tenant = spec["tenants"].get(reading["tenant"])
    if tenant is None:
        return False
    limit = tenant["thresholds"].get(reading["kind"])
    if limit is not None and not reading["value"] < limit:
        return False
    anomaly = tenant["anomaly"]
    if anomaly is None or anomaly["kind"] not in ("*", reading["kind"]):
        return True
    hours = anomaly["bands"].get(reading["sensor_id"], {}).get(reading["kind"])
    if hours is None:
        return True
    cell = hours[urban.hour_of_week(reading["event_time"], anomaly["tz"])]
    return cell is None or cell[0] < reading["value"] < cell[1]
