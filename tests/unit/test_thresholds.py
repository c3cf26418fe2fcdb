import uuid
from datetime import datetime, timezone

from impetus.alerts import ALERT_NAMESPACE, alert_id
from impetus.detect.thresholds import threshold_alert
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 1, 10, 0, 2, tzinfo=timezone.utc)
THRESHOLDS = {"pedestrian_count": 3000.0}


def reading(value, event_time="2019-03-01T07:00:00+13:00", kind="pedestrian_count"):
    return {"tenant": "auckland", "sensor_id": "akl-297-queen-street", "kind": kind, "value": value,
            "unit": "persons/h", "event_time": event_time,
            "location": {"area": "Queen Street", "lat": -36.8519, "lon": 174.764}}


def test_reading_above_threshold_raises_exact_alert():
    alert = threshold_alert(reading(3512.0), THRESHOLDS, detected_at=DETECTED)
    assert alert == {
        # UUIDv5 of "detector|entity type|entity id|event time in UTC", as documented in docs/alert-schema.md
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE,
                                   "sensor_threshold|sensor|akl-297-queen-street|2019-02-28T18:00:00.000Z")),
        "class_uid": 2004,
        "tenant": "auckland",
        "time": "2026-05-01T10:00:02.000Z",
        "event_time": "2019-02-28T18:00:00.000Z",
        "severity": "medium",
        "severity_id": 3,
        "category": "threshold",
        "title": "pedestrian_count 3512 above 3000 at akl-297-queen-street",
        "detector": {"kind": "rule", "name": "sensor_threshold", "version": "1"},
        "entity": {"type": "sensor", "id": "akl-297-queen-street"},
        "location": {"area": "Queen Street", "lat": -36.8519, "lon": 174.764},
        "evidence": {"kind": "pedestrian_count", "value": 3512.0, "threshold": 3000.0, "unit": "persons/h"},
        "countermeasure": "Check the camera feed of the area and dispatch a patrol if the crowd is unsafe.",
        "status": "new",
        "count": 1,
    }
    validator("alert")(alert)


def test_half_again_above_threshold_is_high():
    assert threshold_alert(reading(4500.0), THRESHOLDS)["severity"] == "high"
    assert threshold_alert(reading(4499.0), THRESHOLDS)["severity"] == "medium"


def test_at_or_below_threshold_and_unknown_kinds_raise_nothing():
    assert threshold_alert(reading(3000.0), THRESHOLDS) is None
    assert threshold_alert(reading(12.0), THRESHOLDS) is None
    assert threshold_alert(reading(99999.0, kind="noise_db"), THRESHOLDS) is None


def test_alert_id_is_the_same_for_the_same_instant_in_any_offset():
    a = alert_id("sensor_threshold", "sensor", "s1", "2019-03-01T07:00:00+13:00")
    b = alert_id("sensor_threshold", "sensor", "s1", "2019-02-28T18:00:00Z")
    c = alert_id("sensor_threshold", "sensor", "s1", "2019-03-01T08:00:00+13:00")
    assert a == b
    assert a != c
