"""Two-dimensional rotary position embedding for images, as derived in Su Jianlin's kexue.fm/archives/8397.

A token at grid position ``(x, y)`` is rotated by ``R_(x,y) = blockdiag(R_x, R_y)``: the first half of the
features gets the 1-D RoPE of ``x``, the second half the 1-D RoPE of ``y`` (interleaved pairs, the 1-D code
of :mod:`kexue.positions.rope` reused as it is). Then ``R_(x1,y1)^T R_(x2,y2) = R_(x2-x1, y2-y1)``: scores
depend on the 2-D offset alone, and distinct offsets stay distinct.

Beyond the article, :class:`MixedRotaryEmbedding2d` implements learnable mixed-axis frequencies
("RoPE-Mixed", Heo et al. 2024): pair ``i`` rotates by ``x f_(i,x) + y f_(i,y)``, which keeps relativity and
can represent diagonal directions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kexue.positions.rope import _rotate_interleaved, apply_rope
from kexue.positions.sinusoidal import frequencies, share_explained_by_groups


def grid_coords(
    height: int, width: int, *, device: torch.device | str | None = None
) -> Tensor:
    """The ``(x, y)`` coordinates of a ``height x width`` grid of patches in row-major order.

    Returns an int64 tensor of shape ``(height * width, 2)``: token ``t`` is at ``x = t % width`` (column)
    and ``y = t // width`` (row), the order in which images are usually flattened into sequences.

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
    """2-D RoPE: rotate the first half of the features by the x coordinate, the second half by y.

    Args:
        x: tensor of shape ``(..., seq, dim)`` with ``dim`` divisible by 4 (pairs in each half).
        coords: integer or real ``(x, y)`` per token, shape ``(..., seq, 2)`` broadcastable to
            ``x.shape[:-1] + (2,)``, e.g. :func:`grid_coords` of shape ``(seq, 2)``.
        base: frequency base of each half's 1-D RoPE (frequencies ``base^(-2i/(dim/2))``).

    Returns:
        Tensor of the shape, dtype and device of ``x``.

    Raises:
        ValueError: ``dim`` not divisible by 4, or ``coords`` without a last axis of size 2 or not
            broadcastable to ``x.shape[:-1] + (2,)``; the checks of :func:`apply_rope` otherwise.
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
    """How much of a score matrix is a function of the 2-D offset ``(x_n - x_m, y_n - y_m)`` alone.

    The R^2 of the best least-squares fit of ``scores[..., m, n]`` by a function of the offset (the mean
    over all pairs with that offset): 1 when scores depend on the offset only. ``scores`` has shape
    ``(..., seq, seq)``, ``coords`` shape ``(seq, 2)`` (integer). The 2-D analogue of
    :func:`kexue.positions.sinusoidal.toeplitz_share`.
    """
    if scores.shape[-1] != scores.shape[-2] or coords.shape != (scores.shape[-1], 2):
        raise ValueError(
            "scores must be (..., seq, seq) and coords (seq, 2), "
            f"got {tuple(scores.shape)} and {tuple(coords.shape)}"
        )
    offsets = (coords[None, :, :] - coords[:, None, :]).reshape(
        -1, 2
    )  # (m, n) -> coords_n - coords_m
    return share_explained_by_groups(scores.flatten(-2), offsets)


class MixedRotaryEmbedding2d(nn.Module):
    """RoPE-Mixed (Heo et al., 2024): learnable 2-D frequencies, one direction per feature pair.

    Pair ``i`` of head ``h`` rotates by ``x * f[h, i, 0] + y * f[h, i, 1]``. The angle is linear in the
    coordinates, so scores still depend only on the 2-D offset, and the frequency vectors may point in any
    direction, diagonals included. Initialised with the magnitudes of the 1-D RoPE frequencies
    ``base^(-2i/dim)`` along random directions, different per head (a seeded ``generator`` makes it
    reproducible).

    Args:
        dim: head dimension, positive and even.
        heads: number of heads (frequencies are per head); inputs are ``(batch, heads, seq, dim)``.
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
        self.frequencies = nn.Parameter(
            initial.float()
        )  # (heads, dim/2, 2): (f_x, f_y) per pair

    def forward(self, x: Tensor, coords: Tensor) -> Tensor:
        """Rotate ``x`` of shape ``(batch, heads, seq, dim)`` by ``coords`` of shape ``(seq, 2)``."""
        if (
            x.dim() != 4
            or x.shape[1] != self.frequencies.shape[0]
            or x.shape[-1] != 2 * self.frequencies.shape[1]
        ):
            raise ValueError(
                f"x must be (batch, {self.frequencies.shape[0]}, seq, {2 * self.frequencies.shape[1]}), "
                f"got {tuple(x.shape)}"
            )
        if coords.shape != (x.shape[-2], 2):
            raise ValueError(
                f"coords must be (seq, 2) = ({x.shape[-2]}, 2), got {tuple(coords.shape)}"
            )
        angles = torch.einsum(
            "sc,hpc->hsp", coords.to(self.frequencies.dtype), self.frequencies
        )
        cis = torch.polar(
            torch.ones_like(angles), angles
        )  # differentiable in the frequencies
        return _rotate_interleaved(x, cis).to(x.dtype)


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
