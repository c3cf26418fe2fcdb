"""Spark job: historical analysis for analysts: hot spots, trends and seasonality, before/after a date.

Reads gold.area_hourly and gold.alert_counts (run jobs/batch/build_gold.py first), writes
the Delta tables gold.hotspots, gold.trends and gold.before_after, and an HTML report with
figures (hot-spot map on the sensors' coordinates, hour-of-week x area heatmap, daily trend
lines, before/after bars) to <out>/index.html. Progress goes to stderr, one line per step;
a JSON summary (rows per table, report path) to stdout. See docs/historical-analysis.md.

    python jobs/batch/historical_report.py                                # lockdown of 26 March 2020
    python jobs/batch/historical_report.py --date 2026-11-16 --window-days 3 --tenant auckland
    python jobs/batch/historical_report.py --out /tmp/report && xdg-open /tmp/report/index.html
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from impetus.analysis import (DEFAULT_CHANGE_DATE, DEFAULT_WINDOW_DAYS, TENANT_NAME, AnalysisInputMissing,
                              build_historical, render_report)
from impetus.config import load_settings
from impetus.promotion import GatesFailed, Promotion

JOB_NAME = "historical_report"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days of at least 1")
    return int(text)


def main(argv=None):
    settings = load_settings()
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", type=_date, default=DEFAULT_CHANGE_DATE,
                        help="local date the 'after' window starts on (default %(default)s, the start of New "
                             "Zealand's first COVID-19 lockdown)")
    parser.add_argument("--window-days", type=_positive, default=DEFAULT_WINDOW_DAYS,
                        help="days compared on each side of --date (default %(default)s)")
    parser.add_argument("--out", type=Path, default=settings.var_dir / "reports" / "historical",
                        help="folder of the HTML report and its PNG figures (default %(default)s)")
    parser.add_argument("--tenant", help="analyse this tenant only (the other tenants' rows in the tables stay); "
                                         "default: every tenant")
    args = parser.parse_args(argv)
    if args.tenant is not None and not TENANT_NAME.fullmatch(args.tenant):
        parser.error(f"--tenant {args.tenant!r}: a tenant name has only lower-case letters, digits, '_' and '-'")

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{JOB_NAME} {time.monotonic() - started:5.0f}s] {message}", file=sys.stderr, flush=True)

    log(f"lake {settings.lake_uri}; before/after {args.date} +-{args.window_days} days"
        + (f"; tenant {args.tenant}" if args.tenant else ""))
    promotion = Promotion(None, settings, log=log)
    try:
        result = build_historical(settings, args.date, args.window_days, args.tenant, log=log, promotion=promotion)
    except AnalysisInputMissing as err:
        parser.exit(2, f"{JOB_NAME}: {err}\n")
    index = render_report(result["frames"], args.out, args.date, args.window_days, lake=settings.lake_uri, log=log)
    log(f"report: {index}")
    summary = {"tables": result["tables"], "report": str(index.resolve()), "date": str(args.date),
               "window_days": args.window_days, "tenant": args.tenant, "gates": promotion.summary()}
    print(json.dumps(summary, indent=2))
    try:
        promotion.finish()
    except GatesFailed as err:
        parser.exit(3, f"{JOB_NAME}: {err}\n")
    return summary


if __name__ == "__main__":
    main()
