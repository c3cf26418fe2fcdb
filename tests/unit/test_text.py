import pickle
import uuid
from datetime import datetime, timezone

import pytest

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.text import (RULE_KINDS, analyse_post, compile_rules, extract_indicators, indicator_alerts,
                                 investigation_alerts, refang, rule_errors, rules_for, threat_alerts, threat_terms)
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 1, 8, 0, 5, tzinfo=timezone.utc)
UPDATED = "2026-04-28T09:00:00Z"


def rule(rule_id, kind, tenant="oslo", enabled=True, **params):
    return {"rule_id": rule_id, "tenant": tenant, "kind": kind, "enabled": enabled, "params": params,
            "updated_at": UPDATED}


def cti(text, post_id="cti-1"):
    return {"tenant": "oslo", "post_id": post_id, "source": "advisories", "url": "https://cert.example.org/a/1",
            "text": text, "event_time": "2026-05-01T08:00:00Z"}


def social(text, post_id="p-1"):
    return {"tenant": "oslo", "post_id": post_id, "platform": "mastodon", "author": "@someone", "text": text,
            "lang": "en", "event_time": "2026-05-01T10:00:00+02:00"}


def expected_id(key, entity_id, event_time="2026-05-01T08:00:00.000Z"):
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{key}|post|{entity_id}|{event_time}"))


def pairs(alerts):
    return [(a["category"], a["detector"]["name"], a["evidence"].get("indicator")) for a in alerts]


# --------------------------------------------------------------------------- extraction

def test_defanged_indicators_are_refanged_with_spans_in_the_original_text():
    text = ("Seen hxxps://vpn.oslo[.]example/login from 203.0.113[.]7 and example(.)com, "
            "mail a.b [at] padova[dot]example")
    assert extract_indicators(text) == [
        {"type": "url", "value": "https://vpn.oslo.example/login", "span": (5, 37)},
        {"type": "domain", "value": "vpn.oslo.example", "span": (13, 31)},
        {"type": "ipv4", "value": "203.0.113.7", "span": (43, 56)},
        {"type": "domain", "value": "example.com", "span": (61, 74)},
        {"type": "email", "value": "a.b@padova.example", "span": (81, 108)},
        {"type": "domain", "value": "padova.example", "span": (90, 108)},
    ]
    assert text[13:31] == "vpn.oslo[.]example"
    assert text[81:108] == "a.b [at] padova[dot]example"
    assert refang("hXXp://203.0.113[.]7[:]8080 and x{.}test") == "http://203.0.113.7:8080 and x.test"


def test_cve_ids_are_upper_case_and_domains_and_hashes_lower_case_and_duplicates_dropped():
    md5 = "D41D8CD98F00B204E9800998ECF8427E"
    text = f"cve-2023-4966 and CVE-2023-4966 on Portal.Oslo.Example; md5 {md5}, again portal.oslo.example"
    assert [(i["type"], i["value"]) for i in extract_indicators(text)] == [
        ("cve", "CVE-2023-4966"), ("domain", "portal.oslo.example"), ("md5", md5.lower())]


def test_version_numbers_are_valid_addresses_but_bad_octets_and_longer_dotted_numbers_are_not():
    text = "agent 7.2.0.1, build 10.0.17763.5458, 1.2.3.4.5, 256.1.1.1, 010.1.1.1 and 198.51.100.7."
    assert [(i["type"], i["value"]) for i in extract_indicators(text)] == [
        ("ipv4", "7.2.0.1"), ("ipv4", "198.51.100.7")]


def test_file_names_are_not_domains_without_a_known_top_level_domain():
    text = "Open report.pdf, run setup.py, read README.md, unzip invoice.zip, drop loader.dll; C2 at cdn.example.net"
    assert [(i["type"], i["value"]) for i in extract_indicators(text)] == [("domain", "cdn.example.net")]


def test_hashes_must_be_whole_words_of_exact_length():
    md5, sha1, sha256 = "a" * 31 + "1", "b" * 39 + "2", "c" * 63 + "3"
    text = f"{md5} {sha1} {sha256} {md5}0 x{md5} {md5}_old"
    assert [(i["type"], i["value"]) for i in extract_indicators(text)] == [
        ("md5", md5), ("sha1", sha1), ("sha256", sha256)]


def test_ipv6_emails_and_url_hosts():
    text = "from 2001:DB8::1 at 10:30:00, see http://[2001:db8::2]:8443/x), write to SOC@Oslo.Example."
    assert extract_indicators(text) == [
        {"type": "ipv6", "value": "2001:db8::1", "span": (5, 16)},
        {"type": "url", "value": "http://[2001:db8::2]:8443/x", "span": (34, 61)},
        {"type": "ipv6", "value": "2001:db8::2", "span": (42, 53)},
        {"type": "email", "value": "soc@oslo.example", "span": (73, 89)},
        {"type": "domain", "value": "oslo.example", "span": (77, 89)},
    ]


# --------------------------------------------------------------------------- watched assets

def test_defanged_subdomain_of_a_watched_domain_raises_exact_alert():
    text = "Phishing kit posts to hxxps://vpn.oslo[.]example/owa/auth.php"
    alerts = indicator_alerts(cti(text), "cti.posts", [rule("osl-wa-domain", "watched_asset", indicator_type="domain",
                                                            value="oslo.example")], detected_at=DETECTED)
    assert alerts == [{
        "alert_id": expected_id("osl-wa-domain#domain:vpn.oslo.example", "cti.posts:cti-1"),
        "class_uid": 2004,
        "tenant": "oslo",
        "time": "2026-05-01T08:00:05.000Z",
        "event_time": "2026-05-01T08:00:00.000Z",
        "severity": "high",
        "severity_id": 4,
        "category": "indicator_match",
        "title": "Watched domain vpn.oslo.example (watched oslo.example) mentioned in cti.posts cti-1",
        "detector": {"kind": "rule", "name": "osl-wa-domain", "version": UPDATED},
        "entity": {"type": "post", "id": "cti.posts:cti-1"},
        "evidence": {"topic": "cti.posts", "post_id": "cti-1", "source": "advisories",
                     "url": "https://cert.example.org/a/1", "indicator_type": "domain",
                     "indicator": "vpn.oslo.example", "watched_value": "oslo.example", "match": "suffix",
                     "exploitation_terms": "", "excerpt": text},
        "countermeasure": "Verify DNS, certificates and login pages of vpn.oslo.example; block lookalike or "
                          "malicious hosts at the resolver and proxy, and rotate credentials if logins were exposed.",
        "status": "new",
        "count": 1,
    }]
    validator("alert")(alerts[0])


def test_domain_suffix_needs_a_label_boundary():
    rules = [rule("osl-wa-domain", "watched_asset", indicator_type="domain", value="oslo.example")]
    text = "www.visitoslo.example and oslo.example.net are not ours, oslo.example is"
    assert pairs(indicator_alerts(cti(text), "cti.posts", rules)) == [
        ("indicator_match", "osl-wa-domain", "oslo.example")]


def test_each_address_in_a_watched_range_is_its_own_alert_with_its_own_id():
    rules = [rule("osl-wa-internal", "watched_asset", indicator_type="ipv4", value="10.20.0.0/16")]
    alerts = indicator_alerts(cti("Config shows 10.20.4.53, 10.21.0.1 and 10.20[.]255.1"), "cti.posts", rules)
    assert pairs(alerts) == [("indicator_match", "osl-wa-internal", "10.20.4.53"),
                             ("indicator_match", "osl-wa-internal", "10.20.255.1")]
    assert [a["evidence"]["match"] for a in alerts] == ["cidr", "cidr"]
    assert [a["alert_id"] for a in alerts] == [
        expected_id("osl-wa-internal#ipv4:10.20.4.53", "cti.posts:cti-1"),
        expected_id("osl-wa-internal#ipv4:10.20.255.1", "cti.posts:cti-1")]


def test_exploitation_words_make_a_watched_cve_critical():
    rules = [rule("osl-wa-citrix", "watched_asset", indicator_type="cve", value="cve-2023-4966")]
    plain = indicator_alerts(cti("Citrix fixed CVE-2023-4966 in NetScaler."), "cti.posts", rules)
    exploited = indicator_alerts(cti("Public PoC for cve-2023-4966, exploited in the wild"), "cti.posts", rules)
    assert [(a["severity"], a["evidence"]["exploitation_terms"]) for a in plain + exploited] == [
        ("high", ""), ("critical", "poc, exploited, in the wild")]
    assert plain[0]["countermeasure"] == ("Patch CVE-2023-4966 on every system running the affected product (or "
                                          "apply the vendor mitigation now) and hunt for signs of exploitation.")
    assert indicator_alerts(cti("CVE-2023-46805 only"), "cti.posts", rules) == []


def test_hash_and_email_hits_are_medium_unless_leaked():
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    rules = [rule("osl-wa-hash", "watched_asset", indicator_type="sha256", value=digest.upper()),
             rule("osl-wa-mayor", "watched_asset", indicator_type="email", value="mayor@oslo.example")]
    alerts = indicator_alerts(cti(f"Sample {digest} mails MAYOR@oslo.example"), "cti.posts", rules)
    assert [(a["detector"]["name"], a["severity"], a["countermeasure"]) for a in alerts] == [
        ("osl-wa-hash", "medium", f"Block the file with sha256 {digest} on endpoint protection and sweep hosts "
                                  "for it."),
        ("osl-wa-mayor", "medium", "Rotate the credentials of mayor@oslo.example, revoke its sessions and enforce "
                                   "multi-factor authentication.")]
    leaked = indicator_alerts(cti("Leaked: mayor@oslo.example:Sommer2025!"), "cti.posts", rules)
    assert [(a["detector"]["name"], a["severity"]) for a in leaked] == [("osl-wa-mayor", "high")]


# --------------------------------------------------------------------------- investigations

def test_keyword_investigation_matches_whole_words_any_case_and_lists_the_terms():
    rules = [rule("osl-inv-protest", "investigation", match="keyword", terms="protest, blockade,rally")]
    post = social("RALLY at Youngstorget, then a blockade of Ring 3. Protesting is not protest-free")
    alerts = investigation_alerts(post, "social.posts", rules, detected_at=DETECTED)
    assert alerts == [{
        "alert_id": expected_id("osl-inv-protest", "social.posts:p-1"),
        "class_uid": 2004,
        "tenant": "oslo",
        "time": "2026-05-01T08:00:05.000Z",
        "event_time": "2026-05-01T08:00:00.000Z",
        "severity": "medium",
        "severity_id": 3,
        "category": "investigation_hit",
        "title": "Investigation osl-inv-protest: rally, blockade, protest in social.posts p-1",
        "detector": {"kind": "rule", "name": "osl-inv-protest", "version": UPDATED},
        "entity": {"type": "post", "id": "social.posts:p-1"},
        "evidence": {"topic": "social.posts", "post_id": "p-1", "platform": "mastodon", "match": "keyword",
                     "matched_terms": "rally, blockade, protest", "match_count": 3,
                     # 60 characters either side of the first match
                     "excerpt": "RALLY at Youngstorget, then a blockade of Ring 3. Protesting"},
        "countermeasure": "Review the post for the investigation and preserve it as evidence; brief the field "
                          "commander if it announces something at a place and time.",
        "status": "new",
        "count": 1,
    }]
    validator("alert")(alerts[0])
    assert investigation_alerts(social("Protesting and rallying"), "social.posts", rules) == []


def test_phrase_investigation_tolerates_case_and_whitespace_but_not_other_words():
    rules = [rule("osl-inv-venue", "investigation", match="phrase", terms="Oslo Spektrum", severity="low",
                  title="Events at Oslo Spektrum")]
    hit = investigation_alerts(social("queue outside OSLO \n  spektrum already"), "social.posts", rules)
    assert [(a["title"], a["severity"], a["evidence"]["matched_terms"]) for a in hit] == [
        ("Events at Oslo Spektrum: oslo spektrum in social.posts p-1", "low", "oslo spektrum")]
    assert investigation_alerts(social("Oslo Spektrumhallen and Oslo the Spektrum"), "social.posts", rules) == []


def test_regex_investigation_reports_the_matched_text_on_either_topic():
    rules = [rule("osl-inv-plates", "investigation", match="regex", terms=r"\b[A-Z]{2} ?\d{5}\b")]
    alerts = analyse_post(cti("Vans EL 48213 and EK12345, EL 48213 again; not el 48213"), "cti.posts", rules)
    assert [(a["category"], a["evidence"]["matched_terms"], a["evidence"]["match_count"]) for a in alerts] == [
        ("investigation_hit", "EL 48213, EK12345", 2)]


def test_bad_rules_give_clear_errors_and_are_skipped_without_stopping_the_others():
    bad_regex = rule("osl-inv-bad", "investigation", match="regex", terms="bomb(threat")
    good = rule("osl-inv-bomb", "investigation", match="keyword", terms="bomb")
    assert rule_errors(bad_regex) == ("params.terms is not a valid regular expression: "
                                      "missing ), unterminated subpattern at position 4")
    assert rule_errors(good) is None
    compiled = compile_rules([bad_regex, good])
    assert compiled.errors == {"osl-inv-bad": "params.terms is not a valid regular expression: "
                                              "missing ), unterminated subpattern at position 4"}
    assert pairs(analyse_post(social("bomb"), "social.posts", compiled)) == [
        ("investigation_hit", "osl-inv-bomb", None)]


@pytest.mark.parametrize("bad, error", [
    (rule("r", "investigation", match="regex", terms="a*"),
     "params.terms matches the empty string, so it would match every post"),
    (rule("r", "investigation", match="glob", terms="a"),
     "params.match 'glob' is not one of keyword, phrase, regex"),
    (rule("r", "investigation", terms=" , "), "params.terms has no keyword"),
    (rule("r", "investigation", terms="a", severity="urgent"),
     "params.severity 'urgent' is not one of informational, low, medium, high, critical"),
    (rule("r", "investigation", term="a"),
     "unknown params term for kind investigation (known: match, terms, severity, title)"),
    (rule("r", "watched_asset", indicator_type="ipv4", value="10.20.1.0/16"),
     "params.value '10.20.1.0/16' is not an ipv4 address or CIDR range: 10.20.1.0/16 has host bits set"),
    (rule("r", "watched_asset", indicator_type="ipv4", value="2001:db8::/32"),
     "params.value '2001:db8::/32' is not an ipv4 address or range"),
    (rule("r", "watched_asset", indicator_type="domain", value="report.pdf"),
     "params.value 'report.pdf' is not a domain with a known top-level domain"),
    (rule("r", "watched_asset", indicator_type="md5", value="abc"),
     "params.value is not a md5 hash (32 hex digits)"),
    (rule("r", "watched_asset", indicator_type="port", value="22"),
     "params.indicator_type 'port' is not one of cve, ipv4, ipv6, domain, url, md5, sha1, sha256, email"),
    (rule("r", "watched_asset", indicator_type="cve"), "params.value is required"),
    (rule("r", "threat_language", min_terms=0),
     "params.min_terms 0 must be an integer >= 1 (sentiment alone never alerts)"),
    (rule("r", "threat_language", min_negative="low"),
     "params.min_negative 'low' must be a number between -1 and 1"),
    (dict(rule("r", "sensor_threshold"), params={"kind": "pedestrian_count", "threshold": 3000}),
     "kind 'sensor_threshold' is not a text rule kind (watched_asset, investigation, threat_language)"),
    ({"rule_id": "r", "tenant": "oslo", "kind": "investigation", "params": {"terms": "a"}, "updated_at": UPDATED},
     "does not match schema rules: data must contain ['enabled'] properties"),
])
def test_rule_errors_say_what_is_wrong(bad, error):
    assert rule_errors(bad) == error


def test_a_deletion_marker_needs_no_usable_params():
    assert rule_errors({**rule("r", "investigation"), "enabled": False, "deleted": True}) is None


def test_every_documented_rule_kind_has_described_params():
    assert set(RULE_KINDS) == {"watched_asset", "investigation", "threat_language"}
    assert RULE_KINDS["threat_language"]["params"]["min_negative"][0] == -0.5
    assert RULE_KINDS["threat_language"]["params"]["min_terms"][0] == 1
    assert RULE_KINDS["investigation"]["params"]["severity"][0] == "medium"
    for kind in RULE_KINDS.values():
        assert kind["description"]
        assert all(isinstance(meaning, str) and meaning for _, meaning in kind["params"].values())


# --------------------------------------------------------------------------- threat language

THREAT_RULE = rule("all-threat-language", "threat_language", tenant="*")


def test_threat_words_in_a_very_negative_post_raise_a_critical_alert():
    post = social("I will shoot everyone at Rockefeller tonight and kill them all. I hate this place.")
    alerts = threat_alerts(post, "social.posts", [THREAT_RULE], detected_at=DETECTED)
    assert alerts == [{
        "alert_id": expected_id("all-threat-language", "social.posts:p-1"),
        "class_uid": 2004,
        "tenant": "oslo",
        "time": "2026-05-01T08:00:05.000Z",
        "event_time": "2026-05-01T08:00:00.000Z",
        "severity": "critical",
        "severity_id": 5,
        "category": "threat_language",
        "title": "Threat language (shoot, kill) in mastodon post p-1",
        "detector": {"kind": "rule", "name": "all-threat-language", "version": UPDATED},
        "entity": {"type": "post", "id": "social.posts:p-1"},
        # VADER 3.3.2 compound score of the text
        "evidence": {"topic": "social.posts", "post_id": "p-1", "platform": "mastodon", "compound": -0.8957,
                     "threat_terms": "shoot, kill", "term_count": 2, "min_negative": -0.5, "min_terms": 1},
        "countermeasure": "Refer the post to the duty officer for a threat assessment and preserve it (text, "
                          "author, time, link) as evidence before it can be deleted.",
        "status": "new",
        "count": 1,
    }]
    validator("alert")(alerts[0])


def test_one_threat_word_is_high_and_min_terms_can_require_more():
    post = social("Going to burn down the town hall, those corrupt idiots deserve to die.")  # compound -0.5994
    assert [a["severity"] for a in threat_alerts(post, "social.posts", [THREAT_RULE])] == ["high"]
    strict = rule("two-terms", "threat_language", min_terms=2)
    assert threat_alerts(post, "social.posts", [strict]) == []
    stricter = rule("very-negative", "threat_language", min_negative=-0.7)
    assert threat_alerts(post, "social.posts", [stricter]) == []


@pytest.mark.parametrize("text", [
    "Tram 17 late AGAIN. Absolutely terrible service, I hate this commute so much.",  # -0.796, no threat word
    "Their new album is the bomb, on repeat all day.",  # threat word, positive
    "Aurora was killing it at Sentrum Scene, best gig of the year!",  # threat word, mildly negative (-0.126)
    "I will bomb the station tomorrow",  # threat word, but only -0.4939: a calm threat is below the default gate
])
def test_no_alert_on_sentiment_alone_or_threat_words_in_a_friendly_or_mild_tone(text):
    assert threat_alerts(social(text), "social.posts", [THREAT_RULE]) == []


def test_threat_language_is_never_scored_on_cti_items():
    item = cti("Attackers kill the EDR and attack the VPN with weapons-grade exploits, a horrible disaster.")
    assert threat_terms(item["text"]) == ["kill", "attack the", "weapon"]
    assert threat_alerts(item, "cti.posts", [THREAT_RULE]) == []


def test_threat_lexicon_finds_inflections_as_whole_words_in_order():
    assert threat_terms("Stabbed, then BOMBING, then blow the bridge up and burn it down; bombastic stab-proof") == [
        "stab", "bomb", "blow up", "burn down"]


# --------------------------------------------------------------------------- rules and the whole post

def test_rules_for_keeps_enabled_text_rules_of_the_tenant_and_of_all_tenants_by_id():
    rules = {"b": rule("b", "investigation", tenant="*", terms="x"),
             "a": rule("a", "watched_asset", tenant="oslo", indicator_type="cve", value="CVE-2023-4966"),
             "c": rule("c", "investigation", tenant="padova", terms="x"),
             "d": rule("d", "investigation", tenant="oslo", enabled=False, terms="x"),
             "e": dict(rule("e", "investigation", tenant="oslo", terms="x"), deleted=True),
             "f": dict(rule("f", "sensor_threshold", tenant="oslo"), params={"kind": "pm2_5", "threshold": 25})}
    assert [r["rule_id"] for r in rules_for("oslo", rules)] == ["a", "b"]
    assert [r["rule_id"] for r in rules_for("padova", list(rules.values()))] == ["b", "c"]


def test_threat_language_is_one_rule_per_tenant_its_own_before_the_one_for_all():
    rules = [rule("all-threat", "threat_language", tenant="*"),
             rule("osl-threat", "threat_language", min_negative=-0.3),
             rule("osl-threat-old", "threat_language", enabled=False)]
    assert [r["rule_id"] for r in rules_for("oslo", rules)] == ["osl-threat"]
    assert [r["rule_id"] for r in rules_for("padova", rules)] == ["all-threat"]


def test_compiled_rules_ignore_other_kinds_and_paused_or_deleted_rules_and_survive_pickling():
    rules = [rule("osl-inv-bomb", "investigation", match="regex", terms=r"(?i)\bbomb\b"),
             rule("osl-wa-net", "watched_asset", indicator_type="ipv4", value="198.51.100.0/26"),
             rule("old", "investigation", enabled=False, terms="bomb"),
             dict(rule("gone", "investigation", terms="bomb"), deleted=True),
             dict(rule("akl-ped-high", "sensor_threshold"), params={"kind": "pedestrian_count", "threshold": 3000}),
             THREAT_RULE]
    compiled = pickle.loads(pickle.dumps(compile_rules(rules)))
    assert compiled.errors == {}
    post = social("A BOMB at 198.51.100[.]9, I will kill you all, you disgusting pigs")
    alerts = analyse_post(post, "social.posts", compiled, detected_at=DETECTED)
    assert pairs(alerts) == [("indicator_match", "osl-wa-net", "198.51.100.9"),
                             ("investigation_hit", "osl-inv-bomb", None),
                             ("threat_language", "all-threat-language", None)]
    assert alerts == analyse_post(post, "social.posts", rules, detected_at=DETECTED)
    for alert in alerts:
        validator("alert")(alert)


def test_unknown_topic_is_an_error_even_without_rules():
    with pytest.raises(ValueError, match="topic 'video.frames' is not one of social.posts, cti.posts"):
        analyse_post(social("bomb"), "video.frames", [rule("x", "investigation", terms="bomb")])
    with pytest.raises(ValueError, match="topic 'social' is not one of social.posts, cti.posts"):
        analyse_post(social("bomb"), "social", [])
