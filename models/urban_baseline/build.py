"""Train the urban_baseline model (median and MAD per sensor and hour of week) and write it as JSON.

Run from the repository root::

    .venv/bin/python models/urban_baseline/build.py                 # default window, default path
    .venv/bin/python models/urban_baseline/build.py --evaluate      # plus the model card's figures

A thin command over impetus.detect.urban (build_baseline, save_baseline, evaluation_report) on the
Auckland pedestrian counts of impetus.replay.sensors.load_counts. Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from impetus.config import load_settings
from impetus.detect.urban import (
    BASELINE_NAME, DEFAULT_TRAINING_WINDOW, build_baseline, evaluation_report, save_baseline,
)
from impetus.replay.sensors import load_counts


def default_out() -> Path:
    # where the streaming job looks (IMPETUS_MODELS_DIR, var/models by default)
    return load_settings().model_path(BASELINE_NAME) / "baseline.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the baseline JSON "
                        "(default: <models dir, var/models>/urban_baseline/baseline.json)")
    parser.add_argument("--start", default=DEFAULT_TRAINING_WINDOW[0], help="first local date of the training window")
    parser.add_argument("--end", default=DEFAULT_TRAINING_WINDOW[1], help="local date after the training window")
    parser.add_argument("--evaluate", action="store_true", help="also measure it on 2020 (see MODEL_CARD.md)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the injected anomalies (--evaluate)")
    parser.add_argument("--rate", type=float, default=0.01, help="share of readings given an injected anomaly")
    args = parser.parse_args(argv)

    started = time.monotonic()
    baseline = build_baseline(load_counts(args.start, args.end), start=args.start, end=args.end)
    path = save_baseline(args.out or default_out(), baseline)
    cells = [cell for tenant in baseline["series"].values() for sensor in tenant.values()
             for hours in sensor.values() for cell in hours]
    summary = {
        "path": str(path),
        "name": baseline["name"],
        "version": baseline["version"],
        "training_window": baseline["training_window"],
        "samples": baseline["samples"],
        "series": sum(len(sensor) for tenant in baseline["series"].values() for sensor in tenant.values()),
        "cells": sum(cell is not None for cell in cells),
        "cells_without_history": sum(cell is None for cell in cells),
        "bytes": path.stat().st_size,
    }
    if args.evaluate:
        summary["evaluation"] = evaluation_report(baseline, seed=args.seed, rate=args.rate)
    summary["seconds"] = round(time.monotonic() - started, 1)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
