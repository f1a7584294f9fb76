#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. The README's test command and CI both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU build of torch from the local wheel cache; pinned so nothing pulls a CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff check openmind tests bench
exec .venv/bin/python -m pytest -q "$@"
