import pytest

from impetus.config import ConfigError, load_settings
from impetus.topics import declared_topics, parse_retention


def test_parse_retention():
    assert parse_retention("30s") == 30_000
    assert parse_retention("15m") == 900_000
    assert parse_retention("6h") == 21_600_000
    assert parse_retention("7d") == 604_800_000
    assert parse_retention("forever") == -1
    with pytest.raises(ConfigError, match="not a duration"):
        parse_retention("a week")


def test_declared_topics_expand_tenants_and_apply_defaults():
    topics = {t.name: t for t in declared_topics(load_settings())}
    assert {"alerts.auckland", "alerts.oslo", "alerts.padova"} <= set(topics)
    assert "alerts.{tenant}" not in topics
    for event in ("sensors.readings", "video.frames", "security.syslog", "network.flows", "social.posts",
                  "cti.posts"):
        assert topics[event].schema == event
        assert topics[f"{event}.dlq"].schema == "dlq"
    assert topics["sensors.readings"].partitions == 3
    assert topics["video.frames"].retention_ms == 3_600_000
    assert topics["rules"].cleanup == "compact"
    assert topics["rules"].retention_ms == -1
    assert topics["alerts.feedback"].partitions == 1  # from defaults
    assert topics["alerts.oslo"].configs == {"retention.ms": "2592000000", "cleanup.policy": "delete"}
