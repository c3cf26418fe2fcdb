import base64
from datetime import datetime, timezone

from impetus.dlq import dead_letter
from impetus.schemas import validator

AT = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)


def test_text_payload_is_kept_verbatim():
    letter = dead_letter("sensors.readings", "not JSON", b"hello", "sensor_thresholds", failed_at=AT)
    assert letter == {"source_topic": "sensors.readings", "reason": "not JSON", "payload": "hello",
                      "payload_encoding": "utf-8", "job": "sensor_thresholds",
                      "failed_at": "2026-05-01T10:00:00.000Z"}
    validator("dlq")(letter)


def test_binary_payload_is_kept_as_base64():
    letter = dead_letter("video.frames", "not UTF-8", b"\xff\xd8\xff", "video", failed_at=AT)
    assert letter["payload_encoding"] == "base64"
    assert base64.b64decode(letter["payload"]) == b"\xff\xd8\xff"
