"""Spark job: recompute the gold tables (aggregates, profiles, features) from silver.

    python jobs/batch/build_gold.py                          # every gold table
    python jobs/batch/build_gold.py --table sensor_profile
"""

from __future__ import annotations

import argparse
import json
import sys

from impetus.config import load_settings
from impetus.lake import GOLD_BUILDERS, build_gold, progress
from impetus.promotion import GatesFailed, Promotion

JOB_NAME = "build_gold"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", choices=sorted(GOLD_BUILDERS),
                        help="gold table to build; repeatable; default: all")
    args = parser.parse_args(argv)
    settings = load_settings()
    promotion = Promotion(None, settings, log=progress)
    result = build_gold(settings, args.table, promotion=promotion)
    print(json.dumps(result, indent=2))
    try:
        promotion.finish()
    except GatesFailed as err:
        print(f"{JOB_NAME}: {err}", file=sys.stderr)
        sys.exit(3)
    return result


if __name__ == "__main__":
    main()
