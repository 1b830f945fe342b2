#!/usr/bin/env bash
# Set up (if needed) and run every test: pytest for the core, pycore under Pyodide in Node,
# the docs build (strict), and the page in Chromium against a fresh build of dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export PYTHON="$PWD/.venv/bin/python"
"$PYTHON" -m pytest -q tests
if [ "${1:-all}" = "python" ]; then exit 0; fi
node scripts/build.mjs
node --test tests/pyodide/ tests/browser/
