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

from impetus.config import load_settings
from impetus.lake import build_silver

JOB_NAME = "build_silver"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", help="silver table to build; repeatable; default: all")
    args = parser.parse_args(argv)
    result = build_silver(load_settings(), args.table)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
