"""Runtime detection rules: the compacted ``rules`` topic, its validation, and how detectors pick rules.

A rule (``schemas/rules.json``) is keyed by ``rule_id`` and names a ``kind`` that one
detector understands (the kinds and their parameters are listed by
``impetus rules kinds``). ``impetus rules add|list|pause|resume|delete`` manage the topic;
the streaming jobs read it as a broadcast stream and apply every change from the next
event on, without a restart.

Deleting publishes a marker (``"deleted": true``) rather than a Kafka tombstone: a job
that is down while compaction removes a tombstone would never learn of the deletion,
and the marker costs one small record per deleted id.

Which rules apply to an event of tenant T (:class:`RuleBook`):
- *single* kinds (one parameter set per tenant, e.g. ``brute_force``): the enabled rule
  for T if there is one, else the enabled rule for ``*``, else the built-in default
  (rule id ``default-<kind>``, which can itself be paused or changed on the topic);
- *multiple* kinds (``sensor_threshold``, ``investigation``, ``watched_asset``): every
  enabled rule for T or ``*``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone

from impetus.alerts import utc_iso
from impetus.config import Settings
from impetus.schemas import PayloadRejected, document_error, validation_error

TOPIC = "rules"
# kinds of which every matching rule applies; all other kinds take one parameter set per tenant
MULTIPLE = {"sensor_threshold", "investigation", "watched_asset", "zone_capacity", "object_alert"}


class RuleError(ValueError):
    """A rule that cannot be published or applied; the message says what to fix."""


def rule_kinds() -> dict[str, dict]:
    """Every rule kind a detector understands: {kind: {"description", "params": {name: (default, meaning)}}}."""
    from impetus.detect import cyber, flow_anomaly, objects, text, thresholds, urban, video

    kinds: dict[str, dict] = {}
    for module in (thresholds, urban, cyber, flow_anomaly, text, video, objects):
        kinds.update(getattr(module, "RULE_KINDS", {}))
    return kinds


def make_rule(rule_id: str, tenant: str, kind: str, params: dict, enabled: bool = True,
              updated_at: datetime | None = None) -> dict:
    return {"rule_id": rule_id, "tenant": tenant, "kind": kind, "enabled": enabled, "params": dict(params),
            "updated_at": utc_iso(updated_at or datetime.now(timezone.utc))}


def check_rule(rule: dict, kinds: dict[str, dict] | None = None) -> dict:
    """The rule if it is valid, else :class:`RuleError` naming the problem."""
    error = document_error("rules", rule)
    if error:
        raise RuleError(error)
    if rule.get("deleted"):
        return rule
    kinds = kinds if kinds is not None else rule_kinds()
    spec = kinds.get(rule["kind"])
    if spec is None:
        raise RuleError(f"unknown rule kind {rule['kind']!r}; known kinds: {', '.join(sorted(kinds))}")
    unknown = sorted(set(rule["params"]) - set(spec["params"]))
    if unknown:
        raise RuleError(f"rule {rule['rule_id']!r}: unknown parameter(s) {', '.join(unknown)} for kind "
                        f"{rule['kind']!r}; it takes {', '.join(sorted(spec['params'])) or 'none'}")
    problem = _non_finite(rule["params"]) or _param_errors(rule)
    if problem:
        raise RuleError(f"rule {rule['rule_id']!r}: {problem}")
    return rule


def _non_finite(value, where: str = "params") -> str | None:
    """Where a number that is not finite (NaN, an infinity: JSON's ``NaN`` or ``1e999`` decode to them) sits."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value!r}: numbers must be finite"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, each in items:
        problem = _non_finite(each, f"{where}.{name}")
        if problem:
            return problem
    return None


def _param_errors(rule: dict) -> str | None:
    """What is wrong with a rule's parameters, in the words of the detector that will apply them."""
    from impetus.detect import cyber, flow_anomaly, text, urban

    kind, params = rule["kind"], rule["params"]
    if kind in text.RULE_KINDS:
        return text.rule_errors(rule)
    if kind in cyber.RULE_KINDS:
        return cyber.rule_errors(rule)
    try:
        if kind in urban.RULE_KINDS:
            urban.rule_params(kind, params)
        elif kind in flow_anomaly.RULE_KINDS:
            flow_anomaly.rule_params(params)
        elif kind == "zone_capacity":
            from impetus.detect.video import zone_rule_errors

            return zone_rule_errors(params)
        elif kind == "object_alert":
            if not isinstance(params.get("model"), str) or not params["model"]:
                return "object_alert needs model (the registered detector's name)"
            if not isinstance(params.get("min_score", 0.5), (int, float)):
                return "object_alert min_score must be a number"
        elif kind == "sensor_threshold":
            if not isinstance(params.get("kind"), str) or not isinstance(params.get("threshold"), (int, float)):
                return "sensor_threshold needs kind (a sensor kind) and threshold (a number)"
    except ValueError as err:
        return str(err)
    return None


def parse_param(text: str) -> tuple[str, object]:
    """``name=value`` from the command line; numbers and true/false/null are typed."""
    name, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RuleError(f"parameter {text!r}: expected name=value")
    try:
        value = json.loads(raw)
        if isinstance(value, (dict, list)):
            value = raw
    except ValueError:
        value = raw
    return name, value


def publish(settings: Settings, rules: list[dict], topic: str = TOPIC) -> None:
    from impetus.replay.producer import make_producer

    producer = make_producer(settings)
    try:
        for rule in rules:
            producer.send(topic, key=rule["rule_id"].encode(), value=json.dumps(rule).encode())
        producer.flush()
    finally:
        producer.close()


def read_rules(settings: Settings, topic: str = TOPIC, include_deleted: bool = False) -> dict[str, dict]:
    """The current rules on the topic: the last valid document per rule id."""
    from impetus.topics import read_messages

    current: dict[str, dict] = {}
    for message in read_messages(settings, topic):
        try:
            rule = json.loads(message.value)
        except ValueError:
            continue
        if isinstance(rule, dict) and not validation_error("rules", message.value):
            current[rule["rule_id"]] = rule
    if not include_deleted:
        current = {k: r for k, r in current.items() if not r.get("deleted")}
    return current


def deletion_marker(rule_id: str, tenant: str, kind: str) -> dict:
    return {**make_rule(rule_id, tenant, kind, {}, enabled=False), "deleted": True}


class RuleBook:
    """The rules a detector knows, with the lookups it needs per event.

    Plain data (rule_id -> rule dict), so it can be rebuilt from broadcast state in
    every operator call and pickled with the operator.
    """

    def __init__(self, rules: dict[str, dict] | None = None, defaults: dict[str, dict] | None = None):
        self.rules = dict(rules or {})
        self.defaults = dict(defaults or {})  # kind -> params of the built-in rule
        self._answers = {}  # (lookup, tenant, kind) -> answer, until the rules change: detectors ask per event

    def apply(self, rule: dict) -> None:
        if rule.get("deleted"):
            self.rules.pop(rule["rule_id"], None)
        else:
            self.rules[rule["rule_id"]] = rule
        self._answers = {}

    def matching(self, tenant: str, kind: str) -> list[dict]:
        """Enabled rules of ``kind`` for ``tenant`` (tenant-specific first, then ``*``), by id."""
        key = ("matching", tenant, kind)
        if key not in self._answers:
            hits = [r for r in self.rules.values()
                    if r["kind"] == kind and r["enabled"] and r["tenant"] in (tenant, "*")]
            self._answers[key] = sorted(hits, key=lambda r: (r["tenant"] == "*", r["rule_id"]))
        return list(self._answers[key])

    def single(self, tenant: str, kind: str) -> dict | None:
        """The one rule of a single kind for ``tenant``: its own, else ``*``, else the built-in default.

        None when the kind is paused (the default rule id disabled and no other rule).
        """
        key = ("single", tenant, kind)
        if key not in self._answers:
            self._answers[key] = self._single(tenant, kind)
        return self._answers[key]

    def _single(self, tenant: str, kind: str) -> dict | None:
        mine = self.matching(tenant, kind)
        if mine:
            return mine[0]
        default_id = f"default-{kind}"
        override = self.rules.get(default_id)
        if override is not None:
            return None  # the built-in default is on the topic, and disabled (matching() skipped it)
        if kind in self.defaults:
            return {"rule_id": default_id, "tenant": "*", "kind": kind, "enabled": True,
                    "params": dict(self.defaults[kind]), "updated_at": "1970-01-01T00:00:00.000Z"}
        return None


def defaults_from(kinds: dict[str, dict], names: list[str]) -> dict[str, dict]:
    """Built-in parameter sets (each param's default) of the single kinds ``names``."""
    return {k: {p: spec[0] for p, spec in kinds[k]["params"].items() if spec[0] is not None} for k in names}


def detector_of(rule: dict) -> dict:
    """The alert's ``detector`` for an alert raised under ``rule``."""
    return {"kind": "rule", "name": rule["rule_id"], "version": rule["updated_at"]}


__all__ = ["RuleBook", "RuleError", "check_rule", "make_rule", "publish", "read_rules", "rule_kinds",
           "parse_param", "deletion_marker", "defaults_from", "detector_of", "PayloadRejected"]
