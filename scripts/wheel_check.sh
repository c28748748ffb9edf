#!/usr/bin/env bash
# Build the sdist and, from it, the wheel (python -m build); fail when a file of src/visage (a
# module, calibration.json, a liveness or style model, the web page) is missing from either. Then
# install the wheel alone, the core without extras, into a fresh virtual environment and run the
# core tests against that install, from a folder where the checkout's src/ cannot be imported: a
# package-data file or a dependency that the wheel lacks fails here. Needs .venv (scripts/setup.sh);
# the fresh environment shares the model cache ($VISAGE_HOME or ~/.cache/visage) and pip's cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/visage-wheel.XXXXXX")
trap 'rm -rf "$WORK"; lap "cleaned up"' EXIT
# --no-compile: Python compiles what the tests import; compiling all of torch up front took minutes.
PIP=(--quiet --disable-pip-version-check --no-compile)
start=$SECONDS
lap() { echo "wheel check: $1 after $((SECONDS - start)) s"; }

.venv/bin/python -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
wheels=("$WORK"/dist/visage-*.whl)
sdists=("$WORK"/dist/visage-*.tar.gz)
.venv/bin/python - "${wheels[0]}" "${sdists[0]}" <<'EOF'
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

wheel, sdist = sys.argv[1:3]
try:  # what git knows: tracked files, and new ones that are not ignored (no caches, no build output)
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "src/visage"],
                         check=True, capture_output=True, text=True).stdout
    files = sorted(f for f in out.split("\0") if f and Path(f).is_file())
except (OSError, subprocess.CalledProcessError):  # not a git checkout
    files = sorted(str(p) for p in Path("src/visage").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
with zipfile.ZipFile(wheel) as z:
    in_wheel = set(z.namelist())
with tarfile.open(sdist) as t:
    in_sdist = {name.split("/", 1)[1] for name in t.getnames() if "/" in name}
missing = [f"{f} (wheel)" for f in files if f.removeprefix("src/") not in in_wheel]
missing += [f"{f} (sdist)" for f in files if f not in in_sdist]
if missing:
    sys.exit("missing from the built package (add them to [tool.setuptools.package-data] in pyproject.toml):\n  "
             + "\n  ".join(missing))
data = sorted(f for f in files if not f.endswith(".py"))
print(f"wheel {Path(wheel).name}: {Path(wheel).stat().st_size / 1e6:.1f} MB, sdist {Path(sdist).stat().st_size / 1e6:.1f} MB;"
      f" both hold all {len(files)} files of src/visage, {len(data)} of them data:")
print("  " + "\n  ".join(data))
EOF
lap "built and listed"

# A fresh environment: torch first, pinned (the CPU build), then the wheel and pytest, nothing else.
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install "${PIP[@]}" torch==2.13.0
"$WORK/venv/bin/pip" install "${PIP[@]}" "${wheels[0]}" "pytest>=8"
lap "installed into a fresh venv"

# The tests run from a copy, outside the checkout, so `import visage` can only find the wheel's.
mkdir "$WORK/run"
cp -r tests pyproject.toml "$WORK/run/"
cd "$WORK/run"
export VISAGE_DEV_DATA="${VISAGE_DEV_DATA:-$ROOT/../shared/data}"
unset PYTHONPATH
"$WORK/venv/bin/python" -c "
import sys, visage
assert visage.__file__.startswith(sys.prefix), f'visage imported from {visage.__file__}, not from the fresh venv'
print('testing the installed wheel:', visage.__file__)"
"$WORK/venv/bin/visage" models >/dev/null  # exits 1 when a model file is missing or fails its checksum
# The core commands with the extras really missing, every import from a declared dependency, the
# package data read where the code looks for it, the model files found and checked.
"$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_extras.py tests/test_models.py
lap "passed"
