"""Rotary position embedding (RoPE), as derived in Su Jianlin's kexue.fm/archives/8265.

Each pair of features of a query or key at position ``m`` is rotated by the angle
``m * theta_i``, with the same frequencies ``theta_i = base^(-2i/dim)`` as the
sinusoidal encoding (:func:`frequencies`, shared). Rotations compose,
``R_m^T R_n = R_(n-m)``, so attention scores ``<R_m q, R_n k>`` depend on positions
only through ``n - m``.

Two layouts of the pairs are in use, and both are supported:

* ``"interleaved"``: pairs ``(x[2i], x[2i+1])``, as in the article, RoFormer and
  bert4keras;
* ``"half"``: pairs ``(x[i], x[i + dim/2])``, as in Llama-style code (``rotate_half``).

With the permutation ``P = [0, 2, 4, ..., 1, 3, 5, ...]``,
``half(x[P]) == interleaved(x)[P]``: the layouts differ only in how a checkpoint's
features are ordered, and give the same scores when q and k agree.

:class:`OneLayerAttention` and :func:`lag_copy_batch` are the small model and the task
with which the chapter tests whether attention can use the rotation.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import Tensor, nn

from kexue.positions._validation import (
    as_positions,
    check_dim_and_base,
    check_initial_length,
)
from kexue.positions.sinusoidal import frequencies, sinusoidal_embedding

__all__ = [
    "OneLayerAttention",
    "RotaryEmbedding",
    "apply_rope",
    "decay_bound",
    "lag_copy_batch",
    "rope_angles",
    "rope_cos_sin",
    "rope_linear_attention",
]

Layout = Literal["interleaved", "half"]
LAYOUTS: tuple[str, ...] = ("interleaved", "half")
#: The position encodings :class:`OneLayerAttention` offers.
ENCODINGS: tuple[str, ...] = ("none", "sinusoidal", "rope")
#: The target :func:`lag_copy_batch` gives positions with nothing ``lag`` places back.
IGNORE_INDEX = -100


def rope_angles(
    positions: Tensor,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The angles ``m * theta_i`` reduced to ``[-pi, pi]``, of shape
    ``positions.shape + (dim // 2,)``.

    The product is formed and reduced in float64 (float32 on Apple MPS, which has no
    float64) and only then cast to ``dtype``: a float32 product ``m * theta_0`` is
    already off by 0.004 rad at ``m = 1e5``, while the reduced angle carries at most one
    float32 rounding, about 2e-7 rad, at any position.
    """
    positions = as_positions(positions)
    check_dim_and_base(dim, base)
    angle_dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    theta = _frequency_table(dim, float(base), angle_dtype, positions.device)
    angles = positions.to(angle_dtype).unsqueeze(-1) * theta
    # reduce to [-pi, pi]; faster than fmod in float64
    turns = torch.round(angles * (1 / (2 * math.pi)))
    return (angles - turns * (2 * math.pi)).to(dtype)


@functools.lru_cache(maxsize=64)
def _frequency_table(
    dim: int, base: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """:func:`frequencies`, computed once per (dim, base, dtype, device); internal,
    never handed out."""
    return frequencies(dim, base=base, dtype=dtype, device=device)


def rope_cos_sin(
    positions: Tensor,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """``cos(m theta_i)`` and ``sin(m theta_i)`` in ``dtype``, each of shape
    ``positions.shape + (dim/2,)``.

    Cosine and sine are taken of the reduced angles of :func:`rope_angles`."""
    angles = rope_angles(positions, dim, base=base, dtype=dtype)
    return torch.cos(angles), torch.sin(angles)


def _rotate_interleaved(x: Tensor, cis: Tensor) -> Tensor:
    """Pairs ``(x[2i], x[2i+1])`` as complex numbers, times ``cis = cos + i sin``: one
    multiplication."""
    real_dtype = torch.float64 if cis.dtype == torch.complex128 else torch.float32
    if x.dtype != real_dtype:
        x = x.to(real_dtype)
    if not x.is_contiguous() and (
        x.stride(-1) != 1
        or x.storage_offset() % 2
        or any(s % 2 for s in x.stride()[:-1])
    ):
        x = x.contiguous()  # view_as_complex needs (real, imag) adjacent in memory
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * cis).flatten(-2)


def _rotate_half(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Pairs ``(x[i], x[i + dim/2])``, written into one preallocated output (no ``cat``)
    unless autograd is recording, where the differentiable form is used."""
    x = x.to(cos.dtype)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    if torch.is_grad_enabled() and (
        x.requires_grad or cos.requires_grad or sin.requires_grad
    ):
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    out = torch.empty_like(x)
    out1, out2 = out[..., :half], out[..., half:]
    torch.mul(x1, cos, out=out1)
    out1.addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=out2)
    out2.addcmul_(x1, sin)
    return out


def apply_rope(
    x: Tensor,
    positions: Tensor | None = None,
    *,
    base: float = 10000.0,
    layout: Layout = "interleaved",
) -> Tensor:
    """Rotary position embedding of queries or keys.

    Args:
        x: tensor of shape ``(..., seq, dim)``, e.g. ``(batch, heads, seq, head_dim)``;
            ``dim`` even.
        positions: integer or real positions, broadcastable to ``x.shape[:-1]``
            without enlarging it (e.g. ``(seq,)`` or ``(batch, 1, seq)``);
            ``0, 1, ..., seq - 1`` when omitted.
        base: the frequency base.
        layout: ``"interleaved"`` (pairs ``2i, 2i+1``, as in the article) or ``"half"``
            (pairs ``i, i + dim/2``, as in Llama-style code).

    Returns:
        Tensor of the shape, dtype and device of ``x``. The rotation is computed in
        float32 for half-precision inputs (rounded once at the end) and in the input's
        precision otherwise.

    Raises:
        TypeError: ``x`` is not a floating tensor, or ``positions`` is boolean or
            complex.
        ValueError: odd or missing ``dim``, unknown ``layout``, ``positions`` that do
            not broadcast to ``x.shape[:-1]``, or ``positions`` on another device.
    """
    _check_input(x, layout)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)
    positions = _check_positions(positions, x)
    angles = rope_angles(
        positions, x.shape[-1], base=base, dtype=_compute_dtype(x.dtype)
    )
    if layout == "interleaved":
        rotated = _rotate_interleaved(
            x, torch.complex(torch.cos(angles), torch.sin(angles))
        )
    else:
        rotated = _rotate_half(x, torch.cos(angles), torch.sin(angles))
    return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)


def decay_bound(distances: Tensor, dim: int, *, base: float = 10000.0) -> Tensor:
    """The article's long-range bound on RoPE scores, ``(1 / (dim/2)) * sum_j |S_j|``.

    With ``S_j = sum_{i < j} exp(1j * s * theta_i)`` for ``j = 1 .. dim/2`` and relative
    distance ``s``, Abel summation bounds
    ``|q^T R_s k| <= max_i |h_(i+1) - h_i| * sum_j |S_j|``, where ``h_i`` are the
    complex products of the query and key pairs (with ``h_(dim/2) = 0``). The factor
    ``sum_j |S_j|``, averaged over ``j``, depends on the distance alone and decays with
    it. Equals ``(dim/2 + 1) / 2`` at ``s = 0``.

    Args:
        distances: relative positions ``s``, any shape (a number or a tensor).
        dim: head dimension, positive and even.
        base: the frequency base.

    Returns:
        float64 tensor of the shape of ``distances``.
    """
    distances = as_positions(distances)
    theta = frequencies(dim, base=base, device=distances.device)
    angles = distances.to(torch.float64).unsqueeze(-1) * theta
    # S_1 .. S_(dim/2)
    partial_sums = torch.cumsum(torch.polar(torch.ones_like(angles), angles), dim=-1)
    return partial_sums.abs().mean(-1)


def rope_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor | None = None,
    *,
    base: float = 10000.0,
    layout: Layout = "interleaved",
    rotate_denominator: bool = False,
) -> Tensor:
    """Non-causal linear attention with RoPE, as the article suggests: rotate the
    numerator only.

    With the feature map ``phi = elu + 1`` (positive), output ``i`` is
    ``sum_j (R_i phi(q_i))^T (R_j phi(k_j)) v_j / sum_j phi(q_i)^T phi(k_j)``: the
    numerator sees relative positions, the denominator stays a sum of positive terms.
    The resulting weights can be negative and need not sum to 1, so this is no longer a
    normalised average. ``rotate_denominator=True`` rotates the denominator too, which
    the article warns against: it can come arbitrarily close to zero.

    Args:
        q, k: tensors of shape ``(..., seq, dim)``; v: ``(..., seq, dim_v)``.
        positions: as in :func:`apply_rope` (``0 .. seq - 1`` when omitted), used for
            queries and keys.

    Returns:
        Tensor of shape ``(..., seq, dim_v)``. Costs ``O(seq * dim * dim_v)``: no
        ``seq x seq`` matrix.
    """
    if q.shape != k.shape or q.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            "q and k must have the same shape and v the same leading shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    phi_q, phi_k = nn.functional.elu(q) + 1, nn.functional.elu(k) + 1
    rot_q = apply_rope(phi_q, positions, base=base, layout=layout)
    rot_k = apply_rope(phi_k, positions, base=base, layout=layout)
    numerator = rot_q @ (rot_k.transpose(-1, -2) @ v)
    if rotate_denominator:
        denominator = rot_q @ rot_k.sum(-2, keepdim=True).transpose(-1, -2)
    else:
        denominator = phi_q @ phi_k.sum(-2, keepdim=True).transpose(-1, -2)
    return numerator / denominator


class RotaryEmbedding(nn.Module):
    """RoPE for attention layers, with cached cosine/sine tables.

    ``forward(x, positions=None)`` equals ``apply_rope(x, positions, base=base,
    layout=layout)``. For integer positions ``0 <= m < len(cache)`` the tables are
    looked up in a cache kept per device and dtype and grown (doubling) when a larger
    position arrives; real or negative positions are computed directly.

    Args:
        dim: the head dimension, positive and even.
        base: the frequency base.
        layout: ``"interleaved"`` or ``"half"``.
        initial_length: positions tabulated on first use.
    """

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10000.0,
        layout: Layout = "interleaved",
        initial_length: int = 512,
    ) -> None:
        super().__init__()
        check_dim_and_base(dim, base)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        check_initial_length(initial_length)
        self.dim, self.base, self.layout = dim, float(base), layout
        self.initial_length = initial_length
        # per (device, dtype): the complex table cos + i sin (interleaved) or the pair
        # (cos, sin) (half)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}
        self._last_slice: tuple[object, tuple[Tensor, ...]] = (None, ())

    def tables(
        self, length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """Cached tables for positions ``0 .. n - 1`` with ``n >= length``, on
        ``device`` in ``dtype``: ``(cis,)`` for the interleaved layout, ``(cos, sin)``
        for the half layout."""
        key = (device, dtype)
        cached = self._cache.get(key)
        if cached is None or cached[0].shape[0] < length:
            size = max(
                length, self.initial_length, 2 * cached[0].shape[0] if cached else 0
            )
            cached = self._make_tables(torch.arange(size, device=device), dtype)
            self._cache[key] = cached
            self._last_slice = (None, ())  # slices of the old tables are stale
        return cached

    def _make_tables(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
        angles = rope_angles(positions, self.dim, base=self.base, dtype=dtype)
        if self.layout == "interleaved":
            return (torch.complex(torch.cos(angles), torch.sin(angles)),)
        return torch.cos(angles), torch.sin(angles)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        _check_input(x, self.layout)
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the embedding was built "
                f"for {self.dim}"
            )
        dtype = _compute_dtype(x.dtype)
        if positions is None:
            seq = x.shape[-2]
            key = (x.device, dtype, seq)
            # slicing costs microseconds; calls usually repeat one length
            if self._last_slice[0] != key:
                self._last_slice = (
                    key,
                    tuple(t[:seq] for t in self.tables(seq, x.device, dtype)),
                )
            tables = self._last_slice[1]
        else:
            positions = _check_positions(positions, x)
            if positions.is_floating_point() or (
                positions.numel() and int(positions.min()) < 0
            ):
                tables = self._make_tables(positions, dtype)
            else:
                length = int(positions.max()) + 1 if positions.numel() else 0
                tables = tuple(
                    t[positions] for t in self.tables(length, x.device, dtype)
                )
        if self.layout == "interleaved":
            rotated = _rotate_interleaved(x, *tables)
        else:
            rotated = _rotate_half(x, *tables)
        return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, layout={self.layout!r}"


class OneLayerAttention(nn.Module):
    """Embedding, one causal attention head, a linear read-out: the smallest model in
    which attention must find a token by its position.

    Args:
        vocab: number of token types.
        width: embedding width, which is also the head dimension (even).
        encoding: ``"none"`` (no position information), ``"sinusoidal"`` (the sinusoidal
            encoding added to the token embeddings) or ``"rope"`` (queries and keys
            rotated by :class:`RotaryEmbedding`).

    ``forward(tokens)`` maps integer tokens of shape ``(batch, seq)`` to logits of shape
    ``(batch, seq, vocab)``; position ``t`` sees tokens ``0 .. t`` only.
    """

    def __init__(self, vocab: int, width: int, encoding: str = "rope") -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        _check_positive_int("vocab", vocab)
        _check_positive_int("width", width)
        self.encoding, self.width = encoding, width
        self.embed = nn.Embedding(vocab, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, vocab)
        self.rope = RotaryEmbedding(width)

    def forward(self, tokens: Tensor) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.is_floating_point():
            raise TypeError("tokens must be an integer tensor of shape (batch, seq)")
        if tokens.dim() != 2:
            raise ValueError(
                f"tokens must have shape (batch, seq), got {tuple(tokens.shape)}"
            )
        x = self.embed(tokens)
        if self.encoding == "sinusoidal":
            positions = torch.arange(tokens.shape[1], device=x.device)
            x = x + sinusoidal_embedding(positions, self.width)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.encoding == "rope":
            q, k = self.rope(q), self.rope(k)
        attended = nn.functional.scaled_dot_product_attention(
            q[:, None], k[:, None], v[:, None], is_causal=True
        )
        return self.read_out(attended[:, 0])


def lag_copy_batch(
    generator: torch.Generator,
    size: int,
    length: int,
    *,
    vocab: int,
    lag: int,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A batch of the task "output the token ``lag`` places back".

    Tokens are uniform over ``0 .. vocab - 1``, drawn on the CPU from ``generator`` (so
    a batch does not depend on the device); the target at position ``t`` is the token at
    ``t - lag``, and :data:`IGNORE_INDEX` for the first ``lag`` positions.

    Returns:
        ``(tokens, targets)``, two int64 tensors of shape ``(size, length)`` on
        ``device``.

    Raises:
        TypeError: ``generator`` is not a ``torch.Generator``.
        ValueError: ``size``, ``length`` or ``vocab`` not a positive int, or ``lag`` not
            an int in ``[1, length)``.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {generator!r}")
    for name, value in (("size", size), ("length", length), ("vocab", vocab)):
        _check_positive_int(name, value)
    if isinstance(lag, bool) or not isinstance(lag, int) or not 1 <= lag < length:
        raise ValueError(f"lag must be an int in [1, length = {length}), got {lag!r}")
    tokens = torch.randint(0, vocab, (size, length), generator=generator)
    targets = torch.roll(tokens, lag, dims=1)
    targets[:, :lag] = IGNORE_INDEX  # nothing lag places back
    return tokens.to(device), targets.to(device)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _check_input(x: Tensor, layout: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., seq, dim), got {tuple(x.shape)}")
    if x.shape[-1] % 2 or x.shape[-1] == 0:
        raise ValueError(
            f"the last dimension of x must be even (feature pairs), got {x.shape[-1]}"
        )
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _check_positions(positions: Tensor, x: Tensor) -> Tensor:
    positions = as_positions(positions)
    if positions.device != x.device:
        raise ValueError(f"positions are on {positions.device} but x is on {x.device}")
    # positions may broadcast up to x.shape[:-1], never beyond (checked by hand: fast)
    leading = x.shape[:-1]
    if positions.dim() > len(leading) or any(
        p not in (1, size)
        for p, size in zip(reversed(positions.shape), reversed(leading), strict=False)
    ):
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} must broadcast to "
            f"x.shape[:-1] = {tuple(leading)}"
        )
    return positions
