#!/usr/bin/env bash
# Install what the project needs on a fresh machine: Node packages (pinned in package-lock.json),
# a Python virtual environment with the test and docs tools, and Debian's Chromium for the
# browser tests (Playwright cannot download its own browser here).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/pyodide ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,docs]"
if [ "${1:-}" = "--browser" ] || [ "${1:-}" = "--all" ]; then want_browser=1; else want_browser=0; fi
if [ "${1:-}" = "--integration" ] || [ "${1:-}" = "--all" ]; then
  # a second environment for tests/integration: the real torch, transformers, peft, accelerate and
  # Lightning (a few GB); the core's own environment stays free of them
  if [ ! -x .venv-int/bin/python ]; then
    python3 -m venv .venv-int
  fi
  .venv-int/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-integration.txt
  .venv-int/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
fi
if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
