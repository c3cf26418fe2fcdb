"""Retention and erasure on a small lake of its own (bronze, silver and gold tables written here
with delta-rs, two commits each), with real Spark and Delta: exactly the old rows go, exactly the
subject's rows go (pseudonymised under an old and a new key, in a nested column, inside redacted
text and inside a map), the rest stays, no file under the lake holds the deleted values any more
(data files, transaction log, checksums), the versions before cannot be read back, and the runs are
recorded in the audit tables."""

import io
import json
import os
import runpy
from contextlib import redirect_stdout
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from impetus.config import load_settings
from impetus.privacy import key_id, pseudonym, redact_text
from impetus.schemas import _main_type, load_schema

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
KEY_NEW = bytes.fromhex("6e" * 32)
KEY_OLD = bytes.fromhex("6f" * 32)   # before the last rotation: still in the key file
SUBJECT = "203.0.113.77"
OTHER = "198.51.100.23"
TENANT = "oslo"


def arrow_type(prop: dict):
    """The Arrow type Spark writes for a declared column."""
    kind = _main_type(prop)
    if kind == "string":
        return {"date-time": pa.timestamp("us", tz="UTC"), "date": pa.date32()}.get(prop.get("format"), pa.string())
    if kind == "object":
        if "properties" in prop:
            return pa.struct([pa.field(n, arrow_type(p)) for n, p in prop["properties"].items()])
        return pa.map_(pa.string(), arrow_type(prop.get("additionalProperties") or {}))
    if kind == "array":
        return pa.list_(arrow_type(prop.get("items", {})))
    return {"number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}[kind]


def write_table(lake: Path, qualified: str, rows: list[dict]) -> None:
    schema = load_schema(qualified)
    arrow = pa.schema([pa.field(n, arrow_type(p)) for n, p in schema["properties"].items()])
    layer, name = qualified.split(".", 1)
    table = pa.Table.from_pylist([{f: row.get(f) for f in arrow.names} for row in rows], schema=arrow)
    write_deltalake(str(lake / layer / name), table, partition_by=schema.get("x-partition-by") or None,
                    mode="append")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def landed(when: str) -> dict:
    moment = at(when)
    return {"event_time": moment, "event_date": moment.date(), "event_month": moment.date().replace(day=1),
            "ingested_at": moment}


def bronze_alert(alert_id: str, when: str, entity: str, key: bytes, message: str, evidence: dict) -> dict:
    return {"alert_id": alert_id, "class_uid": 2004, "tenant": TENANT, "time": at(when), "severity": "high",
            "severity_id": 4, "category": "brute_force", "title": "Brute force", "message": redact_text(message, key),
            "detector": {"kind": "rule", "name": "brute_force", "version": "r1"},
            "entity": {"type": "ip", "id": pseudonym(entity, key)},
            "evidence": {k: redact_text(v, key) for k, v in evidence.items()}, "status": "new", "count": 1,
            "kafka_topic": "alerts.oslo", "kafka_partition": 0, "kafka_offset": int(alert_id[1:]),
            "pseudonym_key": key_id(key), **landed(when)}


def silver_alert(alert_id: str, when: str | None, entity: str, message: str, ingested: str) -> dict:
    row = {"alert_id": alert_id, "tenant": TENANT, "detected_at": at(ingested), "severity": "high", "severity_id": 4,
           "category": "brute_force", "title": "Brute force", "message": redact_text(message, KEY_NEW),
           "detector_kind": "rule", "detector_name": "brute_force", "detector_version": "r1", "entity_type": "ip",
           "entity_id": pseudonym(entity, KEY_NEW), "evidence": {"failures": "5"}, "count": 1,
           **landed(when or ingested)}
    if when is None:
        row["event_time"] = None  # an alert without event time ages by when it was landed
    return row


def features(when: str, src: str) -> dict:
    moment = at(when)
    return {"tenant": TENANT, "event_time": moment, "src_ip": pseudonym(src, KEY_NEW), "dst_port": 22,
            "protocol": "tcp", "log_bytes_out": 4.1, "log_bytes_in": 0.0, "log_duration_ms": 0.7,
            "log_bytes_per_packet": 4.1, "log_out_in_ratio": 4.1, "dst_port_well_known": 1.0, "dst_external": 0.0,
            "event_month": moment.date().replace(day=1)}


# Per table, two commits of rows. Ids: s = the subject's (all recent), o = old (other people), k = to keep.
PLANTED = {
    "bronze.alerts": [
        [bronze_alert("s1", "2026-05-20T10:00:00", SUBJECT, KEY_OLD, "5 failed logins", {"failures": "5"}),
         bronze_alert("o1", "2025-04-26T23:59:59", OTHER, KEY_NEW, f"5 failed logins from {OTHER}", {})],
        [bronze_alert("s2", "2026-05-21T10:00:00", OTHER, KEY_NEW, "scan", {"peer": f"talked to {SUBJECT}"}),
         bronze_alert("k1", "2026-05-22T10:00:00", OTHER, KEY_NEW, f"scan from {OTHER}", {"failures": "9"})],
    ],
    "silver.alerts": [
        [silver_alert("s3", "2026-05-20T10:00:00", SUBJECT, "5 failed logins", "2026-05-20T10:05:00"),
         silver_alert("k3", "2025-04-27T00:00:00", OTHER, "brute force", "2025-04-27T00:05:00")],
        [silver_alert("s4", "2026-05-21T10:00:00", OTHER, f"login of root from {SUBJECT}", "2026-05-21T10:05:00"),
         silver_alert("k2", None, OTHER, "brute force", "2026-05-23T00:00:00")],
    ],
    "gold.flow_features": [
        [features("2026-05-20T10:00:00", SUBJECT)],
        [features("2026-05-20T10:01:00", OTHER)],
    ],
}
OLD = {"bronze.alerts": 1}
ERASED = {"bronze.alerts": 2, "silver.alerts": 2, "gold.flow_features": 1}


def files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """``{needle: [file relative to root, ...]}`` over every file under root, hidden ones included."""
    found = {n: [] for n in needles}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for needle in needles:
            if needle.encode() in content:
                found[needle].append(str(path.relative_to(root)))
    return found


def row_ids(lake, qualified: str) -> set:
    layer, name = qualified.split(".", 1)
    rows = DeltaTable(lake.settings.lake_path(layer, name)).to_pyarrow_table().to_pylist()
    key = "event_time" if qualified == "gold.flow_features" else "alert_id"
    return {row[key] for row in rows}


class PlantedLake:
    def __init__(self, root: Path):
        self.root = root
        key_file = root / "secrets" / "pseudonym.key"
        key_file.parent.mkdir(parents=True)
        key_file.write_text(f"{key_id(KEY_NEW)} {KEY_NEW.hex()}\n{key_id(KEY_OLD)} {KEY_OLD.hex()}\n")
        self.env = {"IMPETUS_LAKE_URI": (root / "lake").as_uri(), "IMPETUS_CHECKPOINT_URI": (root / "chk").as_uri(),
                    "IMPETUS_ERASURE_QUEUE_DIR": str(root / "erasure-requests"),
                    "IMPETUS_PSEUDONYM_KEY_FILE": str(key_file)}
        environ = {k: v for k, v in os.environ.items() if k != "IMPETUS_PSEUDONYM_KEY"}
        self.settings = load_settings(env={**environ, **self.env})
        for qualified, commits in PLANTED.items():
            for rows in commits:
                write_table(root / "lake", qualified, rows)
        self.pseudonyms = [pseudonym(SUBJECT, KEY_NEW), pseudonym(SUBJECT, KEY_OLD)]
        # before anything ran: where the subject is, so the test can tell that it was found and is gone
        self.before = files_holding(root / "lake", self.pseudonyms)
        self.versions = {q: DeltaTable(str(root / "lake" / q.replace(".", "/"))).version() for q in PLANTED}

    def run_job(self, job: str, *args: str, monkeypatch) -> object:
        """A job's main() in this process (the Spark session is shared), its JSON stdout parsed."""
        monkeypatch.delenv("IMPETUS_PSEUDONYM_KEY", raising=False)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        main = runpy.run_path(str(ROOT / "jobs" / "batch" / f"{job}.py"))["main"]
        out = io.StringIO()
        with redirect_stdout(out):
            main(list(args))
        return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return PlantedLake(tmp_path_factory.mktemp("governance"))


def test_retention_deletes_exactly_the_old_rows_for_good(lake, monkeypatch):
    from impetus.governance import enforce_retention
    from impetus.spark import spark_session

    files_before = {q: set(DeltaTable(lake.settings.lake_path(*q.split("."))).file_uris()) for q in OLD}
    dry = enforce_retention(lake.settings, now=NOW, dry_run=True, tables=["bronze.alerts"])
    assert [(r["table"], r["rows_deleted"], r["outcome"], r["run_id"]) for r in dry] == [
        ("bronze.alerts", 1, "dry run", None)]
    assert "o1" in row_ids(lake, "bronze.alerts") and DeltaTable(lake.settings.lake_path(
        "bronze", "alerts")).version() == lake.versions["bronze.alerts"]

    result = lake.run_job("enforce_retention", "--now", "2026-06-01T00:00:00Z", monkeypatch=monkeypatch)

    # every existing table, the audit tables too once written (nothing of theirs is old)
    deleted = {r["table"]: r["rows_deleted"] for r in result}
    assert deleted == {**{q: 0 for q in deleted if q.startswith("audit.")}, **{q: OLD.get(q, 0) for q in PLANTED}}
    assert {r["table"]: r["cutoff"] for r in result if r["table"] in PLANTED} == {
        "bronze.alerts": "2025-04-27T00:00:00+00:00", "silver.alerts": "2025-04-27T00:00:00+00:00",
        "gold.flow_features": "2026-03-03T00:00:00+00:00"}
    # the old row is gone, the others stay (the subject's may have been erased already): o1 is a second older
    # than the cutoff, k3 exactly as old, k2 has no event time and was landed recently
    assert {"o1", "k1"} & row_ids(lake, "bronze.alerts") == {"k1"}
    assert {"k2", "k3"} <= row_ids(lake, "silver.alerts")

    spark = spark_session(lake.settings, "test")
    for qualified in OLD:
        path = lake.settings.lake_path(*qualified.split("."))
        entry = next(r for r in result if r["table"] == qualified)
        assert entry["files_removed"] >= 1 and entry["history_from"] > lake.versions[qualified]
        # the files that held the old rows are gone from storage ...
        current = set(DeltaTable(path).file_uris())
        for uri in files_before[qualified] - current:
            assert not Path(uri.removeprefix("file://")).exists(), uri
        # ... and the versions that listed them cannot be read any more, by delta-rs or by Spark
        with pytest.raises(Exception):
            DeltaTable(path, version=lake.versions[qualified])
    with pytest.raises(Exception) as travel:
        spark.read.format("delta").option("versionAsOf", lake.versions["bronze.alerts"]).load(
            lake.settings.lake_path("bronze", "alerts")).count()
    assert "DELTA_VERSION_NOT_FOUND" in str(travel.value)
    # zero-retention VACUUM was allowed in the governance session only
    assert spark.conf.get("spark.databricks.delta.retentionDurationCheck.enabled") == "true"

    audit = DeltaTable(lake.settings.lake_path("audit", "retention_runs")).to_pyarrow_table().to_pylist()
    runs = [r for r in audit if r["run_id"] == result[0]["run_id"] and r["table"] in PLANTED]
    assert sorted((r["table"], r["rows_deleted"], r["outcome"]) for r in runs) == sorted(
        (q, OLD.get(q, 0), "deleted" if q in OLD else "nothing older than the retention") for q in PLANTED)
    assert all(r["version_after"] > r["version_before"] for r in runs if r["table"] in OLD)


def test_erasure_leaves_no_trace_of_the_subject_anywhere_in_the_lake(lake, monkeypatch):
    # the subject was planted in data files and in the transaction log's statistics, under both keys
    new, old = lake.pseudonyms
    assert any(f.startswith("bronze/alerts/") and "_delta_log" not in f for f in lake.before[old])
    assert any(f.startswith("bronze/alerts/_delta_log/") for f in lake.before[old])
    for qualified in ERASED:
        assert any(f.startswith(qualified.replace(".", "/") + "/") for f in lake.before[new]), qualified

    # queued (a secret file), then carried out by the daily run, as lake_maintenance's erase_requests does
    queued = lake.run_job("erase_subject", "--subject", SUBJECT, "--requested-by", "dpo@oslo.kommune.no",
                          "--reason", "Art. 17 request by kari.nordmann@example.no", "--queue", monkeypatch=monkeypatch)
    request_file = Path(queued["queue"]) / f"{queued['request_id']}.json"
    assert request_file.stat().st_mode & 0o777 == 0o600 and Path(queued["queue"]).stat().st_mode & 0o777 == 0o700
    (done,) = lake.run_job("erase_subject", "--pending", monkeypatch=monkeypatch)
    assert done["request_id"] == queued["request_id"] and not request_file.exists()
    result = done["erasure"]

    assert {t["table"]: t["rows_deleted"] for t in result["tables"]} == ERASED
    assert result["rows_deleted"] == sum(ERASED.values()) and result["status"] == "completed"
    assert set(lake.pseudonyms) <= set(result["pseudonyms"])
    assert result["gold_to_recompute"] == ["gold.alert_counts", "gold.before_after", "gold.hotspots",
                                           "gold.rule_feedback"]
    assert max(e["retention_ms"] for e in result["kafka"]) == 90 * 86_400_000   # alerts.feedback

    # the other people's recent rows stay
    assert {"k1"} <= row_ids(lake, "bronze.alerts") and not {"s1", "s2"} & row_ids(lake, "bronze.alerts")
    assert {"k2"} <= row_ids(lake, "silver.alerts") and not {"s3", "s4"} & row_ids(lake, "silver.alerts")
    assert row_ids(lake, "gold.flow_features") == {at("2026-05-20T10:01:00")}

    # no file under the lake holds a pseudonym of the subject but the erasure record itself
    after = files_holding(lake.root / "lake", result["pseudonyms"] + [SUBJECT])
    assert {n: [f for f in files if not f.startswith("audit/erasure_requests/")] for n, files in after.items()} == {
        n: [] for n in after}
    assert after[SUBJECT] == []   # the identifier itself is never written
    for qualified in ERASED:
        with pytest.raises(Exception):
            DeltaTable(lake.settings.lake_path(*qualified.split(".")), version=lake.versions[qualified])

    (request,) = [r for r in DeltaTable(lake.settings.lake_path("audit", "erasure_requests")).to_pyarrow_table()
                  .to_pylist() if r["request_id"] == result["request_id"]]
    assert dict(request["rows_deleted"]) == ERASED and request["rows_deleted_total"] == sum(ERASED.values())
    assert request["requested_by"] == pseudonym("dpo@oslo.kommune.no", KEY_NEW)
    assert request["reason"] == f"Art. 17 request by {pseudonym('kari.nordmann@example.no', KEY_NEW)}"
    assert request["key_ids"] == [key_id(KEY_NEW), key_id(KEY_OLD)] and request["status"] == "completed"
    assert date.fromisoformat(result["requested_at"][:10]) == request["requested_at"].date()


def landed_flow(offset: int, src: str, port: int) -> dict:
    return {"tenant": TENANT, "src_ip": pseudonym(src, KEY_NEW), "src_port": port,
            "dst_ip": pseudonym("10.1.2.3", KEY_NEW), "dst_port": 22, "protocol": "tcp", "bytes_out": 60, "bytes_in": 0,
            "packets": 1, "duration_ms": 1, "src_internal": False, "dst_internal": True, "kafka_topic": "network.flows",
            "kafka_partition": 0, "kafka_offset": offset, "kafka_timestamp": at("2026-05-20T10:00:00"),
            "pseudonym_key": key_id(KEY_NEW), **landed("2026-05-20T10:00:00")}


def test_silver_keeps_streaming_from_bronze_after_an_erasure_cut_its_history(tmp_path):
    """Silver reads bronze as a Delta stream that must find, on restart, the commits of its last batch;
    erasure cuts bronze's history. Here silver is behind when the erasure starts, and landing goes on
    after it."""
    from impetus.governance import erase_subject
    from impetus.lake import build_silver
    from impetus.privacy import Keyring

    # the gates age the flows of 2026-05-20 by the test's clock, not today's
    settings = load_settings(env={**os.environ, "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(),
                                  "IMPETUS_CHECKPOINT_URI": (tmp_path / "chk").as_uri(),
                                  "IMPETUS_CLOCK": NOW.isoformat()})
    quiet = lambda message: None  # noqa: E731
    write_table(tmp_path / "lake", "bronze.network_flows", [landed_flow(1, SUBJECT, 1), landed_flow(2, OTHER, 2)])
    build_silver(settings, ["network_flows"], log=quiet)
    # landed after silver last ran: erasure must let silver read it before deleting
    write_table(tmp_path / "lake", "bronze.network_flows", [landed_flow(3, SUBJECT, 3), landed_flow(4, OTHER, 4)])

    result = erase_subject(settings, SUBJECT, keyring=Keyring(((key_id(KEY_NEW), KEY_NEW),)), log=quiet)

    assert {t["table"]: t["rows_deleted"] for t in result["tables"]} == {
        "bronze.network_flows": 2, "silver.network_flows": 2}
    history = DeltaTable(settings.lake_path("bronze", "network_flows")).history()
    assert min(h["version"] for h in history) == next(t["history_from"] for t in result["tables"]
                                                      if t["table"] == "bronze.network_flows") > 1
    write_table(tmp_path / "lake", "bronze.network_flows", [landed_flow(5, OTHER, 5)])
    (summary,) = build_silver(settings, ["network_flows"], log=quiet)
    assert summary["rows_in"] == 1
    ports = DeltaTable(settings.lake_path("silver", "network_flows")).to_pyarrow_table().column("src_port")
    assert sorted(ports.to_pylist()) == [2, 4, 5]
    after = files_holding(tmp_path, [pseudonym(SUBJECT, KEY_NEW)])   # the lake and the stream checkpoints
    assert [f for f in after[pseudonym(SUBJECT, KEY_NEW)] if not f.startswith("lake/audit/")] == []
