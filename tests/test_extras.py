"""The core works without the extras, and a command that needs a missing extra says which to install."""

from __future__ import annotations

import json
import subprocess
import sys

BLOCK_EXTRAS = (
    "import sys\n"
    "for m in ('fastapi', 'fastapi_offline', 'uvicorn', 'starlette', 'multipart', 'python_multipart',"
    " 'pydantic_settings', 'cryptography', 'pymilvus', 'milvus_lite'):\n"
    "    sys.modules[m] = None  # importing it now fails as if it were not installed\n"
    "from visage.cli import main\n"
)


def run_without_extras(*argv: str) -> subprocess.CompletedProcess:
    code = BLOCK_EXTRAS + f"sys.exit(main({list(argv)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_core_commands_run_without_the_extras(shared_data, tmp_path):
    faces = shared_data / "faces"
    obama, obama2 = str(faces / "facerec__obama/obama.jpg"), str(faces / "facerec__obama/obama2.jpg")
    gallery = str(tmp_path / "g.db")
    done = run_without_extras("verify", obama, obama2, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["same"] is True
    assert run_without_extras("enroll", "Obama", obama, "--gallery", gallery).returncode == 0
    found = run_without_extras("identify", obama2, "--gallery", gallery, "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["faces"][0]["name"] == "Obama"
    assert run_without_extras("detect", obama, "--json").returncode == 0
    assert run_without_extras("liveness", obama).returncode in (0, 1, 3)  # judged, whatever the verdict


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    served = run_without_extras("serve", "--state", str(tmp_path / "s.db"), "--gallery", str(tmp_path / "g.db"))
    assert served.returncode == 2 and "pip install 'visage[server]'" in served.stderr
    assert "Traceback" not in served.stderr
    milvus = run_without_extras("people", "list", "--gallery", f"milvus-lite:{tmp_path / 'm.db'}")
    assert milvus.returncode == 2 and "pip install 'visage[milvus]'" in milvus.stderr
