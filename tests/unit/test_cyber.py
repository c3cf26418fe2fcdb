import json
import uuid
from datetime import datetime, timezone

import pytest

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.cyber import (DEFAULT_RULES, RULE_KINDS, brute_force_step, detect_stream, expires_at,
                                  firewall_observation, flow_observation, port_scan_step, rule_book, rule_errors,
                                  rule_for, rule_params, state_keys, sudo_brute_force_step)
from impetus.schemas import validator

DETECTED = datetime(2026, 5, 1, 10, 5, 0, tzinfo=timezone.utc)
ATTACKER = "203.0.113.7"


def ssh(kind, second, user="root", src_ip=ATTACKER, host="bastion-oslo", method="password"):
    """An auth event at 10:00:00 + ``second`` seconds."""
    minute, sec = divmod(second, 60)
    return {"kind": kind, "event_time": f"2026-05-01T10:{minute:02d}:{sec:02d}Z", "host": host, "src_ip": src_ip,
            "src_port": 52211, "user": user, "dst_ip": None, "dst_port": None, "protocol": None, "method": method,
            "command": None}


def run_brute_force(events, rule=None, state=None):
    alerts = []
    for event in events:
        state, raised = brute_force_step(state, event, rule, tenant="oslo", detected_at=DETECTED)
        alerts.extend(raised)
    return state, alerts


def probe(second, dst_ip="198.51.100.10", dst_port=22, src_ip="192.0.2.50"):
    minute, sec = divmod(second, 60)
    return {"event_time": f"2026-05-01T10:{minute:02d}:{sec:02d}Z", "src_ip": src_ip, "dst_ip": dst_ip,
            "dst_port": dst_port}


def run_port_scan(observations, rule=None, state=None):
    alerts = []
    for observation in observations:
        state, raised = port_scan_step(state, observation, rule, tenant="oslo", detected_at=DETECTED)
        alerts.extend(raised)
    return state, alerts


# --------------------------------------------------------------------------- rules

def test_rule_kinds_document_every_parameter_with_its_default():
    assert rule_params("brute_force") == {"threshold": 5, "window_seconds": 60, "follow_up_seconds": 600,
                                          "max_remembered": 64}
    assert rule_params("sudo_brute_force") == {"threshold": 5, "window_seconds": 300, "max_remembered": 64}
    assert rule_params("port_scan") == {"distinct_ports": 20, "distinct_hosts": 10, "window_seconds": 60,
                                        "max_remembered": 256, "probe_max_packets": 3}
    for kind in RULE_KINDS.values():
        assert kind["description"]
        assert all(isinstance(text, str) and text for _, text in kind["params"].values())
    for rule in DEFAULT_RULES.values():
        validator("rules")(rule)


@pytest.mark.parametrize("kind, params, reason", [
    ("brute_force", {"treshold": 3}, "rule kind 'brute_force' has no parameter 'treshold' (known: threshold, "
                                     "window_seconds, follow_up_seconds, max_remembered)"),
    ("brute_force", {"threshold": 2.5}, "parameter 'threshold' of rule kind 'brute_force' must be a whole number, "
                                        "got 2.5"),
    ("brute_force", {"threshold": True}, "parameter 'threshold' of rule kind 'brute_force' must be a whole number, "
                                         "got True"),
    ("brute_force", {"threshold": "5"}, "parameter 'threshold' of rule kind 'brute_force' must be a whole number, "
                                        "got '5'"),
    ("brute_force", {"threshold": float("inf")}, "parameter 'threshold' of rule kind 'brute_force' must be a whole "
                                                 "number, got inf"),
    ("brute_force", {"threshold": 1}, "parameter 'threshold' of rule kind 'brute_force' must be at least 2, got 1"),
    ("brute_force", {"window_seconds": 0}, "parameter 'window_seconds' of rule kind 'brute_force' must be at least 1, "
                                           "got 0"),
    ("brute_force", {"threshold": 100}, "max_remembered (64) of rule kind 'brute_force' must be at least its "
                                        "threshold (100)"),
    ("port_scan", {"distinct_ports": 300}, "max_remembered (256) of rule kind 'port_scan' must be at least its "
                                           "distinct_ports (300)"),
    ("keyword", {}, "unknown rule kind 'keyword' (known: brute_force, port_scan, sudo_brute_force)"),
])
def test_bad_rule_params_are_refused_with_the_reason(kind, params, reason):
    with pytest.raises(ValueError) as error:
        rule_params(kind, params)
    assert str(error.value) == reason


def test_whole_floats_are_accepted_as_integers():
    assert rule_params("brute_force", {"threshold": 3.0})["threshold"] == 3


def test_rule_for_picks_the_tenants_own_then_star_then_the_default():
    assert rule_for("brute_force", "oslo") == {
        "rule_id": "default-brute_force", "tenant": "*", "kind": "brute_force", "enabled": True,
        "params": {"threshold": 5, "window_seconds": 60, "follow_up_seconds": 600, "max_remembered": 64},
        "updated_at": "1970-01-01T00:00:00.000Z"}
    strict = {"rule_id": "oslo-ssh-strict", "tenant": "oslo", "kind": "brute_force", "enabled": True,
              "params": {"threshold": 3}, "updated_at": "2026-05-03T00:00:00Z"}
    wide = {"rule_id": "ssh-wide", "tenant": "*", "kind": "brute_force", "enabled": True,
            "params": {"window_seconds": 120}, "updated_at": "2026-05-03T00:00:00Z"}
    book = rule_book([strict, wide])
    assert rule_for("brute_force", "oslo", book) == strict
    assert rule_for("brute_force", "padova", book) == wide
    assert rule_for("port_scan", "padova", book) == DEFAULT_RULES["port_scan"]
    paused = rule_book([{**DEFAULT_RULES["port_scan"], "enabled": False, "updated_at": "2026-05-04T00:00:00Z"}])
    assert rule_for("port_scan", "oslo", paused) is None
    deleted = rule_book([strict, {**strict, "enabled": False, "params": {}, "deleted": True}])
    assert rule_for("brute_force", "oslo", deleted) == DEFAULT_RULES["brute_force"]


def test_rule_errors_explains_unusable_rules():
    good = {"rule_id": "oslo-scan", "tenant": "oslo", "kind": "port_scan", "enabled": True,
            "params": {"distinct_ports": 50}, "updated_at": "2026-05-03T00:00:00Z"}
    assert rule_errors(good) is None
    assert rule_errors({**good, "params": {"distinct_ports": "many"}}) == (
        "parameter 'distinct_ports' of rule kind 'port_scan' must be a whole number, got 'many'")
    assert rule_errors({**good, "params": {}, "deleted": True}) is None
    assert rule_errors({**good, "colour": "red"}) == (
        "does not match schema rules: data must not contain {'colour'} properties")
    assert rule_errors(["not", "a", "rule"]) == "a rule must be an object, not list"


def test_state_keys_route_events_to_their_rule_and_key():
    assert state_keys("oslo", ssh("auth_failure", 0)) == [("brute_force", "oslo|203.0.113.7")]
    assert state_keys("oslo", ssh("auth_success", 0)) == [("brute_force", "oslo|203.0.113.7")]
    assert state_keys("oslo", ssh("auth_failure", 0, src_ip=None)) == []
    sudo = {**ssh("sudo_failure", 0, src_ip=None), "user": "kiosk", "host": "app01"}
    assert state_keys("oslo", sudo) == [("sudo_brute_force", "oslo|app01|kiosk")]
    block = {**ssh("firewall_block", 0, user=None), "src_ip": "192.0.2.9", "dst_ip": "198.51.100.4", "dst_port": 23}
    assert state_keys("oslo", block) == [("port_scan", "oslo|192.0.2.9")]
    assert state_keys("oslo", {**block, "dst_port": None}) == []
    assert state_keys("oslo", {**ssh("sudo_command", 0), "command": "/usr/bin/id"}) == []


# --------------------------------------------------------------------------- SSH brute force

def test_fifth_failure_within_a_minute_raises_the_exact_brute_force_alert():
    failures = [ssh("auth_failure", s, user=u) for s, u in
                ((0, "root"), (2, "admin"), (4, "root"), (7, "test"))]
    state, alerts = run_brute_force(failures)
    assert alerts == []
    state, alerts = run_brute_force([ssh("auth_failure", 9, user="admin")], state=state)
    assert alerts == [{
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "default-brute_force|ip|203.0.113.7|2026-05-01T10:00:00.000Z")),
        "class_uid": 2004, "tenant": "oslo", "time": "2026-05-01T10:05:00.000Z",
        "event_time": "2026-05-01T10:00:00.000Z", "severity": "high", "severity_id": 4, "category": "brute_force",
        "title": "SSH brute force from 203.0.113.7: 5 failed logins in 9 s against 3 account(s)",
        "detector": {"kind": "rule", "name": "default-brute_force", "version": "1970-01-01T00:00:00.000Z"},
        "entity": {"type": "ip", "id": "203.0.113.7"},
        "evidence": {"src_ip": "203.0.113.7", "failures": 5, "distinct_users": 3, "sample_users": "admin,root,test",
                     "target_hosts": "bastion-oslo", "first_failure": "2026-05-01T10:00:00.000Z",
                     "last_failure": "2026-05-01T10:00:09.000Z", "threshold": 5, "window_seconds": 60,
                     "source_internal": False},
        "countermeasure": "Block source IP 203.0.113.7 at the perimeter firewall (or let fail2ban ban it), make sure "
                          "SSH on bastion-oslo accepts keys only, and check the targeted accounts for weak passwords.",
        "status": "new", "count": 1,
    }]
    validator("alert")(alerts[0])


def test_window_is_inclusive_and_failures_spread_wider_do_not_alert():
    _, alerts = run_brute_force([ssh("auth_failure", s) for s in (0, 15, 30, 45, 60)])
    assert [a["event_time"] for a in alerts] == ["2026-05-01T10:00:00.000Z"]
    _, alerts = run_brute_force([ssh("auth_failure", s) for s in (0, 20, 40, 60, 80, 100, 120)])
    assert alerts == []


def test_out_of_order_failures_give_the_same_alert_as_in_order():
    seconds = [0, 3, 6, 9, 12]
    _, in_order = run_brute_force([ssh("auth_failure", s) for s in seconds])
    _, shuffled = run_brute_force([ssh("auth_failure", s) for s in (3, 9, 0, 12, 6)])
    assert len(in_order) == 1
    assert shuffled == in_order


def test_failure_older_than_the_window_of_the_newest_is_ignored():
    state, _ = run_brute_force([ssh("auth_failure", s) for s in (100, 101, 102, 103)])
    _, alerts = run_brute_force([ssh("auth_failure", 30)], state=state)
    assert alerts == []


def test_one_alert_per_burst_and_re_arming_after_the_window_empties():
    # failures every 10 s for 3 minutes: one burst
    state, alerts = run_brute_force([ssh("auth_failure", s) for s in range(0, 180, 10)])
    assert [a["event_time"] for a in alerts] == ["2026-05-01T10:00:00.000Z"]
    # 60 s after the last one (170 s) the window has not emptied yet: still the same burst
    state, alerts = run_brute_force([ssh("auth_failure", s) for s in (230, 231, 232, 233, 234)], state=state)
    assert alerts == []
    # a gap of more than 60 s after 234 s re-arms; the next burst needs 5 fresh failures
    state, alerts = run_brute_force([ssh("auth_failure", s) for s in (295, 296, 297, 298)], state=state)
    assert alerts == []
    _, alerts = run_brute_force([ssh("auth_failure", 299)], state=state)
    assert [a["event_time"] for a in alerts] == ["2026-05-01T10:04:55.000Z"]
    assert alerts[0]["evidence"]["failures"] == 5


def test_login_after_the_burst_is_a_critical_account_alert_once():
    state, _ = run_brute_force([ssh("auth_failure", s) for s in range(0, 12, 2)])
    state, alerts = run_brute_force([ssh("auth_success", 100, user="backup")], state=state)
    assert alerts == [{
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "default-brute_force.login_after_burst|account|"
                                                    "backup@bastion-oslo|2026-05-01T10:01:40.000Z")),
        "class_uid": 2004, "tenant": "oslo", "time": "2026-05-01T10:05:00.000Z",
        "event_time": "2026-05-01T10:01:40.000Z", "severity": "critical", "severity_id": 5,
        "category": "brute_force",
        "title": "Login as backup on bastion-oslo from 203.0.113.7 after a brute-force burst of 6 failures",
        "detector": {"kind": "rule", "name": "default-brute_force.login_after_burst",
                     "version": "1970-01-01T00:00:00.000Z"},
        "entity": {"type": "account", "id": "backup@bastion-oslo"},
        "evidence": {"src_ip": "203.0.113.7", "user": "backup", "host": "bastion-oslo", "method": "password",
                     "burst_failures": 6, "burst_distinct_users": 1, "user_was_tried": False,
                     "burst_first_failure": "2026-05-01T10:00:00.000Z",
                     "burst_last_failure": "2026-05-01T10:00:10.000Z", "seconds_after_burst": 90.0,
                     "source_internal": False},
        "countermeasure": "Treat account backup@bastion-oslo as compromised: lock it, terminate its sessions, block "
                          "source IP 203.0.113.7 at the perimeter firewall, then review what the session did (auth "
                          "log, shell history, new SSH keys, cron jobs) before restoring access with new credentials.",
        "status": "new", "count": 1,
    }]
    validator("alert")(alerts[0])
    _, again = run_brute_force([ssh("auth_success", 130, user="backup")], state=state)
    assert again == []


def test_login_after_the_follow_up_window_or_without_a_burst_raises_nothing():
    state, _ = run_brute_force([ssh("auth_failure", s) for s in range(0, 10, 2)])
    # last failure at 8 s, follow-up 600 s: 608 s is the last second that counts
    _, alerts = run_brute_force([ssh("auth_success", 608)], state=state)
    assert [a["entity"]["id"] for a in alerts] == ["root@bastion-oslo"]
    _, alerts = run_brute_force([ssh("auth_success", 609)], state=state)
    assert alerts == []
    _, alerts = run_brute_force([ssh("auth_failure", 0), ssh("auth_success", 5)])
    assert alerts == []


def test_login_arriving_before_the_failure_that_completes_the_burst_is_still_caught():
    events = [ssh("auth_failure", s) for s in (0, 2, 4, 6)] + [ssh("auth_success", 9), ssh("auth_failure", 8)]
    _, alerts = run_brute_force(events)
    assert [(a["severity"], a["entity"]["type"], a["event_time"]) for a in alerts] == [
        ("high", "ip", "2026-05-01T10:00:00.000Z"), ("critical", "account", "2026-05-01T10:00:09.000Z")]
    assert alerts[0]["alert_id"] != alerts[1]["alert_id"]


def test_published_rule_sets_params_and_detector():
    rule = {"rule_id": "oslo-ssh-strict", "tenant": "oslo", "kind": "brute_force", "enabled": True,
            "params": {"threshold": 3, "window_seconds": 10}, "updated_at": "2026-05-03T08:00:00Z"}
    _, alerts = run_brute_force([ssh("auth_failure", s) for s in (0, 5, 10)], rule=rule)
    assert alerts[0]["detector"] == {"kind": "rule", "name": "oslo-ssh-strict", "version": "2026-05-03T08:00:00Z"}
    assert (alerts[0]["evidence"]["threshold"], alerts[0]["evidence"]["window_seconds"]) == (3, 10)
    with pytest.raises(ValueError, match="rule 'scan' is of kind 'port_scan', not 'brute_force'"):
        run_brute_force([ssh("auth_failure", 0)], rule={**rule, "rule_id": "scan", "kind": "port_scan"})


def test_internal_source_is_flagged_and_unrelated_events_leave_state_alone():
    _, alerts = run_brute_force([ssh("auth_failure", s, src_ip="10.10.5.11") for s in range(5)])
    assert alerts[0]["evidence"]["source_internal"] is True
    state, _ = run_brute_force([ssh("auth_failure", 0)])
    assert brute_force_step(state, {**ssh("sudo_command", 1), "command": "/usr/bin/id"}, tenant="oslo") == (state, [])


def test_state_survives_a_json_round_trip_and_steps_never_mutate_their_input():
    events = [ssh("auth_failure", s) for s in (0, 1, 2)]
    state, _ = run_brute_force(events)
    frozen = json.dumps(state, sort_keys=True)
    restored = json.loads(frozen)
    tail = [ssh("auth_failure", 3), ssh("auth_failure", 4), ssh("auth_success", 30)]
    assert run_brute_force(tail, state=restored) == run_brute_force(tail, state=state)
    assert json.dumps(state, sort_keys=True) == frozen


def test_expires_at_covers_the_window_and_the_follow_up():
    assert expires_at(None) is None
    state, _ = run_brute_force([ssh("auth_failure", 0)])
    # 2026-05-01T10:00:00Z = 1777629600000 ms; + 60 s window
    assert expires_at(state) == 1777629660000
    state, _ = run_brute_force([ssh("auth_failure", s) for s in (1, 2, 3, 4)], state=state)
    # burst last failure at 10:00:04 + 600 s follow-up
    assert expires_at(state) == 1777630204000


def test_remembered_logins_are_capped_in_state():
    # automation logging in from one address over and over: state must not grow with it
    state, alerts = run_brute_force([ssh("auth_success", i % 60, user="deploy", src_ip="10.10.2.5")
                                     for i in range(500)])
    assert alerts == []
    assert len(state["successes"]) == 64


# --------------------------------------------------------------------------- sudo brute force

def sudo_failure(second, user="kiosk", host="ops-oslo-app01", command=None):
    minute, sec = divmod(second, 60)
    return {"kind": "sudo_failure", "event_time": f"2026-05-01T10:{minute:02d}:{sec:02d}Z", "host": host,
            "src_ip": None, "src_port": None, "user": user, "dst_ip": None, "dst_port": None, "protocol": None,
            "method": "pam", "command": command}


def test_sudo_failures_of_one_account_raise_one_account_alert():
    state, alerts = None, []
    for second, command in ((0, None), (4, None), (8, None), (11, "/bin/bash"), (40, None), (44, None)):
        state, raised = sudo_brute_force_step(state, sudo_failure(second, command=command), tenant="oslo",
                                              detected_at=DETECTED)
        alerts.extend(raised)
    assert alerts == [{
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "default-sudo_brute_force|account|kiosk@ops-oslo-app01|"
                                                    "2026-05-01T10:00:00.000Z")),
        "class_uid": 2004, "tenant": "oslo", "time": "2026-05-01T10:05:00.000Z",
        "event_time": "2026-05-01T10:00:00.000Z", "severity": "high", "severity_id": 4, "category": "brute_force",
        "title": "Repeated sudo failures for kiosk on ops-oslo-app01: 5 in 40 s",
        "detector": {"kind": "rule", "name": "default-sudo_brute_force", "version": "1970-01-01T00:00:00.000Z"},
        "entity": {"type": "account", "id": "kiosk@ops-oslo-app01"},
        "evidence": {"user": "kiosk", "host": "ops-oslo-app01", "failures": 5, "sample_commands": "/bin/bash",
                     "first_failure": "2026-05-01T10:00:00.000Z", "last_failure": "2026-05-01T10:00:40.000Z",
                     "threshold": 5, "window_seconds": 300},
        "countermeasure": "Ask the owner of kiosk@ops-oslo-app01 whether they ran sudo; if not, treat the account as "
                          "compromised: lock it, terminate its sessions and review the auth log of ops-oslo-app01.",
        "status": "new", "count": 1,
    }]
    validator("alert")(alerts[0])


def test_four_sudo_failures_in_five_minutes_are_a_typo_not_an_attack():
    state = None
    for second in (0, 100, 200, 299):
        state, alerts = sudo_brute_force_step(state, sudo_failure(second), tenant="oslo")
        assert alerts == []
    assert sudo_brute_force_step(None, {**sudo_failure(0), "user": None}, tenant="oslo") == (None, [])


# --------------------------------------------------------------------------- port scan

def test_twenty_ports_on_one_host_is_a_vertical_scan():
    ports = [22, 23, 25, 53, 80, 81, 110, 111, 135, 139, 143, 443, 445, 993, 995, 1433, 3306, 3389, 5900]
    state, alerts = run_port_scan([probe(i, dst_port=port) for i, port in enumerate(ports)])
    assert alerts == []
    _, alerts = run_port_scan([probe(19, dst_port=8080)], state=state)
    assert alerts == [{
        "alert_id": str(uuid.uuid5(ALERT_NAMESPACE, "default-port_scan|ip|192.0.2.50|2026-05-01T10:00:00.000Z")),
        "class_uid": 2004, "tenant": "oslo", "time": "2026-05-01T10:05:00.000Z",
        "event_time": "2026-05-01T10:00:00.000Z", "severity": "medium", "severity_id": 3, "category": "port_scan",
        "title": "Port scan from 192.0.2.50: 20 ports on 198.51.100.10 in 19 s",
        "detector": {"kind": "rule", "name": "default-port_scan", "version": "1970-01-01T00:00:00.000Z"},
        "entity": {"type": "ip", "id": "192.0.2.50"},
        "evidence": {"src_ip": "192.0.2.50", "scan_type": "vertical", "distinct_ports": 20, "distinct_hosts": 1,
                     "probes": 20, "max_ports_on_one_host": 20, "top_host": "198.51.100.10",
                     "max_hosts_on_one_port": 1, "top_port": 22,
                     "sample_ports": "22,23,25,53,80,81,110,111,135,139,143,443,...",
                     "first_probe": "2026-05-01T10:00:00.000Z", "last_probe": "2026-05-01T10:00:19.000Z",
                     "window_seconds": 60, "source_internal": False},
        "countermeasure": "Block source IP 192.0.2.50 at the perimeter firewall and check which of the probed services "
                          "(22,23,25,53,80,81,110,111,135,139,143,443,...) are exposed; close or restrict those that "
                          "need not be reachable.",
        "status": "new", "count": 1,
    }]
    validator("alert")(alerts[0])


def test_ten_hosts_on_one_port_is_a_horizontal_sweep():
    hosts = [f"198.51.100.{i}" for i in range(1, 11)]
    state, alerts = run_port_scan([probe(i * 3, dst_ip=host, dst_port=445) for i, host in enumerate(hosts[:9])])
    assert alerts == []
    _, alerts = run_port_scan([probe(40, dst_ip=hosts[9], dst_port=445)], state=state)
    assert alerts[0]["title"] == "Horizontal sweep from 192.0.2.50: port 445 on 10 hosts in 40 s"
    assert {k: alerts[0]["evidence"][k] for k in ("scan_type", "distinct_hosts", "top_port", "distinct_ports")} == {
        "scan_type": "horizontal", "distinct_hosts": 10, "top_port": 445, "distinct_ports": 1}


def test_repeated_probes_count_once_and_internal_scanners_are_high():
    repeats = [probe(i, dst_port=22) for i in range(30)]
    _, alerts = run_port_scan(repeats)
    assert alerts == []
    _, alerts = run_port_scan([probe(i, dst_port=1000 + i, src_ip="10.10.1.21") for i in range(20)])
    assert (alerts[0]["severity"], alerts[0]["evidence"]["source_internal"]) == ("high", True)


def test_slow_scan_outside_the_window_and_re_arm_after_a_quiet_minute():
    _, alerts = run_port_scan([probe(i * 4, dst_port=1000 + i) for i in range(30)])
    assert alerts == []
    state, alerts = run_port_scan([probe(i, dst_port=2000 + i) for i in range(40)])
    assert len(alerts) == 1
    state, alerts = run_port_scan([probe(95, dst_port=3000 + i) for i in range(25)], state=state)
    assert alerts == []
    _, alerts = run_port_scan([probe(200, dst_port=4000 + i) for i in range(20)], state=state)
    assert [a["event_time"] for a in alerts] == ["2026-05-01T10:03:20.000Z"]


def test_port_scan_state_is_bounded():
    rule = {**DEFAULT_RULES["port_scan"], "params": {"distinct_hosts": 50, "max_remembered": 50}}
    # every probe a new host and a new port: never a scan, but a lot to remember
    state, alerts = run_port_scan([probe(0, dst_ip=f"198.51.100.{i % 250}", dst_port=i) for i in range(500)], rule)
    assert alerts == []
    assert len(state["items"]) == 50


def test_observations_from_firewall_events_and_flows():
    block = {"kind": "firewall_block", "event_time": "2026-05-01T10:00:00.000Z", "host": "gw", "src_ip": "192.0.2.9",
             "src_port": 40000, "user": None, "dst_ip": "198.51.100.4", "dst_port": 23, "protocol": "tcp",
             "method": None, "command": None}
    assert firewall_observation(block) == {"event_time": "2026-05-01T10:00:00.000Z", "src_ip": "192.0.2.9",
                                           "dst_ip": "198.51.100.4", "dst_port": 23}
    assert firewall_observation({**block, "dst_port": None}) is None
    flow = {"tenant": "oslo", "event_time": "2026-05-01T10:00:00Z", "src_ip": "10.10.1.21", "src_port": 50122,
            "dst_ip": "10.10.1.31", "dst_port": 5432, "protocol": "tcp", "packets": 2, "bytes_out": 60, "bytes_in": 40}
    assert flow_observation(flow) == {"event_time": "2026-05-01T10:00:00Z", "src_ip": "10.10.1.21",
                                      "dst_ip": "10.10.1.31", "dst_port": 5432}
    assert flow_observation({**flow, "packets": 61}) is None
    flows = [{**flow, "event_time": f"2026-05-01T10:00:{i:02d}Z", "dst_port": 1 + i} for i in range(20)]
    _, alerts = run_port_scan([flow_observation(f) for f in flows])
    assert [(a["entity"]["id"], a["severity"]) for a in alerts] == [("10.10.1.21", "high")]


# --------------------------------------------------------------------------- batch runner

def test_detect_stream_parses_routes_and_dead_letters():
    def document(second, line):
        return {"tenant": "padova", "collector": "syslog-padova-1",
                "received_time": f"2026-05-01T10:00:{second:02d}.400Z", "line": line}

    documents = [document(s, f"<38>May  1 10:00:{s:02d} pd-bastion sshd[{900 + s}]: Failed password for root from "
                             f"192.0.2.66 port {40000 + s} ssh2") for s in range(5)]
    documents.insert(2, document(2, "<13>"))
    documents.append(document(6, "<86>May  1 10:00:06 pd-db01 CRON[5]: pam_unix(cron:session): session closed "
                                 "for user root"))
    alerts, rejected = detect_stream(documents, detected_at=DETECTED)
    assert [(a["tenant"], a["category"], a["entity"]["id"], a["event_time"]) for a in alerts] == [
        ("padova", "brute_force", "192.0.2.66", "2026-05-01T10:00:00.000Z")]
    assert rejected == [(documents[2], "line ends after PRI <13>: no header or message")]
