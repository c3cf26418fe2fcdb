"""Integration tier: runs against the real local stack (Kafka broker, Flink mini-cluster,
Spark with Delta). `make test` starts the broker; run alone, these fixtures start it
and stop it again. Each test works on its own topics and tenant, so tests neither
see each other's messages nor depend on what earlier runs left on the broker."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from impetus import stack
from impetus.config import load_settings
from impetus.topics import admin_client

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture(scope="session")
def broker(settings):
    reachable = stack.status(settings)["kafka"]["reachable"]
    if not reachable:
        stack.up(settings)
    yield settings
    if not reachable:
        stack.down(settings)


class Scratch:
    """Topics of one test: ``<prefix>.in``, its DLQ and ``alerts.<tenant>``, deleted afterwards."""

    def __init__(self, settings):
        from kafka.admin import NewTopic

        self.settings = settings
        self.tenant = f"t{uuid.uuid4().hex[:10]}"
        self.source = f"test.{self.tenant}.in"
        self.dlq = f"{self.source}.dlq"
        self.alerts = f"alerts.{self.tenant}"
        self.names = [self.source, self.dlq, self.alerts]
        admin = admin_client(settings)
        admin.create_topics([NewTopic(n, 1, 1) for n in self.names])
        admin.close()

    def produce(self, payloads: list[bytes]) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        for payload in payloads:
            producer.send(self.source, payload)
        producer.flush()
        producer.close()

    def read(self, topic: str) -> list[dict]:
        from impetus.topics import read_messages

        return [json.loads(m.value) for m in read_messages(self.settings, topic)]

    def drop(self) -> None:
        admin = admin_client(self.settings)
        admin.delete_topics(self.names)
        admin.close()


@pytest.fixture
def scratch(broker):
    topics = Scratch(broker)
    yield topics
    topics.drop()


def run_script(script: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a job script as its users do, with this interpreter; fail the test with its output."""
    import os

    result = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    assert result.returncode == 0, (
        f"{script} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
