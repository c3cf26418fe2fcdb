"""Kafka topics as declared in ``schemas/topics.yaml``, and applying them to a broker.

Each topic's retention comes from the processing policy it names (``schemas/policies.yaml``,
:mod:`impetus.policies`). Called by ``impetus stack up`` and ``impetus topics apply``. Applying is
idempotent: missing topics are created, partitions grown, and changed
``retention.ms`` / ``cleanup.policy`` values altered; nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from impetus.config import ConfigError, Settings
from impetus.policies import parse_retention, policy_named, topic_retention


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str | None
    partitions: int
    retention_ms: int
    cleanup: str
    # the processing policy (schemas/policies.yaml) the retention comes from
    policy: str = ""
    retention: str = ""

    @property
    def configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup}


def load_topics(schemas_dir: Path) -> tuple[list[str], list[TopicSpec]]:
    """(tenants, topic specs) from ``topics.yaml``, with ``{tenant}`` expanded."""
    path = schemas_dir / "topics.yaml"
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no topic declarations at {path}") from None
    tenants = list(spec.get("tenants", []))
    defaults = spec.get("defaults", {})
    declared = spec["topics"]
    topics = []
    for pattern, options in declared.items():
        merged = {**defaults, **(options or {})}
        names = [pattern.format(tenant=t) for t in tenants] if "{tenant}" in pattern else [pattern]
        # a dead-letter topic follows the policy of the topic it belongs to, unless it names its own
        dead_letters = merged.get("schema") == "dlq"
        policy_name = merged.get("policy")
        if policy_name is None and dead_letters and pattern.endswith(".dlq"):
            policy_name = (declared.get(pattern[: -len(".dlq")]) or {}).get("policy")
        policy = policy_named(schemas_dir, policy_name, f"topic {pattern} (schemas/topics.yaml)")
        retention = topic_retention(policy, pattern, merged.get("retention"), dead_letters=dead_letters)
        for name in names:
            cleanup = merged.get("cleanup", "delete")
            if cleanup not in ("delete", "compact"):
                raise ConfigError(f"topic {name}: cleanup must be delete or compact, not {cleanup!r}")
            topics.append(TopicSpec(
                name=name,
                schema=merged.get("schema"),
                partitions=int(merged.get("partitions", 1)),
                retention_ms=parse_retention(retention),
                cleanup=cleanup,
                policy=policy.name,
                retention=retention,
            ))
    return tenants, topics


def alert_topic(tenant: str) -> str:
    return f"alerts.{tenant}"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def declared_topics(settings: Settings) -> list[TopicSpec]:
    return load_topics(settings.schemas_dir)[1]


def tenants(settings: Settings) -> list[str]:
    return load_topics(settings.schemas_dir)[0]


def tenant_timezones(settings: Settings) -> dict[str, str]:
    """IANA time zone of each tenant (``timezones`` in topics.yaml; UTC when not declared)."""
    spec = yaml.safe_load((settings.schemas_dir / "topics.yaml").read_text(encoding="utf-8"))
    zones = spec.get("timezones") or {}
    return {tenant: zones.get(tenant, "UTC") for tenant in spec.get("tenants", [])}


def admin_client(settings: Settings, timeout_ms: int = 10_000):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="impetus-admin",
                            request_timeout_ms=timeout_ms)


def describe_topics(admin) -> dict[str, dict]:
    """``{name: {"partitions": n, "configs": {...}}}`` for every non-internal topic."""
    from kafka.admin import ConfigResource, ConfigResourceType

    names = sorted(t for t in admin.list_topics() if not t.startswith("__"))
    if not names:
        return {}
    partitions = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(names)}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    described = admin.describe_configs(resources).get("topic", {})
    configs = {name: {key: entry["value"] for key, entry in entries.items()}
               for name, entries in described.items()}
    return {n: {"partitions": partitions.get(n, 0), "configs": configs.get(n, {})} for n in names}


def apply_topics(settings: Settings, admin=None) -> list[str]:
    """Make the broker's topics match the declarations; returns what was changed."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

    own_admin = admin is None
    admin = admin or admin_client(settings)
    changes = []
    try:
        existing = describe_topics(admin)
        wanted = declared_topics(settings)
        new = [NewTopic(t.name, t.partitions, 1, topic_configs=t.configs) for t in wanted if t.name not in existing]
        if new:
            admin.create_topics(new)
            changes += [f"created {t.name}" for t in new]
        grow = {t.name: NewPartitions(t.partitions) for t in wanted
                if t.name in existing and existing[t.name]["partitions"] < t.partitions}
        if grow:
            admin.create_partitions(grow)
            changes += [f"grew {n} to {p.total_count} partitions" for n, p in grow.items()]
        alter = [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=t.configs) for t in wanted
                 if t.name in existing
                 and any(existing[t.name]["configs"].get(k) != v for k, v in t.configs.items())]
        if alter:
            admin.alter_configs(alter)
            changes += [f"updated settings of {r.name}" for r in alter]
    finally:
        if own_admin:
            admin.close()
    return changes


def end_offsets(settings: Settings, topic: str, committed_only: bool = True) -> dict[int, int]:
    """``{partition: next offset}`` of ``topic`` now; with ``committed_only`` the offset up to which
    transactions are settled (what a ``read_committed`` consumer can reach)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed" if committed_only else "read_uncommitted")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def settled_end_offsets(settings: Settings, topic: str, wait_s: float = 10.0) -> dict[int, int]:
    """End offsets once no transaction is pending on ``topic`` (or after ``wait_s``).

    A producer's commit returns before the broker has written the commit markers into
    the partitions, so right after a job ends its last transaction may still be open
    for read_committed consumers for a few milliseconds.
    """
    import time

    deadline = time.monotonic() + wait_s
    while True:
        committed = end_offsets(settings, topic, committed_only=True)
        if committed == end_offsets(settings, topic, committed_only=False) or time.monotonic() > deadline:
            return committed
        time.sleep(0.1)


def read_messages(settings: Settings, topic: str, since: dict[int, int] | None = None,
                  timeout_s: float = 30.0, committed_only: bool = True, key: str | None = None,
                  settle_s: float = 0.0) -> list:
    """Every message of ``topic`` after the offsets ``since`` (all of them without it), up to
    the end offsets at the time of the call; only committed ones unless ``committed_only`` is
    False (transactional producers: the Flink jobs' exactly-once sinks). ``key`` filters by key.
    ``settle_s``: first wait up to this long for pending transactions to settle (after a job ended)."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    if committed_only and settle_s > 0:
        until = settled_end_offsets(settings, topic, settle_s)
    else:
        until = end_offsets(settings, topic, committed_only)
    since = since or {}
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=16 << 20,
                             isolation_level="read_committed" if committed_only else "read_uncommitted")
    wanted_key = key.encode() if key is not None else None
    try:
        remaining = {p: end for p, end in until.items() if end > since.get(p, 0)}
        if not remaining:
            return []
        partitions = {p: TopicPartition(topic, p) for p in remaining}
        consumer.assign(list(partitions.values()))
        for p, tp in partitions.items():
            consumer.seek(tp, since.get(p, 0))
        messages = []
        # the end offsets are known, so keep polling until they are reached; the timeout only
        # guards against a broker that stops answering (a first fetch can take seconds)
        idle_since = time.monotonic()
        while remaining and time.monotonic() - idle_since < timeout_s:
            batch = consumer.poll(timeout_ms=200)
            for tp, records in batch.items():
                idle_since = time.monotonic()
                messages.extend(m for m in records if m.offset < until[tp.partition]
                                and (wanted_key is None or m.key == wanted_key))
            # the position passes transaction markers too, which are never returned as messages
            for p in list(remaining):
                if consumer.position(partitions[p]) >= remaining[p]:
                    del remaining[p]
        return sorted(messages, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()
