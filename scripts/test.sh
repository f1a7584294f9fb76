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
# Headless Chromium for the sidebar's browser test (Debian's package; never a downloaded build).
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then
  apt-get update -q && apt-get install -y -q chromium
fi
# rv32imc cross toolchain (picolibc) and QEMU: the firmware core built for the ESP32-C3's ISA and
# run under qemu-system-riscv32 (tests/test_rv32.py; it skips, saying so, where they are missing).
if [ "$(id -u)" = 0 ] && ! command -v qemu-system-riscv32 >/dev/null; then
  apt-get update -q && apt-get install -y -q --no-install-recommends gcc-riscv64-unknown-elf \
    picolibc-riscv64-unknown-elf qemu-system-misc
fi
# PostgreSQL for the ingest tests: each test starts its own cluster (initdb/pg_ctl in a temp dir,
# as a non-root user) and stops it; tests/test_ingest_postgres.py skips, saying so, without it.
if [ "$(id -u)" = 0 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q --no-install-recommends postgresql
fi
# The sidebar's labextension is committed prebuilt (a test checks it matches jupyter_extension/'s
# sources); rebuild it with scripts/build_labextension.sh after editing the TypeScript.
# Build the wheel once for the test that installs it into a clean venv.
rm -f dist/openmind_cells-*.whl
.venv/bin/python -m pip wheel -q --no-deps -w dist .
OPENMIND_WHEEL="$(ls dist/openmind_cells-*.whl)"
export OPENMIND_WHEEL
.venv/bin/ruff check openmind tests bench
# every core, a test file to a worker (files share module fixtures); the firmware built once first
make -s -C firmware all >/dev/null 2>&1 || true
exec .venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
