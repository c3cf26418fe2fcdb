"""Retraining from the lake: candidate vs ``@champion`` on a held-out window, promotion by declared margin.

:func:`retrain` is what ``impetus models retrain <name>``, ``jobs/batch/retrain_model.py`` and the
weekly Airflow DAG run:

1. Spark reads the model's training table (``models/lifecycle.yaml``: ``trained_on``) at its current
   Delta version, pinned so that the run is reproducible from what it logs;
2. the newest ``holdout_days`` (counted back from the table's newest event) are held out; the
   candidate is trained on everything before;
3. the candidate and the current champion are scored on the same held-out rows;
4. one MLflow run logs the parameters, the table and its version, the window, both sets of metrics,
   the decision and its reason, and the model (registered as a new version, with its signature);
5. if :func:`impetus.registry.judge` says so, ``@champion`` moves to it and ``models.control`` tells
   the streaming jobs to load it. Otherwise the version stays a candidate, tagged ``rejected`` with
   the comparison.

The trainers (:class:`FlowTrainer`, :class:`BaselineTrainer`) are plain Python over pandas
frames, unit-tested without Spark or MLflow.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from impetus.config import Settings
from impetus.lake import progress, table_exists, table_path
from impetus.registry import (
    TAG_DECISION, TAG_REASON, Lifecycle, champion_version, download, experiment_id, judge,
    lifecycle, log_baseline, log_flow_model, mlflow_client, read_artefact, require_broker, set_champion,
)


class RetrainingError(RuntimeError):
    """A retraining cannot run as asked (no table, too little data); the message says what to do."""


@dataclass
class TrainingData:
    table: str
    version: int
    train: object  # pandas DataFrame
    holdout: object
    cutoff: str     # first instant of the held-out window (ISO, UTC)
    newest: str     # newest event in the table


def read_training_data(spark, settings: Settings, spec: Lifecycle, columns: list[str],
                       where: str | None = None) -> TrainingData:
    """The training table at its current version (rows matching the SQL condition ``where``), split at
    ``newest - holdout_days``."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = table_path(settings, spec.trained_on)
    if not table_exists(spark, path):
        raise RetrainingError(f"{spec.trained_on} does not exist at {path}: land and build the lake first "
                              f"(impetus lake build)")
    version = int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])
    frame = spark.read.format("delta").option("versionAsOf", version).load(path)
    if where:
        frame = frame.where(where)
    stamp = F.to_timestamp(F.col(spec.time_column))
    bounds = frame.select(F.min(stamp).alias("oldest"), F.max(stamp).alias("newest")).collect()[0]
    oldest, newest = bounds["oldest"], bounds["newest"]
    if newest is None:
        raise RetrainingError(f"{spec.trained_on} (version {version}) has no rows to train on")
    window = timedelta(days=spec.holdout_days)
    if newest - oldest < 2 * window:
        # a young lake: hold out the newest share of what there is rather than all of it
        window = (newest - oldest) * spec.holdout_fraction
    cutoff = newest - window
    chosen = frame.select(*columns).withColumn("_held_out", stamp >= F.lit(cutoff))
    rows = chosen.toPandas()
    import pandas as pd

    for column in rows.columns:
        if pd.api.types.is_datetime64_any_dtype(rows[column]) and rows[column].dt.tz is None:
            rows[column] = rows[column].dt.tz_localize("UTC")  # Spark hands back session-time (UTC) naive values
    held = rows["_held_out"].astype(bool)
    train = rows[~held].drop(columns="_held_out").reset_index(drop=True)
    holdout = rows[held].drop(columns="_held_out").reset_index(drop=True)
    return TrainingData(spec.trained_on, version, train, holdout, _iso(cutoff), _iso(newest))


def _iso(moment) -> str:
    from datetime import timezone

    if moment.tzinfo is None:  # Spark hands back session-time (UTC) naive datetimes
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- trainers

class FlowTrainer:
    """flow_anomaly: IsolationForest on the flow features before the window, judged on the window.

    Metrics: ``holdout_false_positive_rate`` (share of held-out flows the model flags: the held-out
    traffic stands for normal traffic), ``attack_flow_recall`` (share of the labelled synthetic
    exfiltration flows of :data:`CHALLENGE` it flags) and their balance,
    ``balanced_accuracy = ((1 - fpr) + recall) / 2``.
    """

    name = "flow_anomaly"
    CHALLENGE_SEED = 11

    def __init__(self):
        self._attacks = None

    @property
    def columns(self):
        from impetus.detect.flow_anomaly import FEATURES

        return ["event_time", *FEATURES]

    @staticmethod
    def matrix(frame):
        import numpy as np

        from impetus.detect.flow_anomaly import FEATURES

        return np.asarray(frame[FEATURES].to_numpy(dtype="float32"), dtype=np.float32)

    def attacks(self):
        """Feature rows of the exfiltration flows of the labelled replay (synthetic, seeded)."""
        if self._attacks is None:
            from impetus.detect.flow_anomaly import feature_matrix
            from impetus.replay import flows as flow_replay

            documents, truth = flow_replay.generate(seed=self.CHALLENGE_SEED)
            kinds = {episode["episode_id"]: episode["kind"] for episode in truth}
            labels = flow_replay.flow_labels(documents, truth)
            chosen = [doc for doc, label in zip(documents, labels)
                      if label is not None and kinds[label] == "exfiltration"]
            self._attacks = feature_matrix(chosen)
        return self._attacks

    def fit(self, data: TrainingData, seed: int):
        from impetus.detect.flow_anomaly import FlowScorer, train_flow_model

        source = f"{data.table} version {data.version}, events before {data.cutoff}"
        onnx_bytes, metadata = train_flow_model(self.matrix(data.train), seed=seed, source=source)
        return FlowScorer(onnx_bytes, metadata)

    def evaluate(self, scorer, data: TrainingData) -> dict:
        held = scorer.score_matrix(self.matrix(data.holdout))
        attacks = scorer.score_matrix(self.attacks())
        fpr = float((held < scorer.threshold).mean()) if len(held) else 0.0
        recall = float((attacks < scorer.threshold).mean()) if len(attacks) else 0.0
        return {"balanced_accuracy": round(((1 - fpr) + recall) / 2, 6),
                "holdout_false_positive_rate": round(fpr, 6), "attack_flow_recall": round(recall, 6),
                "holdout_rows": int(len(held)), "attack_rows": int(len(attacks))}

    def params(self, scorer) -> dict:
        meta = scorer.metadata
        return {key: meta[key] for key in ("algorithm", "n_estimators", "max_samples", "contamination",
                                           "threshold", "seed", "sklearn_version", "skl2onnx_version")}

    def log(self, scorer, data: TrainingData, folder: Path):
        return log_flow_model(scorer.model_bytes, scorer.metadata, self.matrix(data.holdout.head(5)), self.name)

    @staticmethod
    def build(scorer) -> str:
        return scorer.metadata["version"]


class BaselineTrainer:
    """urban_baseline: median and MAD per sensor and local hour of week before the window.

    Metrics: ``holdout_mae`` (mean absolute error of the cell median against the held-out readings;
    a reading without a cell counts as predicted 0), ``holdout_coverage`` (share of held-out readings
    with a cell) and ``holdout_median_abs_z`` (typical robust z-score on the window: how tight the
    spread is).
    """

    name = "urban_baseline"
    columns = ["tenant", "sensor_id", "kind", "value", "event_time"]

    def fit(self, data: TrainingData, seed: int):
        from impetus.detect.urban import TIMEZONES, build_baseline

        train = data.train[data.train["tenant"].isin(list(TIMEZONES))]
        if train.empty:
            raise RetrainingError(f"{data.table} has no readings of a tenant with a known time zone "
                                  f"({', '.join(sorted(TIMEZONES))}) before {data.cutoff}")
        return build_baseline(train, created_from=f"{data.table} version {data.version}, "
                                                  f"events before {data.cutoff}")

    def evaluate(self, baseline, data: TrainingData) -> dict:
        import statistics

        from impetus.detect.urban import score_reading

        errors, zs, covered = [], [], 0
        for row in data.holdout.to_dict("records"):
            score = score_reading(row, baseline)
            if score is None:
                errors.append(abs(float(row["value"])))
                continue
            covered += 1
            errors.append(abs(score["deviation"]))
            zs.append(abs(score["z"]))
        count = len(errors)
        return {"holdout_mae": round(sum(errors) / count, 6) if count else float("nan"),
                "holdout_coverage": round(covered / count, 6) if count else 0.0,
                "holdout_median_abs_z": round(statistics.median(zs), 6) if zs else float("nan"),
                "holdout_rows": count}

    def params(self, baseline) -> dict:
        return {"min_samples": baseline["min_samples"], "mad_scale": baseline["mad_scale"],
                "mad_floor_fraction": baseline["mad_floor"]["fraction"],
                "mad_floor_absolute": baseline["mad_floor"]["absolute"],
                "training_window_start": baseline["training_window"]["start"],
                "training_window_end": baseline["training_window"]["end"]}

    def log(self, baseline, data: TrainingData, folder: Path):
        return log_baseline(baseline, folder, data.holdout[["tenant", "sensor_id", "kind", "event_time"]].head(5),
                            self.name)

    @staticmethod
    def build(baseline) -> str:
        return baseline["version"]


TRAINERS = {"flow_anomaly": FlowTrainer, "urban_baseline": BaselineTrainer}


# --------------------------------------------------------------------------- the run

def retrain(settings: Settings, name: str, *, seed: int = 0, promote: bool = True, spark=None,
            log=progress, control_topic: str | None = None) -> dict:
    """Train, evaluate, log, register and (maybe) promote ``name``; returns a summary of the run."""
    import math

    import mlflow

    if name not in TRAINERS:
        raise RetrainingError(f"no retraining for model {name!r}; known: {', '.join(sorted(TRAINERS))}")
    spec = lifecycle(settings, name)
    trainer = TRAINERS[name]()
    if promote:
        require_broker(settings, f"to announce a promoted {name} on {control_topic or settings.control_topic}")
    started = time.monotonic()
    own_spark = spark is None
    if own_spark:
        from impetus.spark import spark_session

        spark = spark_session(settings, f"impetus-retrain-{name}")
    try:
        log(f"[retrain {name}] reading {spec.trained_on} ...")
        data = read_training_data(spark, settings, spec, list(trainer.columns))
    finally:
        if own_spark:
            spark.stop()
    log(f"[retrain {name}] {spec.trained_on} version {data.version}: {len(data.train)} rows before "
        f"{data.cutoff}, {len(data.holdout)} held out (to {data.newest})")
    if len(data.train) < spec.min_training_rows:
        raise RetrainingError(f"{spec.trained_on} version {data.version} has {len(data.train)} rows before the "
                              f"held-out window ({data.cutoff}); {name} needs at least {spec.min_training_rows} "
                              f"(models/lifecycle.yaml min_training_rows)")
    if len(data.holdout) == 0:
        raise RetrainingError(f"{spec.trained_on} has no rows in the held-out window from {data.cutoff}")

    client = mlflow_client(settings)
    experiment = experiment_id(settings, client, name)
    current = champion_version(client, name)
    champion_metrics = None
    if current is not None:
        log(f"[retrain {name}] scoring the champion, version {current.version}, on the same window ...")
        champion = read_artefact(name, download(settings, f"models:/{name}/{current.version}"), str(current.version))
        champion_metrics = trainer.evaluate(champion, data)

    log(f"[retrain {name}] training the candidate ...")
    candidate = trainer.fit(data, seed)
    metrics = trainer.evaluate(candidate, data)
    decision = judge(spec, metrics.get(spec.metric), None if champion_metrics is None
                     else champion_metrics.get(spec.metric))
    with mlflow.start_run(experiment_id=experiment, run_name=f"retrain {name}") as run, \
            tempfile.TemporaryDirectory(prefix=f"impetus-{name}-") as scratch:
        mlflow.log_params({"model": name, "training_table": data.table, "training_table_version": data.version,
                           "time_column": spec.time_column, "holdout_days": spec.holdout_days,
                           "holdout_from": data.cutoff, "holdout_to": data.newest, "train_rows": len(data.train),
                           "holdout_rows": len(data.holdout), "seed": seed, "metric": spec.metric,
                           "higher_is_better": spec.higher_is_better, "margin": spec.margin,
                           "margin_kind": spec.margin_kind, "build": trainer.build(candidate),
                           **trainer.params(candidate)})
        mlflow.log_metrics({key: value for key, value in metrics.items()
                            if isinstance(value, (int, float)) and not math.isnan(value)})
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_{key}": value for key, value in champion_metrics.items()
                                if isinstance(value, (int, float)) and not math.isnan(value)})
        comparison = {"metric": spec.metric, "higher_is_better": spec.higher_is_better, "margin": spec.margin,
                      "margin_kind": spec.margin_kind, "candidate": metrics, "champion": champion_metrics,
                      "champion_version": None if current is None else str(current.version),
                      "required": decision.required, "promote": decision.promote, "reason": decision.reason,
                      "training_table": data.table, "training_table_version": data.version,
                      "holdout_from": data.cutoff, "holdout_to": data.newest}
        mlflow.log_dict(comparison, "comparison.json")
        mlflow.set_tags({"impetus.model": name, "impetus.training_table": f"{data.table}@v{data.version}",
                         TAG_DECISION: "promoted" if decision.promote and promote else
                         ("eligible" if decision.promote else "rejected"),
                         TAG_REASON: decision.reason[:4000]})
        info = trainer.log(candidate, data, Path(scratch))
        run_id = run.info.run_id
    version = str(info.registered_model_version)
    client.set_model_version_tag(name, version, "impetus.training_table", f"{data.table}@v{data.version}")
    client.set_model_version_tag(name, version, TAG_REASON, decision.reason[:4000])
    control = None
    if decision.promote and promote:
        control = set_champion(settings, client, name, version, decision.reason, topic=control_topic)
        log(f"[retrain {name}] version {version} promoted to @champion: {decision.reason}")
    else:
        client.set_model_version_tag(name, version, TAG_DECISION, "eligible" if decision.promote else "rejected")
        log(f"[retrain {name}] version {version} stays a candidate: {decision.reason}")
    return {"model": name, "version": version, "promoted": bool(decision.promote and promote),
            "reason": decision.reason, "metric": spec.metric, "candidate": metrics, "champion": champion_metrics,
            "champion_version": None if current is None else str(current.version), "run_id": run_id,
            "experiment": f"impetus/{name}", "training_table": data.table, "training_table_version": data.version,
            "holdout_from": data.cutoff, "holdout_to": data.newest, "train_rows": len(data.train),
            "holdout_rows": len(data.holdout), "control": control,
            "seconds": round(time.monotonic() - started, 1)}


def promote_version(settings: Settings, name: str, version: str, reason: str,
                    control_topic: str | None = None) -> dict:
    """Make ``version`` the champion by hand (a rollback, or an override), with the reason recorded."""
    if not reason.strip():
        raise RetrainingError("a manual promotion needs a reason (--reason); it is recorded on the version")
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise RetrainingError(f"no version {version} of model {name!r} in {settings.mlflow_tracking_uri} "
                              f"(impetus models list)") from None
    return set_champion(settings, client, name, version, f"manual: {reason.strip()}", topic=control_topic)


def summary_lines(result: dict) -> list[str]:
    verdict = "PROMOTED to @champion" if result["promoted"] else "not promoted (stays a candidate)"
    lines = [f"{result['model']} version {result['version']}: {verdict}",
             f"  reason    {result['reason']}",
             f"  trained   {result['training_table']} version {result['training_table_version']}, "
             f"{result['train_rows']} rows before {result['holdout_from']}",
             f"  held out  {result['holdout_rows']} rows {result['holdout_from']} .. {result['holdout_to']}",
             f"  candidate {json.dumps(result['candidate'])}"]
    if result["champion"] is not None:
        lines.append(f"  champion  v{result['champion_version']} {json.dumps(result['champion'])}")
    lines.append(f"  mlflow    experiment {result['experiment']}, run {result['run_id']}")
    return lines
