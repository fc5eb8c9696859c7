"""Biased and unbiased estimators, after Su Jianlin's kexue.fm/archives/6747.

The sample variance with ``1/n`` is biased by the factor ``(n - 1)/n``; the reason is
that variance, ``E[x^2] - E[x]^2``, is nonlinear in the expectation. The same reason
makes the sample standard deviation biased even with ``1/(n - 1)`` (corrected by
``c4(n)`` for Gaussian data) and any smooth ``g(mean)`` biased at order ``1/n`` (removed
by the jackknife).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp
import torch
from torch import Tensor


def variance(
    x: Tensor, dim: int = -1, *, correction: int = 1, keepdim: bool = False
) -> Tensor:
    """Sample variance ``sum (x - mean)^2 / (n - correction)`` along ``dim``, two-pass.

    Agrees with ``torch.var(x, dim, correction=correction)``; the mean is removed before
    squaring, so a large common offset does not cancel digits (the one-pass
    ``E[x^2] - E[x]^2`` would).

    Raises:
        TypeError: ``x`` is not floating.
        ValueError: ``n - correction <= 0`` (e.g. ``n = 1`` with the unbiased
            correction).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    n = x.shape[dim]
    if n - correction <= 0:
        raise ValueError(
            f"need more than {correction} samples along dim {dim} for "
            f"correction={correction}, got {n}"
        )
    centred = x - x.mean(dim, keepdim=True)
    return centred.pow(2).sum(dim, keepdim=keepdim) / (n - correction)


def c4(n: Tensor | int) -> Tensor:
    """``E[s] / sigma`` for ``n`` Gaussian samples.

    ``c4(n) = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2)``, computed through ``lgamma``
    (no overflow for large ``n``); ``n`` may be an int or a tensor of ints. Returns a
    float64 tensor of the shape of ``n``.

    Raises:
        ValueError: some ``n < 2`` (``s`` needs two samples).
    """
    n = torch.as_tensor(n, dtype=torch.float64)
    if bool((n < 2).any()):
        raise ValueError("c4(n) needs n >= 2")
    return torch.sqrt(2 / (n - 1)) * torch.exp(
        torch.lgamma(n / 2) - torch.lgamma((n - 1) / 2)
    )


def unbiased_std(x: Tensor, dim: int = -1, *, keepdim: bool = False) -> Tensor:
    """``s / c4(n)``: an unbiased estimate of sigma for Gaussian samples on ``dim``."""
    n = x.shape[dim]
    if n < 2:
        raise ValueError(
            f"unbiased_std needs at least 2 samples along dim {dim}, got {n}"
        )
    s = variance(x, dim, correction=1, keepdim=keepdim).sqrt()
    return s / c4(n).to(s.dtype)


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
            ``t``.
        x: samples, any shape; ``dim`` holds the ``n`` samples.
        dim: the sample axis.
        vectorize: True: the statistic gets all ``n`` leave-one-out samples at once as
            an extra axis (``(..., n, n - 1)``, no Python loop); False: it is mapped
            over them with ``torch.func.vmap``, for statistics written for one sample
            vector.

    Returns:
        Two tensors of the shape of ``x`` without ``dim``.

    Raises:
        ValueError: fewer than 2 samples.
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"the jackknife needs at least 2 samples, got {n}")
    keep = ~torch.eye(n, dtype=torch.bool, device=x.device)
    # row i: all indices but i
    others = torch.arange(n, device=x.device).expand(n, n)[keep].view(n, n - 1)
    leave_one_out = x[..., others]  # (..., n, n - 1)
    full = statistic(x, dim=-1)
    if vectorize:
        partial = statistic(leave_one_out, dim=-1)
    else:
        partial = torch.func.vmap(
            lambda t: statistic(t, dim=-1), in_dims=-2, out_dims=-1
        )(leave_one_out)
    mean_partial = partial.mean(-1)
    corrected = n * full - (n - 1) * mean_partial
    error = torch.sqrt(
        (n - 1) / n * (partial - mean_partial.unsqueeze(-1)).pow(2).sum(-1)
    )
    return corrected, error


def expectation_iid(
    expr: sp.Expr, samples: Sequence[sp.Symbol], mean: sp.Expr, var: sp.Expr
) -> sp.Expr:
    """``E[expr]`` for a polynomial in independent, identically distributed ``samples``.

    Each monomial ``prod_i x_i^(a_i)`` becomes ``prod_i E[x^(a_i)]`` (independence),
    with ``E[x] = mean``, ``E[x^2] = var + mean^2`` and ``E[x^k] = m_k`` (a symbol) for
    ``k >= 3``.
    """
    moments = {0: sp.Integer(1), 1: mean, 2: var + mean**2}
    polynomial = sp.Poly(sp.expand(expr), *samples)
    total = sp.Integer(0)
    for powers, coefficient in polynomial.terms():
        term = coefficient
        for power in powers:
            term *= moments.get(power, sp.Symbol(f"m{power}"))
        total += term
    return sp.expand(total)


def mean_and_error(estimates: Tensor) -> tuple[float, float]:
    """The Monte Carlo mean of a 1-D tensor of estimates and its standard error.

    The standard error is the sample standard deviation over ``sqrt(len(estimates))``.

    Raises:
        TypeError: ``estimates`` is not a floating tensor.
        ValueError: not 1-D, or fewer than 2 estimates.
    """
    if not isinstance(estimates, Tensor) or not estimates.is_floating_point():
        raise TypeError("estimates must be a floating-point tensor")
    if estimates.dim() != 1 or len(estimates) < 2:
        raise ValueError(
            "need a 1-D tensor of at least 2 estimates, got shape "
            f"{tuple(estimates.shape)}"
        )
    error = variance(estimates).sqrt() / len(estimates) ** 0.5
    return estimates.mean().item(), error.item()


def log_variance_bias(n: int) -> float:
    """``E[log s^2] - log sigma^2`` for ``n`` Gaussian samples (``s^2`` with ``n - 1``).

    ``(n - 1) s^2 / sigma^2`` is chi-squared with ``k = n - 1`` degrees of
    freedom, whose log has mean ``psi(k/2) + log 2``; so the bias is
    ``psi(k/2) - log(k/2)``, which is ``-1/k + O(1/k^2)``.

    Raises:
        ValueError: ``n < 2``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    half = torch.tensor((n - 1) / 2, dtype=torch.float64)
    return (torch.special.digamma(half) - torch.log(half)).item()


__all__ = [
    "c4",
    "expectation_iid",
    "jackknife",
    "log_variance_bias",
    "mean_and_error",
    "unbiased_std",
    "variance",
]
