"""Camera frames from a video file or stream into ``video.frames`` (``impetus replay video``).

The default clip is ``vtest.avi`` from Debian's ``opencv-doc`` package (installed by ``make setup``;
795 frames, 768x576, 10 fps, a CCTV-style scene of pedestrians; BSD-3/Apache-2.0). Any file or
camera URL OpenCV can open works too. Each frame becomes one JPEG message with the camera id, the
zone it covers and its event time (the clip's first frame at ``start``, then by the clip's frame
rate); ``fps`` keeps every n-th frame to reach the chosen rate. Sent at the chosen rate in real time
(``speedup`` 1), faster, or as fast as the broker takes them (0).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

DEFAULT_CLIP = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
TOPIC = "video.frames"


class VideoSourceError(ValueError):
    """The source cannot be read; the message says what to do."""


def frames(source: str | Path = DEFAULT_CLIP, *, tenant: str = "padova", camera_id: str = "cam-vtest-1",
           zone: str = "piazza-nord", fps: float | None = None, start: datetime | None = None,
           limit: int | None = None, quality: int = 85, loop: int = 1) -> Iterator[dict]:
    """``video.frames`` documents of ``source``, in order (``loop`` plays it that many times)."""
    import cv2

    if str(source) == str(DEFAULT_CLIP) and not DEFAULT_CLIP.is_file():
        raise VideoSourceError(f"{DEFAULT_CLIP} is missing: it ships in Debian's opencv-doc package "
                               f"(`make setup` installs it; or apt-get install opencv-doc), or pass another file")
    start = start or datetime.now(timezone.utc)
    kept = played = 0        # frames sent; source frames read, over all loops
    for _ in range(max(1, loop)):
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise VideoSourceError(f"OpenCV cannot open {source}: not a video file or stream it can read")
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
        step = max(1.0, source_fps / fps) if fps else 1.0
        index, next_kept = 0, 0.0
        try:
            while limit is None or kept < limit:
                ok, frame = capture.read()
                if not ok:
                    break
                if index + 1e-9 >= next_kept:
                    next_kept += step
                    ok, data = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
                    moment = start + timedelta(seconds=(played + index) / source_fps)
                    yield {"tenant": tenant, "camera_id": camera_id, "zone": zone,
                           "event_time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "frame_seq": kept, "width": int(frame.shape[1]), "height": int(frame.shape[0]),
                           "encoding": "jpeg", "image": base64.b64encode(data.tobytes()).decode("ascii")}
                    kept += 1
                index += 1
        finally:
            capture.release()
        played += index
