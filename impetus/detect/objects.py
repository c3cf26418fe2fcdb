"""Extra object detectors for the video job: any ONNX model in the MLflow registry that follows the contract.

A weapon detector is such a slot: no trained one can be had offline, so the job declares what it
accepts and loads whatever is registered under the names in ``IMPETUS_VIDEO_DETECTORS`` (their
``@champion`` version). The contract (``CONTRACT``), checked when a model is loaded:

- MLmodel metadata: ``contract: impetus-detector/1``, ``classes`` (names, by class index) and
  ``input_size`` ``[height, width]``;
- input ``images``: float32 ``[N, 3, height, width]``, RGB scaled to 0..1 (the frame is resized);
- output ``detections``: float32 ``[N, K, 6]``: ``x1, y1, x2, y2`` relative to the image (0..1),
  ``score``, ``class index``; rows scoring 0 are padding.

Detections go into the frame's analysis (``objects``) and ``video.detections``; an ``object_alert``
rule (model, classes, min_score) turns those of its classes into ``object_detected`` alerts.
:func:`build_colour_detector` builds a small real detector of this kind (strongly red regions), used
by the tests and as an example of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT = "impetus-detector/1"
INPUT = "images"
OUTPUT = "detections"

RULE_KINDS = {
    "object_alert": {
        "description": "Raise object_detected when a registered detector (IMPETUS_VIDEO_DETECTORS) finds one of "
                       "the classes in a frame with at least min_score.",
        "params": {
            "model": (None, "registered model name of the detector"),
            "classes": ("*", "comma-separated class names to alert on, or * for all"),
            "min_score": (0.5, "lowest detection score that alerts"),
        },
    },
}


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[int, int, int, int]  # x, y, w, h in pixels of the frame

    def as_dict(self, model: str, version: str) -> dict:
        return {"model": model, "version": version, "label": self.label, "score": round(self.score, 3),
                "box": list(self.box)}


class ObjectDetector:
    """One registered detector, run by onnxruntime on whole frames."""

    def __init__(self, name: str, version: str, onnx_bytes: bytes, metadata: dict):
        if metadata.get("contract") != CONTRACT:
            raise ValueError(f"{name} version {version} does not declare contract {CONTRACT} in its metadata "
                             f"(got {metadata.get('contract')!r}); see impetus.detect.objects")
        classes, size = metadata.get("classes"), metadata.get("input_size")
        if not isinstance(classes, list) or not classes or not (isinstance(size, list) and len(size) == 2):
            raise ValueError(f"{name} version {version}: metadata needs classes (a list) and input_size [h, w]")
        self.name, self.version = name, str(version)
        self.classes, self.size = [str(c) for c in classes], (int(size[0]), int(size[1]))
        self.onnx_bytes = onnx_bytes
        self._session = None

    def __getstate__(self):
        return dict(self.__dict__, _session=None)

    def _open(self):
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(self.onnx_bytes, sess_options=options,
                                                         providers=["CPUExecutionProvider"])
            names = ([i.name for i in self._session.get_inputs()], [o.name for o in self._session.get_outputs()])
            if INPUT not in names[0] or OUTPUT not in names[1]:
                raise ValueError(f"{self.name} version {self.version}: needs input {INPUT!r} and output {OUTPUT!r}, "
                                 f"has {names[0]} -> {names[1]}")
        return self._session

    def detect(self, frame) -> list[Detection]:
        import cv2
        import numpy as np

        height, width = frame.shape[:2]
        rgb = cv2.cvtColor(cv2.resize(frame, (self.size[1], self.size[0])), cv2.COLOR_BGR2RGB)
        batch = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        (rows,) = self._open().run([OUTPUT], {INPUT: batch})
        found = []
        for x1, y1, x2, y2, score, index in rows[0]:
            if score <= 0 or not 0 <= int(index) < len(self.classes):
                continue
            left, top = int(max(0.0, x1) * width), int(max(0.0, y1) * height)
            right, bottom = int(min(1.0, x2) * width), int(min(1.0, y2) * height)
            found.append(Detection(self.classes[int(index)], float(score), (left, top, right - left, bottom - top)))
        return sorted(found, key=lambda d: -d.score)


class RegisteredDetectors:
    """The detectors named in ``settings.video_detectors``, each kept at its registry ``@champion``.

    The registry is asked again at most every ``check_seconds`` (the ``video_detectors_check_seconds``
    setting), between two frames: a promoted version (``impetus models promote NAME V``) is loaded and
    used from the next frame on, without a restart. A name without a champion is skipped and reported
    once; a version that fails to load or breaks the contract is reported and the one in use is kept;
    an unreachable registry keeps what is loaded.
    """

    def __init__(self, settings, log=print, check_seconds: float | None = None, clock=None):
        import time

        self.settings, self.log = settings, log
        self.names = [n.strip() for n in settings.video_detectors.split(",") if n.strip()]
        self.check_seconds = settings.video_detectors_check_seconds if check_seconds is None else check_seconds
        self.clock = clock or time.monotonic
        self.loaded: dict[str, ObjectDetector] = {}
        self.reported: set[tuple[str, str]] = set()
        self.checked_at: float | None = None

    def current(self) -> list[ObjectDetector]:
        """The detectors to run on the next frame (the registry checked first when it is time)."""
        if self.names and (self.checked_at is None or self.clock() - self.checked_at >= self.check_seconds):
            self.checked_at = self.clock()
            self.refresh()
        return [self.loaded[name] for name in self.names if name in self.loaded]

    def refresh(self) -> None:
        from impetus.registry import champion_version, load_artefact, mlflow_client

        try:
            client = mlflow_client(self.settings)
            champions = {name: champion_version(client, name) for name in self.names}
        except Exception as err:  # people counting and anonymisation go on without the extra detectors
            self._once(("registry", type(err).__name__), f"video detectors: registry at "
                       f"{self.settings.mlflow_tracking_uri} not reachable ({type(err).__name__}: {err}); "
                       f"keeping {self._in_use()}")
            return
        for name, champion in champions.items():
            if champion is None:
                self._once((name, "none"), f"video detector {name}: no @champion in the registry; not run")
                continue
            version = str(champion.version)
            current = self.loaded.get(name)
            if current is not None and current.version == version:
                continue
            try:
                detector, version = load_artefact(self.settings, name, version)
                if not isinstance(detector, ObjectDetector):
                    raise ValueError(f"not a detector of contract {CONTRACT}")
                detector._open()  # its input and output are checked now, not on a frame
            except Exception as err:  # a broken version must not stop the job or replace a working one
                self._once((name, version), f"video detector {name}: version {version} not loaded "
                           f"({type(err).__name__}: {err}); " +
                           (f"keeping version {current.version}" if current else "not run"))
                continue
            self.log(f"video detector {name}: " + (f"version {current.version} -> {version}" if current
                                                   else f"version {version}") +
                     f", classes {', '.join(detector.classes)}")
            self.loaded[name] = detector

    def _in_use(self) -> str:
        return ", ".join(f"{d.name} {d.version}" for d in self.loaded.values()) or "none"

    def _once(self, key: tuple[str, str], line: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.log(line)


def object_alerts(frame: dict, rules: list[dict]) -> list[dict]:
    """``object_detected`` alerts for the frame's ``objects`` that an ``object_alert`` rule asks for."""
    from impetus.alerts import make_alert

    alerts = []
    for rule in rules:
        params = rule["params"]
        wanted = {c.strip() for c in str(params.get("classes", "*")).split(",")}
        for found in frame.get("objects") or []:
            if found["model"] != params.get("model") or found["score"] < float(params.get("min_score", 0.5)):
                continue
            if "*" not in wanted and found["label"] not in wanted:
                continue
            alerts.append(make_alert(
                tenant=frame["tenant"], category="object_detected",
                severity="critical" if found["score"] >= 0.9 else "high",
                title=f"{found['label']} ({found['score']:.2f}) on {frame['camera_id']} in {frame.get('zone') or '-'}",
                detector={"kind": "model", "name": found["model"], "version": found["version"]},
                entity={"type": "camera", "id": frame["camera_id"]},
                event_time=frame["event_time"],
                evidence={"label": found["label"], "score": found["score"], "frame_seq": frame["frame_seq"],
                          "zone": frame.get("zone"), "box": ",".join(str(v) for v in found["box"]),
                          "rule_id": rule["rule_id"]},
                countermeasure=(f"Confirm on {frame['camera_id']} live before acting; if confirmed, alert the police "
                                f"and reveal the sealed frame for them (impetus evidence reveal)."),
            ))
    return alerts


def build_colour_detector(grid: int = 4, size: int = 64) -> bytes:
    """An ONNX detector of the contract that finds strongly red regions: per cell of a ``grid`` x ``grid``
    split of the ``size`` x ``size`` input, score = mean of max(0, R - max(G, B)) (class 0, ``red_object``)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cells = grid * grid
    boxes = np.array([[[c / grid, r / grid, (c + 1) / grid, (r + 1) / grid] for r in range(grid) for c in range(grid)]],
                     dtype=np.float32)
    step = size // grid
    nodes = [
        helper.make_node("Split", ["images", "split_sizes"], ["r", "g", "b"], axis=1),
        helper.make_node("Max", ["g", "b"], ["gb"]),
        helper.make_node("Sub", ["r", "gb"], ["diff"]),
        helper.make_node("Relu", ["diff"], ["red"]),
        helper.make_node("AveragePool", ["red"], ["pooled"], kernel_shape=[step, step], strides=[step, step]),
        helper.make_node("Reshape", ["pooled", "score_shape"], ["scores"]),          # [N, cells, 1]
        helper.make_node("Shape", ["scores"], ["score_dims"]),
        helper.make_node("Slice", ["score_dims", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "box_tail"], ["box_dims"], axis=0),
        helper.make_node("Expand", ["boxes", "box_dims"], ["batch_boxes"]),           # [N, cells, 4]
        helper.make_node("Mul", ["scores", "zero_f"], ["classes"]),                   # class 0
        helper.make_node("Concat", ["batch_boxes", "scores", "classes"], [OUTPUT], axis=2),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "split_sizes"),
        numpy_helper.from_array(np.array([-1, cells, 1], dtype=np.int64), "score_shape"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([cells, 4], dtype=np.int64), "box_tail"),
        numpy_helper.from_array(boxes, "boxes"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero_f"),
    ]
    graph = helper.make_graph(
        nodes, "red_object_detector",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", 3, size, size])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", cells, 6])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="impetus")
    onnx.checker.check_model(model)
    return model.SerializeToString()


COLOUR_DETECTOR_METADATA = {"contract": CONTRACT, "classes": ["red_object"], "input_size": [64, 64]}
