#!/usr/bin/env bash
# Install everything (scripts/setup.sh, plus Chromium and Playwright for the web page's
# end-to-end test) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh
.venv/bin/python -m pytest -q "$@"
