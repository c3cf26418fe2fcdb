"""Detection quality of the streaming detectors on the labelled replays: precision and recall per rule.

Runs the same per-key logic the Flink jobs run (``impetus.detect.streams``, via
``run_plain``: event order as produced, timers on event time) over the seeded synthetic
cyber and text data, and the urban-anomaly baseline over real Auckland weeks with injected
anomalies (``impetus.detect.urban.evaluation_report``). Results go to stdout as a table and
to ``--out`` as JSON; BENCHMARKS.md quotes them with this command.

    python bench/detection_quality.py [--seeds 7,8,9] [--out bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def cyber_quality(seed: int) -> dict:
    from impetus.detect.flow_anomaly import FlowScorer, train_flow_model
    from impetus.detect.streams import SourceWatch, run_plain, syslog_event
    from impetus.detect.syslog import SyslogParseError
    from impetus.evaluation import score_episodes
    from impetus.replay import flows, security_logs
    from impetus.rules import RuleBook, defaults_from, rule_kinds

    lines, line_truth = security_logs.generate(seed=seed)
    records, flow_truth = flows.generate(seed=seed + 4)
    onnx_bytes, metadata = train_flow_model(flows.normal_flows(seed=0, n=20_000), seed=0)
    parsed, malformed = [], 0
    for doc in lines:
        try:
            parsed.append(syslog_event(doc))
        except SyslogParseError:
            malformed += 1
    events = sorted(parsed + records, key=lambda d: d["event_time"])
    book = RuleBook({}, defaults_from(rule_kinds(), ["brute_force", "sudo_brute_force", "port_scan", "flow_anomaly"]))
    alerts = run_plain(SourceWatch(FlowScorer(onnx_bytes, metadata)), events, book)
    report = score_episodes(line_truth + flow_truth, alerts)
    injected = sum(1 for e in line_truth if e["kind"] == "malformed")
    report["malformed_lines"] = {"injected": injected, "dead_lettered": malformed}
    return report


def text_quality(seed: int) -> dict:
    from impetus.detect.streams import PostWatch, run_plain
    from impetus.replay import text
    from impetus.rules import RuleBook, defaults_from, rule_kinds

    social, cti, truth = text.generate(seed=seed)
    book = RuleBook({r["rule_id"]: r for r in text.example_rules()}, defaults_from(rule_kinds(), ["threat_language"]))
    alerts = run_plain(PostWatch(), sorted(social + cti, key=lambda d: d["event_time"]), book)
    return {"text": text.evaluate(truth, alerts)}


def urban_quality(seed: int) -> dict:
    from impetus.detect.urban import DEFAULT_TRAINING_WINDOW, build_baseline, evaluation_report
    from impetus.replay.sensors import load_counts

    baseline = build_baseline(load_counts(*DEFAULT_TRAINING_WINDOW), start=DEFAULT_TRAINING_WINDOW[0],
                              end=DEFAULT_TRAINING_WINDOW[1])
    report = evaluation_report(baseline, seed=seed)
    injected = report["normal"]["injected"]
    summary = {"urban_anomaly": {"precision": injected["precision"], "recall": injected["recall"],
                                 "recall_by_kind": injected["recall_by_kind"], "injected": injected["injected"],
                                 "period": report["normal"]["period"],
                                 "alerts_per_sensor_day_clean": report["normal"]["clean"]["alerts_per_sensor_day"]}}
    return {**summary, "full_report": report}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="7", help="comma-separated generator seeds (default %(default)s)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"seed {seed}: cyber ...", file=sys.stderr, flush=True)
        results[f"cyber/{seed}"] = cyber_quality(seed)
        print(f"seed {seed}: text ...", file=sys.stderr, flush=True)
        results[f"text/{seed}"] = text_quality(seed)
        print(f"seed {seed}: urban ...", file=sys.stderr, flush=True)
        results[f"urban/{seed}"] = urban_quality(seed)
    print(f"{'data/seed':<12} {'rule':<16} {'precision':>9} {'recall':>7}  detail")
    for name, report in results.items():
        for rule, figures in report.items():
            if rule == "full_report":
                continue
            if "precision" in figures:
                detail = {k: v for k, v in figures.items() if k not in ("precision", "recall")}
                print(f"{name:<12} {rule:<16} {figures['precision']!s:>9} {figures['recall']!s:>7}  "
                      f"{json.dumps(detail)[:100]}")
            else:
                print(f"{name:<12} {rule:<16} {'':>9} {'':>7}  {json.dumps(figures)[:140]}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
