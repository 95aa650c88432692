"""Shared fixtures: the real data directory (skip only when none is reachable) and seeding."""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory with tinyshakespeare/, sst2/ and ag_news/ (PTLEARN_DATA_DIR, else ../shared/data)."""
    env = os.environ.get("PTLEARN_DATA_DIR")
    for candidate in [Path(env)] if env else [SHARED_DATA]:
        if (candidate / "tinyshakespeare" / "input.txt").is_file():
            os.environ["PTLEARN_DATA_DIR"] = str(candidate)
            return candidate
    pytest.skip(
        "No real data directory is reachable: set PTLEARN_DATA_DIR to a folder with the "
        "DESIGN.md layout (tinyshakespeare/, sst2/, ag_news/) to run this test."
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
