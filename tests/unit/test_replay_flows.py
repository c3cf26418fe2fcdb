import ipaddress
import json
from collections import Counter, defaultdict

import pytest

from impetus.alerts import parse_time
from impetus.replay.flows import flow_labels, generate, normal_flows
from impetus.schemas import validator

WORKSTATION_PORTS = {(53, "udp"), (443, "tcp"), (80, "tcp"), (8080, "tcp"), (445, "tcp"), (587, "tcp"),
                     (993, "tcp"), (123, "udp"), (22, "tcp"), (25, "tcp")}


@pytest.fixture(scope="module")
def flows():
    return generate()


def in_network(address, network):
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def max_distinct_within_60s(events):
    """Largest number of distinct values among (seconds, value) events falling in any 60 s window."""
    events = sorted(events)
    best, first = 0, 0
    for last in range(len(events)):
        while events[last][0] - events[first][0] >= 60.0:
            first += 1
        best = max(best, len({value for _, value in events[first:last + 1]}))
    return best


def scan_counts(documents):
    """Per source: most ports on one host and most hosts on one port within 60 s."""
    ports_on_host, hosts_on_port = defaultdict(list), defaultdict(list)
    for flow in documents:
        moment = parse_time(flow["event_time"]).timestamp()
        ports_on_host[(flow["src_ip"], flow["dst_ip"])].append((moment, flow["dst_port"]))
        hosts_on_port[(flow["src_ip"], flow["dst_port"])].append((moment, flow["dst_ip"]))
    most_ports, most_hosts = defaultdict(int), defaultdict(int)
    for (source, _), events in ports_on_host.items():
        most_ports[source] = max(most_ports[source], max_distinct_within_60s(events))
    for (source, _), events in hosts_on_port.items():
        most_hosts[source] = max(most_hosts[source], max_distinct_within_60s(events))
    return most_ports, most_hosts


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    first = json.dumps(generate(seed=5, hours=0.25))
    assert json.dumps(generate(seed=5, hours=0.25)) == first
    assert json.dumps(generate(seed=6, hours=0.25)) != first


def test_default_run_is_about_20k_valid_flows_for_both_tenants(flows):
    documents, truth = flows
    assert 18_000 <= len(documents) <= 22_000
    check = validator("network.flows")
    for document in documents:
        check(document)
    assert set(Counter(document["tenant"] for document in documents)) == {"oslo", "padova"}
    assert Counter((episode["kind"], episode["pattern"]) for episode in truth) == {
        ("exfiltration", "upload"): 10, ("port_scan", "vertical"): 5, ("port_scan", "horizontal"): 5}
    assert Counter(episode["tenant"] for episode in truth) == {"oslo": 10, "padova": 10}
    assert len({episode["episode_id"] for episode in truth}) == 20
    assert len({episode["entity"] for episode in truth}) == 20


def test_documents_arrive_in_event_time_order_but_a_few_up_to_2s_late(flows):
    documents, _ = flows
    latest = float("-inf")
    lateness = []
    for document in documents:
        moment = parse_time(document["event_time"]).timestamp()
        if moment < latest:
            lateness.append(latest - moment)
        latest = max(latest, moment)
    assert 0 < len(lateness) < 0.01 * len(documents)
    assert max(lateness) <= 2.0


def test_truth_records_describe_exactly_the_labelled_flows(flows):
    documents, truth = flows
    labels = flow_labels(documents, truth)
    for episode in truth:
        members = [flow for flow, label in zip(documents, labels) if label == episode["episode_id"]]
        assert len(members) == episode["flows"]
        assert min(flow["event_time"] for flow in members) == episode["start"]
        assert max(flow["event_time"] for flow in members) == episode["end"]
        assert {(flow["tenant"], flow["src_ip"]) for flow in members} == {(episode["tenant"], episode["entity"])}
        assert episode["entity_type"] == "ip"


def test_port_scans_reach_the_rule_counts_and_background_stays_well_below(flows):
    documents, truth = flows
    labels = flow_labels(documents, truth)
    most_ports, most_hosts = scan_counts([flow for flow, label in zip(documents, labels) if label is None])
    assert max(most_ports.values()) <= 6
    assert max(most_hosts.values()) <= 6

    scan_ports, scan_hosts = scan_counts([flow for flow, label in zip(documents, labels)
                                          if label and label.startswith("port_scan")])
    for episode in truth:
        if episode["pattern"] == "vertical":
            assert scan_ports[episode["entity"]] >= 20, episode
            assert in_network(episode["entity"], "203.0.113.128/25")
        elif episode["pattern"] == "horizontal":
            assert scan_hosts[episode["entity"]] >= 10, episode
            assert in_network(episode["entity"], "10.0.0.0/8")


def test_scan_probes_are_one_to_three_tiny_packets(flows):
    documents, truth = flows
    labels = flow_labels(documents, truth)
    probes = [flow for flow, label in zip(documents, labels) if label and label.startswith("port_scan")]
    assert len(probes) == sum(episode["flows"] for episode in truth if episode["kind"] == "port_scan")
    assert {(flow["packets"], flow["bytes_out"], flow["bytes_in"]) for flow in probes} == {
        (1, 44, 0), (2, 44, 40), (3, 84, 44)}
    assert all(flow["protocol"] == "tcp" and flow["duration_ms"] <= 4 for flow in probes)


def test_exfiltration_flows_are_large_long_uploads_to_odd_external_ports(flows):
    documents, truth = flows
    labels = flow_labels(documents, truth)
    uploads = [flow for flow, label in zip(documents, labels) if label and label.startswith("exfiltration")]
    assert len(uploads) == sum(episode["flows"] for episode in truth if episode["kind"] == "exfiltration")
    for flow in uploads:
        assert in_network(flow["src_ip"], "10.0.0.0/8")
        assert in_network(flow["dst_ip"], "192.0.2.0/24")
        assert flow["dst_port"] >= 1024
        assert flow["bytes_out"] >= 80 * 2**20
        assert flow["bytes_out"] > 20 * flow["bytes_in"]
        assert flow["duration_ms"] >= 40_000


def test_background_uses_the_services_of_an_office_network(flows):
    documents, truth = flows
    labels = flow_labels(documents, truth)
    background = [flow for flow, label in zip(documents, labels) if label is None]
    assert {(flow["dst_port"], flow["protocol"]) for flow in background} == WORKSTATION_PORTS
    assert all(in_network(flow["src_ip"], "10.0.0.0/8") for flow in background)
    assert all(flow["src_port"] >= 32768 for flow in background)
    dns = [flow for flow in background if flow["dst_port"] == 53 and flow["dst_ip"].endswith(".0.53")]
    assert Counter(flow["packets"] for flow in dns).most_common(1)[0][0] == 2
    assert max(flow["bytes_out"] for flow in dns) < 512


def test_flow_labels_match_source_target_and_window():
    truth = [
        {"episode_id": "exfiltration-001", "tenant": "oslo", "kind": "exfiltration", "pattern": "upload",
         "entity_type": "ip", "entity": "10.10.1.90", "target": "192.0.2.70",
         "start": "2026-05-04T08:46:46.430Z", "end": "2026-05-04T08:50:12.418Z", "flows": 2},
        {"episode_id": "port_scan-012", "tenant": "padova", "kind": "port_scan", "pattern": "horizontal",
         "entity_type": "ip", "entity": "10.20.8.27", "target": "22",
         "start": "2026-05-04T09:14:57.750Z", "end": "2026-05-04T09:15:20.980Z", "flows": 89},
    ]

    def flow(tenant, time, src, dst, port):
        return {"tenant": tenant, "event_time": time, "src_ip": src, "dst_ip": dst, "dst_port": port,
                "protocol": "tcp"}

    documents = [
        flow("oslo", "2026-05-04T08:46:46.430Z", "10.10.1.90", "192.0.2.70", 8888),
        flow("oslo", "2026-05-04T08:47:00.000Z", "10.10.1.90", "198.51.100.7", 443),  # its normal browsing
        flow("oslo", "2026-05-04T08:50:12.419Z", "10.10.1.90", "192.0.2.70", 8888),  # after the episode
        flow("padova", "2026-05-04T08:47:00.000Z", "10.10.1.90", "192.0.2.70", 8888),  # other tenant
        flow("padova", "2026-05-04T09:15:00.000Z", "10.20.8.27", "10.20.3.4", 22),
        flow("padova", "2026-05-04T09:15:01.000Z", "10.20.8.27", "10.20.3.5", 23),
    ]
    assert flow_labels(documents, truth) == ["exfiltration-001", None, None, None, "port_scan-012", None]


def test_normal_flows_are_n_background_flows_in_time_order():
    documents = normal_flows(seed=3, n=500)
    assert len(documents) == 500
    assert json.dumps(normal_flows(seed=3, n=500)) == json.dumps(documents)
    times = [document["event_time"] for document in documents]
    assert times == sorted(times)
    check = validator("network.flows")
    for document in documents:
        check(document)
        assert not in_network(document["dst_ip"], "192.0.2.0/24")
        assert ".8." not in document["src_ip"]  # cameras only speak when compromised
        assert (document["dst_port"], document["protocol"]) in WORKSTATION_PORTS


def test_one_tenant_and_no_episodes_on_request():
    documents, truth = generate(seed=2, hours=0.1, tenants=("oslo",), exfiltrations=0, port_scans=0)
    assert truth == []
    assert {document["tenant"] for document in documents} == {"oslo"}
    assert all(document["src_ip"].startswith("10.10.") for document in documents)
