"""Spark job: recompute the gold tables (aggregates, profiles, features) from silver.

    python jobs/batch/build_gold.py                          # every gold table
    python jobs/batch/build_gold.py --table sensor_profile
"""

from __future__ import annotations

import argparse
import json

from impetus.config import load_settings
from impetus.lake import GOLD_BUILDERS, build_gold

JOB_NAME = "build_gold"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", choices=sorted(GOLD_BUILDERS),
                        help="gold table to build; repeatable; default: all")
    args = parser.parse_args(argv)
    result = build_gold(load_settings(), args.table)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
