#!/usr/bin/env bash
# Set up (if needed) and run every test: pytest for the core, pycore under Pyodide in Node,
# the docs build (strict), and the page in Chromium against a fresh build of dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-all}" = "python" ]; then bash scripts/setup.sh; else bash scripts/setup.sh --all; fi
export PYTHON="$PWD/.venv/bin/python"
"$PYTHON" -m pytest -q tests --ignore=tests/integration
if [ "${1:-all}" = "python" ]; then exit 0; fi
# the integration lane: the pre-flight callbacks and accelerate's placement against the real libraries
if [ -d tests/integration ]; then .venv-int/bin/python -m pytest -q tests/integration; fi
node scripts/build.mjs
node --test tests/pyodide/ tests/browser/
