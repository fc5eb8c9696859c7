"""Masks, in one place and one convention: torch SDPA's.

An attention mask is either boolean, True where a query may attend to a key, or
floating, added to the logits (0 to keep, ``-inf`` to drop, any finite value as a bias,
ALiBi-style). Integer masks are ambiguous (0/1 keep-flags or additive biases?) and are
rejected by name. A row with nothing to attend gives zeros, with zero gradient,
everywhere in the package.

Padding masks for reductions (``masked_sum``, ``masked_mean``, ``masked_max``) are
boolean, True at the valid entries; a row with no valid entry reduces to 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "as_sdpa_mask",
    "causal_mask",
    "keep_mask",
    "lengths_to_mask",
    "mask_to_bias",
    "masked_max",
    "masked_mean",
    "masked_softmax",
    "masked_sum",
    "reverse_padded",
]


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean padding mask ``(batch, max_len)``, True at positions ``< lengths[b]``.

    ``lengths``: ``(batch,)`` non-negative integers; ``max_len`` defaults to the largest
    length (0 for an empty batch). Lengths above ``max_len`` are an error.
    """
    _checks.tensor(lengths, "lengths", ndim=1, kind="integer")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    max_len = _checks.nonnegative_int(max_len, "max_len")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(
            f"lengths must be non-negative, got minimum {int(lengths.min())}"
        )
    if lengths.numel() and int(lengths.max()) > max_len:
        raise ValueError(
            f"lengths must be at most max_len = {max_len}, got {int(lengths.max())}"
        )
    steps = torch.arange(max_len, device=lengths.device)
    return steps < lengths[:, None]  # (batch, max_len)


def causal_mask(
    n: int, m: int | None = None, *, device: torch.device | str | None = None
) -> Tensor:
    """Boolean ``(n, m)`` mask (``m = n`` by default), True where key ``j ≤ i + m - n``.

    With ``m > n`` the queries are the last ``n`` of ``m`` positions (as in SDPA's
    ``is_causal`` with a KV cache aligned at the bottom right)."""
    n = _checks.nonnegative_int(n, "n")
    m = n if m is None else _checks.nonnegative_int(m, "m")
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(m - n)


def as_sdpa_mask(mask: Tensor | None, name: str = "mask") -> Tensor | None:
    """``mask`` checked against SDPA's convention: boolean or floating."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or None, got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{name} must be boolean (True = attend) or floating (added to the "
            "logits), "
            f"got {mask.dtype}; for 0/1 keep-flags pass {name}.bool()"
        )
    return mask


def keep_mask(mask: Tensor) -> Tensor:
    """Where an SDPA-convention mask lets a query attend (True, or > ``-inf``)."""
    mask = as_sdpa_mask(mask)  # type: ignore[assignment]
    return mask if mask.dtype == torch.bool else mask > -torch.inf


def mask_to_bias(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """The additive form of an SDPA-convention mask: 0 / ``-inf`` for boolean masks, the
    float mask itself (cast to ``dtype``) otherwise."""
    mask = as_sdpa_mask(mask)
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        return zero.masked_fill(~mask, -torch.inf) if mask.dim() else zero
    return mask.to(dtype)


def masked_softmax(logits: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Softmax of ``logits`` over ``dim`` under an SDPA-convention ``mask``
    (broadcastable to ``logits``). A row with nothing to attend gives zeros and zero
    gradient; half precision is computed in float32 and returned in its own dtype."""
    _checks.tensor(logits, "logits")
    mask = as_sdpa_mask(mask)
    _checks.same_device(("logits", logits), mask=mask)
    scores = logits.to(_checks.compute_dtype(logits.dtype))
    if mask is not None:
        _broadcasts(mask, logits, "mask", "logits")
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, -torch.inf)
        else:
            scores = scores + mask.to(scores.dtype)
    if scores.shape[dim] == 0:
        return scores.to(logits.dtype)
    top = scores.amax(dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).detach()
    weights = torch.exp(scores - top)  # exp(-inf) = 0 at dropped entries
    total = weights.sum(dim, keepdim=True)
    weights = weights / torch.where(total > 0, total, torch.ones_like(total))
    return weights.to(logits.dtype)


def masked_sum(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Sum of ``x`` over ``dim`` at the entries where the boolean ``mask`` is True."""
    mask = _padding_mask(x, mask)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(mask, x, zero).sum(dim, keepdim=keepdim)


def masked_mean(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Mean of ``x`` over ``dim`` at the valid entries; 0 for a row with none."""
    _checks.tensor(x, "x")
    total = masked_sum(x.to(_checks.compute_dtype(x.dtype)), mask, dim, keepdim)
    count = torch.broadcast_to(mask, x.shape).sum(dim, keepdim=keepdim)
    return (total / count.clamp_min(1).to(total.dtype)).to(x.dtype)


def masked_max(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Largest ``x`` over ``dim`` at the valid entries; 0 for a row with none."""
    mask = _padding_mask(x, mask)
    mask = torch.broadcast_to(mask, x.shape)
    if x.shape[dim] == 0:
        return torch.zeros_like(x.sum(dim, keepdim=keepdim))
    low = (
        torch.finfo(x.dtype).min if x.is_floating_point() else torch.iinfo(x.dtype).min
    )
    best = x.masked_fill(~mask, low).amax(dim, keepdim=keepdim)
    return torch.where(mask.any(dim, keepdim=keepdim), best, torch.zeros_like(best))


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` ``(batch, seq, ...)`` within its length, leaving
    the padding after it in place (what a bidirectional RNN over padding needs)."""
    _checks.tensor(x, "x", min_ndim=2, kind="any")
    _checks.tensor(lengths, "lengths", ndim=1, kind="integer")
    _checks.same_device(("x", x), lengths=lengths)
    batch, seq = x.shape[:2]
    if lengths.shape[0] != batch:
        raise ValueError(
            f"lengths must have {batch} entries (x's batch), got {lengths.shape[0]}"
        )
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > seq):
        raise ValueError(f"lengths must lie in [0, {seq}] (x's length)")
    steps = torch.arange(seq, device=x.device).expand(batch, seq)
    source = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    index = source.view(batch, seq, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def _padding_mask(x: Tensor, mask: Tensor) -> Tensor:
    _checks.tensor(x, "x", kind="real")
    _checks.tensor(mask, "mask", kind="any")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = valid entry), got {mask.dtype}")
    _checks.same_device(("x", x), mask=mask)
    _broadcasts(mask, x, "mask", "x")
    return mask


def _broadcasts(mask: Tensor, x: Tensor, mask_name: str, x_name: str) -> None:
    try:
        shape = torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{mask_name} of shape {tuple(mask.shape)} must broadcast to {x_name}'s "
            f"shape {tuple(x.shape)}"
        )
