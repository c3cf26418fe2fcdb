"""Registered video detectors follow their @champion in a real MLflow registry: a promoted version is
used from the next check on, a broken one is refused and the working one kept, a name without a
champion is reported once."""

import os

import cv2
import mlflow
import mlflow.onnx
import numpy as np
import onnx

from impetus.config import load_settings
from impetus.detect.objects import COLOUR_DETECTOR_METADATA, RegisteredDetectors, build_colour_detector
from impetus.registry import experiment_id, mlflow_client, set_champion


def register(settings, client, name, model: bytes, metadata: dict) -> str:
    with mlflow.start_run(experiment_id=experiment_id(settings, client, name)):
        info = mlflow.onnx.log_model(onnx.load_from_string(model), name="model", metadata=metadata,
                                     registered_model_name=name)
    return str(info.registered_model_version)


def test_a_promoted_detector_is_picked_up_without_a_restart_and_a_broken_one_is_refused(tmp_path):
    settings = load_settings(env={**os.environ, "IMPETUS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                  "IMPETUS_MLFLOW_ARTIFACT_URI": (tmp_path / "artifacts").as_uri(),
                                  "IMPETUS_VIDEO_DETECTORS": "reds,unpromoted"})
    client = mlflow_client(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    coarse = register(settings, client, "reds", build_colour_detector(grid=2), COLOUR_DETECTOR_METADATA)
    fine = register(settings, client, "reds", build_colour_detector(grid=4), COLOUR_DETECTOR_METADATA)
    broken = register(settings, client, "reds", build_colour_detector(grid=4),
                      {"classes": ["red_object"], "input_size": [64, 64]})     # no contract declared
    register(settings, client, "unpromoted", build_colour_detector(), COLOUR_DETECTOR_METADATA)
    set_champion(settings, client, "reds", coarse, "first", announce=False)

    now, lines = [0.0], []
    registered = RegisteredDetectors(settings, log=lines.append, check_seconds=60, clock=lambda: now[0])
    scene = np.full((480, 640, 3), 100, np.uint8)
    cv2.rectangle(scene, (480, 360), (639, 479), (0, 0, 255), -1)   # the bottom-right sixteenth, pure red

    (detector,) = registered.current()
    assert (detector.name, detector.version) == ("reds", coarse)
    # a 2x2 grid: the bottom-right quarter, a quarter of it red
    assert [(f.label, f.box, round(f.score, 2)) for f in detector.detect(scene)] == \
        [("red_object", (320, 240, 320, 240), 0.25)]
    assert lines == [f"video detector reds: version {coarse}, classes red_object",
                     "video detector unpromoted: no @champion in the registry; not run"]

    set_champion(settings, client, "reds", fine, "finer grid", announce=False)
    now[0] = 59.0
    assert [d.version for d in registered.current()] == [coarse]        # not asked again yet
    now[0] = 60.0
    (detector,) = registered.current()
    assert detector.version == fine
    assert [(f.label, f.box, round(f.score, 2)) for f in detector.detect(scene)] == \
        [("red_object", (480, 360, 160, 120), 1.0)]
    assert lines[-1] == f"video detector reds: version {coarse} -> {fine}, classes red_object"

    set_champion(settings, client, "reds", broken, "a bad push", announce=False)
    now[0] = 120.0
    assert [d.version for d in registered.current()] == [fine]
    assert lines[-1].startswith(f"video detector reds: version {broken} not loaded (ConfigError: no loader")
    assert lines[-1].endswith(f"keeping version {fine}")
    now[0] = 180.0
    registered.current()
    assert len(lines) == 4, "a refused version and a missing champion are reported once, not at every check"
