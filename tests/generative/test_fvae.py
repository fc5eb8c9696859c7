"""kexue.generative.fvae against independent references: autograd's Jacobian and
``slogdet`` for the log-determinants, grid quadrature for the flow's normalisation,
``torch.distributions`` for the likelihoods, and the closed forms of the two special
cases of the f-VAE loss (no flow library is installed to compare with)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.generative import (
    AffineCoupling,
    Decoder,
    Encoder,
    RealNVP,
    bernoulli_nll,
    fvae_loss,
    gaussian_kl,
    vae_loss,
)

F64 = torch.float64


def _randomised(module: nn.Module, device, std: float = 0.4) -> nn.Module:
    """Random weights everywhere (a new coupling is the identity, which tests
    nothing)."""
    g = torch.Generator().manual_seed(0)
    for p in module.parameters():
        with torch.no_grad():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.to(device)


@pytest.mark.parametrize(("dim", "cond_dim"), [(2, 0), (3, 0), (6, 0), (5, 4)])
def test_logdet_matches_autograd_jacobian(device, dim: int, cond_dim: int) -> None:
    flow = _randomised(RealNVP(dim, 5, 12, cond_dim=cond_dim).double(), device)
    x = torch.randn(8, dim, dtype=F64, device=device)
    cond = torch.randn(8, cond_dim, dtype=F64, device=device) if cond_dim else None
    _, logdet = flow(x, cond)
    for i in range(8):
        c = cond[i : i + 1] if cond_dim else None
        jac = torch.autograd.functional.jacobian(
            lambda v, c=c: flow(v[None], c)[0][0], x[i]
        )
        sign, ref = torch.linalg.slogdet(jac)
        assert sign.item() > 0  # exp(s) > 0: a coupling preserves orientation
        assert abs(ref.item() - logdet[i].item()) < 1e-12


def test_coupling_keeps_its_half_and_inverts(device) -> None:
    layer = _randomised(AffineCoupling(5, 8, parity=0).double(), device)
    x = torch.randn(7, 5, dtype=F64, device=device)
    y, logdet = layer(x)
    torch.testing.assert_close(y[:, [0, 2, 4]], x[:, [0, 2, 4]], rtol=0, atol=0)
    assert not torch.allclose(y[:, [1, 3]], x[:, [1, 3]])
    back, back_logdet = layer.inverse(y)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-14)
    torch.testing.assert_close(back_logdet, -logdet, rtol=0, atol=1e-14)


def test_new_flow_is_the_identity(device) -> None:
    flow = RealNVP(4, 3, 8).to(device)
    x = torch.randn(5, 4, device=device)
    z, logdet = flow(x)
    torch.testing.assert_close(z, x, rtol=0, atol=0)
    assert logdet.abs().max().item() == 0


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(2, 7),
    layers=st.integers(1, 4),
    batch=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_inverse_of_forward_is_identity(
    dim: int, layers: int, batch: int, seed: int
) -> None:
    torch.manual_seed(seed)
    flow = _randomised(RealNVP(dim, layers, 6), "cpu", std=0.5)
    x = torch.randn(batch, dim)
    z, logdet = flow(x)
    back, back_logdet = flow.inverse(z)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back_logdet, -logdet, rtol=1e-5, atol=1e-5)


def test_log_prob_integrates_to_one() -> None:
    """The flow's density on R^2, summed on a fine grid, has mass 1."""
    flow = _randomised(RealNVP(2, 4, 8).double(), "cpu", std=0.3)
    grid = torch.linspace(-12, 12, 801, dtype=F64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
    with torch.no_grad():
        mass = (
            flow.log_prob(points).exp().sum().item() * (grid[1] - grid[0]).item() ** 2
        )
    assert abs(mass - 1) < 1e-4


def test_sample_is_the_inverse_of_normal_draws(device) -> None:
    flow = _randomised(RealNVP(3, 2, 8), device)
    x = flow.sample(6, generator=torch.Generator(device).manual_seed(5))
    u = torch.randn(
        6, 3, generator=torch.Generator(device).manual_seed(5), device=device
    )
    torch.testing.assert_close(flow(x)[0], u, rtol=1e-5, atol=1e-5)
    assert flow.sample(0).shape == (0, 3)


def _pair(in_dim: int = 6, latent: int = 3, heads: int = 2):
    torch.manual_seed(0)
    return Encoder(in_dim, latent, heads=heads, hidden=16), Decoder(
        latent, in_dim, hidden=16
    )


def test_identity_flow_is_the_vae(device) -> None:
    """F_x affine (flow=None): the reconstruction is the VAE's for the same noise and
    the one-sample KL averages to the closed form."""
    enc, dec = (m.to(device) for m in _pair())
    x = torch.rand(5, 6, device=device)
    rec_v, kl_v = vae_loss(
        x, enc, dec, generator=torch.Generator(device).manual_seed(1)
    )
    rec_f, _ = fvae_loss(
        x, enc, None, dec, generator=torch.Generator(device).manual_seed(1)
    )
    torch.testing.assert_close(rec_f, rec_v, rtol=0, atol=0)
    mean, log_var = enc(x)
    torch.testing.assert_close(kl_v, gaussian_kl(mean, log_var))
    n = 40_000
    _, kl = fvae_loss(x.repeat(n, 1), enc, None, dec)
    kl = kl.reshape(n, 5).double()
    z_score = (kl.mean(0) - kl_v.double()).abs() / (kl.std(0) / math.sqrt(n))
    assert z_score.max().item() < 4.5


def test_noisy_input_case_is_a_flow_on_noisy_data(device) -> None:
    sigma = 0.2
    flow = _randomised(RealNVP(3, 4, 8).double(), device)
    x = torch.randn(9, 3, dtype=F64, device=device)

    def encoder(v):
        return v, torch.full_like(v, 2 * math.log(sigma))

    rec, kl = fvae_loss(
        x,
        encoder,
        flow,
        lambda h: h,
        sigma=sigma,
        generator=torch.Generator(device).manual_seed(3),
    )
    u = torch.randn(
        9, 3, generator=torch.Generator(device).manual_seed(3), dtype=F64, device=device
    )
    expected = 1.5 * math.log(2 * math.pi * sigma**2) + 0.5 * u.square().sum(-1)
    torch.testing.assert_close(rec, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        rec + kl, -flow.log_prob(x + sigma * u), rtol=0, atol=1e-12
    )


def test_article_model_is_a_vae_with_a_flow_prior(device) -> None:
    enc, dec = (m.double().to(device) for m in _pair())
    flow = _randomised(RealNVP(3, 4, 8).double(), device)
    x = torch.rand(6, 6, dtype=F64, device=device)
    _, kl = fvae_loss(
        x, enc, flow, dec, generator=torch.Generator(device).manual_seed(4)
    )
    mean, log_var = enc(x)
    u = torch.randn(
        6, 3, generator=torch.Generator(device).manual_seed(4), dtype=F64, device=device
    )
    h = mean + (0.5 * log_var).exp() * u
    posterior = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    expected = posterior.log_prob(h).sum(-1) - flow.log_prob(h)
    torch.testing.assert_close(kl, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("vector", [False, True])
def test_gaussian_likelihood_matches_torch(device, vector: bool) -> None:
    enc, dec = (m.double().to(device) for m in _pair())
    x = torch.randn(4, 6, dtype=F64, device=device)
    sigma = (
        torch.linspace(0.1, 2.0, 6, dtype=F64, device=device)
        if vector
        else torch.tensor(0.3, dtype=F64, device=device)
    )
    rec, _ = vae_loss(
        x, enc, dec, sigma=sigma, generator=torch.Generator(device).manual_seed(0)
    )
    mean, log_var = enc(x)
    u = torch.randn(
        4, 3, generator=torch.Generator(device).manual_seed(0), dtype=F64, device=device
    )
    decoded = dec(mean + (0.5 * log_var).exp() * u)
    ref = -torch.distributions.Normal(decoded, sigma).log_prob(x).sum(-1)
    torch.testing.assert_close(rec, ref, rtol=0, atol=1e-12)


def test_bernoulli_likelihood_and_learned_sigma(device) -> None:
    enc, dec = (m.to(device) for m in _pair())
    x = torch.rand(4, 6, device=device)
    rec, _ = vae_loss(x, enc, dec, generator=torch.Generator(device).manual_seed(0))
    mean, log_var = enc(x)
    u = torch.randn(
        4, 3, generator=torch.Generator(device).manual_seed(0), device=device
    )
    ref = bernoulli_nll(dec(mean + (0.5 * log_var).exp() * u), x)
    torch.testing.assert_close(rec, ref)
    log_sigma = torch.zeros((), device=device, requires_grad=True)
    rec, kl = fvae_loss(x, enc, RealNVP(3, 2, 8).to(device), dec, sigma=log_sigma.exp())
    (rec + kl).sum().backward()
    assert log_sigma.grad is not None and torch.isfinite(log_sigma.grad)


def test_conditional_flow_decodes_its_output(device) -> None:
    enc, dec = (m.to(device) for m in _pair(heads=3))
    flow = _randomised(RealNVP(3, 2, 8, cond_dim=3), device)
    x = torch.rand(5, 6, device=device)
    rec, kl = fvae_loss(x, enc, flow, dec, decode="output")
    assert rec.shape == kl.shape == (5,)
    with pytest.raises(ValueError, match="decode"):
        fvae_loss(x, enc, flow, dec, decode="input")


def test_half_precision_flow_is_finite() -> None:
    flow = _randomised(RealNVP(4, 3, 8), "cpu").to(torch.bfloat16)
    x = torch.randn(5, 4, dtype=torch.bfloat16)
    z, logdet = flow(x)
    assert z.dtype == logdet.dtype == torch.bfloat16
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
