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

from kexue import _checks
from kexue.attention.entropy_scale import _check_tokens, _rank4

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
        q, k: ``(batch, heads, n, d)`` and ``(batch, heads, m, d)``;
            v: ``(batch, heads, m, dv)``; one floating dtype, one device.
        feature_map: ``"elu"`` (elu + 1, as Katharopoulos et al.), ``"exp"``,
            ``"relu"`` or a callable applied to q and k (it must return non-negative
            features). ``"exp"`` is computed stabilised (per-feature key maxima and
            per-row query maxima, which cancel in the ratio), so it stays finite and
            exact for inputs whose exponentials overflow or underflow; causal
            ``"exp"`` forms a ``(chunk, chunk, d)`` tensor of exponentials per chunk
            for this, so it is several times slower than the other maps.
        causal: each query sees keys ``j <= i``. Computed by chunks: quadratic inside a
            chunk of ``chunk_size``, a running ``d x dv`` state across chunks, so no
            ``(n, d, dv)`` prefix tensor is ever formed.
        eps: a non-negative number added to the denominator.
        mask: padding mask over keys, boolean, broadcastable to ``(batch, heads, m)``
            (True = real token). Padded keys and values are zeroed first, so NaN or
            inf there does not leak.
        chunk_size: a positive int.

    Returns:
        ``(batch, heads, n, dv)`` in the dtype of ``q``; float16 and bfloat16 are
        computed in float32. A row whose weights are all zero (no visible key) is zero,
        with zero gradient, also with ``eps = 0``.

    Raises:
        TypeError: non-tensor or non-floating ``q``, ``k``, ``v``; a non-boolean
            ``mask``; a ``feature_map`` that is neither a name nor callable; a
            non-int ``chunk_size``; a non-bool ``causal``.
        ValueError: wrong ranks or shapes, tensors on different devices, an unknown
            ``feature_map``, a negative or non-finite ``eps``, ``chunk_size < 1``.
    """
    phi = _feature(feature_map)
    mask = _check(q, k, v, mask, causal)
    eps = _checks.real(eps, "eps", nonnegative=True)
    chunk_size = _checks.positive_int(chunk_size, "chunk_size")
    dtype = _checks.compute_dtype(q.dtype)
    q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
    if isinstance(feature_map, str) and feature_map == "exp":
        out = _attend_exp(q32, k32, v32, causal, eps, mask, chunk_size)
    else:
        out = _attend(
            phi(q32),
            phi(k32),
            v32,
            causal=causal,
            eps=eps,
            mask=mask,
            chunk_size=chunk_size,
        )
    return out.to(q.dtype)


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
    exactly orthogonal (lower variance than iid rows). Drawn in float64 on the
    generator's device (the CPU without one), returned in the floating ``dtype``.

    Raises:
        TypeError: a non-int size, a non-floating ``dtype``, a ``generator`` that is
            not a ``torch.Generator``.
        ValueError: a size below 1.
    """
    num_features = _checks.positive_int(num_features, "num_features")
    dim = _checks.positive_int(dim, "dim")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    device = _generator_device(generator)
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        gaussian = torch.randn(
            dim, dim, generator=generator, dtype=torch.float64, device=device
        )
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.T)
    rows = torch.cat(blocks)[:num_features]
    norms = torch.randn(
        num_features, dim, generator=generator, dtype=torch.float64, device=device
    ).norm(dim=-1, keepdim=True)
    return (rows * norms).to(dtype)


def _generator_device(generator: object) -> torch.device:
    if generator is None:
        return torch.device("cpu")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator or None, got "
            f"{type(generator).__name__}"
        )
    return generator.device


def favor_features(
    x: Tensor, projection: Tensor, *, is_query: bool, eps: float = 1e-4
) -> Tensor:
    """Performer's features ``m^(-1/2) (exp(w_r . x~ - |x~|^2 / 2 - s) + eps)``.

    Here ``x~ = d^(-1/4) x``, so that ``phi(q) . phi(k)`` estimates
    ``exp(q . k / sqrt(d))`` (up to scale).

    The stabiliser ``s`` is the maximum over features per row for queries (a per-query
    factor, which the normalisation cancels) and over features and positions for keys
    (one factor per head, also cancelled). ``x``: ``(..., seq, d)`` floating;
    ``projection``: ``(m, d)`` floating, ``m >= 1``, on the device of ``x`` (cast to its
    dtype); returns ``(..., seq, m)`` in the dtype of ``x`` (float16 and bfloat16 are
    computed in float32). ``eps``: a non-negative number. Gradients include the
    stabiliser's (``eps`` does not cancel it).

    The stabiliser is the maximum of ``w_r . x~ - |x~|^2 / 2``, not of ``w_r . x~``
    alone as in the paper's code and performer-pytorch: without ``eps`` both give the
    same attention; with it, the largest query feature of every row is ``m^(-1/2)``,
    so ``eps`` is a relative bias of ``eps`` instead of ``eps exp(|q~|^2 / 2)``.

    When autograd is not recording for ``x`` and ``projection``, the ``(seq, m)`` logits
    are turned into features in place (the same operations in the same order, so the
    same numbers): one tensor of that size instead of six, which about halves the time
    of :func:`performer_attention` at long sequences on the CPU (the benchmarks
    appendix).

    Raises:
        TypeError: non-tensor or non-floating ``x`` or ``projection``, a non-bool
            ``is_query``, a non-number ``eps``.
        ValueError: ``x`` of rank below 2, ``projection`` not ``(m, d)`` with ``m >= 1``
            or on another device, a negative or non-finite ``eps``.
    """
    _checks.tensor(x, "x", min_ndim=2)
    _check_projection(projection, x, "x")
    _checks.flag(is_query, "is_query")
    eps = _checks.real(eps, "eps", nonnegative=True)
    dtype = _checks.compute_dtype(x.dtype)
    return _favor(x.to(dtype), projection, is_query, eps).to(x.dtype)


def _favor(
    x: Tensor,
    projection: Tensor,
    is_query: bool,
    eps: float,
    keep: Tensor | None = None,
) -> Tensor:
    """:func:`favor_features` without checks; ``keep`` (boolean ``(..., seq)``) leaves
    padded keys out of the stabiliser (and zeroes them, so NaN there cannot leak)."""
    d, m = x.shape[-1], projection.shape[0]
    if keep is not None:
        x = torch.where(
            keep.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)
        )
    scaled = x * d**-0.25 if d else x
    logits = scaled @ projection.to(x.dtype).mT
    if logits.numel() == 0:  # nothing to stabilise: no row, or no position
        return logits
    half_norm = scaled.pow(2).sum(-1, keepdim=True) / 2
    dims = -1 if is_query else (-1, -2)
    if torch.is_grad_enabled() and (x.requires_grad or projection.requires_grad):
        logits = logits - half_norm
        return (torch.exp(logits - _stabiliser(logits, dims, keep)) + eps) / math.sqrt(
            m
        )
    logits.sub_(half_norm)
    logits.sub_(_stabiliser(logits, dims, keep))
    return logits.exp_().add_(eps).div_(math.sqrt(m))


def _stabiliser(
    logits: Tensor, dims: int | tuple[int, int], keep: Tensor | None
) -> Tensor:
    if keep is None:
        return logits.amax(dim=dims, keepdim=True)
    top = logits.masked_fill(~keep.unsqueeze(-1), -math.inf).amax(
        dim=dims, keepdim=True
    )
    return torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # all padded


def _check_projection(projection: object, x: Tensor, x_name: str) -> None:
    _checks.tensor(projection, "projection", ndim=2)
    assert isinstance(projection, Tensor)
    d = x.shape[-1]
    if projection.shape[1] != d or projection.shape[0] < 1:
        raise ValueError(
            f"projection must be (m, {d}) with m >= 1 ({x_name}'s last dimension is "
            f"{d}), got {tuple(projection.shape)}"
        )
    _checks.same_device((x_name, x), projection=projection)


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
    ``softmax(q k^T / sqrt(d)) v``.

    ``q``, ``k``, ``v``, ``causal`` and the boolean key-padding ``mask`` as in
    :func:`linear_attention` (padded keys are also left out of the key stabiliser);
    ``projection``: ``(m, d)`` on their device. Returns ``(batch, heads, n, dv)`` in
    the dtype of ``q`` (half precision computed in float32); a row that sees no key is
    zero, with zero gradient.

    Raises: as :func:`linear_attention` and, for ``projection``, as
    :func:`favor_features`.
    """
    mask = _check(q, k, v, mask, causal)
    _check_projection(projection, q, "q")
    dtype = _checks.compute_dtype(q.dtype)
    q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
    phi_q = _favor(q32, projection, True, 1e-4)
    phi_k = _favor(k32, projection, False, 1e-4, mask)
    out = _attend(phi_q, phi_k, v32, causal=causal, eps=0.0, mask=mask, chunk_size=64)
    return out.to(q.dtype)


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
    :func:`orthogonal_gaussian`, drawn from ``generator`` on its device in the dtype of
    ``q`` (float32 for half precision, which is computed in float32); softmax
    attention is torch's SDPA.

    Raises:
        TypeError: as :func:`linear_attention` for ``q``, ``k``, ``v``; non-int sizes,
            a non-bool ``orthogonal``, a ``generator`` that is not a
            ``torch.Generator``.
        ValueError: as :func:`linear_attention`; sizes below 1; empty ``q`` or ``k``,
            or a ``v`` that makes softmax attention zero (no relative error).
    """
    _check(q, k, v, None, False)
    num_features = _checks.positive_int(num_features, "num_features")
    draws = _checks.positive_int(draws, "draws")
    _checks.flag(orthogonal, "orthogonal")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(generator).__name__}"
        )
    if q.shape[-2] == 0 or k.shape[-2] == 0 or q.shape[:-2].numel() == 0:
        raise ValueError(
            f"q and k must not be empty, got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    dtype = _checks.compute_dtype(q.dtype)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    exact = F.scaled_dot_product_attention(q, k, v)
    scale = exact.norm()
    if not bool(scale > 0):  # once, at the boundary
        raise ValueError("v makes softmax attention zero: no relative error exists")
    d, total = q.shape[-1], torch.zeros((), dtype=dtype, device=q.device)
    for _ in range(draws):
        if orthogonal:
            w = orthogonal_gaussian(num_features, d, generator=generator, dtype=dtype)
        else:
            w = torch.randn(
                num_features,
                d,
                generator=generator,
                dtype=dtype,
                device=generator.device,
            )
        approx = performer_attention(q, k, v, w.to(q.device))
        total = total + (approx - exact).norm() / scale
    return total.item() / draws


class OneLayerAttention(nn.Module):
    """One attention layer for the soft arg-max task of :mod:`kexue.tasks`.

    Each token is the pair (value, salience), embedded in 32 dimensions; one head of
    width 32 attends (``kind``: ``"softmax"`` for SDPA, or a feature map of
    :func:`linear_attention`: ``"elu"``, ``"exp"``, ``"relu"``) and a linear read-out
    gives one number per position. ``forward(values, salience)`` takes two
    ``(batch, seq)`` tensors of the module's dtype and device and returns
    ``(batch, seq)``.

    Raises: ValueError for an unknown ``kind`` or ``width < 1``, TypeError for a
    non-int ``width``; ``forward`` as :class:`SalientValueHead`'s.
    """

    def __init__(self, kind: str, width: int = 32) -> None:
        super().__init__()
        self.kind = _checks.choice(kind, "kind", ("softmax", *FEATURE_MAPS))
        width = _checks.positive_int(width, "width")
        self.embed = nn.Linear(2, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, 1)

    def forward(self, values: Tensor, salience: Tensor) -> Tensor:
        _check_tokens(self, values, salience)
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
    mask: Tensor | None,
    chunk_size: int,
) -> Tensor:
    if mask is not None:  # padded keys contribute nothing, even if NaN
        keep, zero = mask.unsqueeze(-1), torch.zeros((), dtype=v.dtype, device=v.device)
        phi_k, v = torch.where(keep, phi_k, zero), torch.where(keep, v, zero)
    if not causal:
        kv = phi_k.transpose(-1, -2) @ v  # (..., d, dv)
        normaliser = phi_k.sum(-2)  # (..., d)
        denominator = (phi_q * normaliser.unsqueeze(-2)).sum(-1, keepdim=True)
        return _ratio(phi_q @ kv, denominator + eps)
    state = phi_k.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1], v.shape[-1])
    total = phi_k.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1])
    outputs = [v.new_zeros(*phi_q.shape[:-1], v.shape[-1])[..., :0, :]]  # n = 0
    for start in range(0, phi_q.shape[-2], chunk_size):
        qc, kc, vc = (t[..., start : start + chunk_size, :] for t in (phi_q, phi_k, v))
        local = (qc @ kc.transpose(-1, -2)).tril()  # within the chunk: keys j <= i
        numerator = local @ vc + qc @ state
        denominator = local.sum(-1, keepdim=True)
        denominator = denominator + (qc * total.unsqueeze(-2)).sum(-1, keepdim=True)
        outputs.append(_ratio(numerator, denominator + eps))
        state = state + kc.transpose(-1, -2) @ vc
        total = total + kc.sum(-2)
    return torch.cat(outputs, dim=-2)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 (with zero gradient) where the denominator is 0:
    a row with no weight at all."""
    none = denominator <= 0  # (..., n, 1): cheap to test, unlike the numerator
    return (numerator / denominator.masked_fill(none, 1.0)).masked_fill(none, 0.0)


def _attend_exp(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool,
    eps: float,
    mask: Tensor | None,
    chunk_size: int,
) -> Tensor:
    """Linear attention with ``phi = exp``, ``sum_r exp(q_ir + k_jr)`` as weights, kept
    in range: keys are scaled by their per-feature maximum ``t_r`` and each query row
    by its largest term ``s_i``, so the largest weight is 1 and no sum overflows or
    underflows to 0. The factors cancel in the ratio (``eps`` becomes
    ``eps exp(-s_i)``), so the result is exact and the stabilisers carry no gradient."""
    if 0 in (*q.shape[:-1], k.shape[-2], q.shape[-1], v.shape[-1]):
        return v.new_zeros(*q.shape[:-1], v.shape[-1])  # no row, key or feature
    if mask is not None:  # padded keys: weight exp(-inf) = 0, even if NaN
        keep = mask.unsqueeze(-1)
        k = k.masked_fill(~keep, -math.inf)
        v = torch.where(keep, v, torch.zeros((), dtype=v.dtype, device=v.device))
    log_eps = math.log(eps) if eps > 0 else -math.inf
    if not causal:
        top = _finite(k.amax(-2, keepdim=True))  # (..., 1, d)
        phi_k = torch.exp(k - top)
        row = q + top  # exp(row_r) phi_k sums: the weights, factor by factor
        s = _finite(row.amax(-1, keepdim=True))
        a = torch.exp(row - s)
        denominator = a @ phi_k.sum(-2).unsqueeze(-1) + torch.exp(log_eps - s)
        return _ratio(a @ (phi_k.mT @ v), denominator)
    return _causal_exp(q, k, v, log_eps, chunk_size)


def _causal_exp(
    q: Tensor, k: Tensor, v: Tensor, log_eps: float, chunk_size: int
) -> Tensor:
    """The causal form of :func:`_attend_exp`: across chunks a state scaled by the
    running per-feature key maxima; inside a chunk every term ``q_ir + k_jr`` (a
    ``(chunk, chunk, d)`` tensor), so that row ``i``'s scale comes from the keys it
    sees, not from later ones."""
    d = q.shape[-1]
    state = v.new_zeros(*q.shape[:-2], d, v.shape[-1])
    total = v.new_zeros(*q.shape[:-2], d, 1)
    top = q.new_full((*q.shape[:-2], 1, d), -math.inf)  # running key maxima
    outputs = []
    for start in range(0, q.shape[-2], chunk_size):
        qc, kc, vc = (t[..., start : start + chunk_size, :] for t in (q, k, v))
        cross = qc + top  # terms against the earlier chunks, per feature
        s = cross.amax(-1, keepdim=True)
        if kc.shape[-2]:
            pairs = qc.unsqueeze(-2) + kc.unsqueeze(-3)  # (..., c, c', d)
            future = torch.ones(
                qc.shape[-2], kc.shape[-2], dtype=torch.bool, device=q.device
            ).triu(1)  # key j after query i
            pairs = pairs.masked_fill(future.unsqueeze(-1), -math.inf)
            s = torch.maximum(s, pairs.amax((-1, -2)).unsqueeze(-1))
        s = _finite(s)
        a = torch.exp(cross - s)
        numerator, denominator = a @ state, a @ total + torch.exp(log_eps - s)
        if kc.shape[-2]:
            local = torch.exp(pairs - s.unsqueeze(-1)).sum(-1)  # (..., c, c')
            numerator = numerator + local @ vc
            denominator = denominator + local.sum(-1, keepdim=True)
            new_top = torch.maximum(top, kc.amax(-2, keepdim=True)).detach()
            safe = _finite(new_top)
            phi_k = torch.exp(kc - safe)
            shrink = torch.exp(top - safe).mT  # (..., d, 1); 0 where no key yet
            state = state * shrink + phi_k.mT @ vc
            total = total * shrink + phi_k.sum(-2).unsqueeze(-1)
            top = new_top
        outputs.append(_ratio(numerator, denominator))
    return torch.cat(outputs, dim=-2)


def _finite(x: Tensor) -> Tensor:
    """A stabiliser: ``x`` where finite, else 0 (nothing to scale), without gradient."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x)).detach()


def _feature(
    feature_map: object,
) -> Callable[[Tensor], Tensor]:
    if isinstance(feature_map, str):
        return FEATURE_MAPS[
            _checks.choice(feature_map, "feature_map", tuple(FEATURE_MAPS))
        ]
    if callable(feature_map):
        return feature_map
    raise TypeError(
        f"feature_map must be one of {tuple(FEATURE_MAPS)} or a callable, "
        f"got {type(feature_map).__name__}"
    )


def _check(
    q: object, k: object, v: object, mask: object, causal: object
) -> Tensor | None:
    """q ``(b, h, n, d)``, k ``(b, h, m, d)``, v ``(b, h, m, dv)``; a boolean key
    padding ``mask`` broadcastable to ``(b, h, m)`` on their device. Returns it."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _rank4(t, name)
    _checks.qkv(q, k, v)
    assert isinstance(k, Tensor)
    _checks.flag(causal, "causal")
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(
            f"mask must be a boolean key-padding mask (True = real token), got {got}"
        )
    _checks.same_device(("k", k), mask=mask)
    _checks.broadcasts(mask, tuple(k.shape[:3]), "mask", "(batch, heads, seq)")
    return mask
