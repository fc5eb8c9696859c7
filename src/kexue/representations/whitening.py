"""BERT-whitening, after Su Jianlin's kexue.fm/archives/8069 and 8321,
arXiv 2103.15316.

Sentence vectors ``x`` (rows) are mapped to ``(x - mu) W`` with ``mu`` their mean and
``W = U Lambda^{-1/2}`` from the eigendecomposition ``Sigma = U Lambda U^T`` of their
covariance, so that the transformed vectors have mean 0 and covariance I; keeping the
first ``k`` columns of ``W`` is PCA to the ``k`` directions of largest variance.
``spearman`` is the rank correlation the articles score semantic similarity with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue import _checks

__all__ = [
    "Whitening",
    "anisotropy",
    "cosine_matrix",
    "covariance_rank",
    "fit_whitening",
    "spearman",
]

_F64 = torch.float64


class Whitening(nn.Module):
    """The affine map ``x -> (x - mean) @ weight`` of BERT-whitening.

    Build it with :func:`fit_whitening`, or directly from a mean and a weight matrix.
    Both are buffers: ``.to(device)`` moves them, ``state_dict()`` saves them, and no
    optimizer trains them.

    Args:
        mean: ``(d,)`` floating tensor, the vector subtracted first.
        weight: ``(d, k)`` floating tensor of the mean's dtype and device.

    Raises:
        TypeError: ``mean`` or ``weight`` is not a floating tensor, or their dtypes
            differ.
        ValueError: wrong ranks, ``weight.shape[0] != d``, or different devices.
    """

    mean: Tensor
    weight: Tensor

    def __init__(self, mean: Tensor, weight: Tensor) -> None:
        super().__init__()
        mean = _checks.tensor(mean, "mean", ndim=1)
        weight = _checks.tensor(weight, "weight", ndim=2)
        _checks.same_device(("mean", mean), weight=weight)
        _checks.same_dtype(("mean", mean), weight=weight)
        if weight.shape[0] != mean.shape[0]:
            raise ValueError(
                f"weight must have shape (d, k) with d = mean.shape[0] = "
                f"{mean.shape[0]}, got {tuple(weight.shape)}"
            )
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("weight", weight.detach().clone())

    @property
    def in_features(self) -> int:
        """``d``, the width of the vectors it takes."""
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        """``k``, the width of the vectors it returns."""
        return self.weight.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        """Whiten ``x``.

        Args:
            x: ``(..., d)`` floating tensor on the buffers' device; any leading shape,
                empty included.

        Returns:
            ``(..., k)`` tensor ``(x - mean) @ weight`` in the dtype of ``x``; half
            precision is computed in float32 (whitened coordinates of a poorly scaled
            direction can exceed the float16 range mid-product).

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x`` is 0-d, its last dimension is not ``d``, or it is on
                another device than the buffers.
        """
        x = _checks.tensor(x, "x", min_ndim=1)
        _checks.same_device(("x", x), mean=self.mean)
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape (..., {self.in_features}) to match this "
                f"Whitening, got {tuple(x.shape)}"
            )
        dtype = _checks.compute_dtype(x.dtype)
        mean, weight = self.mean.to(dtype), self.weight.to(dtype)
        return ((x.to(dtype) - mean) @ weight).to(x.dtype)

    def truncate(self, k: int) -> Whitening:
        """The same map keeping only its first ``k`` output coordinates.

        For a fit of :func:`fit_whitening` these are the ``k`` directions of largest
        variance, so ``fit_whitening(x).truncate(k)`` equals ``fit_whitening(x, k=k)``
        without a second eigendecomposition.

        Args:
            k: ``1 <= k <= out_features``.

        Returns:
            A new :class:`Whitening` with the same ``mean`` and ``weight[:, :k]``
            (copies, on the same device and dtype).

        Raises:
            TypeError: ``k`` is not an int.
            ValueError: ``k < 1`` or ``k > out_features``.
        """
        k = _checks.positive_int(k, "k")
        if k > self.out_features:
            raise ValueError(
                f"k must be at most out_features = {self.out_features}, got {k}"
            )
        return Whitening(self.mean, self.weight[:, :k])

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def fit_whitening(
    x: Tensor, *, k: int | None = None, unbiased: bool = True
) -> Whitening:
    """Fit BERT-whitening to the rows of ``x``: mean 0, covariance I, top ``k`` kept.

    ``mu`` is the mean of the rows and ``Sigma`` their covariance (divided by
    ``n - 1`` when ``unbiased``, by ``n`` otherwise; the reference code of the article
    uses ``n - 1``); ``Sigma = U Lambda U^T`` with the eigenvalues in decreasing order
    and ``W = U Lambda^{-1/2}``, of which the first ``k`` columns are kept. Everything
    is computed in float64. The eigendecomposition of a symmetric positive
    semi-definite matrix is its SVD; each column of ``U`` is defined only up to sign,
    and the sign is fixed here by making the entry of largest magnitude positive
    (cosines after whitening do not depend on it).

    Zero variance: a direction with eigenvalue ``<= max(n, d) * eps_64 * lambda_max``
    (numerically zero, as in ``numpy.linalg.matrix_rank``) cannot be scaled to unit
    variance. If one of the ``k`` kept directions is such, a ``ValueError`` names ``x``
    and the rank found; pass ``k`` no larger than the rank (``n <= d`` rows give rank at
    most ``n - 1``) or more rows.

    Args:
        x: ``(n, d)`` floating tensor of finite values, ``n >= 2`` and ``d >= 1``.
        k: the number of directions kept, ``1 <= k <= d``; None keeps all ``d``.
        unbiased: divide the covariance by ``n - 1`` (True) or ``n`` (False).

    Returns:
        A :class:`Whitening` with ``mean (d,)`` and ``weight (d, k)`` on the device of
        ``x``, in its dtype (float32 for half precision, whose range the weights of a
        small-variance direction exceed).

    Raises:
        TypeError: ``x`` is not a floating tensor, ``k`` not an int, ``unbiased`` not a
            bool.
        ValueError: ``x`` is not 2-D, has fewer than 2 rows or no column, is a meta
            tensor, holds NaN or inf; ``k > d``; or a kept direction has zero variance.
    """
    x = _checks.tensor(x, "x", ndim=2)
    unbiased = _checks.flag(unbiased, "unbiased")
    n, d = x.shape
    k = d if k is None else _checks.positive_int(k, "k")
    _check_sample(x, n, d, k)
    x64 = x.detach().to(_F64)
    mu = x64.mean(0)
    centred = x64 - mu
    cov = centred.T @ centred / (n - 1 if unbiased else n)
    variances, vectors = _descending_eigh(cov)
    rank = _rank(variances, n, d)
    if rank < k:
        raise ValueError(
            f"x has a covariance of rank {rank} (n = {n} rows, d = {d} columns), so "
            f"only {rank} directions have non-zero variance and k = {k} cannot be "
            "whitened: pass k <= rank or more rows than columns"
        )
    weight = vectors[:, :k] * variances[:k].rsqrt()
    dtype = _checks.compute_dtype(x.dtype)
    return Whitening(mu.to(dtype), weight.to(dtype))


def covariance_rank(x: Tensor) -> int:
    """The rank of the covariance of the rows of ``x``, by :func:`fit_whitening`'s rule.

    An eigenvalue counts when it exceeds ``max(n, d) * eps_64 * lambda_max``, the
    floor of ``numpy.linalg.matrix_rank``, computed in float64: the result is the
    largest ``k`` that ``fit_whitening(x, k=k)`` accepts (0 for constant rows).

    Args:
        x: ``(n, d)`` floating tensor of finite values, ``n >= 2`` and ``d >= 1``.

    Returns:
        The rank, an int in ``[0, min(n - 1, d)]`` up to rounding.

    Raises:
        TypeError: ``x`` is not a floating tensor.
        ValueError: ``x`` is not 2-D, has fewer than 2 rows or no column, is a meta
            tensor, or holds NaN or inf.
    """
    x = _checks.tensor(x, "x", ndim=2)
    n, d = x.shape
    _check_sample(x, n, d, min(d, 1))
    centred = x.detach().to(_F64) - x.detach().to(_F64).mean(0)
    variances = torch.linalg.eigvalsh(centred.T @ centred / (n - 1)).flip(0)
    return _rank(variances, n, d)


def _rank(variances: Tensor, n: int, d: int) -> int:
    """How many of the decreasing ``variances`` lie above NumPy's rank floor."""
    floor = max(n, d) * torch.finfo(_F64).eps * variances[0].clamp_min(0)
    return int((variances > floor).sum())


def cosine_matrix(x: Tensor, y: Tensor | None = None) -> Tensor:
    """Cosines between every row of ``x`` and every row of ``y`` (``x`` itself if None).

    Args:
        x: ``(n, d)`` floating tensor.
        y: ``(m, d)`` floating tensor of the dtype and device of ``x``, or None.

    Returns:
        ``(n, m)`` (``(n, n)`` without ``y``) in the dtype of ``x``, half precision
        computed in float32; a zero row has cosine 0 with everything (not NaN).
        Empty rows give an empty matrix.

    Raises:
        TypeError: ``x`` or ``y`` is not a floating tensor, or their dtypes differ.
        ValueError: not 2-D, different widths or devices.
    """
    x = _checks.tensor(x, "x", ndim=2)
    if y is None:
        y = x
    else:
        y = _checks.tensor(y, "y", ndim=2)
        _checks.same_device(("x", x), y=y)
        _checks.same_dtype(("x", x), y=y)
        if y.shape[1] != x.shape[1]:
            raise ValueError(
                f"x and y must have the same width, got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
    dtype = _checks.compute_dtype(x.dtype)
    # normalize clamps the norm at eps, so a zero row stays zero instead of NaN
    xn = torch.nn.functional.normalize(x.to(dtype), dim=-1)
    yn = torch.nn.functional.normalize(y.to(dtype), dim=-1)
    return (xn @ yn.T).to(x.dtype)


def anisotropy(x: Tensor, groups: Tensor | None = None) -> float:
    """The mean cosine between distinct rows of ``x``, the usual measure of anisotropy.

    Computed in float64 from the full ``(n, n)`` cosine matrix (memory grows as
    ``n**2``). With ``groups``, only pairs of rows from different groups count (e.g.
    sentences of different documents, which should be unrelated).

    Args:
        x: ``(n, d)`` floating tensor, ``n >= 2``.
        groups: ``(n,)`` integer tensor on the device of ``x``, or None.

    Returns:
        The mean cosine, a Python float in ``[-1, 1]``.

    Raises:
        TypeError: ``x`` is not floating, ``groups`` not an integer tensor.
        ValueError: ``x`` not 2-D or fewer than 2 rows; ``groups`` not ``(n,)`` or on
            another device; no pair of rows from different groups; a meta tensor.
    """
    x = _checks.tensor(x, "x", ndim=2)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x needs at least 2 rows, got shape {tuple(x.shape)}")
    if x.device.type == "meta":
        raise ValueError("x is a meta tensor: anisotropy needs its values")
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    counted = ~eye
    if groups is not None:
        groups = _checks.tensor(groups, "groups", ndim=1, kind="integer")
        _checks.same_device(("x", x), groups=groups)
        if groups.shape[0] != n:
            raise ValueError(
                f"groups must have shape ({n},) like x's rows, got "
                f"{tuple(groups.shape)}"
            )
        counted = groups[:, None] != groups[None, :]
        if not bool(counted.any()):
            raise ValueError("groups puts every row in one group: no pair to count")
    return float(cosine_matrix(x.detach().to(_F64))[counted].mean())


def _check_sample(x: Tensor, n: int, d: int, k: int) -> None:
    """The values of ``x`` can be whitened to ``k`` columns (shapes, device, finite)."""
    if n < 2:
        raise ValueError(
            f"x needs at least 2 rows (samples) to estimate a covariance, got shape "
            f"{tuple(x.shape)}"
        )
    if d < 1:
        raise ValueError(f"x needs at least one column, got shape {tuple(x.shape)}")
    if k > d:
        raise ValueError(f"k must be at most d = {d} (the columns of x), got {k}")
    if x.device.type == "meta":
        raise ValueError("x is a meta tensor: fitting a whitening needs its values")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must hold finite values (found NaN or inf)")


def _descending_eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (decreasing) and unit eigenvectors (columns) of a symmetric matrix,
    each column signed so that its entry of largest magnitude is positive."""
    # eigh reads one triangle only; symmetrise so both halves count equally
    variances, vectors = torch.linalg.eigh((cov + cov.T) / 2)
    variances, vectors = variances.flip(0), vectors.flip(1)
    pivot = vectors.abs().argmax(0, keepdim=True)
    signs = torch.sign(vectors.gather(0, pivot))
    return variances, vectors * signs


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of ``a`` and ``b``, ties given their average rank.

    The Pearson correlation of the two rank vectors, computed in float64; it agrees
    with ``scipy.stats.spearmanr``. When ``a`` or ``b`` is constant the correlation is
    undefined and the result is NaN, as in SciPy.

    Args:
        a: ``(n,)`` real tensor (floating or integer) of finite values, ``n >= 2``.
        b: ``(n,)`` real tensor on the device of ``a``.

    Returns:
        The correlation, a Python float in ``[-1, 1]`` (or NaN).

    Raises:
        TypeError: ``a`` or ``b`` is not a real tensor (bool and complex are not).
        ValueError: not 1-D, different lengths or devices, fewer than 2 entries, meta
            tensors, or NaN/inf values.
    """
    a = _checks.tensor(a, "a", ndim=1, kind="real")
    b = _checks.tensor(b, "b", ndim=1, kind="real")
    _checks.same_device(("a", a), b=b)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same length, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    if a.shape[0] < 2:
        raise ValueError(f"a and b need at least 2 entries, got {a.shape[0]}")
    if a.device.type == "meta":
        raise ValueError("a is a meta tensor: a rank correlation needs its values")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must hold finite values (found NaN or inf)")
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.square().sum() * rb.square().sum()).sqrt()
    if denominator == 0:
        return float("nan")
    return float((ra * rb).sum() / denominator)


def _average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..n of ``x`` in float64, tied entries sharing the mean of their ranks."""
    order = torch.argsort(x, stable=True)
    _, group, counts = torch.unique_consecutive(
        x[order], return_inverse=True, return_counts=True
    )
    # a group of c ties starting after s smaller entries holds ranks s+1..s+c: mean
    # s + (c + 1)/2
    starts = torch.cumsum(counts, 0) - counts
    mean_rank = starts.to(_F64) + (counts.to(_F64) + 1) / 2
    ranks = torch.empty(x.shape[0], dtype=_F64, device=x.device)
    ranks[order] = mean_rank[group]
    return ranks
