"""Queued erasure requests: secret files, oldest first, nothing queued without a subject."""

import json
import os

import pytest

from impetus.config import load_settings
from impetus.erasure_queue import pending, queue_request
from impetus.governance import GovernanceError


def test_a_queued_request_is_a_private_file_holding_the_subject(tmp_path):
    settings = load_settings(env={"IMPETUS_ERASURE_QUEUE_DIR": str(tmp_path / "queue")})
    first = queue_request(settings, " 203.0.113.77 ", requested_by="dpo@example.org", reason="Art. 17")
    os.utime(tmp_path / "queue" / f"{first['request_id']}.json", (1, 1))   # make it clearly the oldest
    second = queue_request(settings, "kari@example.no")
    assert "subject" not in first and first["queue"] == str(tmp_path / "queue")
    assert [p.stem for p in pending(settings)] == [first["request_id"], second["request_id"]]
    assert (tmp_path / "queue").stat().st_mode & 0o777 == 0o700
    path = tmp_path / "queue" / f"{first['request_id']}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["subject"] == "203.0.113.77"


def test_nothing_is_queued_without_a_subject(tmp_path):
    settings = load_settings(env={"IMPETUS_ERASURE_QUEUE_DIR": str(tmp_path / "queue")})
    with pytest.raises(GovernanceError, match="no subject given"):
        queue_request(settings, "  ")
    assert pending(settings) == []
