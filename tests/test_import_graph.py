"""The package's import graph has no cycles: each stage imports only the stages before it.

Every ``import`` in ``src/visage`` counts, the ones inside functions too: a lazy import hides a
cycle from Python, not from the next person to change the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import visage

PACKAGE_ROOT = Path(visage.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (type hints only, never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """Module → the visage modules it imports (a name imported from a package counts as its submodule)."""
    files = {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in files]
                targets = subs or [base]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.slow
def test_the_graph_is_read():
    graph = import_graph()
    assert {"visage.pipeline", "visage.liveness"} <= graph["visage.api"]  # a lazy import counts too
    assert "visage.faces.detect" in graph["visage.pipeline"]
    assert "visage.errors" in graph["visage.faces.detect"]


def test_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


@pytest.mark.slow
def test_the_face_pipeline_never_imports_the_optional_stacks(shared_data):
    """``import visage`` and a ``verify`` call load neither the server, Milvus, plotting nor TensorBoard."""
    import subprocess
    import sys

    faces = shared_data / "faces" / "facerec__obama"
    code = (
        "import sys, visage\n"
        f"visage.verify({str(faces / 'obama.jpg')!r}, {str(faces / 'obama2.jpg')!r})\n"
        "print(' '.join(m for m in ('fastapi', 'uvicorn', 'pymilvus', 'milvus_lite', 'matplotlib', 'tensorboard',"
        " 'tensorflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
