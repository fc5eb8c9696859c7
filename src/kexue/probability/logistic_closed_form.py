"""Closed-form linear classifiers and regressors from Gaussian assumptions.

Su Jianlin's "Does logistic regression have a closed form?" (kexue.fm/archives/8578)
assumes that each class is Gaussian with one covariance shared by all classes,
``p(x | i) = N(mu_i, Sigma)``. The log-odds of two classes are then linear in ``x``, and
the softmax classifier has the closed form

    w_i = Sigma^{-1} mu_i,    b_i = log p_i - mu_i^T Sigma^{-1} mu_i / 2,

which is linear discriminant analysis. Its regression counterpart assumes ``(x, y)``
jointly Gaussian, whose conditional mean is least squares:
``W = Sigma_xx^{-1} Sigma_xy``, ``b = mu_y - mu_x W``.

Everything is estimated by maximum likelihood (moments divided by ``n``) and computed in
float64, whatever the input's dtype; results come back in the input's dtype.

Singular covariances are the rule, not the exception: a pixel that is 0 in every image,
or fewer samples than features (``n <= d``), leave ``Sigma`` without an inverse. Every
solve here is therefore a pseudo-inverse solve through the eigendecomposition of the
symmetric matrix: eigenvalues below ``d * eps * lambda_max`` (the cut of
``torch.linalg.pinv`` and of the least-squares solver behind scikit-learn's
``LinearDiscriminantAnalysis(solver="lsqr")``) count as zero. On a well-conditioned
``Sigma`` this is ``Sigma^{-1} mu`` to rounding; on a singular one it is the
minimum-norm solution. A Cholesky factorisation would fail on an exactly singular
``Sigma`` and return noise amplified by ``1 / lambda_min`` on a nearly singular one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "gaussian_classifier",
    "gaussian_regression",
    "pooled_covariance",
]

_F64 = torch.float64


def _check_features(x: object, name: str = "x") -> Tensor:
    """``x`` a finite floating ``(n, d)`` tensor with ``n >= 1``, on a real device."""
    x = _checks.tensor(x, name, ndim=2)
    if x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor: the fit needs its values")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows: at least one sample is needed")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (it has NaN or inf entries)")
    return x


def _check_labels(x: Tensor, y: object, num_classes: object) -> tuple[Tensor, int]:
    """``y`` integer class labels ``(n,)`` in ``[0, C)``; returns them and ``C``."""
    y = _checks.tensor(y, "y", ndim=1, kind="integer")
    _checks.same_device(("x", x), y=y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have one label per row of x, got {y.shape[0]} labels "
            f"for {x.shape[0]} rows"
        )
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise ValueError(f"y must hold class indices >= 0, got {low}")
    if num_classes is None:
        return y, high + 1
    classes = _checks.positive_int(num_classes, "num_classes")
    if high >= classes:
        raise ValueError(f"y holds class {high} but num_classes={classes}")
    return y, classes


def _class_statistics(x: Tensor, y: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """Class counts ``(C,)`` and means ``(C, d)``, float64 (0 for an empty class)."""
    counts = torch.bincount(y, minlength=classes).to(_F64)
    sums = torch.zeros(classes, x.shape[1], dtype=_F64, device=x.device)
    sums.index_add_(0, y, x.to(_F64))
    return counts, sums / counts.clamp_min(1)[:, None]


def _pooled(x64: Tensor, y: Tensor, means: Tensor) -> Tensor:
    # two passes: centring first keeps the digits that x^T x - n mu^T mu would cancel
    centred = x64 - means[y]
    return centred.T @ centred / x64.shape[0]


def _pinv_solve(matrix: Tensor, rhs: Tensor) -> Tensor:
    """``matrix^+ rhs`` for a symmetric positive semi-definite ``matrix`` (float64)."""
    if matrix.shape[0] == 0:  # no features: nothing to solve for
        return rhs.new_zeros(0, rhs.shape[1])
    values, vectors = torch.linalg.eigh(matrix)
    cut = matrix.shape[0] * torch.finfo(_F64).eps * values.abs().max()
    keep = values > cut
    inverse = torch.where(keep, 1.0 / torch.where(keep, values, 1.0), 0.0)
    return vectors @ (inverse[:, None] * (vectors.T @ rhs))


def pooled_covariance(
    x: Tensor, y: Tensor, *, num_classes: int | None = None
) -> Tensor:
    """The within-class covariance pooled over classes (maximum likelihood).

    ``Sigma = (1/n) sum_j (x_j - mu_{y_j})(x_j - mu_{y_j})^T``, the shared covariance of
    the article's model. It equals the article's moment identity
    ``Sigma~ + mu~^T mu~ - sum_i p_i mu_i^T mu_i`` (``Sigma~``, ``mu~``: covariance
    and mean of all the data, divided by ``n``; ``p_i``: class frequencies) and
    scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr").covariance_``.

    Args:
        x: features, shape ``(n, d)``, a floating dtype, finite, ``n >= 1``.
        y: class labels, shape ``(n,)``, an integer dtype, values in ``[0, C)``.
        num_classes: ``C``; None means ``y.max() + 1``. Classes without samples
            contribute nothing.

    Returns:
        ``(d, d)``, symmetric positive semi-definite, in ``x``'s dtype and device
        (computed in float64).

    Raises:
        TypeError: ``x`` not a floating tensor, ``y`` not an integer tensor,
            ``num_classes`` not an int.
        ValueError: wrong ranks or lengths, no samples, non-finite ``x``, labels out of
            range, tensors on different devices, meta tensors.
    """
    x = _check_features(x)
    y, classes = _check_labels(x, y, num_classes)
    _, means = _class_statistics(x, y, classes)
    return _pooled(x.to(_F64), y, means).to(x.dtype)


def gaussian_classifier(
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int | None = None,
    shrinkage: float = 0.0,
    covariance: str = "pooled",
) -> tuple[Tensor, Tensor]:
    """The closed-form softmax classifier of classes Gaussian with a shared covariance.

    Logits ``x @ W + b`` with ``W[:, i] = Sigma^+ mu_i`` and
    ``b_i = log p_i - mu_i^T Sigma^+ mu_i / 2`` (the article's solution; linear
    discriminant analysis), where ``p_i`` are the class frequencies, ``mu_i`` the class
    means and ``Sigma`` the :func:`pooled_covariance`. ``Sigma^+`` is the
    pseudo-inverse: on a singular ``Sigma`` (``n <= d``, constant features) directions
    with zero within-class variance are ignored, as scikit-learn's
    ``LinearDiscriminantAnalysis(solver="lsqr")`` does.

    ``shrinkage`` (an addition of this book, not the article's) replaces ``Sigma`` by
    ``(1 - s) Sigma + s (tr Sigma / d) I``: positive definite for any ``s > 0`` unless
    ``Sigma = 0``, and at ``s = 1`` the nearest-class-mean classifier with priors.

    ``covariance="total"`` puts the covariance of all the data, class labels ignored,
    in place of the pooled one: the article's first suggestion for ``Sigma``. It adds
    the between-class scatter ``sum_i p_i (mu_i - mu)^T (mu_i - mu)``; with two classes
    that is a rank-one term along ``mu_1 - mu_0``, so (Sherman-Morrison) the direction
    of ``w_1 - w_0`` is unchanged and only its length and ``b`` move.

    A class without samples (possible with ``num_classes``) gets ``W[:, i] = 0`` and
    ``b_i = -inf`` (``log p_i`` with ``p_i = 0``): it is never predicted.

    Args:
        x: features, shape ``(n, d)``, a floating dtype, finite, ``n >= 1``.
        y: class labels, shape ``(n,)``, an integer dtype, values in ``[0, C)``.
        num_classes: ``C``; None means ``y.max() + 1``.
        shrinkage: ``s`` in ``[0, 1]``.
        covariance: ``"pooled"`` (within-class, the article's model) or ``"total"``
            (all the data around their mean).

    Returns:
        ``W`` of shape ``(d, C)`` and ``b`` of shape ``(C,)``, in ``x``'s dtype and
        device (computed in float64); ``softmax(x @ W + b)`` are the class
        probabilities.

    Raises:
        TypeError: as :func:`pooled_covariance`; ``shrinkage`` not a number.
        ValueError: as :func:`pooled_covariance`; ``shrinkage`` outside ``[0, 1]``;
            ``covariance`` not one of ``"pooled"``, ``"total"``.
    """
    x = _check_features(x)
    y, classes = _check_labels(x, y, num_classes)
    s = _checks.real(shrinkage, "shrinkage", nonnegative=True)
    if s > 1:
        raise ValueError(f"shrinkage must be in [0, 1], got {s}")
    kind = _checks.choice(covariance, "covariance", ("pooled", "total"))
    counts, means = _class_statistics(x, y, classes)
    x64 = x.to(_F64)
    if kind == "pooled":
        sigma = _pooled(x64, y, means)
    else:  # one class for all: centre on the overall mean
        sigma = _pooled(x64, torch.zeros_like(y), x64.mean(0, keepdim=True))
    if s > 0:
        dim = sigma.shape[0]
        target = torch.eye(dim, dtype=_F64, device=x.device) * sigma.trace() / dim
        sigma = (1 - s) * sigma + s * target
    weight = _pinv_solve(sigma, means.T)  # (d, C): Sigma^+ mu_i, column by column
    log_prior = torch.log(counts / x.shape[0])  # -inf for an empty class
    bias = log_prior - 0.5 * (means * weight.T).sum(-1)
    return weight.to(x.dtype), bias.to(x.dtype)


def gaussian_regression(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least squares as the conditional mean of a jointly Gaussian ``(x, y)``.

    ``W = Sigma_xx^+ Sigma_xy`` and ``b = mu_y - mu_x W``, so that ``x @ W + b`` is
    ``E[y | x]``; this is the minimum-norm least-squares fit with an intercept (the
    article's warm-up). Moments are divided by ``n``, which cancels in ``W``.

    Args:
        x: inputs, shape ``(n, d)``, a floating dtype, finite, ``n >= 1``.
        y: targets, shape ``(n, m)`` or ``(n,)``, a floating dtype, finite, the
            dtype and device of ``x``.

    Returns:
        ``W`` of shape ``(d, m)`` and ``b`` of shape ``(m,)`` (``(d,)`` and ``()`` for
        a 1-D ``y``), in ``x``'s dtype and device (computed in float64).

    Raises:
        TypeError: ``x`` or ``y`` not floating tensors, or of different dtypes.
        ValueError: wrong ranks, different numbers of rows, no samples, non-finite
            values, tensors on different devices, meta tensors.
    """
    x = _check_features(x)
    y = _checks.tensor(y, "y")
    if y.dim() not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, m), got {tuple(y.shape)}")
    _checks.same_device(("x", x), y=y)
    _checks.same_dtype(("x", x), y=y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have one row per row of x, got {y.shape[0]} and {x.shape[0]}"
        )
    y = _check_features(y.reshape(y.shape[0], -1), "y").reshape(y.shape)
    x64, y64 = x.to(_F64), y.to(_F64).reshape(y.shape[0], -1)
    mean_x, mean_y = x64.mean(0), y64.mean(0)
    xc, yc = x64 - mean_x, y64 - mean_y
    n = x64.shape[0]
    weight = _pinv_solve(xc.T @ xc / n, xc.T @ yc / n)
    bias = mean_y - mean_x @ weight
    if y.dim() == 1:
        weight, bias = weight[:, 0], bias[0]
    return weight.to(x.dtype), bias.to(x.dtype)
