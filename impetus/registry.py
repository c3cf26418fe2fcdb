"""MLflow: every retraining run is tracked, every model version registered, promotion moves ``@champion``.

The lifecycle of each model is declared in ``models/lifecycle.yaml`` (:class:`Lifecycle`): the
table it is trained on, the held-out window, the metric, its direction and the margin a
candidate must win by. :func:`judge` applies that declaration; :func:`set_champion` moves the
``champion`` alias, records why on the model version, and announces the version on
``models.control``, from which the streaming jobs load it without a restart.

Registered models and what they hold (an MLflow model directory each):

- ``flow_anomaly``: ``mlflow.onnx`` flavour; ``model.onnx`` plus the training metadata in the
  MLmodel file's ``metadata``;
- ``urban_baseline``: ``mlflow.pyfunc`` flavour (predicts the usual value of a reading); the
  baseline itself is ``artifacts/baseline.json``.

Jobs never import the training code: :func:`load_artefact` downloads a version and returns what
the detectors use (a :class:`impetus.detect.flow_anomaly.FlowScorer` or a baseline dict), with the
*registry* version as the version alerts carry (the artefact's content hash stays in ``build``).

Locally the tracking store is SQLite under ``var/mlflow`` (``IMPETUS_MLFLOW_TRACKING_URI``) and
artefacts go to ``var/mlflow/artifacts`` (``IMPETUS_MLFLOW_ARTIFACT_URI``); on a cluster both
point at an MLflow server.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from impetus.config import ConfigError, Settings

LIFECYCLE_FILE = "models/lifecycle.yaml"
CHAMPION = "champion"
EXPERIMENT_PREFIX = "impetus/"
# tags written on every registered version
TAG_DECISION = "impetus.decision"
TAG_REASON = "impetus.reason"


@dataclass(frozen=True)
class Lifecycle:
    name: str
    description: str
    trained_on: str
    time_column: str
    holdout_days: float
    holdout_fraction: float
    metric: str
    higher_is_better: bool
    margin: float
    margin_kind: str
    minimum: float | None
    min_training_rows: int
    used_by: tuple[str, ...]
    card: str
    min_recall: float = 1.0


def load_lifecycles(settings: Settings) -> dict[str, Lifecycle]:
    """Every model's declaration in ``models/lifecycle.yaml``; ConfigError on a malformed one."""
    path = settings.home / LIFECYCLE_FILE
    try:
        declared = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    found = {}
    for name, body in declared.items():
        try:
            spec = Lifecycle(
                name=name, description=str(body["description"]), trained_on=str(body["trained_on"]),
                time_column=str(body["time_column"]), holdout_days=float(body["holdout_days"]),
                holdout_fraction=float(body.get("holdout_fraction", 0.2)),
                metric=str(body["metric"]), higher_is_better=bool(body["higher_is_better"]),
                margin=float(body["margin"]), margin_kind=str(body.get("margin_kind", "absolute")),
                minimum=None if body.get("minimum") is None else float(body["minimum"]),
                min_training_rows=int(body.get("min_training_rows", 1)),
                used_by=tuple(body.get("used_by") or ()), card=str(body.get("card", "")),
                min_recall=float(body.get("min_recall", 1.0)))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: model {name!r} is malformed ({err!r}); see the comment at its top") from None
        if spec.margin_kind not in ("absolute", "relative"):
            raise ConfigError(f"{path}: {name}.margin_kind must be absolute or relative, not {spec.margin_kind!r}")
        if spec.margin < 0 or spec.holdout_days <= 0 or not 0 < spec.holdout_fraction < 1:
            raise ConfigError(f"{path}: {name} needs margin >= 0, holdout_days > 0 and 0 < holdout_fraction < 1")
        found[name] = spec
    return found


def lifecycle(settings: Settings, name: str) -> Lifecycle:
    known = load_lifecycles(settings)
    if name not in known:
        raise ConfigError(f"no model {name!r} in {LIFECYCLE_FILE}; declared: {', '.join(sorted(known))}")
    return known[name]


# --------------------------------------------------------------------------- the promotion rule

@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: float
    champion: float | None
    required: float | None  # the value the candidate had to reach (or pass, for lower-is-better)


def judge(spec: Lifecycle, candidate: float, champion: float | None) -> Decision:
    """Promote or not, and why, for ``candidate``'s metric against the champion's on the same window."""
    if candidate is None or (isinstance(candidate, float) and math.isnan(candidate)):
        return Decision(False, f"the candidate has no {spec.metric} on the held-out window", candidate, champion, None)
    better = "higher" if spec.higher_is_better else "lower"
    if champion is None:
        if spec.minimum is None:
            return Decision(True, f"no champion yet; {spec.metric} {candidate:.4f}", candidate, None, None)
        reached = candidate >= spec.minimum if spec.higher_is_better else candidate <= spec.minimum
        verdict = "reaches" if reached else "does not reach"
        return Decision(reached, f"no champion yet; {spec.metric} {candidate:.4f} {verdict} the declared minimum "
                                 f"{spec.minimum:g}", candidate, None, spec.minimum)
    step = spec.margin * abs(champion) if spec.margin_kind == "relative" else spec.margin
    required = champion + step if spec.higher_is_better else champion - step
    won = candidate >= required if spec.higher_is_better else candidate <= required
    margin = f"{spec.margin:g}" + (" of the champion's value" if spec.margin_kind == "relative" else "")
    verb = "beats" if won else "does not beat"
    return Decision(won, f"{spec.metric} {candidate:.4f} vs champion {champion:.4f} ({better} is better): "
                         f"{verb} it by the declared margin {margin} (needed {required:.4f})",
                    candidate, champion, required)


# --------------------------------------------------------------------------- MLflow access

def mlflow_client(settings: Settings):
    """An MlflowClient on the configured tracking and registry store (created locally if needed)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(settings: Settings, client, name: str) -> str:
    """The experiment ``impetus/<model>``, created with the configured artefact location."""
    title = EXPERIMENT_PREFIX + name
    found = client.get_experiment_by_name(title)
    if found is not None:
        return found.experiment_id
    location = settings.mlflow_artifact_uri.rstrip("/") + "/" + name if settings.mlflow_artifact_uri else None
    return client.create_experiment(title, artifact_location=location,
                                    tags={"impetus.model": name, "impetus.lifecycle": LIFECYCLE_FILE})


def champion_version(client, name: str):
    """The ModelVersion behind ``name@champion``, or None when there is none (or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def model_uri(name: str, version: str | int) -> str:
    return f"models:/{name}/{version}"


def control_message(name: str, version: str | int, now: datetime | None = None) -> dict:
    """The ``models.control`` document that tells the jobs to load ``name`` version ``version``."""
    from impetus.alerts import utc_iso

    return {"model": name, "version": str(version), "action": "load", "uri": model_uri(name, version),
            "event_time": utc_iso(now or datetime.now(timezone.utc))}


class AnnouncementFailed(ConfigError):
    """A promotion could not be announced on ``models.control`` (the broker is not reachable)."""


def require_broker(settings: Settings, why: str) -> None:
    from impetus.stack import _listening

    if not _listening(settings.kafka_bootstrap):
        raise AnnouncementFailed(f"no Kafka broker at {settings.kafka_bootstrap}, needed {why}: start it with "
                                 f"`impetus stack up` (or set IMPETUS_KAFKA_BOOTSTRAP)")


def publish_control(settings: Settings, message: dict, topic: str | None = None) -> None:
    """Announce ``message`` on ``topic`` (default: the configured ``control_topic``)."""
    from kafka.errors import KafkaError

    from impetus.replay.producer import make_producer
    from impetus.schemas import check_payload

    topic = topic or settings.control_topic
    payload = json.dumps(message).encode()
    check_payload("models.control", payload)
    try:
        producer = make_producer(settings)
        try:
            producer.send(topic, key=message["model"].encode(), value=payload).get(timeout=30)
        finally:
            producer.close()
    except KafkaError as err:
        raise AnnouncementFailed(
            f"{message['model']} version {message['version']} is @champion, but announcing it on {topic} failed "
            f"({err}); the running jobs keep the previous version until it is announced: start the broker "
            f"(impetus stack up) and run `impetus models promote {message['model']} {message['version']} "
            f"--reason re-announce`") from None


def set_champion(settings: Settings, client, name: str, version: str | int, reason: str,
                 announce: bool = True, topic: str | None = None) -> dict:
    """Move ``name@champion`` to ``version``, record why on it, announce it on ``topic`` (default: the
    configured ``control_topic``, ``models.control``).

    Returns the control message (published only when ``announce``)."""
    version = str(version)
    previous = champion_version(client, name)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, TAG_DECISION, "promoted")
    client.set_model_version_tag(name, version, TAG_REASON, reason[:4000])
    if previous is not None and str(previous.version) != version:
        client.set_model_version_tag(name, str(previous.version), "impetus.replaced_by", version)
    message = control_message(name, version)
    if announce:
        publish_control(settings, message, topic)
    return message


def versions(settings: Settings, name: str) -> list[dict]:
    """Every registered version of ``name``, newest first, with its metrics, aliases and decision."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    try:
        found = client.search_model_versions(f"name='{name}'")
        declared = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, number in (declared.items() if isinstance(declared, dict)
                          else ((a.alias, a.version) for a in declared)):
        aliases.setdefault(str(number), []).append(alias)
    rows = []
    for version in sorted(found, key=lambda v: int(v.version), reverse=True):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        rows.append({"model": name, "version": str(version.version),
                     "aliases": sorted(aliases.get(str(version.version), [])),
                     "created": datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc)
                     .isoformat(timespec="seconds"),
                     "decision": (version.tags or {}).get(TAG_DECISION, ""),
                     "reason": (version.tags or {}).get(TAG_REASON, ""),
                     "run_id": version.run_id, "metrics": metrics})
    return rows


# --------------------------------------------------------------------------- artefacts

def download(settings: Settings, uri: str) -> Path:
    """A local copy of a model directory (``models:/name/version`` or ``models:/name@alias``)."""
    import mlflow

    mlflow_client(settings)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))


def model_metadata(folder: Path) -> dict:
    """The ``metadata`` of an MLflow model directory's MLmodel file."""
    body = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")) or {}
    return dict(body.get("metadata") or {})


def load_artefact(settings: Settings, name: str, reference: str | int = "@" + CHAMPION):
    """(what the detector uses, registry version) for ``name`` at a version number or ``@alias``.

    ``flow_anomaly`` -> FlowScorer; ``urban_baseline`` -> baseline dict. The artefact's own content
    hash is checked and kept as ``build``; the registry version becomes ``version``.
    """
    reference = str(reference)
    client = mlflow_client(settings)
    if reference.startswith("@"):
        version = str(client.get_model_version_by_alias(name, reference[1:]).version)
    else:
        version = str(client.get_model_version(name, reference).version)
    folder = download(settings, model_uri(name, version))
    return read_artefact(name, folder, str(version)), str(version)


def champion_artefact(settings: Settings, name: str, log=print):
    """What a job starts with: the registry's ``name@champion``, or None when the registry has none
    (or cannot be reached: said, and the job falls back to the file built by ``impetus models build``)."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None  # no local registry yet
    try:
        client = mlflow_client(settings)
        if champion_version(client, name) is None:
            return None
        artefact, version = load_artefact(settings, name, "@" + CHAMPION)
    except Exception as err:  # the registry is an improvement over the file, not a precondition
        log(f"registry at {uri} not usable for {name} ({type(err).__name__}: {err}); using the built file")
        return None
    log(f"{name}: version {version} (@{CHAMPION} in the MLflow registry)")
    return artefact


def read_artefact(name: str, folder: Path, version: str):
    """What a detector uses, read from a downloaded MLflow model directory of ``name``."""
    if name == "flow_anomaly":
        import hashlib

        from impetus.detect.flow_anomaly import FlowScorer

        metadata = model_metadata(folder)
        onnx_bytes = (folder / "model.onnx").read_bytes()
        if hashlib.sha256(onnx_bytes).hexdigest() != metadata.get("sha256"):
            raise ValueError(f"{folder}/model.onnx does not match the sha256 registered with it")
        return FlowScorer(onnx_bytes, dict(metadata, version=version, build=metadata["version"]))
    if name == "urban_baseline":
        from impetus.detect.urban import load_baseline

        baseline = load_baseline(folder / "artifacts" / "baseline.json")
        return dict(baseline, version=version, build=baseline["version"])
    metadata = model_metadata(folder)
    from impetus.detect.objects import CONTRACT, ObjectDetector

    if metadata.get("contract") == CONTRACT:
        return ObjectDetector(name, version, (folder / "model.onnx").read_bytes(), metadata)
    raise ConfigError(f"no loader for model {name!r}: not flow_anomaly, urban_baseline, or a detector declaring "
                      f"contract {CONTRACT}")


def log_flow_model(onnx_bytes: bytes, metadata: dict, sample, registered_name: str):
    """Log (and register) the ONNX flow model in the active run; returns MLflow's ModelInfo."""
    import mlflow.onnx
    import numpy as np
    import onnx
    from mlflow.models import infer_signature

    from impetus.detect.flow_anomaly import FlowScorer

    scores = np.asarray(FlowScorer(onnx_bytes, metadata).score_matrix(sample), dtype=np.float32).reshape(-1, 1)
    return mlflow.onnx.log_model(onnx.load_from_string(onnx_bytes), name="model",
                                 signature=infer_signature(sample, scores),
                                 onnx_execution_providers=["CPUExecutionProvider"],
                                 metadata=_plain(metadata), registered_model_name=registered_name)


def log_baseline(baseline: dict, folder: Path, sample, registered_name: str):
    """Log (and register) the urban baseline as a pyfunc model in the active run; returns ModelInfo."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from impetus.detect.urban import save_baseline

    import warnings

    path = save_baseline(folder / "baseline.json", baseline)
    model = _baseline_model()
    expected = model.expected(baseline, sample)
    with warnings.catch_warnings():
        # the signature is given; MLflow still suggests type hints and an input example
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(name="model", python_model=model, artifacts={"baseline": str(path)},
                                       signature=infer_signature(sample, expected),
                                       metadata={key: baseline[key] for key in
                                                 ("name", "version", "training_window", "samples", "created_from")},
                                       registered_model_name=registered_name, pip_requirements=["pandas"])


def _baseline_model():
    import mlflow.pyfunc

    class UrbanBaselineModel(mlflow.pyfunc.PythonModel):
        """Predicts the usual value (cell median) of readings: columns tenant, sensor_id, kind, event_time."""

        def load_context(self, context):
            from impetus.detect.urban import load_baseline

            self.baseline = load_baseline(context.artifacts["baseline"])

        def predict(self, context, model_input, params=None):
            return self.expected(self.baseline, model_input)

        @staticmethod
        def expected(baseline, frame):
            import pandas as pd

            from impetus.detect.urban import score_reading

            values = []
            for row in frame.to_dict("records"):
                score = score_reading(dict(row, value=0.0), baseline)
                values.append(float("nan") if score is None else float(score["median"]))
            return pd.Series(values, name="expected", dtype="float64")

    return UrbanBaselineModel()


def _plain(metadata: dict) -> dict:
    # MLmodel is YAML: keep to plain values
    return json.loads(json.dumps(metadata))
