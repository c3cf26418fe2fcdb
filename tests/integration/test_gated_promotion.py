"""Gated promotion end to end: a batch with planted raw personal data is held back from silver
(and a recomputed gold table from gold), quarantined with the gate's result, alerted on
alerts.operations, and the run fails loudly with the failed expectations and the Data Docs page;
the tables keep what they had, and the next clean batch goes through."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.integration.conftest import LAKE_CLOCK, LAKE_KEY, ROOT, run_script

RAW_IP = "203.0.113.9"
PLANT = """
import sys
from pyspark.sql import functions as F
from impetus.config import load_settings
from impetus.schemas import load_schema
from impetus.spark import spark_session

qualified, overrides = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
settings = load_settings()
path = settings.lake_path(*qualified.split("."))
spark = spark_session(settings, "plant")
row = spark.read.format("delta").load(path).orderBy("event_time").limit(1)
for column, value in overrides.items():
    kind = dict(row.dtypes)[column]
    row = row.withColumn(column, F.lit(value).cast(kind))
(row.write.format("delta").mode("append").partitionBy(*load_schema(qualified).get("x-partition-by", []))
 .save(path))
"""


class GatedLake:
    def __init__(self, settings, root: Path):
        from kafka.admin import NewTopic

        from impetus.topics import admin_client

        self.tenant = f"t{uuid.uuid4().hex[:10]}"
        self.topic = f"test.{self.tenant}.flows"
        self.env = {"IMPETUS_LAKE_URI": (root / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (root / "chk").as_uri(),
                    "IMPETUS_PSEUDONYM_KEY": LAKE_KEY, "IMPETUS_CLOCK": LAKE_CLOCK}
        self.lake_uri = self.env["IMPETUS_LAKE_URI"]
        self.root = root
        self.broker = settings
        admin = admin_client(settings)
        admin.create_topics([NewTopic(self.topic, 1, 1, topic_configs={"retention.ms": "-1"})])
        admin.close()

    def flow(self, minute: int, src_port: int) -> dict:
        return {"tenant": self.tenant, "event_time": f"2026-05-01T10:{minute:02d}:00Z", "src_ip": "10.1.2.3",
                "src_port": src_port, "dst_ip": "198.51.100.23", "dst_port": 443, "protocol": "tcp",
                "bytes_out": 1000, "bytes_in": 5000, "packets": 12, "duration_ms": 800}

    def produce(self, *docs: dict) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.broker.kafka_bootstrap)
        for doc in docs:
            producer.send(self.topic, json.dumps(doc).encode())
        producer.flush()
        producer.close()

    def job(self, script: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                              timeout=600, cwd=ROOT, env={**os.environ, **self.env})

    def ok(self, script: str, *args: str) -> subprocess.CompletedProcess:
        return run_script(script, *args, env=self.env)

    def land(self) -> None:
        self.ok("jobs/batch/land_bronze.py", "--table", "network_flows", f"--source=network_flows={self.topic}")

    def plant(self, qualified: str, **values) -> None:
        result = subprocess.run([sys.executable, "-c", PLANT, qualified, *[f"{k}={v}" for k, v in values.items()]],
                                capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, **self.env})
        assert result.returncode == 0, result.stderr[-3000:]

    def table(self, qualified: str):
        from deltalake import DeltaTable

        return DeltaTable(f"{self.lake_uri}/{qualified.replace('.', '/')}")

    def rows(self, qualified: str) -> list[dict]:
        return self.table(qualified).to_pyarrow_table().to_pylist()

    def operations_alerts(self) -> list[dict]:
        from impetus.topics import read_messages

        alerts = [json.loads(m.value) for m in read_messages(self.broker, "alerts.operations", settle_s=5.0)]
        return [a for a in alerts if a.get("evidence", {}).get("lake") == self.lake_uri]

    def drop(self) -> None:
        from impetus.topics import admin_client

        admin = admin_client(self.broker)
        admin.delete_topics([self.topic])
        admin.close()


@pytest.fixture(scope="module")
def gated(broker, tmp_path_factory):
    lake = GatedLake(broker, tmp_path_factory.mktemp("gated"))
    lake.produce(lake.flow(0, 50000), lake.flow(1, 50001))
    lake.land()
    lake.ok("jobs/batch/build_silver.py", "--table", "network_flows")
    lake.ok("jobs/batch/build_gold.py", "--table", "flow_features")
    yield lake
    lake.drop()


def _docs_page(message: str) -> Path:
    url = next(line.split("Data Docs: ", 1)[1].strip() for line in message.splitlines() if "Data Docs: " in line)
    return Path(unquote(urlparse(url).path))


def test_a_silver_batch_with_a_raw_address_is_held_back_quarantined_and_alerted(gated):
    silver_before = gated.rows("silver.network_flows")
    version_before = gated.table("silver.network_flows").version()
    assert len(silver_before) == 2
    # a bronze row whose source address escaped pseudonymisation, with a negative byte count too
    gated.plant("bronze.network_flows", src_ip=RAW_IP, src_port=40000, bytes_out=-5, kafka_offset=999)

    run = gated.job("jobs/batch/build_silver.py", "--table", "network_flows")

    # the run fails loudly: which expectations, where the batch went, the alert, the Data Docs page
    assert run.returncode == 3, run.stderr[-3000:]
    assert "held back by their data-quality gate" in run.stderr
    assert "[pseudonym] 1 value of pseudonymised column src_ip not a pseudonym" in run.stderr
    assert "[raw_ipv4] 1 value of pseudonymised column src_ip holding a raw IPv4 address" in run.stderr
    assert "[range] 1 value of bytes_out outside >= 0, e.g. -5" in run.stderr
    assert "quarantined: 1 row(s) in quarantine.gates" in run.stderr
    assert "data_quality alert" in run.stderr and "sent to alerts.operations" in run.stderr
    assert RAW_IP not in run.stderr + run.stdout
    page = _docs_page(run.stderr)
    assert page.is_file() and RAW_IP not in page.read_text()

    # silver did not change
    assert gated.table("silver.network_flows").version() == version_before
    assert gated.rows("silver.network_flows") == silver_before

    # the batch is in quarantine with the gate result, the address pseudonymised
    (held,) = [r for r in gated.rows("quarantine.gates") if r["target_table"] == "silver.network_flows"]
    assert held["source"] == "bronze.network_flows"
    assert held["rules"] == "pseudonym, range, raw_ipv4"
    assert (held["failed_expectations"], held["data_docs"]) == (3, page.as_uri())
    assert json.loads(held["gate_result"])["success"] is False
    row = json.loads(held["row_redacted"])
    assert row["src_port"] == 40000 and row["bytes_out"] == -5 and row["src_ip"].startswith("ps_")
    assert RAW_IP not in held["row_redacted"] + held["gate_result"]

    # the operations team is alerted: high severity, since personal data may have leaked
    (alert,) = [a for a in gated.operations_alerts() if a["entity"]["id"] == "silver.network_flows"]
    assert (alert["category"], alert["severity"], alert["tenant"]) == ("data_quality", "high", "operations")
    assert alert["evidence"]["batch"] == held["batch"] and alert["evidence"]["rules"] == "pseudonym, range, raw_ipv4"
    assert RAW_IP not in json.dumps(alert)

    # every gate run is audited, the failed one with its alert
    runs = {r["batch"]: r for r in gated.rows("audit.gate_runs")}
    assert runs[held["batch"]]["success"] is False and runs[held["batch"]]["alert_id"] == alert["alert_id"]
    assert runs[held["batch"]]["quarantined_rows"] == 1
    assert sorted(r["target_table"] for r in runs.values() if r["success"]) == [
        "gold.flow_features", "silver.network_flows"]


def test_the_next_clean_batch_is_promoted_past_the_held_back_one(gated):
    gated.produce(gated.flow(2, 50002))
    gated.land()
    run = gated.ok("jobs/batch/build_silver.py", "--table", "network_flows")
    assert json.loads(run.stdout)[0]["held_back"] == 0
    ports = sorted(r["src_port"] for r in gated.rows("silver.network_flows"))
    assert ports == [50000, 50001, 50002]


def test_a_gold_table_that_breaks_its_gate_keeps_its_previous_version(gated):
    gold_before = gated.table("gold.flow_features").version()
    # a raw address in silver (written by hand, past the gates): gold would carry it
    gated.plant("silver.network_flows", src_ip=RAW_IP, src_port=40001)

    run = gated.job("jobs/batch/build_gold.py", "--table", "flow_features")

    assert run.returncode == 3, run.stderr[-3000:]
    assert "gold.flow_features batch" in run.stderr and "[raw_ipv4]" in run.stderr
    assert gated.table("gold.flow_features").version() == gold_before
    held = [r for r in gated.rows("quarantine.gates") if r["target_table"] == "gold.flow_features"]
    assert len(held) == 4 and {r["source"] for r in held} == {"silver.network_flows"}
    assert RAW_IP not in json.dumps(held, default=str)

    # the gate over the whole silver table finds the row too
    check = gated.job("impetus/cli.py", "lake", "gate", "--table", "silver.network_flows")
    assert check.returncode == 3
    assert "[raw_ipv4] 1 value of pseudonymised column src_ip holding a raw IPv4 address" in check.stderr
