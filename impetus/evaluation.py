"""Detection quality against labelled replays: which injected episodes were found, which alerts were right.

The cyber replayers (``impetus.replay.security_logs``, ``impetus.replay.flows``) return one
ground-truth record per injected episode ({tenant, kind, entity_type, entity, start, end});
an alert *matches* an episode when tenant, category, entity type and id agree and its event
time lies within the episode (plus a little slack for clock jitter). Per category:
recall = episodes with at least one matching alert / episodes; precision = alerts that match
some episode / alerts. Used by ``impetus demo`` and ``bench/detection_quality.py``.
"""

from __future__ import annotations

from impetus.alerts import parse_time

# which alert category finds which kind of injected episode
CATEGORY_OF_EPISODE = {"brute_force": "brute_force", "brute_force_success": "brute_force",
                       "port_scan": "port_scan", "exfiltration": "flow_anomaly"}
SLACK_S = 2.0


def _matches(alert: dict, episode: dict) -> bool:
    if (alert["tenant"] != episode["tenant"] or alert["category"] != CATEGORY_OF_EPISODE.get(episode["kind"])
            or alert["entity"]["type"] != episode["entity_type"] or alert["entity"]["id"] != episode["entity"]):
        return False
    moment = parse_time(alert["event_time"]).timestamp()
    return (parse_time(episode["start"]).timestamp() - SLACK_S <= moment
            <= parse_time(episode["end"]).timestamp() + SLACK_S)


def score_episodes(truth: list[dict], alerts: list[dict]) -> dict[str, dict]:
    """{category: {episodes, found, recall, alerts, true_alerts, precision}} over the categories in play."""
    categories = sorted({CATEGORY_OF_EPISODE[e["kind"]] for e in truth if e["kind"] in CATEGORY_OF_EPISODE}
                        | {a["category"] for a in alerts if a["category"] in CATEGORY_OF_EPISODE.values()})
    report = {}
    for category in categories:
        episodes = [e for e in truth if CATEGORY_OF_EPISODE.get(e["kind"]) == category]
        raised = [a for a in alerts if a["category"] == category]
        found = sum(1 for e in episodes if any(_matches(a, e) for a in raised))
        true_alerts = sum(1 for a in raised if any(_matches(a, e) for e in episodes))
        report[category] = {
            "episodes": len(episodes), "found": found,
            "recall": round(found / len(episodes), 4) if episodes else None,
            "alerts": len(raised), "true_alerts": true_alerts,
            "precision": round(true_alerts / len(raised), 4) if raised else None,
        }
    return report
