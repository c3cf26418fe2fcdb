import json
from collections import Counter

import pytest

from impetus.alerts import parse_time
from impetus.detect.text import analyse_post, compile_rules, rule_errors, rules_for
from impetus.replay.text import TENANTS, evaluate, example_rules, generate
from impetus.schemas import validator


@pytest.fixture(scope="module")
def default_run():
    return generate()


@pytest.fixture(scope="module")
def alerts(default_run):
    social, cti, _ = default_run
    rules = example_rules()
    compiled = {tenant: compile_rules(rules_for(tenant, rules)) for tenant in TENANTS}
    return [alert for topic, documents in (("social.posts", social), ("cti.posts", cti))
            for document in documents for alert in analyse_post(document, topic, compiled[document["tenant"]])]


def test_same_seed_gives_identical_bytes_and_another_seed_differs(default_run):
    again = generate(seed=5)
    assert json.dumps(again, ensure_ascii=False).encode() == json.dumps(default_run, ensure_ascii=False).encode()
    assert generate(seed=6)[0] != default_run[0]


def test_default_run_size_tenants_and_time_window(default_run):
    social, cti, truth = default_run
    assert (len(social), len(cti), len(truth)) == (2400, 600, 3000)
    assert {d["tenant"] for d in social} == {d["tenant"] for d in cti} == {"oslo", "padova"}
    for documents in (social, cti):
        moments = [parse_time(d["event_time"]) for d in documents]
        assert moments == sorted(moments)
        assert parse_time("2026-05-01T06:00:00Z") <= moments[0] and moments[-1] < parse_time("2026-05-01T08:00:00Z")
    # social posts carry the local offset of their city (CEST in May), CTI items UTC
    assert {d["event_time"][-6:] for d in social} == {"+02:00"}
    assert {d["event_time"][-1] for d in cti} == {"Z"}


def test_every_document_and_every_example_rule_is_valid(default_run):
    social, cti, _ = default_run
    for document in social:
        validator("social.posts")(document)
    for document in cti:
        validator("cti.posts")(document)
    assert len({d["post_id"] for d in social}) == len(social)
    assert len({d["post_id"] for d in cti}) == len(cti)
    for rule in example_rules():
        validator("rules")(rule)
        assert rule_errors(rule) is None


def test_example_rules_cover_both_tenants_and_every_text_kind():
    rules = example_rules()
    assert Counter((r["tenant"], r["kind"]) for r in rules if r["enabled"]) == {
        ("*", "threat_language"): 1, ("*", "investigation"): 1,
        ("oslo", "investigation"): 3, ("oslo", "watched_asset"): 5,
        ("padova", "investigation"): 3, ("padova", "watched_asset"): 4,
    }
    assert [r["rule_id"] for r in rules if not r["enabled"]] == ["pd-inv-marathon"]
    watched = {r["rule_id"]: r["params"]["value"] for r in rules if r["kind"] == "watched_asset"}
    assert watched == {
        "osl-wa-domain": "oslo.example", "osl-wa-public-range": "198.51.100.0/26",
        "osl-wa-internal-range": "10.20.0.0/16", "osl-wa-citrix": "CVE-2023-4966", "osl-wa-ivanti": "CVE-2023-46805",
        "pd-wa-domain": "padova.example", "pd-wa-public-range": "198.51.100.64/26",
        "pd-wa-fortinet": "CVE-2024-21762", "pd-wa-progress": "CVE-2023-34362",
    }


def test_truth_labels_every_post_with_enabled_rules_of_its_tenant(default_run):
    social, cti, truth = default_run
    assert [(t["topic"], t["post_id"]) for t in truth] == (
        [("social.posts", d["post_id"]) for d in social] + [("cti.posts", d["post_id"]) for d in cti])
    rules = example_rules()
    for record in truth:
        usable = {r["rule_id"] for r in rules_for(record["tenant"], rules)}
        assert set(record) == {"post_id", "topic", "tenant", "template", "expected"}
        assert record["expected"] == sorted(record["expected"])
        assert all(rule_id in usable for _, rule_id in record["expected"])
    planted = [t for t in truth if t["expected"]]
    # about 4 % of social posts and 15 % of CTI items are planted hits
    assert 60 <= sum(t["topic"] == "social.posts" for t in planted) <= 140
    assert 60 <= sum(t["topic"] == "cti.posts" for t in planted) <= 130
    assert {t["template"] for t in planted} == {
        "venue", "protest", "venue+protest", "plate", "threat", "threat+protest", "asset", "cve", "cve+exploit",
        "domain-defanged", "ip-range", "credential-leak", "internal-leak"}


def test_planted_hits_include_defanged_indicators_and_background_includes_hard_negatives(default_run):
    social, cti, truth = default_run
    label = {(t["topic"], t["post_id"]): t for t in truth}
    defanged_hits = [d for d in cti if label["cti.posts", d["post_id"]]["expected"]
                     and any(mark in d["text"] for mark in ("[.]", "(.)", "[dot]"))]
    assert len(defanged_hits) >= 10
    background = [d["text"] for d in social if not label["social.posts", d["post_id"]]["expected"]]
    assert any("is the bomb" in text for text in background)
    assert any("was killing it" in text for text in background)
    assert any("www.visitoslo.example" in text for text in background)
    assert any("Padova Marathon" in text for text in background)  # the paused pd-inv-marathon must stay silent


def test_analysing_the_generated_posts_finds_exactly_the_planted_hits(default_run, alerts):
    _, _, truth = default_run
    score = evaluate(truth, alerts)
    assert score["precision"] == 1.0 and score["recall"] == 1.0
    assert score["false_positives"] == 0 and score["false_negatives"] == 0
    assert score["true_positives"] == sum(len(t["expected"]) for t in truth) == len(alerts)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    assert Counter(a["category"] for a in alerts).keys() == {"indicator_match", "investigation_hit", "threat_language"}
    for alert in alerts:
        validator("alert")(alert)


def test_evaluate_counts_pairs_with_multiplicity():
    truth = [{"post_id": "p1", "topic": "cti.posts", "tenant": "oslo", "template": "ip-range",
              "expected": [("indicator_match", "net"), ("indicator_match", "net")]},
             {"post_id": "p2", "topic": "social.posts", "tenant": "oslo", "template": "traffic", "expected": []}]

    def alert(entity_id, category, rule_id):
        return {"entity": {"type": "post", "id": entity_id}, "category": category, "detector": {"name": rule_id}}

    raised = [alert("cti.posts:p1", "indicator_match", "net"), alert("social.posts:p2", "threat_language", "t")]
    assert evaluate(truth, raised) == {"true_positives": 1, "false_positives": 1, "false_negatives": 1,
                                       "precision": 0.5, "recall": 0.5}
    assert evaluate(truth, []) == {"true_positives": 0, "false_positives": 0, "false_negatives": 2,
                                   "precision": 1.0, "recall": 0.0}
