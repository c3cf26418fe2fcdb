"""Retrain one model from the lake, log it to MLflow, promote it if it wins by the declared margin.

    python jobs/batch/retrain_model.py --model flow_anomaly
    python jobs/batch/retrain_model.py --model urban_baseline --no-promote
    python jobs/batch/retrain_model.py --model alert_thresholds     # tune thresholds from operators' decisions

What each model is trained on, how it is judged and the margin are declared in
models/lifecycle.yaml (docs/models.md). Prints the run's summary as JSON on stdout. Exit status:
0 whether the candidate was promoted or not (the reason is in the summary and in MLflow);
4 when there is nothing to train on yet (no table, too few rows: the weekly DAG skips the task);
2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys

from impetus.config import ConfigError, load_settings
from impetus.lake import progress

JOB_NAME = "retrain_model"
NOTHING_TO_TRAIN = 4


def main(argv=None):
    from impetus.retraining import TRAINERS, RetrainingError, retrain
    from impetus.tuning import tune

    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted([*TRAINERS, "alert_thresholds"]))
    parser.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    parser.add_argument("--no-promote", action="store_true", help="evaluate and register only")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.model == "alert_thresholds":
            result = tune(settings, promote=not args.no_promote)
        else:
            result = retrain(settings, args.model, seed=args.seed, promote=not args.no_promote)
    except RetrainingError as err:
        print(f"{JOB_NAME}: nothing to train {args.model} on yet: {err}", file=sys.stderr)
        sys.exit(NOTHING_TO_TRAIN)
    except ConfigError as err:
        print(f"{JOB_NAME}: {err}", file=sys.stderr)
        sys.exit(2)
    reasons = [p["reason"] for p in result["proposals"]] if "proposals" in result else [result["reason"]]
    progress(f"[{JOB_NAME}] {args.model}: " + "; ".join(reasons))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
