"""Flink job: syslog lines and network flows -> cyber-threat alerts on ``alerts.<tenant>`` (IMPETUS's CTDR).

Reads ``security.syslog`` (RFC 3164 and RFC 5424 lines: OpenSSH, sudo, firewall) and
``network.flows`` and, per source, raises
- ``brute_force``: repeated failed logins from one IP (high), then a successful login
  from it (critical, about the account); repeated sudo failures of one account;
- ``port_scan``: many ports on one host, or one port on many hosts, probed by one source
  (from firewall blocks and from short flows);
- ``flow_anomaly``: flows the IsolationForest model (ONNX; the registry's
  ``flow_anomaly@champion``, else the file built by ``impetus models build flow-anomaly``)
  scores as anomalous, e.g. exfiltration. A version announced on ``models.control``
  (``impetus models retrain|promote``) is loaded without a restart; alerts name the version.
  Flows are scored in batches of up to ``FLOW_BATCH`` (docs/cyber-detection.md).
Every alert carries a suggested countermeasure. Lines that are not syslog and messages
that fail validation go to ``<topic>.dlq`` with the reason; counts of every run go to
``jobs.accounting``. Rules on the ``rules`` topic apply without a restart.

    python jobs/streaming/cyber_threats.py                 # runs until stopped
    python jobs/streaming/cyber_threats.py --bounded       # stops at the offsets current at start
    python jobs/streaming/cyber_threats.py --resume latest # continue from the last checkpoint
"""

from __future__ import annotations

from impetus.detect.streams import syslog_event
from impetus.streaming import Input, account, detect_pairs, run_job, score_in_batches, sink_alerts

JOB_NAME = "cyber_threats"
INPUTS = [Input("security.syslog", "security.syslog", parse=syslog_event),
          Input("network.flows", "network.flows")]
OUT_OF_ORDERNESS_S = 5.0
# PyFlink execution mode (impetus.flink.stream_environment): Python inside the JVM (its ONNX Runtime
# calls go to a thread Python started, impetus.embedded). Faster than a Python worker since flows are
# scored in batches; before that the per-flow model calls made both modes equally slow (BENCHMARKS.md)
PYTHON_MODE = "thread"
# flows are scored this many at a time at most, waiting at most this long for a batch to fill
FLOW_BATCH = 256
FLOW_BATCH_WAIT_MS = 20
# syslog lines are checked and parsed this many at a time at most, waiting at most this long
LINES_BUNDLE = 64
LINES_BUNDLE_WAIT_MS = 10


def load_flow_scorer(settings):
    """The registry's flow_anomaly@champion, else the model built into the models folder, else None."""
    from impetus.detect.flow_anomaly import FlowScorer, load_model
    from impetus.registry import champion_artefact

    scorer = champion_artefact(settings, "flow_anomaly", log=lambda line: print(f"[{JOB_NAME}] {line}", flush=True))
    if scorer is not None:
        return scorer
    folder = settings.model_path("flow_anomaly")
    if not (folder / "model.onnx").is_file():
        print(f"[{JOB_NAME}] no flow-anomaly model in the registry or in {folder}: flow anomalies are off until "
              "one is promoted (impetus models retrain flow_anomaly) or built (impetus models build flow-anomaly); "
              "a promotion announced on models.control switches them on without a restart", flush=True)
        return None
    return FlowScorer(*load_model(folder))


def build(env, settings, options, rules, descriptor, initial_rules):
    """Wire syslog intake and flows scored in batches -> per-source watch -> alert sinks onto ``env``."""
    from impetus.detect.streams import FlowScoring, SourceWatch
    from impetus.rules import defaults_from, rule_kinds

    defaults = defaults_from(rule_kinds(), ["brute_force", "sudo_brute_force", "port_scan", "flow_anomaly"])
    syslog, flows = INPUTS
    # each stage before the source watch computes its key as it emits a record: no Python key selector.
    # Syslog lines checked and parsed in bundles gathered in the JVM, one Python call per bundle
    lines, line_dead_letters = score_in_batches(env, settings, JOB_NAME, syslog, options, rules, descriptor,
                                                "syslog intake", None, LINES_BUNDLE, LINES_BUNDLE_WAIT_MS,
                                                key_out=SourceWatch.key)
    # raw flows checked and scored in batches, one model call per batch (impetus.detect.streams.FlowScoring)
    scored, flow_dead_letters = score_in_batches(env, settings, JOB_NAME, flows, options, rules, descriptor,
                                                 "flow scoring", FlowScoring(load_flow_scorer(settings)), FLOW_BATCH,
                                                 FLOW_BATCH_WAIT_MS, key_out=SourceWatch.key)
    alerts, tallies = detect_pairs(lines.union(scored), rules, descriptor, JOB_NAME, "source watch",
                                   SourceWatch(scored_upstream=True), options, initial_rules, defaults)
    sink_alerts(alerts, settings, JOB_NAME, options)
    account(settings, JOB_NAME, options, [tallies], [line_dead_letters, flow_dead_letters])


def main(argv=None):
    return run_job(JOB_NAME, __doc__, INPUTS, build, argv, OUT_OF_ORDERNESS_S, PYTHON_MODE)


if __name__ == "__main__":
    main()
