#!/usr/bin/env bash
# The test command (make test, .ci/run): lint, unit tests, then the integration tier
# against the real local stack. Starts the Kafka broker if it is not running and
# stops it again afterwards, even when tests fail.
set -uo pipefail
BIN=.venv/bin
export PYTHONUNBUFFERED=1

echo "== lint (flake8)"
$BIN/flake8 || exit 1

started=0
if ! $BIN/impetus stack status --json >/dev/null 2>&1; then
  echo "== starting the local stack for the integration tier"
  $BIN/impetus stack up || exit 1
  started=1
fi
stop_stack() { [ "$started" = 1 ] && $BIN/impetus stack down; }
trap stop_stack EXIT

echo "== tests (unit + integration)"
$BIN/pytest "$@"
