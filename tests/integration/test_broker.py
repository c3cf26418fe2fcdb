"""The broker is reachable and its topics are exactly what schemas/topics.yaml declares."""

import json
import shutil
import subprocess

import pytest

from impetus.topics import admin_client, apply_topics, declared_topics, describe_topics

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat missing: run `make setup`")


def test_topics_match_declarations(broker):
    admin = admin_client(broker)
    actual = describe_topics(admin)
    admin.close()
    for topic in declared_topics(broker):
        assert topic.name in actual, f"{topic.name} missing"
        assert actual[topic.name]["partitions"] == topic.partitions
        assert actual[topic.name]["configs"]["retention.ms"] == str(topic.retention_ms)
        assert actual[topic.name]["configs"]["cleanup.policy"] == topic.cleanup
    assert actual["sensors.readings"]["partitions"] == 3
    assert actual["rules"]["configs"]["cleanup.policy"] == "compact"


def test_kcat_sees_the_same_topics(broker):
    # an independent client (librdkafka) reads the broker's metadata
    out = subprocess.run(["kcat", "-b", broker.kafka_bootstrap, "-L", "-J"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    partitions = {t["topic"]: len(t["partitions"]) for t in json.loads(out)["topics"]}
    for topic in declared_topics(broker):
        assert partitions.get(topic.name) == topic.partitions, topic.name


def test_apply_is_idempotent_and_repairs_drift(broker):
    from kafka.admin import ConfigResource, ConfigResourceType

    assert apply_topics(broker) == []
    admin = admin_client(broker)
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "alerts.padova",
                                        configs={"retention.ms": "1000", "cleanup.policy": "delete"})])
    admin.close()
    assert apply_topics(broker) == ["updated settings of alerts.padova"]
    admin = admin_client(broker)
    assert describe_topics(admin)["alerts.padova"]["configs"]["retention.ms"] == "2592000000"
    admin.close()
