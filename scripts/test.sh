#!/usr/bin/env bash
# Set up (if needed) and run every test: pytest for the core, then pycore under Pyodide in Node.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHON="$PWD/.venv/bin/python"
"$PYTHON" -m pytest -q tests
if [ "${1:-all}" = "python" ]; then exit 0; fi
node --test tests/pyodide/
