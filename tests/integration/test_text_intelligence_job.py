"""The text-intelligence Flink job on the real broker: known posts in, exact alerts, dead letters and counts out."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from impetus.rules import make_rule, publish

from .conftest import run_script

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=timezone.utc)
FILLERS = 5000


def social(tenant, post_id, text, minute):
    moment = T0 + timedelta(minutes=minute)
    doc = {"tenant": tenant, "post_id": post_id, "platform": "forum", "author": "@someone", "text": text,
           "lang": "en", "event_time": moment.isoformat().replace("+00:00", "Z")}
    return json.dumps(doc).encode(), int(moment.timestamp() * 1000)


def cti(tenant, post_id, text, minute):
    moment = T0 + timedelta(minutes=minute)
    doc = {"tenant": tenant, "post_id": post_id, "source": "vendor-feed", "text": text,
           "event_time": moment.isoformat().replace("+00:00", "Z")}
    return json.dumps(doc).encode(), int(moment.timestamp() * 1000)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_known_posts_give_exact_alerts_dead_letters_and_counts(scratch, mode):
    t, settings = scratch.tenant, scratch.settings
    publish(settings, [
        make_rule("watch-portal", t, "watched_asset", {"indicator_type": "domain", "value": "city.example"}),
        make_rule("derby", t, "investigation", {"match": "phrase", "terms": "derby tonight"}),
    ], scratch.rules)
    posts = [
        social(t, "p1", "Lovely sunny morning at the harbour", 0),
        social(t, "p2", "Police everywhere for the derby tonight", 1),
        social(t, "p3", "I will kill them all and burn down the station, I hate this city", 2),
        social(t, "p2", "Police everywhere for the derby tonight", 3),          # the same post again
        social(t, "p4", "Queues at the derby tonight, fans angry", 20),
    ]
    # enough ordinary posts after p4 that the source's periodic watermark (minute 20 less the 5 s tolerated) has
    # passed by the time p5 is read: posts the JVM gate hands to Python ("stable" holds the threat literal "stab"),
    # which raise nothing, so that reading them takes the source as long as before the gate
    fillers = [social(t, f"f{i}", "Stable weather", 20) for i in range(FILLERS)]
    late = social(t, "p5", "Outage at portal.city.example again", 1)     # 19 minutes behind: late
    items = [
        cti(t, "c1", "Phishing kit impersonating portal.city.example, see CVE-2026-12345", 4),
        cti(t, "c2", "Advisory: attackers kill the VPN session before they attack the gateway", 5),
    ]
    bad_social = [b"not json at all", social("ghost", "g1", "derby tonight", 6)[0]]
    bad_cti = [json.dumps({"tenant": t, "post_id": "c9", "text": "no source, no time"}).encode()]
    scratch.produce([p for p, _ in posts[:3]] + bad_social + [p for p, _ in posts[3:] + fillers + [late]],
                    timestamps=[ts for _, ts in posts[:3]] + [posts[2][1]] * 2
                    + [ts for _, ts in posts[3:] + fillers + [late]])
    scratch.produce([p for p, _ in items] + bad_cti, timestamps=[ts for _, ts in items] + [items[1][1]],
                    topic=scratch.source2)

    run_id = f"test-{uuid.uuid4().hex[:8]}"
    run_script("jobs/streaming/text_intelligence.py", "--bounded", "--topic", f"social.posts={scratch.source}",
               "--topic", f"cti.posts={scratch.source2}", "--tenants", t, "--group-id", f"test-{t}",
               "--rules-topic", scratch.rules, "--run-id", run_id, env={"IMPETUS_FLINK_PYTHON_MODE": mode})

    alerts = scratch.read(scratch.alerts)
    found = sorted((a["category"], a["detector"]["name"], a["entity"]["id"], a.get("count", 1)) for a in alerts)
    assert found == [
        ("indicator_match", "watch-portal", "cti.posts:c1", 1),
        ("indicator_match", "watch-portal", "social.posts:p5", 1),
        ("investigation_hit", "derby", "social.posts:p2", 1),
        ("investigation_hit", "derby", "social.posts:p2", 2),      # the repeat, counted when its window closed
        ("investigation_hit", "derby", "social.posts:p4", 1),
        ("threat_language", "default-threat_language", "social.posts:p3", 1),
    ]
    threat = next(a for a in alerts if a["category"] == "threat_language")
    assert threat["evidence"]["threat_terms"] == "kill, burn down" and threat["severity"] == "critical"
    late = next(a for a in alerts if a["entity"]["id"] == "social.posts:p5")
    assert late["evidence"].get("late_event") is True
    assert all(a["tenant"] == t for a in alerts)

    assert [(d["reason"], d["payload"]) for d in scratch.read(scratch.dlq)] == [
        ("not JSON: Expecting value at line 1 column 1", "not json at all"),
        ("unknown tenant 'ghost' (no alert topic for it)", bad_social[1].decode()),
    ]
    letters = scratch.read(scratch.dlq2)
    assert [d["source_topic"] for d in letters] == [scratch.source2]
    assert letters[0]["reason"].startswith("does not match schema cti.posts")
    # nothing lost: the social messages (2 dead, 1 late) and 3 CTI items (1 dead)
    assert scratch.accounting(run_id) == {"messages_in": 11 + FILLERS, "processed": 8 + FILLERS,
                                          "dead_lettered": 3, "late": 1, "reports": 2}
