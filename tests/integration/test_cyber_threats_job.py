"""The cyber-threat Flink job on the real broker: known syslog lines and flows in, exact alerts out."""

import json
import uuid

import pytest

from impetus.alerts import ALERT_NAMESPACE
from impetus.detect.flow_anomaly import save_model, train_flow_model
from impetus.replay.flows import normal_flows

from .conftest import run_script

BASE_MS = 1777888800000  # 2026-05-04T10:00:00Z


def syslog(tenant, second, line):
    received = f"2026-05-04T10:{second // 60:02d}:{second % 60:02d}Z"
    return (json.dumps({"tenant": tenant, "collector": "syslog-1", "received_time": received, "line": line}).encode(),
            BASE_MS + second * 1000)


def flow(tenant, second, src, dst, port, packets=1, bytes_out=60, bytes_in=0, duration_ms=1):
    moment = f"2026-05-04T10:{second // 60:02d}:{second % 60:02d}Z"
    return (json.dumps({"tenant": tenant, "event_time": moment, "src_ip": src, "src_port": 40000 + second,
                        "dst_ip": dst, "dst_port": port, "protocol": "tcp", "bytes_out": bytes_out,
                        "bytes_in": bytes_in, "packets": packets, "duration_ms": duration_ms}).encode(),
            BASE_MS + second * 1000)


# the job's own mode (thread: ONNX Runtime is called through impetus.embedded, since called directly on the
# JVM's threads its import hangs), and forced into PyFlink's process mode
@pytest.mark.parametrize("mode", ["auto", "process"])
def test_known_lines_and_flows_give_exact_alerts_with_countermeasures(scratch, tmp_path, mode):
    t = scratch.tenant
    lines = [syslog(t, s, f"<38>May  4 10:00:{s:02d} gw sshd[412]: Failed password for invalid user admin "
                          f"from 203.0.113.7 port {52210 + s} ssh2") for s in range(0, 10, 2)]
    lines.append(syslog(t, 20, "<38>May  4 10:00:20 gw sshd[413]: Accepted password for admin from 203.0.113.7 "
                               "port 52300 ssh2"))
    lines.append(syslog(t, 21, "<78>1 2026-05-04T10:00:21.000Z gw CRON 811 - - (root) CMD (run-parts /etc/hourly)"))
    lines.append(syslog(t, 22, "garbage that is not syslog"))
    lines += [syslog(t, 30 + p, f"<4>May  4 10:00:{30 + p:02d} fw kernel: [UFW BLOCK] IN=eth0 OUT= "
                                f"MAC=00:00:00:00:00:00 SRC=198.51.100.9 DST=10.0.0.5 LEN=44 TOS=0x00 PREC=0x00 "
                                f"TTL=52 ID=54321 PROTO=TCP SPT=40000 DPT={1000 + p} WINDOW=1024 RES=0x00 SYN URGP=0")
              for p in range(20)]
    flows = [flow(t, 60 + h, "192.0.2.44", f"10.0.0.{h + 1}", 445) for h in range(12)]
    flows.append(flow(t, 90, "10.0.0.7", "203.0.113.200", 8443, packets=3_500_000, bytes_out=5_000_000_000,
                      bytes_in=20_000, duration_ms=3 * 3600 * 1000))
    flows.append(flow(t, 91, "10.0.0.8", "10.0.0.2", 443, packets=40, bytes_out=2_000, bytes_in=30_000,
                      duration_ms=400))
    # ordinary traffic of one workstation: more flows of one source than a scoring batch holds (256)
    flows += [flow(t, 100 + i, "10.0.0.9", "10.0.0.2", 443, packets=40, bytes_out=2_000, bytes_in=30_000,
                   duration_ms=400) for i in range(300)]
    # flows the scoring stage must dead-letter itself (it checks the raw messages, no intake before it)
    flows += [(b'{"tenant": ', BASE_MS + 95_000),
              (flow("nobody", 96, "10.0.0.9", "10.0.0.2", 443)[0], BASE_MS + 96_000)]
    scratch.produce([m for m, _ in lines], timestamps=[ts for _, ts in lines])
    scratch.produce([m for m, _ in flows], timestamps=[ts for _, ts in flows], topic=scratch.source2)
    onnx_bytes, metadata = train_flow_model(normal_flows(seed=0, n=5000), seed=0)
    save_model(tmp_path / "flow_anomaly", onnx_bytes, metadata)

    run_id = f"test-{uuid.uuid4().hex[:8]}"
    run_script("jobs/streaming/cyber_threats.py", "--bounded", "--topic", f"security.syslog={scratch.source}",
               "--topic", f"network.flows={scratch.source2}", "--tenants", t, "--group-id", f"test-{t}",
               "--rules-topic", scratch.rules, "--run-id", run_id,
               env={"IMPETUS_MODELS_DIR": str(tmp_path), "IMPETUS_FLINK_PYTHON_MODE": mode})

    alerts = scratch.read(scratch.alerts)
    assert sorted((a["category"], a["entity"]["type"], a["entity"]["id"], a["severity"]) for a in alerts) == [
        ("brute_force", "account", "admin@gw", "critical"),
        ("brute_force", "ip", "203.0.113.7", "high"),
        ("flow_anomaly", "ip", "10.0.0.7", "high"),
        ("port_scan", "ip", "192.0.2.44", "medium"),
        ("port_scan", "ip", "198.51.100.9", "medium"),
    ]
    by_key = {(a["category"], a["entity"]["id"]): a for a in alerts}
    burst = by_key[("brute_force", "203.0.113.7")]
    expected_id = uuid.uuid5(ALERT_NAMESPACE, "default-brute_force|ip|203.0.113.7|2026-05-04T10:00:00.000Z")
    assert burst["alert_id"] == str(expected_id)
    assert burst["evidence"]["failures"] == 5
    assert "Block source IP 203.0.113.7" in burst["countermeasure"]
    assert "lock it" in by_key[("brute_force", "admin@gw")]["countermeasure"]
    assert by_key[("port_scan", "198.51.100.9")]["evidence"]["distinct_ports"] == 20
    assert by_key[("port_scan", "192.0.2.44")]["evidence"]["distinct_hosts"] == 10
    model = {"kind": "model", "name": "flow_anomaly", "version": metadata["version"]}
    assert by_key[("flow_anomaly", "10.0.0.7")]["detector"] == model
    assert all(a.get("countermeasure") for a in alerts)

    letters = scratch.read(scratch.dlq)
    assert [d["reason"] for d in letters] == [
        "no syslog timestamp ('Mmm dd hh:mm:ss' or RFC 3339) at the start of 'garbage that is not syslog'"]
    flow_letters = scratch.read(scratch.dlq2)
    assert [(d["source_topic"], d["reason"].split(":")[0]) for d in flow_letters] == [
        (scratch.source2, "not JSON"), (scratch.source2, "unknown tenant 'nobody' (no alert topic for it)")]
    assert [d["payload"] for d in flow_letters][0] == '{"tenant": '
    counts = scratch.accounting(run_id)
    assert counts == {"messages_in": len(lines) + len(flows), "processed": len(lines) + len(flows) - 3,
                      "dead_lettered": 3, "late": 0, "reports": 2}
