"""Spark job: land a Kafka topic in its Delta bronze table, exactly once.

Each micro-batch is validated with the same schema validator the Flink jobs use;
valid messages are parsed with the Spark schema derived from ``schemas/`` and
appended to ``bronze/<table>`` (partitioned by event date), invalid ones to
``quarantine/<table>`` with the reason. Writes are idempotent per micro-batch
(Delta ``txnAppId``/``txnVersion``) and offsets are checkpointed, so a restart
neither loses nor duplicates rows.

    python jobs/batch/land_bronze.py                      # sensors.readings, everything available now
    python jobs/batch/land_bronze.py --topic sensors.readings --continuous
"""

from __future__ import annotations

import argparse
import json

from impetus.config import load_settings
from impetus.landing import land_topic

JOB_NAME = "land_bronze"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="sensors.readings", help="event topic to land; default %(default)s")
    parser.add_argument("--source-topic", help="read from this topic instead (same schema), e.g. a test topic")
    parser.add_argument("--table", help="table name (default: the topic with dots as underscores)")
    parser.add_argument("--continuous", action="store_true",
                        help="keep running, one micro-batch every --interval (default: land what is there, stop)")
    parser.add_argument("--interval", default="10 seconds", help="trigger interval with --continuous")
    args = parser.parse_args(argv)

    settings = load_settings()
    result = land_topic(settings, args.topic, source_topic=args.source_topic, table=args.table,
                        continuous=args.continuous, interval=args.interval)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
