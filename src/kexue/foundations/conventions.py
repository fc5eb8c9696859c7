"""The worked example of the chapter "How the chapters work": the geometric series.

``geometric_sum(r, n)`` evaluates S_n(r) = 1 + r + ... + r^(n-1) = (1 - r^n) / (1 - r).
The textbook closed form loses most of its digits when r is close to 1, because 1 - r^n
cancels; the chapter derives how many, and this module evaluates the same quantity
without the cancellation. ``geometric_sum_exact`` and ``amplification`` are the
chapter's 50-digit references (mpmath), and ``ulps`` measures an error against them.
"""

from __future__ import annotations

import mpmath
import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "amplification",
    "geometric_sum",
    "geometric_sum_exact",
    "geometric_sum_naive",
    "ulps",
]


def geometric_sum(ratio: Tensor, n: Tensor | int) -> Tensor:
    r"""Finite geometric series :math:`S_n(r) = \sum_{k<n} r^k`, accurate for every r.

    Evaluated as :math:`(1 - r^n) / (1 - r)`. Where :math:`r^n` is close to 1 the
    numerator is taken from ``expm1`` of :math:`n \log |r|` (``log1p`` of
    :math:`|r| - 1`), so no digits cancel near :math:`r = \pm 1`; :math:`1 - r` itself
    is exact in floating point there. Overflows to ``inf`` where :math:`r^n` does. At
    :math:`r = 1` exactly the value is :math:`n` and the gradient is the derived
    :math:`n(n-1)/2`. Half-precision inputs are computed in float32 and rounded once.

    Args:
        ratio: real floating tensor of any shape (float16, bfloat16, float32, float64),
            any device.
        n: number of terms, a non-negative integer or an integer tensor that broadcasts
            with ``ratio`` (on the same device).

    Returns:
        Tensor of shape ``broadcast(ratio.shape, n.shape)`` with the dtype and device
        of ``ratio``.

    Raises:
        TypeError: ``ratio`` is not a floating tensor, or ``n`` is not integer-valued.
        ValueError: ``n`` has a negative entry, is on another device than ``ratio``
            or does not broadcast with it.
    """
    ratio, n = _check(ratio, n)
    out_dtype = ratio.dtype
    # float16/bfloat16 log1p/expm1 lose digits of their own: work in float32.
    ratio = ratio.to(torch.promote_types(ratio.dtype, torch.float32))
    ratio, n = _broadcast_pair(ratio, n)
    count = n.to(ratio.dtype)
    # n log|r|, with log|r| from log1p so that it keeps its digits when |r| is near 1.
    # When |r| - 1 rounds to -1 (r = 0 or tiny), log1p would give -inf, and
    # 0 * -inf = NaN for n = 0 (and NaN gradients); those r are sent to log 1 = 0 here
    # and evaluated by pow below.
    abs_minus_one = ratio.abs() - 1
    tiny = abs_minus_one == -1
    exponent = count * torch.log1p(torch.where(tiny, 0.0, abs_minus_one))
    # Where |n log|r|| < 1, r^n is within a factor e of 1 and 1 - r^n cancels: take
    # it from expm1. Elsewhere nothing cancels, and pow (rounded once) is more accurate
    # than exp(n log|r|), whose error grows with |n log|r||. The empty sum (n = 0) has
    # exponent 0 and goes by expm1.
    use_expm1 = ((exponent.abs() < 1) & ~tiny) | (n == 0)
    power_minus_one = torch.expm1(exponent)  # |r|^n - 1
    flips_sign = (ratio < 0) & (n % 2 == 1)  # r^n = -|r|^n: 1 - r^n = 2 + (|r|^n - 1)
    from_expm1 = torch.where(flips_sign, 2 + power_minus_one, -power_minus_one)
    # pow gets a harmless base where its value is discarded (0 ** 0 has a NaN gradient).
    from_pow = 1 - torch.where(use_expm1, 0.5, ratio) ** count
    numerator = torch.where(use_expm1, from_expm1, from_pow)
    one_minus_ratio = 1 - ratio
    at_one = one_minus_ratio == 0
    # No 0/0 even where the result is discarded: NaN would leak into gradients.
    quotient = numerator / torch.where(
        at_one, torch.ones_like(one_minus_ratio), one_minus_ratio
    )
    # At r = 1, the first two Taylor terms n + n(n-1)/2 (r - 1): exact value and slope.
    taylor = count + count * (count - 1) / 2 * (ratio - 1)
    return torch.where(at_one, taylor, quotient).to(out_dtype)


def geometric_sum_naive(ratio: Tensor, n: Tensor | int) -> Tensor:
    """The textbook closed form ``(1 - r**n) / (1 - r)``, to show what goes wrong.

    Same arguments and errors as :func:`geometric_sum`, evaluated as written, in the
    dtype of ``ratio``: NaN at r = 1 (0/0 there).
    """
    _check(ratio, n)
    return (1 - ratio**n) / (1 - ratio)


def geometric_sum_exact(ratio: Tensor, n: Tensor | int, *, digits: int = 50) -> Tensor:
    """S_n(r) for the floating-point ``ratio`` as given, to ``digits`` digits (mpmath).

    Each ratio is taken exactly (its binary value), the closed form is evaluated in
    ``digits``-digit arithmetic (``n`` at r = 1) and rounded once to float64.

    Returns:
        float64 tensor of shape ``broadcast(ratio.shape, n.shape)`` on ``ratio``'s
        device (an empty ``meta`` tensor for ``meta`` inputs, which hold no values).

    Raises:
        TypeError: as :func:`geometric_sum`, or ``digits`` is not an int.
        ValueError: as :func:`geometric_sum`, or ``digits`` is below 17.
    """
    ratio, n = _check(ratio, n, digits)
    ratio, n = _broadcast_pair(ratio, n)
    if ratio.device.type == "meta":
        return torch.empty(ratio.shape, dtype=torch.float64, device=ratio.device)
    with mpmath.workdps(digits):
        values = [
            float(m)
            if q == 1
            else float((1 - mpmath.mpf(q) ** m) / (1 - mpmath.mpf(q)))
            for q, m in _pairs(ratio, n)
        ]
    out = torch.tensor(values, dtype=torch.float64)
    return out.reshape(ratio.shape).to(ratio.device)


def amplification(ratio: Tensor, n: Tensor | int, *, digits: int = 50) -> Tensor:
    r"""The textbook formula's error amplification :math:`\kappa = |r^n / (1 - r^n)|`.

    Evaluated in ``digits``-digit arithmetic for the ratios as given; ``inf`` where
    :math:`r^n = 1` (r = 1, or r = -1 with n even). Returns float64 like
    :func:`geometric_sum_exact`, and raises the same errors.
    """
    ratio, n = _check(ratio, n, digits)
    ratio, n = _broadcast_pair(ratio, n)
    if ratio.device.type == "meta":
        return torch.empty(ratio.shape, dtype=torch.float64, device=ratio.device)
    with mpmath.workdps(digits):
        powers = [mpmath.mpf(q) ** m for q, m in _pairs(ratio, n)]
        values = [float(abs(p / (1 - p))) if p != 1 else float("inf") for p in powers]
    out = torch.tensor(values, dtype=torch.float64)
    return out.reshape(ratio.shape).to(ratio.device)


def ulps(computed: Tensor, exact: Tensor) -> Tensor:
    r"""Relative error of ``computed`` in units of its dtype's machine epsilon.

    :math:`|\tilde S - S| / (|S|\,\varepsilon)`, in float64; 0 where both are 0, and
    ``inf`` where only ``exact`` is. ``exact`` (float64, on ``computed``'s device) is
    broadcast with ``computed``.

    Raises:
        TypeError: either argument is not a floating tensor.
        ValueError: they are on different devices or do not broadcast.
    """
    _check_errors(computed, exact)
    eps = torch.finfo(computed.dtype).eps
    error = (computed.to(torch.float64) - exact).abs()
    return torch.where(error == 0, 0.0, error / exact.abs() / eps)


def _broadcast_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.broadcast_tensors`` of two tensors (torch leaves its result untyped)."""
    a, b = torch.broadcast_tensors(a, b)
    return a, b


def _check(ratio: Tensor, n: Tensor | int, digits: int = 17) -> tuple[Tensor, Tensor]:
    """Validate the arguments of the sums; return ``n`` as a tensor beside ``ratio``."""
    if _checks.positive_int(digits, "digits") < 17:
        raise ValueError(f"digits must be an int of at least 17, got {digits!r}")
    if not isinstance(ratio, Tensor) or not ratio.is_floating_point():
        raise TypeError(
            f"ratio must be a real floating-point tensor, got {_describe(ratio)}"
        )
    if isinstance(n, bool) or not isinstance(n, int | Tensor):
        raise TypeError(f"n must be an int or an integer tensor, got {_describe(n)}")
    if isinstance(n, int):
        n = _checks.nonnegative_int(n, "n")
        if n >= 2**63:
            raise ValueError(f"n must be below 2**63, got {n}")
    elif n.device != ratio.device:
        raise ValueError(
            f"n is on {n.device} but ratio is on {ratio.device}; move one of them"
        )
    n = torch.as_tensor(n, device=ratio.device)
    if n.is_floating_point() or n.is_complex() or n.dtype == torch.bool:
        raise TypeError(f"n must be integer-valued, got dtype {n.dtype}")
    if n.device.type != "meta" and bool((n < 0).any()):
        raise ValueError("n must be non-negative (it counts the terms of the sum)")
    _broadcast(("ratio", ratio), ("n", n))
    return ratio, n


def _check_errors(computed: Tensor, exact: Tensor) -> None:
    """Validate the arguments of :func:`ulps`."""
    for name, value in (("computed", computed), ("exact", exact)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {_describe(value)}")
    _checks.same_device(("computed", computed), exact=exact)
    _broadcast(("computed", computed), ("exact", exact))


def _broadcast(first: tuple[str, Tensor], second: tuple[str, Tensor]) -> None:
    """The shapes of two named tensors broadcast, else a ValueError naming both."""
    try:
        torch.broadcast_shapes(first[1].shape, second[1].shape)
    except RuntimeError as err:
        raise ValueError(
            f"{first[0]} of shape {tuple(first[1].shape)} and {second[0]} of shape "
            f"{tuple(second[1].shape)} do not broadcast"
        ) from err


def _pairs(ratio: Tensor, n: Tensor) -> list[tuple[float, int]]:
    """The (ratio, n) pairs of two broadcast tensors, as exact Python numbers."""
    return list(
        zip(ratio.double().flatten().tolist(), n.flatten().tolist(), strict=True)
    )


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__
