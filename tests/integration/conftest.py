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
    """Topics of one test, deleted afterwards: ``test.<tenant>.in`` (and ``.in2``), their DLQs,
    ``alerts.<tenant>`` and a private compacted rules topic ``test.<tenant>.rules``."""

    def __init__(self, settings, partitions: int = 1):
        from kafka.admin import NewTopic

        self.settings = settings
        self.tenant = f"t{uuid.uuid4().hex[:10]}"
        self.source = f"test.{self.tenant}.in"
        self.source2 = f"test.{self.tenant}.in2"
        self.dlq = f"{self.source}.dlq"
        self.dlq2 = f"{self.source2}.dlq"
        self.alerts = f"alerts.{self.tenant}"
        self.rules = f"test.{self.tenant}.rules"
        self.names = [self.source, self.source2, self.dlq, self.dlq2, self.alerts, self.rules]
        admin = admin_client(settings)
        # Test data is stamped with fixed event times, often months ago; the broker applies retention
        # to record timestamps, so scratch topics keep everything (a 7-day retention would delete the
        # input minutes after it was sent, at the broker's next retention check).
        keep = {"retention.ms": "-1"}
        admin.create_topics([NewTopic(n, partitions if n in (self.source, self.source2) else 1, 1,
                                      topic_configs={**keep, "cleanup.policy": "compact"} if n == self.rules else keep)
                             for n in self.names])
        admin.close()

    def produce(self, payloads: list[bytes], timestamps: list[int] | None = None, topic: str | None = None,
                keys: list[str] | None = None) -> None:
        """Send ``payloads`` in order; ``timestamps`` (epoch ms) become the record timestamps (event time)."""
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap)
        for i, payload in enumerate(payloads):
            producer.send(topic or self.source, payload, timestamp_ms=timestamps[i] if timestamps else None,
                          key=keys[i].encode() if keys else None)
        producer.flush()
        producer.close()

    def read(self, topic: str, committed_only: bool = True, job_running: bool = False) -> list[dict]:
        """The messages of ``topic`` (committed ones only, by default). After a job has ended, first
        wait for its last transaction to settle, and fail if one stays open; while a job runs,
        transactions are open all the time, so just read what is committed."""
        from impetus.topics import end_offsets, read_messages

        settle = 0.0 if job_running or not committed_only else 10.0
        messages = read_messages(self.settings, topic, committed_only=committed_only, settle_s=settle)
        if committed_only and not job_running:
            written = end_offsets(self.settings, topic, committed_only=False)
            settled = end_offsets(self.settings, topic, committed_only=True)
            assert written == settled, (f"{topic}: transactions still open 10 s after the job ended "
                                        f"(end offsets written {written}, committed {settled})")
        return [json.loads(m.value) for m in messages]

    def accounting(self, run_id: str) -> dict:
        """The final ``jobs.accounting`` counts of one run, summed over the inputs it read."""
        from impetus.topics import read_messages

        finals = [json.loads(m.value) for m in read_messages(self.settings, "jobs.accounting", settle_s=10.0)]
        finals = [f for f in finals if f["run_id"] == run_id and f["final"]]
        totals = {"messages_in": 0, "processed": 0, "dead_lettered": 0, "late": 0}
        for record in finals:
            for name in totals:
                totals[name] += record[name]
        totals["reports"] = len(finals)
        return totals

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
