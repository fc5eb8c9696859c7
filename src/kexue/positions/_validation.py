"""Argument checks shared by the position-encoding modules (one wording per error)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_dim_and_base(dim: int, base: float) -> None:
    """``dim`` a positive even int (sin/cos or rotation pairs), ``base`` finite, > 1."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if dim <= 0 or dim % 2:
        raise ValueError(
            f"dim must be a positive even number (sin/cos pairs), got {dim}"
        )
    if (
        isinstance(base, bool)
        or not isinstance(base, int | float)
        or not math.isfinite(base)
        or base <= 1
    ):
        raise ValueError(f"base must be a finite number greater than 1, got {base!r}")


def check_initial_length(initial_length: int) -> None:
    """A table's initial length: a positive int (the table grows past it on demand)."""
    if (
        isinstance(initial_length, bool)
        or not isinstance(initial_length, int)
        or initial_length < 1
    ):
        raise ValueError(
            f"initial_length must be a positive int, got {initial_length!r}"
        )


def as_positions(positions: object, name: str = "positions") -> Tensor:
    """``positions`` as an integer or real tensor (lists and numbers are converted)."""
    if not isinstance(positions, Tensor):
        try:
            positions = torch.as_tensor(positions)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name} must be a tensor of numbers, got {type(positions).__name__}"
            ) from err
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"{name} must be integer or real, got dtype {positions.dtype}")
    return positions


def output_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """``dtype``, or the default float dtype when None; it must be floating."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    return dtype
