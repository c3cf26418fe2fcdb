"""Cyber-threat detection rules (IMPETUS's CTDR): SSH brute force, sudo brute force and port scans.

Pure step functions over the security events of :mod:`impetus.detect.syslog` and
the ``network.flows`` records. Each keeps its memory in a plain, JSON-able state
value that the caller stores per key (Flink keyed state in
jobs/streaming/, a dict in :func:`detect_stream` for batch evaluation and tests)::

    state, alerts = brute_force_step(state, event, rule, tenant="oslo")

========================  =========================  ==========================================
rule kind                 key (:func:`state_keys`)   input
========================  =========================  ==========================================
``brute_force``           tenant, src_ip             auth_failure / auth_success events
``sudo_brute_force``      tenant, host, user         sudo_failure events
``port_scan``             tenant, src_ip             :func:`firewall_observation`, :func:`flow_observation`
========================  =========================  ==========================================

Window semantics, shared by the three rules. Times are event times (epoch ms in the
state). The window is the ``window_seconds`` ending at the newest event time seen
for the key, so events that arrive out of order still count as long as they are
within the window of the newest one; older ones are ignored. When the window holds
``threshold`` items (for port scans: ``distinct_ports`` ports on one host or
``distinct_hosts`` hosts on one port, a repeated probe counting once), the rule
alerts once, with the window's earliest event time as
the alert's event time, and then goes *silent*: further items extend the same
burst (and, for brute force, the follow-up window in which a successful login is
reported as a compromise) but raise nothing. The key *re-arms* when an item comes
more than ``window_seconds`` after the burst's latest item, i.e. once the window
has emptied; a new burst then needs ``threshold`` fresh items.
:func:`expires_at` says from which event time on the state can be dropped without
changing any later outcome (an event-time timer clears it).
"""

from __future__ import annotations

import ipaddress
import math
from bisect import insort
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Iterable


from impetus.alerts import make_alert, parse_time, utc_iso
from impetus.detect.syslog import SyslogParseError, parse_document, security_event
from impetus.rules import RuleBook, defaults_from
from impetus.schemas import document_error

RULE_KINDS = {
    "brute_force": {
        "description": "Failed SSH logins from one source IP (one per matching line: Failed <method>, Invalid user, "
                       "PAM authentication failure, preauth close, maximum attempts exceeded). `threshold` of them "
                       "within `window_seconds` raise a high `brute_force` alert about the IP; a successful login "
                       "from that IP from the burst's start until `follow_up_seconds` after its last failure raises "
                       "a critical `brute_force` alert about the account (once per account and burst).",
        "params": {
            "threshold": (5, "failed-login lines from one source that make a burst"),
            "window_seconds": (60, "sliding event-time window the failures must fall in"),
            "follow_up_seconds": (600, "how long after the burst's last failure a successful login is a compromise"),
            "max_remembered": (64, "cap on failures and successes kept in state per source (>= threshold)"),
        },
    },
    "sudo_brute_force": {
        "description": "sudo authentication failures of one user on one host (PAM failure lines and sudo's "
                       "'N incorrect password attempts' / 'NOT in sudoers' lines, one each). `threshold` of them "
                       "within `window_seconds` raise a high `brute_force` alert about the account user@host.",
        "params": {
            "threshold": (5, "sudo failure lines of one user on one host that make a burst"),
            "window_seconds": (300, "sliding event-time window the failures must fall in"),
            "max_remembered": (64, "cap on failures kept in state per account (>= threshold)"),
        },
    },
    "port_scan": {
        "description": "Probes from one source IP (firewall blocks, or short flows): `distinct_ports` destination "
                       "ports on one host (vertical scan) or one port on `distinct_hosts` hosts (horizontal sweep) "
                       "within `window_seconds` raise a `port_scan` alert about the IP (medium; high when the "
                       "source is an internal RFC 1918 address, a sign of lateral movement).",
        "params": {
            "distinct_ports": (20, "distinct destination ports on one host that make a vertical scan"),
            "distinct_hosts": (10, "distinct destination hosts on one port that make a horizontal sweep"),
            "window_seconds": (60, "sliding event-time window the probes must fall in"),
            "max_remembered": (256, "cap on (host, port) probes kept in state per source"),
            "probe_max_packets": (3, "flows with more packets than this are conversations, not probes"),
        },
    },
}

# The built-in rules, exactly as impetus.rules.RuleBook.single hands them out when the topic has no rule
# of the kind for a tenant; publishing a rule with the same rule_id (e.g. enabled=false) replaces them.
DEFAULT_RULES = {
    kind: {"rule_id": f"default-{kind}", "tenant": "*", "kind": kind, "enabled": True,
           "params": {name: default for name, (default, _) in spec["params"].items()},
           "updated_at": "1970-01-01T00:00:00.000Z"}
    for kind, spec in RULE_KINDS.items()
}
# Suffix of the detector name of the compromise alert, so it has its own ids beside the burst alert's.
COMPROMISE_SUFFIX = ".login_after_burst"
SAMPLE_SIZE = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
_INTERNAL = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))

COUNTERMEASURES = {
    "brute_force": "Block source IP {src_ip} at the perimeter firewall (or let fail2ban ban it), make sure SSH "
                   "on {hosts} accepts keys only, and check the targeted accounts for weak passwords.",
    "compromise": "Treat account {account} as compromised: lock it, terminate its sessions, block source IP "
                  "{src_ip} at the perimeter firewall, then review what the session did (auth log, shell history, "
                  "new SSH keys, cron jobs) before restoring access with new credentials.",
    "sudo_brute_force": "Ask the owner of {account} whether they ran sudo; if not, treat the account as "
                        "compromised: lock it, terminate its sessions and review the auth log of {host}.",
    "port_scan": "Block source IP {src_ip} at the perimeter firewall and check which of the probed services "
                 "({ports}) are exposed; close or restrict those that need not be reachable.",
}


# --------------------------------------------------------------------------- rules and keys

def rule_params(kind: str, params: dict | None = None) -> dict:
    """The parameters of a rule of ``kind``: its ``params`` over the defaults, checked.

    Raises ValueError naming the parameter for unknown names, non-integers and
    values below their minimum (:func:`rule_errors` reports it before the rule is applied).
    """
    if kind not in RULE_KINDS:
        raise ValueError(f"unknown rule kind {kind!r} (known: {', '.join(sorted(RULE_KINDS))})")
    spec = RULE_KINDS[kind]["params"]
    merged = {name: default for name, (default, _) in spec.items()}
    for name, value in (params or {}).items():
        if name not in spec:
            raise ValueError(f"rule kind {kind!r} has no parameter {name!r} (known: {', '.join(spec)})")
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value)):
            raise ValueError(f"parameter {name!r} of rule kind {kind!r} must be a whole number, got {value!r}")
        merged[name] = int(value)
    for name, value in merged.items():
        least = 2 if name in ("threshold", "distinct_ports", "distinct_hosts") else 1
        if value < least:
            raise ValueError(f"parameter {name!r} of rule kind {kind!r} must be at least {least}, got {value}")
    for threshold in ("threshold", "distinct_ports", "distinct_hosts"):
        if merged["max_remembered"] < merged.get(threshold, 0):
            raise ValueError(f"max_remembered ({merged['max_remembered']}) of rule kind {kind!r} must be at least "
                             f"its {threshold} ({merged[threshold]})")
    return merged


def rule_errors(rule: dict) -> str | None:
    """Why a rule of one of the :data:`RULE_KINDS` cannot be applied, or None when it is usable.

    For ``impetus.rules.check_rule``: a rule that passes it never makes a step raise.
    """
    if not isinstance(rule, dict):
        return f"a rule must be an object, not {type(rule).__name__}"
    error = document_error("rules", rule)
    if error or rule.get("deleted"):
        return error
    try:
        rule_params(rule["kind"], rule["params"])
    except ValueError as err:
        return str(err)
    return None


def rule_book(rules: Iterable[dict] = ()) -> RuleBook:
    """A :class:`impetus.rules.RuleBook` with the cyber defaults and ``rules`` applied in order."""
    book = RuleBook(defaults=defaults_from(RULE_KINDS, list(RULE_KINDS)))
    for rule in rules:
        book.apply(rule)
    return book


def rule_for(kind: str, tenant: str, book: RuleBook | None = None) -> dict | None:
    """The one rule of ``kind`` that applies to ``tenant``: its own, else ``*``, else the default; None if paused."""
    return (book or rule_book()).single(tenant, kind)


def state_keys(tenant: str, event: dict) -> list[tuple[str, str]]:
    """``[(rule kind, key)]`` under which a security event must be processed (empty when none)."""
    kind = event["kind"]
    if kind in ("auth_failure", "auth_success") and event["src_ip"]:
        return [("brute_force", f"{tenant}|{event['src_ip']}")]
    if kind == "sudo_failure" and event["user"] and event["host"]:
        return [("sudo_brute_force", f"{tenant}|{event['host']}|{event['user']}")]
    if kind == "firewall_block" and firewall_observation(event):
        return [("port_scan", f"{tenant}|{event['src_ip']}")]
    return []


def _rule(kind: str, rule: dict | None) -> tuple[dict, dict]:
    rule = rule or DEFAULT_RULES[kind]
    if rule["kind"] != kind:
        raise ValueError(f"rule {rule['rule_id']!r} is of kind {rule['kind']!r}, not {kind!r}")
    return rule, rule_params(kind, rule.get("params"))


def _detector(rule: dict, suffix: str = "") -> dict:
    return {"kind": "rule", "name": rule["rule_id"] + suffix, "version": rule["updated_at"]}


# --------------------------------------------------------------------------- time and state helpers

def to_ms(event_time: str) -> int:
    """Epoch milliseconds of an ISO 8601 time."""
    return (parse_time(event_time) - _EPOCH) // _MS


def from_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC (ms, ``Z``) of epoch milliseconds."""
    return utc_iso(_EPOCH + epoch_ms * _MS)


def is_internal(ip: str | None) -> bool:
    """True for RFC 1918 / unique-local addresses (not for the documentation ranges)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in _INTERNAL if network.version == address.version)


def _sample(values: Iterable, size: int = SAMPLE_SIZE) -> str:
    ordered = sorted(set(values))
    text = ",".join(str(value) for value in ordered[:size])
    return text + (",..." if len(ordered) > size else "")


def _new_state() -> dict:
    return {"newest": None, "items": [], "silenced": False, "burst": None, "expires": None}


def _admit(state: dict, t: int, item: list, window_ms: int, cap: int) -> bool:
    """Puts an item into the window; False when the key is silent (the item only extends the burst).

    ``item`` is ``[event time ms, ...details]``; items stay sorted so the outcome
    does not depend on arrival order within the window.
    """
    state["newest"] = t if state["newest"] is None else max(state["newest"], t)
    burst = state["burst"]
    if state["silenced"] and t > burst["last"] + window_ms:
        state["silenced"] = False
        state["items"] = []
    if state["silenced"]:
        if t < state["newest"] - window_ms:
            return False
        burst["first"], burst["last"] = min(burst["first"], t), max(burst["last"], t)
        burst["count"] += 1
        return False
    insort(state["items"], item)
    horizon = state["newest"] - window_ms
    state["items"] = [kept for kept in state["items"] if kept[0] >= horizon][-cap:]
    return True


def _silence(state: dict, **burst) -> None:
    state["silenced"] = True
    state["burst"] = burst
    state["items"] = []


def expires_at(state: dict | None) -> int | None:
    """Event time (epoch ms) from which the state can be dropped; None for no state.

    Register an event-time timer there after each step; when it fires and
    ``expires_at(state) <= timer`` still holds, clear the state.
    """
    return None if state is None else state["expires"]


# --------------------------------------------------------------------------- SSH brute force

def brute_force_step(state: dict | None, event: dict, rule: dict | None = None, *, tenant: str,
                     detected_at: datetime | None = None) -> tuple[dict | None, list[dict]]:
    """One auth_failure / auth_success event of one source IP: (new state, alerts).

    Other events, and events without a source IP, leave the state as it is.
    """
    if event["kind"] not in ("auth_failure", "auth_success") or not event["src_ip"]:
        return state, []
    rule, params = _rule("brute_force", rule)
    window_ms, follow_ms = params["window_seconds"] * 1000, params["follow_up_seconds"] * 1000
    state = _copy(state) if state is not None else {**_new_state(), "successes": [], "compromised": []}
    t = to_ms(event["event_time"])
    src_ip = event["src_ip"]
    alerts = []
    if event["kind"] == "auth_failure":
        if _admit(state, t, [t, event["user"] or "", event["host"] or ""], window_ms, params["max_remembered"]):
            if len(state["items"]) >= params["threshold"]:
                alerts.append(_brute_force_alert(state, params, rule, tenant, src_ip, detected_at))
                for success in list(state["successes"]):
                    alert = _compromise(state, success, follow_ms, rule, tenant, src_ip, detected_at)
                    alerts.extend([alert] if alert else [])
        elif state["burst"]:
            users = state["burst"]["users"]
            if event["user"] and event["user"] not in users and len(users) < params["max_remembered"]:
                insort(users, event["user"])
    else:
        state["newest"] = t if state["newest"] is None else max(state["newest"], t)
        success = [t, event["user"] or "", event["host"] or "", event["method"] or ""]
        alert = _compromise(state, success, follow_ms, rule, tenant, src_ip, detected_at)
        if alert:
            alerts.append(alert)
        else:
            # kept for a burst whose alert is still to come (its last failures may arrive after the login)
            insort(state["successes"], success)
            horizon = state["newest"] - window_ms
            state["successes"] = [kept for kept in state["successes"] if kept[0] >= horizon][-params["max_remembered"]:]
    burst = state["burst"]
    state["expires"] = max(state["newest"] + window_ms, burst["last"] + follow_ms if burst else 0)
    return state, alerts


def _brute_force_alert(state: dict, params: dict, rule: dict, tenant: str, src_ip: str,
                       detected_at: datetime | None) -> dict:
    failures = state["items"]
    first, last = failures[0][0], failures[-1][0]
    users = sorted({user for _, user, _ in failures if user})
    hosts = sorted({host for _, _, host in failures if host})
    count = len(failures)
    _silence(state, first=first, last=last, count=count, users=users, hosts=hosts)
    state["compromised"] = []
    return make_alert(
        tenant=tenant, category="brute_force", severity="high",
        title=f"SSH brute force from {src_ip}: {count} failed logins in {(last - first) / 1000:g} s "
              f"against {len(users)} account(s)",
        detector=_detector(rule), entity={"type": "ip", "id": src_ip}, event_time=from_ms(first),
        evidence={"src_ip": src_ip, "failures": count, "distinct_users": len(users), "sample_users": _sample(users),
                  "target_hosts": _sample(hosts), "first_failure": from_ms(first), "last_failure": from_ms(last),
                  "threshold": params["threshold"], "window_seconds": params["window_seconds"],
                  "source_internal": is_internal(src_ip)},
        countermeasure=COUNTERMEASURES["brute_force"].format(src_ip=src_ip, hosts=_sample(hosts) or "the hosts"),
        detected_at=detected_at)


def _compromise(state: dict, success: list, follow_ms: int, rule: dict, tenant: str, src_ip: str,
                detected_at: datetime | None) -> dict | None:
    """The critical alert for a successful login during or after an alerted burst, once per account."""
    t, user, host, method = success
    burst = state["burst"]
    account = f"{user}@{host}" if host else user
    if not burst or not burst["first"] <= t <= burst["last"] + follow_ms or account in state["compromised"]:
        return None
    state["compromised"].append(account)
    return make_alert(
        tenant=tenant, category="brute_force", severity="critical",
        title=f"Login as {user} on {host or 'unknown host'} from {src_ip} after a brute-force burst "
              f"of {burst['count']} failures",
        detector=_detector(rule, COMPROMISE_SUFFIX), entity={"type": "account", "id": account},
        event_time=from_ms(t),
        evidence={"src_ip": src_ip, "user": user, "host": host, "method": method,
                  "burst_failures": burst["count"], "burst_distinct_users": len(burst["users"]),
                  "user_was_tried": user in burst["users"], "burst_first_failure": from_ms(burst["first"]),
                  "burst_last_failure": from_ms(burst["last"]), "seconds_after_burst": (t - burst["last"]) / 1000,
                  "source_internal": is_internal(src_ip)},
        countermeasure=COUNTERMEASURES["compromise"].format(account=account, src_ip=src_ip),
        detected_at=detected_at)


# --------------------------------------------------------------------------- sudo brute force

def sudo_brute_force_step(state: dict | None, event: dict, rule: dict | None = None, *, tenant: str,
                          detected_at: datetime | None = None) -> tuple[dict | None, list[dict]]:
    """One sudo_failure event of one user on one host: (new state, alerts)."""
    if event["kind"] != "sudo_failure" or not event["user"] or not event["host"]:
        return state, []
    rule, params = _rule("sudo_brute_force", rule)
    window_ms = params["window_seconds"] * 1000
    state = _copy(state) if state is not None else _new_state()
    t = to_ms(event["event_time"])
    alerts = []
    if _admit(state, t, [t, event["command"] or ""], window_ms, params["max_remembered"]):
        if len(state["items"]) >= params["threshold"]:
            alerts.append(_sudo_alert(state, params, rule, tenant, event, detected_at))
    state["expires"] = state["newest"] + window_ms
    return state, alerts


def _sudo_alert(state: dict, params: dict, rule: dict, tenant: str, event: dict,
                detected_at: datetime | None) -> dict:
    failures = state["items"]
    first, last, count = failures[0][0], failures[-1][0], len(failures)
    commands = sorted({command for _, command in failures if command})
    _silence(state, first=first, last=last, count=count)
    account = f"{event['user']}@{event['host']}"
    return make_alert(
        tenant=tenant, category="brute_force", severity="high",
        title=f"Repeated sudo failures for {event['user']} on {event['host']}: {count} in {(last - first) / 1000:g} s",
        detector=_detector(rule), entity={"type": "account", "id": account}, event_time=from_ms(first),
        evidence={"user": event["user"], "host": event["host"], "failures": count,
                  "sample_commands": _sample(commands, 3), "first_failure": from_ms(first),
                  "last_failure": from_ms(last), "threshold": params["threshold"],
                  "window_seconds": params["window_seconds"]},
        countermeasure=COUNTERMEASURES["sudo_brute_force"].format(account=account, host=event["host"]),
        detected_at=detected_at)


# --------------------------------------------------------------------------- port scan

def firewall_observation(event: dict) -> dict | None:
    """The port-scan observation of a firewall_block event, or None when it names no source or port."""
    if event["kind"] != "firewall_block" or not event["src_ip"] or not event["dst_ip"] or event["dst_port"] is None:
        return None
    return {"event_time": event["event_time"], "src_ip": event["src_ip"], "dst_ip": event["dst_ip"],
            "dst_port": event["dst_port"]}


def flow_observation(flow: dict, rule: dict | None = None) -> dict | None:
    """The port-scan observation of a ``network.flows`` record, or None when it is a conversation.

    A probe is a flow of at most ``probe_max_packets`` packets (SYN, SYN-ACK/RST...);
    longer flows are real traffic and must not make a busy client look like a sweep.
    """
    _, params = _rule("port_scan", rule)
    packets = flow.get("packets")
    if packets is not None and packets > params["probe_max_packets"]:
        return None
    return {"event_time": flow["event_time"], "src_ip": flow["src_ip"], "dst_ip": flow["dst_ip"],
            "dst_port": flow["dst_port"]}


def port_scan_step(state: dict | None, observation: dict, rule: dict | None = None, *, tenant: str,
                   detected_at: datetime | None = None) -> tuple[dict | None, list[dict]]:
    """One observation ``{event_time, src_ip, dst_ip, dst_port}`` of one source IP: (new state, alerts)."""
    if not observation["src_ip"] or not observation["dst_ip"] or observation["dst_port"] is None:
        return state, []
    rule, params = _rule("port_scan", rule)
    window_ms = params["window_seconds"] * 1000
    state = _copy(state) if state is not None else _new_state()
    t = to_ms(observation["event_time"])
    target = [observation["dst_ip"], observation["dst_port"]]
    # A probe repeated to the same host and port counts once, at its latest time.
    previous = [item for item in state["items"] if item[1:] == target]
    if previous:
        state["items"].remove(previous[0])
        t = max(t, previous[0][0])
    alerts = []
    if _admit(state, t, [t, *target], window_ms, params["max_remembered"]):
        ports_per_host = Counter(host for _, host, _ in state["items"])
        hosts_per_port = Counter(port for _, _, port in state["items"])
        if (max(ports_per_host.values()) >= params["distinct_ports"]
                or max(hosts_per_port.values()) >= params["distinct_hosts"]):
            alerts.append(_port_scan_alert(state, params, rule, tenant, observation["src_ip"], ports_per_host,
                                           hosts_per_port, detected_at))
    state["expires"] = state["newest"] + window_ms
    return state, alerts


def _port_scan_alert(state: dict, params: dict, rule: dict, tenant: str, src_ip: str, ports_per_host: Counter,
                     hosts_per_port: Counter, detected_at: datetime | None) -> dict:
    probes = state["items"]
    first, last = probes[0][0], probes[-1][0]
    # ties go to the smallest host / port, so the same probes always give the same evidence
    top_host, top_host_ports = min(ports_per_host.items(), key=lambda pair: (-pair[1], pair[0]))
    top_port, top_port_hosts = min(hosts_per_port.items(), key=lambda pair: (-pair[1], pair[0]))
    vertical = top_host_ports >= params["distinct_ports"]
    horizontal = top_port_hosts >= params["distinct_hosts"]
    scan_type = "vertical+horizontal" if vertical and horizontal else "vertical" if vertical else "horizontal"
    ports = sorted(hosts_per_port)
    count = len(probes)
    _silence(state, first=first, last=last, count=count)
    if vertical:
        title = f"Port scan from {src_ip}: {top_host_ports} ports on {top_host} in {(last - first) / 1000:g} s"
    else:
        title = (f"Horizontal sweep from {src_ip}: port {top_port} on {top_port_hosts} hosts "
                 f"in {(last - first) / 1000:g} s")
    internal = is_internal(src_ip)
    return make_alert(
        tenant=tenant, category="port_scan", severity="high" if internal else "medium", title=title,
        detector=_detector(rule), entity={"type": "ip", "id": src_ip}, event_time=from_ms(first),
        evidence={"src_ip": src_ip, "scan_type": scan_type, "distinct_ports": len(ports),
                  "distinct_hosts": len(ports_per_host), "probes": count,
                  "max_ports_on_one_host": top_host_ports, "top_host": top_host,
                  "max_hosts_on_one_port": top_port_hosts, "top_port": top_port,
                  "sample_ports": _sample(ports, 12), "first_probe": from_ms(first), "last_probe": from_ms(last),
                  "window_seconds": params["window_seconds"], "source_internal": internal},
        countermeasure=COUNTERMEASURES["port_scan"].format(src_ip=src_ip, ports=_sample(ports, 12)),
        detected_at=detected_at)


def _copy(state: dict) -> dict:
    """A copy deep enough that a step never mutates the state it was given (Flink may still hold it)."""
    copied = {key: list(value) if isinstance(value, list) else value for key, value in state.items()}
    for key in ("items", "successes"):
        if key in copied:
            copied[key] = [list(item) for item in copied[key]]
    if copied.get("burst"):
        copied["burst"] = {key: list(value) if isinstance(value, list) else value
                           for key, value in copied["burst"].items()}
    return copied


# --------------------------------------------------------------------------- batch runner

STEPS = {"brute_force": brute_force_step, "sudo_brute_force": sudo_brute_force_step, "port_scan": port_scan_step}


def detect_stream(documents: Iterable[dict], rules: Iterable[dict] = (), tz: str | None = None,
                  detected_at: datetime | None = None) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Every alert of a ``security.syslog`` stream, in plain Python: (alerts, [(document, dead-letter reason)]).

    The reference semantics of the streaming job: documents in arrival order, the
    rule of each kind picked per tenant as by :class:`impetus.rules.RuleBook` from
    ``rules`` (rule documents, applied in order), one state per rule and key, and
    states that never expire (the same outcome as timers that clear them at
    :func:`expires_at`). Used for evaluation and tests.
    """
    book = rule_book(rules)
    states: dict[tuple[str, str], dict | None] = {}
    alerts: list[dict] = []
    rejected: list[tuple[dict, str]] = []
    for document in documents:
        try:
            record = parse_document(document, tz)
        except SyslogParseError as err:
            rejected.append((document, str(err)))
            continue
        event = security_event(record)
        if event is None:
            continue
        tenant = document["tenant"]
        for kind, key in state_keys(tenant, event):
            rule = rule_for(kind, tenant, book)
            if rule is None:
                continue
            payload = firewall_observation(event) if kind == "port_scan" else event
            state_key = (rule["rule_id"], key)
            states[state_key], raised = STEPS[kind](states.get(state_key), payload, rule, tenant=tenant,
                                                    detected_at=detected_at)
            alerts.extend(raised)
    return alerts, rejected
