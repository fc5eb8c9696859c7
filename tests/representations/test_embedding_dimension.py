"""kexue.representations.embedding_dimension against scipy.integrate.quad, the Bessel
closed form (scipy.special.ive), the article's checked h_n, and naive float64 loops for
the co-occurrence counts and the pair model's objective."""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.attention.entropy_scale import entropy_gap
from kexue.representations.embedding_dimension import (
    HALF_LOG_PHI,
    cooccurrence,
    fit_log_bilinear,
    log_bilinear_cross_entropy,
    log_bilinear_entropy,
    min_dimension,
    pair_entropy,
)

F64 = torch.float64
# The article's table of h_n (kexue.fm/archives/7695), to the digits it prints.
ARTICLE = {32: -7.77471, 64: -15.4734, 96: -23.1726, 128: -30.8718, 256: -61.6692}
ARTICLE_512 = -123.264


# ------------------------------------------------------------------ references
def quad_h(n: int) -> float:
    """h_n by scipy.integrate.quad over theta, scaled by the integrand's peak."""
    c_star = 2 * n / ((n - 2) + math.sqrt((n - 2) ** 2 + 4 * n * n))
    peak = math.acos(c_star)
    top = n * c_star + ((n - 2) * math.log(math.sin(peak)) if n > 2 else 0.0)

    def weight(t: float, tilt: float, power: int) -> float:
        log_w = (n - 2) * math.log(math.sin(t)) if n > 2 else 0.0
        return math.exp(log_w + tilt * (n * math.cos(t) - top)) * math.cos(t) ** power

    def integral(tilt: float, power: int) -> float:
        kw = {"limit": 200, "epsabs": 0.0, "epsrel": 1e-13}
        return scipy.integrate.quad(weight, 0, math.pi, (tilt, power), **kw)[0]

    mass, first, norm = integral(1.0, 0), integral(1.0, 1), integral(0.0, 0)
    return math.log(mass / norm) + top - n * first / mass


def bessel_h(n: int) -> float:
    """h_n = log Gamma(n/2) + nu log(2/n) + log I_nu(n) - n I_(nu+1)(n) / I_nu(n),
    nu = n/2 - 1 (E[e^(zc)] = Gamma(nu + 1) (2/z)^nu I_nu(z))."""
    nu = n / 2 - 1
    low, high = scipy.special.ive(nu, n), scipy.special.ive(nu + 1, n)
    return (
        math.lgamma(n / 2) + nu * math.log(2 / n) + math.log(low) + n - n * high / low
    )


def naive_counts(docs: list[list[str]], vocab: list[str], window: int) -> list:
    counts = [[0.0] * len(vocab) for _ in vocab]
    index = {w: i for i, w in enumerate(vocab)}
    for doc in docs:
        for a, wa in enumerate(doc):
            for b, wb in enumerate(doc):
                if a != b and abs(a - b) <= window and wa in index and wb in index:
                    counts[index[wa]][index[wb]] += 1
    return counts


def naive_cross_entropy(joint, u, v) -> float:
    """-sum q log p with p = exp(<u_i, v_j>) / Z, in float64 Python arithmetic."""
    q, u, v = joint.double().tolist(), u.double().tolist(), v.double().tolist()
    logits = [[sum(a * b for a, b in zip(x, y, strict=True)) for y in v] for x in u]
    top = max(max(row) for row in logits)
    log_z = top + math.log(sum(math.exp(s - top) for row in logits for s in row))
    total = sum(map(sum, q))
    return -sum(
        qij / total * (s - log_z)
        for qrow, row in zip(q, logits, strict=True)
        for qij, s in zip(qrow, row, strict=True)
    )


def naive_entropy(u, v) -> float:
    u, v = u.double().tolist(), v.double().tolist()
    logits = [sum(a * b for a, b in zip(x, y, strict=True)) for x in u for y in v]
    top = max(logits)
    z = sum(math.exp(s - top) for s in logits)
    return -sum(math.exp(s - top) / z * (s - top - math.log(z)) for s in logits)


# ------------------------------------------------------------------ pair_entropy
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 17, 32, 64, 128, 512])
def test_pair_entropy_matches_scipy_quad(n: int) -> None:
    reference = quad_h(n)
    assert abs(pair_entropy(n) - reference) < 3e-14 * max(1.0, abs(reference))


@pytest.mark.parametrize("n", [3, 10, 64, 333, 1024, 2048])
def test_pair_entropy_matches_the_bessel_closed_form(n: int) -> None:
    reference = bessel_h(n)  # scipy's ive loses digits at high order: 6e-14 at 4096
    assert abs(pair_entropy(n) - reference) < 4e-13 * abs(reference)


def test_pair_entropy_reproduces_the_articles_table() -> None:
    for n, value in ARTICLE.items():
        assert abs(pair_entropy(n) - value) < 6e-5
    assert abs(pair_entropy(512) - ARTICLE_512) < 5e-4


def test_pair_entropy_agrees_with_the_entropy_scale_chapter() -> None:
    """The attention chapter's entropy_gap at lambda = 1 is h_n (by mpmath)."""
    for n in (16, 64, 200):
        assert abs(pair_entropy(n) - entropy_gap(1.0, n)) < 1e-12 * n


def test_pair_entropy_tends_to_minus_half_log_phi() -> None:
    """h_n + n log(phi)/2 tends to a constant (-0.0739...) with an O(1/n) term."""
    offsets = [pair_entropy(n) + HALF_LOG_PHI * n for n in (10**4, 10**5, 10**6)]
    assert abs(offsets[1] - offsets[2]) < 2e-6 and abs(offsets[0] - offsets[2]) < 2e-5
    assert abs(offsets[2] + 0.07393) < 1e-4


def test_pair_entropy_tensor_matches_scalars(device) -> None:
    n = torch.tensor([[2, 7], [64, 300]], device=device)
    out = pair_entropy(n)
    assert out.dtype == F64 and out.shape == (2, 2) and out.device == n.device
    scalars = [[pair_entropy(int(k)) for k in row] for row in n.tolist()]
    expected = torch.tensor(scalars, dtype=F64)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-12, rtol=1e-14)


def test_pair_entropy_laplace_is_the_articles_line() -> None:
    assert pair_entropy(100, method="laplace") == pytest.approx(-24.0606, abs=1e-4)
    assert HALF_LOG_PHI == pytest.approx(0.240606, abs=1e-6)


def test_pair_entropy_chunks_many_dimensions() -> None:
    """Past the chunk size the result is the same as dimension by dimension."""
    n = torch.arange(2, 3000)
    out = pair_entropy(n)
    for k in (2, 999, 2999):
        assert abs(out[k - 2].item() - pair_entropy(k)) < 1e-12 * k


# ------------------------------------------------------------------ min_dimension
def test_min_dimension_reproduces_the_articles_numbers() -> None:
    assert round(min_dimension(100_000)) == 96
    assert round(min_dimension(5_000_000)) == 129  # 128.5, "about 128"
    assert round(min_dimension(512)) == 52
    assert min_dimension(1) == 0.0
    assert min_dimension(1000, exact=True) / math.log(1000) == pytest.approx(
        4 / math.log((1 + math.sqrt(5)) / 2), rel=1e-14
    )


def test_min_dimension_is_where_the_approximate_entropy_turns_negative() -> None:
    """2 log N + h_n < 0 from about 8.31 log N on (up to the constant of h_n)."""
    for size in (10**3, 10**5, 10**7):
        n = math.ceil(min_dimension(size, exact=True))
        assert 2 * math.log(size) + pair_entropy(n) < 0.1
        assert 2 * math.log(size) + pair_entropy(n - 2) > 0


def test_min_dimension_tensor(device) -> None:
    sizes = torch.tensor([1, 10, 1000], device=device)
    out = min_dimension(sizes, exact=True)
    assert out.device == sizes.device and out.dtype == F64
    assert out.cpu().tolist() == pytest.approx(
        [min_dimension(int(s), exact=True) for s in sizes.tolist()], rel=1e-15
    )


# ------------------------------------------------------------------ cooccurrence
def test_cooccurrence_matches_naive_loops(device) -> None:
    docs = [
        "a b c a d b a x c".split(),
        "d d a y b".split(),
        ["c"],
        [],
    ]
    vocab = ["a", "b", "c", "d"]
    for window in (1, 2, 3, 10):
        out = cooccurrence(docs, vocab, window=window, device=device)
        expected = torch.tensor(naive_counts(docs, vocab, window), dtype=F64)
        assert out.device.type == device.type and out.dtype == F64
        torch.testing.assert_close(out.cpu(), expected, atol=0, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("abcdefg"), max_size=12), min_size=1, max_size=4),
    st.integers(1, 5),
)
def test_cooccurrence_property(docs: list[list[str]], window: int) -> None:
    vocab = ["a", "c", "e", "g"]
    out = cooccurrence(docs, vocab, window=window)
    expected = torch.tensor(naive_counts(docs, vocab, window), dtype=F64)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    assert torch.equal(out, out.T)


def test_cooccurrence_one_document_and_windows_do_not_cross() -> None:
    one = cooccurrence("a b".split(), ["a", "b"], window=1)
    assert one.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    split = cooccurrence([["a"], ["b"]], ["a", "b"], window=5)
    assert split.sum() == 0


# ------------------------------------------------------------------ the pair model
def test_cross_entropy_and_entropy_match_naive_loops(device) -> None:
    g = torch.Generator().manual_seed(1)
    joint = torch.rand(5, 4, generator=g, dtype=F64)
    u = torch.randn(5, 3, generator=g, dtype=F64)
    v = torch.randn(4, 3, generator=g, dtype=F64)
    ce = log_bilinear_cross_entropy(joint.to(device), u.to(device), v.to(device))
    assert abs(ce.item() - naive_cross_entropy(joint, u, v)) < 1e-13
    h = log_bilinear_entropy(u.to(device), v.to(device))
    assert abs(h.item() - naive_entropy(u, v)) < 1e-13


def test_entropy_is_the_cross_entropy_of_the_model_with_itself() -> None:
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(7, 2, generator=g)
    v = v.double()
    p = torch.softmax((u @ v.T).reshape(-1), 0).reshape(6, 7)
    assert abs(log_bilinear_entropy(u, v) - log_bilinear_cross_entropy(p, u, v)) < 1e-14


def test_fit_recovers_a_model_of_its_own_rank(device) -> None:
    """A joint that is exactly a rank-2 pair model is fitted to its own entropy."""
    g = torch.Generator().manual_seed(3)
    u0, v0 = (
        torch.randn(12, 2, generator=g, dtype=F64),
        torch.randn(9, 2, generator=g, dtype=F64),
    )
    joint = torch.softmax((u0 @ v0.T).reshape(-1), 0).reshape(12, 9).to(device)
    u, v = fit_log_bilinear(joint, 2, steps=600, lr=0.05, generator=g)
    assert u.shape == (12, 2) and v.shape == (9, 2) and u.dtype == F64
    gap = log_bilinear_cross_entropy(joint, u, v) - log_bilinear_entropy(
        u0.to(device), v0.to(device)
    )
    assert -1e-12 < gap.item() < 1e-6


def test_fit_decreases_the_objective_and_is_reproducible() -> None:
    g = torch.Generator().manual_seed(4)
    joint = torch.rand(30, 30, generator=g) ** 4
    start = fit_log_bilinear(
        joint, 4, steps=0, generator=torch.Generator().manual_seed(5)
    )
    fitted = fit_log_bilinear(
        joint, 4, steps=50, generator=torch.Generator().manual_seed(5)
    )
    again = fit_log_bilinear(
        joint, 4, steps=50, generator=torch.Generator().manual_seed(5)
    )
    before = log_bilinear_cross_entropy(joint, *start)
    after = log_bilinear_cross_entropy(joint, *fitted)
    assert after < before - 0.01
    assert torch.equal(fitted[0], again[0]) and torch.equal(fitted[1], again[1])


def test_fit_half_precision_returns_half() -> None:
    joint = torch.rand(8, 8, generator=torch.Generator().manual_seed(6))
    u, v = fit_log_bilinear(joint.half(), 3, steps=20)
    assert (
        u.dtype == torch.float16 and torch.isfinite(u).all() and torch.isfinite(v).all()
    )
