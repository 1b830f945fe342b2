#!/usr/bin/env bash
# Install what the project needs on a fresh machine: Node packages (pinned in
# package-lock.json) and a Python virtual environment with the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/pyodide ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
