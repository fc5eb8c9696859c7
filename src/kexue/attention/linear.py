"""Linear attention and Performer's FAVOR+ features, after kexue.fm/archives/8338.

Replace ``exp(q . k)`` by ``phi(q) . phi(k)`` and attention becomes
``out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))``: linear in
the length. Performer chooses random features whose inner product is an unbiased
estimate of ``exp(q . k)``. Shapes follow torch's SDPA:
``(batch, heads, seq, head_dim)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "OneLayerAttention",
    "favor_features",
    "linear_attention",
    "orthogonal_gaussian",
    "performer_attention",
    "performer_relative_error",
]

FEATURE_MAPS: dict[str, Callable[[Tensor], Tensor]] = {
    "elu": lambda x: F.elu(x) + 1,
    "exp": torch.exp,
    "relu": F.relu,
}


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: str | Callable[[Tensor], Tensor] = "elu",
    causal: bool = False,
    eps: float = 1e-6,
    mask: Tensor | None = None,
    chunk_size: int = 64,
) -> Tensor:
    """Linear attention ``phi(Q) phi(K)^T V`` normalised row by row, in O(n) time.

    Args:
        q, k: ``(batch, heads, seq, d)``; v: ``(batch, heads, seq, dv)``.
        feature_map: ``"elu"`` (elu + 1, as Katharopoulos et al.), ``"exp"``,
            ``"relu"`` or a callable applied to q and k (it must return non-negative
            features).
        causal: each query sees keys ``j <= i``. Computed by chunks: quadratic inside a
            chunk of ``chunk_size``, a running ``d x dv`` state across chunks, so no
            ``(n, d, dv)`` prefix tensor is ever formed.
        eps: added to the denominator.
        mask: padding mask over keys, boolean, broadcastable to ``(batch, heads, seq)``
            (True = real token).

    Returns:
        ``(batch, heads, seq, dv)``.
    """
    phi = _feature(feature_map)
    _check(q, k, v, mask)
    return _attend(
        phi(q), phi(k), v, causal=causal, eps=eps, mask=mask, chunk_size=chunk_size
    )


def orthogonal_gaussian(
    num_features: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Performer's projection ``(num_features, dim)``: orthogonal blocks of rows.

    Each block of ``dim`` rows is the Q of a QR decomposition of a Gaussian matrix
    (orthonormal rows); each row is then rescaled to the norm of an independent
    ``N(0, I_dim)`` vector, so rows are marginally Gaussian but rows within a block are
    exactly orthogonal (lower variance than iid rows).
    """
    if num_features < 1 or dim < 1:
        raise ValueError(
            f"num_features and dim must be positive, got {num_features}, {dim}"
        )
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.T)
    rows = torch.cat(blocks)[:num_features]
    norms = torch.randn(
        num_features, dim, generator=generator, dtype=torch.float64
    ).norm(dim=-1, keepdim=True)
    return (rows * norms).to(dtype)


def favor_features(
    x: Tensor, projection: Tensor, *, is_query: bool, eps: float = 1e-4
) -> Tensor:
    """Performer's features ``m^(-1/2) (exp(w_r . x~ - |x~|^2 / 2 - s) + eps)``.

    Here ``x~ = d^(-1/4) x``, so that ``phi(q) . phi(k)`` estimates
    ``exp(q . k / sqrt(d))`` (up to scale).

    The stabiliser ``s`` is the maximum over features per row for queries (a per-query
    factor, which the normalisation cancels) and over features and positions for keys
    (one factor per head, also cancelled). ``x``: ``(..., seq, d)``; ``projection``:
    ``(m, d)``; returns ``(..., seq, m)``.

    The stabiliser is the maximum of ``w_r . x~ - |x~|^2 / 2``, not of ``w_r . x~``
    alone as in the paper's code and performer-pytorch: without ``eps`` both give the
    same attention; with it, the largest query feature of every row is ``m^(-1/2)``,
    so ``eps`` is a relative bias of ``eps`` instead of ``eps exp(|q~|^2 / 2)``.

    When autograd is not recording for ``x`` and ``projection``, the ``(seq, m)`` logits
    are turned into features in place (the same operations in the same order, so the
    same numbers): one tensor of that size instead of six, which about halves the time
    of :func:`performer_attention` at long sequences on the CPU (the benchmarks
    appendix).
    """
    d, m = x.shape[-1], projection.shape[0]
    if projection.shape[-1] != d:
        raise ValueError(f"projection must be (m, {d}), got {tuple(projection.shape)}")
    scaled = x * d**-0.25
    logits = scaled @ projection.to(x.dtype).T
    half_norm = scaled.pow(2).sum(-1, keepdim=True) / 2
    dims = -1 if is_query else (-1, -2)
    if torch.is_grad_enabled() and (x.requires_grad or projection.requires_grad):
        logits = logits - half_norm
        stabiliser = logits.amax(dim=dims, keepdim=True)
        return (torch.exp(logits - stabiliser.detach()) + eps) / math.sqrt(m)
    logits.sub_(half_norm)
    logits.sub_(logits.amax(dim=dims, keepdim=True))
    return logits.exp_().add_(eps).div_(math.sqrt(m))


def performer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    projection: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
) -> Tensor:
    """FAVOR+ attention: linear attention with :func:`favor_features`, approximating
    ``softmax(q k^T / sqrt(d)) v``."""
    _check(q, k, v, mask)
    phi_q = favor_features(q, projection, is_query=True)
    phi_k = favor_features(k, projection, is_query=False)
    return _attend(phi_q, phi_k, v, causal=causal, eps=0.0, mask=mask, chunk_size=64)


def performer_relative_error(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_features: int,
    *,
    orthogonal: bool,
    draws: int,
    generator: torch.Generator,
) -> float:
    """Mean over ``draws`` projections of ``|FAVOR+ - softmax| / |softmax|``.

    Frobenius norms. The projection has ``num_features`` rows, iid Gaussian or
    :func:`orthogonal_gaussian`, drawn from ``generator`` in the dtype of ``q``;
    softmax attention is torch's SDPA.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    _check(q, k, v, None)
    exact = F.scaled_dot_product_attention(q, k, v)
    d, total = q.shape[-1], 0.0
    for _ in range(draws):
        if orthogonal:
            w = orthogonal_gaussian(num_features, d, generator=generator, dtype=q.dtype)
        else:
            w = torch.randn(num_features, d, generator=generator, dtype=q.dtype)
        approx = performer_attention(q, k, v, w.to(q.device))
        total += ((approx - exact).norm() / exact.norm()).item()
    return total / draws


class OneLayerAttention(nn.Module):
    """One attention layer for the soft arg-max task of :mod:`kexue.tasks`.

    Each token is the pair (value, salience), embedded in 32 dimensions; one head of
    width 32 attends (``kind``: ``"softmax"`` for SDPA, or a feature map of
    :func:`linear_attention`: ``"elu"``, ``"exp"``, ``"relu"``) and a linear read-out
    gives one number per position. ``forward(values, salience)`` takes two
    ``(batch, seq)`` tensors and returns ``(batch, seq)``.
    """

    def __init__(self, kind: str, width: int = 32) -> None:
        super().__init__()
        if kind != "softmax" and kind not in FEATURE_MAPS:
            raise ValueError(
                f"kind must be 'softmax' or one of {tuple(FEATURE_MAPS)}, got {kind!r}"
            )
        self.kind = kind
        self.embed = nn.Linear(2, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, 1)

    def forward(self, values: Tensor, salience: Tensor) -> Tensor:
        if values.shape != salience.shape or values.dim() != 2:
            raise ValueError(
                "values and salience must both be (batch, seq), got "
                f"{tuple(values.shape)} and {tuple(salience.shape)}"
            )
        tokens = self.embed(torch.stack((values, salience), -1))
        q, k, v = self.qkv(tokens).unsqueeze(1).chunk(3, dim=-1)
        if self.kind == "softmax":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = linear_attention(q, k, v, feature_map=self.kind)
        return self.read_out(out[:, 0])[..., 0]


def _attend(
    phi_q: Tensor,
    phi_k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    eps: float,
    mask,
    chunk_size: int,
) -> Tensor:
    if mask is not None:  # padded keys contribute nothing
        phi_k = phi_k * mask.to(phi_k.dtype).unsqueeze(-1)
    if not causal:
        kv = phi_k.transpose(-1, -2) @ v  # (..., d, dv)
        normaliser = phi_k.sum(-2)  # (..., d)
        denominator = (phi_q * normaliser.unsqueeze(-2)).sum(-1, keepdim=True)
        return (phi_q @ kv) / (denominator + eps)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    state = phi_k.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1], v.shape[-1])
    total = phi_k.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1])
    outputs = []
    for start in range(0, phi_q.shape[-2], chunk_size):
        qc, kc, vc = (t[..., start : start + chunk_size, :] for t in (phi_q, phi_k, v))
        local = (qc @ kc.transpose(-1, -2)).tril()  # within the chunk: keys j <= i
        numerator = local @ vc + qc @ state
        denominator = local.sum(-1, keepdim=True)
        denominator = denominator + (qc * total.unsqueeze(-2)).sum(-1, keepdim=True)
        outputs.append(numerator / (denominator + eps))
        state = state + kc.transpose(-1, -2) @ vc
        total = total + kc.sum(-2)
    return torch.cat(outputs, dim=-2)


def _feature(
    feature_map: str | Callable[[Tensor], Tensor],
) -> Callable[[Tensor], Tensor]:
    if callable(feature_map):
        return feature_map
    if feature_map not in FEATURE_MAPS:
        raise ValueError(
            f"feature_map must be one of {tuple(FEATURE_MAPS)} or a callable, "
            f"got {feature_map!r}"
        )
    return FEATURE_MAPS[feature_map]


def _check(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> None:
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
            f"v {tuple(v.shape)}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError("mask must be boolean (True = real token)")
        target = k.shape[:3]
        try:
            ok = torch.broadcast_shapes(mask.shape, target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} must broadcast to "
                f"(batch, heads, seq) = {tuple(target)}"
            )
