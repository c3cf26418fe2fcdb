"""The quiet spec the urban job's JVM gate stops usual readings by (impetus.detect.quiet), against the sensor
watch's own verdicts."""

import json

from impetus.detect.quiet import band, compile_spec, is_quiet
from impetus.detect.streams import SensorWatch
from impetus.detect.urban import baseline_version
from impetus.rules import RuleBook, defaults_from, make_rule, rule_kinds

KINDS = ["urban_anomaly", "silent_sensor"]
DEFAULTS = {"k": 6.0, "k_below": 4.0, "min_abs": 50.0, "zero_when_expected": 100.0, "sensor_kind": "*"}


def baseline(cells):
    """A baseline for tenant oslo (clock UTC): sensor s1, every hour of the week the same cell."""
    doc = {"name": "urban_baseline", "timezones": {"oslo": "UTC"}, "training_window": ["2026-01-01", "2026-05-01"],
           "created_from": "test", "series": {"oslo": {"s1": {"pedestrian_count": [cells] * 168}}}}
    doc["version"] = baseline_version(doc)
    return doc


def reading(value, sensor="s1", tenant="oslo", kind="pedestrian_count"):
    return {"tenant": tenant, "sensor_id": sensor, "kind": kind, "value": value, "unit": "persons/h",
            "event_time": "2026-05-04T08:00:00Z", "location": {"area": "Torget"}}


def rules(*extra):
    return RuleBook({r["rule_id"]: r for r in extra}, defaults_from(rule_kinds(), KINDS))


def spec_of(watch, book, tenants=("oslo",)):
    return json.loads(compile_spec(watch, book, tenants))


def test_a_band_lies_just_inside_the_watchs_limits():
    # median 100, MAD 10: above, 6 MADs (60) beats min_abs 50; below, min_abs 50 beats 4 MADs (40)
    lo, hi = band([100.0, 10.0, 20], DEFAULTS)
    assert 50.0 < lo < 50.0 + 1e-6 and 160.0 - 1e-6 < hi < 160.0
    # a zero where at least 100 are usual alerts whatever its z-score: the band starts at 0, open
    assert band([150.0, 40.0, 20], DEFAULTS)[0] == 0.0
    assert band(None, DEFAULTS) is None
    assert band([100.0, 0.0, 20], DEFAULTS) == [0.0, 0.0]  # nothing quiet where no spread is known


def test_what_the_spec_calls_quiet_the_watch_raises_nothing_for():
    watch = SensorWatch({"pedestrian_count": 3000.0}, baseline([100.0, 10.0, 20]))
    book = rules()
    spec = spec_of(watch, book)
    values = [v / 4 for v in range(0, 1000)] + [50.0, 160.0, 49.999, 160.001, 2999.0, 3000.0, 3001.0]
    quiet = [v for v in values if is_quiet(spec, reading(v))]
    for value in quiet:
        assert watch.on_event(None, reading(value), book)[1] == [], value
    # and it calls quiet all the usual values, strictly between 50 and 160
    assert quiet == [v for v in values if 50.0 < v < 160.0]
    for value in (50.0, 160.0, 0.0, 3000.0):
        assert not is_quiet(spec, reading(value))


def test_the_spec_follows_the_rules():
    watch = SensorWatch({"pedestrian_count": 3000.0}, baseline([100.0, 10.0, 20]))
    spec = spec_of(watch, rules())["tenants"]["oslo"]
    assert spec["thresholds"] == {"pedestrian_count": 3000.0}
    assert spec["silence"] == [180 * 60_000, 720 * 60_000]
    assert spec["anomaly"]["tz"] == "UTC" and spec["anomaly"]["kind"] == "*"
    assert len(spec["anomaly"]["bands"]["s1"]["pedestrian_count"]) == 168

    changed = spec_of(watch, rules(
        make_rule("limit", "oslo", "sensor_threshold", {"kind": "pedestrian_count", "threshold": 120.0}),
        make_rule("default-silent_sensor", "*", "silent_sensor", {}, enabled=False),
        make_rule("pm", "oslo", "urban_anomaly", {"sensor_kind": "pm2_5"})))["tenants"]["oslo"]
    assert changed["thresholds"] == {"pedestrian_count": 120.0}
    assert changed["silence"] == []
    assert changed["anomaly"]["kind"] == "pm2_5"
    spec = {"tenants": {"oslo": changed}}
    assert is_quiet(spec, reading(119.0)) and not is_quiet(spec, reading(120.0))
    assert is_quiet(spec, reading(10.0))  # far from usual, but the anomaly rule judges pm2_5 only


def test_bands_are_kept_per_sensor_then_kind_so_that_ids_with_a_bar_never_share_one():
    doc = baseline([100.0, 10.0, 20])
    series = doc["series"]["oslo"]
    series["a|b"] = {"c": [[1000.0, 10.0, 20]] * 168}
    series["a"] = {"b|c": [[100.0, 10.0, 20]] * 168}
    spec = spec_of(SensorWatch({}, doc), rules())
    assert not is_quiet(spec, reading(100.0, sensor="a|b", kind="c"))  # 100 where 1000 is usual: may alert
    assert is_quiet(spec, reading(100.0, sensor="a", kind="b|c"))


def test_without_a_baseline_or_an_anomaly_rule_only_thresholds_count():
    watch = SensorWatch({"pedestrian_count": 3000.0}, None)
    spec = spec_of(watch, rules(), tenants=("oslo", "padova"))
    assert spec["tenants"]["padova"]["anomaly"] is None
    assert is_quiet(spec, reading(0.0)) and not is_quiet(spec, reading(3000.0))
    assert not is_quiet(spec, reading(10.0, tenant="bergen"))  # a tenant it does not know goes to Python


def test_a_gated_watch_keeps_no_state_and_raises_silence_from_the_gates_marker():
    watch = SensorWatch({"pedestrian_count": 3000.0}, None, gated=True)
    book = rules()
    state, alerts = watch.on_event(None, reading(3500.0), book)
    assert state is None and [a["category"] for a in alerts] == ["threshold"]
    marker = watch.silence_marker(1777892400000, reading(10.0))  # 2026-05-04T11:00Z, three hours after 08:00
    _, alerts = watch.on_event(None, marker, book)
    assert [(a["category"], a["event_time"], a["severity"], a["evidence"]["last_event_time"]) for a in alerts] == [
        ("silent_sensor", "2026-05-04T11:00:00.000Z", "low", "2026-05-04T08:00:00.000Z")]
    paused = rules(make_rule("default-silent_sensor", "*", "silent_sensor", {}, enabled=False))
    assert watch.on_event(None, marker, paused) == (None, [])
    assert watch.on_timer({"deadlines": [1]}, 5, book) == (None, [])  # state from before the gate is dropped
