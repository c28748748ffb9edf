"""The README's Layout section names every module of src/visage, so it cannot drift from the tree."""

from __future__ import annotations

import re
from pathlib import Path

import visage

PACKAGE = Path(visage.__file__).parent
README = PACKAGE.parents[1] / "README.md"
LISTED_AS_A_WHOLE = {"cli", "data"}  # "one module per group of subcommands", "shipped weights"


def layout_entries(text: str) -> dict[str, str]:
    """{top-level name: its description, continuation lines included} from the Layout block."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        entry = re.match(r"^  (\S+?)/?\s{2,}(.*)$", line)
        if entry:
            current = entry.group(1)
            entries[current] = entry.group(2)
        elif current and line.startswith(" " * 5):
            entries[current] += " " + line.strip()
    return entries


def test_the_layout_parser_reads_entries_and_continuations():
    text = "## Layout\n\n```\nsrc/visage/\n  a.py        one\n  pkg/        x.py,\n                 y.py\n```\n"
    assert layout_entries(text) == {"a.py": "one", "pkg": "x.py, y.py"}


def test_every_module_and_package_is_in_the_readme_layout():
    entries = layout_entries(README.read_text())
    tree = {p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p.is_dir() and p.name != "__pycache__")}
    assert tree - entries.keys() == set(), "in the tree but not in the README's Layout"
    assert entries.keys() - tree == set(), "in the README's Layout but not in the tree"
    missing = {package: sorted(m.name for m in (PACKAGE / package).glob("*.py")
                               if m.stem != "__init__" and m.name not in entries[package])
               for package in tree if (PACKAGE / package).is_dir() and package not in LISTED_AS_A_WHOLE}
    assert {k: v for k, v in missing.items() if v} == {}
