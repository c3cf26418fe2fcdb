"""The health checks against the real broker: consumer lag of a job's group, and a missing topic."""

import json
import uuid

from impetus.health import broker_health, consumer_lag

from .conftest import run_script


def test_consumer_lag_is_end_offset_minus_what_the_group_committed(scratch):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    scratch.produce([b"{}"] * 10)
    job = f"lagtest{uuid.uuid4().hex[:6]}"
    consumer = KafkaConsumer(bootstrap_servers=scratch.settings.kafka_bootstrap, group_id=f"impetus-{job}",
                             enable_auto_commit=False)
    consumer.commit({TopicPartition(scratch.source, 0): OffsetAndMetadata(4, "", -1)})
    consumer.close()
    inputs = {job: [scratch.source], "never_started": [scratch.source2]}

    within = consumer_lag(scratch.settings, max_lag=6, jobs=inputs)
    assert within["ok"] is True
    assert within["jobs"][job] == {"group": f"impetus-{job}", "started": True, "lag": 6,
                                   "per_topic": {scratch.source: 6}}
    assert within["jobs"]["never_started"]["started"] is False and "never_started" in within["detail"]
    behind = consumer_lag(scratch.settings, max_lag=5, jobs=inputs)
    assert behind["ok"] is False and f"{job} is 6 messages behind (more than 5)" in behind["detail"]


def test_the_broker_check_passes_on_the_stack_and_the_job_script_reports_json(broker):
    assert broker_health(broker)["ok"] is True
    result = run_script("jobs/batch/check_health.py", "--check", "broker")
    assert [r["check"] for r in json.loads(result.stdout)] == ["broker"]
