"""Fixtures shared by the test modules (plain helpers live in support.py).

``shared_data``: the real data beside the repository (``../shared/data``: the DiffusionDB 1k
metadata sample, 5k prompts, the 20k match log, the 100 cached prompts). A test that needs it
takes this fixture; when the directory is absent the test is skipped, the one rule for all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data directory is not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one thread for a module's tests (two xdist workers share two cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
