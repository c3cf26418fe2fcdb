"""Spark job: bring the silver tables up to date with bronze (incremental MERGE).

Each silver table is fed by one or more bronze tables; only bronze rows added since
the last run are read (Delta streaming source, position in a checkpoint) and MERGEd
on the silver table's key, so repeats collapse and late rows land where they belong.
Prints one JSON summary per feed.

    python jobs/batch/build_silver.py                        # every silver table
    python jobs/batch/build_silver.py --table alerts
"""

from __future__ import annotations

import argparse
import json
import sys

from impetus.config import load_settings
from impetus.lake import build_silver, progress
from impetus.promotion import GatesFailed, Promotion

JOB_NAME = "build_silver"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", help="silver table to build; repeatable; default: all")
    parser.add_argument("--reprocess", action="store_true",
                        help="read the named tables' bronze again from the start (after a fix, to promote what a "
                             "gate held back)")
    args = parser.parse_args(argv)
    settings = load_settings()
    promotion = Promotion(None, settings, log=progress)
    result = build_silver(settings, args.table, promotion=promotion, reprocess=args.reprocess)
    print(json.dumps(result, indent=2))
    try:
        promotion.finish()
    except GatesFailed as err:
        print(f"{JOB_NAME}: {err}", file=sys.stderr)
        sys.exit(3)
    return result


if __name__ == "__main__":
    main()
