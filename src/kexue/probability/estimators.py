"""Biased and unbiased estimators, after Su Jianlin's kexue.fm/archives/6747.

The sample variance with ``1/n`` is biased by the factor ``(n - 1)/n``; the reason is
that variance, ``E[x^2] - E[x]^2``, is nonlinear in the expectation. The same reason
makes the sample standard deviation biased even with ``1/(n - 1)`` (corrected by
``c4(n)`` for Gaussian data) and any smooth ``g(mean)`` biased at order ``1/n`` (removed
by the jackknife).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import sympy as sp
import torch
from torch import Tensor

from kexue import _checks

# c4(n) = 1 + sum_k C4_SERIES[k] / (n - 1)^k: the expansion of
# sqrt(2/m) Gamma((m+1)/2) / Gamma(m/2) in 1/m, m = n - 1 (checked against mpmath to
# 1e-15 at n = 100; the next term is about 0.15 / m^7). Above C4_SERIES_FROM the
# lgamma difference loses digits (relative error ~ 1e-16 n log n) and the series wins.
C4_SERIES = (-1 / 4, 1 / 32, 5 / 128, -21 / 2048, -399 / 8192, 869 / 65536)
C4_SERIES_FROM = 100


def variance(
    x: Tensor, dim: int = -1, *, correction: int = 1, keepdim: bool = False
) -> Tensor:
    """Sample variance ``sum (x - mean)^2 / (n - correction)`` along ``dim``, two-pass.

    Agrees with ``torch.var(x, dim, correction=correction)``; the mean is removed before
    squaring, so a large common offset does not cancel digits (the one-pass
    ``E[x^2] - E[x]^2`` would). Half precision is computed in float32 (the sum of
    squares overflows float16 long before the variance does) and returned in the input
    dtype.

    Args:
        x: floating tensor of at least one dimension; ``dim`` holds the ``n`` samples,
            the other dimensions are a batch (possibly empty).
        dim: the sample axis.
        correction: a non-negative int (1: unbiased, 0: the ``1/n`` estimate).
        keepdim: keep ``dim`` with size 1.

    Returns:
        Tensor of the shape of ``x`` without ``dim`` (or with size 1 there), dtype of
        ``x``.

    Raises:
        TypeError: ``x`` is not a floating tensor; ``dim`` or ``correction`` not an int.
        ValueError: ``x`` is 0-d, ``dim`` is out of range, or ``n - correction <= 0``
            (e.g. ``n = 1`` with the unbiased correction).
    """
    x = _checks.tensor(x, "x", min_ndim=1)
    dim = _sample_dim(x, dim)
    correction = _checks.nonnegative_int(correction, "correction")
    n = x.shape[dim]
    if n - correction <= 0:
        raise ValueError(
            f"x needs more than correction={correction} samples along dim {dim}, "
            f"got {n}"
        )
    return _variance(x, dim, correction, keepdim).to(x.dtype)


def _variance(x: Tensor, dim: int, correction: int, keepdim: bool) -> Tensor:
    """The two-pass variance in at least float32, returned in float32 or wider."""
    x = x.to(_checks.compute_dtype(x.dtype))
    centred = x - x.mean(dim, keepdim=True)
    return centred.pow(2).sum(dim, keepdim=keepdim) / (x.shape[dim] - correction)


def _sample_dim(x: Tensor, dim: object) -> int:
    """``dim`` as an int in ``[-x.dim(), x.dim())``."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim {dim} is out of range for x of shape {tuple(x.shape)}")
    return dim


def c4(n: Tensor | int) -> Tensor:
    """``E[s] / sigma`` for ``n`` Gaussian samples.

    ``c4(n) = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2)``, computed through ``lgamma``
    for ``n < 100`` and by its asymptotic series
    ``1 - 1/(4m) + 1/(32m^2) + 5/(128m^3) - ...`` in ``m = n - 1`` above (the lgamma
    difference loses digits there), so ``c4 < 1`` and relative error about ``1e-14``
    for every ``n`` (``c4`` rounds to 1 only past ``n ~ 1e15``).

    Args:
        n: an int, or a tensor of an integer dtype, any shape and device.

    Returns:
        A float64 tensor of the shape (and on the device) of ``n``.

    Raises:
        TypeError: ``n`` is not an int or an integer tensor (bools and floats too).
        ValueError: some ``n < 2`` (``s`` needs two samples).
    """
    if isinstance(n, Tensor):
        _checks.tensor(n, "n", kind="integer")
        if n.device.type != "meta" and bool((n < 2).any()):
            raise ValueError(
                f"c4(n) needs every n >= 2, got a minimum of {int(n.min())}"
            )
        m = n.to(torch.float64) - 1
    else:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int or an integer tensor, got {type(n)}")
        if n < 2:
            raise ValueError(f"c4(n) needs n >= 2, got {n}")
        m = torch.tensor(float(n) - 1, dtype=torch.float64)
    small = m.clamp(max=C4_SERIES_FROM)  # keeps lgamma away from huge arguments
    exact = torch.sqrt(2 / small) * torch.exp(
        torch.lgamma((small + 1) / 2) - torch.lgamma(small / 2)
    )
    inverse = 1 / m.clamp(min=C4_SERIES_FROM - 1)
    series = torch.zeros_like(m)
    for coefficient in reversed(C4_SERIES):  # Horner in 1/m
        series = (series + coefficient) * inverse
    return torch.where(m + 1 < C4_SERIES_FROM, exact, 1 + series)


def unbiased_std(x: Tensor, dim: int = -1, *, keepdim: bool = False) -> Tensor:
    """``s / c4(n)``: an unbiased estimate of sigma for Gaussian samples on ``dim``.

    ``x``: floating, at least 1-D, ``n >= 2`` samples on ``dim``; returns the shape of
    ``x`` without ``dim`` (kept with ``keepdim``) in the dtype of ``x`` (half precision
    computed in float32).

    Raises:
        TypeError: ``x`` not a floating tensor, ``dim`` not an int.
        ValueError: ``x`` is 0-d, ``dim`` out of range, fewer than 2 samples.
    """
    x = _checks.tensor(x, "x", min_ndim=1)
    dim = _sample_dim(x, dim)
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"x needs at least 2 samples along dim {dim}, got {n}")
    s = _variance(x, dim, 1, keepdim).sqrt()
    return (s / c4(n).to(s.dtype)).to(x.dtype)


def jackknife(
    statistic: Callable[..., Tensor],
    x: Tensor,
    dim: int = -1,
    *,
    vectorize: bool = True,
) -> tuple[Tensor, Tensor]:
    """Jackknife bias correction and standard error of ``statistic`` along ``dim``.

    With ``theta = statistic(x)`` and ``theta_i`` the statistic of the sample without
    ``x_i``, returns ``n * theta - (n - 1) * mean_i theta_i`` and
    ``sqrt((n - 1)/n * sum_i (theta_i - mean theta_i)^2)``. If the estimator's bias is
    ``a/n + O(1/n^2)``, the corrected estimate's bias is ``O(1/n^2)``.

    Args:
        statistic: called as ``statistic(t, dim=-1)``; must reduce the last axis of
            ``t`` and return a tensor.
        x: floating samples, at least 1-D; ``dim`` holds the ``n >= 2`` samples, the
            rest is a batch (possibly empty). Memory is ``O(n^2)`` per batch element.
        dim: the sample axis.
        vectorize: True: the statistic gets all ``n`` leave-one-out samples at once as
            an extra axis (``(..., n, n - 1)``, no Python loop); False: it is mapped
            over them with ``torch.func.vmap``, for statistics written for one sample
            vector.

    Returns:
        Two tensors of the shape of ``x`` without ``dim``, in the statistic's dtype;
        the combination of the ``theta_i`` is computed in float32 for half precision
        (``n * theta`` overflows float16).

    Raises:
        TypeError: ``statistic`` not callable or not returning a tensor; ``x`` not a
            floating tensor; ``dim`` not an int.
        ValueError: ``x`` 0-d, ``dim`` out of range, fewer than 2 samples, or the
            statistic does not reduce the last axis.
    """
    if not callable(statistic):
        raise TypeError(f"statistic must be callable, got {type(statistic).__name__}")
    x = _checks.tensor(x, "x", min_ndim=1)
    x = x.movedim(_sample_dim(x, dim), -1)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"x needs at least 2 samples for the jackknife, got {n}")
    # row i: all indices but i, i.e. j + (j >= i) for j < n - 1 (no data-dependent
    # boolean indexing, so meta tensors work)
    j = torch.arange(n - 1, device=x.device)
    others = j + (j >= torch.arange(n, device=x.device)[:, None])
    leave_one_out = x[..., others]  # (..., n, n - 1)
    full = _reduced(statistic(x, dim=-1), x.shape[:-1])
    if vectorize:
        partial = statistic(leave_one_out, dim=-1)
    else:
        partial = torch.func.vmap(
            lambda t: statistic(t, dim=-1), in_dims=-2, out_dims=-1
        )(leave_one_out)
    partial = _reduced(partial, leave_one_out.shape[:-1])
    out_dtype = partial.dtype
    compute = _checks.compute_dtype(out_dtype)
    full, partial = full.to(compute), partial.to(compute)
    mean_partial = partial.mean(-1)
    corrected = n * full - (n - 1) * mean_partial
    spread = (partial - mean_partial.unsqueeze(-1)).pow(2).sum(-1)
    error = torch.sqrt((n - 1) / n * spread)
    return corrected.to(out_dtype), error.to(out_dtype)


def _reduced(value: object, shape: torch.Size) -> Tensor:
    """The statistic's output, checked to be a tensor of the reduced ``shape``."""
    if not isinstance(value, Tensor):
        raise TypeError(f"statistic must return a tensor, got {type(value).__name__}")
    if value.shape != shape:
        raise ValueError(
            "statistic must reduce the last axis: expected shape "
            f"{tuple(shape)}, got {tuple(value.shape)}"
        )
    return value


def expectation_iid(
    expr: sp.Expr, samples: Sequence[sp.Symbol], mean: sp.Expr, var: sp.Expr
) -> sp.Expr:
    """``E[expr]`` for a polynomial in independent, identically distributed ``samples``.

    Each monomial ``prod_i x_i^(a_i)`` becomes ``prod_i E[x^(a_i)]`` (independence),
    with ``E[x] = mean``, ``E[x^2] = var + mean^2`` and ``E[x^k] = m_k`` (a symbol) for
    ``k >= 3``. ``samples`` may be empty (``expr`` is then a constant).

    Raises:
        TypeError: ``expr``, ``mean`` or ``var`` not a SymPy expression (numbers are
            sympified), ``samples`` not a sequence of symbols.
        ValueError: ``expr`` is not a polynomial in ``samples``.
    """
    expr, mean, var = (
        _sympy_expr(v, name)
        for v, name in ((expr, "expr"), (mean, "mean"), (var, "var"))
    )
    if not isinstance(samples, list | tuple) or not all(
        isinstance(v, sp.Symbol) for v in samples
    ):
        raise TypeError(
            f"samples must be a list or tuple of sympy Symbols, got {samples!r}"
        )
    expanded = sp.expand(expr)
    if not samples:  # a constant as far as the samples go
        return expanded
    if not expanded.is_polynomial(*samples):
        raise ValueError(f"expr must be a polynomial in samples, got {expr}")
    moments = {0: sp.Integer(1), 1: mean, 2: var + mean**2}
    total = sp.Integer(0)
    for powers, coefficient in sp.Poly(expanded, *samples).terms():
        term = coefficient
        for power in powers:
            term *= moments.get(power, sp.Symbol(f"m{power}"))
        total += term
    return sp.expand(total)


def _sympy_expr(value: object, name: str) -> sp.Expr:
    if isinstance(value, bool) or not isinstance(value, sp.Expr | int | float):
        raise TypeError(
            f"{name} must be a sympy expression or a number, got {type(value).__name__}"
        )
    return sp.sympify(value)


def mean_and_error(estimates: Tensor) -> tuple[float, float]:
    """The Monte Carlo mean of a 1-D tensor of estimates and its standard error.

    The standard error is the sample standard deviation over ``sqrt(len(estimates))``,
    computed in float32 at least (half precision overflows in the sum of squares).

    Raises:
        TypeError: ``estimates`` is not a floating tensor.
        ValueError: not 1-D, fewer than 2 estimates, or on the ``meta`` device (the
            results are Python floats).
    """
    estimates = _checks.tensor(estimates, "estimates", ndim=1)
    if len(estimates) < 2:
        raise ValueError(f"estimates needs at least 2 entries, got {len(estimates)}")
    if estimates.device.type == "meta":
        raise ValueError("estimates is on the meta device: its values are needed")
    wide = estimates.to(_checks.compute_dtype(estimates.dtype))
    error = _variance(wide, -1, 1, False).sqrt() / math.sqrt(len(wide))
    return wide.mean().item(), error.item()


def log_variance_bias(n: int) -> float:
    """``E[log s^2] - log sigma^2`` for ``n`` Gaussian samples (``s^2`` with ``n - 1``).

    ``(n - 1) s^2 / sigma^2`` is chi-squared with ``k = n - 1`` degrees of
    freedom, whose log has mean ``psi(k/2) + log 2``; so the bias is
    ``psi(k/2) - log(k/2)``, which is ``-1/k + O(1/k^2)``. For ``k/2 >= 50`` the
    difference is taken from the asymptotic series
    ``-1/(2x) - 1/(12x^2) + 1/(120x^4) - 1/(252x^6) + 1/(240x^8)`` (the two terms
    nearly cancel and lose digits), so the relative error stays below ``1e-13``.

    Raises:
        TypeError: ``n`` is not an int (bools too).
        ValueError: ``n < 2``.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    half = (n - 1) / 2
    if half >= 50:
        inv2 = 1 / (half * half)
        tail = inv2 * (1 / 120 + inv2 * (-1 / 252 + inv2 / 240))
        return -0.5 / half + inv2 * (-1 / 12 + tail)
    x = torch.tensor(half, dtype=torch.float64)
    return (torch.special.digamma(x) - torch.log(x)).item()


__all__ = [
    "c4",
    "expectation_iid",
    "jackknife",
    "log_variance_bias",
    "mean_and_error",
    "unbiased_std",
    "variance",
]
