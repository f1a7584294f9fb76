#!/usr/bin/env bash
# Rebuild the JupyterLab extension from jupyter_extension/ into openmind/jupyter/labextension/
# (committed, so installs need no Node). Needs Node.js >= 18 and the project's .venv (for jlpm and
# the installed JupyterLab's core metadata). Dependencies come pinned from yarn.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
command -v node >/dev/null || { echo "node not found: install Node.js >= 18 to rebuild the labextension" >&2; exit 1; }
cd jupyter_extension
jlpm install --immutable
jlpm build:prod
