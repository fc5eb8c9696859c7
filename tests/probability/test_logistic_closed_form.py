"""kexue.probability.logistic_closed_form against scikit-learn's LDA, least squares,
scipy's Gaussian densities and float64 loops written here from the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from scipy.stats import multivariate_normal
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LinearRegression, LogisticRegression

from kexue.probability import (
    gaussian_classifier,
    gaussian_regression,
    pooled_covariance,
)

F64 = torch.float64


def gaussian_classes(
    n: int, d: int, classes: int, *, seed: int = 0, spread: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from ``classes`` Gaussians with one random covariance."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(classes, d, generator=g, dtype=F64)
    mix = torch.randn(d, d, generator=g, dtype=F64) / d**0.5 + torch.eye(d, dtype=F64)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=g)]
    x = means[y] + torch.randn(n, d, generator=g, dtype=F64) @ mix
    return x, y


def naive(x: torch.Tensor, y: torch.Tensor, classes: int):
    """Loops over classes and samples; the article's moment identity for Sigma."""
    x = x.double().cpu()
    n = x.shape[0]
    priors = [float((y == i).sum()) / n for i in range(classes)]
    means = torch.stack([x[y.cpu() == i].mean(0) for i in range(classes)])
    total_mean = x.mean(0)
    total_cov = sum(torch.outer(r - total_mean, r - total_mean) for r in x) / n
    sigma = total_cov + torch.outer(total_mean, total_mean)
    sigma = sigma - sum(
        p * torch.outer(m, m) for p, m in zip(priors, means, strict=True)
    )
    weight = torch.linalg.solve(sigma, means.T)
    bias = torch.tensor(
        [np.log(priors[i]) - 0.5 * means[i] @ weight[:, i] for i in range(classes)]
    )
    return sigma, weight, bias


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_matches_naive_float64_reference(classes: int, device: torch.device) -> None:
    x, y = gaussian_classes(300, 6, classes, seed=classes)
    sigma, weight, bias = naive(x, y, classes)
    x, y = x.to(device), y.to(device)
    # measured: 4e-16 on Sigma; W and b (up to 1e3: Sigma has small eigenvalues)
    # differ by a few 1e-12 relative, the conditioning of the solve
    torch.testing.assert_close(pooled_covariance(x, y).cpu(), sigma, atol=1e-13, rtol=0)
    w, b = gaussian_classifier(x, y)
    torch.testing.assert_close(w.cpu(), weight, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(b.cpu(), bias, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(("n", "d", "classes"), [(400, 5, 3), (200, 8, 2), (60, 40, 4)])
def test_matches_sklearn_lda_lsqr(n: int, d: int, classes: int) -> None:
    x, y = gaussian_classes(n, d, classes, seed=n + d)
    lda = LinearDiscriminantAnalysis(solver="lsqr").fit(x.numpy(), y.numpy())
    sigma = pooled_covariance(x, y).numpy()
    w, b = gaussian_classifier(x, y)
    np.testing.assert_allclose(sigma, lda.covariance_, atol=1e-13, rtol=0)
    # measured: 1e-15 relative to |W|. (With n <= d scikit-learn's lstsq keeps
    # eigenvalues of Sigma at the rounding level and returns weights of 1e13; see
    # test_singular_sigma_gives_the_minimum_norm_solution for that case.)
    scale = np.abs(lda.coef_).max()
    if classes == 2:  # scikit-learn keeps only the difference of the two classes
        np.testing.assert_allclose(
            (w[:, 1] - w[:, 0]).numpy(), lda.coef_[0], atol=1e-10 * scale, rtol=0
        )
        np.testing.assert_allclose(
            (b[1] - b[0]).item(), lda.intercept_[0], atol=1e-10 * scale, rtol=0
        )
    else:
        np.testing.assert_allclose(w.T.numpy(), lda.coef_, atol=1e-10 * scale, rtol=0)
        np.testing.assert_allclose(b.numpy(), lda.intercept_, atol=1e-10 * scale)
    probs = torch.softmax(x @ w + b, -1).numpy()
    np.testing.assert_allclose(probs, lda.predict_proba(x.numpy()), atol=1e-9)


def test_predictions_match_sklearn_lda_svd() -> None:
    # the svd solver divides by n - C rather than n and centres differently: its
    # probabilities differ slightly, but with balanced classes the decisions agree
    x, y = gaussian_classes(600, 10, 4, seed=3, spread=0.7)
    lda = LinearDiscriminantAnalysis(solver="svd").fit(x.numpy(), y.numpy())
    w, b = gaussian_classifier(x, y)
    assert ((x @ w + b).argmax(-1).numpy() == lda.predict(x.numpy())).all()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    d=st.integers(1, 5),
    classes=st.integers(2, 4),
)
def test_posterior_is_bayes_rule_of_the_fitted_gaussians(
    seed: int, d: int, classes: int
) -> None:
    """softmax(x W + b) = p_i N(x; mu_i, Sigma) / sum_j p_j N(x; mu_j, Sigma)."""
    x, y = gaussian_classes(20 * d + 10 * classes, d, classes, seed=seed)
    w, b = gaussian_classifier(x, y)
    sigma = pooled_covariance(x, y).numpy()
    xs = x[:7].numpy()
    log_joint = np.stack(
        [
            np.log((y == i).double().mean().item())
            + multivariate_normal(x[y == i].mean(0).numpy(), sigma).logpdf(xs)
            for i in range(classes)
        ],
        -1,
    ).reshape(len(xs), classes)
    # measured: below 1e-14
    np.testing.assert_allclose(
        torch.softmax(torch.from_numpy(xs) @ w + b, -1).numpy(),
        softmax(log_joint, -1),
        atol=1e-10,
    )


def test_binary_log_odds_is_the_articles_formula() -> None:
    x, y = gaussian_classes(500, 4, 2, seed=9)
    w, b = gaussian_classifier(x, y)
    sigma = pooled_covariance(x, y)
    mu0, mu1 = x[y == 0].mean(0), x[y == 1].mean(0)
    p1 = y.double().mean()
    w_article = torch.linalg.solve(sigma, mu1 - mu0)
    b_article = 0.5 * (
        mu0 @ torch.linalg.solve(sigma, mu0) - mu1 @ torch.linalg.solve(sigma, mu1)
    ) + torch.log(p1 / (1 - p1))
    torch.testing.assert_close(w[:, 1] - w[:, 0], w_article, atol=1e-12, rtol=0)
    torch.testing.assert_close(b[1] - b[0], b_article, atol=1e-12, rtol=0)


def test_whitening_leaves_the_decisions_unchanged() -> None:
    """The article: estimating after whitening gives exactly the same classifier."""
    x, y = gaussian_classes(400, 6, 3, seed=4)
    centred = x - x.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred / len(x))
    white = centred @ vectors / values.sqrt()
    sigma_white = pooled_covariance(white, y)
    means = torch.stack([white[y == i].mean(0) for i in range(3)])
    priors = torch.bincount(y).double() / len(y)
    article = torch.eye(6, dtype=F64) - (priors[:, None, None] * means[:, :, None] * means[:, None, :]).sum(0)  # fmt: skip
    torch.testing.assert_close(sigma_white, article, atol=1e-13, rtol=0)
    w, b = gaussian_classifier(x, y)
    w_white, b_white = gaussian_classifier(white, y)
    torch.testing.assert_close(
        torch.log_softmax(white @ w_white + b_white, -1),
        torch.log_softmax(x @ w + b, -1),
        atol=1e-11,
        rtol=0,
    )


def test_shrinkage_against_a_float64_reference(device: torch.device) -> None:
    x, y = gaussian_classes(40, 60, 3, seed=5)  # n < d: Sigma is singular
    sigma = pooled_covariance(x, y)
    shrunk = 0.7 * sigma + 0.3 * sigma.trace() / 60 * torch.eye(60, dtype=F64)
    means = torch.stack([x[y == i].mean(0) for i in range(3)])
    weight = torch.linalg.solve(shrunk, means.T)
    bias = torch.log(torch.bincount(y).double() / 40) - 0.5 * (means * weight.T).sum(-1)
    w, b = gaussian_classifier(x.to(device), y.to(device), shrinkage=0.3)
    torch.testing.assert_close(w.cpu(), weight, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(b.cpu(), bias, atol=1e-10, rtol=1e-10)


def test_full_shrinkage_is_nearest_class_mean() -> None:
    x, y = gaussian_classes(90, 7, 3, seed=6)
    w, b = gaussian_classifier(x, y, shrinkage=1.0)
    variance = pooled_covariance(x, y).trace() / 7
    means = torch.stack([x[y == i].mean(0) for i in range(3)])
    distances = torch.cdist(x, means) ** 2 / (2 * variance)
    prior = torch.log(torch.bincount(y).double() / 90)
    torch.testing.assert_close(
        torch.log_softmax(x @ w + b, -1),
        torch.log_softmax(prior - distances, -1),
        atol=1e-12,
        rtol=0,
    )


def test_singular_sigma_gives_the_minimum_norm_solution() -> None:
    x, y = gaussian_classes(12, 30, 3, seed=7)
    x[:, 5] = 0.25  # a constant feature as well as n < d
    w, b = gaussian_classifier(x, y)
    sigma = pooled_covariance(x, y)
    means = torch.stack([x[y == i].mean(0) for i in range(3)])
    reference = torch.linalg.pinv(sigma, hermitian=True) @ means.T
    torch.testing.assert_close(w, reference, atol=1e-8, rtol=1e-8)
    assert torch.isfinite(w).all() and torch.isfinite(b).all()
    assert w[5].abs().max() < 1e-8  # no weight on the constant feature


def test_analytic_agrees_with_gradient_descent_on_gaussian_data() -> None:
    """When the model is right, the MLE and the closed form estimate the same w."""
    x, y = gaussian_classes(20_000, 5, 2, seed=8, spread=0.2)
    w = gaussian_classifier(x, y)[0]
    w_an = w[:, 1] - w[:, 0]
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    fit.fit(x.numpy(), y.numpy())
    w_gd = torch.from_numpy(fit.coef_[0])
    cosine = (w_an @ w_gd / (w_an.norm() * w_gd.norm())).item()
    assert cosine > 0.999
    # the two estimators differ by sampling noise: measured |w_an - w_gd| / |w_gd| = 0.002
    assert ((w_an - w_gd).norm() / w_gd.norm()).item() < 0.02


@pytest.mark.parametrize("classes", [2, 4])
def test_total_covariance_against_a_float64_loop(
    classes: int, device: torch.device
) -> None:
    x, y = gaussian_classes(200, 5, classes, seed=11)
    centred = x - x.mean(0)
    total = sum(torch.outer(r, r) for r in centred) / 200
    means = torch.stack([x[y == i].mean(0) for i in range(classes)])
    weight = torch.linalg.solve(total, means.T)
    prior = torch.bincount(y).double() / 200
    bias = prior.log() - 0.5 * (means * weight.T).sum(-1)
    w, b = gaussian_classifier(x.to(device), y.to(device), covariance="total")
    torch.testing.assert_close(w.cpu(), weight, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(b.cpu(), bias, atol=1e-12, rtol=1e-12)


def test_total_covariance_keeps_the_binary_direction() -> None:
    """Sigma_total = Sigma + p0 p1 d^T d: Sherman-Morrison keeps w_1 - w_0 parallel."""
    x, y = gaussian_classes(300, 6, 2, seed=12)
    w = gaussian_classifier(x, y)[0]
    w_total = gaussian_classifier(x, y, covariance="total")[0]
    pooled, total = w[:, 1] - w[:, 0], w_total[:, 1] - w_total[:, 0]
    cosine = pooled @ total / (pooled.norm() * total.norm())
    assert abs(cosine.item() - 1) < 1e-12
    assert (pooled.norm() - total.norm()).abs() > 1e-3  # the length does change
    multi = gaussian_classifier(*gaussian_classes(300, 6, 3, seed=12))[0]
    multi_total = gaussian_classifier(
        *gaussian_classes(300, 6, 3, seed=12), covariance="total"
    )[0]
    assert not torch.allclose(multi, multi_total)


def test_empty_class_is_never_predicted() -> None:
    x, y = gaussian_classes(60, 3, 2, seed=10)
    w, b = gaussian_classifier(x, y, num_classes=4)
    assert w.shape == (3, 4) and b.shape == (4,)
    assert (w[:, 2:] == 0).all() and torch.isneginf(b[2:]).all()
    probs = torch.softmax(x @ w + b, -1)
    assert torch.isfinite(probs).all() and (probs[:, 2:] == 0).all()
    w2, b2 = gaussian_classifier(x, y)
    torch.testing.assert_close(w[:, :2], w2)
    torch.testing.assert_close(b[:2], b2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_fitted_in_float64(
    dtype: torch.dtype, device: torch.device
) -> None:
    x, y = gaussian_classes(200, 4, 3, seed=11)
    x_low = x.to(dtype)
    w, b = gaussian_classifier(x_low.to(device), y.to(device))
    assert w.dtype == dtype and b.dtype == dtype and w.device.type == device.type
    w64, b64 = gaussian_classifier(x_low.double(), y)
    # the only error left is the final rounding to dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(w.double().cpu(), w64, atol=0, rtol=eps)
    torch.testing.assert_close(b.double().cpu(), b64, atol=0, rtol=eps)


def test_translation_does_not_change_the_covariance() -> None:
    x, y = gaussian_classes(100, 5, 3, seed=12)
    torch.testing.assert_close(
        pooled_covariance(x + 1e3, y), pooled_covariance(x, y), atol=1e-10, rtol=0
    )


def test_no_features_gives_the_priors() -> None:
    y = torch.tensor([0, 1, 1, 2, 2, 2])
    w, b = gaussian_classifier(torch.zeros(6, 0, dtype=F64), y)
    assert w.shape == (0, 3)
    torch.testing.assert_close(b, torch.log(torch.tensor([1, 2, 3], dtype=F64) / 6))


# ------------------------------------------------------------------ regression
@pytest.mark.parametrize(("n", "d", "m"), [(50, 4, 3), (10, 20, 2)])
def test_regression_is_minimum_norm_least_squares(
    n: int, d: int, m: int, device: torch.device
) -> None:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g, dtype=F64) + 3
    y = x @ torch.randn(d, m, generator=g, dtype=F64) + torch.randn(n, m, generator=g, dtype=F64)  # fmt: skip
    w, b = gaussian_regression(x.to(device), y.to(device))
    xc, yc = x - x.mean(0), y - y.mean(0)
    reference = torch.linalg.pinv(xc) @ yc  # minimum-norm least squares, centred
    torch.testing.assert_close(w.cpu(), reference, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(b.cpu(), y.mean(0) - x.mean(0) @ reference, atol=1e-9, rtol=0)  # fmt: skip
    fit = LinearRegression().fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(w.cpu().numpy(), fit.coef_.T, atol=1e-9)
    np.testing.assert_allclose(b.cpu().numpy(), fit.intercept_, atol=1e-9)


def test_regression_is_the_gaussian_conditional_mean() -> None:
    """mu_y + (x - mu_x) Sigma_xx^{-1} Sigma_xy with Sigma the joint covariance."""
    g = torch.Generator().manual_seed(1)
    joint = torch.randn(500, 5, generator=g, dtype=F64) @ torch.randn(5, 5, generator=g, dtype=F64)  # fmt: skip
    x, y = joint[:, :3], joint[:, 3:]
    cov = torch.cov(joint.T, correction=0)
    w_article = torch.linalg.solve(cov[:3, :3], cov[:3, 3:])
    b_article = y.mean(0) - x.mean(0) @ w_article
    w, b = gaussian_regression(x, y)
    torch.testing.assert_close(w, w_article, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(b, b_article, atol=1e-12, rtol=1e-12)
    w1, b1 = gaussian_regression(x, y[:, 0])
    assert w1.shape == (3,) and b1.shape == ()
    torch.testing.assert_close(w1, w[:, 0])
    torch.testing.assert_close(b1, b[0])
