"""Treatment of personal data at landing: keyed pseudonyms, free-text redaction, keys."""

import json

import pytest

from impetus.config import load_settings
from impetus.detect.syslog import parse_line, security_event
from impetus.landing import treat_payload
from impetus.privacy import (PSEUDONYM, PrivacyConfigError, load_keyring, pseudonym, redact_syslog_line,
                             redact_text, subject_pseudonyms, treat_document, write_key_file)
from impetus.schemas import load_schema

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_pseudonym_is_keyed_stable_and_shared_by_spellings_of_one_value():
    ip = pseudonym("203.0.113.7", KEY)
    assert PSEUDONYM.fullmatch(ip)
    assert pseudonym("203.0.113.7", KEY) == ip
    assert pseudonym("203.0.113.7", OTHER) != ip
    assert pseudonym("2001:DB8:0:0::1", KEY) == pseudonym("2001:db8::1", KEY)
    assert pseudonym("Kari@Example.NO", KEY) == pseudonym("kari@example.no", KEY)
    assert pseudonym("00:16:3E:12:34:56", KEY) == pseudonym("00-16-3e-12-34-56", KEY)
    assert pseudonym("alice", KEY) != pseudonym("bob", KEY)


@pytest.mark.parametrize("raw, personal", [
    ("mail kari.nordmann@example.no today", "kari.nordmann@example.no"),
    ("from 203.0.113.7.", "203.0.113.7"),
    ("host 2001:db8::1 answered", "2001:db8::1"),
    ("mapped ::ffff:10.0.0.1 too", "10.0.0.1"),
    ("MAC=00:16:3e:12:34:56", "00:16:3e:12:34:56"),
    ("ring +47 22 33 44 55 now", "+47 22 33 44 55"),
    ("ring 049 827 1111 now", "049 827 1111"),
    ("car AB 12345 parked", "AB 12345"),
    ("targa AB 123 CD vista", "AB 123 CD"),
    ("plate ABC123 seen", "ABC123"),
    ("thanks @kari_n!", "@kari_n"),
    ("Mr Smith was there", "Smith"),
    ("hello, my name is Kari Nordmann.", "Kari Nordmann"),
])
def test_redaction_replaces_each_kind_of_personal_value(raw, personal):
    redacted = redact_text(raw, KEY)
    assert personal not in redacted
    assert len(PSEUDONYM.findall(redacted)) == 1


@pytest.mark.parametrize("text", [
    "at 10:00:00 on 2026-05-01 CVE-2024-3094 was exploited",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "version 1.2.3 of the library, port 8080, 3 attempts",
])
def test_redaction_leaves_times_versions_and_indicators_alone(text):
    assert redact_text(text, KEY) == text


def test_syslog_line_keeps_its_header_and_parses_with_pseudonyms():
    line = "<38>May  1 10:00:00 gw sshd[412]: Failed password for invalid user admin from 203.0.113.7 port 52211 ssh2"
    treated = redact_syslog_line(line, KEY, "2026-05-01T10:00:01Z")
    assert treated == (f"<38>May  1 10:00:00 gw sshd[412]: Failed password for invalid user "
                       f"{pseudonym('admin', KEY)} from {pseudonym('203.0.113.7', KEY)} port 52211 ssh2")
    event = security_event(parse_line(treated, "2026-05-01T10:00:01Z"))
    assert (event["kind"], event["user"], event["src_ip"], event["src_port"]) == (
        "auth_failure", pseudonym("admin", KEY), pseudonym("203.0.113.7", KEY), 52211)


def test_sudo_line_loses_the_user_everywhere_it_appears():
    line = ("<86>May  1 10:00:00 gw sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
            "COMMAND=/usr/bin/cat /home/alice/notes")
    treated = redact_syslog_line(line, KEY, "2026-05-01T10:00:01Z")
    assert "alice" not in treated and "USER=root" not in treated
    assert treated.count(pseudonym("alice", KEY)) == 3


def test_document_fields_are_treated_by_their_tags():
    post = {"tenant": "oslo", "post_id": "p1", "platform": "x", "author": "kari_n",
            "text": "call me on +47 22 33 44 55", "event_time": "2026-05-01T10:00:00Z"}
    treated = treat_document(load_schema("social.posts"), post, KEY)
    assert treated == {**post, "author": pseudonym("kari_n", KEY), "text": f"call me on {pseudonym('4722334455', KEY)}"}

    frame = {"tenant": "oslo", "camera_id": "c1", "zone": "z", "event_time": "2026-05-01T10:00:00Z",
             "frame_seq": 1, "width": 2, "height": 2, "encoding": "jpeg", "image": "AAAA"}
    assert "image" not in treat_document(load_schema("video.frames"), frame, KEY)

    alert = {"entity": {"type": "source_ip", "id": "203.0.113.7"}, "evidence": {"src": "203.0.113.7", "n": 5},
             "title": "Brute force from a source"}
    treated = treat_document(load_schema("alert"), alert, KEY)
    assert treated["entity"] == {"type": "source_ip", "id": pseudonym("203.0.113.7", KEY)}
    assert treated["evidence"] == {"src": pseudonym("203.0.113.7", KEY), "n": 5}


def test_treat_payload_lands_valid_messages_and_explains_the_rest():
    flow = {"tenant": "oslo", "event_time": "2026-05-01T10:00:00Z", "src_ip": "10.0.0.5", "src_port": 5000,
            "dst_ip": "198.51.100.9", "dst_port": 443, "protocol": "tcp"}
    doc, reason, excerpt = treat_payload("network.flows", json.dumps(flow).encode(), KEY)
    assert (reason, excerpt) == (None, None)
    assert json.loads(doc) == {**flow, "src_ip": pseudonym("10.0.0.5", KEY), "dst_ip": pseudonym("198.51.100.9", KEY),
                               "src_internal": True, "dst_internal": False}

    bad = json.dumps({**flow, "src_port": "x"}).encode()
    doc, reason, excerpt = treat_payload("network.flows", bad, KEY)
    assert doc is None and reason == "does not match schema network.flows: data.src_port must be integer"
    assert "10.0.0.5" not in excerpt and pseudonym("10.0.0.5", KEY) in excerpt


def test_keyring_from_environment_file_and_rotation(tmp_path):
    settings = load_settings(env={"IMPETUS_VAR_DIR": str(tmp_path)})
    with pytest.raises(PrivacyConfigError, match="IMPETUS_PSEUDONYM_KEY"):
        load_keyring(settings, env={}, create=False)
    ring = load_keyring(settings, env={})  # local profile: created on first use
    path = tmp_path / "secrets" / "pseudonym.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(ring.keys) == 1
    new_id = write_key_file(path, rotate=True)
    rotated = load_keyring(settings, env={})
    assert rotated.current_id == new_id and rotated.keys[1] == ring.keys[0]
    assert subject_pseudonyms("203.0.113.7", rotated) == [pseudonym("203.0.113.7", k) for _, k in rotated.keys]
    assert load_keyring(settings, env={"IMPETUS_PSEUDONYM_KEY": KEY.hex()}).current == KEY
    with pytest.raises(PrivacyConfigError, match="shorter than 16 bytes"):
        load_keyring(settings, env={"IMPETUS_PSEUDONYM_KEY": "short"})


def test_an_excerpt_is_redacted_before_it_is_cut_and_never_keeps_part_of_a_value():
    from impetus.privacy import redacted_excerpt

    key = bytes(32)
    # the cut falls inside the raw e-mail: cut first, "kari.nordm" would be kept raw
    text = "x" * 90 + " kari.nordmann@example.no rest"
    excerpt = redacted_excerpt(text, 100, key)
    assert "kari" not in excerpt and "nordm" not in excerpt
    # the cut falls inside the pseudonym that replaced it: the part is dropped, not kept
    assert excerpt == "x" * 90 + " "
    whole = redacted_excerpt(text, 200, key)
    assert whole == "x" * 90 + " " + pseudonym("kari.nordmann@example.no", key) + " rest"
    assert [len(m) for m in PSEUDONYM.findall(redacted_excerpt("a " * 10 + "10.0.0.1 " * 50, 150, key))] == [23] * 5


@pytest.mark.parametrize("name", ["user", "invalid", "password", "from", "bob"])
def test_a_user_name_that_is_also_a_word_of_the_message_replaces_only_the_name(name):
    line = f"<38>May  1 10:00:00 gw sshd[7]: Failed password for invalid user {name} from 203.0.113.7 port 4 ssh2"
    treated = redact_syslog_line(line, KEY, "2026-05-01T10:00:01Z")
    assert treated == ("<38>May  1 10:00:00 gw sshd[7]: Failed password for invalid user "
                       f"{pseudonym(name, KEY)} from {pseudonym('203.0.113.7', KEY)} port 4 ssh2")
    # and silver parses the treated line back: the user is the pseudonym
    event = security_event(parse_line(treated, "2026-05-01T10:00:01Z"))
    assert event["user"] == pseudonym(name, KEY) and event["src_ip"] == pseudonym("203.0.113.7", KEY)


def test_sudo_names_are_replaced_where_they_stand_and_in_paths():
    line = "<85>May  1 10:00:00 gw sudo:      bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/ls /home/bob"
    treated = redact_syslog_line(line, KEY, "2026-05-01T10:00:01Z")
    bob, root = pseudonym("bob", KEY), pseudonym("root", KEY)
    assert treated == (f"<85>May  1 10:00:00 gw sudo:      {bob} : TTY=pts/0 ; PWD=/home/{bob} ; USER={root} ; "
                       f"COMMAND=/bin/ls /home/{bob}")
