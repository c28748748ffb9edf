#!/usr/bin/env bash
# Install everything (scripts/setup.sh, plus Chromium and Playwright for the web page's
# end-to-end test), then lint (ruff), type-check (mypy) and run the test suite; then build the
# wheel and the sdist and run the core tests against the wheel installed alone in a fresh virtual
# environment (scripts/wheel_check.sh). Any finding fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh
.venv/bin/ruff check src tests bench scripts examples
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
bash scripts/wheel_check.sh
