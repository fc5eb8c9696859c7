"""The gated attention unit (GAU) and relu² attention, after kexue.fm/archives/9019.

FLASH (Hua et al., arXiv 2202.10447) fuses a GLU with single-head attention: from
``(batch, n, dim)`` inputs, ``[u, v, z] = swish(Dense(x))``, queries and keys are two
per-dimension scale-offsets of ``z``, and ``out = Dense(u * (A v))``. Its attention
matrix is ``A = relu(q k^T / sqrt(s))^2 / n``, not a softmax. The article asks what
``n`` should be when the length changes, and finds that the row normaliser of trained,
local attention does not grow like ``n``; so :func:`relu2_attention` offers three
normalisers (the number of visible keys, a fixed length, the row's own sum) and
:class:`GatedAttentionUnit` also runs with softmax or with the entropy-invariant
softmax ``softmax_plus`` (``log n / log train_length`` times the logits).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.attention.entropy_scale import scaled_attention
from kexue.foundations.masking import as_sdpa_mask, keep_mask
from kexue.positions.rope import apply_rope

__all__ = [
    "GatedAttentionUnit",
    "relu2_attention",
]

Normalizer = Literal["length", "fixed", "sum"]
_NORMALIZERS = ("length", "fixed", "sum")
_ATTENTIONS = ("relu2", "softmax", "softmax_plus")


def relu2_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    normalizer: Normalizer = "length",
    length: float | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """``A v`` with ``A = relu(q k^T / sqrt(d) + bias)^2 / Z``, per query row.

    Args:
        q: ``(..., n, d)``; k: ``(..., m, d)``; v: ``(..., m, e)``; one floating
            dtype, one device, equal leading dimensions.
        normalizer: what ``Z`` is for row ``i``: ``"length"``, the number of keys the
            row may see (``m`` without a mask; the unmasked count with one; ``i + 1``
            when causal), as GAU's ``1/n``; ``"fixed"``, the number ``length`` for
            every row (GAU with ``n`` frozen at the training length); ``"sum"``, the
            row's own total ``sum_j relu(...)^2`` (a row whose total is 0 gives zeros).
        length: the fixed ``Z``, a positive finite number; required with
            ``normalizer="fixed"`` and rejected otherwise.
        mask: SDPA's convention, broadcastable to ``(..., n, m)`` without growing it:
            boolean (True = may attend) or floating, *added to the scaled logits
            before the relu* (``-inf`` drops a key; a finite value shifts where the
            relu cuts, as FLASH adds its relative-position bias). A NaN bias drops the
            key. A biased key still counts as visible for ``"length"``.
        causal: row ``i`` sees keys ``j <= i`` only (top left aligned, as SDPA).

    Returns:
        ``(..., n, e)`` in the dtype of ``q``; half precision is computed in float32
        (``relu(s)^2`` overflows float16 from ``s = 256``). A row that may see no key
        returns zeros with zero gradient; keys that no row sees, and rows that see
        nothing, are zeroed first, so NaN or inf stored there does not leak. Empty in,
        empty out. A kept ``+inf`` logit gives inf or NaN, as in softmax.

    Raises:
        TypeError: ``q``, ``k``, ``v`` not floating tensors of one dtype; an integer
            ``mask``; ``causal`` not a bool; ``length`` not a number.
        ValueError: ranks or shapes that do not fit, tensors on different devices, an
            unknown ``normalizer``, a missing, unused or non-positive ``length``.
    """
    _checks.qkv(q, k, v)
    kind = _checks.choice(normalizer, "normalizer", _NORMALIZERS)
    length = _fixed_length(kind, length)
    _checks.flag(causal, "causal")
    mask = as_sdpa_mask(mask, "mask")
    n, m, d = q.shape[-2], k.shape[-2], q.shape[-1]
    if mask is not None:
        _checks.same_device(("q", q), mask=mask)
        _checks.broadcasts(mask, (*q.shape[:-1], m), "mask", "(..., n, m)")
    dtype = _checks.compute_dtype(q.dtype)
    qs, ks, vs = (t.to(dtype) for t in (q, k, v))
    keep = _visible(n, m, mask, causal, q.device)  # None: every key visible
    if keep is None and kind != "sum":  # Z is one number: fold it and sqrt(d) into q
        z = length if length is not None else max(m, 1)  # relu(s)^2/Z = relu(s/√Z)^2
        scores = (qs / math.sqrt(max(d, 1) * z)) @ ks.mT
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            return (F.relu(scores).square() @ vs).to(q.dtype)
        return (F.relu(scores, inplace=True).square_() @ vs).to(q.dtype)
    if keep is not None:  # zero what nobody may read: NaN there must not leak
        zero = torch.zeros((), dtype=dtype, device=q.device)
        seen = keep.any(-2).unsqueeze(-1)  # (..., m, 1)
        ks, vs = torch.where(seen, ks, zero), torch.where(seen, vs, zero)
        qs = torch.where(keep.any(-1, keepdim=True), qs, zero)
    scores = qs @ ks.mT / math.sqrt(max(d, 1))
    if mask is not None and mask.dtype != torch.bool:
        scores = scores + mask.to(dtype)
    if keep is not None:
        scores = scores.masked_fill(~keep, 0.0)  # relu(0)^2 = 0, with zero gradient
    weights = F.relu(scores).square()
    out = (weights / _row_normalizer(weights, keep, kind, length, m)) @ vs
    return out.to(q.dtype)


def _fixed_length(normalizer: str, length: object) -> float | None:
    if normalizer != "fixed":
        if length is not None:
            raise ValueError(
                f"length is used only with normalizer='fixed', got length={length!r} "
                f"with normalizer={normalizer!r}"
            )
        return None
    if length is None:
        raise ValueError("normalizer='fixed' needs length, a positive number")
    return _checks.real(length, "length", positive=True)


def _visible(
    n: int, m: int, mask: Tensor | None, causal: bool, device: torch.device
) -> Tensor | None:
    """Which keys each row may see, boolean of at least 2 dimensions, or None (all)."""
    keep = None
    if causal:
        keep = torch.ones(n, m, dtype=torch.bool, device=device).tril()
    if mask is not None:
        visible = keep_mask(mask)
        keep = visible if keep is None else keep & visible
    if keep is not None and keep.dim() < 2:  # a 0-dim or (m,) mask
        keep = keep.expand(n, m)
    return keep


def _row_normalizer(
    weights: Tensor,
    keep: Tensor | None,
    normalizer: str,
    length: float | None,
    m: int,
) -> Tensor | float:
    """``Z`` of every row, ``(..., n, 1)`` or a number; 1 where a row has nothing."""
    if normalizer == "fixed":
        assert length is not None
        return length
    if normalizer == "length":
        if keep is None:
            return float(max(m, 1))
        return keep.sum(-1, keepdim=True).clamp_min(1).to(weights.dtype)
    total = weights.sum(-1, keepdim=True)
    return torch.where(total > 0, total, torch.ones_like(total))


class GatedAttentionUnit(nn.Module):
    """FLASH's gated attention unit (one head), with relu² or softmax attention.

    ``[u, v, z] = silu(x W_i + b_i)`` with widths ``(e, e, s)``, ``e = expansion * dim``
    and ``s = key_dim``; ``q = z * gamma_q + beta_q``, ``k = z * gamma_k + beta_k``
    (per dimension), rotated by RoPE (``rope=True``, interleaved pairs, positions
    ``0 .. n-1``); ``out = (u * (A v)) W_o + b_o``. ``A`` is:

    - ``"relu2"``: :func:`relu2_attention` with ``normalizer`` (default ``"length"``,
      the FLASH formula's ``1/n`` with ``n`` the visible keys; ``"fixed"`` freezes
      ``n`` at ``train_length``; ``"sum"`` divides by the row's own total);
    - ``"softmax"``: ``softmax(q k^T / sqrt(s))`` (:func:`scaled_attention`);
    - ``"softmax_plus"``: softmax with the entropy-invariant scale
      ``log(n_i) / log(train_length) / sqrt(s)``, ``n_i`` the keys row ``i`` sees.

    Scale-offset starts at ``gamma = 1``, ``beta = 0`` (as bert4keras; FLASH-pytorch
    draws ``gamma`` from ``N(0, 0.02^2)``); the dense layers use torch's default
    initialisation. No residual connection or normalisation: that is the block's job.

    Args:
        dim: model width; expansion: ``e / dim``; key_dim: ``s`` (even when ``rope``).
        attention: ``"relu2"``, ``"softmax"`` or ``"softmax_plus"``.
        normalizer: only with ``"relu2"`` (see above); None means ``"length"``.
        train_length: the length at which ``softmax_plus`` equals softmax and at which
            ``normalizer="fixed"`` freezes ``n``, an int >= 2.
        rope: rotate queries and keys by their positions.

    Shapes:
        ``x``: ``(batch, n, dim)`` of the module's dtype and device; ``mask``: SDPA
        convention broadcastable to ``(batch, n, n)`` (a key padding mask ``(batch,
        n)`` is passed as ``mask[:, None, :]``); output ``(batch, n, dim)``. Half
        precision: dense layers in the module's dtype, attention in float32.

    Raises:
        TypeError: sizes not ints, ``rope`` not a bool; in ``forward``, ``x`` not a
            floating tensor of the module's dtype, an integer ``mask``, ``causal``
            not a bool.
        ValueError: sizes out of range, an odd ``key_dim`` with ``rope``, an unknown
            ``attention`` or ``normalizer``, a ``normalizer`` with softmax; in
            ``forward``, ``x`` not ``(batch, n, dim)``, or a ``mask`` that does not
            broadcast or lies on another device.
    """

    def __init__(
        self,
        dim: int,
        *,
        expansion: int = 2,
        key_dim: int = 128,
        attention: Literal["relu2", "softmax", "softmax_plus"] = "relu2",
        normalizer: Normalizer | None = None,
        train_length: int = 512,
        rope: bool = True,
    ) -> None:
        super().__init__()
        dim = _checks.positive_int(dim, "dim")
        expansion = _checks.positive_int(expansion, "expansion")
        key_dim = _checks.positive_int(key_dim, "key_dim")
        self.attention = _checks.choice(attention, "attention", _ATTENTIONS)
        self.normalizer = _unit_normalizer(self.attention, normalizer)
        self.train_length = _checks.positive_int(train_length, "train_length")
        if self.train_length < 2:
            raise ValueError(f"train_length must be an int >= 2, got {train_length}")
        self.rope = _checks.flag(rope, "rope")
        if rope and key_dim % 2:
            raise ValueError(f"key_dim must be even with rope=True, got {key_dim}")
        self.dim, self.hidden, self.key_dim = dim, expansion * dim, key_dim
        self.dense_in = nn.Linear(dim, 2 * self.hidden + key_dim)
        self.gamma = nn.Parameter(torch.ones(2, key_dim))  # rows: queries, keys
        self.beta = nn.Parameter(torch.zeros(2, key_dim))
        self.dense_out = nn.Linear(self.hidden, dim)

    def extra_repr(self) -> str:
        kind = self.attention + (f"/{self.normalizer}" if self.normalizer else "")
        return (
            f"dim={self.dim}, hidden={self.hidden}, key_dim={self.key_dim}, "
            f"attention={kind}, train_length={self.train_length}, rope={self.rope}"
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """``(batch, n, dim)`` to ``(batch, n, dim)``; see the class docstring."""
        mask = self._check(x, mask, causal)
        u, v, q, k = self._project(x)
        return self.dense_out(u * self._attend(q, k, v, mask, causal))

    def scores(self, x: Tensor) -> Tensor:
        """The logits ``q k^T / sqrt(s)`` ``(batch, n, n)`` that ``A`` is made of (the
        relu² or softmax input, before masks and, for ``softmax_plus``, before the
        ``log n`` factor). ``x`` as in ``forward``; errors as ``forward``."""
        self._check(x, None, False)
        _, _, q, k = self._project(x)
        dtype = _checks.compute_dtype(q.dtype)
        return q.to(dtype) @ k.to(dtype).mT / math.sqrt(self.key_dim)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``u, v`` ``(batch, n, e)`` and the rotated ``q, k`` ``(batch, n, s)``."""
        u, v, z = F.silu(self.dense_in(x)).split(
            (self.hidden, self.hidden, self.key_dim), dim=-1
        )
        q, k = (z.unsqueeze(-2) * self.gamma + self.beta).unbind(-2)  # per dimension
        if self.rope:
            q, k = apply_rope(q), apply_rope(k)
        return u, v, q, k

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool
    ) -> Tensor:
        if self.attention == "relu2":
            length = self.train_length if self.normalizer == "fixed" else None
            return relu2_attention(
                q,
                k,
                v,
                normalizer=self.normalizer,  # type: ignore[arg-type]
                length=length,
                mask=mask,
                causal=causal,
            )
        if mask is not None and mask.dim() == 3:  # (batch, n, n): add a head axis
            mask = mask.unsqueeze(1)
        scale = "standard" if self.attention == "softmax" else "entropy_invariant"
        out = scaled_attention(
            q.unsqueeze(1),
            k.unsqueeze(1),
            v.unsqueeze(1),
            scale=scale,  # type: ignore[arg-type]
            train_length=self.train_length,
            mask=mask,
            causal=causal,
        )
        return out.squeeze(1)

    def _check(self, x: object, mask: object, causal: object) -> Tensor | None:
        _checks.tensor(x, "x", ndim=3)
        assert isinstance(x, Tensor)
        weight = self.dense_in.weight
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be (batch, n, dim={self.dim}), got shape {tuple(x.shape)}"
            )
        if x.device != weight.device:
            raise ValueError(f"x is on {x.device} but the module is on {weight.device}")
        if x.dtype != weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the module has {weight.dtype}")
        _checks.flag(causal, "causal")
        mask = as_sdpa_mask(mask, "mask")  # type: ignore[arg-type]
        if mask is not None:
            _checks.same_device(("x", x), mask=mask)
            n = x.shape[1]
            _checks.broadcasts(mask, (x.shape[0], n, n), "mask", "(batch, n, n)")
        return mask


def _unit_normalizer(attention: str, normalizer: object) -> str | None:
    if attention != "relu2":
        if normalizer is not None:
            raise ValueError(
                f"normalizer applies to attention='relu2' only, got "
                f"normalizer={normalizer!r} with attention={attention!r}"
            )
        return None
    if normalizer is None:
        return "length"
    return _checks.choice(normalizer, "normalizer", _NORMALIZERS)
