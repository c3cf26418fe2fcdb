"""Erasure requests queued for the daily run, without the identifier ever reaching Airflow.

The privacy office queues a request (``impetus erase --queue --subject -``); the daily
``lake_maintenance`` DAG's ``erase_requests`` task (``jobs/batch/erase_subject.py --pending``)
carries out every queued request with :func:`impetus.governance.erase_subject` and removes it
once done. A request is a file in the queue folder (``IMPETUS_ERASURE_QUEUE_DIR``, default
``var/secrets/erasure-requests``, mode 700; each file mode 600): like the pseudonymisation key it
is a secret, because it holds the identifier until the erasure is done. The DAG run, its
configuration and its logs only ever see the request id; ``audit.erasure_requests`` keeps the
pseudonyms, never the identifier.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

from impetus.config import Settings
from impetus.governance import GovernanceError


def queue_dir(settings: Settings) -> Path:
    return Path(settings.erasure_queue_dir)


def queue_request(settings: Settings, identifier: str, requested_by: str | None = None,
                  reason: str | None = None) -> dict:
    """Write one request (mode 600) and return its id and when it was queued (no identifier)."""
    if not identifier or not identifier.strip():
        raise GovernanceError("no subject given: pass the identifier the subject is known by (e-mail, address...)")
    folder = queue_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    queued_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = folder / f"{request_id}.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump({"request_id": request_id, "subject": identifier.strip(), "requested_by": requested_by,
                   "reason": reason, "queued_at": queued_at}, out)
    return {"request_id": request_id, "queued_at": queued_at, "queue": str(folder)}


def pending(settings: Settings) -> list[Path]:
    """Queued request files, oldest first."""
    folder = queue_dir(settings)
    return sorted(folder.glob("req-*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []


def process_pending(settings: Settings, log) -> list[dict]:
    """Carry out every queued request in order; each file is removed once its erasure is done.

    Stops at the first failure, leaving that request and the later ones queued for the next run.
    """
    from impetus.governance import erase_subject

    done = []
    for path in pending(settings):
        request = json.loads(path.read_text(encoding="utf-8"))
        log(f"erasure request {request['request_id']} queued {request['queued_at']}")
        result = erase_subject(settings, request["subject"], requested_by=request.get("requested_by"),
                               reason=request.get("reason"), log=log)
        path.unlink()
        done.append({"request_id": request["request_id"], "queued_at": request["queued_at"], "erasure": result})
    return done
