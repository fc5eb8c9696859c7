"""kexue.generative.vmf_vae against scipy (``scipy.special.ive``,
``scipy.stats.vonmises_fisher``: log density, entropy, its rejection sampler) and
float64 quadrature of the angle's density written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from kexue.generative import (
    VMFVAE,
    VonMisesFisher,
    kl_to_uniform,
    vmf_log_normalizer,
    vmf_mean_cosine,
)

F64 = torch.float64
KAPPAS = [0.0, 1e-4, 5e-3, 0.05, 0.5, 1.0, 7.0, 20.0, 150.0, 3e3, 1e5]


def _scipy_log_c(d: int, kappa: np.ndarray) -> np.ndarray:
    nu = d / 2 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        out = nu * np.log(kappa) - d / 2 * np.log(2 * np.pi)
        out = out - np.log(special.ive(nu, kappa)) - kappa
    zero = math.lgamma(d / 2) - math.log(2) - d / 2 * math.log(math.pi)
    return np.where(kappa == 0, zero, out)


def _unit(d: int, n: int = 1, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=g, dtype=F64), dim=-1
    ).to(dtype)


@pytest.mark.parametrize("d", [2, 3, 4, 8, 33, 128])
def test_normalizer_and_mean_match_scipy(d: int) -> None:
    kappa = np.array(KAPPAS)
    ref = _scipy_log_c(d, kappa)
    ok = np.isfinite(ref)
    out = vmf_log_normalizer(d, torch.tensor(kappa)).numpy()
    np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-10, atol=1e-10)
    with np.errstate(invalid="ignore"):
        ref_a = special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)
    ref_a[0] = 0.0
    ok = np.isfinite(ref_a)
    mean = vmf_mean_cosine(d, torch.tensor(kappa)).numpy()
    np.testing.assert_allclose(mean[ok], ref_a[ok], rtol=1e-9, atol=1e-14)


def test_float32_large_kappa_and_dimension() -> None:
    """Float32 results agree with float64 scipy to float32 rounding, even at
    ``kappa = 1e5`` or ``d = 1024``, where ``I_nu`` overflows or underflows."""
    for d, kappa in [(8, 1e5), (1024, 10.0), (1024, 5e4), (3, 1e-3)]:
        out = vmf_log_normalizer(d, torch.tensor(kappa, dtype=torch.float32))
        assert out.dtype == torch.float32 and torch.isfinite(out)
        ref = vmf_log_normalizer(d, torch.tensor(kappa, dtype=F64)).item()
        assert abs(out.item() - ref) <= 2e-7 * max(1.0, abs(ref))
    ref = _scipy_log_c(8, np.array([1e5]))[0]
    got = vmf_log_normalizer(8, torch.tensor(1e5, dtype=torch.float32)).item()
    assert abs(got - ref) <= 2e-7 * abs(ref)


def test_checked_numbers_d8_kappa20() -> None:
    assert abs(vmf_mean_cosine(8, 20.0).item() - 0.8365) < 5e-5
    assert abs(kl_to_uniform(8, 20.0).item() - 4.486) < 5e-4


def test_kl_by_quadrature_and_monotone() -> None:
    """KL written as a float64 integral over w, and zero at kappa = 0."""
    for d, kappa in [(3, 2.0), (8, 20.0), (16, 0.7)]:
        a = 0.5 * (d - 3)
        log_area = (
            math.log(2) + (d - 1) / 2 * math.log(math.pi) - math.lgamma((d - 1) / 2)
        )
        log_c = vmf_log_normalizer(d, kappa).item()
        log_c0 = vmf_log_normalizer(d, 0.0).item()

        def integrand(w: float, c=(kappa, a, log_c, log_c0, log_area)) -> float:
            kappa, a, log_c, log_c0, log_area = c
            dens = math.exp(log_area + log_c + kappa * w) * (1 - w * w) ** a
            return dens * (kappa * w + log_c - log_c0)

        ref = integrate.quad(integrand, -1, 1, limit=200)[0]
        assert abs(kl_to_uniform(d, kappa).item() - ref) < 1e-9
    assert kl_to_uniform(5, 0.0).item() == 0.0
    kl = kl_to_uniform(8, torch.linspace(0, 50, 101, dtype=F64))
    assert (kl.diff() > 0).all()


def test_log_prob_and_entropy_match_scipy(device: torch.device) -> None:
    d, kappa = 6, 12.5
    mu = _unit(d)[0]
    x = _unit(d, 50, seed=1)
    dist = VonMisesFisher(mu.to(device), kappa)
    ref = stats.vonmises_fisher(mu.numpy(), kappa)
    got = dist.log_prob(x.to(device)).cpu().numpy()
    np.testing.assert_allclose(got, ref.logpdf(x.numpy()), rtol=1e-12, atol=1e-12)
    assert abs(dist.entropy().item() - ref.entropy()) < 1e-10
    torch.testing.assert_close(
        dist.mean.cpu(), vmf_mean_cosine(d, kappa) * mu, rtol=1e-12, atol=1e-14
    )


def _w_cdf(d: int, kappa: float):
    def dens(t: float) -> float:  # angle density, unnormalised
        return math.exp(kappa * (math.cos(t) - 1)) * math.sin(t) ** (d - 2)

    z = integrate.quad(dens, 0, math.pi, limit=400)[0]
    return lambda w: np.array(
        [integrate.quad(dens, math.acos(v), math.pi, limit=400)[0] / z for v in w]
    )


@pytest.mark.parametrize("sampler", ["inverse_cdf", "wood"])
@pytest.mark.parametrize(("d", "kappa"), [(2, 0.5), (3, 5.0), (8, 20.0), (40, 3.0)])
def test_samplers_ks(sampler: str, d: int, kappa: float, device: torch.device) -> None:
    torch.manual_seed(3)
    mu = _unit(d)[0].to(device)
    z = VonMisesFisher(mu, kappa, sampler=sampler).rsample((4000,))
    assert z.shape == (4000, d)
    torch.testing.assert_close(
        z.norm(dim=-1), torch.ones(4000, device=device, dtype=F64)
    )
    w = (z @ mu).cpu().numpy()
    assert stats.kstest(w, _w_cdf(d, kappa)).pvalue > 1e-3
    other = stats.vonmises_fisher(mu.cpu().numpy(), kappa).rvs(4000, random_state=5)
    assert stats.ks_2samp(w, other @ mu.cpu().numpy()).pvalue > 1e-3


def test_sampler_direction_is_uniform_around_mu() -> None:
    """The part of z orthogonal to mu points uniformly: its mean is 0."""
    torch.manual_seed(4)
    mu = _unit(5)[0]
    z = VonMisesFisher(mu, 3.0).rsample((20000,))
    perp = z - (z @ mu)[:, None] * mu
    assert perp.mean(0).abs().max() < 0.02
    torch.testing.assert_close(
        z.mean(0), vmf_mean_cosine(5, 3.0) * mu, atol=0.015, rtol=0
    )


def test_large_kappa_float32_samples() -> None:
    torch.manual_seed(5)
    mu = _unit(16, dtype=torch.float32)[0]
    for sampler in ("inverse_cdf", "wood"):
        z = VonMisesFisher(mu, 1e5, sampler=sampler).rsample((2000,))
        assert torch.isfinite(z).all()
        one_minus_w = 1 - (z.double() @ mu.double())
        # E[1 - w] = 1 - A_d(kappa) ~ (d - 1) / (2 kappa) = 7.5e-5
        expect = 1 - vmf_mean_cosine(16, 1e5).item()
        assert abs(one_minus_w.mean().item() - expect) < 0.1 * expect


def test_batched_concentration_and_gradient(device: torch.device) -> None:
    torch.manual_seed(6)
    mu = _unit(4, 3).to(device).requires_grad_()
    kappa = torch.tensor([0.0, 5.0, 400.0], dtype=F64, device=device)
    dist = VonMisesFisher(mu, kappa)
    z = dist.rsample((3000,))
    assert z.shape == (3000, 3, 4)
    w = (z * mu).sum(-1).mean(0)
    torch.testing.assert_close(
        w.detach().cpu(), vmf_mean_cosine(4, kappa.cpu()), atol=0.03, rtol=0
    )
    z.sum().backward()
    assert torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0


def test_half_precision_and_empty(device: torch.device) -> None:
    mu = _unit(8, 5, dtype=torch.float16).to(device)
    dist = VonMisesFisher(mu, 20.0)
    z = dist.rsample()
    assert z.dtype == torch.float16 and torch.isfinite(z).all()
    lp = dist.log_prob(torch.nn.functional.normalize(z.float(), dim=-1).half())
    assert lp.dtype == torch.float16 and lp.shape == (5,)
    empty = VonMisesFisher(torch.zeros(0, 8, device=device), 3.0)
    assert empty.rsample((2,)).shape == (2, 0, 8)
    assert empty.entropy().shape == (0,)


def test_validation() -> None:
    mu = _unit(3)[0]
    with pytest.raises(ValueError, match="loc"):
        VonMisesFisher(2 * mu, 1.0)
    with pytest.raises(ValueError, match="loc"):
        VonMisesFisher(torch.ones(1), 1.0)
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(mu, -1.0)
    with pytest.raises(ValueError, match="sampler"):
        VonMisesFisher(mu, 1.0, sampler="beta")
    with pytest.raises(ValueError, match="value"):
        VonMisesFisher(mu, 1.0).log_prob(torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="dim"):
        kl_to_uniform(1, 1.0)
    with pytest.raises(TypeError, match="concentration"):
        vmf_log_normalizer(3, "1")


def test_vmfvae_constant_kl_and_training_step() -> None:
    torch.manual_seed(7)
    model = VMFVAE(12, 4, 10.0, hidden=16)
    x = torch.rand(9, 12)
    rec, kl = model.loss(x)
    assert rec.shape == kl.shape == (9,)
    torch.testing.assert_close(kl, kl_to_uniform(4, 10.0).float().expand(9))
    (rec.mean() + kl.mean()).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    sample = model.sample(6)
    assert sample.shape == (6, 12) and ((sample >= 0) & (sample <= 1)).all()
    mu = model.encode(x)
    torch.testing.assert_close(mu.norm(dim=-1), torch.ones(9))
