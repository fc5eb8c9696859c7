"""kexue.representations.jl_lemma against naive float64 loops, scipy's chi-square and
pdist, scikit-learn (johnson_lindenstrauss_min_dim, GaussianRandomProjection,
randomized_svd) and torch.svd_lowrank."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.random_projection import (
    GaussianRandomProjection,
    johnson_lindenstrauss_min_dim,
)
from sklearn.utils.extmath import randomized_svd as sklearn_randomized_svd

from kexue.representations.jl_lemma import (
    distortion,
    gaussian_projection,
    jl_min_dim,
    randomized_svd,
    simhash,
    simhash_cosine,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def naive_ratios(x: torch.Tensor, a: torch.Tensor) -> list[float]:
    """Every pair's squared-distance ratio, by the definition, in float64."""
    x, a = x.double().cpu(), a.double().cpu()
    out = []
    for i, j in itertools.combinations(range(x.shape[0]), 2):
        d = x[i] - x[j]
        if d.abs().max() > 0:
            out.append(float((a @ d).square().sum() / d.square().sum()))
    return out


# ---------------------------------------------------------------- jl_min_dim
def test_jl_min_dim_checked_example_and_definition() -> None:
    assert jl_min_dim(200, 0.3) == 1413  # 24 log 200 / 0.09 = 1412.9
    assert jl_min_dim(1, 0.5) == 1
    for n, eps, c in [(10, 0.1, 24.0), (1000, 0.5, 16.0), (7, 0.9, 3.5)]:
        bound = c * math.log(n) / eps**2
        got = jl_min_dim(n, eps, constant=c)
        assert got > bound >= got - 1


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("n", [2, 10, 1000, 10**6])
def test_jl_min_dim_against_sklearn(n: int, eps: float) -> None:
    """scikit-learn's bound is 4 log N / (eps^2/2 - eps^3/3), rounded down: the
    constant 8 / (1 - 2 eps / 3) in this function's form, one more for the strict >."""
    ours = jl_min_dim(n, eps, constant=8 / (1 - 2 * eps / 3))
    assert ours == int(johnson_lindenstrauss_min_dim(n, eps=eps)) + 1


@given(st.integers(2, 10**9), st.floats(0.01, 0.99), st.floats(0.01, 0.99))
@settings(max_examples=50, deadline=None)
def test_jl_min_dim_decreases_in_eps(n: int, e1: float, e2: float) -> None:
    lo, hi = sorted((e1, e2))
    assert jl_min_dim(n, lo) >= jl_min_dim(n, hi)
    assert jl_min_dim(n, hi, constant=16) <= jl_min_dim(n, hi)


# ---------------------------------------------------------------- gaussian_projection
def test_projection_entries_are_n01_over_n(device: torch.device) -> None:
    a = gaussian_projection(500, 200, generator=gen(1), dtype=F64, device=device)
    assert a.shape == (200, 500) and a.dtype == F64 and a.device.type == device.type
    z = (a * math.sqrt(200)).flatten().cpu().numpy()
    # Kolmogorov-Smirnov against N(0, 1) for 10^5 entries: a wrong scale fails at once
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / z.size)


def test_projection_matches_sklearn_distribution() -> None:
    """GaussianRandomProjection draws components_ (n, m) from N(0, 1/n) too: a
    two-sample KS test between its entries and ours."""
    x = np.zeros((3, 400))
    peer = GaussianRandomProjection(n_components=100, random_state=0).fit(x)
    ours = gaussian_projection(400, 100, generator=gen(2), dtype=F64)
    assert peer.components_.shape == tuple(ours.shape)
    test = scipy.stats.ks_2samp(peer.components_.ravel(), ours.flatten().numpy())
    assert test.pvalue > 1e-3


def test_projected_norm_is_chi_square() -> None:
    """For a unit v, |A v|^2 ~ chi^2_n / n: KS over 4000 independent matrices."""
    n, m, trials = 16, 30, 4000
    v = torch.randn(m, dtype=F64, generator=gen(3))
    v /= v.norm()
    g = gen(4)
    norms = torch.stack(
        [
            (gaussian_projection(m, n, generator=g, dtype=F64) @ v).square().sum()
            for _ in range(trials)
        ]
    )
    assert scipy.stats.kstest(norms.numpy() * n, scipy.stats.chi2(n).cdf).pvalue > 1e-3


def test_projection_same_matrix_on_every_device(device) -> None:
    """A CPU generator draws on the CPU: the same matrix on every device; float16 is
    the float32 draw rounded."""
    a32 = gaussian_projection(20, 8, generator=gen(5))
    on_device = gaussian_projection(20, 8, generator=gen(5), device=device)
    a16 = gaussian_projection(20, 8, generator=gen(5), dtype=torch.float16)
    assert torch.equal(on_device.cpu(), a32)
    assert torch.equal(a16, a32.half())


# ---------------------------------------------------------------- distortion
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_distortion_against_naive_loop(chunk: int, device: torch.device) -> None:
    x = torch.randn(40, 12, dtype=F64, generator=gen(6)) + 5.0
    a = gaussian_projection(12, 6, generator=gen(7), dtype=F64)
    ratios = naive_ratios(x, a)
    low, high = distortion(x.to(device), a.to(device), chunk=chunk)
    assert abs(low - min(ratios)) < 1e-12 and abs(high - max(ratios)) < 1e-12


def test_distortion_against_sklearn_projection_and_pdist() -> None:
    x = np.random.default_rng(0).normal(size=(150, 300))
    proj = GaussianRandomProjection(n_components=80, random_state=1).fit(x)
    ratio = scipy.spatial.distance.pdist(
        proj.transform(x), "sqeuclidean"
    ) / scipy.spatial.distance.pdist(x, "sqeuclidean")
    low, high = distortion(torch.from_numpy(x), torch.from_numpy(proj.components_))
    assert abs(low - ratio.min()) < 1e-12 and abs(high - ratio.max()) < 1e-12


def test_distortion_skips_duplicates_and_keeps_float32_digits() -> None:
    x = torch.randn(30, 10, generator=gen(8)) * 1e-3 + 100.0  # far from 0
    x = torch.cat([x, x[:5]])  # five duplicate pairs
    a = gaussian_projection(10, 10, generator=gen(9))
    ratios = naive_ratios(x, a)
    low, high = distortion(x, a, chunk=8)
    assert abs(low - min(ratios)) < 1e-9 * min(ratios)
    assert abs(high - max(ratios)) < 1e-9 * max(ratios)


def test_distortion_exact_cases() -> None:
    x = torch.randn(25, 6, dtype=F64, generator=gen(10))
    assert distortion(x, torch.eye(6, dtype=F64)) == pytest.approx(
        (1.0, 1.0), abs=1e-13
    )
    assert distortion(x, 3 * torch.eye(6, dtype=F64)) == pytest.approx(
        (9.0, 9.0), abs=1e-12
    )
    q = torch.linalg.qr(torch.randn(6, 6, dtype=F64, generator=gen(11)))[0]
    low, high = distortion(x, q[:3])  # an orthogonal projection only shrinks
    assert 0 <= low <= high <= 1 + 1e-12


@given(st.floats(0.1, 10), st.floats(-5, 5))
@settings(max_examples=20, deadline=None)
def test_distortion_invariant_to_scale_and_shift(scale: float, shift: float) -> None:
    x = torch.randn(20, 5, dtype=F64, generator=gen(12))
    a = gaussian_projection(5, 3, generator=gen(13), dtype=F64)
    ref = distortion(x, a)
    got = distortion(scale * x + shift, a)
    assert got == pytest.approx(ref, rel=1e-10)


# ---------------------------------------------------------------- simhash
@pytest.mark.parametrize("theta", [0.2, 1.0, math.pi / 2, 2.5])
def test_simhash_agreement_is_one_minus_theta_over_pi(theta: float, device) -> None:
    bits = 40_000
    pair = torch.tensor([[1.0, 0.0, 0.0], [math.cos(theta), math.sin(theta), 0.0]])
    rot = torch.linalg.qr(torch.randn(3, 3, generator=gen(14)))[0]
    codes = simhash((pair @ rot).to(device), bits, generator=gen(15))
    agree = (codes[0] == codes[1]).double().mean().item()
    p = 1 - theta / math.pi
    assert abs(agree - p) < 4 * math.sqrt(p * (1 - p) / bits) + 1e-12


def test_simhash_properties(device: torch.device) -> None:
    x = torch.randn(2, 7, 16, device=device, generator=None)
    c1 = simhash(x, 64, generator=gen(16))
    c2 = simhash(3.0 * x, 64, generator=gen(16))  # a positive scale keeps the signs
    c3 = simhash(-x, 64, generator=gen(16))
    assert c1.shape == (2, 7, 64) and c1.dtype == torch.bool
    assert torch.equal(c1, c2) and torch.equal(c1, ~c3)
    assert not simhash(torch.zeros(3, 16, device=device), 8).any()


# ---------------------------------------------------------------- simhash_cosine
def test_simhash_cosine_against_bit_counting(device: torch.device) -> None:
    a = torch.rand(5, 33, generator=gen(17)) > 0.5
    b = torch.rand(4, 33, generator=gen(18)) > 0.5
    angle = simhash_cosine(a.to(device), b.to(device)).cpu()
    sign = simhash_cosine(a.to(device), b.to(device), method="sign").cpu()
    for i, j in itertools.product(range(5), range(4)):
        unequal = sum(int(a[i, k] != b[j, k]) for k in range(33)) / 33
        assert abs(angle[i, j].item() - math.cos(math.pi * unequal)) < 1e-6
        pm_a, pm_b = a[i].double() * 2 - 1, b[j].double() * 2 - 1
        cos = torch.nn.functional.cosine_similarity(pm_a, pm_b, dim=0).item()
        assert abs(sign[i, j].item() - cos) < 1e-6
    assert torch.allclose(simhash_cosine(a, a).diagonal(), torch.ones(5))


def test_simhash_cosine_estimates_cosines() -> None:
    x = torch.randn(30, 50, dtype=F64, generator=gen(19))
    x[1:] += 0.8 * x[:1]  # a spread of angles
    unit = x / x.norm(dim=1, keepdim=True)
    true = unit @ unit.T
    codes = simhash(x, 20_000, generator=gen(20))
    est = simhash_cosine(codes, codes).double()
    assert (est - true).abs().max() < 0.04  # sd of cos(pi h) <= pi sqrt(h(1-h)/bits)
    sign = simhash_cosine(codes, codes, method="sign").double()
    expected = 1 - 2 * torch.arccos(true.clamp(-1, 1)) / math.pi
    assert (sign - expected).abs().max() < 0.03


# ---------------------------------------------------------------- randomized_svd
def decaying(rows: int, cols: int, decay: float, seed: int) -> torch.Tensor:
    g = gen(seed)
    u = torch.linalg.qr(torch.randn(rows, cols, dtype=F64, generator=g))[0]
    v = torch.linalg.qr(torch.randn(cols, cols, dtype=F64, generator=g))[0]
    s = torch.exp(-decay * torch.arange(cols, dtype=F64))
    return u * s @ v.T


def test_randomized_svd_exact_on_low_rank(device: torch.device) -> None:
    g = gen(21)
    m = torch.randn(120, 15, dtype=F64, generator=g) @ torch.randn(
        15, 90, dtype=F64, generator=g
    )
    u, s, v = randomized_svd(m.to(device), 15, oversample=5, generator=gen(22))
    s_exact = torch.linalg.svdvals(m)
    torch.testing.assert_close(
        s.cpu(), s_exact[:15], atol=1e-10 * s_exact[0].item(), rtol=0
    )
    recon = (u * s @ v.T).cpu()
    assert (recon - m).norm() < 1e-12 * m.norm()
    eye = torch.eye(15, dtype=F64)
    torch.testing.assert_close((u.mT @ u).cpu(), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close((v.mT @ v).cpu(), eye, atol=1e-12, rtol=0)


@pytest.mark.parametrize("power_iters", [0, 2])
def test_randomized_svd_against_sklearn_and_torch(power_iters: int) -> None:
    m = decaying(300, 200, 0.05, seed=23)
    rank = 20
    optimal = torch.linalg.svdvals(m)[rank:].square().sum().sqrt().item()
    u, s, v = randomized_svd(m, rank, power_iters=power_iters, generator=gen(24))
    ours = (m - u * s @ v.T).norm().item()
    su, ss, svt = sklearn_randomized_svd(
        m.numpy(),
        rank,
        n_oversamples=10,
        n_iter=power_iters,
        power_iteration_normalizer="QR",
        random_state=0,
    )
    sk = float(np.linalg.norm(m.numpy() - su * ss @ svt))
    tu, ts, tv = torch.svd_lowrank(m, q=rank + 10, niter=power_iters)
    tt = (m - tu[:, :rank] * ts[:rank] @ tv[:, :rank].T).norm().item()
    assert ours >= optimal * (1 - 1e-12)
    # the three implementations draw different matrices: agree within 5 %
    assert ours < 1.05 * max(sk, tt) and ours > 0.95 * min(sk, tt)
    if power_iters == 2:
        assert ours < 1.01 * optimal
        torch.testing.assert_close(s, torch.from_numpy(ss), rtol=1e-3, atol=0)


def test_randomized_svd_batch_and_half() -> None:
    m = torch.randn(3, 40, 30, dtype=F64, generator=gen(25))
    u, s, v = randomized_svd(m, 4, generator=gen(26))
    for b in range(3):
        ub, sb, vb = randomized_svd(m[b], 4)
        torch.testing.assert_close(s[b], sb, rtol=1e-2, atol=0)
        assert (u[b] * s[b] @ v[b].T - m[b]).norm() < 1.02 * (
            ub * sb @ vb.T - m[b]
        ).norm()
    half = randomized_svd(m[0].half(), 4)
    assert all(t.dtype == torch.float16 for t in half)
    torch.testing.assert_close(half[1].double(), s[0], rtol=1e-2, atol=0)
