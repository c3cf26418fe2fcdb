import hashlib
import math
import pickle
import uuid
from datetime import datetime, timezone

import numpy as np
import onnx
import pytest

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.flow_anomaly import (FEATURES, RULE_KINDS, FlowScorer, anomaly_severity, evaluate, export_onnx,
                                         feature_matrix, fit_isolation_forest, flow_alerts, flow_anomaly_alert,
                                         flow_features, is_internal, load_model, save_model, train_flow_model)
from impetus.replay.flows import generate, normal_flows
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 4, 9, 0, 5, tzinfo=timezone.utc)
# the example of schemas/network.flows.json: a workstation fetching a web page
HTTPS = {"tenant": "oslo", "event_time": "2026-05-01T10:00:00Z", "src_ip": "10.0.0.5", "src_port": 50122,
         "dst_ip": "198.51.100.20", "dst_port": 443, "protocol": "tcp", "bytes_out": 1200, "bytes_in": 53000,
         "packets": 61, "duration_ms": 830}
# 700 MB pushed to a drop server on a backdoor port over ten minutes
EXFILTRATION = {"tenant": "oslo", "event_time": "2026-05-04T08:46:46.430Z", "src_ip": "10.10.1.90",
                "src_port": 61022, "dst_ip": "192.0.2.70", "dst_port": 4444, "protocol": "tcp",
                "bytes_out": 734_003_200, "bytes_in": 12_700_000, "packets": 760_000, "duration_ms": 600_000}
PROBE = {"tenant": "oslo", "event_time": "2026-05-04T08:42:24.014Z", "src_ip": "203.0.113.188", "src_port": 41000,
         "dst_ip": "10.10.0.80", "dst_port": 3306, "protocol": "tcp", "bytes_out": 44, "bytes_in": 40,
         "packets": 2, "duration_ms": 1}
METADATA = {"name": "flow_anomaly", "version": "cde26a63b469", "threshold": 0.0, "features": FEATURES}


@pytest.fixture(scope="module")
def training():
    return normal_flows(seed=0, n=20_000)


@pytest.fixture(scope="module")
def trained(training):
    return train_flow_model(training, seed=0, source="normal_flows(seed=0, n=20000)")


@pytest.fixture(scope="module")
def forest(training):
    return fit_isolation_forest(training, seed=0)


@pytest.fixture(scope="module")
def scorer(trained):
    return FlowScorer(*trained)


class FixedScores(FlowScorer):
    """A scorer whose model answers with given scores: tests the alerting without a forest."""

    def __init__(self, scores, threshold=0.0):
        self.metadata = dict(METADATA, threshold=threshold)
        self.threshold = threshold
        self.scores = scores

    def score(self, flows):
        return self.scores[:len(flows)]


def test_feature_vector_of_a_literal_https_flow():
    assert flow_features(HTTPS) == pytest.approx([
        math.log1p(1200),               # 7.0909
        math.log1p(53000),              # 10.8780
        math.log1p(830),                # 6.7226
        math.log1p((1200 + 53000) / 61),  # 888.5 bytes per packet
        math.log1p(1200) - math.log1p(53000),  # downloads are negative
        1.0,                            # 443 is a well-known port
        1.0,                            # 198.51.100.0/24 is outside the organisation
    ])
    assert FEATURES == ["log_bytes_out", "log_bytes_in", "log_duration_ms", "log_bytes_per_packet",
                        "log_out_in_ratio", "dst_port_well_known", "dst_external"]


def test_features_of_an_internal_flow_without_counters():
    flow = {"tenant": "oslo", "event_time": "2026-05-01T10:00:00Z", "src_ip": "10.0.0.5", "dst_ip": "10.10.0.8",
            "dst_port": 8080, "protocol": "tcp"}
    assert flow_features(flow) == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_internal_means_private_ranges_not_documentation_ranges():
    assert is_internal("10.20.3.4") and is_internal("192.168.1.1") and is_internal("172.31.0.9")
    assert is_internal("fd12:3456::1") and is_internal("fe80::1")
    assert not is_internal("192.0.2.70") and not is_internal("203.0.113.9") and not is_internal("2001:db8::1")
    assert not is_internal("not-an-address")


def test_training_is_reproducible_and_describes_itself(trained, forest):
    onnx_bytes, metadata = trained
    # an independent fit of the same flows with the same seed exports to the very same bytes
    assert export_onnx(forest) == onnx_bytes
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    assert metadata["version"] == digest[:12] and metadata["sha256"] == digest
    assert {key: metadata[key] for key in ("name", "features", "threshold", "training_size", "seed",
                                           "training_data", "score_output", "onnx_opsets", "contamination")} == {
        "name": "flow_anomaly", "features": FEATURES, "threshold": 0.0, "training_size": 20_000, "seed": 0,
        "training_data": "normal_flows(seed=0, n=20000)", "score_output": "scores",
        "onnx_opsets": {"": 17, "ai.onnx.ml": 3}, "contamination": 0.002}
    # opsets in a fixed order: skl2onnx's own order changes with PYTHONHASHSEED, and with it the bytes
    graph = onnx.load_from_string(onnx_bytes)
    assert [(opset.domain, opset.version) for opset in graph.opset_import] == [("", 17), ("ai.onnx.ml", 3)]
    assert [output.name for output in graph.graph.output] == ["label", "scores"]


def test_onnx_scores_equal_sklearn_decision_function(forest, scorer):
    batch = [HTTPS, EXFILTRATION, PROBE] + generate(seed=4, hours=0.05)[0][:200]
    onnx_scores = np.array(scorer.score(batch))
    features = feature_matrix(batch)
    np.testing.assert_allclose(onnx_scores, forest.decision_function(features), atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx_scores, forest.score_samples(features) - forest.offset_, atol=1e-5, rtol=0)


def test_exfiltration_scores_below_and_https_above_the_threshold(scorer):
    exfiltration, https = scorer.score([EXFILTRATION, HTTPS])
    assert exfiltration < scorer.threshold < https
    assert scorer.is_anomalous(exfiltration) and not scorer.is_anomalous(https)
    assert scorer.score([]) == []


def test_scorer_survives_pickling_and_files(tmp_path, trained, scorer):
    save_model(tmp_path / "model", *trained)
    assert load_model(tmp_path / "model") == trained
    assert FlowScorer(tmp_path / "model" / "model.onnx", trained[1]).model_bytes == trained[0]
    scorer.score([HTTPS])
    # pickled with its inference session open, as a streaming operator may be
    restored = pickle.loads(pickle.dumps(scorer))
    assert restored.score([EXFILTRATION, HTTPS]) == scorer.score([EXFILTRATION, HTTPS])


def test_mismatched_files_and_features_are_refused(tmp_path, trained):
    onnx_bytes, metadata = trained
    save_model(tmp_path, onnx_bytes + b"\0", metadata)
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="retrain"):
        FlowScorer(onnx_bytes, dict(metadata, features=FEATURES[:-1]))


def test_exact_alert_for_an_exfiltration_flow():
    alert = flow_anomaly_alert(EXFILTRATION, -0.0693, METADATA, detected_at=DETECTED)
    assert alert == {
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "flow_anomaly|ip|10.10.1.90|2026-05-04T08:46:46.430Z")),
        "class_uid": 2004,
        "tenant": "oslo",
        "time": "2026-05-04T09:00:05.000Z",
        "event_time": "2026-05-04T08:46:46.430Z",
        "severity": "high",
        "severity_id": 4,
        "category": "flow_anomaly",
        "title": "Anomalous flow 10.10.1.90 -> 192.0.2.70:4444/tcp, 700.0 MB out",
        "detector": {"kind": "model", "name": "flow_anomaly", "version": "cde26a63b469"},
        "entity": {"type": "ip", "id": "10.10.1.90"},
        "evidence": {"dst_ip": "192.0.2.70", "dst_port": 4444, "protocol": "tcp", "bytes_out": 734_003_200,
                     "bytes_in": 12_700_000, "packets": 760_000, "duration_ms": 600_000, "score": -0.0693,
                     "threshold": 0.0},
        "countermeasure": "Isolate host 10.10.1.90 and check it for data exfiltration; block 192.0.2.70 at the "
                          "egress firewall and preserve the flow records.",
        "status": "new",
        "count": 1,
    }
    validator("alert")(alert)


def test_inbound_and_internal_anomalies_get_their_own_countermeasure():
    inbound = flow_anomaly_alert(PROBE, -0.01, METADATA, detected_at=DETECTED)
    assert inbound["countermeasure"].startswith("Block 203.0.113.188 at the perimeter firewall")
    assert inbound["title"] == "Anomalous flow 203.0.113.188 -> 10.10.0.80:3306/tcp, 44 B out"
    lateral = flow_anomaly_alert(dict(PROBE, src_ip="10.10.8.27"), -0.01, METADATA, detected_at=DETECTED)
    assert lateral["countermeasure"].startswith("Check host 10.10.8.27 for compromise (lateral movement)")
    validator("alert")(inbound)
    validator("alert")(lateral)


def test_severity_grows_with_the_distance_below_the_threshold():
    assert [anomaly_severity(score, 0.0) for score in (-0.001, -0.02, -0.049, -0.05, -0.0999, -0.1, -0.3)] == [
        "low", "medium", "medium", "high", "high", "critical", "critical"]
    assert anomaly_severity(-0.05, threshold=-0.02) == "medium"
    assert anomaly_severity(0.0, 0.0) == "informational"


def test_rule_params_set_threshold_and_silence_small_flows():
    scorer = FixedScores([-0.065, -0.04, 0.03])
    flows = [EXFILTRATION, PROBE, HTTPS]
    # by default the 44-byte probe is left to the port_scan rule
    assert [alert["entity"]["id"] for alert in flow_alerts(scorer, flows, detected_at=DETECTED)] == ["10.10.1.90"]
    everything = flow_alerts(scorer, flows, params={"min_bytes_out": 0}, rule_id="oslo-flows", detected_at=DETECTED)
    assert [alert["entity"]["id"] for alert in everything] == ["10.10.1.90", "203.0.113.188"]
    assert [alert["evidence"]["rule_id"] for alert in everything] == ["oslo-flows", "oslo-flows"]
    strict = flow_alerts(scorer, flows, params={"threshold": -0.05}, detected_at=DETECTED)
    assert [(alert["entity"]["id"], alert["severity"], alert["evidence"]["threshold"]) for alert in strict] == [
        ("10.10.1.90", "low", -0.05)]
    assert len(flow_alerts(scorer, flows, params={"threshold": "-0.05", "min_bytes_out": None})) == 1
    with pytest.raises(ValueError, match="unknown flow_anomaly rule params"):
        flow_alerts(scorer, flows, params={"treshold": -0.05})
    with pytest.raises(ValueError, match="must be numbers"):
        flow_alerts(scorer, flows, params={"min_bytes_out": "a lot"})
    assert set(RULE_KINDS) == {"flow_anomaly"}
    assert {name: default for name, (default, _) in RULE_KINDS["flow_anomaly"]["params"].items()} == {
        "threshold": None, "min_bytes_out": 1000}


def test_anomalous_flows_of_one_source_in_one_millisecond_become_one_alert():
    second = dict(PROBE, dst_port=3389)
    alerts = flow_alerts(FixedScores([-0.01, -0.06]), [PROBE, second], params={"min_bytes_out": 0},
                         detected_at=DETECTED)
    assert len(alerts) == 1
    assert (alerts[0]["count"], alerts[0]["evidence"]["dst_port"], alerts[0]["severity"]) == (2, 3389, "high")


def test_evaluation_on_generated_episodes(scorer):
    # the figures of models/flow_anomaly/MODEL_CARD.md (python models/flow_anomaly/train.py)
    figures = evaluate(scorer, *generate(seed=11))
    assert figures["exfiltration_episodes"] == 10
    assert figures["exfiltration_episode_recall"] == 1.0
    assert figures["exfiltration_flow_recall"] == 1.0
    assert figures["background_flows"] > 18_000
    assert figures["background_false_positive_rate"] < 0.005


def test_flows_scored_in_a_batch_carry_their_score_and_the_model(scorer, trained):
    from impetus.detect.streams import FlowScoring

    exfiltration, https = FlowScoring(scorer).score([EXFILTRATION, HTTPS])
    model = {"name": "flow_anomaly", "version": trained[1]["version"], "threshold": trained[1]["threshold"]}
    assert exfiltration["flow_score"]["model"] == https["flow_score"]["model"] == model
    assert exfiltration["flow_score"]["score"] < model["threshold"] < https["flow_score"]["score"]
    assert {k: v for k, v in exfiltration.items() if k != "flow_score"} == EXFILTRATION
    # no model loaded yet: flows pass on, marked unscored
    assert FlowScoring(None).score([HTTPS]) == [dict(HTTPS, flow_score=None)]


def test_source_watch_judges_flows_by_the_score_attached_upstream():
    from impetus.detect.streams import SourceWatch
    from impetus.rules import RuleBook, defaults_from, rule_kinds

    book = RuleBook({}, defaults_from(rule_kinds(), ["flow_anomaly"]))
    watch = SourceWatch(scored_upstream=True)
    assert watch.MODELS == ()  # the scoring stage holds the model and follows announced versions
    model = {"name": "flow_anomaly", "version": "cde26a63b469", "threshold": 0.0}
    _, alerts = watch.on_event(None, dict(EXFILTRATION, flow_score={"score": -0.0693, "model": model}), book)
    assert [(a["category"], a["entity"]["id"], a["evidence"]["score"], a["detector"]["version"]) for a in alerts] == [
        ("flow_anomaly", "10.10.1.90", -0.0693, "cde26a63b469")]
    assert watch.on_event(None, dict(HTTPS, flow_score={"score": 0.12, "model": model}), book)[1] == []
    assert watch.on_event(None, dict(EXFILTRATION, flow_score=None), book)[1] == []


def test_a_flow_message_cannot_bring_its_own_score():
    import json

    from impetus.schemas import PayloadRejected, check_payload

    hostile = dict(EXFILTRATION, flow_score={"score": 5.0, "model": {"name": "x", "version": "y", "threshold": 0}})
    with pytest.raises(PayloadRejected, match="flow_score"):
        check_payload("network.flows", json.dumps(hostile))
