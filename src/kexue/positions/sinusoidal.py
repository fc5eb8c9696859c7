"""Sinusoidal position encoding (Vaswani et al., 2017), as derived in kexue.fm/8231.

Position ``m`` is encoded by ``dim / 2`` rotations at the geometric frequencies
``theta_i = base^(-2i/dim)``, interleaved as
``[sin(m theta_0), cos(m theta_0), sin(m theta_1), cos(m theta_1), ...]``. Two facts
make it a relative encoding: ``<PE(m), PE(n)> = sum_i cos((m - n) theta_i)`` depends
only on ``m - n``, and ``PE(m + k) = M_k PE(m)`` for a block-diagonal rotation ``M_k``
that does not depend on ``m``. :func:`decay_integral` and :func:`power_decay_integral`
give the continuous limit of that inner product, which shows how it decays with
distance.

:func:`frequencies` is the one frequency table of the library; the rotary embedding
reuses it.
"""

from __future__ import annotations

import math

import mpmath
import torch
from torch import Tensor, nn

from kexue.positions._validation import (
    as_positions,
    check_dim_and_base,
    check_initial_length,
    output_dtype,
)

__all__ = [
    "SinusoidalEmbedding",
    "covariance_dominance",
    "decay_integral",
    "frequencies",
    "power_decay_integral",
    "relative_shift_matrix",
    "share_explained_by_groups",
    "sinusoidal_embedding",
    "toeplitz_share",
]


def frequencies(
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The frequencies ``theta_i = base^(-2i/dim)`` for ``i = 0, ..., dim/2 - 1``.

    Returns a tensor of shape ``(dim // 2,)``, decreasing from ``theta_0 = 1``. Computed
    in float64 and cast to ``dtype`` (float64 by default, because
    position-times-frequency products need the digits).

    Raises:
        TypeError: ``dim`` is not an int.
        ValueError: ``dim`` is not positive and even, or ``base`` is not a finite
            number above 1.
    """
    check_dim_and_base(dim, base)
    exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim
    return torch.pow(
        torch.tensor(float(base), dtype=torch.float64, device=device), -exponents
    ).to(dtype)


def sinusoidal_embedding(
    positions: Tensor | int | float | list,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The sinusoidal encoding, interleaved ``[sin(m theta_0), cos(m theta_0), ...]``.

    Args:
        positions: integer or real positions of any shape (a tensor, or anything
            ``torch.as_tensor`` accepts); the output is on the same device.
        dim: encoding dimension, positive and even.
        base: the frequency base (10000 in the original Transformer).
        dtype: floating dtype of the result; the default float dtype when omitted.

    Returns:
        Tensor of shape ``positions.shape + (dim,)``.

    The angles ``m * theta_i`` are formed in float64 and reduced by ``sin``/``cos``
    before the cast, so positions of 1e5 and beyond keep full accuracy in a float32
    result (in float32, ``m * theta_0`` at ``m = 1e5`` is already off by about
    0.004 rad). On devices without float64 (Apple MPS) the angles are formed in
    float32.

    Raises:
        TypeError: ``positions`` is boolean or complex, ``dim`` is not an int, or
            ``dtype`` is not floating.
        ValueError: ``dim`` is not positive and even, or ``base`` is not a finite
            number above 1.
    """
    positions = as_positions(positions)
    check_dim_and_base(dim, base)
    out_dtype = output_dtype(dtype)
    angle_dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    theta = frequencies(dim, base=base, dtype=angle_dtype, device=positions.device)
    angles = positions.to(angle_dtype).unsqueeze(-1) * theta  # (..., dim/2)
    # stack on a new last axis, then flatten it: [sin_0, cos_0, sin_1, cos_1, ...]
    encoding = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)
    return encoding.to(out_dtype)


def relative_shift_matrix(
    offset: Tensor | int | float,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The block-diagonal rotation ``M_k`` with ``PE(m + k) = M_k @ PE(m)`` (any m).

    Each 2x2 block acts on a pair ``(sin(m theta_i), cos(m theta_i))`` as
    ``[[cos(k theta_i), sin(k theta_i)], [-sin(k theta_i), cos(k theta_i)]]`` (the
    angle-addition formulas).

    Args:
        offset: the shift ``k``, a number or a tensor of any shape (its device is used
            if ``device`` is None).
        dim: encoding dimension, positive and even.
        base: the frequency base.
        dtype: floating dtype of the result; the default float dtype when omitted.
        device: where to build the matrix when ``offset`` is a number.

    Returns:
        Tensor of shape ``offset.shape + (dim, dim)``: orthogonal, with
        ``M_k @ M_l = M_(k+l)`` and ``M_k^T = M_(-k)``.
    """
    offset = as_positions(offset, name="offset")
    if device is not None:
        offset = offset.to(device)
    check_dim_and_base(dim, base)
    out_dtype = output_dtype(dtype)
    angle_dtype = torch.float32 if offset.device.type == "mps" else torch.float64
    theta = frequencies(dim, base=base, dtype=angle_dtype, device=offset.device)
    angles = offset.to(angle_dtype).unsqueeze(-1) * theta  # (..., dim/2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    blocks = torch.stack(
        (torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2
    )  # (..., dim/2, 2, 2)
    matrix = torch.zeros(
        *offset.shape, dim, dim, dtype=angle_dtype, device=offset.device
    )
    pairs = torch.arange(dim // 2, device=offset.device)
    for row in range(2):
        for col in range(2):
            matrix[..., 2 * pairs + row, 2 * pairs + col] = blocks[..., row, col]
    return matrix.to(out_dtype)


def toeplitz_share(matrix: Tensor) -> Tensor:
    """How much of a square matrix is a function of ``m - n`` alone (Toeplitz R^2).

    The best approximation (in least squares) of ``matrix[..., m, n]`` by a function of
    ``m - n`` is the mean along each diagonal. The result is
    ``1 - SS_residual / SS_total`` per matrix: 1 for a Toeplitz matrix, such as the Gram
    matrix of a relative encoding, and lower the more absolute position matters.

    Args:
        matrix: tensor of shape ``(..., n, n)``, real, with ``n >= 2``.

    Returns:
        Tensor of shape ``(...)`` in the dtype of ``matrix``.
    """
    if not isinstance(matrix, Tensor) or not matrix.is_floating_point():
        raise TypeError("matrix must be a real floating-point tensor")
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2] or matrix.shape[-1] < 2:
        raise ValueError(
            f"matrix must have shape (..., n, n) with n >= 2, got {tuple(matrix.shape)}"
        )
    index = torch.arange(matrix.shape[-1], device=matrix.device)
    diagonal_of = (index[:, None] - index).flatten()  # which diagonal each entry is on
    return share_explained_by_groups(matrix.flatten(-2), diagonal_of)


def share_explained_by_groups(values: Tensor, groups: Tensor) -> Tensor:
    """R^2 of the best fit of ``values[..., j]`` by a function of ``groups[j]``.

    The best fit is the mean of each group. ``values`` has shape ``(..., m)``,
    ``groups`` shape ``(m,)`` with any integer labels; the result has shape ``(...)``.
    Shared by
    :func:`toeplitz_share` (groups: diagonals) and
    :func:`kexue.positions.rope2d.offset_share` (groups: 2-D offsets).
    """
    _, label = torch.unique(groups, dim=0, return_inverse=True)
    sums = torch.zeros(
        *values.shape[:-1],
        int(label.max()) + 1,
        dtype=values.dtype,
        device=values.device,
    )
    sums.index_add_(-1, label, values)
    means = sums / torch.bincount(label).to(values.dtype)
    residual = (values - means[..., label]).pow(2).sum(-1)
    total = (values - values.mean(-1, keepdim=True)).pow(2).sum(-1)
    return 1 - residual / total


def _distances(distances: object) -> Tensor:
    distances = as_positions(distances, name="distances")
    if not bool(torch.isfinite(distances.double()).all()):
        raise ValueError("distances must be finite")
    return distances.detach().to("cpu", torch.float64)


def decay_integral(
    distances: Tensor | float | list, *, base: float = 10000.0
) -> Tensor:
    """The continuous inner product ``I_b(k) = int_0^1 cos(k base^(-t)) dt``.

    ``(2/dim) <PE(m), PE(n)>`` is a Riemann sum of this integral at ``k = m - n``. The
    substitution ``u = k base^(-t)`` gives the closed form
    ``I_b(k) = (Ci(|k|) - Ci(|k| / base)) / ln(base)`` with the cosine integral ``Ci``
    (evaluated by mpmath); ``I_b(0) = 1``.

    Args:
        distances: real distances ``k`` of any shape (a tensor, number or list).
        base: the frequency base, a finite number above 1.

    Returns:
        float64 CPU tensor of the shape of ``distances``.

    Raises:
        TypeError: ``distances`` is boolean, complex or not numeric.
        ValueError: a distance is not finite, or ``base`` is not a finite number
            above 1.
    """
    check_dim_and_base(2, base)
    k = _distances(distances)
    log_base = math.log(base)

    def one(value: float) -> float:
        value = abs(value)
        if value == 0:
            return 1.0
        return float((mpmath.ci(value) - mpmath.ci(value / base)) / log_base)

    values = [one(v) for v in k.flatten().tolist()]
    return torch.tensor(values, dtype=torch.float64).reshape(k.shape)


def power_decay_integral(distances: Tensor | float | list, alpha: float) -> Tensor:
    """The continuous inner product for the schedule ``theta_t = t^alpha``.

    ``int_0^1 cos(k t^alpha) dt = Re[(-ik)^(-1/alpha) gamma(1/alpha, -ik)] / alpha``
    (substitute ``u = t^alpha``; ``gamma`` is the lower incomplete gamma function,
    evaluated by mpmath); 1 at ``k = 0``. For ``alpha = 1`` it is ``sin(k) / k``.

    Args:
        distances: real distances ``k`` of any shape (a tensor, number or list).
        alpha: the exponent, a finite positive number.

    Returns:
        float64 CPU tensor of the shape of ``distances``.

    Raises:
        TypeError: ``distances`` is boolean, complex or not numeric, or ``alpha`` is not
            a number.
        ValueError: a distance is not finite, or ``alpha`` is not finite and positive.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite positive number, got {alpha!r}")
    k = _distances(distances)
    s = mpmath.mpf(1) / alpha

    def one(value: float) -> float:
        value = abs(value)
        if value == 0:
            return 1.0
        z = -1j * mpmath.mpf(value)
        return float(mpmath.re(z ** (-s) * mpmath.gammainc(s, 0, z)) / alpha)

    values = [one(v) for v in k.flatten().tolist()]
    return torch.tensor(values, dtype=torch.float64).reshape(k.shape)


def covariance_dominance(table: Tensor) -> dict[str, float]:
    """How diagonal the covariance of an embedding table's columns is.

    The covariance ``C`` of the ``dim`` columns of ``table`` (rows are samples) is
    formed in float64. Three summaries, each 1 or large for a diagonal matrix:

    - ``"mean ratio"``: mean ``|C_ii|`` over mean ``|C_ij|``, ``i != j``;
    - ``"diagonal energy"``: the share of ``sum C_ij^2`` on the diagonal;
    - ``"rows dominated"``: the share of rows whose ``|C_ii|`` exceeds every
      off-diagonal ``|C_ij|`` of the row (dominance entry by entry).

    Args:
        table: real tensor of shape ``(samples, dim)`` with ``samples >= 2`` and
            ``dim >= 2``.

    Raises:
        TypeError: ``table`` is not a real floating-point tensor.
        ValueError: ``table`` is not two-dimensional with at least two rows and columns.
    """
    if not isinstance(table, Tensor) or not table.is_floating_point():
        raise TypeError("table must be a real floating-point tensor")
    if table.dim() != 2 or min(table.shape) < 2:
        raise ValueError(
            f"table must have shape (samples, dim), both >= 2, got {tuple(table.shape)}"
        )
    covariance = torch.cov(table.detach().to(torch.float64).T)
    diagonal = covariance.diagonal().abs()
    off = (covariance - torch.diag(covariance.diagonal())).abs()
    dim = len(diagonal)
    return {
        "mean ratio": (diagonal.mean() / (off.sum() / (dim * (dim - 1)))).item(),
        "diagonal energy": (diagonal.pow(2).sum() / covariance.pow(2).sum()).item(),
        "rows dominated": (diagonal > off.max(1).values).double().mean().item(),
    }


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal position embedding with a cached table, for use inside models.

    ``forward(positions)`` returns ``sinusoidal_embedding(positions, dim, base=base)``
    in the module's dtype. Integer positions in ``[0, len(table))`` are looked up in a
    table that is built on first use and grown (doubling) when a larger position
    arrives; other positions are computed directly. The table is a non-persistent
    buffer: it follows ``.to(device, dtype)`` and is never written to a state dict.

    Args:
        dim: encoding dimension, positive and even.
        base: the frequency base.
        initial_length: number of positions tabulated up front.
    """

    table: Tensor

    def __init__(
        self, dim: int, *, base: float = 10000.0, initial_length: int = 512
    ) -> None:
        super().__init__()
        check_dim_and_base(dim, base)
        check_initial_length(initial_length)
        self.dim, self.base = dim, float(base)
        positions = torch.arange(initial_length)
        self.register_buffer(
            "table", sinusoidal_embedding(positions, dim, base=base), persistent=False
        )

    def forward(self, positions: Tensor) -> Tensor:
        positions = as_positions(positions)
        if positions.device != self.table.device:
            raise ValueError(
                f"positions are on {positions.device} but the embedding is on "
                f"{self.table.device}; move one of them"
            )
        if positions.is_floating_point():
            return sinusoidal_embedding(
                positions, self.dim, base=self.base, dtype=self.table.dtype
            )
        if positions.numel() and int(positions.min()) < 0:
            return sinusoidal_embedding(
                positions, self.dim, base=self.base, dtype=self.table.dtype
            )
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if needed > len(self.table):
            self._grow(needed)
        return self.table[positions]

    def _grow(self, needed: int) -> None:
        length = max(needed, 2 * len(self.table))
        positions = torch.arange(length, device=self.table.device)
        self.table = sinusoidal_embedding(
            positions, self.dim, base=self.base, dtype=self.table.dtype
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, cached={len(self.table)}"
