"""Spark job: delete the rows of every lake table older than its declared retention, physically.

For each table with `x-retention` in schemas/tables/, rows whose time column is older than the
retention are deleted, the files that held them removed (VACUUM with zero retention) and the
transaction log before the delete cut, so no earlier version can bring them back. One row per
table is appended to audit.retention_runs. Progress goes to stderr, a JSON summary (one entry
per table) to stdout. See docs/governance.md.

    python jobs/batch/enforce_retention.py                       # every table, now
    python jobs/batch/enforce_retention.py --dry-run             # what would go; changes nothing
    python jobs/batch/enforce_retention.py --table bronze.social_posts --now 2026-06-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from impetus.config import load_settings
from impetus.governance import GovernanceError, enforce_retention, to_json

JOB_NAME = "enforce_retention"


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 2026-06-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--now", type=_instant, help="age rows as of this time (UTC unless it says); default: now")
    parser.add_argument("--dry-run", action="store_true", help="count the rows that would be deleted; change nothing")
    parser.add_argument("--table", action="append", metavar="LAYER.NAME",
                        help="only this table (repeatable); default: every table")
    args = parser.parse_args(argv)
    settings = load_settings()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{JOB_NAME} {time.monotonic() - started:5.0f}s] {message}", file=sys.stderr, flush=True)

    log(f"lake {settings.lake_uri}" + ("; dry run" if args.dry_run else ""))
    try:
        result = enforce_retention(settings, now=args.now, dry_run=args.dry_run, tables=args.table, log=log)
    except GovernanceError as err:
        parser.exit(2, f"{JOB_NAME}: {err}\n")
    print(to_json(result))
    return result


if __name__ == "__main__":
    main()
