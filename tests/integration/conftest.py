"""Integration tier: runs against the real local stack (Kafka broker, Flink mini-cluster,
Spark with Delta). `make test` starts the broker; run alone, these fixtures start it
and stop it again. Each test works on its own topics and tenant, so tests neither
see each other's messages nor depend on what earlier runs left on the broker."""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from impetus import stack
from impetus.config import load_settings
from impetus.topics import admin_client

ROOT = Path(__file__).resolve().parents[2]

# Tests never touch the MLflow registry of the checkout (var/mlflow): the jobs start with its
# @champion when it has one. Every job and command the tests start inherits this empty one.
_MLFLOW = Path(tempfile.mkdtemp(prefix="impetus-test-mlflow-"))
os.environ["IMPETUS_MLFLOW_TRACKING_URI"] = f"sqlite:///{_MLFLOW / 'mlflow.db'}"
os.environ["IMPETUS_MLFLOW_ARTIFACT_URI"] = (_MLFLOW / "artifacts").as_uri()


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
    result = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    assert result.returncode == 0, (
        f"{script} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


# --------------------------------------------------------------------------- a small lake built by the real jobs

LAKE_KEY = "6c616b652d746573742d6b65792d6f662d33322d62797465732d2d2d2d2d2d21"  # a test secret, 32 bytes
# The lake's time rules (gates, retention) take this as now: the fixture's events are of 2026-05-01.
LAKE_CLOCK = "2026-05-02T00:00:00Z"
# Personal values planted in the lake fixture's messages; none may appear anywhere in the lake.
PLANTED = ["203.0.113.77", "198.51.100.23", "10.1.2.3", "kari.nordmann", "olanormann", "kari.nordmann@example.no",
           "+47 41 23 45 67", "41234567", "EL 12345", "@kari_n", "kari_n", "operator.jensen@oslo.kommune.no",
           "049 827 1111", "Nordmann", "00:16:3e:aa:bb:cc"]


def lake_documents(tenant: str) -> dict[str, list]:
    """Known messages per bronze table; bytes are sent as they are (malformed ones on purpose)."""
    def reading(sensor, value, when, area="Queen Street", lat=-36.85, lon=174.76):
        return {"tenant": tenant, "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
                "unit": "persons/h", "event_time": when, "location": {"area": area, "lat": lat, "lon": lon},
                "source": "test"}

    sshd = "<38>May  1 10:0{s}:00 gw sshd[41{s}]: Failed password for invalid user kari.nordmann from 203.0.113.77 " \
           "port 5221{s} ssh2"
    alert = {"alert_id": "a-1", "class_uid": 2004, "tenant": tenant, "time": "2026-05-01T10:05:00Z",
             "event_time": "2026-05-01T10:02:00Z", "severity": "high", "severity_id": 4, "category": "brute_force",
             "title": "Brute force", "detector": {"kind": "rule", "name": "brute_force", "version": "r1"},
             "entity": {"type": "ip", "id": "203.0.113.77"}, "evidence": {"failures": 5, "src": "203.0.113.77"},
             "countermeasure": "block the source", "status": "new", "count": 1}
    anomaly = {**alert, "alert_id": "a-2", "time": "2026-05-01T12:00:00Z", "event_time": "2026-05-01T11:00:00Z",
               "severity": "medium", "severity_id": 3, "category": "urban_anomaly", "title": "Unusual count",
               "detector": {"kind": "model", "name": "urban_baseline", "version": "m1"},
               "entity": {"type": "sensor", "id": "s1"}, "evidence": {"value": 900, "expected": 300},
               "location": {"area": "Queen Street", "lat": -36.85, "lon": 174.76}, "countermeasure": "check"}
    return {
        "sensors_readings": [
            reading("s1", 100.0, "2026-05-01T10:00:00Z"),
            reading("s1", 150.0, "2026-05-01T10:30:00Z"),
            reading("s2", 40.0, "2026-05-01T10:00:00Z", area="Vulcan Lane", lat=-36.848, lon=174.765),
            reading("s1", 900.0, "2026-05-01T11:00:00Z"),
            b'{"tenant": "broken", "note": "mail kari.nordmann@example.no',          # not JSON
            json.dumps({**reading("s3", 1.0, "2026-05-01T10:00:00Z"), "value": "many"}).encode(),  # schema
            reading("s1", 120.0, "2026-05-01T10:30:00Z"),   # correction of s1 10:30, landed later: wins in silver
            reading("s2", 60.0, "2026-04-01T09:00:00Z", area="Vulcan Lane", lat=-36.848, lon=174.765),  # late
        ],
        "security_syslog": [
            {"tenant": tenant, "collector": "c1", "received_time": f"2026-05-01T10:0{s}:01Z", "line": sshd.format(s=s)}
            for s in range(3)
        ] + [
            {"tenant": tenant, "collector": "c1", "received_time": "2026-05-01T10:05:01Z",
             "line": "<86>May  1 10:05:00 gw sudo:   olanormann : TTY=pts/0 ; PWD=/home/olanormann ; USER=root ; "
                     "COMMAND=/bin/ls"},
            {"tenant": tenant, "collector": "c1", "received_time": "2026-05-01T10:06:01Z",
             "line": "<78>May  1 10:06:00 gw CRON[99]: (root) CMD (run-parts /etc/cron.hourly)"},
            {"tenant": tenant, "collector": "c1", "received_time": "2026-05-01T10:07:01Z",
             "line": "<4>May  1 10:07:00 gw kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc SRC=198.51.100.23 "
                     "DST=10.1.2.3 PROTO=TCP SPT=4444 DPT=22"},
        ],
        "network_flows": [
            {"tenant": tenant, "event_time": "2026-05-01T10:00:00Z", "src_ip": "10.1.2.3", "src_port": 50000,
             "dst_ip": "198.51.100.23", "dst_port": 443, "protocol": "tcp", "bytes_out": 1000, "bytes_in": 5000,
             "packets": 12, "duration_ms": 800},
            {"tenant": tenant, "event_time": "2026-05-01T10:01:00Z", "src_ip": "198.51.100.23", "src_port": 4444,
             "dst_ip": "10.1.2.3", "dst_port": 22, "protocol": "tcp", "bytes_out": 60, "bytes_in": 0, "packets": 1,
             "duration_ms": 1},
        ],
        "social_posts": [
            {"tenant": tenant, "post_id": "p1", "platform": "x", "author": "@kari_n",
             "text": "Great concert tonight! Call me on +47 41 23 45 67 or mail kari.nordmann@example.no",
             "lang": "en", "event_time": "2026-05-01T18:00:00Z"},
            {"tenant": tenant, "post_id": "p2", "platform": "x", "author": "someone",
             "text": "Terrible: a car EL 12345 blocks the exit, my name is Kari Nordmann", "lang": "en",
             "event_time": "2026-05-01T19:00:00Z"},
        ],
        "cti_posts": [
            {"tenant": tenant, "post_id": "c1", "source": "feed", "url": "https://cert.example.org/1",
             "text": "Scanner at 203.0.113.77 targets CVE-2024-3094", "event_time": "2026-05-01T09:00:00Z"},
        ],
        "alerts": [alert, anomaly, {**alert, "time": "2026-05-01T10:20:00Z", "count": 3}],
        "alerts_feedback": [
            {"tenant": tenant, "alert_id": "a-1", "decision": "confirmed",
             "operator": "operator.jensen@oslo.kommune.no", "comment": "called 049 827 1111",
             "event_time": "2026-05-01T10:30:00Z"},
            {"tenant": tenant, "alert_id": "a-2", "decision": "dismissed", "operator": "op-2",
             "event_time": "2026-05-01T12:30:00Z"},
        ],
    }


class Lake:
    """A lake in a temporary folder, landed from scratch topics and built by the real jobs."""

    def __init__(self, settings, root: Path):
        from kafka.admin import NewTopic

        from impetus.landing import bronze_tables

        self.root = root
        self.tenant = f"t{uuid.uuid4().hex[:10]}"
        self.env = {"IMPETUS_LAKE_URI": (root / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (root / "chk").as_uri(),
                    "IMPETUS_PSEUDONYM_KEY": LAKE_KEY, "IMPETUS_CLOCK": LAKE_CLOCK}
        self.settings = load_settings(env={**os.environ, **self.env})
        self.documents = lake_documents(self.tenant)
        self.topics = {t.name: f"test.{self.tenant}.{t.name}" for t in bronze_tables(settings)}
        admin = admin_client(settings)
        admin.create_topics([NewTopic(n, 1, 1, topic_configs={"retention.ms": "-1"}) for n in self.topics.values()])
        admin.close()
        self.broker = settings

    def produce(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.broker.kafka_bootstrap)
        for table, docs in self.documents.items():
            for doc in docs:
                producer.send(self.topics[table], doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        producer.flush()
        producer.close()

    def run(self, script: str, *args: str):
        result = run_script(script, *args, env=self.env)
        start = min(i for i in (result.stdout.find("["), result.stdout.find("{")) if i >= 0)
        return json.loads(result.stdout[start:])

    def sources(self) -> list[str]:
        return [f"--source={table}={topic}" for table, topic in self.topics.items()]

    def land(self, *args: str) -> list[dict]:
        return self.run("jobs/batch/land_bronze.py", *self.sources(), *args)

    def rows(self, qualified: str) -> list[dict]:
        from deltalake import DeltaTable

        layer, name = qualified.split(".", 1)
        return DeltaTable(self.settings.lake_path(layer, name)).to_pyarrow_table().to_pylist()

    def drop(self) -> None:
        admin = admin_client(self.broker)
        admin.delete_topics(list(self.topics.values()))
        admin.close()


@pytest.fixture(scope="session")
def lake(broker, tmp_path_factory):
    """Known messages (with planted personal values and malformed ones) landed, silver and gold built."""
    built = Lake(broker, tmp_path_factory.mktemp("lake"))
    built.produce()
    # land, silver and gold in one Spark session (`impetus lake build`), as the demo does
    result = built.run("impetus/cli.py", "lake", "build", "--json", *built.sources())
    built.landing, built.silver, built.gold = result["landing"], result["silver"], result["gold"]
    yield built
    built.drop()
