"""Shared pytest fixtures.

Tests may read ``../shared`` (the real GRID clips); the product never does.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# SPEECHANIM_SHARED: where ../shared is when the tests run from a copy of the repo (make mutants runs them in mutants/)
SHARED = Path(os.environ.get("SPEECHANIM_SHARED") or REPO.parent / "shared")
GRID_MINI = SHARED / "data" / "grid-mini"


@pytest.fixture(scope="session")
def grid_mini() -> Path:
    """The eight real GRID clips of ``../shared/data/grid-mini``."""
    if not (GRID_MINI / "bbaf2n.mpg").exists():
        pytest.fail(f"real GRID clips not found at {GRID_MINI}: tests need ../shared beside the repo")
    return GRID_MINI


@pytest.fixture(scope="session")
def grid_mini_clips(grid_mini: Path) -> list[Path]:
    return sorted(grid_mini.glob("*.mpg"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    their models are tiny, and two threads on a busy 2-core machine are far slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
