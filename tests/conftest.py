"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

import kexue

# Property tests draw the same examples on every run (a failure reproduces, and CI cannot fail on
# an example no earlier run saw); no example database is written into the checkout.
settings.register_profile("kexue", derandomize=True, database=None)
settings.load_profile("kexue")

_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Run a test once per device: always on the CPU, and on CUDA whenever CUDA is present."""
    if request.param not in _DEVICES:
        pytest.skip("CUDA is not available on this machine")
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state, so failures reproduce."""
    kexue.seed_everything(0)
