"""Flink job: camera frames -> people, faces, crowd-density alerts, anonymised evidence (IMPETUS's Firearm Detector).

Reads ``video.frames`` (JPEG/PNG frames with camera, zone and capture time) and, per frame,
decodes it, finds people (OpenCV's HOG detector) and faces (CenterFace, ONNX Runtime), and
anonymises it: people shaded, faces blurred, then checked again for faces. The raw frame goes no
further than that step. Then
- ``video.detections``: counts, boxes and model versions of every frame (no pixels);
- ``crowd_density`` alerts on ``alerts.<tenant>``: the median number of people over a sliding
  window in a zone above the capacity of its ``zone_capacity`` rule
  (``impetus rules add --kind zone_capacity --tenant padova --param zone=piazza-nord --param capacity=25``),
  with the anonymised frame as evidence (``evidence_uri``, under ``IMPETUS_EVIDENCE_DIR``).
Frames that cannot be decoded (corrupt, empty, not the declared encoding or size, too large) go
to ``video.frames.dlq`` with the reason; counts of every run go to ``jobs.accounting``.

    python jobs/streaming/video_analytics.py                 # runs until stopped
    python jobs/streaming/video_analytics.py --bounded       # stops at the offsets current at start
"""

from __future__ import annotations

import json

from impetus.detect.streams import analyse_video_frame
from impetus.streaming import Input, account, detect, intake_streams, run_job, sink_alerts

JOB_NAME = "video_analytics"
INPUTS = [Input("video.frames", "video.frames", parse=analyse_video_frame)]
OUT_OF_ORDERNESS_S = 2.0
# PyFlink execution mode: a Python worker. Frames are large and their analysis (~0.45 s) dwarfs any
# hand-over; forced into "thread" mode the analysis runs on a thread Python started (impetus.embedded)
PYTHON_MODE = "process"


def build(env, settings, options, rules, descriptor, initial_rules):
    """Wire intake (decode, detect, anonymise) -> detections sink, per-zone watch -> alert sinks onto ``env``."""
    from pyflink.common import Types

    from impetus.detect.streams import ZoneWatch
    from impetus.detect.video import detection_record
    from impetus.flink import kafka_sink, stamped_now

    frames, dead_letters = intake_streams(env, settings, JOB_NAME, INPUTS, options)
    records = frames.map(lambda value: json.dumps(detection_record(value[0])), output_type=Types.STRING()) \
        .name("detection records").uid("detection-records")
    sink = kafka_sink(settings, topic="video.detections", delivery=options.delivery,
                      transactional_id_prefix=f"{JOB_NAME}-detections")
    stamped_now(records, settings).sink_to(sink).name("kafka: video.detections").uid("detections-sink")
    alerts, tallies = detect(frames, rules, descriptor, JOB_NAME, "zone watch", ZoneWatch(str(settings.evidence_dir)),
                             options, initial_rules, {})
    sink_alerts(alerts, settings, JOB_NAME, options)
    account(settings, JOB_NAME, options, [tallies], dead_letters)


def main(argv=None):
    return run_job(JOB_NAME, __doc__, INPUTS, build, argv, OUT_OF_ORDERNESS_S, PYTHON_MODE)


if __name__ == "__main__":
    main()
