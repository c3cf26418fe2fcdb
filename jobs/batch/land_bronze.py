"""Spark job: land Kafka topics in their Delta bronze tables, anonymised, exactly once.

Each micro-batch is validated with the same schema validator the Flink jobs use;
personal fields are treated by their privacy tags (keyed pseudonyms, redacted free
text, dropped fields: impetus.privacy); valid messages are parsed with the Spark
schema derived from ``schemas/`` and appended to ``bronze.<table>`` (partitioned by
tenant and event month), invalid ones go to ``quarantine.landing`` with the reason.
Writes are idempotent per micro-batch and offsets are checkpointed, so a restart
neither loses nor duplicates rows. Prints one JSON summary per table:
``messages_in = landed + quarantined`` for this run.

    python jobs/batch/land_bronze.py                         # every bronze table, what is there now
    python jobs/batch/land_bronze.py --table sensors_readings --continuous
"""

from __future__ import annotations

import argparse
import json

from impetus.config import load_settings
from impetus.landing import LandingError, land, parse_sources

JOB_NAME = "land_bronze"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append",
                        help="bronze table (or its topic) to land; repeatable; default: every declared table")
    parser.add_argument("--topic", dest="table", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--source", action="append", default=[], metavar="TABLE=TOPIC[,TOPIC]",
                        help="land TABLE from these topics instead of its declared ones (same schema), "
                             "e.g. a backfill or test topic; repeatable")
    parser.add_argument("--source-topic", help="with one --table: the same as --source TABLE=TOPIC")
    parser.add_argument("--continuous", action="store_true",
                        help="keep running, one micro-batch every --interval (default: land what is there, stop)")
    parser.add_argument("--interval", default="10 seconds", help="trigger interval with --continuous")
    parser.add_argument("--max-per-batch", type=int, default=200_000,
                        help="most messages per micro-batch and table (default %(default)s)")
    args = parser.parse_args(argv)

    try:
        sources = parse_sources(args.source)
    except LandingError as err:
        parser.error(str(err))
    if args.source_topic:
        if not args.table or len(args.table) != 1:
            parser.error("--source-topic needs exactly one --table")
        sources[args.table[0]] = args.source_topic
    settings = load_settings()
    result = land(settings, args.table, sources=sources, continuous=args.continuous,
                  interval=args.interval, max_per_batch=args.max_per_batch)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
