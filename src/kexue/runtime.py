"""Device choice and seeding: the two helpers every chapter and test starts with."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from kexue import _checks

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
        TypeError: ``preferred`` is not a string, ``torch.device`` or index.
        ValueError: the requested device string is not a valid torch device.
        RuntimeError: a CUDA device was requested explicitly but CUDA (or that device
            index) is not available.
    """
    if preferred is not None:
        device = _checks.device(preferred, "preferred")
    elif os.environ.get(DEVICE_ENV_VAR):
        device = _checks.device(os.environ[DEVICE_ENV_VAR], DEVICE_ENV_VAR)
    else:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(device)!r} was requested but CUDA is not available here"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {str(device)!r} was requested but there are only "
            f"{torch.cuda.device_count()} CUDA devices"
        )
    return device


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all CUDA).

    Returns a fresh ``torch.Generator`` (CPU) seeded with ``seed``, for code that
    prefers an explicit generator to the global state. With ``deterministic=True`` torch
    is also asked to use deterministic algorithms, which matters for some CUDA kernels
    (at a cost in speed): ``torch.use_deterministic_algorithms(True)``, cuDNN's
    ``deterministic`` on and ``benchmark`` off, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    if it is unset (read when cuBLAS starts). A later call without it restores the
    settings it found, so determinism never leaks from one experiment into the next.

    Raises:
        TypeError: ``seed`` is not an integer, or ``deterministic`` not a bool.
        ValueError: ``seed`` is negative or does not fit in 32 bits (NumPy's limit).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    if not isinstance(deterministic, bool):
        raise TypeError(
            f"deterministic must be a bool, got {type(deterministic).__name__}"
        )
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeding the legacy global state is the point here
    torch.manual_seed(seed)  # also seeds every CUDA device
    _set_deterministic(deterministic)
    return torch.Generator().manual_seed(seed)


_CUBLAS_ENV_VAR = "CUBLAS_WORKSPACE_CONFIG"
#: The settings found by the first ``deterministic=True`` call, until they are restored.
_saved_settings: list[tuple[bool, bool, bool, bool, str | None]] = []


def _set_deterministic(on: bool) -> None:
    """Deterministic mode on (saving what it changes), or restore what was saved."""
    if on:
        if not _saved_settings:
            _saved_settings.append(
                (
                    torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled(),
                    torch.backends.cudnn.deterministic,
                    torch.backends.cudnn.benchmark,
                    os.environ.get(_CUBLAS_ENV_VAR),
                )
            )
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault(_CUBLAS_ENV_VAR, ":4096:8")
    elif _saved_settings:
        algorithms, warn_only, cudnn_deterministic, benchmark, cublas = (
            _saved_settings.pop()
        )
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.backends.cudnn.benchmark = benchmark
        if cublas is None:
            os.environ.pop(_CUBLAS_ENV_VAR, None)
        else:
            os.environ[_CUBLAS_ENV_VAR] = cublas
