from impetus.evaluation import score_episodes


def alert(category, entity, event_time, tenant="oslo", entity_type="ip"):
    return {"tenant": tenant, "category": category, "entity": {"type": entity_type, "id": entity},
            "event_time": event_time}


TRUTH = [
    {"tenant": "oslo", "kind": "brute_force", "entity_type": "ip", "entity": "203.0.113.7",
     "start": "2026-05-01T10:00:00Z", "end": "2026-05-01T10:01:00Z"},
    {"tenant": "oslo", "kind": "brute_force_success", "entity_type": "account", "entity": "root@gw",
     "start": "2026-05-01T10:01:30Z", "end": "2026-05-01T10:01:30Z"},
    {"tenant": "padova", "kind": "port_scan", "entity_type": "ip", "entity": "198.51.100.9",
     "start": "2026-05-01T10:00:00Z", "end": "2026-05-01T10:00:40Z"},
    {"tenant": "oslo", "kind": "malformed", "entity_type": "line", "entity": "garbage",
     "start": "2026-05-01T10:00:00Z", "end": "2026-05-01T10:00:00Z"},
]


def test_alerts_match_episodes_by_tenant_category_entity_and_time():
    alerts = [
        alert("brute_force", "203.0.113.7", "2026-05-01T10:00:00.000Z"),        # matches the burst
        alert("brute_force", "root@gw", "2026-05-01T10:01:31.500Z", entity_type="account"),  # within 2 s slack
        alert("brute_force", "203.0.113.8", "2026-05-01T10:00:10.000Z"),        # no such episode
        alert("port_scan", "198.51.100.9", "2026-05-01T10:00:20.000Z"),         # wrong tenant
    ]
    assert score_episodes(TRUTH, alerts) == {
        "brute_force": {"episodes": 2, "found": 2, "recall": 1.0, "alerts": 3, "true_alerts": 2,
                        "precision": 0.6667},
        "port_scan": {"episodes": 1, "found": 0, "recall": 0.0, "alerts": 1, "true_alerts": 0, "precision": 0.0},
    }
