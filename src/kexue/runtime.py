"""Device choice and seeding: the two helpers every chapter and test starts with."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = [
    "get_device",
    "seed_everything",
]

#: Environment variable that overrides :func:`get_device` (e.g. ``cpu`` or ``cuda:1``).
DEVICE_ENV_VAR = "KEXUE_DEVICE"


def get_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return the device a chapter should compute on.

    The choice, in order: ``preferred`` if given; else the ``KEXUE_DEVICE`` environment
    variable; else the first CUDA device when one is available; else the CPU. Setting
    ``KEXUE_DEVICE=cpu`` makes a GPU machine reproduce the CPU numbers the book was
    built with.

    Raises:
        ValueError: the requested device string is not a valid torch device.
        RuntimeError: a CUDA device was requested explicitly but CUDA is not available.
    """
    requested = (
        preferred if preferred is not None else os.environ.get(DEVICE_ENV_VAR) or None
    )
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as err:
        source = "preferred" if preferred is not None else DEVICE_ENV_VAR
        raise ValueError(
            f"{source}={requested!r} is not a torch device (try 'cpu' or 'cuda')"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {requested!r} was requested but CUDA is not available here"
        )
    return device


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all CUDA).

    Returns a fresh ``torch.Generator`` (CPU) seeded with ``seed``, for code that
    prefers an explicit generator to the global state. With ``deterministic=True`` torch
    is also asked to use deterministic algorithms, which matters for some CUDA kernels
    (at a cost in speed).

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is negative or does not fit in 32 bits (NumPy's limit).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeding the legacy global state is the point here
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)
