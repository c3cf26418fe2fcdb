"""The promotion rule, the lifecycle declarations, the trainers' figures and threshold tuning,
without Spark or MLflow."""

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from impetus.config import ConfigError, load_settings
from impetus.operators import _is_control
from impetus.registry import Lifecycle, control_message, judge, load_lifecycles
from impetus.retraining import BaselineTrainer, FlowTrainer, TrainingData
from impetus.tuning import KNOBS, best_cut, figures, propose

SPEC = Lifecycle(name="m", description="", trained_on="gold.x", time_column="event_time", holdout_days=7,
                 holdout_fraction=0.2, metric="score", higher_is_better=True, margin=0.01, margin_kind="absolute",
                 minimum=0.8, min_training_rows=1, used_by=(), card="")


def test_a_candidate_is_promoted_only_when_it_wins_by_the_margin():
    assert judge(SPEC, 0.95, 0.94).promote is True           # by exactly the margin
    refused = judge(SPEC, 0.9499, 0.94)
    assert refused.promote is False and refused.required == pytest.approx(0.95)
    assert "does not beat it by the declared margin 0.01 (needed 0.9500)" in refused.reason
    assert judge(SPEC, 0.93, 0.94).promote is False


def test_without_a_champion_the_declared_minimum_decides():
    assert judge(SPEC, 0.81, None).promote is True
    refused = judge(SPEC, 0.79, None)
    assert refused.promote is False and "does not reach the declared minimum 0.8" in refused.reason
    assert judge(dataclasses.replace(SPEC, minimum=None), 0.1, None).promote is True


def test_lower_is_better_with_a_relative_margin():
    mae = dataclasses.replace(SPEC, higher_is_better=False, margin=0.02, margin_kind="relative", minimum=None)
    assert judge(mae, 98.0, 100.0).promote is True     # 2 % lower
    assert judge(mae, 98.5, 100.0).promote is False
    assert "lower is better" in judge(mae, 98.5, 100.0).reason


def test_a_missing_metric_is_never_promoted():
    assert judge(SPEC, float("nan"), None).promote is False


def test_the_declared_lifecycles_load_and_a_bad_margin_kind_is_refused(tmp_path):
    declared = load_lifecycles(load_settings())
    assert set(declared) == {"flow_anomaly", "urban_baseline", "alert_thresholds"}
    assert declared["flow_anomaly"].trained_on == "gold.flow_features" and declared["flow_anomaly"].higher_is_better
    assert declared["urban_baseline"].margin_kind == "relative" and not declared["urban_baseline"].higher_is_better
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "lifecycle.yaml").write_text(
        "x:\n  description: d\n  trained_on: gold.x\n  time_column: t\n  holdout_days: 1\n  metric: m\n"
        "  higher_is_better: true\n  margin: 0.1\n  margin_kind: percent\n")
    with pytest.raises(ConfigError, match="margin_kind must be absolute or relative"):
        load_lifecycles(load_settings(env={"IMPETUS_HOME": str(tmp_path)}))


def test_control_messages_are_told_apart_from_rules():
    message = control_message("flow_anomaly", 3, datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert message == {"model": "flow_anomaly", "version": "3", "action": "load", "uri": "models:/flow_anomaly/3",
                       "event_time": "2026-05-01T00:00:00.000Z"}
    assert _is_control(json.dumps(message))
    assert not _is_control(json.dumps({"rule_id": "r", "tenant": "t", "kind": "investigation", "model": "x",
                                       "action": "load"}))
    assert not _is_control("{not json")


def _flow_frame(flows):
    from impetus.detect.flow_anomaly import FEATURES, flow_features

    return pd.DataFrame([dict(zip(FEATURES, flow_features(f)), event_time=f["event_time"]) for f in flows])


def test_the_flow_trainer_scores_normal_traffic_and_the_labelled_exfiltrations():
    from impetus.replay.flows import normal_flows

    flows = normal_flows(seed=1, n=3000)
    data = TrainingData("gold.flow_features", 4, _flow_frame(flows[:2400]), _flow_frame(flows[2400:]), "c", "n")
    trainer = FlowTrainer()
    model = trainer.fit(data, seed=0)
    figures_ = trainer.evaluate(model, data)
    assert figures_["holdout_rows"] == 600 and figures_["attack_rows"] > 10
    assert figures_["holdout_false_positive_rate"] < 0.02            # normal traffic stays quiet
    assert figures_["attack_flow_recall"] > 0.8                      # the 5 GB uploads stand out
    assert figures_["balanced_accuracy"] == pytest.approx(
        ((1 - figures_["holdout_false_positive_rate"]) + figures_["attack_flow_recall"]) / 2, abs=1e-6)
    assert "gold.flow_features version 4" in model.metadata["training_data"]


def test_the_baseline_trainer_measures_the_error_of_the_usual_value():
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
    rows = [{"tenant": "auckland", "sensor_id": "s1", "kind": "pedestrian_count",
             "value": 100.0 + (week % 2) * 10, "event_time": (start + timedelta(weeks=week, hours=h)).isoformat()}
            for week in range(10) for h in range(3)]
    train = pd.DataFrame(rows[:27])
    holdout = pd.DataFrame([dict(rows[0], value=130.0, event_time=(start + timedelta(weeks=10)).isoformat()),
                            dict(rows[0], sensor_id="unknown", value=40.0)])
    data = TrainingData("silver.sensor_readings", 2, train, holdout, "c", "n")
    trainer = BaselineTrainer()
    baseline = trainer.fit(data, seed=0)
    result = trainer.evaluate(baseline, data)
    # the Monday 00:00 cell has nine weeks: five of 100, four of 110, so its median is 100 and 130 is 30
    # off; the unknown sensor counts with the error of predicting 0
    assert result["holdout_coverage"] == 0.5 and result["holdout_mae"] == pytest.approx((30 + 40) / 2)


def _decided(strengths_confirmed, knob="flow_anomaly"):
    out = []
    for strength, confirmed in strengths_confirmed:
        evidence = ({"score": str(-strength), "threshold": "0.0"} if knob == "flow_anomaly"
                    else {"z": str(strength), "direction": "above", "trigger": "robust_z"})
        out.append({"evidence": evidence, "decision": "confirmed" if confirmed else "dismissed"})
    return out


def test_the_tuned_cut_is_the_most_precise_that_keeps_the_confirmed_alerts():
    rows = [(0.01, False), (0.02, False), (0.03, False), (0.05, True), (0.06, False), (0.08, True), (0.1, True)]
    assert best_cut(rows, 0.0, 1.0) == 0.05
    assert figures(rows, 0.05) == {"decided": 7, "confirmed": 3, "kept": 4, "kept_confirmed": 3,
                                   "dismissed_held_back": 3, "precision": 0.75, "recall": 1.0}
    assert best_cut(rows, 0.0, 0.6) == 0.08       # two of three confirmed kept, none dismissed
    assert best_cut([(0.1, False)], 0.0, 1.0) is None


def test_a_proposal_is_promoted_when_the_held_out_precision_rises_by_the_margin():
    train = _decided([(s / 100, s >= 5) for s in range(1, 11)] * 3)
    holdout = _decided([(0.02, False), (0.03, False), (0.04, False), (0.06, True), (0.09, True)])
    proposal = propose("oslo", KNOBS["flow_anomaly"], 0.0, train, holdout, margin=0.05, min_recall=0.95,
                       min_decisions=20)
    assert proposal.promote is True and proposal.tuned == pytest.approx(-0.05 + 1e-6)
    assert proposal.holdout_current["precision"] == 0.4 and proposal.holdout_tuned["precision"] == 1.0
    assert "beats it by the declared margin 0.05" in proposal.reason


def test_a_proposal_that_loses_confirmed_alerts_or_lacks_decisions_is_not_promoted():
    train = _decided([(z, z >= 8) for z in (6.5, 7, 7.5, 8, 9, 10)] * 4, knob="urban_anomaly")
    held = _decided([(6.5, True), (7, False), (7.5, False), (9, True), (10, False)], knob="urban_anomaly")
    losing = propose("auckland", KNOBS["urban_anomaly"], 6.0, train, held, 0.05, 0.95, 20)
    assert losing.tuned == 8 and losing.promote is False and "keeps only 0.5" in losing.reason
    few = propose("auckland", KNOBS["urban_anomaly"], 6.0, train[:5], [], 0.05, 0.95, 20)
    assert few.promote is False and few.reason.startswith("too few decided alerts")
