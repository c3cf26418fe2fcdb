"""The Flink check of the health DAG against recorded REST answers, and the job inputs it checks."""

from impetus.config import load_settings
from impetus.health import flink_health, streaming_inputs

CLUSTER = {"IMPETUS_PROFILE": "cluster", "IMPETUS_KAFKA_BOOTSTRAP": "kafka:9092",
           "IMPETUS_FLINK_JOBMANAGER": "flink-jm:8081", "IMPETUS_SPARK_MASTER": "spark://m:7077",
           "IMPETUS_LAKE_URI": "s3a://lake", "IMPETUS_CHECKPOINT_URI": "s3a://chk",
           "IMPETUS_MLFLOW_TRACKING_URI": "http://mlflow:5000"}


def overview(*jobs):
    return {"jobs": [{"name": name, "state": state, "start-time": start} for name, state, start in jobs]}


def test_the_inputs_come_from_the_job_scripts():
    assert streaming_inputs(load_settings()) == {
        "cyber_threats": ["security.syslog", "network.flows"],
        "text_intelligence": ["social.posts", "cti.posts"],
        "urban_anomalies": ["sensors.readings"],
        "video_analytics": ["video.frames"]}


def test_every_streaming_job_running_on_the_cluster_is_healthy():
    asked = []
    answer = overview(("urban_anomalies", "RUNNING", 5), ("cyber_threats", "RUNNING", 5),
                      ("text_intelligence", "RUNNING", 5), ("video_analytics", "RUNNING", 5))
    report = flink_health(load_settings(env=CLUSTER), fetch=lambda url: asked.append(url) or answer)
    assert asked == ["http://flink-jm:8081/jobs/overview"]
    assert report["ok"] is True and report["detail"].startswith("4 streaming jobs RUNNING")


def test_a_failed_or_missing_job_fails_the_check_and_a_restart_counts():
    answer = overview(("urban_anomalies", "FAILED", 1), ("urban_anomalies", "RUNNING", 9),
                      ("cyber_threats", "RUNNING", 9), ("cyber_threats", "FAILED", 12))
    report = flink_health(load_settings(env=CLUSTER), fetch=lambda url: answer)
    assert report["ok"] is False
    assert report["detail"].startswith("not running: cyber_threats (FAILED), text_intelligence (NOT SUBMITTED), "
                                       "video_analytics (NOT SUBMITTED)")


def test_an_unreachable_rest_api_says_what_to_check():
    def refuse(url):
        raise OSError("connection refused")

    report = flink_health(load_settings(env=CLUSTER), fetch=refuse)
    assert report["ok"] is False and "is the JobManager up?" in report["detail"]


def test_locally_there_is_no_shared_rest_api_to_ask():
    report = flink_health(load_settings(env={}))
    assert report["ok"] is True and report["checked"] is False
