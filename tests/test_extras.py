"""The core works without the extras, a command that needs a missing extra says which to install, and
every module the package imports comes from a dependency it declares.

scripts/wheel_check.sh runs these tests against the wheel installed alone (no extras) in a fresh
virtual environment, too: there the extras are really missing, and the package data is the wheel's.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

import pytest

import visage
from visage.extras import EXTRA_OF_MODULE

PACKAGE = Path(visage.__file__).parent

BLOCK_EXTRAS = (
    "import sys\n"
    f"for m in {sorted(EXTRA_OF_MODULE)!r}:\n"
    "    sys.modules[m] = None  # importing it now fails as if it were not installed\n"
    "from visage.cli import main\n"
)


def run_without_extras(*argv: str) -> subprocess.CompletedProcess:
    code = BLOCK_EXTRAS + f"sys.exit(main({list(argv)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow  # every core command in a process of its own; scripts/wheel_check.sh runs it on the wheel
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


def _third_party_imports(paths) -> dict[str, set[str]]:
    """Top-level module → the files (relative to the package) that import it; the standard library and visage left out.

    Every ``import`` counts, the ones inside functions too: a lazy import still needs its package installed.
    """
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "visage":
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _core_distributions() -> set[str]:
    """The distributions ``pip install visage`` brings: its requirements outside any extra, and theirs, recursively."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = ["visage"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a platform's own requirement)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return seen


def _distributions_of(module: str, top_levels: dict[str, list[str]]) -> set[str]:
    """The installed distributions that provide top-level ``module`` (none when it is not installed)."""
    if module in top_levels:
        return {_canonical(d) for d in top_levels[module]}
    # That map reads top_level.txt where there is one, and some are wrong (dlib-bin's names only _dlib_pybind11).
    return {_canonical(dist.metadata["Name"]) for dist in metadata.distributions()
            if any(f.parts[0].split(".")[0] == module for f in dist.files or ())}


def _not_from_the_core(paths) -> dict[str, set[str]]:
    core = _core_distributions()
    top_levels = metadata.packages_distributions()
    return {module: users for module, users in _third_party_imports(paths).items()
            if not _distributions_of(module, top_levels) & core}


@pytest.mark.slow
def test_every_module_the_package_imports_comes_from_a_core_dependency_or_an_extra():
    """A module that neither a core requirement nor an extra provides would fail for whoever installs the wheel."""
    outside = {m: users for m, users in _not_from_the_core(PACKAGE.rglob("*.py")).items() if m not in EXTRA_OF_MODULE}
    assert not outside, f"imported, but no core requirement provides it (pyproject.toml) nor an extra (extras.py): {outside}"


@pytest.mark.slow
def test_style_and_train_need_only_the_core():
    """Why there is no visage[style] nor visage[train]: they import nothing an extra installs."""
    paths = [*(PACKAGE / "style").rglob("*.py"), *(PACKAGE / "train").rglob("*.py"),
             PACKAGE / "cli" / "style.py", PACKAGE / "cli" / "train.py"]
    assert not _not_from_the_core(paths)
    # And what they import at run time, through the rest of visage, loads no extra either.
    code = BLOCK_EXTRAS + (
        "import importlib, pkgutil, visage.style, visage.train\n"
        "for package in (visage.style, visage.train):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "import visage.cli.style, visage.cli.train\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def test_the_package_data_is_installed_and_reads():
    """The files the code reads with importlib.resources are where it looks (in the wheel as in the checkout)."""
    from visage.evaluation.verification import shipped_calibrations
    from visage.liveness import cues, passive

    assert shipped_calibrations()
    assert cues.load_model() is not None and passive.load_model() is not None
    static = resources.files("visage") / "server" / "static"  # not visage.server: that imports the server extra
    for name in ("index.html", "app.js", "style.css"):
        assert (static / name).is_file(), name
