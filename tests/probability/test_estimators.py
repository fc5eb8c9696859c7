"""kexue.probability.estimators against torch, exact formulas and explicit leave-one-out loops."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from kexue.probability.estimators import (
    c4,
    expectation_iid,
    jackknife,
    log_variance_bias,
    mean_and_error,
    unbiased_std,
    variance,
)


@pytest.mark.parametrize("correction", [0, 1, 2])
def test_variance_agrees_with_torch(correction: int, device: torch.device) -> None:
    x = torch.randn(4, 3, 9, dtype=torch.float64, device=device)
    for dim in (0, 1, -1):
        torch.testing.assert_close(
            variance(x, dim, correction=correction),
            torch.var(x, dim, correction=correction),
        )
    assert variance(x, keepdim=True).shape == (4, 3, 1)


def test_variance_is_stable_under_a_large_offset() -> None:
    x = torch.randn(
        1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    shifted = (
        x + 1e4
    ).float()  # float32, offset 1e4: E[x^2] - E[x]^2 cancels about 8 digits
    exact = torch.var(shifted.double())
    two_pass = variance(shifted).item()
    one_pass = (shifted.pow(2).mean() - shifted.mean().pow(2)).item() * 1000 / 999
    assert abs(two_pass - exact.item()) / exact.item() < 1e-3
    assert abs(one_pass - exact.item()) / exact.item() > 1e-2


def test_variance_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="x needs more than correction=1 samples"):
        variance(torch.randn(3, 1))
    assert variance(torch.randn(3, 1), correction=0).tolist() == [
        0.0,
        0.0,
        0.0,
    ]  # n = 1, 1/n: always 0
    with pytest.raises(TypeError, match="floating"):
        variance(torch.ones(3, dtype=torch.long))


def test_c4_exact_values() -> None:
    assert c4(2).item() == pytest.approx(math.sqrt(2 / math.pi), rel=1e-14)
    assert c4(3).item() == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-14)
    n = 10**4  # no overflow through lgamma; c4 = 1 - 1/(4n) - 7/(32 n^2) + O(n^-3)
    assert c4(torch.tensor([n])).item() == pytest.approx(
        1 - 1 / (4 * n) - 7 / (32 * n**2), abs=1e-11
    )
    with pytest.raises(ValueError, match="n >= 2"):
        c4(torch.tensor([1, 5]))


def test_unbiased_std_is_unbiased_for_gaussian_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(200_000, 4, dtype=torch.float64, generator=generator)
    estimates = unbiased_std(x)
    error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean().item() - 3.0) < 4 * error.item()
    plain = variance(x).sqrt()
    assert plain.mean().item() < 3.0 - 10 * error.item()  # s itself is biased low
    with pytest.raises(ValueError, match="at least 2"):
        unbiased_std(torch.randn(5, 1))


def explicit_jackknife(statistic, sample: torch.Tensor) -> tuple[float, float]:
    n = len(sample)
    full = statistic(sample, dim=-1).item()
    partial = torch.stack(
        [statistic(torch.cat([sample[:i], sample[i + 1 :]]), dim=-1) for i in range(n)]
    )
    mean_partial = partial.mean().item()
    error = math.sqrt((n - 1) / n * ((partial - mean_partial) ** 2).sum().item())
    return n * full - (n - 1) * mean_partial, error


@pytest.mark.parametrize("vectorize", [True, False])
def test_jackknife_matches_the_explicit_loop(vectorize: bool) -> None:
    x = torch.randn(6, 8, dtype=torch.float64)

    def log_variance(t: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.log(t.var(dim))

    corrected, error = jackknife(log_variance, x, dim=-1, vectorize=vectorize)
    for row, c, e in zip(x, corrected, error, strict=True):
        expected = explicit_jackknife(log_variance, row)
        assert (c.item(), e.item()) == pytest.approx(expected, rel=1e-12)


def test_jackknife_of_the_squared_mean_is_the_unbiased_estimator() -> None:
    """For mean^2 the jackknife gives exactly mean^2 - s^2 / n, unbiased for mu^2."""
    x = torch.randn(10, 5, dtype=torch.float64)
    corrected, _ = jackknife(lambda t, dim: t.mean(dim) ** 2, x, dim=0)
    expected = x.mean(0) ** 2 - x.var(0) / 10
    torch.testing.assert_close(corrected, expected)


def test_jackknife_of_the_mean_is_the_mean_with_the_usual_error(
    device: torch.device,
) -> None:
    x = torch.randn(3, 12, dtype=torch.float64, device=device)
    corrected, error = jackknife(lambda t, dim: t.mean(dim), x)
    torch.testing.assert_close(corrected, x.mean(-1))
    torch.testing.assert_close(error, x.std(-1) / math.sqrt(12))


def test_jackknife_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        jackknife(lambda t, dim: t.mean(dim), torch.randn(4, 1))


def test_symbolic_expectation() -> None:
    mu, var = sp.symbols("mu sigma2")
    xs = sp.symbols("x1:4")
    mean = sum(xs) / 3
    assert sp.simplify(expectation_iid(mean, xs, mu, var) - mu) == 0
    assert sp.simplify(expectation_iid(mean**2, xs, mu, var) - (mu**2 + var / 3)) == 0
    assert expectation_iid(xs[0] ** 3 * xs[1], xs, mu, var) == sp.Symbol("m3") * mu


def test_mean_and_error() -> None:
    estimates = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    mean, error = mean_and_error(estimates)
    assert mean == 2.5
    assert error == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-15)
    with pytest.raises(TypeError, match="floating"):
        mean_and_error(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="estimates must have 1 dimensions"):
        mean_and_error(torch.ones(2, 3))
    with pytest.raises(ValueError, match="estimates needs at least 2"):
        mean_and_error(torch.ones(1))


def test_log_variance_bias() -> None:
    # n = 3: k = 2, (n - 1) s^2 / sigma^2 ~ Exp(1/2), E[log] = log 2 - gamma_E
    assert log_variance_bias(3) == pytest.approx(-0.5772156649015329, rel=1e-14)
    # large n: -1/k - 1/k^2 + ... (psi(x) - log x = -1/(2x) - 1/(12 x^2) + ...)
    k = 999
    assert log_variance_bias(k + 1) == pytest.approx(-1 / k - 1 / (3 * k**2), rel=1e-8)
    # Monte Carlo, float64
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 5, dtype=torch.float64, generator=generator)
    measured = torch.log(x.var(-1)).mean().item()
    assert measured == pytest.approx(log_variance_bias(5), abs=0.01)
    for bad in (1, 0):
        with pytest.raises(ValueError, match="n must be >= 2"):
            log_variance_bias(bad)
    for bad in (2.5, True):
        with pytest.raises(TypeError, match="n must be an int"):
            log_variance_bias(bad)
