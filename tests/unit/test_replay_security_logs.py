import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from impetus.detect.cyber import detect_stream, to_ms
from impetus.detect.syslog import SyslogParseError, parse_document
from impetus.replay.security_logs import DEFAULT_EPISODES, generate, summary
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def stream():
    return generate(seed=7)


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(stream):
    again = generate(seed=7)
    assert json.dumps(again, ensure_ascii=False) == json.dumps(stream, ensure_ascii=False)
    other, _ = generate(seed=8)
    assert other != stream[0]


def test_every_document_is_a_valid_security_syslog_message(stream):
    documents, _ = stream
    check = validator("security.syslog")
    for document in documents:
        check(document)
    assert {d["tenant"] for d in documents} == {"oslo", "padova"}
    assert {d["collector"] for d in documents} == {"syslog-oslo-1", "syslog-padova-1"}
    assert 5000 <= len(documents) <= 10000


def test_documents_come_in_received_order_with_a_few_lines_late(stream):
    documents, _ = stream
    received = [d["received_time"] for d in documents]
    assert received == sorted(received)
    newest: dict[str, int] = {}
    late = []
    for document in documents:
        try:
            event_ms = to_ms(parse_document(document)["event_time"])
        except SyslogParseError:
            continue
        tenant = document["tenant"]
        if event_ms < newest.get(tenant, 0) - 1000:
            late.append(newest[tenant] - event_ms)
        newest[tenant] = max(newest.get(tenant, 0), event_ms)
    # RFC 3164 stamps are whole seconds, so only lines later than one second count as out of order
    assert 1 <= len(late) <= 40
    assert max(late) <= 2500


def test_truth_has_the_documented_shape_and_counts(stream):
    _, truth = stream
    assert summary(truth)["by_kind"] == {"brute_force": 12, "brute_force_success": 4, "malformed": 10,
                                         "port_scan": 10}
    for record in truth:
        assert set(record) == {"episode_id", "tenant", "kind", "variant", "entity_type", "entity", "start", "end",
                               "lines"}
        assert record["start"] <= record["end"]
        assert record["lines"] >= 1
    assert {r["entity_type"] for r in truth if r["kind"] == "port_scan"} == {"ip"}
    assert {r["variant"] for r in truth if r["kind"] == "brute_force"} == {"ssh", "sudo"}
    assert {r["variant"] for r in truth if r["kind"] == "port_scan"} == {"vertical", "horizontal"}
    assert len({r["variant"] for r in truth if r["kind"] == "malformed"}) == 10


def test_every_line_parses_except_the_malformed_ones_which_say_why(stream):
    documents, truth = stream
    malformed = {r["entity"] for r in truth if r["kind"] == "malformed"}
    formats = Counter()
    rejected = set()
    for document in documents:
        try:
            formats[parse_document(document)["format"]] += 1
        except SyslogParseError as err:
            assert str(err)
            rejected.add(document["line"])
    assert rejected == malformed
    assert formats["rfc3164"] > 1000 and formats["rfc5424"] > 1000
    # lines without PRI come from the relay that forwards log files
    assert any(not d["line"].startswith("<") and d["line"] not in malformed for d in documents)


@pytest.mark.parametrize("seed", [7, 2026])
def test_detectors_find_every_episode_and_nothing_in_the_background(seed):
    documents, truth = generate(seed=seed)
    alerts, rejected = detect_stream(documents, detected_at=DETECTED)
    for alert in alerts:
        validator("alert")(alert)
    expected = [r for r in truth if r["kind"] != "malformed"]
    category = {"brute_force": "brute_force", "brute_force_success": "brute_force", "port_scan": "port_scan"}
    unmatched = list(alerts)
    for record in expected:
        hits = [a for a in unmatched
                if (a["tenant"], a["category"], a["entity"]["type"], a["entity"]["id"])
                == (record["tenant"], category[record["kind"]], record["entity_type"], record["entity"])
                and record["start"] <= a["event_time"] <= record["end"]]
        # recall: each episode is found exactly once (one alert per burst)
        assert len(hits) == 1, record
        unmatched.remove(hits[0])
    # precision: the background raised nothing
    assert unmatched == []
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    assert len(rejected) == 10


def test_a_short_run_with_chosen_episodes():
    documents, truth = generate(seed=3, start="2026-12-31T23:30:00Z", hours=1.0, tenants=("padova",),
                                episodes={"port_scan_horizontal": 2, "brute_force_success": 1})
    assert summary(truth) == {
        "episodes": 4,
        "by_kind": {"brute_force": 1, "brute_force_success": 1, "port_scan": 2},
        "lines_by_kind": {kind: sum(r["lines"] for r in truth if r["kind"] == kind)
                          for kind in ("brute_force", "brute_force_success", "port_scan")},
        "by_tenant": {"padova": {"brute_force": 1, "brute_force_success": 1, "port_scan": 2}},
    }
    assert {d["tenant"] for d in documents} == {"padova"}
    # the run crosses New Year: RFC 3164 lines must land in the right year
    alerts, rejected = detect_stream(documents)
    assert rejected == []
    assert sorted((a["category"], a["entity"]["type"]) for a in alerts) == [
        ("brute_force", "account"), ("brute_force", "ip"), ("port_scan", "ip"), ("port_scan", "ip")]
    years = {parse_document(d)["event_time"][:4] for d in documents}
    assert years == {"2026", "2027"}


def test_summary_counts_a_literal_truth():
    truth = [
        {"episode_id": "ep-000", "tenant": "oslo", "kind": "brute_force", "variant": "ssh", "entity_type": "ip",
         "entity": "203.0.113.7", "start": "2026-05-01T08:10:00.000Z", "end": "2026-05-01T08:11:00.000Z",
         "lines": 40},
        {"episode_id": "ep-000-login", "tenant": "oslo", "kind": "brute_force_success", "variant": "ssh",
         "entity_type": "account", "entity": "backup@bastion-oslo", "start": "2026-05-01T08:12:00.000Z",
         "end": "2026-05-01T08:12:00.000Z", "lines": 2},
        {"episode_id": "ep-001", "tenant": "padova", "kind": "malformed", "variant": "empty_after_pri",
         "entity_type": "line", "entity": "<13>", "start": "2026-05-01T08:20:00.000Z",
         "end": "2026-05-01T08:20:00.000Z", "lines": 1},
    ]
    assert summary(truth) == {
        "episodes": 3,
        "by_kind": {"brute_force": 1, "brute_force_success": 1, "malformed": 1},
        "lines_by_kind": {"brute_force": 40, "brute_force_success": 2, "malformed": 1},
        "by_tenant": {"oslo": {"brute_force": 1, "brute_force_success": 1}, "padova": {"malformed": 1}},
    }


@pytest.mark.parametrize("kwargs, reason", [
    ({"tenants": ("oslo", "auckland")}, "unknown tenant(s) auckland (known: oslo, padova)"),
    ({"episodes": {"ddos": 1}}, "unknown episode kind(s) ddos (known: " + ", ".join(DEFAULT_EPISODES) + ")"),
    ({"hours": 0.1}, "hours must be at least 0.25 to fit the episodes, got 0.1"),
    ({"episodes": {"sudo_brute_force": 3}, "tenants": ("oslo",)},
     "tenant 'oslo' has only 2 accounts for sudo_brute_force episodes; ask for fewer"),
])
def test_bad_arguments_are_refused(kwargs, reason):
    with pytest.raises(ValueError) as error:
        generate(**kwargs)
    assert str(error.value) == reason
