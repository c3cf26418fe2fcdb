import uuid

from impetus.alerts import ALERT_NAMESPACE, make_alert
from impetus.detect.suppression import close_windows, next_deadline, suppress_step
from impetus.schemas import validator

MIN = 60_000


def alert(minute, severity="medium", entity="s1"):
    return make_alert(tenant="oslo", category="urban_anomaly", severity=severity, title=f"odd count at {entity}",
                      detector={"kind": "rule", "name": "r1", "version": "1"},
                      entity={"type": "sensor", "id": entity}, event_time=f"2026-05-01T10:{minute:02d}:00Z",
                      evidence={"value": 1.0})


def test_first_alert_passes_repeats_are_held_and_summarised_when_the_window_closes():
    state, out = suppress_step(None, alert(0), window_ms=15 * MIN)
    assert [a["event_time"] for a in out] == ["2026-05-01T10:00:00.000Z"]
    state, out = suppress_step(state, alert(5, "high"), window_ms=15 * MIN)
    assert out == []
    state, out = suppress_step(state, alert(9), window_ms=15 * MIN)
    assert out == []
    state, out = suppress_step(state, alert(3, entity="s2"), window_ms=15 * MIN)
    assert [a["entity"]["id"] for a in out] == ["s2"]
    assert next_deadline(state) == 1777630500000  # 10:15, when s1's window ends

    # 10:14:59.999 is still inside s1's window
    state, out = close_windows(state, 1777629600000 + 15 * MIN - 1)
    assert out == []
    state, out = close_windows(state, 1777629600000 + 18 * MIN)
    assert len(out) == 1
    summary = out[0]
    assert summary["count"] == 3
    assert summary["severity"] == "high" and summary["severity_id"] == 4
    assert summary["event_time"] == "2026-05-01T10:09:00.000Z"
    assert summary["title"] == "odd count at s1 (repeated 2 more times within 15 min)"
    assert summary["alert_id"] == str(uuid.uuid5(ALERT_NAMESPACE, "r1#repeats|sensor|s1|2026-05-01T10:09:00.000Z"))
    assert summary["evidence"]["suppressed_repeats"] == 2
    assert summary["evidence"]["first_alert_id"] == alert(0)["alert_id"]
    validator("alert")(summary)
    # s2 had no repeats: its window closes silently
    assert list(state) == []


def test_alert_after_window_end_before_timer_flushes_summary_then_opens_new_window():
    state, _ = suppress_step(None, alert(0), window_ms=10 * MIN)
    state, _ = suppress_step(state, alert(2), window_ms=10 * MIN)
    state, out = suppress_step(state, alert(12), window_ms=10 * MIN)
    assert [(a["count"], a["event_time"]) for a in out] == [
        (2, "2026-05-01T10:02:00.000Z"), (1, "2026-05-01T10:12:00.000Z")]
