"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest
import torch

import kexue

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
