"""Train the flow-anomaly model on synthetic normal flows, save it, and measure it.

    python models/flow_anomaly/train.py [--out DIR] [--seed N] [--flows N]

Generates ``--flows`` background flows with ``impetus.replay.flows.normal_flows``
(seed ``--seed``), fits the IsolationForest and exports it to ONNX
(``impetus.detect.flow_anomaly.train_flow_model``), writes ``model.onnx`` and
``model.json`` to ``--out`` (default ``var/models/flow_anomaly`` under the
configured var dir), then evaluates the saved model on the labelled episodes of
``impetus.replay.flows.generate(seed=11)`` and prints one JSON summary. The
figures in MODEL_CARD.md come from this command with its defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from impetus.config import load_settings
from impetus.detect.flow_anomaly import FlowScorer, evaluate, load_model, save_model, train_flow_model
from impetus.replay import flows as flow_replay

EVALUATION_SEED = 11


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for model.onnx and model.json "
                        "(default: <models dir, var/models>/flow_anomaly)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training flows and the forest")
    parser.add_argument("--flows", type=int, default=20_000, help="number of training flows (default %(default)s)")
    args = parser.parse_args(argv)
    if args.flows < 1:
        parser.error("--flows must be positive")
    out = args.out or load_settings().model_path("flow_anomaly")

    started = time.monotonic()
    training = flow_replay.normal_flows(seed=args.seed, n=args.flows)
    source = f"{flow_replay.GENERATOR}.normal_flows(seed={args.seed}, n={args.flows}) (synthetic background)"
    onnx_bytes, metadata = train_flow_model(training, seed=args.seed, source=source)
    folder = save_model(out, onnx_bytes, metadata)
    trained = time.monotonic() - started

    # evaluate what was written, not what is in memory: the file is what the streaming job loads
    scorer = FlowScorer(*load_model(folder))
    documents, truth = flow_replay.generate(seed=EVALUATION_SEED)
    evaluation = evaluate(scorer, documents, truth)
    evaluation["data"] = f"{flow_replay.GENERATOR}.generate(seed={EVALUATION_SEED})"

    summary = {
        "model": metadata["name"],
        "version": metadata["version"],
        "threshold": metadata["threshold"],
        "training_size": metadata["training_size"],
        "seed": args.seed,
        "out": str(folder),
        "train_seconds": round(trained, 2),
        "seconds": round(time.monotonic() - started, 2),
        "evaluation": evaluation,
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
