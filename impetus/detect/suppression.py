"""Suppressing repeated alerts: one alert per entity and detector per window, repeats counted.

Operators keep one suppression state per key (a plain dict) and pass every alert
through :func:`suppress_step`. The first alert for a (detector, entity) opens a
window of ``window_ms`` of event time and goes out at once; further alerts for the
same pair inside the window are held back and counted. When the window closes
(the operator's event-time timer at :func:`next_deadline`), :func:`close_windows`
returns one follow-up alert per pair that had repeats: ``count`` = repeats + 1,
the worst severity seen, the time of the last repeat, and an id of its own (derived
like every alert id, from ``<detector>#repeats``), so consumers can tell it from the
first and de-duplicate it on replay like any other alert.
"""

from __future__ import annotations

from impetus.alerts import SEVERITY_IDS, alert_id, parse_time, utc_iso

DEFAULT_WINDOW_MS = 15 * 60 * 1000


def _pair(alert: dict) -> str:
    return f"{alert['detector']['name']}|{alert['entity']['type']}|{alert['entity']['id']}"


def _ms(alert: dict) -> int:
    return int(parse_time(alert["event_time"]).timestamp() * 1000)


def suppress_step(state: dict | None, alert: dict, window_ms: int = DEFAULT_WINDOW_MS) -> tuple[dict, list[dict]]:
    """(new state, alerts to emit now): the alert itself, nothing (a repeat), or, when the alert
    comes after its pair's window ended but before the timer closed it, that window's follow-up
    and then the alert."""
    state = dict(state or {})
    pair = _pair(alert)
    at = _ms(alert)
    window = state.get(pair)
    # a repeat is anything inside the window; slightly older alerts (out of order) count as repeats too
    if window is not None and window["opened"] - window_ms < at < window["until"]:
        window = dict(window, repeats=window["repeats"] + 1)
        if at >= _ms({"event_time": window["last_time"]}):
            window["last_time"] = alert["event_time"]
        if SEVERITY_IDS[alert["severity"]] > SEVERITY_IDS[window["worst"]]:
            window["worst"] = alert["severity"]
        state[pair] = window
        return state, []
    emitted = []
    if window is not None:
        summary = _follow_up(window)
        if summary:
            emitted.append(summary)
    state[pair] = {"opened": at, "until": at + window_ms, "first": alert, "repeats": 0,
                   "last_time": alert["event_time"], "worst": alert["severity"]}
    emitted.append(alert)
    return state, emitted


def _follow_up(window: dict) -> dict | None:
    if not window["repeats"]:
        return None
    first = window["first"]
    minutes = (window["until"] - window["opened"]) // 60000
    alert = dict(first, severity=window["worst"], severity_id=SEVERITY_IDS[window["worst"]],
                 event_time=utc_iso(parse_time(window["last_time"])), count=window["repeats"] + 1,
                 title=f"{first['title']} (repeated {window['repeats']} more times within {minutes} min)"[:256])
    alert["alert_id"] = alert_id(first["detector"]["name"] + "#repeats", first["entity"]["type"],
                                 first["entity"]["id"], window["last_time"])
    evidence = dict(first.get("evidence") or {})
    evidence.update(first_alert_id=first["alert_id"], suppressed_repeats=window["repeats"])
    alert["evidence"] = evidence
    return alert


def next_deadline(state: dict | None) -> int | None:
    """Event time (epoch ms) at which the earliest open window closes."""
    if not state:
        return None
    return min(w["until"] for w in state.values())


def close_windows(state: dict | None, watermark_ms: int) -> tuple[dict, list[dict]]:
    """Close every window that ended at or before ``watermark_ms``; follow-up alerts for those with repeats."""
    state = dict(state or {})
    follow_ups = []
    for pair, window in sorted(state.items()):
        if window["until"] > watermark_ms:
            continue
        del state[pair]
        summary = _follow_up(window)
        if summary:
            follow_ups.append(summary)
    return state, follow_ups
