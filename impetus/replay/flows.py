"""Synthetic, labelled ``network.flows`` for the oslo and padova operations centres.

Everything here is SYNTHETIC: no real network was observed. The generator
imitates the NetFlow/IPFIX summaries a city operations centre's network would
export, so that the streaming detectors (flow-anomaly model, port-scan rule)
and their evaluation have data with known answers. Used by the flow-anomaly
training (``models/flow_anomaly/train.py``), its tests and evaluation, and by
whoever replays flows into Kafka (``impetus.replay.producer.replay``).

Each tenant has an internal 10.x network (oslo 10.10.0.0/16, padova
10.20.0.0/16): servers in x.x.0.0/24 (resolver .53, mail .25, intranet .80,
proxy .8, file server .45, NTP .123), workstations in x.x.1-4.0/24 and CCTV
cameras in x.x.8.0/24. External peers come from the documentation ranges:
web, MX and upstream DNS/NTP in 198.51.100.0/24 and 203.0.113.0/25, scanners
in 203.0.113.128/25, exfiltration drop servers in 192.0.2.0/24.

Background traffic: workstations resolve names and open 1-3 web connections
per page view, fetch mail, sync file shares, talk NTP; servers forward DNS,
relay mail and sync time. Sizes are log-normal per service (heavy-tailed: a
few downloads of hundreds of MB, a few uploads of tens of MB), and packet and
byte counts follow a simple TCP model (1448-byte segments, 52-byte headers,
one ACK per two segments), so that bytes, packets and durations are mutually
consistent. No diurnal cycle: two hours are assumed stationary. Background
is filtered so that no source ever contacts more than
:data:`BACKGROUND_MAX_HOSTS_PER_PORT` hosts on one port, or more than
:data:`BACKGROUND_MAX_PORTS_PER_HOST` ports on one host, within 60 s; the
port-scan rule (>= 20 ports on one host or >= 10 hosts on one port in 60 s)
therefore never fires on it.

Injected episodes (the ground truth, returned apart from the documents because
the schema allows no extra fields):

* ``exfiltration``: a compromised workstation uploads 2-6 flows of 80 MB-4 GB
  each, throttled to 0.3-2 MB/s (minutes long), to a 192.0.2.0/24 address on an
  unusual port (4444, 6667, 9001...).
* ``port_scan``, pattern ``vertical``: one 203.0.113.128/25 address probes
  40-300 ports of one server at 5-40 probes/s; pattern ``horizontal``: a
  compromised camera probes one port (23, 2323, 22, 445, 3389) on 20-120
  internal hosts at 1-5 hosts/s. Probes are tiny: 1 packet (filtered),
  2 (SYN, RST) or 3 (SYN, SYN-ACK, RST).

Documents come out in event-time order except that about 0.3 % of them arrive
late by 0.3-2 s, as flow exporters do. The same seed gives byte-for-byte the
same documents and truth.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections import defaultdict, deque
from datetime import datetime, timezone
from itertools import accumulate

from impetus.alerts import parse_time, utc_iso

TENANTS = ("oslo", "padova")
# second octet of each tenant's 10.x.0.0/16, fixed so that a tenant keeps its addresses in any selection
TENANT_NETWORKS = {"oslo": 10, "padova": 20}
DEFAULT_START = "2026-05-04T08:00:00Z"
# per tenant; two tenants over two hours give ~20k flows
FLOWS_PER_HOUR = 4500
GENERATOR = "impetus.replay.flows"

# Headroom below the port-scan rule's defaults (20 ports / 10 hosts in 60 s).
BACKGROUND_MAX_HOSTS_PER_PORT = 6
BACKGROUND_MAX_PORTS_PER_HOST = 6
SCAN_WINDOW_SECONDS = 60.0

LATE_FRACTION = 0.003
MAX_LATENESS_SECONDS = 2.0

MSS = 1448
TCP_HEADER = 52
UDP_HEADER = 28
MB = 1 << 20

EXFIL_PORTS = (4444, 6667, 9001, 1337, 8081, 5555, 7777, 31337, 2222, 8888)
VERTICAL_SCAN_PORTS = (21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 587, 993, 995, 1433,
                       1521, 1723, 2049, 2375, 3306, 3389, 5432, 5900, 5985, 6379, 8000, 8080, 8443, 9200, 27017)
SWEEP_PORTS = (23, 2323, 22, 445, 3389)

# service -> (share of client-initiated flows, protocol, server role or "external", dst port)
CLIENT_SERVICES = {
    "dns": (0.30, "udp", "resolver", 53),
    "https": (0.30, "tcp", "external", 443),
    "http": (0.04, "tcp", "external", 80),
    "proxy": (0.05, "tcp", "proxy", 8080),
    "intranet": (0.07, "tcp", "intranet", 443),
    "smb": (0.07, "tcp", "files", 445),
    "submission": (0.03, "tcp", "mail", 587),
    "imaps": (0.05, "tcp", "mail", 993),
    "ntp": (0.03, "udp", "ntp", 123),
    "ssh": (0.01, "tcp", "servers", 22),
}
# server-initiated flows per hour and tenant: forwarded DNS, relayed mail, time sync
SERVER_SERVICES = {
    "dns_forward": (150, "udp", "resolver", 53),
    "smtp_relay": (60, "tcp", "mail", 25),
    "ntp_upstream": (12, "udp", "ntp", 123),
}
# (median payload bytes client->server, sigma, median server->client, sigma, median idle ms, sigma)
PAYLOADS = {
    "dns": (38, 0.25, 140, 0.6, 6, 0.9),
    "ntp": (48, 0.0, 48, 0.0, 3, 0.6),
    "https": (900, 1.2, 20_000, 2.0, 900, 1.6),
    "http": (450, 0.8, 12_000, 1.8, 300, 1.2),
    "proxy": (800, 1.1, 18_000, 1.9, 700, 1.5),
    "intranet": (700, 1.0, 15_000, 1.6, 400, 1.3),
    "smb": (4_000, 2.0, 60_000, 2.2, 20_000, 1.5),
    "submission": (30_000, 1.5, 2_000, 0.5, 1_500, 0.8),
    "imaps": (1_500, 0.8, 40_000, 2.0, 30_000, 1.2),
    "ssh": (5_000, 1.5, 30_000, 1.8, 300_000, 1.0),
    "dns_forward": (40, 0.25, 250, 0.7, 15, 0.8),
    "smtp_relay": (40_000, 1.5, 1_500, 0.4, 2_000, 0.8),
    "ntp_upstream": (48, 0.0, 48, 0.0, 20, 0.5),
}
# a few web flows are uploads (photos, documents, cloud sync)
UPLOAD_SHARE = 0.03
UPLOAD_MEDIAN, UPLOAD_SIGMA = 2 * MB, 1.2


def _tenant_plan(tenant_index: int, tenant: str) -> dict:
    """Addresses of one tenant's network: oslo 10.10.0.0/16, padova 10.20.0.0/16, others 10.30.0.0/16 on."""
    net = f"10.{TENANT_NETWORKS.get(tenant, 30 + 10 * tenant_index)}"
    rng = random.Random(f"{tenant}-plan")
    workstations = sorted(rng.sample([f"{net}.{subnet}.{host}" for subnet in range(1, 5) for host in range(10, 250)],
                                     160), key=ipaddress.ip_address)
    cameras = [f"{net}.8.{host}" for host in range(11, 51)]
    return {
        "resolver": f"{net}.0.53", "mail": f"{net}.0.25", "intranet": f"{net}.0.80", "proxy": f"{net}.0.8",
        "files": f"{net}.0.45", "ntp": f"{net}.0.123",
        "servers": [f"{net}.0.{host}" for host in (25, 45, 53, 80, 123)],
        "workstations": workstations,
        # heavy users and idle ones: Zipf-like activity, as cumulative weights for random.choices
        "activity": list(accumulate(1.0 / (rank + 1) ** 0.7 for rank in range(len(workstations)))),
        # some run Linux (ephemeral ports 32768-60999), most Windows (49152-65535)
        "linux": {ip for ip in workstations if rng.random() < 0.2},
        "cameras": cameras,
    }


_WEB = [f"198.51.100.{h}" for h in range(1, 255) if h not in (53, 123)] + [f"203.0.113.{h}" for h in range(1, 100)]
_WEB_WEIGHTS = list(accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(len(_WEB))))  # a few CDNs carry most
_CLIENT_SERVICE_NAMES = list(CLIENT_SERVICES)
_CLIENT_SERVICE_WEIGHTS = list(accumulate(CLIENT_SERVICES[name][0] for name in _CLIENT_SERVICE_NAMES))
_MX = [f"203.0.113.{h}" for h in range(100, 128)]
_UPSTREAM_DNS = ["198.51.100.53", "203.0.113.53"]
_UPSTREAM_NTP = ["198.51.100.123", "203.0.113.123"]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma)) if sigma > 0 else float(median)


def _tcp_counts(payload_out: int, payload_in: int) -> tuple[int, int, int]:
    """(bytes_out, bytes_in, packets) of a TCP connection carrying the given payloads."""
    segments_out = math.ceil(payload_out / MSS)
    segments_in = math.ceil(payload_in / MSS)
    # SYN, ACK, FIN, ACK from the client; SYN-ACK, FIN, ACK from the server; one ACK per two segments
    packets_out = segments_out + math.ceil(segments_in / 2) + 4
    packets_in = segments_in + math.ceil(segments_out / 2) + 3
    return (payload_out + TCP_HEADER * packets_out, payload_in + TCP_HEADER * packets_in, packets_out + packets_in)


def _ephemeral_port(rng: random.Random, linux: bool) -> int:
    return rng.randint(32768, 60999) if linux else rng.randint(49152, 65535)


def _flow(tenant: str, moment: float, src: str, src_port: int, dst: str, dst_port: int, protocol: str,
          bytes_out: int, bytes_in: int, packets: int, duration_ms: int) -> dict:
    return {"tenant": tenant, "event_time": _iso(moment), "src_ip": src, "src_port": src_port, "dst_ip": dst,
            "dst_port": dst_port, "protocol": protocol, "bytes_out": int(bytes_out), "bytes_in": int(bytes_in),
            "packets": int(packets), "duration_ms": int(duration_ms)}


def _iso(moment: float) -> str:
    # event times are kept as float epoch seconds internally and rounded to the millisecond on output
    return utc_iso(datetime.fromtimestamp(round(moment, 3), tz=timezone.utc))


def _service_flow(rng: random.Random, tenant: str, moment: float, service: str, src: str, src_port: int, dst: str,
                  dst_port: int, protocol: str) -> dict:
    out_median, out_sigma, in_median, in_sigma, idle_median, idle_sigma = PAYLOADS[service]
    payload_out = max(1, int(_lognormal(rng, out_median, out_sigma)))
    payload_in = max(1, int(_lognormal(rng, in_median, in_sigma)))
    if service in ("https", "http", "proxy") and rng.random() < UPLOAD_SHARE:
        payload_out = int(_lognormal(rng, UPLOAD_MEDIAN, UPLOAD_SIGMA))
    payload_in = min(payload_in, 1500 * MB)
    payload_out = min(payload_out, 200 * MB)
    idle_ms = _lognormal(rng, idle_median, idle_sigma)
    if protocol == "udp":
        answered = rng.random() > 0.01
        packets = 2 if answered else 1
        return _flow(tenant, moment, src, src_port, dst, dst_port, protocol, payload_out + UDP_HEADER,
                     payload_in + UDP_HEADER if answered else 0, packets, idle_ms if answered else 0)
    bytes_out, bytes_in, packets = _tcp_counts(payload_out, payload_in)
    throughput = _lognormal(rng, 2 * MB, 0.8)  # bytes/s of the path
    duration_ms = idle_ms + 1000.0 * (payload_out + payload_in) / throughput
    return _flow(tenant, moment, src, src_port, dst, dst_port, protocol, bytes_out, bytes_in, packets, duration_ms)


def _client_activity(rng: random.Random, tenant: str, plan: dict, moment: float) -> list[dict]:
    """The flows of one user action: a DNS lookup then 1-3 connections for web, one connection otherwise."""
    client = rng.choices(plan["workstations"], cum_weights=plan["activity"])[0]
    linux = client in plan["linux"]
    service = rng.choices(_CLIENT_SERVICE_NAMES, cum_weights=_CLIENT_SERVICE_WEIGHTS)[0]
    _, protocol, role, port = CLIENT_SERVICES[service]
    if role == "external":
        flows = [_service_flow(rng, tenant, moment, "dns", client, _ephemeral_port(rng, linux), plan["resolver"],
                               53, "udp")]
        hosts = rng.choices(_WEB, cum_weights=_WEB_WEIGHTS, k=rng.randint(1, 2))
        for _ in range(rng.randint(1, 3)):
            moment += rng.uniform(0.005, 0.08)
            flows.append(_service_flow(rng, tenant, moment, service, client, _ephemeral_port(rng, linux),
                                       rng.choice(hosts), port, protocol))
        return flows
    server = rng.choice(plan["servers"]) if role == "servers" else plan[role]
    return [_service_flow(rng, tenant, moment, service, client, _ephemeral_port(rng, linux), server, port, protocol)]


def _server_flow(rng: random.Random, tenant: str, plan: dict, moment: float, service: str) -> dict:
    _, protocol, role, port = SERVER_SERVICES[service]
    peers = {"dns_forward": _UPSTREAM_DNS, "smtp_relay": _MX, "ntp_upstream": _UPSTREAM_NTP}[service]
    return _service_flow(rng, tenant, moment, service, plan[role], _ephemeral_port(rng, True), rng.choice(peers),
                         port, protocol)


def _within_scan_headroom(flows: list[dict]) -> list[dict]:
    """Drop background flows that would bring a source near port-scan counts (flows must be in time order)."""
    recent: dict[str, deque] = defaultdict(deque)
    kept = []
    for flow in flows:
        moment = parse_time(flow["event_time"]).timestamp()
        window = recent[flow["src_ip"]]
        while window and window[0][0] <= moment - SCAN_WINDOW_SECONDS:
            window.popleft()
        hosts_on_port = {dst for _, dst, port in window if port == flow["dst_port"]} | {flow["dst_ip"]}
        ports_on_host = {port for _, dst, port in window if dst == flow["dst_ip"]} | {flow["dst_port"]}
        if len(hosts_on_port) > BACKGROUND_MAX_HOSTS_PER_PORT or len(ports_on_host) > BACKGROUND_MAX_PORTS_PER_HOST:
            continue
        window.append((moment, flow["dst_ip"], flow["dst_port"]))
        kept.append(flow)
    return kept


def _background(seed: int, tenant_index: int, tenant: str, start: float, hours: float,
                flows_per_hour: float) -> list[dict]:
    rng = random.Random(f"{seed}-{tenant}-background")
    plan = _tenant_plan(tenant_index, tenant)
    span = hours * 3600.0
    flows = []
    server_share = sum(rate for rate, *_ in SERVER_SERVICES.values()) / flows_per_hour
    # web actions yield ~3 flows, the others one: ~1.68 flows per action on average
    actions = int(round(flows_per_hour * hours * (1.0 - server_share) / 1.68))
    for _ in range(actions):
        flows.extend(_client_activity(rng, tenant, plan, start + rng.uniform(0.0, span)))
    for service, (rate, *_) in SERVER_SERVICES.items():
        for _ in range(int(round(rate * hours))):
            flows.append(_server_flow(rng, tenant, plan, start + rng.uniform(0.0, span), service))
    flows.sort(key=lambda flow: (flow["event_time"], flow["src_ip"], flow["src_port"]))
    return _within_scan_headroom(flows)


def _exfiltration(rng: random.Random, tenant: str, source: str, moment: float, span: float) -> list[dict]:
    destination = f"192.0.2.{rng.randint(10, 250)}"
    port = rng.choice(EXFIL_PORTS)
    flows = []
    for _ in range(rng.randint(2, 6)):
        payload_out = int(min(max(_lognormal(rng, 400 * MB, 0.8), 80 * MB), 4096 * MB))
        payload_in = int(_lognormal(rng, 3_000, 0.8))  # the drop server's short acknowledgements
        bytes_out, bytes_in, packets = _tcp_counts(payload_out, payload_in)
        duration_ms = 1000.0 * payload_out / rng.uniform(0.3 * MB, 2 * MB)
        flows.append(_flow(tenant, moment, source, rng.randint(49152, 65535), destination, port, "tcp", bytes_out,
                           bytes_in, packets, duration_ms))
        moment += rng.uniform(30.0, min(300.0, span / 6))
    return flows


def _probe(rng: random.Random, tenant: str, moment: float, source: str, src_port: int, target: str,
           port: int) -> dict:
    outcome = rng.random()
    if outcome < 0.25:  # filtered: the SYN goes unanswered
        return _flow(tenant, moment, source, src_port, target, port, "tcp", 44, 0, 1, 0)
    if outcome < 0.95:  # closed: SYN, RST
        return _flow(tenant, moment, source, src_port, target, port, "tcp", 44, 40, 2, rng.randint(0, 3))
    return _flow(tenant, moment, source, src_port, target, port, "tcp", 84, 44, 3, rng.randint(0, 4))  # open


def _vertical_scan(rng: random.Random, tenant: str, source: str, target: str, moment: float) -> list[dict]:
    extra = rng.sample(range(1024, 65536), rng.randint(6, 266))
    ports = list(VERTICAL_SCAN_PORTS) + extra
    rng.shuffle(ports)
    rate = rng.uniform(5.0, 40.0)
    src_port = rng.randint(40000, 65000)  # SYN scanners reuse one source port
    flows = []
    for port in ports:
        flows.append(_probe(rng, tenant, moment, source, src_port, target, port))
        moment += rng.expovariate(rate)
    return flows


def _horizontal_sweep(rng: random.Random, tenant: str, plan: dict, source: str, moment: float) -> list[dict]:
    port = rng.choice(SWEEP_PORTS)
    net = plan["resolver"].rsplit(".", 2)[0]
    targets = rng.sample([f"{net}.{subnet}.{host}" for subnet in range(1, 5) for host in range(1, 255)],
                         rng.randint(20, 120))
    rate = rng.uniform(1.0, 5.0)
    flows = []
    for target in targets:
        flows.append(_probe(rng, tenant, moment, source, rng.randint(32768, 60999), target, port))
        moment += rng.expovariate(rate)
    return flows


def _episodes(seed: int, start: float, hours: float, tenants: tuple[str, ...], exfiltrations: int,
              port_scans: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(f"{seed}-episodes")
    span = hours * 3600.0
    plans = {tenant: _tenant_plan(index, tenant) for index, tenant in enumerate(tenants)}
    used_sources: set[str] = set()
    flows: list[dict] = []
    truth: list[dict] = []

    def fresh(candidates: list[str]) -> str:
        source = rng.choice([ip for ip in candidates if ip not in used_sources])
        used_sources.add(source)
        return source

    kinds = ["exfiltration"] * exfiltrations + ["port_scan"] * port_scans
    for number, kind in enumerate(kinds):
        tenant = tenants[number % len(tenants)]
        plan = plans[tenant]
        # leave room at the end of the window for the episode to finish
        moment = start + rng.uniform(0.02, 0.75) * span
        if kind == "exfiltration":
            source = fresh(plan["workstations"])
            episode = _exfiltration(rng, tenant, source, moment, span)
            pattern, target = "upload", episode[0]["dst_ip"]
        elif (number - exfiltrations) % 2 == 0:
            source = fresh([f"203.0.113.{host}" for host in range(130, 255)])
            target = rng.choice([plan["mail"], plan["intranet"], plan["proxy"]])
            episode = _vertical_scan(rng, tenant, source, target, moment)
            pattern = "vertical"
        else:
            source = fresh(plan["cameras"])
            episode = _horizontal_sweep(rng, tenant, plan, source, moment)
            pattern, target = "horizontal", str(episode[0]["dst_port"])
        flows.extend(episode)
        truth.append({"episode_id": f"{kind}-{number + 1:03d}", "tenant": tenant, "kind": kind, "pattern": pattern,
                      "entity_type": "ip", "entity": source, "target": target,
                      "start": episode[0]["event_time"], "end": episode[-1]["event_time"], "flows": len(episode)})
    return flows, truth


def _arrival_order(rng: random.Random, documents: list[dict]) -> list[dict]:
    """Event-time order, except that a few documents arrive up to MAX_LATENESS_SECONDS late."""
    keyed = []
    for position, document in enumerate(documents):
        arrival = parse_time(document["event_time"]).timestamp()
        if rng.random() < LATE_FRACTION:
            arrival += rng.uniform(0.3, MAX_LATENESS_SECONDS)
        keyed.append((arrival, position, document))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [document for _, _, document in keyed]


def _epoch(start: str | datetime) -> float:
    return (parse_time(start) if isinstance(start, str) else start).timestamp()


def generate(seed: int = 11, start: str | datetime = DEFAULT_START, hours: float = 2.0,
             tenants: tuple[str, ...] = TENANTS, flows_per_hour: float = FLOWS_PER_HOUR, exfiltrations: int = 10,
             port_scans: int = 10) -> tuple[list[dict], list[dict]]:
    """Background plus injected episodes: (documents in arrival order, one truth record per episode).

    Truth records: ``{episode_id, tenant, kind: exfiltration|port_scan, pattern: upload|vertical|horizontal,
    entity_type: "ip", entity: source address, target: drop server / scanned host / swept port, start, end:
    event times of the first and last flow, flows: count}``. :func:`flow_labels` maps documents to them.
    ``flows_per_hour`` is per tenant; episodes alternate between the tenants.
    """
    origin = _epoch(start)
    documents: list[dict] = []
    for index, tenant in enumerate(tenants):
        documents.extend(_background(seed, index, tenant, origin, hours, flows_per_hour))
    episode_flows, truth = _episodes(seed, origin, hours, tuple(tenants), exfiltrations, port_scans)
    documents.extend(episode_flows)
    documents.sort(key=lambda flow: (flow["event_time"], flow["tenant"], flow["src_ip"], flow["src_port"],
                                     flow["dst_ip"], flow["dst_port"]))
    return _arrival_order(random.Random(f"{seed}-arrival"), documents), truth


def normal_flows(seed: int = 0, n: int = 20_000, start: str | datetime = DEFAULT_START,
                 tenants: tuple[str, ...] = TENANTS) -> list[dict]:
    """``n`` background flows (no episodes) in event-time order, for training anomaly models."""
    hours = 1.1 * n / (FLOWS_PER_HOUR * len(tenants)) + 0.05
    while True:
        flows: list[dict] = []
        for index, tenant in enumerate(tenants):
            flows.extend(_background(seed, index, tenant, _epoch(start), hours, FLOWS_PER_HOUR))
        if len(flows) >= n:
            break
        hours *= 1.5
    flows.sort(key=lambda flow: (flow["event_time"], flow["tenant"], flow["src_ip"], flow["src_port"]))
    return flows[:n]


def episode_matches(episode: dict, flow: dict) -> bool:
    """Whether ``flow`` is one of the flows of truth record ``episode``.

    Same tenant and source, event time within [start, end] and the episode's target (drop server or
    scanned host, or the swept port). Times compare as this module writes them (UTC, milliseconds, ``Z``).
    """
    if flow["tenant"] != episode["tenant"] or flow["src_ip"] != episode["entity"]:
        return False
    if not episode["start"] <= flow["event_time"] <= episode["end"]:
        return False
    if episode["pattern"] == "horizontal":
        return str(flow["dst_port"]) == episode["target"]
    return flow["dst_ip"] == episode["target"]


def flow_labels(documents: list[dict], truth: list[dict]) -> list[str | None]:
    """The episode_id of every document (None for background), by source, target and time window."""
    by_source: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for episode in truth:
        by_source[(episode["tenant"], episode["entity"])].append(episode)
    labels = []
    for flow in documents:
        found = next((episode["episode_id"] for episode in by_source.get((flow["tenant"], flow["src_ip"]), ())
                      if episode_matches(episode, flow)), None)
        labels.append(found)
    return labels
