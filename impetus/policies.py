"""Processing policies, declared once in ``schemas/policies.yaml``.

A policy is one processing activity: its lawful purpose and basis, its owner, and how long its
data may be kept on Kafka (``kafka``, ``dead_letters`` for the dead-letter topics) and in the
lake (``lake``). Every topic (``policy`` in topics.yaml) and every table (``x-policy``) names
one; their retention is derived from it (:func:`topic_retention`, :func:`table_retention`).
A topic or table may declare a shorter retention of its own, never a longer one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from impetus.config import ConfigError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
FOREVER = -1
# a policy's lake retention when its data never reaches the lake
NOT_IN_LAKE = "none"


def parse_retention(value) -> int:
    """``"7d"`` -> milliseconds; ``"forever"`` -> -1."""
    text = str(value).strip().lower()
    if text in ("forever", "-1", "infinite"):
        return FOREVER
    match = re.fullmatch(r"(\d+)\s*(ms|s|m|h|d)", text)
    if not match:
        raise ConfigError(f"retention {value!r} is not a duration like 30s, 15m, 6h, 7d or 'forever'")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def _longer(a_ms: int, b_ms: int) -> bool:
    """Whether retention ``a`` keeps data longer than ``b`` (forever is the longest)."""
    if a_ms == FOREVER:
        return b_ms != FOREVER
    return b_ms != FOREVER and a_ms > b_ms


@dataclass(frozen=True)
class Policy:
    name: str
    purpose: str
    lawful_basis: str
    owner: str
    kafka: str
    dead_letters: str
    lake: str

    @property
    def in_lake(self) -> bool:
        return str(self.lake).lower() != NOT_IN_LAKE


@lru_cache(maxsize=None)
def _load(path: str) -> dict[str, Policy]:
    file = Path(path)
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"no processing policies at {file}: every topic and table names one") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}") from None
    policies = {}
    for name, fields in (spec.get("policies") or {}).items():
        missing = [f for f in ("purpose", "lawful_basis", "owner", "kafka", "lake") if not (fields or {}).get(f)]
        if missing:
            raise ConfigError(f"{file}: policy {name} lacks {', '.join(missing)}")
        policy = Policy(name=name, purpose=str(fields["purpose"]), lawful_basis=str(fields["lawful_basis"]),
                        owner=str(fields["owner"]), kafka=str(fields["kafka"]),
                        dead_letters=str(fields.get("dead_letters") or fields["kafka"]), lake=str(fields["lake"]))
        for what in ("kafka", "dead_letters") + (("lake",) if policy.in_lake else ()):
            try:
                parse_retention(getattr(policy, what))
            except ConfigError as err:
                raise ConfigError(f"{file}: policy {name}, {what}: {err}") from None
        policies[name] = policy
    return policies


def load_policies(schemas_dir: Path) -> dict[str, Policy]:
    """Every policy of ``schemas_dir/policies.yaml`` by name."""
    return _load(str(Path(schemas_dir) / "policies.yaml"))


def policy_named(schemas_dir: Path, name: str | None, who: str) -> Policy:
    """The policy ``who`` (a topic or table) names; a clear error when it names none or an unknown one."""
    policies = load_policies(schemas_dir)
    if not name:
        raise ConfigError(f"{who} names no processing policy; add one of {', '.join(policies)} "
                          f"(declared in schemas/policies.yaml)")
    if name not in policies:
        raise ConfigError(f"{who} names the policy {name!r}, which schemas/policies.yaml does not declare "
                          f"(declared: {', '.join(policies)})")
    return policies[name]


def _bounded(own, ceiling: str, who: str, where: str) -> str:
    if own is None:
        return ceiling
    if _longer(parse_retention(own), parse_retention(ceiling)):
        raise ConfigError(f"{who} keeps data for {own}, longer than the {ceiling} its policy allows ({where}); "
                          f"shorten it, or change the policy in schemas/policies.yaml")
    return str(own)


def topic_retention(policy: Policy, topic: str, own=None, dead_letters: bool = False) -> str:
    """A topic's retention: its own when declared (no longer than the policy's), else the policy's."""
    ceiling = policy.dead_letters if dead_letters else policy.kafka
    return _bounded(own, ceiling, f"topic {topic}", f"policy {policy.name}, "
                                                    f"{'dead_letters' if dead_letters else 'kafka'}")


def table_retention(policy: Policy, table: str, own=None) -> str:
    """A table's retention: its own ``x-retention`` when declared (no longer than the policy's), else the policy's."""
    if not policy.in_lake:
        raise ConfigError(f"table {table} names policy {policy.name}, whose data never reaches the lake (lake: none)")
    return _bounded(own, policy.lake, f"table {table}", f"policy {policy.name}, lake")
