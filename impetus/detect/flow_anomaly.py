"""Flow-anomaly model: an IsolationForest over single ``network.flows`` records, exported to ONNX.

One model serves both paths, so that stream and batch agree to the float:
the streaming job scores each flow with :class:`FlowScorer` (onnxruntime,
batched) and raises :func:`flow_anomaly_alert`; batch evaluation and the
model card figures use the same scorer on generated data (:func:`evaluate`).
Training (:func:`train_flow_model`) is run by ``models/flow_anomaly/train.py``.

The model sees one flow at a time, with no state: :func:`flow_features` maps a
flow to :data:`FEATURES` (log sizes, duration, bytes per packet, direction
ratio, port class, destination outside the private ranges). Aggregates such
as "many ports from one source" are the port-scan rule's job, not this one's.

Score: the ONNX graph made by skl2onnx's IsolationForest converter has two
outputs, ``label`` (1 normal, -1 anomalous at the training offset) and
``scores``. We use ``scores``, which equals scikit-learn's
``decision_function`` (``score_samples - offset_``): LOWER IS MORE ANOMALOUS,
and a flow is anomalous when its score is below ``metadata["threshold"]``
(0.0 by default: the training ``contamination`` quantile).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from impetus.alerts import make_alert

MODEL_NAME = "flow_anomaly"
INPUT_NAME = "features"
SCORE_OUTPUT = "scores"
# what skl2onnx's IsolationForest converter needs (TreeEnsembleRegressor of ai.onnx.ml 3); onnxruntime 1.31 loads both
TARGET_OPSETS = {"": 17, "ai.onnx.ml": 3}
DEFAULT_CONTAMINATION = 0.002
DEFAULT_THRESHOLD = 0.0
N_ESTIMATORS = 50
MAX_SAMPLES = 256
MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"

FEATURES = [
    "log_bytes_out",
    "log_bytes_in",
    "log_duration_ms",
    "log_bytes_per_packet",
    "log_out_in_ratio",
    "dst_port_well_known",
    "dst_external",
]

# Addresses a flow can reach without leaving the organisation. Not ipaddress's ``is_private``: that also
# counts the documentation ranges (192.0.2.0/24...) as private, and those stand for the internet here.
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
    "::1/128", "fc00::/7", "fe80::/10"))

RULE_KINDS = {
    "flow_anomaly": {
        "description": "Tunes the flow-anomaly model for a tenant: which score counts as anomalous and which "
                       "flows are too small to alert on. Alerts still name the model as detector; the rule id "
                       "is added to their evidence.",
        "params": {
            "threshold": (None, "score below which a flow is anomalous (lower = more anomalous); "
                                "None keeps the model's metadata['threshold']"),
            "min_bytes_out": (1000, "flows that sent fewer bytes raise no alert: single scan probes (44-84 "
                                    "bytes) are the port_scan rule's finding; 0 alerts on every anomalous flow"),
        },
    },
}

# (margin below the threshold, severity): first match wins
SEVERITY_MARGINS = ((0.10, "critical"), (0.05, "high"), (0.02, "medium"), (0.0, "low"))


@lru_cache(maxsize=1 << 16)  # a network talks to few distinct peers; parsing dominates feature time
def is_internal(address: str) -> bool:
    """Whether ``address`` lies in a private, loopback, link-local or carrier-grade NAT range.

    An address that does not parse counts as external: an unknown peer deserves the suspicion.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in INTERNAL_NETWORKS if network.version == parsed.version)


def flow_features(flow: dict) -> list[float]:
    """The model input for one ``network.flows`` document, in the order of :data:`FEATURES`.

    Optional counters that are absent count as 0.
    """
    bytes_out = flow.get("bytes_out") or 0
    bytes_in = flow.get("bytes_in") or 0
    packets = flow.get("packets") or 0
    duration_ms = flow.get("duration_ms") or 0
    return [
        math.log1p(bytes_out),
        math.log1p(bytes_in),
        math.log1p(duration_ms),
        math.log1p((bytes_out + bytes_in) / max(packets, 1)),
        # > 0 when the source sent more than it received: uploads, exfiltration
        math.log1p(bytes_out) - math.log1p(bytes_in),
        1.0 if flow["dst_port"] < 1024 else 0.0,
        0.0 if is_internal(flow["dst_ip"]) else 1.0,
    ]


def feature_matrix(flows: list[dict]):
    """float32 array (n, len(FEATURES)): the one dtype both scikit-learn trees and the ONNX graph compare in."""
    import numpy as np

    return np.asarray([flow_features(flow) for flow in flows], dtype=np.float32).reshape(len(flows), len(FEATURES))


def fit_isolation_forest(flows, seed: int = 0, contamination: float = DEFAULT_CONTAMINATION):
    """The scikit-learn IsolationForest behind :func:`train_flow_model`, before export.

    ``flows``: flow documents, or their :func:`feature_matrix` (e.g. rows of ``gold.flow_features``)."""
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=N_ESTIMATORS, max_samples=MAX_SAMPLES, contamination=contamination,
                            random_state=seed)
    return model.fit(flows if hasattr(flows, "shape") else feature_matrix(flows))


def export_onnx(model) -> bytes:
    """Serialised ONNX graph of a fitted IsolationForest over :data:`FEATURES`."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    # model_optim=False: skl2onnx's identity-removal pass is quadratic in the graph size (seconds for
    # 50 trees) and leaves the scores unchanged
    graph = to_onnx(model, initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURES)]))],
                    target_opset=dict(TARGET_OPSETS), model_optim=False)
    # skl2onnx lists the opsets in set order, which changes with PYTHONHASHSEED: sort them so that
    # the same forest always serialises to the same bytes (and the same version)
    opsets = sorted((opset.domain, opset.version) for opset in graph.opset_import)
    del graph.opset_import[:]
    for domain, version in opsets:
        graph.opset_import.add(domain=domain, version=version)
    return graph.SerializeToString()


def train_flow_model(flows, seed: int = 0, contamination: float = DEFAULT_CONTAMINATION,
                     source: str = "caller-supplied flows") -> tuple[bytes, dict]:
    """Fit the IsolationForest on (assumed normal) ``flows`` and export it: (ONNX bytes, metadata).

    ``flows`` are flow documents or their :func:`feature_matrix`.

    Same flows, seed and library versions give identical bytes, hence the same version.
    ``source`` says where the flows came from, for the model card and registry.
    """
    import sklearn
    import skl2onnx

    if len(flows) == 0:
        raise ValueError("no flows to train on")
    onnx_bytes = export_onnx(fit_isolation_forest(flows, seed, contamination))
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    metadata = {
        "name": MODEL_NAME,
        "version": digest[:12],
        "sha256": digest,
        "algorithm": "sklearn.ensemble.IsolationForest",
        "features": list(FEATURES),
        "input": INPUT_NAME,
        "score_output": SCORE_OUTPUT,
        "score_meaning": "IsolationForest decision_function (score_samples - offset_): lower is more anomalous; "
                         "anomalous when below threshold",
        "threshold": DEFAULT_THRESHOLD,
        "contamination": contamination,
        "n_estimators": N_ESTIMATORS,
        "max_samples": MAX_SAMPLES,
        "training_size": len(flows),
        "seed": seed,
        "training_data": source,
        "sklearn_version": sklearn.__version__,
        "skl2onnx_version": skl2onnx.__version__,
        "onnx_opsets": dict(TARGET_OPSETS),
    }
    return onnx_bytes, metadata


def save_model(directory: str | Path, onnx_bytes: bytes, metadata: dict) -> Path:
    """Write ``model.onnx`` and ``model.json`` into ``directory`` (created if needed); returns it."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(onnx_bytes)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def load_model(directory: str | Path) -> tuple[bytes, dict]:
    """(ONNX bytes, metadata) saved by :func:`save_model`; ValueError if the two files do not belong together."""
    folder = Path(directory)
    onnx_bytes = (folder / MODEL_FILE).read_bytes()
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    if hashlib.sha256(onnx_bytes).hexdigest() != metadata.get("sha256"):
        raise ValueError(f"{folder / MODEL_FILE} does not match the sha256 in {folder / METADATA_FILE}: "
                         f"retrain or copy both files together")
    return onnx_bytes, metadata


class FlowScorer:
    """Scores flows with the exported model in onnxruntime (CPU, float32, batched).

    Picklable: it keeps the model bytes and opens the inference session on first use, so a
    streaming operator can be shipped to workers and restored without re-reading files.
    """

    def __init__(self, model: bytes | str | Path, metadata: dict, threads: int = 1):
        if list(metadata.get("features", [])) != FEATURES:
            raise ValueError(f"model was trained on features {metadata.get('features')}, this code computes "
                             f"{FEATURES}: retrain it with models/flow_anomaly/train.py")
        self.model_bytes = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        self.metadata = dict(metadata)
        self.threshold = float(metadata["threshold"])
        # one thread per operator: Flink already runs one operator per task slot
        self.threads = threads
        self._session = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    def _open(self):
        # ONNX Runtime is only touched on a thread Python started (impetus.embedded: PyFlink's thread mode)
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(self.model_bytes, sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def score(self, flows: list[dict]) -> list[float]:
        """One score per flow (lower is more anomalous), in input order."""
        if not flows:
            return []
        return [float(value) for value in self.score_matrix(feature_matrix(flows))]

    def score_matrix(self, matrix):
        """Scores of rows already turned into :data:`FEATURES` (float32 array (n, len(FEATURES)))."""
        import numpy as np

        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float32)
        from impetus.embedded import on_python_thread

        (scores,) = on_python_thread(self._run, np.asarray(matrix, dtype=np.float32))
        return scores.reshape(-1)

    def _run(self, matrix):
        return self._open().run([SCORE_OUTPUT], {INPUT_NAME: matrix})

    def is_anomalous(self, score: float, threshold: float | None = None) -> bool:
        return score < (self.threshold if threshold is None else threshold)


def anomaly_severity(score: float, threshold: float) -> str:
    """By how far the score lies below the threshold: low, medium (0.02), high (0.05), critical (0.10).

    ``informational`` for a score that is not below the threshold at all.
    """
    margin = threshold - score
    if margin <= 0:
        return "informational"
    return next(severity for floor, severity in SEVERITY_MARGINS if margin >= floor)


def _countermeasure(flow: dict) -> str:
    source, destination = flow["src_ip"], flow["dst_ip"]
    if not is_internal(source):
        return (f"Block {source} at the perimeter firewall and check {destination} for exposed or "
                f"compromised services.")
    if not is_internal(destination):
        return (f"Isolate host {source} and check it for data exfiltration; block {destination} at the egress "
                f"firewall and preserve the flow records.")
    return (f"Check host {source} for compromise (lateral movement) and restrict it to its usual services "
            f"until cleared.")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def flow_anomaly_alert(flow: dict, score: float, metadata: dict, detected_at: datetime | None = None,
                       threshold: float | None = None, rule_id: str | None = None) -> dict:
    """The ``flow_anomaly`` alert for one flow the model scored as anomalous.

    ``threshold`` overrides ``metadata["threshold"]`` (a tenant's ``flow_anomaly`` rule); ``rule_id`` names
    that rule in the evidence.
    """
    threshold = float(metadata["threshold"] if threshold is None else threshold)
    bytes_out = flow.get("bytes_out") or 0
    evidence = {
        "dst_ip": flow["dst_ip"],
        "dst_port": flow["dst_port"],
        "protocol": flow["protocol"],
        "bytes_out": bytes_out,
        "bytes_in": flow.get("bytes_in") or 0,
        "packets": flow.get("packets") or 0,
        "duration_ms": flow.get("duration_ms") or 0,
        "score": round(score, 6),
        "threshold": threshold,
    }
    if rule_id:
        evidence["rule_id"] = rule_id
    return make_alert(
        tenant=flow["tenant"],
        category="flow_anomaly",
        severity=anomaly_severity(score, threshold),
        title=(f"Anomalous flow {flow['src_ip']} -> {flow['dst_ip']}:{flow['dst_port']}/{flow['protocol']}, "
               f"{_size(bytes_out)} out"),
        detector={"kind": "model", "name": metadata["name"], "version": metadata["version"]},
        entity={"type": "ip", "id": flow["src_ip"]},
        event_time=flow["event_time"],
        evidence=evidence,
        countermeasure=_countermeasure(flow),
        detected_at=detected_at,
    )


def rule_params(params: dict | None) -> dict:
    """A ``flow_anomaly`` rule's params with defaults filled in; ValueError on unknown names."""
    defaults = {name: default for name, (default, _) in RULE_KINDS["flow_anomaly"]["params"].items()}
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise ValueError(f"unknown flow_anomaly rule params {unknown}; known: {sorted(defaults)}")
    settings = {**defaults, **(params or {})}
    try:
        return {"threshold": None if settings["threshold"] is None else float(settings["threshold"]),
                "min_bytes_out": int(settings["min_bytes_out"] or 0)}
    except (TypeError, ValueError):
        raise ValueError(f"flow_anomaly rule params must be numbers (threshold may be null), got {params}") from None


def flow_alerts(scorer: FlowScorer, flows: list[dict], params: dict | None = None, rule_id: str | None = None,
                detected_at: datetime | None = None) -> list[dict]:
    """Score a batch and return the alerts, in input order (see :func:`alerts_for_scores`)."""
    return alerts_for_scores(flows, scorer.score(flows), scorer.metadata, params, rule_id, detected_at)


def alerts_for_scores(flows: list[dict], scores: list[float], metadata: dict, params: dict | None = None,
                      rule_id: str | None = None, detected_at: datetime | None = None) -> list[dict]:
    """The alerts for flows already scored by the model described by ``metadata``, in input order.

    ``params`` are a ``flow_anomaly`` rule's (see :data:`RULE_KINDS`). Anomalous flows of one source that
    start in the same millisecond would get the same alert id; they become one alert for the most anomalous
    of them, with ``count`` saying how many there were.
    """
    settings = rule_params(params)
    threshold = float(metadata["threshold"]) if settings["threshold"] is None else settings["threshold"]
    findings: dict[str, list] = {}
    for flow, score in zip(flows, scores):
        if not score < threshold or (flow.get("bytes_out") or 0) < settings["min_bytes_out"]:
            continue
        alert = flow_anomaly_alert(flow, score, metadata, detected_at, threshold, rule_id)
        found = findings.get(alert["alert_id"])
        if found is None:
            findings[alert["alert_id"]] = [alert, score, 1]
        else:
            found[2] += 1
            if score < found[1]:
                found[0], found[1] = alert, score
    alerts = []
    for alert, _, count in findings.values():
        alert["count"] = count
        alerts.append(alert)
    return alerts


def evaluate(scorer: FlowScorer, documents: list[dict], truth: list[dict],
             threshold: float | None = None) -> dict:
    """Detection figures on labelled flows from :func:`impetus.replay.flows.generate`.

    An exfiltration episode counts as detected when at least one of its flows is anomalous; the
    false-positive rate is over background flows (those of no episode).
    """
    from impetus.replay.flows import flow_labels

    threshold = scorer.threshold if threshold is None else threshold
    labels = flow_labels(documents, truth)
    kinds = {episode["episode_id"]: episode["kind"] for episode in truth}
    flagged = [scorer.is_anomalous(score, threshold) for score in scorer.score(documents)]
    detected: set[str] = set()
    counts = {"background": [0, 0], "exfiltration": [0, 0], "port_scan": [0, 0]}  # kind -> [flows, flagged]
    for label, hit in zip(labels, flagged):
        kind = "background" if label is None else kinds[label]
        counts[kind][0] += 1
        counts[kind][1] += hit
        if hit and label is not None:
            detected.add(label)
    exfiltrations = [episode_id for episode_id, kind in kinds.items() if kind == "exfiltration"]
    found = sum(1 for episode_id in exfiltrations if episode_id in detected)

    def share(hits: int, total: int) -> float:
        return round(hits / total, 6) if total else 0.0

    return {
        "threshold": threshold,
        "flows": len(documents),
        "exfiltration_episodes": len(exfiltrations),
        "exfiltration_episodes_detected": found,
        "exfiltration_episode_recall": share(found, len(exfiltrations)),
        "exfiltration_flow_recall": share(counts["exfiltration"][1], counts["exfiltration"][0]),
        "background_flows": counts["background"][0],
        "background_false_positives": counts["background"][1],
        "background_false_positive_rate": share(counts["background"][1], counts["background"][0]),
        "port_scan_flows_flagged": share(counts["port_scan"][1], counts["port_scan"][0]),
    }
