"""The entropy-invariant attention scale, as derived in Su Jianlin's kexue.fm/archives/8823 and 9034.

Standard attention uses ``softmax(q k^T / sqrt(d))``. Its entropy grows like ``log n`` with the number of
keys ``n``, so a model trained on short sequences attends more diffusely to long ones. Scaling the logits by
``log(n) / log(train_length)`` as well keeps the entropy roughly constant in ``n`` and equals the standard
scale at the training length: ``softmax(log_(train_length)(n) / sqrt(d) * q k^T)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def entropy_invariant_scale(
    n: Tensor | float,
    head_dim: int,
    *,
    train_length: int = 512,
    min_length: int | None = None,
) -> Tensor:
    """``log(n) / log(train_length) / sqrt(head_dim)``: the logit scale for ``n`` visible keys.

    Args:
        n: number of keys a query sees, a number or a tensor of per-row counts (any shape, any device).
        head_dim: the dimension of queries and keys.
        train_length: the length at which the scale equals the standard ``1 / sqrt(head_dim)``.
        min_length: if given, ``n`` is clamped below at it (later bert4keras versions use 16), so that short
            rows are not made almost uniform.

    Returns:
        Float tensor of the shape of ``n`` (float32 unless ``n`` is a float64 tensor). Rows with ``n <= 1``
        get scale 0: with at most one key the attention weights do not depend on the scale.

    Raises:
        ValueError: ``head_dim < 1``, ``train_length < 2``, ``min_length < 1``, or a negative ``n``.
    """
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int, got {head_dim!r}")
    if (
        isinstance(train_length, bool)
        or not isinstance(train_length, int)
        or train_length < 2
    ):
        raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
    if min_length is not None and (
        isinstance(min_length, bool)
        or not isinstance(min_length, int)
        or min_length < 1
    ):
        raise ValueError(
            f"min_length must be a positive int or None, got {min_length!r}"
        )
    n = torch.as_tensor(n)
    if not n.is_floating_point():
        n = n.to(torch.float32)
    if bool((n < 0).any()):
        raise ValueError("n counts keys and must be non-negative")
    if min_length is not None:
        n = n.clamp_min(min_length)
    return torch.log(n.clamp_min(1)) / (math.log(train_length) * math.sqrt(head_dim))


def visible_keys(
    query_length: int,
    key_length: int,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    device: torch.device | None = None,
) -> Tensor:
    """The boolean matrix of which key each query may attend to, shape broadcastable to ``(..., Lq, Lk)``.

    ``mask`` follows :func:`torch.nn.functional.scaled_dot_product_attention`: boolean (True = may attend) or
    additive float (``-inf`` = may not). ``causal`` keeps keys ``j <= i`` (aligned at the top left, as SDPA).
    """
    allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        keep = mask if mask.dtype == torch.bool else mask > -math.inf
        allowed = allowed & keep
    return allowed


def scaled_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: Literal["standard", "entropy_invariant"] | float = "standard",
    train_length: int = 512,
    min_length: int | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """Softmax attention with the standard, the entropy-invariant or a fixed logit scale.

    Args:
        q: ``(batch, heads, Lq, d)``; k: ``(batch, heads, Lk, d)``; v: ``(batch, heads, Lk, dv)``.
        scale: ``"standard"`` (``1 / sqrt(d)``, exactly torch's SDPA), ``"entropy_invariant"`` (per query
            row, ``log(n_i) / log(train_length) / sqrt(d)`` with ``n_i`` the number of keys row ``i`` can
            see: the unmasked count, ``i + 1`` in causal attention), or a number.
        train_length, min_length: see :func:`entropy_invariant_scale`.
        mask: boolean (True = attend) or additive float mask broadcastable to ``(batch, heads, Lq, Lk)``.
        causal: attend only to keys ``j <= i``.

    Returns:
        ``(batch, heads, Lq, dv)``. A query row that can see no key at all returns zeros (and passes no
        gradient), instead of the NaN that softmax over an empty row would give.

    The per-row scale multiplies ``q`` before torch's SDPA (called with ``scale=1``), which is exact:
    ``softmax((s_i q_i) k^T) = softmax(s_i (q_i k^T))``.
    """
    _check_shapes(q, k, v, mask)
    lq, lk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    allowed = visible_keys(lq, lk, mask=mask, causal=causal, device=q.device)
    counts = allowed.sum(-1, keepdim=True)  # (..., Lq, 1)
    empty = counts == 0
    if isinstance(scale, str):
        if scale == "standard":
            row_scale = torch.full_like(counts, 1 / math.sqrt(d), dtype=q.dtype)
        elif scale == "entropy_invariant":
            precise = counts.to(
                torch.promote_types(q.dtype, torch.float32)
            )  # float64 scale for float64 q
            row_scale = entropy_invariant_scale(
                precise, d, train_length=train_length, min_length=min_length
            )
        else:
            raise ValueError(
                f"scale must be 'standard', 'entropy_invariant' or a number, got {scale!r}"
            )
    elif (
        isinstance(scale, int | float)
        and not isinstance(scale, bool)
        and math.isfinite(scale)
    ):
        row_scale = torch.full_like(counts, float(scale), dtype=q.dtype)
    else:
        raise ValueError(
            f"scale must be 'standard', 'entropy_invariant' or a number, got {scale!r}"
        )
    if empty.any():
        allowed = (
            allowed | empty
        )  # let empty rows see everything, then zero them below: no NaN anywhere
    attn_mask = allowed if (mask is not None or causal or empty.any()) else None
    out = F.scaled_dot_product_attention(
        q * row_scale.to(q.dtype), k, v, attn_mask=attn_mask, scale=1.0
    )
    if empty.any():
        out = out.masked_fill(empty, 0.0)
    return out


def attention_entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy ``-sum p log p`` (nats) of attention weights along ``dim``, with ``0 log 0 = 0``.

    Uses ``torch.special.xlogy``, which is exact at zero and gives finite gradients for positive weights.
    """
    if not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor")
    return -torch.special.xlogy(probs, probs).sum(dim)


def _check_shapes(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(
                f"{name} must be a floating tensor of shape (batch, heads, seq, dim)"
            )
    if (
        q.shape[:2] != k.shape[:2]
        or k.shape[:3] != v.shape[:3]
        or q.shape[-1] != k.shape[-1]
    ):
        raise ValueError(
            f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
            "(need the same batch and heads, q and k the same dim, k and v the same length)"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    if mask is not None:
        target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        try:
            torch.broadcast_shapes(mask.shape, target)
        except RuntimeError as err:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {target}"
            ) from err
        if torch.broadcast_shapes(mask.shape, target) != target:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {target}"
            )
        if mask.device != q.device:
            raise ValueError(f"mask is on {mask.device} but q is on {q.device}")
