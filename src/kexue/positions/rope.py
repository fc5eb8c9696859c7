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

from kexue import _checks
from kexue.positions._validation import (
    MAX_CACHED_LENGTH,
    as_positions,
    dim_and_base,
    even_dim,
    token_ids,
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
LAYOUTS: tuple[Layout, ...] = ("interleaved", "half")
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

    Raises:
        TypeError: ``positions`` boolean, complex or not numeric, ``dim`` not an int,
            ``base`` not a number, or ``dtype`` not a floating dtype.
        ValueError: ``dim`` not positive and even, or ``base`` not a finite number
            above 1.
    """
    positions = as_positions(positions)
    dim, base = dim_and_base(dim, base)
    dtype = _checks.float_dtype(dtype)
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

    Cosine and sine are taken of the reduced angles of :func:`rope_angles`, whose
    errors this raises."""
    angles = rope_angles(positions, dim, base=base, dtype=dtype)
    return torch.cos(angles), torch.sin(angles)


def _rotate_interleaved(x: Tensor, cis: Tensor) -> Tensor:
    """Pairs ``(x[2i], x[2i+1])`` as complex numbers, times ``cis = cos + i sin``: one
    multiplication."""
    real_dtype = torch.float64 if cis.dtype == torch.complex128 else torch.float32
    if x.dtype != real_dtype:
        x = x.to(real_dtype)
    # view_as_complex needs (real, imag) adjacent and each pair aligned: even strides
    # and an even storage offset. A contiguous view at an odd offset (x[..., 1:] of a
    # contiguous tensor) needs a fresh copy too, which .contiguous() would not make.
    if (
        x.stride(-1) != 1
        or x.storage_offset() % 2
        or any(s % 2 for s in x.stride()[:-1])
    ):
        x = x.clone(memory_format=torch.contiguous_format)
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
        ValueError: ``x`` of rank below 2 or with an odd or zero last dimension,
            unknown ``layout``, ``positions`` that do not broadcast to
            ``x.shape[:-1]`` or lie on another device, or a bad ``base``.
    """
    _check_x(x)
    layout = _check_layout(layout)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)
    else:
        positions = _check_positions(positions, x)
    return _rope(x, positions, base, layout)


def _rope(x: Tensor, positions: Tensor, base: float, layout: str) -> Tensor:
    """:func:`apply_rope` on checked arguments."""
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
        float64 tensor of the shape of ``distances``, on its device.

    Raises:
        TypeError: ``distances`` boolean, complex or not numeric, or ``dim`` not an
            int.
        ValueError: ``dim`` not positive and even, or ``base`` not a finite number
            above 1.
    """
    distances = as_positions(distances, "distances")
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
        q, k: floating tensors of shape ``(..., seq, dim)``, ``dim`` even; v:
            ``(..., seq, dim_v)``; one dtype and device.
        positions: as in :func:`apply_rope` (``0 .. seq - 1`` when omitted), used for
            queries and keys.
        rotate_denominator: a bool.

    Returns:
        Tensor of shape ``(..., seq, dim_v)`` in the dtype of ``q``: half precision is
        computed in float32, since the normaliser, a sum over ``seq`` positive terms,
        overflows float16 (about 1.7e5 at ``seq = 2048``, ``dim = 64``). Costs
        ``O(seq * dim * dim_v)``: no ``seq x seq`` matrix.

    Raises:
        TypeError: ``q``, ``k`` or ``v`` not floating or of different dtypes,
            ``positions`` boolean or complex, ``rotate_denominator`` not a bool.
        ValueError: shapes that do not fit (``k`` must have the shape of ``q``), an
            odd ``dim``, tensors on different devices, a bad ``layout`` or ``base``.
    """
    _checks.qkv(q, k, v)
    if k.shape != q.shape:
        raise ValueError(
            "k must have the shape of q (queries and keys share positions), got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    _check_x(q, "q")
    layout = _check_layout(layout)
    if not isinstance(rotate_denominator, bool):
        kind = type(rotate_denominator).__name__
        raise TypeError(f"rotate_denominator must be a bool, got {kind}")
    if positions is None:
        positions = torch.arange(q.shape[-2], device=q.device)
    else:
        positions = _check_positions(positions, q, x_name="q")
    work = _checks.compute_dtype(q.dtype)
    q32, k32, v32 = (t.to(work) for t in (q, k, v))
    phi_q, phi_k = nn.functional.elu(q32) + 1, nn.functional.elu(k32) + 1
    rot_q = _rope(phi_q, positions, base, layout)
    rot_k = _rope(phi_k, positions, base, layout)
    numerator = rot_q @ (rot_k.transpose(-1, -2) @ v32)
    if rotate_denominator:
        denominator = rot_q @ rot_k.sum(-2, keepdim=True).transpose(-1, -2)
    else:
        denominator = phi_q @ phi_k.sum(-2, keepdim=True).transpose(-1, -2)
    return (numerator / denominator).to(q.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE for attention layers, with cached cosine/sine tables.

    ``forward(x, positions=None)`` equals ``apply_rope(x, positions, base=base,
    layout=layout)``, with the shapes, dtypes and errors of :func:`apply_rope` (and a
    ``ValueError`` when ``x.shape[-1] != dim``). For integer positions
    ``0 <= m < max_cached_length`` the tables are looked up in a cache kept per device
    and dtype and grown (doubling, never past ``max_cached_length`` rows) when a larger
    position arrives; real, negative or larger positions, and positions on the meta
    device, are computed directly, so one huge position allocates one row, not a
    table up to it.

    Args:
        dim: the head dimension, positive and even.
        base: the frequency base.
        layout: ``"interleaved"`` or ``"half"``.
        initial_length: positions tabulated on first use (at most
            ``max_cached_length``).
        max_cached_length: the most rows a cached table may hold (default
            ``MAX_CACHED_LENGTH``, 65,536).

    Raises:
        TypeError: ``dim``, ``initial_length`` or ``max_cached_length`` not an int.
        ValueError: ``dim`` not positive and even, ``base`` not a finite number above
            1, unknown ``layout``, or a length that is not positive.
    """

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10000.0,
        layout: Layout = "interleaved",
        initial_length: int = 512,
        max_cached_length: int = MAX_CACHED_LENGTH,
    ) -> None:
        super().__init__()
        self.dim, self.base = dim_and_base(dim, base)
        self.layout = _check_layout(layout)
        self.initial_length = _checks.positive_int(initial_length, "initial_length")
        self.max_cached_length = _checks.positive_int(
            max_cached_length, "max_cached_length"
        )
        # per (device, dtype): the complex table cos + i sin (interleaved) or the pair
        # (cos, sin) (half)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}
        self._last_slice: tuple[object, tuple[Tensor, ...]] = (None, ())

    def tables(
        self, length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """Cached tables for positions ``0 .. n - 1`` with
        ``length <= n <= max_cached_length``, on ``device`` in ``dtype``: ``(cis,)``
        for the interleaved layout, ``(cos, sin)`` for the half layout.

        Raises:
            ValueError: ``length`` exceeds ``max_cached_length``.
        """
        if length > self.max_cached_length:
            raise ValueError(
                f"length {length} exceeds max_cached_length = {self.max_cached_length}"
            )
        key = (device, dtype)
        cached = self._cache.get(key)
        if cached is None or cached[0].shape[0] < length:
            size = max(
                length, self.initial_length, 2 * cached[0].shape[0] if cached else 0
            )
            size = min(size, self.max_cached_length)
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
        _check_x(x)
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the embedding was built "
                f"for {self.dim}"
            )
        dtype = _compute_dtype(x.dtype)
        if positions is None:
            tables = self._leading(x.shape[-2], x.device, dtype)
        else:
            positions = _check_positions(positions, x)
            tables = self._lookup(positions, dtype)
        if self.layout == "interleaved":
            rotated = _rotate_interleaved(x, *tables)
        else:
            rotated = _rotate_half(x, *tables)
        return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)

    def _leading(
        self, seq: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, ...]:
        """Tables for positions ``0 .. seq - 1``."""
        if seq > self.max_cached_length:
            return self._make_tables(torch.arange(seq, device=device), dtype)
        key = (device, dtype, seq)
        # slicing costs microseconds; calls usually repeat one length
        if self._last_slice[0] != key:
            self._last_slice = (
                key,
                tuple(t[:seq] for t in self.tables(seq, device, dtype)),
            )
        return self._last_slice[1]

    def _lookup(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Tables for given positions: looked up when they are cacheable."""
        if (
            positions.is_floating_point()
            or positions.device.type == "meta"  # no values to look up
            or not positions.numel()
        ):
            return self._make_tables(positions, dtype)
        low, high = (int(v) for v in torch.aminmax(positions))  # one sync
        if low < 0 or high >= self.max_cached_length:
            return self._make_tables(positions, dtype)
        cached = self.tables(high + 1, positions.device, dtype)
        return tuple(t[positions] for t in cached)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, layout={self.layout!r}"


class OneLayerAttention(nn.Module):
    """Embedding, one causal attention head, a linear read-out: the smallest model in
    which attention must find a token by its position.

    Args:
        vocab: number of token types, a positive int.
        width: embedding width, which is also the head dimension (positive, even).
        encoding: ``"none"`` (no position information), ``"sinusoidal"`` (the sinusoidal
            encoding added to the token embeddings) or ``"rope"`` (queries and keys
            rotated by :class:`RotaryEmbedding`).

    ``forward(tokens)`` maps integer tokens of shape ``(batch, seq)`` in
    ``[0, vocab)``, on the model's device, to float logits of shape
    ``(batch, seq, vocab)``; position ``t`` sees tokens ``0 .. t`` only.

    Raises:
        TypeError: ``vocab`` or ``width`` not an int; ``tokens`` not an integer tensor.
        ValueError: unknown ``encoding``, ``vocab`` not positive, ``width`` not
            positive and even; ``tokens`` not 2-D, out of range or on another device.
    """

    def __init__(self, vocab: int, width: int, encoding: str = "rope") -> None:
        super().__init__()
        self.encoding = _checks.choice(encoding, "encoding", ENCODINGS)
        vocab = _checks.positive_int(vocab, "vocab")
        self.width = even_dim(width, "width")
        self.embed = nn.Embedding(vocab, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.read_out = nn.Linear(width, vocab)
        self.rope = RotaryEmbedding(width)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = token_ids(
            tokens, "tokens", self.embed.num_embeddings, self.embed.weight
        )
        x = self.embed(tokens)
        if self.encoding == "sinusoidal":
            positions = torch.arange(tokens.shape[1], device=x.device)
            x = x + sinusoidal_embedding(positions, self.width, dtype=x.dtype)
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
    ``t - lag``, and ``IGNORE_INDEX`` for the first ``lag`` positions.

    Returns:
        ``(tokens, targets)``, two int64 tensors of shape ``(size, length)`` on
        ``device`` (``size = 0``: an empty batch).

    Raises:
        TypeError: ``generator`` is not a ``torch.Generator``, or a size or ``lag`` is
            not an int.
        ValueError: ``size`` negative, ``length`` or ``vocab`` not positive, or ``lag``
            not in ``[1, length)``.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {generator!r}")
    size = _checks.nonnegative_int(size, "size")
    length = _checks.positive_int(length, "length")
    vocab = _checks.positive_int(vocab, "vocab")
    lag = _checks.positive_int(lag, "lag")
    if lag >= length:
        raise ValueError(f"lag must be an int in [1, length = {length}), got {lag}")
    tokens = torch.randint(0, vocab, (size, length), generator=generator)
    targets = torch.roll(tokens, lag, dims=1)
    targets[:, :lag] = IGNORE_INDEX  # nothing lag places back
    return tokens.to(device), targets.to(device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precision (one rounding at the end), else the dtype."""
    return torch.promote_types(dtype, torch.float32)


def _check_layout(layout: object) -> Layout:
    return _checks.choice(layout, "layout", LAYOUTS)


def _check_x(x: object, name: str = "x") -> Tensor:
    """A floating ``(..., seq, dim)`` tensor with ``dim`` even and positive."""
    x = _checks.tensor(x, name, min_ndim=2)
    if x.shape[-1] % 2 or x.shape[-1] == 0:
        raise ValueError(
            f"the last dimension of {name} must be even (feature pairs), "
            f"got shape {tuple(x.shape)}"
        )
    return x


def _fits(shape: tuple[int, ...], leading: tuple[int, ...]) -> bool:
    """``shape`` broadcasts to ``leading`` without enlarging it."""
    pairs = zip(reversed(shape), reversed(leading), strict=False)
    return len(shape) <= len(leading) and all(p in (1, size) for p, size in pairs)


def _check_positions(
    positions: object, x: Tensor, name: str = "positions", x_name: str = "x"
) -> Tensor:
    positions = as_positions(positions, name)
    _checks.same_device((x_name, x), **{name: positions})
    # positions may broadcast up to x.shape[:-1], never beyond (checked by hand: fast)
    if not _fits(tuple(positions.shape), tuple(x.shape[:-1])):
        raise ValueError(
            f"{name} of shape {tuple(positions.shape)} must broadcast to "
            f"{x_name}.shape[:-1] = {tuple(x.shape[:-1])}"
        )
    return positions
