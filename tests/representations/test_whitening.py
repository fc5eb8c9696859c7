"""kexue.representations.whitening against a naive float64 reference, scikit-learn's
PCA(whiten=True) and scipy.stats.spearmanr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

from kexue.representations.whitening import (
    Whitening,
    anisotropy,
    cosine_matrix,
    covariance_rank,
    fit_whitening,
    spearman,
)

F64 = torch.float64


def correlated(n: int, d: int, *, seed: int = 0, offset: float = 3.0) -> torch.Tensor:
    """n rows with a well-conditioned, non-isotropic covariance and a common offset."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=g))
    scales = torch.linspace(3.0, 0.5, d, dtype=F64)
    return torch.randn(n, d, dtype=F64, generator=g) * scales @ q.T + offset


def naive_whitening(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The article's numpy code: np.cov, np.linalg.svd, u[:, :k] / sqrt(s[:k])."""
    vecs = x.numpy()
    mu = vecs.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov(vecs.T))
    return torch.from_numpy(mu), torch.from_numpy(u[:, :k] / np.sqrt(s[:k]))


def cosines(z: torch.Tensor) -> torch.Tensor:
    z = z / z.norm(dim=-1, keepdim=True)
    return z @ z.T


@pytest.mark.parametrize("k", [None, 1, 4, 12])
def test_matches_the_articles_numpy_code(k: int | None) -> None:
    x = correlated(300, 12)
    w = fit_whitening(x, k=k)
    mu, weight = naive_whitening(x, 12 if k is None else k)
    torch.testing.assert_close(w.mean, mu, atol=1e-14, rtol=0)
    # columns agree up to sign: compare |W| and the transformed cosines
    torch.testing.assert_close(w.weight.abs(), weight.abs(), atol=1e-12, rtol=0)
    reference = (x - mu) @ weight
    torch.testing.assert_close(cosines(w(x)), cosines(reference), atol=1e-12, rtol=0)


def test_whitened_rows_have_zero_mean_and_identity_covariance(device) -> None:
    x = correlated(400, 16).to(device)
    z = fit_whitening(x)(x)
    cov = z.T @ z / (z.shape[0] - 1)
    assert z.mean(0).abs().max() < 1e-13
    assert (cov - torch.eye(16, dtype=F64, device=device)).abs().max() < 1e-13
    biased = fit_whitening(x, unbiased=False)(x)
    cov_n = biased.T @ biased / biased.shape[0]
    assert (cov_n - torch.eye(16, dtype=F64, device=device)).abs().max() < 1e-13


def test_agrees_with_sklearn_pca_whiten() -> None:
    x = correlated(500, 10, seed=1)
    for k in (3, 10):
        ours = fit_whitening(x, k=k)(x)
        theirs = torch.from_numpy(PCA(k, whiten=True).fit_transform(x.numpy()))
        torch.testing.assert_close(ours.abs(), theirs.abs(), atol=1e-12, rtol=0)
        torch.testing.assert_close(cosines(ours), cosines(theirs), atol=1e-12, rtol=0)


def test_truncation_keeps_the_largest_variances() -> None:
    x = correlated(2000, 8, seed=2)
    w = fit_whitening(x)
    variances = w.weight.norm(dim=0).pow(-2)  # |U_j Lambda_j^-1/2| = Lambda_j^-1/2
    assert torch.all(variances[:-1] >= variances[1:])
    expected = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    torch.testing.assert_close(variances, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(fit_whitening(x, k=3).weight, w.weight[:, :3])


def test_column_signs_are_fixed() -> None:
    w = fit_whitening(correlated(300, 6, seed=3))
    pivot = w.weight.abs().argmax(0)
    assert torch.all(w.weight[pivot, torch.arange(6)] > 0)


def test_float32_and_half_inputs() -> None:
    x = correlated(300, 8, seed=4)
    ref = fit_whitening(x)(x)
    w32 = fit_whitening(x.float())
    assert w32.weight.dtype == torch.float32
    torch.testing.assert_close(w32(x.float()).double(), ref, atol=2e-5, rtol=0)
    w16 = fit_whitening(x.half())
    assert w16.weight.dtype == torch.float32  # half weights could overflow
    out = w16(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_forward_takes_any_leading_shape_and_empty_batches() -> None:
    x = correlated(100, 5)
    w = fit_whitening(x, k=2)
    batch = x[:12].reshape(3, 4, 5)
    torch.testing.assert_close(w(batch), w(x[:12]).reshape(3, 4, 2))
    assert w(x[:0]).shape == (0, 2)
    assert w(torch.empty(2, 0, 5, dtype=F64)).shape == (2, 0, 2)


def test_forward_has_gradients_and_buffers_do_not() -> None:
    x = correlated(50, 4).requires_grad_()
    w = fit_whitening(x)
    assert not w.weight.requires_grad and list(w.parameters()) == []
    w(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert set(w.state_dict()) == {"mean", "weight"}


def test_fit_errors() -> None:
    with pytest.raises(ValueError, match="x needs at least 2 rows"):
        fit_whitening(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"rank 4 .* k = 10"):
        fit_whitening(torch.randn(5, 10, dtype=F64))
    with pytest.raises(ValueError, match="rank 0"):
        fit_whitening(torch.ones(10, 3))
    with pytest.raises(ValueError, match="k must be at most d = 3"):
        fit_whitening(torch.randn(10, 3), k=4)
    with pytest.raises(TypeError, match="k must be an int"):
        fit_whitening(torch.randn(10, 3), k=2.0)
    with pytest.raises(TypeError, match="floating"):
        fit_whitening(torch.ones(10, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="finite"):
        fit_whitening(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 1.0]]))
    # rank-deficient data still whitens the directions that do vary
    w = fit_whitening(torch.randn(5, 10, dtype=F64), k=4)
    assert w.weight.shape == (10, 4)


def test_forward_errors() -> None:
    w = fit_whitening(torch.randn(20, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        w(torch.randn(4, 5))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        w([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weight must have shape"):
        Whitening(torch.zeros(3), torch.zeros(4, 2))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    d=st.integers(2, 8),
    k=st.integers(1, 8),
    angle=st.floats(0.0, 6.28),
)
def test_cosines_are_invariant_to_signs_and_rotations(
    seed: int, d: int, k: int, angle: float
) -> None:
    """W -> W R (R orthogonal, signs included) leaves every cosine unchanged."""
    k = min(k, d)
    x = correlated(60, d, seed=seed)
    w = fit_whitening(x, k=k)
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(k, k, dtype=F64, generator=g))
    signs = torch.where(torch.rand(k, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    rotated = Whitening(w.mean, w.weight @ rotation * signs)
    torch.testing.assert_close(cosines(rotated(x)), cosines(w(x)), atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.integers(-3, 3), st.floats(-5, 5, allow_nan=False)),
        min_size=3,
        max_size=40,
    )
)
def test_spearman_matches_scipy_with_ties(values: list[tuple[int, float]]) -> None:
    a = torch.tensor([v[0] for v in values])
    b = torch.tensor([v[1] for v in values], dtype=F64)
    ours = spearman(a, b)
    with warnings.catch_warnings():  # SciPy warns on a constant input
        warnings.simplefilter("ignore")
        theirs = scipy.stats.spearmanr(a.numpy(), b.numpy()).statistic
    if np.isnan(theirs):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_spearman_basics(device) -> None:
    x = torch.randn(1000, dtype=F64, device=device)
    assert spearman(x, x.exp()) == pytest.approx(1.0, abs=1e-14)  # monotone
    assert spearman(x, -x) == pytest.approx(-1.0, abs=1e-14)
    a, b = torch.randn(200, device=device), torch.randn(200, device=device)
    expected = scipy.stats.spearmanr(a.cpu().numpy(), b.cpu().numpy()).statistic
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(spearman(torch.ones(4, device=device), x[:4]))


def test_spearman_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        spearman(torch.randn(3), torch.randn(4))
    with pytest.raises(ValueError, match="at least 2"):
        spearman(torch.randn(1), torch.randn(1))
    with pytest.raises(TypeError, match="a real"):
        spearman(torch.ones(3, dtype=torch.bool), torch.randn(3))
    with pytest.raises(ValueError, match="b must hold finite"):
        spearman(torch.randn(3), torch.tensor([1.0, float("inf"), 0.0]))


# ---------------------------------------------------------------- rank, truncate
@pytest.mark.parametrize(("n", "d", "r"), [(300, 12, 12), (300, 12, 5), (8, 12, 7)])
def test_covariance_rank_is_numpys_and_the_largest_k_fit_accepts(n, d, r) -> None:
    g = torch.Generator().manual_seed(n + d + r)
    basis = torch.randn(min(r, d), d, dtype=F64, generator=g)
    x = torch.randn(n, min(r, d), dtype=F64, generator=g) @ basis + 2.0
    centred = x.numpy() - x.numpy().mean(0)
    cov = centred.T @ centred / (n - 1)
    s_max = np.linalg.eigvalsh(cov).max()
    tol = max(n, d) * np.finfo(np.float64).eps * s_max
    expected = int(np.linalg.matrix_rank(cov, tol=tol, hermitian=True))
    assert covariance_rank(x) == expected == min(r, n - 1)
    assert fit_whitening(x, k=expected).out_features == expected
    if expected < d:
        with pytest.raises(ValueError, match=f"rank {expected}"):
            fit_whitening(x, k=expected + 1)


def test_covariance_rank_of_constant_rows_and_errors() -> None:
    assert covariance_rank(torch.ones(5, 3, dtype=F64)) == 0
    with pytest.raises(TypeError, match="x"):
        covariance_rank(torch.ones(5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="2 rows"):
        covariance_rank(torch.ones(1, 3))
    with pytest.raises(ValueError, match="finite"):
        covariance_rank(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))


def test_truncate_equals_a_fit_with_k(device) -> None:
    x = correlated(400, 10, seed=3).to(device)
    full = fit_whitening(x)
    for k in (1, 4, 10):
        assert torch.equal(full.truncate(k)(x), fit_whitening(x, k=k)(x))
    assert full.truncate(4).weight.data_ptr() != full.weight.data_ptr()  # a copy
    with pytest.raises(ValueError, match="out_features = 10"):
        full.truncate(11)
    with pytest.raises(ValueError, match="k"):
        full.truncate(0)
    with pytest.raises(TypeError, match="k"):
        full.truncate(2.0)


# ---------------------------------------------------------------- cosines
def naive_cosines(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(x), len(y), dtype=F64)
    for i, a in enumerate(x.double()):
        for j, b in enumerate(y.double()):
            norm = float(a.norm() * b.norm())
            out[i, j] = 0.0 if norm == 0 else float(a @ b) / norm
    return out


def test_cosine_matrix_against_a_loop(device) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 5, dtype=F64, generator=g)
    y = torch.randn(4, 5, dtype=F64, generator=g)
    x[2] = 0  # a zero row: cosine 0, not NaN
    ours = cosine_matrix(x.to(device), y.to(device)).cpu()
    assert (ours - naive_cosines(x, y)).abs().max() < 1e-15
    assert (cosine_matrix(x) - naive_cosines(x, x)).abs().max() < 1e-15
    half = cosine_matrix(x.half().to(device))
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.cpu().double() - naive_cosines(x, x)).abs().max() < 2e-3
    assert cosine_matrix(torch.zeros(0, 5)).shape == (0, 0)


def test_cosine_matrix_errors() -> None:
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="width"):
        cosine_matrix(x, torch.randn(3, 5))
    with pytest.raises(TypeError, match="dtype"):
        cosine_matrix(x, torch.randn(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="x"):
        cosine_matrix(torch.randn(4))
    with pytest.raises(TypeError, match="y"):
        cosine_matrix(x, torch.ones(3, 4, dtype=torch.int64))


def test_anisotropy_against_a_loop(device) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 6, dtype=F64, generator=g) + 1.0
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3])
    cos = naive_cosines(x, x)
    pairs = [(i, j) for i in range(9) for j in range(9) if i != j]
    apart = [(i, j) for i, j in pairs if groups[i] != groups[j]]
    expected = sum(float(cos[i, j]) for i, j in pairs) / len(pairs)
    expected_apart = sum(float(cos[i, j]) for i, j in apart) / len(apart)
    assert abs(anisotropy(x.to(device)) - expected) < 1e-15
    assert abs(anisotropy(x.to(device), groups.to(device)) - expected_apart) < 1e-15
    z = fit_whitening(correlated(500, 8))(correlated(500, 8))
    assert abs(anisotropy(z) + 1 / 499) < 0.01  # (whitening-isotropy)


def test_anisotropy_errors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="2 rows"):
        anisotropy(torch.randn(1, 3))
    with pytest.raises(ValueError, match="groups"):
        anisotropy(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="one group"):
        anisotropy(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="groups"):
        anisotropy(x, torch.zeros(4))
    with pytest.raises(ValueError, match="meta"):
        anisotropy(torch.randn(4, 3, device="meta"))
