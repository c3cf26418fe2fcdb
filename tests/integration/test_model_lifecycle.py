"""The model lifecycle on the real stack: retraining from a Delta table into MLflow, promotion by the
declared margin, and a running cyber job switching model versions without a restart."""

import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from impetus.config import load_settings
from impetus.topics import admin_client

from .conftest import run_script
from .test_cyber_threats_job import flow
from .test_runtime_rules_and_restart import kill, start_job, wait_for

NEWEST = datetime(2026, 5, 1, tzinfo=timezone.utc)


def flow_feature_rows(n=3000, days=20):
    """gold.flow_features rows of ``n`` synthetic normal flows spread evenly over ``days`` before NEWEST."""
    from impetus.detect.flow_anomaly import FEATURES, flow_features
    from impetus.replay.flows import normal_flows

    rows = []
    step = timedelta(days=days) / n
    for i, doc in enumerate(normal_flows(seed=3, n=n)):
        moment = NEWEST - days * timedelta(days=1) + (i + 1) * step
        row = {"tenant": doc["tenant"], "event_time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "src_ip": f"ps_{uuid.uuid5(uuid.NAMESPACE_DNS, doc['src_ip']).hex[:24]}", "dst_port": doc["dst_port"],
               "protocol": doc["protocol"], "event_month": moment.strftime("%Y-%m")}
        row.update(zip(FEATURES, flow_features(doc)))
        rows.append(row)
    return rows


@pytest.fixture
def registry(broker, tmp_path):
    """An empty MLflow store, a lake with gold.flow_features, and a private models.control topic."""
    from deltalake import write_deltalake
    import pyarrow as pa
    from kafka.admin import NewTopic

    control = f"test.models.control.{uuid.uuid4().hex[:8]}"
    env = {"IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "IMPETUS_MLFLOW_ARTIFACT_URI": (tmp_path / "artifacts").as_uri(),
           "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri()}
    settings = load_settings(env={**os.environ, **env})
    write_deltalake(settings.lake_path("gold", "flow_features"), pa.Table.from_pylist(flow_feature_rows()))
    admin = admin_client(broker)
    admin.create_topics([NewTopic(control, 1, 1, topic_configs={"retention.ms": "-1"})])
    admin.close()
    yield env, settings, control
    admin = admin_client(broker)
    admin.delete_topics([control])
    admin.close()


def impetus(*args, env):
    result = run_script("impetus/cli.py", *args, env=env)
    return result.stdout


def control_messages(settings, topic):
    from impetus.topics import read_messages

    return [json.loads(m.value) for m in read_messages(settings, topic)]


def test_retraining_promotes_the_first_model_and_rejects_one_that_is_not_better(registry):
    env, settings, control = registry
    first = json.loads(impetus("models", "retrain", "flow_anomaly", "--json", "--control-topic", control, env=env))
    assert first["promoted"] is True and first["version"] == "1"
    assert first["reason"].startswith("no champion yet; balanced_accuracy")
    assert first["training_table"] == "gold.flow_features" and first["training_table_version"] == 0
    # 20 days of data, the newest 7 held out
    assert first["holdout_from"] == "2026-04-24T00:00:00Z"
    assert 1000 < first["holdout_rows"] < 1100 and first["train_rows"] + first["holdout_rows"] == 3000
    assert first["candidate"]["attack_rows"] > 0 and first["candidate"]["balanced_accuracy"] >= 0.75
    assert control_messages(settings, control) == [
        {"model": "flow_anomaly", "version": "1", "action": "load", "uri": "models:/flow_anomaly/1",
         "event_time": first["control"]["event_time"]}]

    # the same table and seed: the same model, which cannot beat the champion by the margin
    second = json.loads(impetus("models", "retrain", "flow_anomaly", "--json", "--control-topic", control, env=env))
    assert second["promoted"] is False and second["version"] == "2" and second["champion_version"] == "1"
    assert second["candidate"]["balanced_accuracy"] == second["champion"]["balanced_accuracy"]
    assert "does not beat it by the declared margin 0.005" in second["reason"]
    assert len(control_messages(settings, control)) == 1

    # what MLflow keeps: the run's parameters, metrics, table version, and the registry's state
    from impetus.registry import mlflow_client, versions

    rows = {row["version"]: row for row in versions(settings, "flow_anomaly")}
    assert rows["1"]["aliases"] == ["champion"] and rows["1"]["decision"] == "promoted"
    assert rows["2"]["aliases"] == [] and rows["2"]["decision"] == "rejected"
    assert "does not beat" in rows["2"]["reason"]
    run = mlflow_client(settings).get_run(second["run_id"])
    assert run.data.params["training_table"] == "gold.flow_features"
    assert run.data.params["training_table_version"] == "0"
    assert run.data.metrics["champion_balanced_accuracy"] == second["champion"]["balanced_accuracy"]
    assert run.data.tags["impetus.decision"] == "rejected"
    listing = impetus("models", "list", "flow_anomaly", env=env)
    assert "champion" in listing and "rejected" in listing


def test_a_running_job_switches_to_a_promoted_version_without_a_restart(registry, scratch, tmp_path):
    env, settings, control = registry
    impetus("models", "retrain", "flow_anomaly", "--control-topic", control, env=env)           # v1, champion
    impetus("models", "retrain", "flow_anomaly", "--no-promote", "--control-topic", control, env=env)  # v2
    t = scratch.tenant
    log_path = tmp_path / "job.log"
    job = start_job("jobs/streaming/cyber_threats.py", "--topic", f"security.syslog={scratch.source}",
                    "--topic", f"network.flows={scratch.source2}", "--tenants", t, "--group-id", f"test-{t}",
                    "--rules-topic", scratch.rules, "--control-topic", control, "--delivery", "at-least-once",
                    env=env, log=open(log_path, "w"))

    def exfiltration(second, host):
        # from another host each time: a repeat for one host would be held back (suppressed) until its window
        # closes in event time
        return flow(t, second, host, "203.0.113.200", 8443, packets=3_500_000, bytes_out=5_000_000_000,
                    bytes_in=20_000, duration_ms=3 * 3600 * 1000)

    def version_of_alert(second):
        moment = f"2026-05-04T10:{second // 60:02d}:{second % 60:02d}"

        def found():
            alerts = scratch.read(scratch.alerts, committed_only=False, job_running=True)
            return [a["detector"] for a in alerts if a["category"] == "flow_anomaly"
                    and a["event_time"].startswith(moment)]
        return wait_for(found, timeout=180, what=f"the flow alert of second {second}")

    try:
        message, stamp = exfiltration(10, "10.0.0.7")
        scratch.produce([message], timestamps=[stamp], topic=scratch.source2)
        assert version_of_alert(10) == [{"kind": "model", "name": "flow_anomaly", "version": "1"}]

        impetus("models", "promote", "flow_anomaly", "2", "--reason", "test", "--control-topic", control, env=env)
        wait_for(lambda: "now using flow_anomaly version 2" in log_path.read_text(), timeout=120,
                 what="the job to load version 2")
        message, stamp = exfiltration(20, "10.0.0.8")
        scratch.produce([message], timestamps=[stamp], topic=scratch.source2)
        assert version_of_alert(20) == [{"kind": "model", "name": "flow_anomaly", "version": "2"}]
        assert job.poll() is None, "the job restarted or stopped"
        log = log_path.read_text()
        assert "flow_anomaly: version 1 (@champion in the MLflow registry)" in log
    finally:
        kill(job)
    from impetus.registry import versions

    assert [r["aliases"] for r in versions(settings, "flow_anomaly")] == [["champion"], []]


def test_thresholds_tuned_from_operator_decisions_are_published_as_a_rule(broker, scratch, tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    from impetus.rules import read_rules

    t = scratch.tenant
    start = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    rows = []
    for day in range(60):
        strength = 0.01 * (day % 10 + 1)    # flows scored -0.01 .. -0.10; operators confirm from -0.05 down
        rows.append({"alert_id": f"f{day}", "tenant": t, "category": "flow_anomaly",
                     "evidence": [("score", f"{-strength:.6f}"), ("threshold", "0.0")],
                     "decision": "confirmed" if strength >= 0.05 else "dismissed",
                     "decided_at": start + timedelta(days=day)})
    for day in range(5):                    # too few decided urban anomalies to tune their k
        rows.append({"alert_id": f"u{day}", "tenant": t, "category": "urban_anomaly",
                     "evidence": [("z", "7.0"), ("direction", "above"), ("trigger", "robust_z")],
                     "decision": "dismissed", "decided_at": start + timedelta(days=day)})
    rows.append({"alert_id": "undecided", "tenant": t, "category": "flow_anomaly",
                 "evidence": [("score", "-0.01")], "decision": None, "decided_at": None})
    schema = pa.schema([("alert_id", pa.string()), ("tenant", pa.string()), ("category", pa.string()),
                        ("evidence", pa.map_(pa.string(), pa.string())), ("decision", pa.string()),
                        ("decided_at", pa.timestamp("us", tz="UTC"))])
    env = {"IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri()}
    settings = load_settings(env={**os.environ, **env})
    write_deltalake(settings.lake_path("silver", "alerts"), pa.Table.from_pylist(rows, schema=schema))

    result = json.loads(impetus("models", "retrain", "alert_thresholds", "--json", "--rules-topic", scratch.rules,
                                env=env))
    assert result["holdout_from"] == "2026-04-15T12:00:00Z"      # the newest 14 of 60 days
    proposals = {p["kind"]: p for p in result["proposals"]}
    flows = proposals["flow_anomaly"]
    assert flows["promote"] is True and flows["current"] == 0.0 and flows["tuned"] == pytest.approx(-0.049999)
    assert flows["holdout_tuned"]["recall"] == 1.0 and flows["holdout_tuned"]["precision"] == 1.0
    assert flows["holdout_current"]["precision"] == pytest.approx(11 / 15, abs=1e-6)   # days 45-59
    assert proposals["urban_anomaly"]["promote"] is False
    assert proposals["urban_anomaly"]["reason"].startswith("too few decided alerts: 5")
    rules = read_rules(broker, scratch.rules)
    assert list(rules) == ["tuned-flow_anomaly"]
    assert rules["tuned-flow_anomaly"]["tenant"] == t
    assert rules["tuned-flow_anomaly"]["params"] == {"threshold": pytest.approx(-0.049999), "min_bytes_out": 1000}
