"""The per-key logic of the streaming jobs, run without Flink on literal events."""

from impetus.detect.streams import PostWatch, SensorWatch, SourceWatch, run_plain, syslog_event
from impetus.rules import RuleBook, defaults_from, rule_kinds


def reading(sensor, value, hour, minute=0):
    return {"tenant": "oslo", "sensor_id": sensor, "kind": "pedestrian_count", "value": value,
            "unit": "persons/h", "event_time": f"2026-05-04T{hour:02d}:{minute:02d}:00Z",
            "location": {"area": "Torget"}}


def book(*kinds):
    return RuleBook({}, defaults_from(rule_kinds(), list(kinds)))


def test_sensor_watch_raises_thresholds_and_silence_on_event_time():
    readings = [reading("s1", 10, 0), reading("s2", 3600, 0), reading("s1", 12, 1), reading("s1", 11, 2),
                reading("s1", 9, 3), reading("s1", 8, 4)]
    alerts = run_plain(SensorWatch({"pedestrian_count": 3000.0}), readings, book("silent_sensor"))
    assert [(a["category"], a["entity"]["id"], a["event_time"]) for a in alerts] == [
        ("threshold", "s2", "2026-05-04T00:00:00.000Z"),
        # s2 last reported at 00:00; the default silence is 180 minutes
        ("silent_sensor", "s2", "2026-05-04T03:00:00.000Z"),
    ]


def test_no_silence_is_reported_for_deadlines_after_the_end_of_the_data():
    alerts = run_plain(SensorWatch({}), [reading("s1", 10, 0), reading("s1", 10, 1)], book("silent_sensor"))
    assert alerts == []


def test_source_watch_keys_syslog_by_source_and_raises_one_brute_force_alert():
    lines = [syslog_event({"tenant": "oslo", "collector": "c", "received_time": f"2026-05-04T10:00:0{s}Z",
                           "line": f"<38>May  4 10:00:0{s} gw sshd[1]: Failed password for root from 203.0.113.7 "
                                   f"port 5000{s} ssh2"}) for s in range(6)]
    assert {SourceWatch.key(d) for d in lines} == {"oslo|203.0.113.7"}
    alerts = run_plain(SourceWatch(), lines, book("brute_force", "sudo_brute_force", "port_scan"))
    assert [(a["category"], a["entity"]["id"], a["evidence"]["failures"]) for a in alerts] == [
        ("brute_force", "203.0.113.7", 5)]


def test_a_scan_seen_in_flows_is_found_even_when_firewall_logs_of_the_source_ran_ahead():
    # the firewall log topic was read five minutes ahead of the flow topic for this source
    block = syslog_event({"tenant": "oslo", "collector": "c", "received_time": "2026-05-04T10:05:00Z",
                          "line": "<4>May  4 10:05:00 fw kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.9 "
                                  "DST=10.0.0.9 PROTO=TCP SPT=4000 DPT=23"})
    probes = [{"tenant": "oslo", "event_time": f"2026-05-04T10:00:{p:02d}Z", "src_ip": "203.0.113.9",
               "src_port": 40000, "dst_ip": "10.0.0.5", "dst_port": 1000 + p, "protocol": "tcp",
               "bytes_out": 60, "bytes_in": 0, "packets": 1, "duration_ms": 1} for p in range(20)]
    watch = SourceWatch()
    state, alerts = watch.on_event(None, block, book("port_scan"))
    for probe in probes:
        state, raised = watch.on_event(state, probe, book("port_scan"))
        alerts.extend(raised)
    assert [(a["category"], a["entity"]["id"], a["evidence"]["distinct_ports"]) for a in alerts] == [
        ("port_scan", "203.0.113.9", 20)]


def test_post_watch_keys_each_post_on_its_own_so_no_state_is_shared_across_posts():
    social = {"tenant": "oslo", "post_id": "p1", "platform": "x", "text": "t", "event_time": "2026-05-04T10:00:00Z"}
    cti = {"tenant": "oslo", "post_id": "p1", "source": "feed", "text": "t", "event_time": "2026-05-04T10:00:00Z"}
    keys = [PostWatch.key(social), PostWatch.key(dict(social, post_id="p2")), PostWatch.key(cti),
            PostWatch.key(dict(social, tenant="padova"))]
    assert keys == ["oslo|social.posts|p1", "oslo|social.posts|p2", "oslo|cti.posts|p1", "padova|social.posts|p1"]
