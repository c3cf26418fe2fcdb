"""Alert thresholds tuned from operators' decisions (``impetus models retrain alert_thresholds``).

Operators confirm or dismiss alerts (``alerts.feedback`` -> ``silver.alerts.decision``). For each
tenant and tunable kind with enough decided alerts, the threshold is moved to the strictest value
that still keeps ``min_recall`` of the confirmed alerts of the training window, choosing the most
precise such value (ties: the least strict). The tuned threshold and the one in force are then
compared on the held-out window (the newest decisions); when the tuned one is more precise by the
declared margin and still keeps ``min_recall`` of the confirmed alerts there, the rule carrying it is
published on the ``rules`` topic, which the jobs apply without a restart.

Tuning only tightens: the lake holds the alerts the current threshold raised, not those a looser one
would have, so nothing can be said about loosening. Declared in ``models/lifecycle.yaml``
(``alert_thresholds``); each run is one MLflow run in the ``impetus/alert_thresholds`` experiment.

Tunable kinds (:data:`KNOBS`): how strong an alert was, and which rule parameter sets the cut:

- ``flow_anomaly``: strength = -score (lower scores are more anomalous); parameter ``threshold``
  (a flow alerts when its score is below it);
- ``urban_anomaly``: strength = z of alerts above the usual value raised by the robust z-score
  (not zero counts); parameter ``k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from impetus.config import Settings


@dataclass(frozen=True)
class Knob:
    kind: str        # rule kind (and alert category)
    param: str       # rule parameter holding the cut
    # rule parameter value for a cut on strength, and back
    to_param: object
    from_param: object

    def strength(self, alert: dict) -> float | None:
        evidence = alert.get("evidence") or {}
        if isinstance(evidence, list):  # a Spark map as (key, value) pairs
            evidence = dict(evidence)
        try:
            if self.kind == "flow_anomaly":
                return -float(evidence["score"])
            if evidence.get("direction") != "above" or evidence.get("trigger") != "robust_z":
                return None
            return float(evidence["z"])
        except (KeyError, TypeError, ValueError):
            return None


KNOBS = {
    # a flow alerts when score < threshold, i.e. strength > -threshold: keep strength >= cut with threshold
    # just above -cut (scores are kept to 1e-6)
    "flow_anomaly": Knob("flow_anomaly", "threshold", lambda cut: round(-cut + 1e-6, 7), lambda value: -value),
    "urban_anomaly": Knob("urban_anomaly", "k", lambda cut: round(cut, 4), lambda value: value),
}


def figures(rows: list[tuple[float, bool]], cut: float) -> dict:
    """Precision and recall of keeping the alerts of strength >= ``cut`` among decided ``rows``
    (strength, confirmed)."""
    kept = [confirmed for strength, confirmed in rows if strength >= cut]
    confirmed = sum(1 for _, c in rows if c)
    hits = sum(kept)
    return {"decided": len(rows), "confirmed": confirmed, "kept": len(kept), "kept_confirmed": hits,
            "dismissed_held_back": sum(1 for s, c in rows if not c and s < cut),
            "precision": round(hits / len(kept), 6) if kept else float("nan"),
            "recall": round(hits / confirmed, 6) if confirmed else float("nan")}


def best_cut(rows: list[tuple[float, bool]], current: float, min_recall: float) -> float | None:
    """The most precise cut >= ``current`` that keeps ``min_recall`` of the confirmed ``rows``
    (ties: the least strict); None when there is no confirmed alert to keep."""
    if not any(confirmed for _, confirmed in rows):
        return None
    best, best_precision = current, figures(rows, current)["precision"]
    for cut in sorted({strength for strength, _ in rows if strength > current}):
        result = figures(rows, cut)
        if result["recall"] < min_recall:
            break  # stricter cuts keep fewer confirmed alerts still
        if result["precision"] > best_precision:
            best, best_precision = cut, result["precision"]
    return best


@dataclass
class Proposal:
    tenant: str
    kind: str
    current: float          # parameter value in force
    tuned: float | None     # proposed parameter value
    train: dict
    holdout_current: dict
    holdout_tuned: dict
    promote: bool
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def propose(tenant: str, knob: Knob, current_param: float, train: list[dict], holdout: list[dict],
            margin: float, min_recall: float, min_decisions: int) -> Proposal:
    """Tune one (tenant, kind) from its decided alerts (dicts with ``evidence`` and ``decision``)."""
    def rows(alerts):
        found = []
        for alert in alerts:
            strength = knob.strength(alert)
            if strength is not None and alert.get("decision") in ("confirmed", "dismissed"):
                found.append((strength, alert["decision"] == "confirmed"))
        return found

    train_rows, held_rows = rows(train), rows(holdout)
    current = knob.from_param(current_param)
    base = figures(held_rows, current)

    def result(tuned, train_fig, tuned_fig, promote, reason):
        return Proposal(tenant, knob.kind, current_param, tuned, train_fig, base, tuned_fig, promote, reason)

    if len(train_rows) < min_decisions or len(held_rows) < max(1, min_decisions // 4):
        return result(None, figures(train_rows, current), {}, False,
                      f"too few decided alerts: {len(train_rows)} to tune on (need {min_decisions}), "
                      f"{len(held_rows)} held out (need {max(1, min_decisions // 4)})")
    cut = best_cut(train_rows, current, min_recall)
    if cut is None:
        return result(None, figures(train_rows, current), {}, False,
                      "no confirmed alert in the training window: nothing to keep, so nothing to tune against")
    tuned_param = knob.to_param(cut)
    held = figures(held_rows, cut)
    if cut == current:
        return result(tuned_param, figures(train_rows, cut), held, False,
                      f"{knob.param} {current_param:g} in force is already the most precise that keeps "
                      f"{min_recall:g} of the confirmed alerts")
    before, after = base["precision"], held["precision"]
    if math.isnan(after) or held["recall"] < min_recall:
        return result(tuned_param, figures(train_rows, cut), held, False,
                      f"{knob.param} {tuned_param:g} keeps only {held['recall']:g} of the held-out confirmed "
                      f"alerts (needs {min_recall:g})")
    won = (after - before) >= margin
    return result(tuned_param, figures(train_rows, cut), held, won,
                  f"held-out precision {after:.4f} with {knob.param} {tuned_param:g} vs {before:.4f} with "
                  f"{current_param:g}, recall {held['recall']:.4f}: "
                  + ("beats" if won else "does not beat") + f" it by the declared margin {margin:g}")


def current_params(rules: dict[str, dict], tenant: str, kind: str) -> tuple[dict, str | None]:
    """(params in force for ``tenant`` given the ``rules`` on the topic, id of the tenant's own rule of
    ``kind`` or None)."""
    from impetus.rules import RuleBook, defaults_from, rule_kinds

    book = RuleBook(rules, defaults_from(rule_kinds(), [kind]))
    rule = book.single(tenant, kind)
    params = dict(rule["params"]) if rule else {}
    own = next((r["rule_id"] for r in rules.values() if r["tenant"] == tenant and r["kind"] == kind), None)
    return params, own


def tune(settings: Settings, *, promote: bool = True, spark=None, log=None, rules_topic: str = "rules") -> dict:
    """Tune every (tenant, kind) with enough decisions, log one MLflow run, publish the winners' rules."""
    import time

    import mlflow

    from impetus.registry import TAG_DECISION, experiment_id, lifecycle, mlflow_client, require_broker
    from impetus.retraining import RetrainingError, read_training_data
    from impetus.rules import make_rule, publish

    from impetus.lake import progress

    log = log or progress
    spec = lifecycle(settings, "alert_thresholds")
    require_broker(settings, f"to read the rules in force from {rules_topic}")
    started = time.monotonic()
    own_spark = spark is None
    if own_spark:
        from impetus.spark import spark_session

        spark = spark_session(settings, "impetus-tune-thresholds")
    try:
        categories = ", ".join(f"'{kind}'" for kind in KNOBS)
        data = read_training_data(spark, settings, spec, ["tenant", "category", "evidence", "decision", "decided_at"],
                                  where=f"decision IS NOT NULL AND category IN ({categories})")
    except RetrainingError as err:
        raise RetrainingError(f"{err} (no decided alerts yet: operators' decisions arrive on alerts.feedback)") \
            from None
    finally:
        if own_spark:
            spark.stop()
    log(f"[tune] {data.table} version {data.version}: {len(data.train)} decided alerts before {data.cutoff}, "
        f"{len(data.holdout)} held out")
    from impetus.rules import read_rules

    in_force = read_rules(settings, rules_topic)
    proposals = []
    for (tenant, kind), _ in data.train.groupby(["tenant", "category"]):
        params, own = current_params(in_force, tenant, kind)
        knob = KNOBS[kind]
        if params.get(knob.param) is None:  # flow_anomaly without a rule value: the model's threshold
            recent = data.train[(data.train["tenant"] == tenant) & (data.train["category"] == kind)]
            evidence = recent.iloc[-1]["evidence"]
            params[knob.param] = float(dict(evidence or {}).get("threshold", 0.0))
        pick = (data.holdout["tenant"] == tenant) & (data.holdout["category"] == kind)
        chosen = (data.train["tenant"] == tenant) & (data.train["category"] == kind)
        proposal = propose(tenant, knob, float(params[knob.param]), data.train[chosen].to_dict("records"),
                           data.holdout[pick].to_dict("records"), spec.margin, spec.min_recall,
                           spec.min_training_rows)
        proposals.append((proposal, params, own))
        log(f"[tune] {tenant} {kind}: {proposal.reason}")

    client = mlflow_client(settings)
    published = []
    with mlflow.start_run(experiment_id=experiment_id(settings, client, "alert_thresholds"),
                          run_name="tune alert_thresholds") as run:
        mlflow.log_params({"training_table": data.table, "training_table_version": data.version,
                           "holdout_from": data.cutoff, "holdout_to": data.newest, "margin": spec.margin,
                           "min_recall": spec.min_recall, "min_decisions": spec.min_training_rows,
                           "rules_topic": rules_topic})
        for proposal, params, own in proposals:
            prefix = f"{proposal.tenant}.{proposal.kind}"
            for name, fig in (("current", proposal.holdout_current), ("tuned", proposal.holdout_tuned)):
                for key in ("precision", "recall"):
                    value = fig.get(key)
                    if isinstance(value, float) and not math.isnan(value):
                        mlflow.log_metric(f"{prefix}.holdout_{key}_{name}", value)
            if proposal.promote and promote:
                rule_id = own or f"tuned-{proposal.kind}"
                rule = make_rule(rule_id, proposal.tenant, proposal.kind,
                                 {**params, KNOBS[proposal.kind].param: proposal.tuned})
                publish(settings, [rule], rules_topic)
                published.append(rule)
                log(f"[tune] published {rule_id} for {proposal.tenant}: {KNOBS[proposal.kind].param} "
                    f"{proposal.current:g} -> {proposal.tuned:g}")
        mlflow.log_dict({"proposals": [p.as_dict() for p, _, _ in proposals], "published": published},
                        "comparison.json")
        mlflow.set_tags({"impetus.model": "alert_thresholds",
                         "impetus.training_table": f"{data.table}@v{data.version}",
                         TAG_DECISION: "promoted" if published else "rejected"})
        run_id = run.info.run_id
    return {"model": "alert_thresholds", "run_id": run_id, "experiment": "impetus/alert_thresholds",
            "training_table": data.table, "training_table_version": data.version, "holdout_from": data.cutoff,
            "holdout_to": data.newest, "proposals": [p.as_dict() for p, _, _ in proposals],
            "published": published, "seconds": round(time.monotonic() - started, 1)}


def summary_lines(result: dict) -> list[str]:
    lines = [f"alert_thresholds from {result['training_table']} version {result['training_table_version']}, "
             f"held out {result['holdout_from']} .. {result['holdout_to']}"]
    for proposal in result["proposals"]:
        verdict = "PUBLISHED" if any(r["tenant"] == proposal["tenant"] and r["kind"] == proposal["kind"]
                                     for r in result["published"]) else "kept"
        tuned = "-" if proposal["tuned"] is None else f"{proposal['tuned']:g}"
        lines.append(f"  {proposal['tenant']:<12} {proposal['kind']:<14} {proposal['current']:g} -> {tuned}  "
                     f"{verdict}: {proposal['reason']}")
    if not result["proposals"]:
        lines.append("  no tenant has decided alerts of a tunable kind yet")
    lines.append(f"  mlflow    experiment {result['experiment']}, run {result['run_id']}")
    return lines
