#!/usr/bin/env bash
# Installs what the web page's end-to-end test (tests/test_web_e2e.py) needs: Debian's Chromium
# and the Playwright Python client. Playwright drives /usr/bin/chromium directly, so its own
# browser download (`playwright install`) is never run.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
PY=".venv/bin/python"
[ -x "$PY" ] || PY="python3"
"$PY" -m pip install --quiet "playwright>=1.40"
/usr/bin/chromium --version
"$PY" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
