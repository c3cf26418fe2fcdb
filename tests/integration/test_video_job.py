"""The video Flink job on the real broker: frames of the real clip in, detections, a crowd alert with
anonymised evidence, and every broken frame dead-lettered with its reason."""

import base64
import json
import os
import subprocess
import sys
import uuid

import cv2
import numpy as np

from impetus.config import load_settings
from impetus.detect.video import PeopleDetector, decode_frame
from impetus.replay.video import DEFAULT_CLIP, frames
from impetus.rules import make_rule, publish
from impetus.topics import end_offsets, read_messages

from .conftest import ROOT, run_script
from .test_cyber_threats_job import BASE_MS


def test_frames_give_detections_one_crowd_alert_with_anonymised_evidence_and_dead_letters(scratch, tmp_path):
    t = scratch.tenant
    clip = list(frames(DEFAULT_CLIP, tenant=t, fps=5, limit=10))
    docs = [dict(d, camera_id=camera, zone=zone, frame_seq=d["frame_seq"])
            for camera, zone in (("cam-a", "crowded"), ("cam-b", "roomy")) for d in clip]
    broken = dict(clip[0], camera_id="cam-a", zone="crowded", frame_seq=99)
    ok, big = cv2.imencode(".jpg", np.zeros((4200, 4200, 3), np.uint8))
    bad = [dict(broken, image=base64.b64encode(base64.b64decode(broken["image"])[:500]).decode()),
           dict(broken, image=""),
           dict(broken, width=4200, height=4200, image=base64.b64encode(big.tobytes()).decode())]
    red = np.full((576, 768, 3), 110, np.uint8)
    cv2.rectangle(red, (192, 144), (383, 287), (0, 0, 255), -1)
    ok, red_jpeg = cv2.imencode(".jpg", red)
    red_doc = dict(clip[1], camera_id="cam-red", zone="gate", image=base64.b64encode(red_jpeg.tobytes()).decode())
    payloads = [json.dumps(d).encode() for d in docs + bad + [red_doc]]
    stamps = [BASE_MS + i * 100 for i in range(len(payloads))]
    for i, d in enumerate(docs):
        stamps[i] = BASE_MS + (d["frame_seq"] * 200)
    scratch.produce(payloads, timestamps=stamps)
    counts = [len(PeopleDetector().detect(decode_frame(d))) for d in clip]
    observed = sorted(counts)[len(counts) // 2]
    publish(scratch.settings, [
        make_rule("cap-crowded", t, "zone_capacity", {"zone": "crowded", "capacity": max(0, observed - 1),
                                                      "window_seconds": 10, "min_frames": 3}),
        make_rule("cap-roomy", t, "zone_capacity", {"zone": "roomy", "capacity": observed + 5}),
        make_rule("red-objects", t, "object_alert",
                  {"model": "red_object_detector", "classes": "red_object", "min_score": 0.5})], scratch.rules)
    # an extra detector in the registry, built here to the declared contract (impetus.detect.objects)
    import mlflow
    import mlflow.onnx
    import onnx

    from impetus.detect.objects import COLOUR_DETECTOR_METADATA, build_colour_detector
    from impetus.registry import experiment_id, mlflow_client, set_champion

    registry_env = {"IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "IMPETUS_MLFLOW_ARTIFACT_URI": (tmp_path / "artifacts").as_uri()}
    registry_settings = load_settings(env={**os.environ, **registry_env})
    client = mlflow_client(registry_settings)
    with mlflow.start_run(experiment_id=experiment_id(registry_settings, client, "red_object_detector")):
        info = mlflow.onnx.log_model(onnx.load_from_string(build_colour_detector()), name="model",
                                     metadata=COLOUR_DETECTOR_METADATA, registered_model_name="red_object_detector")
    set_champion(registry_settings, client, "red_object_detector", info.registered_model_version, "test",
                 announce=False)

    from impetus.evidence import generate_keypair

    generate_keypair(tmp_path / "operators.pem", tmp_path / "platform.pem")
    env = {**registry_env, "IMPETUS_VIDEO_DETECTORS": "red_object_detector",
           "IMPETUS_EVIDENCE_DIR": str(tmp_path / "evidence"),
           "IMPETUS_EVIDENCE_PUBLIC_KEY": str(tmp_path / "platform.pem"),
           "IMPETUS_LAKE_URI": (tmp_path / "lake").as_uri(), "IMPETUS_PSEUDONYM_KEY": "ab" * 32}
    # video.detections is shared and keeps an hour: read what this run adds, after today's end offsets
    detections_before = end_offsets(scratch.settings, "video.detections")
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    run_script("jobs/streaming/video_analytics.py", "--bounded", "--topic", f"video.frames={scratch.source}",
               "--tenants", t, "--group-id", f"test-{t}", "--rules-topic", scratch.rules, "--run-id", run_id, env=env)

    added = read_messages(scratch.settings, "video.detections", detections_before, settle_s=10)
    detections = [json.loads(m.value) for m in added]
    mine = sorted((d["camera_id"], d["frame_seq"], d["people"]) for d in detections
                  if d["tenant"] == t and d["camera_id"] != "cam-red")
    assert mine == sorted((camera, seq, n) for camera in ("cam-a", "cam-b") for seq, n in enumerate(counts))
    assert all("image" not in d and "anonymised_jpeg" not in d for d in detections if d["tenant"] == t)

    (found,) = [d["objects"] for d in detections if d["tenant"] == t and d["camera_id"] == "cam-red"]
    expected = {"model": "red_object_detector", "version": "1", "label": "red_object", "score": None,
                "box": [192, 144, 192, 144]}
    assert [{**f, "score": None} for f in found] == [expected]
    assert found[0]["score"] > 0.95   # pure red, through JPEG
    everything = scratch.read(scratch.alerts)
    assert sorted((a["category"], a["entity"]["id"]) for a in everything) == [
        ("crowd_density", "crowded"), ("object_detected", "cam-red")]
    (spotted,) = [a for a in everything if a["category"] == "object_detected"]
    assert spotted["detector"] == {"kind": "model", "name": "red_object_detector", "version": "1"}
    assert spotted["evidence"]["label"] == "red_object" and spotted["evidence"]["evidence_uri"].endswith(".jpg")
    alerts = [a for a in everything if a["category"] == "crowd_density"]
    evidence = alerts[0]["evidence"]
    assert evidence["capacity"] == max(0, observed - 1) and evidence["median_people"] > evidence["capacity"]
    path = evidence["evidence_uri"].removeprefix("file://")
    image = cv2.imread(path)
    assert image is not None and image.shape == (576, 768, 3)
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert len(haar.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(20, 20))) == 0

    # the unredacted frame is sealed: only the operators' key opens it, and the reveal is audited first
    assert evidence["sealed_evidence"] == f"impetus evidence reveal {alerts[0]['alert_id']}"
    sealed = (tmp_path / "evidence" / t / f"{alerts[0]['alert_id']}.sealed").read_bytes()
    assert base64.b64decode(clip[0]["image"])[:200] not in sealed
    refused = subprocess.run([sys.executable, str(ROOT / "impetus" / "cli.py"), "evidence", "reveal",
                              alerts[0]["alert_id"], "--key", str(tmp_path / "operators.pem"), "--operator", "op-7",
                              "--reason", "", "--out", str(tmp_path / "x.jpg")], capture_output=True, text=True,
                             env={**os.environ, **env})
    assert refused.returncode == 2 and "a reveal needs --operator (who) and --reason" in refused.stderr
    revealed = json.loads(run_script("impetus/cli.py", "evidence", "reveal", alerts[0]["alert_id"], "--key",
                                     str(tmp_path / "operators.pem"), "--operator", "op-7@padova.example",
                                     "--reason", "confirmed crowd crush risk, police request 2026-19",
                                     "--out", str(tmp_path / "revealed.jpg"), env=env).stdout)
    original = next(d for d in docs if d["camera_id"] == "cam-a" and d["frame_seq"] == evidence["frame_seq"])
    assert (tmp_path / "revealed.jpg").read_bytes() == base64.b64decode(original["image"])
    assert (tmp_path / "revealed.jpg").stat().st_mode & 0o777 == 0o600
    from deltalake import DeltaTable

    (audit,) = DeltaTable(str(tmp_path / "lake" / "audit" / "evidence_reveals")).to_pyarrow_table().to_pylist()
    assert audit["alert_id"] == alerts[0]["alert_id"] and audit["reveal_id"] == revealed["reveal_id"]
    assert audit["operator"].startswith("ps_") and "op-7" not in audit["operator"]
    assert audit["sha256"] == revealed["sha256"]

    letters = scratch.read(scratch.dlq)
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == 3
    assert any("does not decode (corrupt or truncated)" in r for r in reasons)
    assert any("empty image" in r for r in reasons)
    assert any("4200x4200 pixels is larger than" in r for r in reasons)
    totals = scratch.accounting(run_id)
    assert totals["messages_in"] == len(payloads) and totals["dead_lettered"] == 3
    assert totals["processed"] == len(payloads) - 3
