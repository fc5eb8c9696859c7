"""Checks specific to the position-encoding modules, built on :mod:`kexue._checks`."""

from __future__ import annotations

import torch
from torch import Tensor

from kexue import _checks

#: Rows a cached RoPE or sinusoidal table may hold by default (2^16 = 65,536 positions:
#: 32 MiB for a RoPE table at dim 128 in float32). Larger positions are computed
#: directly, so one huge position never allocates a table up to it.
MAX_CACHED_LENGTH = 1 << 16


def even_dim(dim: object, name: str = "dim") -> int:
    """``dim`` as a positive even int (sin/cos or rotation pairs)."""
    if isinstance(dim, int) and not isinstance(dim, bool) and (dim <= 0 or dim % 2):
        raise ValueError(f"{name} must be a positive even number (pairs), got {dim}")
    return _checks.positive_int(dim, name)


def check_base(value: object) -> float:
    """``value`` as a finite number greater than 1 (the frequency base)."""
    try:
        number = _checks.real(value, "base")
    except ValueError:  # NaN or inf: one message for every bad value below
        number = float("nan")
    if not number > 1:
        raise ValueError(f"base must be a finite number greater than 1, got {value!r}")
    return number


def dim_and_base(dim: object, base: object) -> tuple[int, float]:
    """:func:`even_dim` and :func:`check_base` together."""
    return even_dim(dim), check_base(base)


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


def has_values(x: Tensor, name: str, needed_for: str) -> None:
    """A ``meta`` tensor carries shapes only: reject it where values are needed."""
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device, which carries no values; {needed_for}"
        )


def token_ids(tokens: object, name: str, vocab: int, weight: Tensor) -> Tensor:
    """Integer ids of shape ``(batch, seq)`` in ``[0, vocab)`` on the device of the
    embedding ``weight`` (the range costs one synchronisation)."""
    tokens = _checks.tensor(tokens, name, ndim=2, kind="integer")
    _checks.same_device(("the model", weight), **{name: tokens})
    if tokens.numel() and tokens.device.type != "meta":
        low, high = torch.aminmax(tokens)
        if int(low) < 0 or int(high) >= vocab:
            raise ValueError(
                f"{name} must lie in [0, {vocab}), got values in "
                f"[{int(low)}, {int(high)}]"
            )
    return tokens
