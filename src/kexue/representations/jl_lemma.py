"""The Johnson-Lindenstrauss lemma and three of its uses, after Su Jianlin's
kexue.fm/archives/8679 (theory) and 8706 (applications).

A matrix ``A`` of shape ``(n, m)`` with independent N(0, 1/n) entries keeps all
``N(N - 1)/2`` squared distances of ``N`` points within a factor ``1 +- eps`` with
probability at least ``(N - 1)/N`` once ``n > 24 log N / eps^2`` (:func:`jl_min_dim`,
:func:`gaussian_projection`, :func:`distortion`). The signs of a random projection
estimate angles (SimHash: :func:`simhash`, :func:`simhash_cosine`), and a random
projection of a matrix's columns finds its range (:func:`randomized_svd`, after Halko,
Martinsson and Tropp 2011).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "distortion",
    "gaussian_projection",
    "jl_min_dim",
    "randomized_svd",
    "simhash",
    "simhash_cosine",
]

_F64 = torch.float64
# A pair whose centred squared distance is below this fraction of the squared norms
# is a duplicate to float64 rounding: its ratio is 0/0 and it is skipped.
_DUPLICATE = 1e-10


def jl_min_dim(num_points: int, eps: float, *, constant: float = 24.0) -> int:
    """The smallest integer ``n > constant * log(num_points) / eps^2``.

    With the default ``constant = 24`` this is the dimension of the lemma's statement
    (success probability at least ``(N - 1)/N``); ``constant = 16`` only guarantees
    that a suitable projection exists (probability at least ``1/N``).
    scikit-learn's ``johnson_lindenstrauss_min_dim`` is ``constant = 8 / (1 - 2 eps /
    3)`` rounded down, from a sharper tail bound and the existence version.

    Args:
        num_points: ``N >= 1``, the number of points (``N = 1`` gives 1).
        eps: the relative error of squared distances, ``0 < eps < 1``.
        constant: a positive number.

    Returns:
        ``floor(constant * log(N) / eps^2) + 1``, an int.

    Raises:
        TypeError: ``num_points`` is not an int, ``eps`` or ``constant`` not a number.
        ValueError: ``num_points < 1``, ``eps`` outside ``(0, 1)``, ``constant <= 0``.
    """
    num_points = _checks.positive_int(num_points, "num_points")
    eps = _checks.real(eps, "eps", positive=True)
    constant = _checks.real(constant, "constant", positive=True)
    if eps >= 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return math.floor(constant * math.log(num_points) / eps**2) + 1


def _gaussian(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> Tensor:
    """Standard normal entries drawn on the generator's device, then moved (a CPU
    generator gives the same matrix on every device); half precision is drawn in
    float32 and returned so, for the caller to scale before rounding."""
    draw_on = device if generator is None else generator.device
    work = _checks.compute_dtype(dtype)
    z = torch.randn(shape, generator=generator, dtype=work, device=draw_on)
    return z.to(device=device)


def gaussian_projection(
    in_dim: int,
    out_dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The lemma's random matrix ``A``: independent N(0, 1/out_dim) entries.

    A point ``v`` (a row of ``x``) maps to ``A v`` (``x @ A.T``); for a fixed ``v`` the
    squared norm ``|A v|^2 / |v|^2`` is ``chi^2_n / n`` with ``n = out_dim``.

    Args:
        in_dim: ``m >= 0``, the dimension of the points.
        out_dim: ``n >= 1``, the dimension after projection.
        generator: a ``torch.Generator`` for the draw (drawn on its device, then moved
            to ``device``), or None for the global one.
        dtype: a floating dtype (half precision is drawn in float32, then rounded).
        device: where the matrix goes; None for the default device.

    Returns:
        ``(out_dim, in_dim)`` tensor of ``dtype`` on ``device``.

    Raises:
        TypeError: a size is not an int, ``dtype`` not floating, ``generator`` not a
            generator, ``device`` not a device.
        ValueError: ``in_dim < 0``, ``out_dim < 1``, or ``device`` not a torch device.
    """
    in_dim = _checks.nonnegative_int(in_dim, "in_dim")
    out_dim = _checks.positive_int(out_dim, "out_dim")
    dtype = _checks.float_dtype(dtype)
    generator = _checks.generator(generator)
    device = None if device is None else _checks.device(device)
    z = _gaussian((out_dim, in_dim), generator, dtype, device)
    return (z / math.sqrt(out_dim)).to(dtype)


def distortion(
    x: Tensor, projection: Tensor, *, chunk: int = 1024
) -> tuple[float, float]:
    """The extreme ratios ``|A (x_i - x_j)|^2 / |x_i - x_j|^2`` over pairs ``i < j``.

    The lemma holds with error ``eps`` exactly when both lie in ``[1 - eps, 1 + eps]``.
    Squared distances come from Gram matrices of the centred rows in float64, a block
    of ``chunk`` rows at a time, so memory is ``O(chunk N)`` besides the ``(N, n)``
    projected rows; centring (distances do not change) and float64 keep the
    cancellation in ``|a|^2 + |b|^2 - 2 a.b`` far below any distortion worth measuring.
    Pairs of equal rows (squared distance below ``1e-10`` times their squared norms
    after centring) have no ratio and are skipped.

    Args:
        x: ``(N, m)`` floating tensor of finite values: the points, one a row.
        projection: ``(n, m)`` floating tensor on the device of ``x`` (any floating
            dtype: both are used in float64), e.g. :func:`gaussian_projection`, a PCA
            basis or scikit-learn's ``components_``.
        chunk: rows per block, ``>= 1``.

    Returns:
        ``(min_ratio, max_ratio)`` as floats.

    Raises:
        TypeError: ``x`` or ``projection`` is not a floating tensor, ``chunk`` not an
            int.
        ValueError: wrong ranks; ``projection.shape[1] != m``; another device; a meta
            tensor; NaN or inf in ``x``; ``chunk < 1``; fewer than two distinct rows.
    """
    x = _checks.tensor(x, "x", ndim=2)
    projection = _checks.tensor(projection, "projection", ndim=2)
    chunk = _checks.positive_int(chunk, "chunk")
    _checks.same_device(("x", x), projection=projection)
    if x.shape[1] != projection.shape[1]:
        raise ValueError(
            f"projection must have shape (n, {x.shape[1]}) to act on the rows of x, "
            f"got {tuple(projection.shape)}"
        )
    if x.device.type == "meta":
        raise ValueError("x is a meta tensor: distortion needs its values")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must hold finite values (it has NaN or inf)")
    x64 = x.detach().to(_F64)
    x64 = x64 - x64.mean(0)
    y64 = x64 @ projection.detach().to(_F64).T
    x_squares, y_squares = (x64**2).sum(1), (y64**2).sum(1)
    low, high = math.inf, -math.inf
    for start in range(0, x64.shape[0], chunk):
        rows = slice(start, start + chunk)
        before = _squared_distances(x64, x_squares, rows)
        pairs = torch.ones_like(before, dtype=torch.bool).triu(start + 1)
        pairs &= before > _DUPLICATE * (x_squares[rows, None] + x_squares)
        if bool(pairs.any()):
            after = _squared_distances(y64, y_squares, rows)
            ratio = after[pairs] / before[pairs]
            low, high = min(low, ratio.min().item()), max(high, ratio.max().item())
    if low == math.inf:
        raise ValueError("x must have at least two distinct rows")
    return low, high


def _squared_distances(z: Tensor, squares: Tensor, rows: slice) -> Tensor:
    """``(chunk, N)`` squared distances of the rows ``rows`` of ``z`` to every row,
    from one Gram block (``squares`` are the squared norms of the rows)."""
    gram = z[rows] @ z.T
    return (squares[rows, None] + squares - 2 * gram).clamp_min(0)


def simhash(
    x: Tensor, bits: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """SimHash codes: the signs of ``bits`` random Gaussian projections of each row.

    Two rows at angle ``theta`` get equal bits with probability ``1 - theta / pi``
    (Charikar 2002), so the fraction of unequal bits estimates ``theta / pi``
    (:func:`simhash_cosine`). The hyperplanes depend only on ``generator``'s state and
    ``(bits, m)``: hash a database and its queries in one call, or with generators in
    the same state (``torch.Generator().manual_seed(s)``).

    Args:
        x: ``(..., m)`` floating tensor (any leading shape, empty included).
        bits: the code length, ``>= 1``.
        generator: for the hyperplanes (drawn on its device, then moved to ``x``'s),
            or None for the global one.

    Returns:
        ``(..., bits)`` boolean tensor on ``x``'s device, True where the projection is
        positive (a zero projection, as for a zero row, gives False).

    Raises:
        TypeError: ``x`` is not a floating tensor, ``bits`` not an int, ``generator``
            not a generator.
        ValueError: ``x`` is 0-d, or ``bits < 1``.
    """
    x = _checks.tensor(x, "x", min_ndim=1)
    bits = _checks.positive_int(bits, "bits")
    generator = _checks.generator(generator)
    work = _checks.compute_dtype(x.dtype)  # a float16 product can overflow
    planes = _gaussian((bits, x.shape[-1]), generator, work, x.device)
    return x.to(work) @ planes.T > 0


def simhash_cosine(
    codes_a: Tensor, codes_b: Tensor, *, method: str = "angle"
) -> Tensor:
    """Cosines estimated from SimHash codes, for every pair of a row of ``codes_a``
    and a row of ``codes_b``.

    With ``h`` the fraction of unequal bits, ``method="angle"`` returns
    ``cos(pi h)``, the cosine of the angle that ``P(bits agree) = 1 - theta/pi``
    estimates; ``method="sign"`` returns ``1 - 2 h``, the cosine of the two ``+-1``
    sign vectors, which the article uses and whose expectation is
    ``1 - 2 theta / pi``, not ``cos theta``.

    Args:
        codes_a: ``(..., N_a, bits)`` boolean tensor, e.g. from :func:`simhash`.
        codes_b: ``(..., N_b, bits)`` boolean tensor with the same leading dimensions
            (no broadcasting) and bits, on the same device.
        method: ``"angle"`` or ``"sign"``.

    Returns:
        ``(..., N_a, N_b)`` tensor of the default floating dtype, in ``[-1, 1]``.

    Raises:
        TypeError: a code tensor is not boolean.
        ValueError: a code tensor has fewer than 2 dimensions; the leading dimensions
            or the bits differ; another device; a ``method`` not listed; no bits.
    """
    method = _checks.choice(method, "method", ("angle", "sign"))
    for name, codes in (("codes_a", codes_a), ("codes_b", codes_b)):
        _checks.tensor(codes, name, min_ndim=2, kind="any")
        if codes.dtype != torch.bool:
            raise TypeError(f"{name} must be boolean (SimHash bits), got {codes.dtype}")
    _checks.same_device(("codes_a", codes_a), codes_b=codes_b)
    if (
        codes_a.shape[:-2] != codes_b.shape[:-2]
        or codes_a.shape[-1] != codes_b.shape[-1]
    ):
        raise ValueError(
            "codes_a (..., N_a, bits) and codes_b (..., N_b, bits) must share their "
            f"leading dimensions and bits, got {tuple(codes_a.shape)} and "
            f"{tuple(codes_b.shape)}"
        )
    bits = codes_a.shape[-1]
    if bits == 0:
        raise ValueError("codes_a and codes_b must have at least one bit")
    # +-1 vectors: their inner product is (equal - unequal) bits, exact in float64.
    signs_a, signs_b = (2 * c.to(_F64) - 1 for c in (codes_a, codes_b))
    sign_cosine = signs_a @ signs_b.mT / bits
    if method == "angle":
        sign_cosine = torch.cos(math.pi * (1 - sign_cosine) / 2)
    return sign_cosine.to(torch.get_default_dtype())


def randomized_svd(
    m: Tensor,
    rank: int,
    *,
    oversample: int = 10,
    power_iters: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A rank-``rank`` SVD ``m ~ U diag(S) V^T`` from a random projection of the
    columns (Halko, Martinsson and Tropp 2011, Algorithms 4.4 and 5.1).

    ``Y = m Omega`` with Gaussian ``Omega`` of ``k = min(rank + oversample, rows,
    cols)`` columns spans nearly the range of ``m``; ``power_iters`` rounds of
    ``Q <- qr(m qr(m^T Q))`` sharpen it for slowly decaying spectra, re-orthonormalised
    each half step so that small singular values survive rounding. The SVD of the
    small ``B = Q^T m`` then gives ``U = Q U_B``, ``S``, ``V``; each singular pair is
    defined up to a common sign.

    Args:
        m: ``(..., rows, cols)`` floating tensor (a batch is decomposed at once).
        rank: ``1 <= rank <= min(rows, cols)``.
        oversample: extra random columns, ``>= 0``.
        power_iters: rounds of power iteration, ``>= 0``.
        generator: for ``Omega`` (drawn on its device, then moved), or None.

    Returns:
        ``U (..., rows, rank)``, ``S (..., rank)`` in decreasing order, ``V (..., cols,
        rank)``, in the dtype of ``m`` (half precision computed in float32, which QR and
        SVD need).

    Raises:
        TypeError: ``m`` is not a floating tensor, a count not an int, ``generator``
            not a generator.
        ValueError: ``m`` has fewer than 2 dimensions; ``rank`` outside ``[1,
            min(rows, cols)]``; a negative count.
    """
    m = _checks.tensor(m, "m", min_ndim=2)
    rank = _checks.positive_int(rank, "rank")
    oversample = _checks.nonnegative_int(oversample, "oversample")
    power_iters = _checks.nonnegative_int(power_iters, "power_iters")
    generator = _checks.generator(generator)
    rows, cols = m.shape[-2:]
    if rank > min(rows, cols):
        raise ValueError(
            f"rank must be at most min(rows, cols) = {min(rows, cols)} for m of shape "
            f"{tuple(m.shape)}, got {rank}"
        )
    work = m.to(_checks.compute_dtype(m.dtype))
    k = min(rank + oversample, rows, cols)
    omega = _gaussian((*m.shape[:-2], cols, k), generator, work.dtype, m.device)
    q = torch.linalg.qr(work @ omega).Q
    for _ in range(power_iters):
        q = torch.linalg.qr(work.mT @ q).Q
        q = torch.linalg.qr(work @ q).Q
    u_b, s, vh = torch.linalg.svd(q.mT @ work, full_matrices=False)
    u, v = q @ u_b[..., :rank], vh[..., :rank, :].mT
    return u.to(m.dtype), s[..., :rank].to(m.dtype), v.to(m.dtype)
