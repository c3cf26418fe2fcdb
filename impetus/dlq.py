"""Dead-letter records: what every job writes to ``<topic>.dlq`` for a message it rejects.

The record (``schemas/dlq.json``) keeps the reason and the original payload, so
nothing is lost and an operator can see what was wrong and replay it once fixed.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from impetus.alerts import utc_iso


def dead_letter(source_topic: str, reason: str, payload: bytes | str | None, job: str,
                failed_at: datetime | None = None) -> dict:
    if payload is None:
        text, encoding = "", "utf-8"
    elif isinstance(payload, bytes):
        try:
            text, encoding = payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    else:
        text, encoding = payload, "utf-8"
    return {
        "source_topic": source_topic,
        "reason": reason[:2048],
        "payload": text,
        "payload_encoding": encoding,
        "job": job,
        "failed_at": utc_iso(failed_at or datetime.now(timezone.utc)),
    }


def dead_letter_json(source_topic: str, reason: str, payload, job: str) -> str:
    return json.dumps(dead_letter(source_topic, reason, payload, job), ensure_ascii=False)
