"""The labelled synthetic feeds as they go onto their topics: what ``impetus replay cyber|text``
and the demo send, keyed and time-stamped the same way by both.

The generators (``security_logs``, ``flows``, ``text``) make the documents and their ground
truth; this module pairs each feed with its topic, message key and event-time field.
"""

from __future__ import annotations

from impetus.config import Settings
from impetus.replay.producer import ReplayResult, replay

# topic -> (message key, field that carries the event time)
WIRING = {
    # by collector: each collector's lines stay in order, as a collector would send them
    "security.syslog": (lambda d: d["collector"], "received_time"),
    # by source: one source's flows stay in order (the port-scan state is per source)
    "network.flows": (lambda d: d["src_ip"], "event_time"),
    "social.posts": (lambda d: d["post_id"], "event_time"),
    "cti.posts": (lambda d: d["post_id"], "event_time"),
}


def cyber_feeds(seed: int, start: str, hours: float) -> tuple[list[tuple[str, list[dict]]], list[dict]]:
    """([(topic, documents)], ground truth with the topic of each episode) of syslog lines and flows."""
    from impetus.replay import flows, security_logs

    lines, line_truth = security_logs.generate(seed=seed, start=start, hours=hours)
    records, flow_truth = flows.generate(seed=seed + 4, start=start, hours=hours)
    truth = ([dict(t, topic="security.syslog") for t in line_truth]
             + [dict(t, topic="network.flows") for t in flow_truth])
    return [("security.syslog", lines), ("network.flows", records)], truth


def text_feeds(seed: int, start: str, hours: float) -> tuple[list[tuple[str, list[dict]]], list[dict]]:
    """([(topic, documents)], ground truth per post) of social posts and CTI items."""
    from impetus.replay import text

    social, cti, truth = text.generate(seed=seed, start=start, hours=hours)
    return [("social.posts", social), ("cti.posts", cti)], truth


def send(settings: Settings, feeds: list[tuple[str, list[dict]]], speedup: float = 0.0,
         progress: bool = False) -> list[ReplayResult]:
    results = []
    for topic, documents in feeds:
        key, field = WIRING[topic]
        results.append(replay(settings, topic, documents, key=key, speedup=speedup, time_field=field,
                              progress=progress, total=len(documents)))
    return results
