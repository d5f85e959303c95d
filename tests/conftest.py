"""Fixtures shared by the test modules (plain helpers live in support.py).

``samples``: the real DiffusionDB samples that ship inside acsim (``traces/data``: the 1k metadata
sample and the 5k prompt list); every clone has them.

``external_data``: real data acsim may not ship (the approximate-cache prototype's 20k match log
and its 100 cached prompts; the GenTD26 production trace), read from the directory named by
``ACSIM_TEST_DATA``, by default ``../shared/data`` beside the checkout. A test that takes it must
carry ``@pytest.mark.external_data`` (collection fails otherwise), and is skipped when the
directory is absent: ``pytest -m external_data`` runs just those, ``-m "not external_data"`` the rest.

``alone``: a test that times a real run (a served trace against the simulator's prediction) and
bounds the difference; beside another test on two cores its timings would measure that test. It is
skipped inside pytest-xdist workers; ``make test`` runs the suite with ``-n 2`` and then
``pytest -m alone`` on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from traces.samples import sample_dir

EXTERNAL_DATA = Path(os.environ.get("ACSIM_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MARK = "external_data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if "external_data" in getattr(item, "fixturenames", ()) and item.get_closest_marker(MARK) is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests take external_data without @pytest.mark.{MARK}: {', '.join(unmarked)}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("alone") is not None and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("times a real run: needs the machine to itself (make test runs it after the suite: pytest -m alone)")


@pytest.fixture(scope="session")
def samples() -> Path:
    """The directory of the samples shipped in ``traces/data``."""
    return sample_dir()


@pytest.fixture(scope="session")
def external_data() -> Path:
    """``$ACSIM_TEST_DATA`` (default ``../shared/data``); skips the test when it is not there."""
    if not EXTERNAL_DATA.is_dir():
        pytest.skip(f"external data not found (set ACSIM_TEST_DATA; looked in {EXTERNAL_DATA})")
    return EXTERNAL_DATA


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one thread for a module's tests (two xdist workers share two cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
