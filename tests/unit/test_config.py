from pathlib import Path

import pytest

from impetus.config import ConfigError, load_settings


def test_local_profile_defaults_put_state_under_var():
    s = load_settings(env={"IMPETUS_HOME": "/srv/impetus"})
    assert s.profile == "local"
    assert s.var_dir == Path("/srv/impetus/var")
    assert s.jars_dir == Path("/srv/impetus/var/jars")
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.flink_jobmanager == "local"
    assert s.lake_uri == "file:///srv/impetus/var/lake"
    assert s.mlflow_tracking_uri == "sqlite:////srv/impetus/var/mlflow/mlflow.db"
    assert s.airflow_home == Path("/srv/impetus/var/airflow")
    assert s.lake_path("bronze", "sensors_readings") == "file:///srv/impetus/var/lake/bronze/sensors_readings"


def test_environment_overrides_each_value():
    s = load_settings(env={"IMPETUS_HOME": "/srv/impetus", "IMPETUS_KAFKA_PORT": "19092",
                           "IMPETUS_FLINK_PARALLELISM": "3", "IMPETUS_CONTROL_TOPIC": "staging.models.control",
                           "IMPETUS_SENSOR_THRESHOLDS": "pedestrian_count=10, pm2_5=25.5"})
    assert s.kafka_port == 19092
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.flink_parallelism == 3
    assert s.control_topic == "staging.models.control"
    assert s.sensor_thresholds == {"pedestrian_count": 10.0, "pm2_5": 25.5}


def test_var_dir_override_moves_all_local_state():
    s = load_settings(env={"IMPETUS_HOME": "/srv/impetus", "IMPETUS_VAR_DIR": "/data/imp"})
    assert s.jars_dir == Path("/data/imp/jars")
    assert s.lake_uri == "file:///data/imp/lake"
    assert s.checkpoint_uri == "file:///data/imp/checkpoints"
    assert s.airflow_home == Path("/data/imp/airflow")


def test_cluster_profile_names_every_missing_variable():
    with pytest.raises(ConfigError) as err:
        load_settings(env={"IMPETUS_PROFILE": "cluster", "IMPETUS_KAFKA_BOOTSTRAP": "k1:9092"})
    message = str(err.value)
    for name in ("IMPETUS_FLINK_JOBMANAGER", "IMPETUS_SPARK_MASTER", "IMPETUS_LAKE_URI",
                 "IMPETUS_CHECKPOINT_URI", "IMPETUS_MLFLOW_TRACKING_URI"):
        assert name in message
    assert "IMPETUS_KAFKA_BOOTSTRAP" not in message


def test_cluster_profile_complete():
    s = load_settings(env={"IMPETUS_PROFILE": "cluster", "IMPETUS_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                           "IMPETUS_FLINK_JOBMANAGER": "jm:8081", "IMPETUS_SPARK_MASTER": "spark://m:7077",
                           "IMPETUS_LAKE_URI": "s3a://lake", "IMPETUS_CHECKPOINT_URI": "s3a://lake/_chk",
                           "IMPETUS_MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.lake_path("gold", "alerts_hourly") == "s3a://lake/gold/alerts_hourly"


def test_bad_values_are_explained():
    with pytest.raises(ConfigError, match="IMPETUS_KAFKA_PORT='ninety' is not a whole number"):
        load_settings(env={"IMPETUS_KAFKA_PORT": "ninety"})
    with pytest.raises(ConfigError, match="unknown profile 'prod'"):
        load_settings(env={"IMPETUS_PROFILE": "prod"})
    with pytest.raises(ConfigError, match="kind=number"):
        load_settings(env={"IMPETUS_SENSOR_THRESHOLDS": "pedestrian_count:10"})
    with pytest.raises(ConfigError, match="IMPETUS_FLINK_PYTHON_MODE='threads': must be one of auto, thread, process"):
        load_settings(env={"IMPETUS_FLINK_PYTHON_MODE": "threads"})
    with pytest.raises(ConfigError, match="IMPETUS_FLINK_BUFFER_TIMEOUT_MS=-5: must be 0 or more"):
        load_settings(env={"IMPETUS_FLINK_BUFFER_TIMEOUT_MS": "-5"})


def test_missing_jars_say_how_to_get_them(tmp_path):
    s = load_settings(env={"IMPETUS_JARS_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="make setup"):
        s.jars("kafka")


def test_default_sensor_limits_are_the_documented_ones():
    from impetus.detect.urban import DEFAULT_KIND_THRESHOLDS

    thresholds = load_settings("local", env={}).sensor_thresholds
    assert thresholds["pedestrian_count"] == 3000.0
    assert {k: v for k, v in thresholds.items() if k != "pedestrian_count"} == {
        kind: spec["threshold"] for kind, spec in DEFAULT_KIND_THRESHOLDS.items()}


def test_the_clock_of_the_lake_rules_can_be_fixed_for_replays_and_tests():
    from datetime import datetime, timedelta, timezone

    fixed = load_settings(env={"IMPETUS_CLOCK": "2026-05-02T02:00:00+02:00"})
    assert fixed.now() == datetime(2026, 5, 2, 0, 0, tzinfo=timezone.utc)
    real = load_settings(env={})
    assert abs(real.now() - datetime.now(timezone.utc)) < timedelta(seconds=5)
    for bad in ("yesterday", "2026-05-02T00:00:00"):  # no offset: which instant is unclear
        with pytest.raises(ConfigError, match="IMPETUS_CLOCK=.* is not an ISO 8601 instant with an offset"):
            load_settings(env={"IMPETUS_CLOCK": bad})
