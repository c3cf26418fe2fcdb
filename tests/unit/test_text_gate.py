"""The literal spec the text job's JVM gate stops posts by (impetus.detect.text_gate), against the post watch's own
verdicts: no post that raises an alert may be called quiet."""

import json
import re
import string
import sys

import pytest

from impetus.detect.streams import PostWatch
from impetus.detect.text import analyse_post
from impetus.detect.text_gate import (FOLDS_TO_ASCII, _python_pattern, compile_spec, java_pattern, may_alert,
                                      required_literals, threat_literals)
from impetus.replay.text import example_rules, generate
from impetus.rules import RuleBook, defaults_from, rule_kinds

UPDATED = "2026-04-28T09:00:00Z"


def rule(rule_id, kind, tenant="oslo", enabled=True, **params):
    return {"rule_id": rule_id, "tenant": tenant, "kind": kind, "enabled": enabled, "params": params,
            "updated_at": UPDATED}


def book(*rules):
    return RuleBook({r["rule_id"]: r for r in rules}, defaults_from(rule_kinds(), ["threat_language"]))


def social(text, tenant="oslo", post_id="p-1"):
    return {"tenant": tenant, "post_id": post_id, "platform": "mastodon", "text": text,
            "event_time": "2026-05-01T10:00:00+02:00"}


def cti(text, tenant="oslo", post_id="c-1"):
    return {"tenant": tenant, "post_id": post_id, "source": "advisories", "text": text,
            "event_time": "2026-05-01T08:00:00Z"}


def topic_of(post):
    return PostWatch.topic_of(post)


def spec_of(rules_book, tenants=("oslo", "padova")):
    return json.loads(compile_spec(PostWatch(), rules_book, tenants))


def alerts_of(watch, rules_book, post):
    return analyse_post(post, topic_of(post), watch.rules(post["tenant"], rules_book))


def test_the_fold_characters_are_every_non_ascii_character_python_can_take_for_an_ascii_letter():
    letters, either_case = set(string.ascii_letters), re.compile("[a-z]", re.IGNORECASE)
    found = []
    for code in range(128, sys.maxunicode + 1):
        c = chr(code)
        if letters & set(c.lower() + c.upper() + c.casefold() + c.title()) or either_case.fullmatch(c):
            found.append(c)
    assert "".join(found) == FOLDS_TO_ASCII


@pytest.mark.parametrize("pattern, literals", [
    (re.compile(r"(?i)protest|march"), [("march", True, False), ("protest", True, False)]),
    (re.compile(r"(?<!\w)(?:protest\s+march|protest)(?!\w)", re.IGNORECASE), [("protest", True, True)]),
    (re.compile(r"Bjørvika"), [("rvika", False, False)]),  # ASCII runs only
    (re.compile(r"(?i:abc)DEF"), [("abc", True, False)]),
    (re.compile(r"(?i)CVE-(?-i:XY)\d+"), [("cve-", True, False)]),  # a group ends a run
    (re.compile(r"foo(bar)+baz?"), [("foo", False, False)]),
    (re.compile(r"(?:x|yy)zz"), [("zz", False, False)]),
    (re.compile(r"a|b\d"), [("a", False, False), ("b", False, False)]),
    (re.compile(r"(?:abc)?xy"), [("xy", False, False)]),  # what is optional is not required
    (re.compile(r"\d{6}"), None),
    (re.compile(r"\b[A-Z]{2} ?\d{5}\b"), None),
    (re.compile(r"abc|\d+"), None),  # one branch without a literal: any text may match
])
def test_required_literals_are_what_every_match_contains(pattern, literals):
    assert required_literals(pattern) == literals


def test_the_threat_lexicon_needs_one_of_its_stems_at_the_start_of_a_word():
    assert sorted(word for word, _, _ in threat_literals()) == sorted([
        "attack", "blow", "bomb", "burn", "detonat", "explosive", "grenade", "gun", "hostage", "kill", "massacre",
        "murder", "shoot", "stab", "weapon"])
    assert all(ci and start for _, ci, start in threat_literals())


def test_the_spec_holds_each_tenants_literals_per_kind_of_post():
    spec = spec_of(book(
        rule("inv", "investigation", match="keyword", terms="derby, Stadium"),
        rule("cve", "watched_asset", indicator_type="cve", value="CVE-2024-3400"),
        rule("net", "watched_asset", indicator_type="ipv4", value="10.20.0.0/16"),
        rule("url", "watched_asset", indicator_type="url", value="hxxps://Portal.City.example/Login"),
        rule("v6", "watched_asset", indicator_type="ipv6", value="2001:db8::/32"),
        rule("quiet-padova", "threat_language", tenant="padova", enabled=False),
    ), tenants=("oslo", "padova", "bergen"))
    threats = {word for word, _, _ in threat_literals()}
    oslo_cti = {word: (ci, start) for word, ci, start in spec["tenants"]["oslo"]["cti.posts"]}
    assert oslo_cti == {"derby": (True, True), "stadium": (True, True), "3400": (True, False), "10": (False, False),
                        "example": (True, False), ":": (False, False)}
    assert {word for word, _, _ in spec["tenants"]["oslo"]["social.posts"]} == set(oslo_cti) | threats
    # a paused rule is not in force: padova's threat language falls back to the built-in default
    assert {word for word, _, _ in spec["tenants"]["padova"]["social.posts"]} == threats
    assert spec["tenants"]["padova"]["cti.posts"] == []  # nothing can alert there
    assert spec["fold"] == FOLDS_TO_ASCII

    plate = r"\b[A-Z]{2} ?\d{5}\b"
    plates = spec_of(book(rule("plates", "investigation", match="regex", terms=plate)))
    # no plain text in it: the gate runs the pattern, widened
    assert plates["tenants"]["oslo"]["cti.posts"] == [[java_pattern(re.compile(plate))]]
    assert java_pattern(re.compile(plate)) == r"(?:[\x{41}-\x{5A}]){2,2}(?:[\x{20}]){0,1}" \
                                              r"(?:[\x{30}-\x{39}\x{80}-\x{10FFFF}]){5,5}"
    twice = spec_of(book(rule("twice", "investigation", match="regex", terms=r"(\d)\1")))
    assert twice["tenants"]["oslo"] == {"social.posts": None, "cti.posts": None}  # every post goes to Python
    wide = spec_of(book(rule("wide", "watched_asset", indicator_type="ipv4", value="10.0.0.0/7")))
    assert wide["tenants"]["oslo"]["cti.posts"] is None


def test_quiet_posts_are_told_apart_by_literals_at_word_starts_and_fold_characters():
    spec = spec_of(book(rule("inv", "investigation", match="regex", terms=r"Derby\d")))
    cases = [
        ("Nice weather at the harbour", False),
        ("Nice weather, we KILLED it", True),         # ASCII letters of either case
        ("A well established market", False),          # "stab" inside a word
        ("A well-stabbed tyre", True),                 # after a hyphen
        ("over_kill", False),                          # after an underscore
        ("日本kill", True),                             # Python's \w is wider: the gate lets it through
        ("ſtab", True),                                # a long s: Python's case rules may take it for an s
        ("The \u212aelvin scale", True),
        ("Derby5 tonight", True),                      # case-sensitive literal of a regex
        ("derby5 tonight", False),
    ]
    assert [may_alert(spec, social(text), "social.posts") for text, _ in cases] == [want for _, want in cases]
    assert may_alert(spec, social("Stab", tenant="bergen"), "social.posts")  # unknown tenant: Python decides
    assert not may_alert(spec, cti("We will kill the VPN session"), "cti.posts")  # no threat language in CTI


PATTERNS = [r"\b[A-Z]{2} ?\d{5}\b", r"\b[A-Z]{2} ?\d{3} ?[A-Z]{2}\b", r"(?i)[a-c]{3}\W\d", r"(?i)é\s*[^x]",
            r"[^\d\s]{4}(?=!)", r"(?i:[Kk])\S\w", r"\d+(?:\.\d+){3}", r"(?s)\w.\w", r"(?i)[^a-z]{2}\D"]
TEXTS = ["AB 12345", "ab 12345", "AB12345x", "AB 123 CD", "AB\u0663\u0663\u0663CD", "abc-1", "ABC 1", "É x",
         "é\ty", "WOW!", "wow?", "\u212a-a", "kxx", "10.0.0.1", "\u0661.\u0662.\u0663.\u0664", "a\nb", "12a", "ÄÖ1",
         "\U0001F600\U0001F600x", "zz", ""]


def test_a_widened_pattern_finds_a_match_wherever_the_pattern_finds_one():
    for pattern in PATTERNS:
        original = re.compile(pattern)
        wider = _python_pattern(java_pattern(original))
        for text in TEXTS:
            if any(hit.group(0) for hit in original.finditer(text)):
                assert wider.search(text), (pattern, text)
    # and it still tells texts apart
    plate = _python_pattern(java_pattern(re.compile(PATTERNS[0])))
    assert [bool(plate.search(t)) for t in TEXTS[:5]] == [True, False, True, False, False]


def test_refanged_http_in_a_watched_url_and_ascii_spaces_are_no_reason_to_stop_a_post():
    # refanging writes "http" for "hxxp" before a colon anywhere in a URL, so "http(s)" is never the literal
    rules_book, watch = book(rule("u", "watched_asset", indicator_type="url", value="http://a.io/https:x")), PostWatch()
    post = cti("see hxxp://a.io/hxxps:x")
    assert alerts_of(watch, rules_book, post) and may_alert(spec_of(rules_book), post, "cti.posts")
    # with (?a), \s leaves out \x1c-\x1f, so \S and [^\s] take them
    cases = ((r"(?a)[A-Z]\S\d", "A\x1c1"), (r"(?a)[A-Z][^\s]\d", "A\x1f1"), (r"\d(?a:\S)\d", "1\x1d2"))
    for n, (terms, text) in enumerate(cases):
        rules_book = book(rule(f"r{n}", "investigation", match="regex", terms=terms))
        post = cti(text)
        assert alerts_of(watch, rules_book, post) and may_alert(spec_of(rules_book), post, "cti.posts"), terms


HOSTILE = [
    "Outage at portal[.]city[.]example again", "see hxxps://portal.city.example/login", "PORTAL.CITY.EXAMPLE",
    "mail admin(at)city.example now", "bad host 10[.]20[.]3[.]4 scanning", "range 10.20.255.1 and 10.21.0.1",
    "patch cve-2024-3400 today, exploit out", "CVE-2024-34000 is another", "ipv6 2001:DB8:0:0::7 and [2001:db8::1]",
    "hash D41D8CD98F00B204E9800998ECF8427E dropped", "http://user@portal.city.example:8443/x?y=1",
    "protesters gather at Torget", "PROTEST march!", "the bomb near the station", "blow the station up",
    "i will shoot and kill them all, I hate you", "a mass grave, a massacre, awful", "gunmen seen, terrible",
    "Ðerby", "x" * 50 + "kill", "Stable weather", "car AB 12345 seen", "targa AB 123 CD", "ab 12345", "AB 123 cd",
]
EXTRA_RULES = [
    rule("x-domain", "watched_asset", indicator_type="domain", value="city.example"),
    rule("x-range", "watched_asset", indicator_type="ipv4", value="10.20.0.0/16"),
    rule("x-cve", "watched_asset", indicator_type="cve", value="CVE-2024-3400"),
    rule("x-v6", "watched_asset", indicator_type="ipv6", value="2001:db8::/32"),
    rule("x-md5", "watched_asset", indicator_type="md5", value="d41d8cd98f00b204e9800998ecf8427e"),
    rule("x-mail", "watched_asset", indicator_type="email", value="admin@city.example"),
    rule("x-url", "watched_asset", indicator_type="url", value="https://portal.city.example/login"),
    rule("x-inv", "investigation", match="keyword", terms="protest march, protesters"),
]


def test_no_post_that_alerts_is_called_quiet_and_most_of_the_replay_is():
    social_docs, cti_docs, _ = generate(seed=11, hours=1.0)
    posts = social_docs + cti_docs + [make(text, tenant) for text in HOSTILE for make in (social, cti)
                                      for tenant in ("oslo", "padova")]
    rules = example_rules() + EXTRA_RULES  # with number-plate patterns, which have no plain text
    rules_book, watch = book(*rules), PostWatch()
    spec = spec_of(rules_book)
    alerting = stopped = 0
    for post in posts:
        verdict = may_alert(spec, post, topic_of(post))
        if alerts_of(watch, rules_book, post):
            alerting += 1
            assert verdict, post["text"]
        stopped += not verdict
    assert alerting > 100
    assert stopped > 0.5 * len(posts)  # most posts never reach Python
