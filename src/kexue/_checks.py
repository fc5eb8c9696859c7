"""Argument checks shared by every module: one wording per error, named after the
argument.

Every public function of ``kexue`` validates its arguments at the boundary with these,
so a wrong input fails with a ``TypeError`` (wrong kind of thing) or a ``ValueError``
(right kind, wrong value: rank, shape, range, device) that names the argument and what
was expected, instead of failing deep inside torch or returning a wrong answer.
"""

from __future__ import annotations

import math
from typing import Literal, TypeGuard, TypeVar

import torch
from torch import Tensor

Kind = Literal["floating", "real", "integer", "any"]

_HALF = (torch.float16, torch.bfloat16)

_Option = TypeVar("_Option", bound=str)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: object, name: str) -> int:
    """``value`` as an int ≥ 1 (bools are not ints here)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def nonnegative_int(value: object, name: str) -> int:
    """``value`` as an int ≥ 0."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return int(value)


def real(
    value: object,
    name: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a float (int or float, not bool or tensor), optionally > 0, ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def choice(value: object, name: str, options: tuple[_Option, ...]) -> _Option:
    """``value`` one of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return options[options.index(value)]  # the option itself: typed as its Literal


def flag(value: object, name: str) -> bool:
    """``value`` as a bool (not 0/1, not a tensor)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def float_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """``dtype`` a real floating ``torch.dtype``; None means the default float dtype."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype, got {dtype!r}")
    return dtype


def generator(value: object, name: str = "generator") -> torch.Generator | None:
    """``value`` a ``torch.Generator`` or None."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {type(value).__name__}"
        )
    return value


def device(value: object, name: str = "device") -> torch.device:
    """``value`` (a ``torch.device``, a string such as ``"cuda:1"`` or an index) as a
    ``torch.device``."""
    if isinstance(value, bool) or not isinstance(value, str | int | torch.device):
        raise TypeError(
            f"{name} must be a torch.device, a device string or an index, "
            f"got {type(value).__name__}"
        )
    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{name}={value!r} is not a torch device (try 'cpu' or 'cuda')"
        ) from err


def tensor(
    x: object,
    name: str,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    kind: Kind = "floating",
) -> Tensor:
    """``x`` as a tensor of the given rank and kind of dtype.

    ``kind``: "floating" (a real floating dtype), "real" (floating or integer, not
    bool or complex), "integer" (an integer dtype, not bool) or "any".
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {_shape(x)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {_shape(x)}"
        )
    complex_or_bool = x.is_complex() or x.dtype == torch.bool
    wrong = {
        "floating": not x.is_floating_point(),
        "real": complex_or_bool,
        "integer": complex_or_bool or x.is_floating_point(),
        "any": False,
    }[kind]
    if wrong:
        wanted = {"floating": "a floating", "real": "a real", "integer": "an integer"}
        raise TypeError(f"{name} must have {wanted[kind]} dtype, got {x.dtype}")
    return x


def same_device(reference: tuple[str, Tensor], **others: Tensor | None) -> None:
    """Every tensor in ``others`` (None skipped) on the device of ``reference``."""
    ref_name, ref = reference
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise ValueError(
                f"{name} is on {t.device} but {ref_name} is on {ref.device}: "
                "move them to one device"
            )


def same_dtype(reference: tuple[str, Tensor], **others: Tensor | None) -> None:
    """Every tensor in ``others`` (None skipped) of the dtype of ``reference``."""
    ref_name, ref = reference
    for name, t in others.items():
        if t is not None and t.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}: "
                "cast them to one dtype"
            )


def qkv(q: object, k: object, v: object, *, min_ndim: int = 2) -> None:
    """Queries ``(..., n, d)``, keys ``(..., m, d)``, values ``(..., m, e)``: floating,
    one dtype and device, equal leading dimensions."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        tensor(t, name, min_ndim=min_ndim)
    assert isinstance(q, Tensor) and isinstance(k, Tensor) and isinstance(v, Tensor)
    same_device(("q", q), k=k, v=v)
    same_dtype(("q", q), k=k, v=v)
    if not q.dim() == k.dim() == v.dim():
        raise ValueError(
            f"q, k and v must have the same rank, got shapes {_shape(q)}, "
            f"{_shape(k)}, {_shape(v)}"
        )
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            "q (..., n, d), k (..., m, d) and v (..., m, e) must share their leading "
            f"dimensions and k, v their length, got {_shape(q)}, {_shape(k)}, "
            f"{_shape(v)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension, got {_shape(q)}, {_shape(k)}"
        )


def broadcasts(
    t: Tensor, target: tuple[int, ...], name: str, what: str, *, leading: bool = False
) -> None:
    """``t`` broadcasts to the shape ``target`` without growing it (``leading``: it may
    also add leading dimensions); else a ValueError naming ``name`` and ``what``."""
    try:
        shape = torch.broadcast_shapes(t.shape, target)
    except RuntimeError:
        shape = None
    if shape is not None and leading:
        shape = shape[len(shape) - len(target) :]
    if shape != torch.Size(target):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} must broadcast to {what} = "
            f"{tuple(target)}"
        )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to compute in: float32 for half precision (whose range overflows in
    sums of exponentials and products), the dtype itself otherwise."""
    return torch.float32 if dtype in _HALF else dtype


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)
