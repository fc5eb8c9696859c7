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

from kexue import _checks
from kexue.foundations.masking import as_sdpa_mask, mask_to_bias, masked_softmax

__all__ = [
    "SalientValueHead",
    "attention_entropy",
    "entropy_gap",
    "entropy_invariant_scale",
    "laplace_entropy_gap",
    "scaled_attention",
    "visible_keys",
]

_SCALES = ("standard", "entropy_invariant")


def entropy_invariant_scale(
    n: Tensor | float,
    head_dim: int,
    *,
    train_length: int = 512,
    min_length: int | None = None,
) -> Tensor:
    """``log(n) / log(train_length) / sqrt(head_dim)``: the logit scale for ``n`` keys.

    Args:
        n: number of keys a query sees, a finite number or a real (integer or floating)
            tensor of per-row counts (any shape, any device).
        head_dim: the dimension of queries and keys.
        train_length: the length at which the scale equals the standard
            ``1 / sqrt(head_dim)``.
        min_length: if given, ``n`` is clamped below at it (later bert4keras versions
            use 16), so that short rows are not made almost uniform.

    Returns:
        Float tensor of the shape and device of ``n`` (float64 if ``n`` is a float64
        tensor, float32 otherwise). Rows with ``n <= 1`` get scale 0: with at most one
        key the attention weights do not depend on the scale.

    Raises:
        TypeError: ``n`` is not a number or a real tensor; a size is not an int.
        ValueError: ``head_dim < 1``, ``train_length < 2``, ``min_length < 1``, or a
            negative or NaN ``n``.
    """
    head_dim = _checks.positive_int(head_dim, "head_dim")
    train_length, min_length = _lengths(train_length, min_length)
    if isinstance(n, Tensor):
        _checks.tensor(n, "n", kind="real")
        if n.device.type != "meta" and n.numel():  # a boundary check of the values
            bad = (n < 0) | n.isnan() if n.is_floating_point() else n < 0
            if bool(bad.any()):
                raise ValueError("n counts keys and must be non-negative, not NaN")
    else:
        n = torch.tensor(_checks.real(n, "n", nonnegative=True))
    return _count_scale(n, head_dim, train_length, min_length)


def _count_scale(
    n: Tensor, head_dim: int, train_length: int, min_length: int | None
) -> Tensor:
    """:func:`entropy_invariant_scale` without checks (no device sync)."""
    n = n.to(torch.float64 if n.dtype == torch.float64 else torch.float32)
    if min_length is not None:
        n = n.clamp_min(min_length)
    return torch.log(n.clamp_min(1)) / (math.log(train_length) * math.sqrt(head_dim))


def _lengths(train_length: object, min_length: object) -> tuple[int, int | None]:
    train_length = _checks.positive_int(train_length, "train_length")
    if train_length < 2:
        raise ValueError(f"train_length must be an int >= 2, got {train_length}")
    if min_length is not None:
        min_length = _checks.positive_int(min_length, "min_length")
    return train_length, min_length


def _canonical(device: torch.device | str) -> torch.device:
    """``cuda`` and ``cuda:0`` as one device."""
    return torch.empty(0, device=device).device


def visible_keys(
    query_length: int,
    key_length: int,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Which key each query may attend to: a boolean ``(..., Lq, Lk)`` matrix.

    ``mask`` follows :func:`torch.nn.functional.scaled_dot_product_attention`: boolean
    (True = may attend) or floating, added to the logits (``-inf`` = may not; any
    finite value, an ALiBi bias say, leaves the key visible); it must broadcast to
    ``(..., Lq, Lk)``, whose leading dimensions it sets. ``causal`` keeps keys
    ``j <= i`` (aligned at the top left, as SDPA). The result is on ``device``, which
    defaults to the mask's (else the CPU).

    Raises:
        TypeError: a length is not an int, ``causal`` is not a bool, ``mask`` is not
            boolean or floating.
        ValueError: a negative length, a ``mask`` that does not broadcast to
            ``(Lq, Lk)``, or a ``mask`` not on ``device``.
    """
    query_length = _checks.nonnegative_int(query_length, "query_length")
    key_length = _checks.nonnegative_int(key_length, "key_length")
    _checks.flag(causal, "causal")
    mask = as_sdpa_mask(mask, "mask")
    if mask is not None:
        if device is not None and _canonical(device) != mask.device:
            raise ValueError(f"mask is on {mask.device} but device is {device}")
        device = mask.device
        _checks.broadcasts(
            mask, (query_length, key_length), "mask", "(..., Lq, Lk)", leading=True
        )
    allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & (mask if mask.dtype == torch.bool else mask > -math.inf)
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
            v: ``(batch, heads, Lk, dv)``; one floating dtype, one device.
        scale: ``"standard"`` (``1 / sqrt(d)``, exactly torch's SDPA),
            ``"entropy_invariant"`` (per query row,
            ``log(n_i) / log(train_length) / sqrt(d)`` with ``n_i`` the number of keys
            row ``i`` can see: the unmasked count, ``i + 1`` in causal attention), or a
            finite number.
        train_length, min_length: see :func:`entropy_invariant_scale`.
        mask: SDPA's convention, broadcastable to ``(batch, heads, Lq, Lk)``: boolean
            (True = attend) or floating, added to the logits (``-inf`` drops a key, a
            finite value is a bias, ALiBi-style). A biased key counts as visible.
        causal: attend only to keys ``j <= i`` (top left aligned, as SDPA).

    Returns:
        ``(batch, heads, Lq, dv)`` in the dtype of ``q``; float16 and bfloat16 are
        computed in float32. A query row that can see no key at all returns zeros (and
        passes no gradient), instead of the NaN that softmax over an empty row would
        give; keys no query can see are zeroed first, so NaN or inf in padding does not
        leak.

    Raises:
        TypeError: a non-tensor or non-floating ``q``, ``k``, ``v``; an integer
            ``mask``; a bad type of ``scale``, ``causal`` or a length.
        ValueError: wrong ranks or shapes, a ``mask`` that does not broadcast, tensors
            on different devices, an unknown or non-finite ``scale``.

    The per-row scale multiplies ``q`` before torch's SDPA (called with ``scale=1``),
    which is exact: ``softmax((s_i q_i) k^T) = softmax(s_i (q_i k^T))``.
    """
    mask = _check_attention(q, k, v, mask, causal)
    train_length, min_length = _lengths(train_length, min_length)
    lq, lk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    dtype = _checks.compute_dtype(q.dtype)
    bias = _logit_bias(lq, lk, mask, causal, q.device, dtype)  # None: all visible
    keep = None if bias is None else bias > -math.inf
    counts = torch.full((), lk, device=q.device) if keep is None else keep.sum(-1, True)
    row_scale = _row_scale(scale, counts, d, dtype, train_length, min_length)
    qs, ks, vs = (t.to(dtype) for t in (q, k, v))
    if bias is not None and keep is not None:  # both or neither
        empty = counts == 0  # (..., Lq, 1): rows with no key
        seen = keep.any(-2).unsqueeze(-1)  # (..., Lk, 1): keys some row sees
        zero = torch.zeros((), dtype=dtype, device=q.device)
        ks, vs = torch.where(seen, ks, zero), torch.where(seen, vs, zero)
        qs = torch.where(empty, zero, qs)
        bias = bias.masked_fill(empty, 0.0)  # let empty rows see all: no NaN
    out = F.scaled_dot_product_attention(
        qs * row_scale, ks, vs, attn_mask=bias, scale=1.0
    )
    if keep is not None:
        out = out.masked_fill(empty, 0.0)
    return out.to(q.dtype)


def _logit_bias(
    lq: int,
    lk: int,
    mask: Tensor | None,
    causal: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | None:
    """The mask and causality as one additive ``(..., Lq, Lk)`` bias, or None."""
    bias = mask_to_bias(mask, dtype)
    if causal:
        future = torch.ones(lq, lk, dtype=torch.bool, device=device).triu(1)
        zero = torch.zeros((), dtype=dtype, device=device)
        bias = (zero if bias is None else bias).masked_fill(future, -math.inf)
    if bias is not None and bias.dim() < 2:  # a 0-dim or (Lk,) mask
        bias = bias.expand(lq, lk)
    return bias


def _row_scale(
    scale: object,
    counts: Tensor,
    d: int,
    dtype: torch.dtype,
    train_length: int,
    min_length: int | None,
) -> Tensor | float:
    if isinstance(scale, str):
        scale = _checks.choice(scale, "scale", _SCALES)
        if scale == "standard":
            return 1 / math.sqrt(d) if d else 1.0
        precise = counts.to(torch.float64 if dtype == torch.float64 else torch.float32)
        return _count_scale(precise, max(d, 1), train_length, min_length).to(dtype)
    return _checks.real(scale, "scale")


def _rank4(t: object, name: str) -> Tensor:
    _checks.tensor(t, name)
    assert isinstance(t, Tensor)
    if t.dim() != 4:
        raise ValueError(
            f"{name} must have 4 dimensions (batch, heads, seq, dim), "
            f"got shape {tuple(t.shape)}"
        )
    return t


def _check_attention(
    q: object, k: object, v: object, mask: object, causal: object
) -> Tensor | None:
    """q, k, v of ``(batch, heads, seq, dim)``; an SDPA-convention ``mask`` that
    broadcasts to ``(batch, heads, Lq, Lk)`` on their device. Returns the mask."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _rank4(t, name)
    _checks.qkv(q, k, v)
    assert isinstance(q, Tensor) and isinstance(k, Tensor)
    _checks.flag(causal, "causal")
    mask = as_sdpa_mask(mask, "mask")  # type: ignore[arg-type]
    if mask is not None:
        _checks.same_device(("q", q), mask=mask)
        _checks.broadcasts(
            mask, (*q.shape[:3], k.shape[2]), "mask", "(batch, heads, Lq, Lk)"
        )
    return mask


def attention_entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy ``-sum p log p`` (nats) along ``dim``, with ``0 log 0 = 0``.

    ``probs``: any floating tensor; returns it reduced over ``dim`` (an empty ``dim``
    gives 0), in its dtype (float16 and bfloat16 are summed in float32). Uses
    ``torch.special.xlogy``, which is exact at zero and gives finite gradients for
    positive weights.

    Raises:
        TypeError: ``probs`` is not a floating tensor, ``dim`` not an int.
        ValueError: ``dim`` out of range.
    """
    _checks.tensor(probs, "probs")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    rank = max(probs.dim(), 1)
    if not -rank <= dim < rank:
        raise ValueError(f"dim must lie in [{-rank}, {rank}), got {dim}")
    p = probs.to(_checks.compute_dtype(probs.dtype))
    return (-torch.special.xlogy(p, p).sum(dim)).to(probs.dtype)


def _check_temperature(lam: float, head_dim: int) -> float:
    head_dim = _checks.positive_int(head_dim, "head_dim")
    if head_dim < 3:
        raise ValueError(f"head_dim must be an int >= 3, got {head_dim}")
    return _checks.real(lam, "lam", positive=True)


def entropy_gap(lam: float, head_dim: int, *, digits: int = 30) -> float:
    """``H - log n`` for many random keys, by quadrature of the large-``n`` form.

    With ``|q| = |k| = sqrt(d)`` and ``k`` uniform on the sphere, the score is
    ``s = d c`` with ``c = cos(theta)`` of density proportional to
    ``(1 - c^2)^((d - 3)/2)`` on ``[-1, 1]``, and
    ``H - log n -> log E[e^(lam s)] - lam E[s e^(lam s)] / E[e^(lam s)]``.
    The three integrals are done by ``mpmath.quad`` at ``digits`` significant digits.

    Raises:
        ValueError: ``head_dim < 3``, ``digits < 1`` or ``lam`` not positive and
            finite.
        TypeError: ``lam`` is not a real number, ``head_dim`` or ``digits`` not an int.
    """
    lam = _check_temperature(lam, head_dim)
    digits = _checks.positive_int(digits, "digits")
    with mpmath.workdps(digits):
        power = mpmath.mpf(head_dim - 3) / 2
        lam_d = mpmath.mpf(lam) * head_dim
        cuts = [-1, 0, 0.5, 1]  # the integrand peaks near c = 0.6 when lam ~ 1

        def weight(c: mpmath.mpf) -> mpmath.mpf:
            return (1 - c * c) ** power * mpmath.exp(lam_d * c)

        mass = mpmath.quad(weight, cuts)
        first = mpmath.quad(lambda c: c * weight(c), cuts)
        norm = mpmath.quad(lambda c: (1 - c * c) ** power, cuts)
        return float(mpmath.log(mass / norm) - lam_d * first / mass)


def laplace_entropy_gap(lam: float, head_dim: int) -> float:
    """The Laplace approximation ``(d/2) log(1 - c*^2)`` of :func:`entropy_gap`.

    ``c*`` is the stationary point of ``lam c + log(1 - c^2) / 2``, the root in
    ``(0, 1)`` of ``lam (1 - c^2) = c``: ``c* = 2 lam / (1 + s)``,
    ``s = sqrt(1 + 4 lam^2)`` (the rationalised form, accurate for small ``lam``).
    Near ``c* = 1`` (large ``lam``) ``1 - c*`` is taken as
    ``(1 + 1 / (s + 2 lam)) / (1 + s)``, free of cancellation, so the result is finite
    and accurate for every positive finite ``lam``.

    Raises: as :func:`entropy_gap`.
    """
    lam = _check_temperature(lam, head_dim)
    s = math.hypot(1.0, 2 * lam)  # no overflow of 4 lam^2
    c = 2 * lam / (1 + s)
    if c <= 0.5:
        return head_dim / 2 * math.log1p(-c * c)
    log_one_minus_c = math.log1p(1 / (s + 2 * lam)) - math.log1p(s)
    return head_dim / 2 * (log_one_minus_c + math.log1p(c))


def _check_tokens(module: nn.Module, values: object, salience: object) -> None:
    """Two ``(batch, length)`` floating tensors on the module's device and dtype."""
    for name, t in (("values", values), ("salience", salience)):
        _checks.tensor(t, name)
        assert isinstance(t, Tensor)
        if t.dim() != 2:
            raise ValueError(
                f"{name} must have 2 dimensions (batch, length), got shape "
                f"{tuple(t.shape)}"
            )
    assert isinstance(values, Tensor) and isinstance(salience, Tensor)
    if salience.shape != values.shape:
        raise ValueError(
            f"values and salience must both be (batch, length) of one shape, got "
            f"{tuple(values.shape)} and salience {tuple(salience.shape)}"
        )
    weight = next(module.parameters())
    if values.device != weight.device:
        raise ValueError(
            f"values is on {values.device} but the module is on {weight.device}"
        )
    if values.dtype != weight.dtype:
        raise TypeError(
            f"values has dtype {values.dtype} but the module has {weight.dtype}"
        )
    _checks.same_device(("values", values), salience=salience)
    _checks.same_dtype(("values", values), salience=salience)


class SalientValueHead(nn.Module):
    """One attention head that learns a soft arg-max (``kexue.tasks.salient_value``).

    Each token ``(value, salience)`` is embedded to ``width``; one head of
    :func:`scaled_attention` with the scale in ``self.scale`` (``"standard"`` or
    ``"entropy_invariant"``, calibrated at ``train_length``) mixes them, and a linear
    read-out gives one number per position. No positions: the task needs none.

    Raises (constructor): TypeError for a non-int ``width`` or ``train_length``,
    ValueError for ``width < 1`` or ``train_length < 2``. ``forward`` and ``entropy``
    raise TypeError for non-floating inputs or a dtype other than the module's and
    ValueError for shapes other than ``(batch, length)`` or another device.
    """

    def __init__(self, width: int = 32, *, train_length: int = 32) -> None:
        super().__init__()
        width = _checks.positive_int(width, "width")
        train_length, _ = _lengths(train_length, None)
        self.width, self.train_length = width, train_length
        self.scale: Literal["standard", "entropy_invariant"] = "standard"
        self.embed = nn.Linear(2, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, 1)

    def _qkv(self, values: Tensor, salience: Tensor) -> tuple[Tensor, ...]:
        _check_tokens(self, values, salience)
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
        """The mean attention entropy (nats) of the head's rows, a 0-dim tensor (0 for
        an empty batch or length)."""
        q, k, _ = self._qkv(values, salience)
        n = q.shape[-2]
        if self.scale == "standard":
            row_scale = 1 / math.sqrt(self.width)
        else:  # a Python number: no device sync
            row_scale = math.log(max(n, 1)) / math.log(self.train_length)
            row_scale /= math.sqrt(self.width)
        rows = attention_entropy(masked_softmax(row_scale * q @ k.mT))
        return rows.sum() / max(rows.numel(), 1)
