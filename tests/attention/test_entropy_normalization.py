"""kexue.attention.entropy_normalization against float64 NumPy and scipy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.attention.entropy_normalization import (
    constant_entropy_sample,
    entropy_normalize,
    power_normalize,
)

F64 = torch.float64


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(-1)


def article_loop(p: np.ndarray, target: float, steps: int) -> np.ndarray:
    """The article's NumPy iteration, verbatim."""
    p = p.copy()
    with np.errstate(all="ignore"):
        for _ in range(steps):
            h = -(p * np.log(p)).sum()
            gamma = 1 + (target - h) / (h**2 - (p * np.log(p) ** 2).sum())
            p = p**gamma
            p /= p.sum()
    return p


def test_power_normalize_matches_naive(device) -> None:
    logits = 2 * torch.randn(20, 9, dtype=F64, device=device)
    gamma = torch.rand(20, dtype=F64, device=device) * 3
    p = torch.softmax(logits, -1) ** gamma[:, None]
    ref = p / p.sum(-1, keepdim=True)
    torch.testing.assert_close(power_normalize(logits, gamma), ref, atol=1e-14, rtol=0)


def test_power_normalize_other_dim_and_zero_gamma(device) -> None:
    logits = torch.randn(3, 5, 4, device=device)
    out = power_normalize(logits, 0.0, dim=1)
    torch.testing.assert_close(out, torch.full_like(out, 0.2))


def test_demo_sequence_matches_article() -> None:
    p0 = np.random.default_rng(0).random(100)
    p0 /= p0.sum()
    for k in range(1, 6):
        ours = entropy_normalize(torch.tensor(np.log(p0)), math.log(30), iterations=k)
        np.testing.assert_allclose(
            ours.numpy(), article_loop(p0, math.log(30), k), rtol=1e-9, atol=1e-15
        )
    err = abs(entropy(ours).item() - math.log(30))
    assert err < 1e-10


def test_far_target_stays_finite() -> None:
    p0 = np.random.default_rng(0).random(100)
    p0 /= p0.sum()
    assert np.isnan(article_loop(p0, math.log(3), 5)).any()
    q = entropy_normalize(torch.tensor(np.log(p0)), math.log(3), iterations=8)
    assert abs(entropy(q).item() - math.log(3)) < 1e-10


def test_gamma_against_brentq(device) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(40, 12, generator=gen, dtype=F64)
    targets = 0.2 + (math.log(12) - 0.4) * torch.rand(40, generator=gen, dtype=F64)
    _, gam = entropy_normalize(
        logits.to(device), targets.to(device), iterations=12, return_gamma=True
    )
    logp = torch.log_softmax(logits, -1).numpy()

    def h(g, lp):
        w = np.exp(g * lp - (g * lp).max())
        w /= w.sum()
        return -(w * np.log(np.maximum(w, 1e-300))).sum()

    for r in range(40):
        root = scipy.optimize.brentq(
            lambda g, r=r: h(g, logp[r]) - targets[r].item(), 1e-6, 1e3, xtol=1e-14
        )
        assert gam[r].item() == pytest.approx(root, rel=1e-9)


def test_uniform_single_and_empty_rows(device) -> None:
    inf = math.inf
    logits = torch.tensor(
        [[0.0, 0.0, -inf], [1.0, -inf, -inf], [-inf, -inf, -inf]], device=device
    )
    q, g = entropy_normalize(logits, 1.0, return_gamma=True)
    expected = torch.tensor([[0.5, 0.5, 0], [1, 0, 0], [0, 0, 0]], device=device)
    torch.testing.assert_close(q, expected)
    torch.testing.assert_close(g, torch.ones(3, device=device))


def test_half_precision_in_float32(device) -> None:
    logits = torch.randn(4, 50, device=device).half()
    q = entropy_normalize(logits, 2.0, iterations=8)
    assert q.dtype == torch.float16
    assert (entropy(q.float()) - 2.0).abs().max() < 1e-2


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 30), st.floats(0.05, 0.95), st.integers(0, 10_000))
def test_reaches_any_target(n: int, frac: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g, dtype=F64)
    target = frac * math.log(n)
    q = entropy_normalize(logits, target, iterations=40)
    assert abs(entropy(q).item() - target) < 1e-8
    # the order of the probabilities is kept (ties allowed: tiny ones underflow to 0)
    assert (q[logits.argsort(descending=True)].diff() <= 0).all()


def test_sample_frequencies(device) -> None:
    logits = torch.randn(1, 6, dtype=F64, device=device).expand(20000, 6)
    gen = torch.Generator(device=device).manual_seed(0)
    idx = constant_entropy_sample(logits, 1.0, generator=gen)
    assert idx.shape == (20000,) and idx.dtype == torch.long
    freq = torch.bincount(idx, minlength=6).double() / 20000
    ref = entropy_normalize(logits[0], 1.0)
    assert (freq - ref).abs().max() < 0.02


def test_errors() -> None:
    with pytest.raises(TypeError, match="logits"):
        power_normalize([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="gamma"):
        power_normalize(torch.randn(3), -1.0)
    with pytest.raises(ValueError, match="target"):
        entropy_normalize(torch.randn(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="iterations"):
        entropy_normalize(torch.randn(3), 1.0, iterations=-1)
    with pytest.raises(TypeError, match="generator"):
        constant_entropy_sample(torch.randn(3), 1.0, generator=0)
    with pytest.raises(ValueError, match="logits"):
        constant_entropy_sample(torch.full((2, 3), -math.inf), 1.0)
