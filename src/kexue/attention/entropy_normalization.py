"""Entropy normalisation: set the entropy of a distribution by a power transform.

Su Jianlin's ``p_i^γ / Σ_j p_j^γ`` keeps the order of the probabilities and moves the
entropy from ``log n`` (``γ = 0``) down to 0 (``γ → ∞``); a Newton iteration on ``γ``
reaches a prescribed entropy in a few steps. Everything here works with logits and log
probabilities, so that far targets (large ``γ``) do not underflow ``p^γ`` to zero.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "constant_entropy_sample",
    "entropy_normalize",
    "power_normalize",
]

# Below this variance of log p (in nats squared) a row is uniform over its support:
# its entropy does not depend on γ and the Newton step would divide by zero.
_FLAT = 1e-12
# Past this exponent a distribution is one-hot up to rounding for any gap in log p
# above 1e-6; capping it keeps γ log p finite.
_MAX_GAMMA = 1e8


def _dim(dim: object, x: Tensor) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    rank = max(x.dim(), 1)
    if not -rank <= dim < rank:
        raise ValueError(f"dim must lie in [{-rank}, {rank}), got {dim}")
    return dim % rank


def _logits(logits: object, dim: object) -> tuple[Tensor, int]:
    x = _checks.tensor(logits, "logits")
    if x.dim() == 0:
        raise ValueError("logits must have at least 1 dimension, got shape ()")
    return x, _dim(dim, x)


def _per_row(
    value: object, name: str, x: Tensor, dim: int, *, nonnegative: bool = True
) -> Tensor:
    """A number or a tensor broadcastable to ``x`` without ``dim``, as a float tensor of
    the compute dtype with ``dim`` kept (size 1), ready to broadcast against ``x``."""
    dtype = _checks.compute_dtype(x.dtype)
    reduced = x.shape[:dim] + x.shape[dim + 1 :]
    if not isinstance(value, Tensor):
        number = _checks.real(value, name, nonnegative=nonnegative)
        scalar = torch.tensor(number, dtype=dtype, device=x.device)
        return scalar.expand(reduced).unsqueeze(dim)
    _checks.tensor(value, name, kind="real")
    _checks.same_device(("logits", x), **{name: value})
    try:
        fits = torch.broadcast_shapes(value.shape, reduced) == reduced
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} must broadcast to the shape of "
            f"logits without dim, {tuple(reduced)}"
        )
    return value.to(dtype).expand(reduced).unsqueeze(dim)


def _log_probs(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """log softmax in the compute dtype, the support (p > 0) and the rows with none."""
    x = x.to(_checks.compute_dtype(x.dtype))
    support = x > -torch.inf
    dead = ~support.any(dim, keepdim=True)
    # A row without support would give NaN: it is computed as a uniform row (whose γ
    # stays 1) and zeroed by the callers.
    support = support | dead
    logq = torch.log_softmax(x.masked_fill(dead, 0.0), dim)
    return logq.masked_fill(~support, -torch.inf), support, dead


def _power(logq: Tensor, gamma: Tensor, support: Tensor, dim: int) -> Tensor:
    # γ · (-inf) is NaN at γ = 0; entries outside the support stay at -inf.
    z = torch.where(support, gamma * logq.masked_fill(~support, 0.0), -torch.inf)
    return torch.log_softmax(z, dim)


def power_normalize(logits: Tensor, gamma: Tensor | float, dim: int = -1) -> Tensor:
    """``p^γ / Σ p^γ`` for ``p = softmax(logits)``, computed as ``softmax(γ log p)``.

    Args:
        logits: floating tensor ``(..., n, ...)``; ``-inf`` marks an entry outside the
            support (probability 0, kept at 0 for every ``γ``).
        gamma: a non-negative number, or a real tensor broadcastable to the shape of
            ``logits`` without ``dim`` (one exponent per row). ``γ = 0`` gives the
            uniform distribution over the support.
        dim: the dimension that holds the distribution.

    Returns:
        Tensor of the shape, dtype and device of ``logits``; half precision is computed
        in float32. A row whose logits are all ``-inf`` gives zeros.

    Raises:
        TypeError: ``logits`` not a floating tensor, ``gamma`` not a number or a real
            tensor, ``dim`` not an int.
        ValueError: ``logits`` of rank 0, ``dim`` out of range, a negative or
            non-finite number ``gamma``, a ``gamma`` tensor that does not broadcast or
            lies on another device.
    """
    x, dim = _logits(logits, dim)
    g = _per_row(gamma, "gamma", x, dim)
    logq, support, dead = _log_probs(x, dim)
    out = _power(logq, g, support, dim).exp()
    return out.masked_fill(dead, 0.0).to(x.dtype)


def _moments(
    logq: Tensor, logp: Tensor, support: Tensor, dim: int
) -> tuple[Tensor, Tensor]:
    """Entropy of q and the variance of log p under q, with ``0 log 0 = 0``."""
    lq, lp = logq.masked_fill(~support, 0.0), logp.masked_fill(~support, 0.0)
    q = logq.exp()
    mean = (q * lp).sum(dim, keepdim=True)
    var = (q * (lp - mean) ** 2).sum(dim, keepdim=True)
    return -(q * lq).sum(dim, keepdim=True), var


def _newton(
    gamma: Tensor,
    h: Tensor,
    var: Tensor,
    target: Tensor,
    bracket: list[Tensor],
    flat: Tensor,
) -> Tensor:
    """One safeguarded Newton step on H(γ) = target, with dH/dγ = -γ Var_q(log p)."""
    lo, hi = bracket
    # H falls with γ: an entropy above the target puts the root above γ, and below.
    lo = torch.where(~flat & (h > target), gamma, lo)
    hi = torch.where(~flat & (h < target), gamma, hi)
    bracket[:] = [lo, hi]
    # A vanishing variance (q one-hot after an overshoot) gives ±inf or NaN here,
    # which the bracket test below turns into bisection.
    step = gamma + (h - target) / torch.where(flat, 1.0, gamma * var)
    # Outside the bracket (the article's step can even turn γ negative): bisect.
    # (Closed ends: at convergence the step lands on the bracket it just set.)
    inside = (step >= lo) & (step <= hi) & (step > 0)
    step = torch.where(inside, step, torch.where(hi.isinf(), 2 * gamma, (lo + hi) / 2))
    return torch.where(flat, gamma, step.clamp_max(_MAX_GAMMA))


@overload
def entropy_normalize(
    logits: Tensor,
    target: Tensor | float,
    *,
    iterations: int = ...,
    dim: int = ...,
    return_gamma: Literal[False] = ...,
) -> Tensor: ...
@overload
def entropy_normalize(
    logits: Tensor,
    target: Tensor | float,
    *,
    iterations: int = ...,
    dim: int = ...,
    return_gamma: Literal[True],
) -> tuple[Tensor, Tensor]: ...
@overload
def entropy_normalize(
    logits: Tensor,
    target: Tensor | float,
    *,
    iterations: int = ...,
    dim: int = ...,
    return_gamma: bool,
) -> Tensor | tuple[Tensor, Tensor]: ...
def entropy_normalize(
    logits: Tensor,
    target: Tensor | float,
    *,
    iterations: int = 4,
    dim: int = -1,
    return_gamma: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Power-normalise ``softmax(logits)`` so that its entropy (nats) is ``target``.

    Runs the article's Newton iteration on the exponent, ``iterations`` times, on log
    probabilities: ``γ ← γ + (H − H*) / (γ Var_q(log p))`` with ``q = p^γ / Σ p^γ``,
    which is the article's ``1 + (H* − H) / (H² − E[(log q)²])`` applied to ``q`` and
    multiplied into ``γ``. A step that leaves the bracket of exponents known to lie on
    either side of the root (the article's step turns negative for a target far above
    the entropy) is replaced by bisection; ``γ`` is capped at 1e8.

    Rows that are uniform over their support (including a single support point) have
    an entropy that no ``γ`` changes: they are returned as they are, with ``γ = 1``.
    A target outside ``[log m, log k]`` (``k`` the support size, ``m`` the number of
    entries tied at the maximum) is approached, not reached. A row whose logits are
    all ``-inf`` gives zeros and ``γ = 1``.

    Args:
        logits: floating tensor ``(..., n, ...)``, ``-inf`` outside the support.
        target: the entropy to reach, a non-negative number or a real tensor
            broadcastable to the shape of ``logits`` without ``dim``.
        iterations: Newton steps (0 returns ``softmax(logits)``).
        dim: the dimension that holds the distribution.
        return_gamma: also return the exponent per row.

    Returns:
        The probabilities, shape, dtype and device of ``logits`` (half precision
        computed in float32); with ``return_gamma``, also ``γ`` of the shape of
        ``logits`` without ``dim``, in the compute dtype (float32 for half precision).

    Raises:
        TypeError: wrong kinds (``logits``, ``target``, ``iterations``, ``dim``,
            ``return_gamma``).
        ValueError: rank-0 ``logits``, ``dim`` out of range, negative ``iterations``,
            a negative or non-finite number ``target``, a ``target`` tensor that does
            not broadcast or lies on another device.
    """
    x, dim = _logits(logits, dim)
    target_t = _per_row(target, "target", x, dim)
    iterations = _checks.nonnegative_int(iterations, "iterations")
    return_gamma = _checks.flag(return_gamma, "return_gamma")
    logp, support, dead = _log_probs(x, dim)
    gamma = torch.ones_like(target_t)
    bracket = [torch.zeros_like(gamma), torch.full_like(gamma, torch.inf)]
    logq = logp
    # Uniform over the support (γ-independent): H ignores γ, and γ stays 1.
    flat = _moments(logp, logp, support, dim)[1] <= _FLAT
    for _ in range(iterations):
        h, var = _moments(logq, logp, support, dim)
        gamma = _newton(gamma, h, var, target_t, bracket, flat)
        logq = _power(logp, gamma, support, dim)
    probs = logq.exp().masked_fill(dead, 0.0).to(x.dtype)
    if return_gamma:
        return probs, gamma.squeeze(dim)
    return probs


def constant_entropy_sample(
    logits: Tensor, target: Tensor | float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Sample one index per row from the entropy-normalised ``softmax(logits)``.

    Args:
        logits: floating tensor ``(..., n)`` with ``n ≥ 1``, ``-inf`` outside the
            support; every row needs at least one finite logit.
        target: entropy (nats) of each sampling distribution, a non-negative number or
            a real tensor broadcastable to ``(...)``.
        generator: a ``torch.Generator`` on the device of ``logits``, or None.

    Returns:
        int64 tensor ``(...)`` of indices, on the device of ``logits``.

    Raises:
        TypeError: wrong kinds of ``logits``, ``target`` or ``generator``.
        ValueError: rank-0 ``logits``, ``n = 0`` with a non-empty batch, a row of
            ``-inf`` only, a bad ``target`` (see :func:`entropy_normalize`).
    """
    x, _ = _logits(logits, -1)
    generator = _checks.generator(generator, "generator")
    probs = entropy_normalize(x, target)
    batch = x.shape[:-1]
    if probs.numel() == 0 and x.shape[-1] == 0 and batch.numel() > 0:
        raise ValueError("logits must have at least one entry per row, got n = 0")
    if batch.numel() == 0:
        return torch.zeros(batch, dtype=torch.long, device=x.device)
    flat = probs.reshape(-1, x.shape[-1]).to(_checks.compute_dtype(x.dtype))
    if x.device.type != "meta" and bool((flat.sum(-1) == 0).any()):
        raise ValueError("logits has a row of -inf only: nothing to sample")
    if x.device.type == "meta":
        return torch.empty(batch, dtype=torch.long, device=x.device)
    idx = torch.multinomial(flat, 1, generator=generator)
    return idx.reshape(batch)
