"""Building alerts in the one schema every detector shares (``schemas/alert.json``).

Detectors call :func:`make_alert`; it fills the OCSF-aligned fields and derives a
deterministic ``alert_id`` from the detector, entity and event time, so that a
replayed or restarted job produces the same ids and consumers can de-duplicate.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

SEVERITY_IDS = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
# Namespace for alert ids (UUIDv5); never change it, or ids of equal findings diverge.
ALERT_NAMESPACE = uuid.UUID("6f6d8a3e-2f7c-4c55-9a7e-0d1f3b0c9e21")


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` suffix."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp with offset (``Z`` accepted) into an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment


def alert_id(detector_name: str, entity_type: str, entity_id: str, event_time: str) -> str:
    key = f"{detector_name}|{entity_type}|{entity_id}|{utc_iso(parse_time(event_time))}"
    return str(uuid.uuid5(ALERT_NAMESPACE, key))


def make_alert(*, tenant: str, category: str, severity: str, title: str, detector: dict, entity: dict,
               event_time: str, evidence: dict | None = None, location: dict | None = None,
               message: str | None = None, countermeasure: str | None = None,
               detected_at: datetime | None = None, count: int = 1) -> dict:
    """One alert document, valid against ``schemas/alert.json``."""
    alert = {
        "alert_id": alert_id(detector["name"], entity["type"], entity["id"], event_time),
        "class_uid": 2004,
        "tenant": tenant,
        "time": utc_iso(detected_at or datetime.now(timezone.utc)),
        "event_time": utc_iso(parse_time(event_time)),
        "severity": severity,
        "severity_id": SEVERITY_IDS[severity],
        "category": category,
        "title": title[:256],
        "detector": dict(detector),
        "entity": dict(entity),
        "status": "new",
        "count": count,
    }
    if location:
        alert["location"] = {k: v for k, v in location.items() if v is not None}
    if evidence:
        alert["evidence"] = dict(evidence)
    if message:
        alert["message"] = message
    if countermeasure:
        alert["countermeasure"] = countermeasure
    return alert
