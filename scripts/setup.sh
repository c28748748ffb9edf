#!/usr/bin/env bash
# Create .venv, install visage with pinned packages, and fetch the pinned model files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
# torch first, pinned, so no other requirement pulls a CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
# The core and every extra (the service, Milvus), and what the tests need.
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[all,test]"
.venv/bin/visage models --fetch
