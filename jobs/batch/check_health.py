"""Check the streaming side: the broker and its topics, the Flink jobs (REST API on a cluster) and
each job's consumer lag.

    python jobs/batch/check_health.py                       # every check
    python jobs/batch/check_health.py --check consumer_lag --max-lag 50000

Prints the reports as JSON; exits 1 when a check fails (the stack_health DAG's task then fails
and Airflow notifies as configured), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys

from impetus.config import load_settings
from impetus.health import CHECKS, DEFAULT_MAX_LAG, run_checks

JOB_NAME = "check_health"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="append", choices=sorted(CHECKS), help="repeatable; default: all")
    parser.add_argument("--max-lag", type=int, default=DEFAULT_MAX_LAG,
                        help="messages a job may be behind on its inputs (default %(default)s)")
    args = parser.parse_args(argv)
    results = run_checks(load_settings(), args.check, args.max_lag)
    print(json.dumps(results, indent=2))
    for result in results:
        print(f"{'ok  ' if result['ok'] else 'FAIL'} {result['check']}: {result['detail']}", file=sys.stderr)
    if not all(result["ok"] for result in results):
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
