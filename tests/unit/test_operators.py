"""The operators' own bookkeeping, without Flink: how often they ask Flink for the watermark."""

import pytest

from impetus import operators
from impetus.detect.streams import AlertGate


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Context:
    """Stands in for a PyFlink context: a watermark that the test moves, and a count of the questions."""

    def __init__(self, watermark):
        self.watermark = watermark
        self.asked = 0

    def timer_service(self):
        return self

    def current_watermark(self):
        self.asked += 1
        return self.watermark


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(operators.time, "monotonic", clock)
    return clock


def test_late_check_asks_for_the_watermark_at_most_every_refresh_interval(clock):
    check, ctx = operators.LateCheck(), Context(watermark=1_000)
    assert check(2_000, ctx) is False and ctx.asked == 1
    assert check(500, ctx) is True and ctx.asked == 1        # behind the watermark already known: no question
    ctx.watermark = 3_000
    assert check(2_500, ctx) is False and ctx.asked == 1     # within 50 ms: judged on the watermark seen
    clock.now += 0.06
    assert check(2_500, ctx) is True and ctx.asked == 2      # then it asks again
    assert check(None, ctx) is False and ctx.asked == 2      # a record without a timestamp is never late


def test_alert_gate_keys_alerts_by_tenant_and_entity_and_passes_them_on():
    alert = {"tenant": "oslo", "entity": {"type": "post", "id": "social.posts:p1"}, "detector": {"name": "derby"}}
    gate = AlertGate()
    assert gate.key(alert) == "oslo|post|social.posts:p1"
    assert gate.on_event(None, alert, book=None) == (None, [alert])
    assert gate.deadline(None) is None
