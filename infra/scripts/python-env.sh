#!/usr/bin/env bash
# Creates .venv from requirements.lock (the whole stack, resolved together) with uv,
# and installs the impetus package into it in editable mode.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found. impetus needs CPython 3.11 (PyFlink 2.2 and Airflow 3.3 are pinned for it);" >&2
  echo "       install it (apt-get install python3.11 python3.11-venv, or pyenv install 3.11) or set PYTHON=..." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv || { echo "error: '$PYTHON -m venv' failed: install the venv module (python3.11-venv)" >&2; exit 1; }
fi
if [ ! -x .venv/bin/uv ]; then
  # an environment made by other tools (uv venv, virtualenv --no-pip) may lack pip
  .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip -q >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv>=0.5" \
    || { echo "error: could not install uv from PyPI into .venv" >&2; exit 1; }
fi
echo "installing the Python stack from requirements.lock into .venv (first time: a few minutes, ~2 GB)"
.venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
