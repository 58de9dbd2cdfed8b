#!/usr/bin/env bash
# Set up fusionlab on a fresh machine: a virtual environment in .venv with the CPU build of torch, fusionlab
# and its dev tools, plus Debian's chromium for the browser tests when we may install system packages.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null || echo "warning: chromium not installed; browser tests will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CPU wheel of torch first: the project's range then keeps it (GPU users install their CUDA build here instead).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,ray]"
