"""Video analytics without Flink: frames rejected with a reason, anonymisation checked by an independent
face detector (OpenCV's Haar cascade; the job finds faces with CenterFace), crowd density per zone."""

import base64
import os
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from impetus.detect import video
from impetus.replay.video import DEFAULT_CLIP, frames
from impetus.rules import RuleError, check_rule, make_rule

DATA = "/usr/share/doc/opencv-doc/examples/data"
# installed, files only, by `make vendor`
ASTRONAUT = Path(__file__).resolve().parents[2] / "var/vendor/scikit-image/skimage/data/astronaut.png"
IMAGES = {"messi5.jpg": f"{DATA}/messi5.jpg", "basketball1.png": f"{DATA}/basketball1.png",
          "basketball2.png": f"{DATA}/basketball2.png", "astronaut.png": str(ASTRONAUT),
          "grace_hopper.jpg": os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                                           "grace_hopper.jpg")}
HAAR = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def haar_faces(image):
    """The independent check: OpenCV's frontal-face Haar cascade with its usual settings."""
    found = HAAR.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(20, 20))
    return [tuple(int(v) for v in box) for box in found]


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def detectors():
    return video.PeopleDetector(), video.FaceDetector()


def message(image, encoding="jpeg", **changes):
    ok, data = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", image)
    doc = {"tenant": "padova", "camera_id": "cam-1", "zone": "piazza-nord", "event_time": "2026-05-01T21:00:00Z",
           "frame_seq": 0, "width": image.shape[1], "height": image.shape[0], "encoding": encoding,
           "image": base64.b64encode(data.tobytes()).decode("ascii")}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_no_face_the_independent_detector_finds_survives_anonymisation(name, detectors):
    people_detector, face_detector = detectors
    image = cv2.imread(IMAGES[name])
    assert image is not None, f"{IMAGES[name]} is missing: `make setup` installs it"
    before = haar_faces(image)
    assert before, f"the independent detector finds no face in {name} to begin with"
    analysed = video.analyse_frame(message(image), people_detector, face_detector)
    published = cv2.imdecode(np.frombuffer(base64.b64decode(analysed["anonymised_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    after = haar_faces(published)
    assert not [(face, hit) for face in before for hit in after if iou(face, hit) >= 0.3], (before, after)
    assert "image" not in analysed and analysed["faces"] >= 1


def test_frames_of_the_clip_publish_no_face_and_count_people_as_the_detector_does(detectors):
    people_detector, face_detector = detectors
    docs = list(frames(DEFAULT_CLIP, fps=2, limit=8))
    for doc in docs:
        raw = video.decode_frame(doc)
        analysed = video.analyse_frame(doc, people_detector, face_detector)
        assert analysed["people"] == len(people_detector.detect(raw))
        published = cv2.imdecode(np.frombuffer(base64.b64decode(analysed["anonymised_jpeg"]), np.uint8),
                                 cv2.IMREAD_COLOR)
        assert haar_faces(published) == []
        # every person is shaded: most of the inside of each box is the flat shade (a blurred face or
        # another box's outline may cross it)
        for x, y, w, h, _ in analysed["people_boxes"]:
            inside = published[y + h // 5:y + 4 * h // 5, x + w // 5:x + 4 * w // 5].astype(int)
            assert (np.abs(inside - 96).max(axis=2) <= 12).mean() >= 0.8
    assert sum(video.analyse_frame(d, people_detector, face_detector)["people"] for d in docs) > 0


def clip_frames(n):
    capture = cv2.VideoCapture(DEFAULT_CLIP)
    read = [capture.read()[1] for _ in range(n)]
    capture.release()
    return read


def test_a_person_the_people_detector_misses_is_shaded_while_moving(detectors):
    # frame 88 of vtest.avi: a small figure far back on the lawn (about x 244-274, y 54-92) that HOG,
    # which needs people ~85 px tall, does not find; the background model has seen frames 0-87
    clip = clip_frames(89)
    motion = video.MotionDetector()
    for frame in clip[:88]:
        motion.detect("padova|cam-1", frame)
    analysed = video.analyse_frame(message(clip[88]), *detectors, motion=motion)

    def covers(box, x, y):
        return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]

    assert analysed["people"] >= 4 and not any(covers(b, 260, 72) for b in analysed["people_boxes"])
    assert any(covers(b, 260, 72) for b in analysed["moving_boxes"])
    assert analysed["models"]["motion"].startswith("opencv-mog2-")
    published = cv2.imdecode(np.frombuffer(base64.b64decode(analysed["anonymised_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    patch, raw = published[66:80, 255:266].astype(float), clip[88][66:80, 255:266].astype(float)
    assert raw.std() > 20                                   # the figure is there in the frame as received
    assert abs(patch.mean() - 96) < 6 and patch.std() < 6   # and only the flat shade in what is published
    assert "moving_boxes" in video.detection_record(analysed)


def test_the_body_under_a_face_that_no_detector_took_for_a_person_is_shaded(detectors):
    people_detector, face_detector = detectors
    image = cv2.imread(IMAGES["grace_hopper.jpg"])    # a portrait: a face, and a person HOG does not find
    faces, people = face_detector.detect(image), people_detector.detect(image)
    assert len(faces) == 1 and people == []
    face = faces[0]
    # the shoulders and chest: from half a face below the chin, a quarter of a face high, as wide as the face
    top = face.y + face.h + face.h // 2
    region = (slice(top, top + face.h // 4), slice(face.x, face.x + face.w))
    assert top + face.h // 4 <= image.shape[0]
    analysed = video.analyse_frame(message(image), people_detector, face_detector)
    published = cv2.imdecode(np.frombuffer(base64.b64decode(analysed["anonymised_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    raw, patch = image[region].astype(float), published[region].astype(float)
    assert raw.std() > 20                                   # uniform and medals, as received
    assert abs(patch.mean() - 96) < 6 and patch.std() < 6   # only the flat shade in what is published
    assert analysed["people"] == 0                          # counts stay the people detector's


def test_a_cameras_first_frame_is_shaded_whole_and_a_still_scene_not_at_all():
    frame = clip_frames(1)[0]
    motion = video.MotionDetector(cameras=2)
    assert motion.detect("cam-a", frame) == [video.Box(0, 0, 768, 576, 1.0)]   # nothing known yet
    assert [motion.detect("cam-a", frame) for _ in range(5)][-1] == []
    assert motion.detect("cam-b", frame) == [video.Box(0, 0, 768, 576, 1.0)]   # its own model
    motion.detect("cam-c", frame)                                                # the oldest model goes
    assert list(motion.models) == ["cam-b", "cam-c"]
    assert motion.detect("cam-a", frame) == [video.Box(0, 0, 768, 576, 1.0)]
    assert motion.detect("cam-c", cv2.resize(frame, (384, 288))) == [video.Box(0, 0, 384, 288, 1.0)]  # new size


def test_frames_that_cannot_be_analysed_are_rejected_with_the_reason():
    image = np.full((48, 64, 3), 128, np.uint8)
    good = message(image)
    cases = {
        "empty image": dict(image=""),
        "image is not base64": dict(image="not base64!"),
        "image is not jpeg (starts with 89504e47)": {**message(image, "png"), "encoding": "jpeg"},
        "does not decode (corrupt or truncated)": dict(image=base64.b64encode(
            base64.b64decode(good["image"])[:40]).decode()),
        "frame is 64x48, the message says 640x480": dict(width=640, height=480),
    }
    for reason, change in cases.items():
        with pytest.raises(video.FrameRejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
            video.decode_frame({**good, **change})
    big = message(np.zeros((3000, 3000, 3), np.uint8))
    with pytest.raises(video.FrameRejected, match="3000x3000 pixels is larger than the 4000000 allowed"):
        video.decode_frame(big, max_pixels=4_000_000)


def zone_rule(capacity, **params):
    return make_rule("cap-piazza", "padova", "zone_capacity", {"zone": "piazza-nord", "capacity": capacity, **params})


def analysed(seq, people, second):
    return {"tenant": "padova", "camera_id": "cam-1", "zone": "piazza-nord", "frame_seq": seq, "people": people,
            "event_time": f"2026-05-01T21:00:{second:02d}Z", "models": {"people": "hog"}}


def test_a_zone_raises_one_alert_per_crowding_episode_on_the_median_of_its_window():
    rule = zone_rule(3, window_seconds=4, min_frames=3)
    counts = [2, 5, 5, 6, 9, 5, 1, 1, 1, 6, 6, 6]   # a burst, a lull, a second burst
    state, raised = None, []
    for second, people in enumerate(counts):
        state, alerts = video.crowd_step(state, analysed(second, people, second), rule, second * 1000)
        raised += [(second, a) for a in alerts]
    # second 2: median of 2, 5, 5; second 10: of 1, 1, 6, 6 (the window holds four seconds)
    assert [s for s, _ in raised] == [2, 10]
    second, first = raised[0]
    assert first["category"] == "crowd_density" and first["entity"] == {"type": "zone", "id": "piazza-nord"}
    assert first["evidence"]["median_people"] == 5 and first["evidence"]["peak_people"] == 5
    assert first["severity"] == "high" and first["detector"]["name"] == "cap-piazza"


def test_a_zone_below_its_capacity_raises_nothing():
    state, raised = None, []
    for second, people in enumerate([3, 3, 4, 3, 3]):
        state, alerts = video.crowd_step(state, analysed(second, people, second), zone_rule(4), second * 1000)
        raised += alerts
    assert raised == []


def test_zone_capacity_rules_are_validated():
    assert check_rule(zone_rule(25))["params"]["capacity"] == 25
    with pytest.raises(RuleError, match="zone_capacity needs zone"):
        check_rule(make_rule("c", "padova", "zone_capacity", {"capacity": 5}))
    with pytest.raises(RuleError, match="capacity must be a number"):
        check_rule(zone_rule("many"))


def test_the_replayer_keeps_every_nth_frame_with_event_times_at_the_clip_rate():
    docs = list(frames(DEFAULT_CLIP, fps=5, limit=3))
    assert [d["frame_seq"] for d in docs] == [0, 1, 2]
    assert (docs[0]["width"], docs[0]["height"], docs[0]["encoding"]) == (768, 576, "jpeg")
    assert [d["event_time"][-7:] for d in docs][1:] != [docs[0]["event_time"][-7:]] * 2
    decoded = video.decode_frame(docs[2])
    assert decoded.shape == (576, 768, 3)


def test_sealed_evidence_opens_only_with_the_operators_key_and_only_unaltered(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from impetus import evidence

    evidence.generate_keypair(tmp_path / "operators.pem", tmp_path / "platform.pem")
    assert (tmp_path / "operators.pem").stat().st_mode & 0o777 == 0o600
    public = serialization.load_pem_public_key((tmp_path / "platform.pem").read_bytes())
    private = serialization.load_pem_private_key((tmp_path / "operators.pem").read_bytes(), password=None)
    frame = open(IMAGES["messi5.jpg"], "rb").read()
    sealed = evidence.seal(frame, public, b"padova|cam-1|7|2026-05-01T21:00:00Z")
    assert frame not in sealed and frame[:64] not in sealed
    assert evidence.unseal(sealed, private) == (frame, b"padova|cam-1|7|2026-05-01T21:00:00Z")
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(evidence.EvidenceError, match="does not open with this key"):
        evidence.unseal(altered, private)
    evidence.generate_keypair(tmp_path / "other.pem", tmp_path / "other-public.pem")
    other = serialization.load_pem_private_key((tmp_path / "other.pem").read_bytes(), password=None)
    with pytest.raises(evidence.EvidenceError, match="wrong key"):
        evidence.unseal(sealed, other)
    with pytest.raises(evidence.EvidenceError, match="exists"):
        evidence.generate_keypair(tmp_path / "operators.pem", tmp_path / "x.pem")


def test_an_analysed_frame_carries_its_sealed_original_only_with_a_key(tmp_path, detectors):
    from cryptography.hazmat.primitives import serialization

    from impetus import evidence

    evidence.generate_keypair(tmp_path / "operators.pem", tmp_path / "platform.pem")
    public = serialization.load_pem_public_key((tmp_path / "platform.pem").read_bytes())
    private = serialization.load_pem_private_key((tmp_path / "operators.pem").read_bytes(), password=None)
    doc = message(cv2.imread(IMAGES["basketball1.png"]))
    assert "sealed_frame" not in video.analyse_frame(doc, *detectors)
    result = video.analyse_frame(doc, *detectors, public_key=public)
    opened, _ = evidence.unseal(base64.b64decode(result["sealed_frame"]), private)
    assert opened == base64.b64decode(doc["image"])
    assert "sealed_frame" not in video.detection_record(result)


def test_a_registered_detector_must_follow_the_contract_and_its_classes_raise_alerts():
    from impetus.detect.objects import (COLOUR_DETECTOR_METADATA, ObjectDetector, build_colour_detector,
                                        object_alerts)

    model = build_colour_detector()
    with pytest.raises(ValueError, match="does not declare contract impetus-detector/1"):
        ObjectDetector("weapons", "3", model, {"classes": ["knife"], "input_size": [64, 64]})
    detector = ObjectDetector("red_object_detector", "2", model, COLOUR_DETECTOR_METADATA)
    scene = np.full((480, 640, 3), 100, np.uint8)
    assert detector.detect(scene) == []
    cv2.rectangle(scene, (480, 360), (639, 479), (0, 0, 255), -1)   # the bottom-right cell, pure red
    (found,) = detector.detect(scene)
    assert (found.label, found.score, found.box) == ("red_object", 1.0, (480, 360, 160, 120))
    frame = {"tenant": "padova", "camera_id": "cam-1", "zone": "gate", "frame_seq": 4,
             "event_time": "2026-05-01T21:00:00Z", "objects": [found.as_dict("red_object_detector", "2")]}
    wanted = make_rule("reds", "padova", "object_alert", {"model": "red_object_detector", "classes": "red_object"})
    other = make_rule("knives", "padova", "object_alert", {"model": "red_object_detector", "classes": "knife"})
    (alert,) = object_alerts(frame, [check_rule(wanted), check_rule(other)])
    assert alert["category"] == "object_detected" and alert["severity"] == "critical"
    assert alert["detector"] == {"kind": "model", "name": "red_object_detector", "version": "2"}
    assert alert["evidence"]["box"] == "480,360,160,120"
