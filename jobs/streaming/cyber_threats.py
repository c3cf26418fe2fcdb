"""Flink job: syslog lines and network flows -> cyber-threat alerts on ``alerts.<tenant>`` (IMPETUS's CTDR).

Reads ``security.syslog`` (RFC 3164 and RFC 5424 lines: OpenSSH, sudo, firewall) and
``network.flows`` and, per source, raises
- ``brute_force``: repeated failed logins from one IP (high), then a successful login
  from it (critical, about the account); repeated sudo failures of one account;
- ``port_scan``: many ports on one host, or one port on many hosts, probed by one source
  (from firewall blocks and from short flows);
- ``flow_anomaly``: flows the IsolationForest model (ONNX, built by
  ``impetus models build flow-anomaly``) scores as anomalous, e.g. exfiltration.
Every alert carries a suggested countermeasure. Lines that are not syslog and messages
that fail validation go to ``<topic>.dlq`` with the reason; counts of every run go to
``jobs.accounting``. Rules on the ``rules`` topic apply without a restart.

    python jobs/streaming/cyber_threats.py                 # runs until stopped
    python jobs/streaming/cyber_threats.py --bounded       # stops at the offsets current at start
    python jobs/streaming/cyber_threats.py --resume latest # continue from the last checkpoint
"""

from __future__ import annotations

from impetus.detect.streams import syslog_event
from impetus.streaming import Input, account, detect, intake_streams, run_job, sink_alerts

JOB_NAME = "cyber_threats"
INPUTS = [Input("security.syslog", "security.syslog", parse=syslog_event),
          Input("network.flows", "network.flows")]
OUT_OF_ORDERNESS_S = 5.0


def load_flow_scorer(settings):
    from impetus.detect.flow_anomaly import FlowScorer, load_model

    folder = settings.model_path("flow_anomaly")
    if not (folder / "model.onnx").is_file():
        print(f"[{JOB_NAME}] no flow-anomaly model in {folder}: flow anomalies are off until it is built "
              "(impetus models build flow-anomaly)", flush=True)
        return None
    return FlowScorer(*load_model(folder))


def build(env, settings, options, rules, descriptor, initial_rules):
    """Wire intake (both topics) -> per-source watch -> alert sinks onto ``env``."""
    from impetus.detect.streams import SourceWatch
    from impetus.rules import defaults_from, rule_kinds

    defaults = defaults_from(rule_kinds(), ["brute_force", "sudo_brute_force", "port_scan", "flow_anomaly"])
    events, dead_letters = intake_streams(env, settings, JOB_NAME, INPUTS, options)
    alerts, tallies = detect(events, rules, descriptor, JOB_NAME, "source watch",
                             SourceWatch(load_flow_scorer(settings)), options, initial_rules, defaults)
    sink_alerts(alerts, settings, JOB_NAME, options)
    account(settings, JOB_NAME, options, [tallies], dead_letters)


def main(argv=None):
    return run_job(JOB_NAME, __doc__, INPUTS, build, argv, OUT_OF_ORDERNESS_S)


if __name__ == "__main__":
    main()
