"""Shared fixtures: the dev set in ../shared/data (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISAGE_DEV_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The dev set folder; skips the test with a reason when it is missing."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"dev set not found at {SHARED_DATA} (it ships beside the repo, not in it)")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: on a small shared machine more threads only fight each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
