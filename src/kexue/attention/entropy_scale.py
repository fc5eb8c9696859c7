"""The entropy-invariant attention scale, after kexue.fm/archives/8823 and 9034.

Standard attention uses ``softmax(q k^T / sqrt(d))``. Its entropy grows like ``log n``
with the number of keys ``n``, so a model trained on short sequences attends more
diffusely to long ones. Scaling the logits by ``log(n) / log(train_length)`` as well
keeps the entropy roughly constant in ``n`` and equals the standard scale at the
training length: ``softmax(log_(train_length)(n) / sqrt(d) * q k^T)``.
"""

from __future__ import annotations

import math
from typing import Literal

import mpmath
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SalientValueHead",
    "attention_entropy",
    "entropy_gap",
    "entropy_invariant_scale",
    "laplace_entropy_gap",
    "scaled_attention",
    "visible_keys",
]


def entropy_invariant_scale(
    n: Tensor | float,
    head_dim: int,
    *,
    train_length: int = 512,
    min_length: int | None = None,
) -> Tensor:
    """``log(n) / log(train_length) / sqrt(head_dim)``: the logit scale for ``n`` keys.

    Args:
        n: number of keys a query sees, a number or a tensor of per-row counts (any
            shape, any device).
        head_dim: the dimension of queries and keys.
        train_length: the length at which the scale equals the standard
            ``1 / sqrt(head_dim)``.
        min_length: if given, ``n`` is clamped below at it (later bert4keras versions
            use 16), so that short rows are not made almost uniform.

    Returns:
        Float tensor of the shape of ``n`` (float32 unless ``n`` is a float64 tensor).
        Rows with ``n <= 1`` get scale 0: with at most one key the attention weights do
        not depend on the scale.

    Raises:
        ValueError: ``head_dim < 1``, ``train_length < 2``, ``min_length < 1``, or a
            negative ``n``.
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
    """Which key each query may attend to: a boolean ``(..., Lq, Lk)`` matrix.

    ``mask`` follows :func:`torch.nn.functional.scaled_dot_product_attention`: boolean
    (True = may attend) or additive float (``-inf`` = may not). ``causal`` keeps keys
    ``j <= i`` (aligned at the top left, as SDPA).
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
    """Softmax attention with the standard, the entropy-invariant or a fixed scale.

    Args:
        q: ``(batch, heads, Lq, d)``; k: ``(batch, heads, Lk, d)``;
            v: ``(batch, heads, Lk, dv)``.
        scale: ``"standard"`` (``1 / sqrt(d)``, exactly torch's SDPA),
            ``"entropy_invariant"`` (per query row,
            ``log(n_i) / log(train_length) / sqrt(d)`` with ``n_i`` the number of keys
            row ``i`` can see: the unmasked count, ``i + 1`` in causal attention), or a
            number.
        train_length, min_length: see :func:`entropy_invariant_scale`.
        mask: boolean (True = attend) or additive float mask broadcastable to
            ``(batch, heads, Lq, Lk)``.
        causal: attend only to keys ``j <= i``.

    Returns:
        ``(batch, heads, Lq, dv)``. A query row that can see no key at all returns zeros
        (and passes no gradient), instead of the NaN that softmax over an empty row
        would give.

    The per-row scale multiplies ``q`` before torch's SDPA (called with ``scale=1``),
    which is exact: ``softmax((s_i q_i) k^T) = softmax(s_i (q_i k^T))``.
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
                "scale must be 'standard', 'entropy_invariant' or a number, "
                f"got {scale!r}"
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
        # let empty rows see everything, then zero them below: no NaN anywhere
        allowed = allowed | empty
    attn_mask = allowed if (mask is not None or causal or empty.any()) else None
    out = F.scaled_dot_product_attention(
        q * row_scale.to(q.dtype), k, v, attn_mask=attn_mask, scale=1.0
    )
    if empty.any():
        out = out.masked_fill(empty, 0.0)
    return out


def attention_entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy ``-sum p log p`` (nats) along ``dim``, with ``0 log 0 = 0``.

    Uses ``torch.special.xlogy``, which is exact at zero and gives finite gradients for
    positive weights.
    """
    if not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor")
    return -torch.special.xlogy(probs, probs).sum(dim)


def _check_temperature(lam: float, head_dim: int) -> None:
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 3:
        raise ValueError(f"head_dim must be an int >= 3, got {head_dim!r}")
    if isinstance(lam, bool) or not isinstance(lam, int | float):
        raise TypeError(f"lam must be a real number, got {type(lam).__name__}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be positive and finite, got {lam!r}")


def entropy_gap(lam: float, head_dim: int, *, digits: int = 30) -> float:
    """``H - log n`` for many random keys, by quadrature of the large-``n`` form.

    With ``|q| = |k| = sqrt(d)`` and ``k`` uniform on the sphere, the score is
    ``s = d c`` with ``c = cos(theta)`` of density proportional to
    ``(1 - c^2)^((d - 3)/2)`` on ``[-1, 1]``, and
    ``H - log n -> log E[e^(lam s)] - lam E[s e^(lam s)] / E[e^(lam s)]``.
    The three integrals are done by ``mpmath.quad`` at ``digits`` significant digits.

    Raises:
        ValueError: ``head_dim < 3`` or ``lam`` not positive and finite.
        TypeError: ``lam`` is not a real number.
    """
    _check_temperature(lam, head_dim)
    with mpmath.workdps(digits):
        power = mpmath.mpf(head_dim - 3) / 2
        lam_d = mpmath.mpf(lam) * head_dim
        cuts = [-1, 0, 0.5, 1]  # the integrand peaks near c = 0.6 when lam ~ 1

        def weight(c):
            return (1 - c * c) ** power * mpmath.exp(lam_d * c)

        mass = mpmath.quad(weight, cuts)
        first = mpmath.quad(lambda c: c * weight(c), cuts)
        norm = mpmath.quad(lambda c: (1 - c * c) ** power, cuts)
        return float(mpmath.log(mass / norm) - lam_d * first / mass)


def laplace_entropy_gap(lam: float, head_dim: int) -> float:
    """The Laplace approximation ``(d/2) log(1 - c*^2)`` of :func:`entropy_gap`.

    ``c*`` is the stationary point of ``lam c + log(1 - c^2) / 2``, the root in
    ``(0, 1)`` of ``lam (1 - c^2) = c``: ``c* = 2 lam / (1 + sqrt(1 + 4 lam^2))`` (the
    rationalised form, accurate for small ``lam``).
    """
    _check_temperature(lam, head_dim)
    c = 2 * lam / (1 + math.sqrt(1 + 4 * lam * lam))
    return head_dim / 2 * math.log1p(-c * c)


class SalientValueHead(nn.Module):
    """One attention head that learns a soft arg-max (``kexue.tasks.salient_value``).

    Each token ``(value, salience)`` is embedded to ``width``; one head of
    :func:`scaled_attention` with the scale in ``self.scale`` (``"standard"`` or
    ``"entropy_invariant"``, calibrated at ``train_length``) mixes them, and a linear
    read-out gives one number per position. No positions: the task needs none.
    """

    def __init__(self, width: int = 32, *, train_length: int = 32) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        if (
            isinstance(train_length, bool)
            or not isinstance(train_length, int)
            or train_length < 2
        ):
            raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
        self.width, self.train_length = width, train_length
        self.scale: Literal["standard", "entropy_invariant"] = "standard"
        self.embed = nn.Linear(2, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, 1)

    def _qkv(self, values: Tensor, salience: Tensor) -> tuple[Tensor, ...]:
        if values.shape != salience.shape or values.dim() != 2:
            raise ValueError(
                "values and salience must both be (batch, length), got "
                f"{tuple(values.shape)} and {tuple(salience.shape)}"
            )
        tokens = self.embed(torch.stack((values, salience), -1))
        return self.qkv(tokens).unsqueeze(1).chunk(3, dim=-1)  # (batch, 1, n, width)

    def forward(self, values: Tensor, salience: Tensor) -> Tensor:
        """``(batch, length)`` values and saliences to ``(batch, length)`` outputs."""
        q, k, v = self._qkv(values, salience)
        out = scaled_attention(
            q, k, v, scale=self.scale, train_length=self.train_length
        )
        return self.read_out(out[:, 0])[..., 0]

    def entropy(self, values: Tensor, salience: Tensor) -> Tensor:
        """The mean attention entropy (nats) of the head's rows, a 0-dim tensor."""
        q, k, _ = self._qkv(values, salience)
        n = q.shape[-2]
        if self.scale == "standard":
            row_scale = 1 / math.sqrt(self.width)
        else:
            row_scale = entropy_invariant_scale(
                n, self.width, train_length=self.train_length
            ).item()
        return attention_entropy(torch.softmax(row_scale * q @ k.mT, -1)).mean()


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
            f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)} (need the same batch and heads, q and k the same dim, "
            "k and v the same length)"
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
