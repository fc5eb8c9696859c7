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
from typing import Any

import mpmath
import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.positions._validation import (
    MAX_CACHED_LENGTH,
    as_positions,
    check_base,
    dim_and_base,
    has_values,
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
        TypeError: ``dim`` is not an int, ``base`` not a number, or ``dtype`` not a
            floating dtype.
        ValueError: ``dim`` is not positive and even, or ``base`` is not a finite
            number above 1.
    """
    dim, base = dim_and_base(dim, base)
    dtype = _checks.float_dtype(dtype)
    exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim
    return torch.pow(
        torch.tensor(float(base), dtype=torch.float64, device=device), -exponents
    ).to(dtype)


def sinusoidal_embedding(
    positions: Tensor | int | float | list[Any],
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
    dim, base = dim_and_base(dim, base)
    out_dtype = _checks.float_dtype(dtype)
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

    Raises:
        TypeError: ``offset`` is boolean, complex or not numeric, ``dim`` not an int,
            or ``dtype`` not floating.
        ValueError: ``dim`` not positive and even, or ``base`` not a finite number
            above 1.
    """
    offset = as_positions(offset, name="offset")
    if device is not None:
        offset = offset.to(device)
    dim, base = dim_and_base(dim, base)
    out_dtype = _checks.float_dtype(dtype)
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
    matrix of a relative encoding, and lower the more absolute position matters. A
    constant matrix is Toeplitz: 1 (not 0/0).

    Args:
        matrix: real floating tensor of shape ``(..., n, n)`` with ``n >= 2``.

    Returns:
        Tensor of shape ``(...)`` in the dtype of ``matrix`` (computed in float32 for
        half precision, whose squares overflow).

    Raises:
        TypeError: ``matrix`` is not a real floating-point tensor.
        ValueError: ``matrix`` is not of shape ``(..., n, n)`` with ``n >= 2``.
    """
    _checks.tensor(matrix, "matrix", min_ndim=2)
    n = matrix.shape[-1]
    if matrix.shape[-2] != n or n < 2:
        raise ValueError(
            f"matrix must have shape (..., n, n) with n >= 2, got {tuple(matrix.shape)}"
        )
    # entry (m, k) lies on diagonal m - k, labelled m - k + n - 1 in [0, 2n - 1)
    index = torch.arange(n, device=matrix.device)
    label = (index[:, None] - index + n - 1).flatten()
    count = n - (torch.arange(2 * n - 1, device=matrix.device) - (n - 1)).abs()
    return _share(matrix.flatten(-2), label, count)


def share_explained_by_groups(values: Tensor, groups: Tensor) -> Tensor:
    """R^2 of the best fit of ``values[..., j]`` by a function of ``groups[j]``.

    The best fit is the mean of each group; values that are constant (or absent) are
    explained entirely: 1. Shared by :func:`toeplitz_share` (groups: diagonals) and
    :func:`kexue.positions.rope2d.offset_share` (groups: 2-D offsets).

    Args:
        values: real floating tensor of shape ``(..., m)``.
        groups: integer or real labels of shape ``(m,)``, or ``(m, k)`` (rows as
            labels), on the device of ``values``.

    Returns:
        Tensor of shape ``(...)`` in the dtype of ``values`` (computed in float32 for
        half precision).

    Raises:
        TypeError: ``values`` is not floating, or ``groups`` boolean, complex or not a
            tensor.
        ValueError: ``values`` has no last axis, ``groups`` has the wrong shape or
            lies on another device, or ``groups`` is on the meta device (its values
            are needed).
    """
    _checks.tensor(values, "values", min_ndim=1)
    _checks.tensor(groups, "groups", kind="real")
    m = values.shape[-1]
    if groups.dim() not in (1, 2) or groups.shape[0] != m:
        raise ValueError(
            f"groups must have shape ({m},) or ({m}, k) to label values "
            f"{tuple(values.shape)}, got {tuple(groups.shape)}"
        )
    _checks.same_device(("values", values), groups=groups)
    has_values(groups, "groups", "the labels must be read to form the groups")
    if m == 0:
        return values.new_ones(values.shape[:-1])
    _, label, count = torch.unique(
        groups, dim=0, return_inverse=True, return_counts=True
    )
    return _share(values, label, count)


def _share(values: Tensor, label: Tensor, count: Tensor) -> Tensor:
    """R^2 of the group means, for ``label`` in ``[0, len(count))``, in float32 at
    least; rows whose spread is at rounding level count as constant (1)."""
    dtype = values.dtype
    work = values.to(_checks.compute_dtype(dtype))
    sums = work.new_zeros(*work.shape[:-1], count.shape[0])
    sums.index_add_(-1, label, work)
    means = sums / count.to(work.dtype)
    residual = (work - means[..., label]).pow(2).sum(-1)
    total = (work - work.mean(-1, keepdim=True)).pow(2).sum(-1)
    # a constant row has total 0 up to the rounding of its mean: treat as constant
    eps = torch.finfo(work.dtype).eps
    scale = work.abs().amax(-1)
    constant = total <= work.shape[-1] * (4 * eps * scale) ** 2
    share = 1 - residual / torch.where(constant, 1, total)
    return torch.where(constant, 1, share).to(dtype)


def _distances(distances: object) -> Tensor:
    distances = as_positions(distances, name="distances")
    has_values(distances, "distances", "the integral is evaluated at them")
    if not bool(torch.isfinite(distances.double()).all()):
        raise ValueError("distances must be finite")
    return distances.detach().to("cpu", torch.float64)


def decay_integral(
    distances: Tensor | float | list[Any], *, base: float = 10000.0
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
        TypeError: ``distances`` is boolean, complex or not numeric, or ``base`` not
            a number.
        ValueError: a distance is not finite, ``distances`` is on the meta device, or
            ``base`` is not a finite number above 1.
    """
    base = check_base(base)
    k = _distances(distances)
    log_base = math.log(base)

    def one(value: float) -> float:
        value = abs(value)
        if value == 0:
            return 1.0
        return float((mpmath.ci(value) - mpmath.ci(value / base)) / log_base)

    values = [one(v) for v in k.flatten().tolist()]
    return torch.tensor(values, dtype=torch.float64).reshape(k.shape)


def power_decay_integral(distances: Tensor | float | list[Any], alpha: float) -> Tensor:
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
        ValueError: a distance is not finite, ``distances`` is on the meta device, or
            ``alpha`` is not finite and positive.
    """
    alpha = _checks.real(alpha, "alpha", positive=True)
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
            ``dim >= 2``, finite.

    Raises:
        TypeError: ``table`` is not a real floating-point tensor.
        ValueError: ``table`` is not two-dimensional with at least two rows and
            columns, is on the meta device, is not finite, or has no variance
            (constant columns: every summary would be 0/0).
    """
    _checks.tensor(table, "table")
    if table.dim() != 2 or min(table.shape) < 2:
        raise ValueError(
            f"table must have shape (samples, dim), both >= 2, got {tuple(table.shape)}"
        )
    has_values(table, "table", "the summaries are numbers")
    covariance = torch.cov(table.detach().to(torch.float64).T)
    if not bool(torch.isfinite(covariance).all()):
        raise ValueError("table must be finite")
    if not bool(covariance.abs().amax() > 0):
        raise ValueError("table has no variance (constant columns): nothing to compare")
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
    in the module's dtype, of shape ``positions.shape + (dim,)``. Integer positions in
    ``[0, len(table))`` are looked up in a table that is built on first use and grown
    (doubling) when a larger position arrives, up to ``max_cached_length`` rows; other
    positions (real, negative, beyond the limit, or on the meta device) are computed
    directly. The table is a non-persistent buffer: it follows ``.to(device, dtype)``
    and is never written to a state dict.

    Args:
        dim: encoding dimension, positive and even.
        base: the frequency base.
        initial_length: number of positions tabulated up front (at most
            ``max_cached_length``).
        max_cached_length: the most rows the table may hold (default
            ``MAX_CACHED_LENGTH``, 65,536).

    Raises:
        TypeError: ``dim``, ``initial_length`` or ``max_cached_length`` not an int;
            in ``forward``, boolean or complex ``positions``.
        ValueError: ``dim`` not positive and even, ``base`` not a finite number above
            1, a length not positive; in ``forward``, ``positions`` on another device.
    """

    table: Tensor

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10000.0,
        initial_length: int = 512,
        max_cached_length: int = MAX_CACHED_LENGTH,
    ) -> None:
        super().__init__()
        self.dim, self.base = dim_and_base(dim, base)
        initial_length = _checks.positive_int(initial_length, "initial_length")
        self.max_cached_length = _checks.positive_int(
            max_cached_length, "max_cached_length"
        )
        positions = torch.arange(min(initial_length, self.max_cached_length))
        self.register_buffer(
            "table", sinusoidal_embedding(positions, dim, base=base), persistent=False
        )

    def forward(self, positions: Tensor) -> Tensor:
        positions = as_positions(positions)
        _checks.same_device(("the embedding", self.table), positions=positions)
        if not positions.numel():
            return self.table.new_empty(*positions.shape, self.dim)
        if positions.is_floating_point() or positions.device.type == "meta":
            return self._direct(positions)
        low, high = (int(v) for v in torch.aminmax(positions))  # one sync
        if low < 0 or high >= self.max_cached_length:
            return self._direct(positions)
        if high >= len(self.table):
            self._grow(high + 1)
        return self.table[positions]

    def _direct(self, positions: Tensor) -> Tensor:
        return sinusoidal_embedding(
            positions, self.dim, base=self.base, dtype=self.table.dtype
        )

    def _grow(self, needed: int) -> None:
        length = min(max(needed, 2 * len(self.table)), self.max_cached_length)
        positions = torch.arange(length, device=self.table.device)
        self.table = self._direct(positions)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, cached={len(self.table)}"
