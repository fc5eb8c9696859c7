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

from kexue.positions.rope import _rotate_interleaved, apply_rope
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

    Returns an int64 tensor of shape ``(height * width, 2)``: token ``t`` is at
    ``x = t % width`` (column) and ``y = t // width`` (row), the order in which images
    are usually flattened into sequences.

    Raises:
        ValueError: ``height`` or ``width`` is not a positive int.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
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
        ValueError: ``dim`` not divisible by 4, or ``coords`` without a last axis of
            size 2 or not broadcastable; the checks of :func:`apply_rope` otherwise.
    """
    _check(x, coords)
    half = x.shape[-1] // 2
    rotated_x = apply_rope(
        x[..., :half], coords[..., 0], base=base, layout="interleaved"
    )
    rotated_y = apply_rope(
        x[..., half:], coords[..., 1], base=base, layout="interleaved"
    )
    return torch.cat((rotated_x, rotated_y), dim=-1)


def offset_share(scores: Tensor, coords: Tensor) -> Tensor:
    """How much of a score matrix is a function of the 2-D offset alone.

    The R^2 of the best least-squares fit of ``scores[..., m, n]`` by a function of
    ``(x_n - x_m, y_n - y_m)`` (the mean over all pairs with that offset): 1 when scores
    depend on the offset only. ``scores`` has shape ``(..., seq, seq)``, ``coords``
    shape ``(seq, 2)`` (integer). The 2-D analogue of
    :func:`kexue.positions.sinusoidal.toeplitz_share`.
    """
    if scores.shape[-1] != scores.shape[-2] or coords.shape != (scores.shape[-1], 2):
        raise ValueError(
            "scores must be (..., seq, seq) and coords (seq, 2), "
            f"got {tuple(scores.shape)} and {tuple(coords.shape)}"
        )
    # (m, n) -> coords_n - coords_m
    offsets = (coords[None, :, :] - coords[:, None, :]).reshape(-1, 2)
    return share_explained_by_groups(scores.flatten(-2), offsets)


def additive_residual(surface: Tensor) -> float:
    """Share of a surface's variance that no sum ``f(row) + g(column)`` explains.

    The best least-squares fit by ``f(i) + g(j)`` is the row mean plus the column mean
    minus the grand mean; the result is the residual sum of squares over the total
    (0 for an additive surface, at most 1).

    Raises:
        ValueError: ``surface`` is not a 2-D floating-point tensor with some variance.
    """
    if not isinstance(surface, Tensor) or surface.dim() != 2:
        raise ValueError("surface must be a 2-D tensor")
    if not surface.is_floating_point():
        raise ValueError("surface must be a floating-point tensor")
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
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be a positive even int, got {dim!r}")
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ValueError(f"heads must be a positive int, got {heads!r}")
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
        if x.dim() != 4 or x.shape[1] != heads or x.shape[-1] != 2 * pairs:
            raise ValueError(
                f"x must be (batch, {heads}, seq, {2 * pairs}), got {tuple(x.shape)}"
            )
        if coords.shape != (x.shape[-2], 2):
            raise ValueError(
                f"coords must be (seq, 2) = ({x.shape[-2]}, 2), "
                f"got {tuple(coords.shape)}"
            )
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
        twice and ``(rows * width, 2)`` (:func:`grid_coords`), on ``device``.

    Raises:
        ValueError: a size that is not a positive int.
    """
    for name, value in (("count", count), ("symbols", symbols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    coords = grid_coords(rows, width, device=device)
    inputs = torch.randint(0, symbols, (count, rows * width), generator=generator)
    targets = torch.roll(inputs, width, dims=1)
    targets[:, :width] = -100
    return inputs.to(device), targets.to(device), coords


class PatchAttention(nn.Module):
    """One layer of bidirectional single-head attention over image patches.

    Embeds each patch's symbol, applies one of the position encodings of
    :data:`ENCODINGS` to queries and keys, attends, and reads out symbol logits.

    Args:
        encoding: ``"none"``, ``"flattened 1-D RoPE"`` (position ``t`` in the row-major
            sequence), ``"2-D RoPE"`` (:func:`apply_rope_2d`), ``"RoPE-Mixed"``
            (:class:`MixedRotaryEmbedding2d`) or ``"learned absolute 2-D"`` (a learned
            column embedding plus a learned row embedding, added to the patch's
            embedding, for coordinates ``0 <= x, y < max_side``).
        symbols: vocabulary size.
        dim: model and head width, divisible by 4.
        max_side: the number of learned columns and rows (learned encoding only).
    """

    def __init__(
        self, encoding: str, *, symbols: int = 8, dim: int = 32, max_side: int = 16
    ) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 4 or dim % 4:
            raise ValueError(f"dim must be a positive multiple of 4, got {dim!r}")
        self.encoding = encoding
        self.embed = nn.Embedding(symbols, dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.read_out = nn.Linear(dim, symbols)
        self.mixed = MixedRotaryEmbedding2d(
            dim, generator=torch.Generator().manual_seed(0)
        )
        if encoding == "learned absolute 2-D":  # created last: other inits unchanged
            if (
                isinstance(max_side, bool)
                or not isinstance(max_side, int)
                or max_side < 1
            ):
                raise ValueError(f"max_side must be a positive int, got {max_side!r}")
            self.column = nn.Embedding(max_side, dim)
            self.row = nn.Embedding(max_side, dim)

    def forward(self, inputs: Tensor, coords: Tensor) -> Tensor:
        """Logits ``(batch, seq, symbols)`` for ``inputs`` ``(batch, seq)``."""
        # (batch, 1 head, seq, dim) each
        embedded = self.embed(inputs)
        if self.encoding == "learned absolute 2-D":
            side = self.column.num_embeddings
            if coords.min() < 0 or coords.max() >= side:
                raise ValueError(
                    f"coords must lie in [0, {side}) for learned positions"
                )
            embedded = embedded + self.column(coords[:, 0]) + self.row(coords[:, 1])
        q, k, v = self.qkv(embedded).unsqueeze(1).chunk(3, dim=-1)
        if self.encoding == "flattened 1-D RoPE":
            positions = torch.arange(inputs.shape[1], device=inputs.device)
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        elif self.encoding == "2-D RoPE":
            q, k = apply_rope_2d(q, coords), apply_rope_2d(k, coords)
        elif self.encoding == "RoPE-Mixed":
            q, k = self.mixed(q, coords), self.mixed(k, coords)
        return self.read_out(F.scaled_dot_product_attention(q, k, v)[:, 0])


def _check(x: Tensor, coords: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    if x.dim() < 2 or x.shape[-1] % 4 or x.shape[-1] == 0:
        raise ValueError(
            f"x must be (..., seq, dim) with dim divisible by 4, got {tuple(x.shape)}"
        )
    if not isinstance(coords, Tensor) or coords.dim() < 2 or coords.shape[-1] != 2:
        shape = (
            tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__
        )
        raise ValueError(f"coords must have shape (..., seq, 2), got {shape}")
