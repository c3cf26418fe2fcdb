"""Spark job: erase one data subject from every lake table, physically, and record the request.

The subject's pseudonym under every key of the key ring is computed from the identifier they
are known by (e-mail, IP or MAC address, phone number, handle, plate...); every row holding it,
in a pseudonymised column or inside redacted text, is deleted from every table but the audit
tables, then the files and log history that held those rows are removed. The request is appended
to audit.erasure_requests with the pseudonyms, never the identifier. Progress goes to stderr, a
JSON summary to stdout. Messages still on Kafka are not touched: see docs/governance.md.

    python jobs/batch/erase_subject.py --subject kari.nordmann@example.no --requested-by dpo@example.org \\
        --reason "Art. 17 request 2026-014"
    echo "203.0.113.77" | python jobs/batch/erase_subject.py --subject -     # keep it out of the process list
    echo "203.0.113.77" | python jobs/batch/erase_subject.py --subject - --queue   # for the daily run
    python jobs/batch/erase_subject.py --pending      # carry out every queued request (the daily DAG's task)

Queued requests wait in a secret folder (IMPETUS_ERASURE_QUEUE_DIR, var/secrets/erasure-requests) until
`--pending` carries them out, so the identifier never goes through Airflow (impetus/erasure_queue.py).
"""

from __future__ import annotations

import argparse
import sys
import time

from impetus.config import load_settings
from impetus.erasure_queue import process_pending, queue_request
from impetus.governance import GovernanceError, erase_subject, to_json
from impetus.privacy import PrivacyConfigError

JOB_NAME = "erase_subject"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=JOB_NAME, description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", help="the identifier the subject is known by; - reads it from stdin")
    parser.add_argument("--queue", action="store_true", help="queue the request for the daily run instead")
    parser.add_argument("--pending", action="store_true", help="carry out every queued request, oldest first")
    parser.add_argument("--requested-by", help="who asks (recorded as a pseudonym)")
    parser.add_argument("--reason", help="why (recorded with personal values redacted)")
    args = parser.parse_args(argv)
    if args.pending == bool(args.subject):
        parser.error("give --subject (to erase now, or with --queue) or --pending, not both")
    subject = sys.stdin.readline().strip() if args.subject == "-" else args.subject
    settings = load_settings()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{JOB_NAME} {time.monotonic() - started:5.0f}s] {message}", file=sys.stderr, flush=True)

    log(f"lake {settings.lake_uri}")
    try:
        if args.queue:
            result = queue_request(settings, subject, requested_by=args.requested_by, reason=args.reason)
        elif args.pending:
            result = process_pending(settings, log)
            log(f"{len(result)} queued requests carried out")
        else:
            result = erase_subject(settings, subject, requested_by=args.requested_by, reason=args.reason, log=log)
    except (GovernanceError, PrivacyConfigError) as err:
        parser.exit(2, f"{JOB_NAME}: {err}\n")
    print(to_json(result))
    return result


if __name__ == "__main__":
    main()
