"""Two-dimensional rotary position embedding for images (kexue.fm/archives/8397).

A token at grid position ``(x, y)`` is rotated by ``R_(x,y) = blockdiag(R_x, R_y)``: the
first half of the features gets the 1-D RoPE of ``x``, the second half the 1-D RoPE of
``y`` (interleaved pairs, the 1-D code of :mod:`kexue.positions.rope` reused as it is).
Then ``R_(x1,y1)^T R_(x2,y2) = R_(x2-x1, y2-y1)``: scores depend on the 2-D offset
alone, and distinct offsets stay distinct.

Beyond the article, :class:`MixedRotaryEmbedding2d` implements learnable mixed-axis
frequencies ("RoPE-Mixed", Heo et al. 2024): pair ``i`` rotates by
``x f_(i,x) + y f_(i,y)``, which keeps relativity and can represent diagonal directions.

For the chapter's experiment: :func:`symbol_above_task` (images of random symbols, the
target at each patch is the symbol directly above it) and :class:`PatchAttention` (one
layer of single-head attention with a choice of position encoding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.positions._validation import dim_and_base, has_values, token_ids
from kexue.positions.rope import _check_x, _fits, _rope, _rotate_interleaved
from kexue.positions.sinusoidal import frequencies, share_explained_by_groups

__all__ = [
    "MixedRotaryEmbedding2d",
    "PatchAttention",
    "additive_residual",
    "apply_rope_2d",
    "grid_coords",
    "offset_share",
    "symbol_above_task",
]

#: The position encodings :class:`PatchAttention` knows.
ENCODINGS: tuple[str, ...] = (
    "none",
    "flattened 1-D RoPE",
    "2-D RoPE",
    "RoPE-Mixed",
    "learned absolute 2-D",
)


def grid_coords(
    height: int, width: int, *, device: torch.device | str | None = None
) -> Tensor:
    """The ``(x, y)`` coordinates of a ``height x width`` grid of patches, row-major.

    Returns an int64 tensor of shape ``(height * width, 2)`` on ``device``: token
    ``t`` is at ``x = t % width`` (column) and ``y = t // width`` (row), the order in
    which images are usually flattened into sequences. An empty grid (a side 0) gives
    shape ``(0, 2)``.

    Raises:
        TypeError: ``height`` or ``width`` is not an int.
        ValueError: ``height`` or ``width`` is negative.
    """
    height = _checks.nonnegative_int(height, "height")
    width = _checks.nonnegative_int(width, "width")
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    return torch.stack((xs.flatten(), ys.flatten()), dim=-1)


def apply_rope_2d(x: Tensor, coords: Tensor, *, base: float = 10000.0) -> Tensor:
    """2-D RoPE: rotate the first half of the features by x, the second half by y.

    Args:
        x: tensor of shape ``(..., seq, dim)`` with ``dim`` divisible by 4 (pairs in
            each half).
        coords: integer or real ``(x, y)`` per token, shape ``(..., seq, 2)``
            broadcastable to ``x.shape[:-1] + (2,)``, e.g. :func:`grid_coords`.
        base: frequency base of each half's 1-D RoPE (``base^(-2i/(dim/2))``).

    Returns:
        Tensor of the shape, dtype and device of ``x``.

    Raises:
        TypeError: ``x`` not a floating tensor, ``coords`` not an integer or real
            tensor.
        ValueError: ``x`` of rank below 2 or ``dim`` not divisible by 4, ``coords``
            without a last axis of size 2, not broadcastable or on another device,
            or a bad ``base``.
    """
    _check_x(x)
    if x.shape[-1] % 4:
        raise ValueError(
            f"x must be (..., seq, dim) with dim divisible by 4, got {tuple(x.shape)}"
        )
    _check_coords(coords, x)
    half = x.shape[-1] // 2
    rotated_x = _rope(x[..., :half], coords[..., 0], base, "interleaved")
    rotated_y = _rope(x[..., half:], coords[..., 1], base, "interleaved")
    return torch.cat((rotated_x, rotated_y), dim=-1)


def offset_share(scores: Tensor, coords: Tensor) -> Tensor:
    """How much of a score matrix is a function of the 2-D offset alone.

    The R^2 of the best least-squares fit of ``scores[..., m, n]`` by a function of
    ``(x_n - x_m, y_n - y_m)`` (the mean over all pairs with that offset): 1 when scores
    depend on the offset only, constant scores included. The 2-D analogue of
    :func:`kexue.positions.sinusoidal.toeplitz_share`.

    Args:
        scores: real floating tensor of shape ``(..., seq, seq)``.
        coords: integer (or real) coordinates of shape ``(seq, 2)`` on the device of
            ``scores``, not on the meta device (their values form the groups).

    Returns:
        Tensor of shape ``(...)`` in the dtype of ``scores`` (computed in float32 for
        half precision).

    Raises:
        TypeError: ``scores`` not floating, ``coords`` boolean, complex or not a
            tensor.
        ValueError: shapes that do not fit, ``coords`` on another device or on meta.
    """
    _checks.tensor(scores, "scores", min_ndim=2)
    if scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must be (..., seq, seq), got {tuple(scores.shape)}")
    _checks.tensor(coords, "coords", kind="real")
    if coords.shape != (scores.shape[-1], 2):
        raise ValueError(
            f"coords must be (seq, 2) = ({scores.shape[-1]}, 2) for scores "
            f"{tuple(scores.shape)}, got {tuple(coords.shape)}"
        )
    _checks.same_device(("scores", scores), coords=coords)
    has_values(coords, "coords", "offset_share groups the scores by their offsets")
    # (m, n) -> coords_n - coords_m
    offsets = (coords[None, :, :] - coords[:, None, :]).reshape(-1, 2)
    return share_explained_by_groups(scores.flatten(-2), offsets)


def additive_residual(surface: Tensor) -> float:
    """Share of a surface's variance that no sum ``f(row) + g(column)`` explains.

    The best least-squares fit by ``f(i) + g(j)`` is the row mean plus the column mean
    minus the grand mean; the result is the residual sum of squares over the total
    (0 for an additive surface, at most 1).

    Computed in float64 (half-precision squares overflow); returns a Python float.

    Raises:
        TypeError: ``surface`` is not a floating-point tensor.
        ValueError: ``surface`` is not 2-D, is empty, on the meta device (no values to
            return), or constant (no variance to explain).
    """
    _checks.tensor(surface, "surface", ndim=2)
    has_values(surface, "surface", "additive_residual returns a number")
    if not surface.numel():
        raise ValueError(f"surface is empty, shape {tuple(surface.shape)}")
    surface = surface.detach().double()
    total = ((surface - surface.mean()) ** 2).sum()
    if not total > 0:
        raise ValueError("surface is constant: no variance to explain")
    fit = surface.mean(0, keepdim=True) + surface.mean(1, keepdim=True) - surface.mean()
    return (((surface - fit) ** 2).sum() / total).item()


class MixedRotaryEmbedding2d(nn.Module):
    """RoPE-Mixed (Heo et al., 2024): learnable 2-D frequencies, one direction per pair.

    Pair ``i`` of head ``h`` rotates by ``x * f[h, i, 0] + y * f[h, i, 1]``. The angle
    is linear in the coordinates, so scores still depend only on the 2-D offset, and
    the frequency vectors may point in any direction, diagonals included. Initialised
    with the magnitudes of the 1-D RoPE frequencies ``base^(-2i/dim)`` along random
    directions, different per head (a seeded ``generator`` makes it reproducible).

    Args:
        dim: head dimension, positive and even.
        heads: number of heads (frequencies are per head); inputs are
            ``(batch, heads, seq, dim)``.
        base: base of the initial magnitudes.
        generator: random generator for the initial directions.

    ``forward(x, coords)``: ``x`` floating ``(batch, heads, seq, dim)``, ``coords``
    integer or real ``(seq, 2)``, both on the module's device; returns the rotated
    ``x`` in its dtype (computed in at least float32).

    Raises:
        TypeError: ``dim`` or ``heads`` not an int; ``x`` not floating, ``coords``
            boolean or complex.
        ValueError: ``dim`` not positive and even, ``heads`` not positive, a bad
            ``base``; shapes that do not fit or tensors on another device.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        *,
        base: float = 10000.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        dim, base = dim_and_base(dim, base)
        heads = _checks.positive_int(heads, "heads")
        magnitude = frequencies(dim, base=base)  # theta_i, shape (dim/2,)
        direction = (
            torch.rand(heads, dim // 2, generator=generator, dtype=torch.float64)
            * 2
            * math.pi
        )
        initial = magnitude[:, None] * torch.stack(
            (direction.cos(), direction.sin()), dim=-1
        )
        # (heads, dim/2, 2): (f_x, f_y) per pair
        self.frequencies = nn.Parameter(initial.float())

    def forward(self, x: Tensor, coords: Tensor) -> Tensor:
        """Rotate ``x`` ``(batch, heads, seq, dim)`` by ``coords`` ``(seq, 2)``."""
        heads, pairs = self.frequencies.shape[:2]
        _checks.tensor(x, "x")
        if x.dim() != 4 or x.shape[1] != heads or x.shape[-1] != 2 * pairs:
            raise ValueError(
                f"x must be (batch, {heads}, seq, {2 * pairs}), got {tuple(x.shape)}"
            )
        _checks.tensor(coords, "coords", kind="real")
        if coords.shape != (x.shape[-2], 2):
            raise ValueError(
                f"coords must be (seq, 2) = ({x.shape[-2]}, 2), "
                f"got {tuple(coords.shape)}"
            )
        _checks.same_device(("the module", self.frequencies), x=x, coords=coords)
        angles = torch.einsum(
            "sc,hpc->hsp", coords.to(self.frequencies.dtype), self.frequencies
        )
        # differentiable in the frequencies
        cis = torch.polar(torch.ones_like(angles), angles)
        return _rotate_interleaved(x, cis).to(x.dtype)


def symbol_above_task(
    generator: torch.Generator,
    count: int,
    rows: int,
    width: int,
    *,
    symbols: int = 8,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of the "symbol directly above" task on ``rows x width`` images.

    Each patch holds one of ``symbols`` random symbols (drawn from ``generator`` on the
    CPU); the target at each patch is the symbol of the patch above it, and ``-100``
    (cross-entropy's ``ignore_index``) in the first row, which has nothing above it.

    Returns:
        ``(inputs, targets, coords)``: int64 tensors of shapes ``(count, rows * width)``
        twice and ``(rows * width, 2)`` (:func:`grid_coords`), on ``device``
        (``count = 0``: an empty batch).

    Raises:
        TypeError: ``generator`` not a ``torch.Generator``, or a size not an int.
        ValueError: ``count`` negative, or ``rows``, ``width`` or ``symbols`` not
            positive.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {generator!r}")
    count = _checks.nonnegative_int(count, "count")
    rows = _checks.positive_int(rows, "rows")
    width = _checks.positive_int(width, "width")
    symbols = _checks.positive_int(symbols, "symbols")
    coords = grid_coords(rows, width, device=device)
    inputs = torch.randint(0, symbols, (count, rows * width), generator=generator)
    targets = torch.roll(inputs, width, dims=1)
    targets[:, :width] = -100
    return inputs.to(device), targets.to(device), coords


class PatchAttention(nn.Module):
    """One layer of bidirectional single-head attention over image patches.

    Embeds each patch's symbol, applies one of the position encodings of
    ``ENCODINGS`` to queries and keys, attends, and reads out symbol logits.

    Args:
        encoding: ``"none"``, ``"flattened 1-D RoPE"`` (position ``t`` in the row-major
            sequence), ``"2-D RoPE"`` (:func:`apply_rope_2d`), ``"RoPE-Mixed"``
            (:class:`MixedRotaryEmbedding2d`) or ``"learned absolute 2-D"`` (a learned
            column embedding plus a learned row embedding, added to the patch's
            embedding, for coordinates ``0 <= x, y < max_side``).
        symbols: vocabulary size.
        dim: model and head width, divisible by 4.
        max_side: the number of learned columns and rows (learned encoding only).

    ``forward(inputs, coords)``: integer ``inputs`` ``(batch, seq)`` in
    ``[0, symbols)`` and ``coords`` ``(seq, 2)`` (integer for the learned encoding),
    both on the module's device.

    Raises:
        TypeError: a size not an int; ``inputs`` not integer, ``coords`` boolean or
            complex (or real for the learned encoding).
        ValueError: unknown ``encoding``, ``dim`` not a positive multiple of 4, a size
            not positive; ``inputs`` not 2-D or out of range, ``coords`` of the wrong
            shape, outside the learned grid, or on another device.
    """

    def __init__(
        self, encoding: str, *, symbols: int = 8, dim: int = 32, max_side: int = 16
    ) -> None:
        super().__init__()
        _checks.choice(encoding, "encoding", ENCODINGS)
        symbols = _checks.positive_int(symbols, "symbols")
        if _checks.positive_int(dim, "dim") % 4:
            raise ValueError(f"dim must be a positive multiple of 4, got {dim!r}")
        max_side = _checks.positive_int(max_side, "max_side")
        self.encoding = encoding
        self.embed = nn.Embedding(symbols, dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.read_out = nn.Linear(dim, symbols)
        self.mixed = MixedRotaryEmbedding2d(
            dim, generator=torch.Generator().manual_seed(0)
        )
        if encoding == "learned absolute 2-D":  # created last: other inits unchanged
            self.column = nn.Embedding(max_side, dim)
            self.row = nn.Embedding(max_side, dim)

    def forward(self, inputs: Tensor, coords: Tensor) -> Tensor:
        """Logits ``(batch, seq, symbols)`` for ``inputs`` ``(batch, seq)``."""
        weight = self.embed.weight
        inputs = token_ids(inputs, "inputs", self.embed.num_embeddings, weight)
        _checks.tensor(coords, "coords", kind="real")
        if coords.shape != (inputs.shape[1], 2):
            raise ValueError(
                f"coords must be (seq, 2) = ({inputs.shape[1]}, 2), "
                f"got {tuple(coords.shape)}"
            )
        _checks.same_device(("inputs", inputs), coords=coords)
        embedded = self.embed(inputs)
        if self.encoding == "learned absolute 2-D":
            self._check_learned(coords)
            embedded = embedded + self.column(coords[:, 0]) + self.row(coords[:, 1])
        # (batch, 1 head, seq, dim) each
        q, k, v = self.qkv(embedded).unsqueeze(1).chunk(3, dim=-1)
        if self.encoding == "flattened 1-D RoPE":
            positions = torch.arange(inputs.shape[1], device=inputs.device)
            q = _rope(q, positions, 10000.0, "interleaved")
            k = _rope(k, positions, 10000.0, "interleaved")
        elif self.encoding == "2-D RoPE":
            q, k = apply_rope_2d(q, coords), apply_rope_2d(k, coords)
        elif self.encoding == "RoPE-Mixed":
            q, k = self.mixed(q, coords), self.mixed(k, coords)
        return self.read_out(F.scaled_dot_product_attention(q, k, v)[:, 0])

    def _check_learned(self, coords: Tensor) -> None:
        """Integer coordinates inside the learned ``max_side x max_side`` grid."""
        if coords.is_floating_point():
            raise TypeError("coords must be integer for the learned encoding")
        side = self.column.num_embeddings
        if coords.numel() and coords.device.type != "meta":
            low, high = torch.aminmax(coords)
            if int(low) < 0 or int(high) >= side:
                raise ValueError(
                    f"coords must lie in [0, {side}) for learned positions"
                )


def _check_coords(coords: object, x: Tensor) -> None:
    """``(..., seq, 2)`` integer or real coordinates that broadcast to ``x``."""
    coords = _checks.tensor(coords, "coords", min_ndim=2, kind="real")
    if coords.shape[-1] != 2:
        raise ValueError(
            f"coords must have shape (..., seq, 2), got {tuple(coords.shape)}"
        )
    _checks.same_device(("x", x), coords=coords)
    if not _fits(tuple(coords.shape[:-1]), tuple(x.shape[:-1])):
        raise ValueError(
            f"coords of shape {tuple(coords.shape)} must broadcast to "
            f"x.shape[:-1] + (2,) = {(*x.shape[:-1], 2)}"
        )
