"""kexue.generative.upsample_guidance against independent references: scipy's brentq for
the matched time on three schedules, naive float64 loops for pooling, upsampling, the
guided prediction and the DDIM sampler, and the Gaussian posterior mean computed densely
(a matrix solve with a covariance built by explicit cosine sums) for the Fourier-space
denoiser of a stationary field, at full and at pooled resolution."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from kexue.generative import (
    ConvDenoiser,
    GaussianFieldDenoiser,
    avg_pool,
    cosine_alpha_sigma,
    ddim_sample,
    eps_loss,
    gaussian_field,
    matched_time,
    pool_rescale,
    upsample,
    upsample_guided_eps,
)
from kexue.generative.upsample_guidance import T_MAX

F64 = torch.float64


def ring(fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """An even spectrum with a ring and a tail (cycles per pixel)."""
    r = torch.sqrt(fy**2 + fx**2)
    return 3 * torch.exp(-((r - 0.15) ** 2) / 0.005) + 0.2 / (1 + (r / 0.1) ** 2) + 0.05


# --- schedules ----------------------------------------------------------------------


def log_snr_linear(t):  # DDPM's linear betas (1e-4 to 0.02 over 1000 steps), continuous
    b0, b1 = 0.1, 20.0
    log_alpha2 = -(b0 * t + (b1 - b0) * t**2 / 2)
    return log_alpha2 - torch.log(-torch.expm1(log_alpha2))


def log_snr_sigmoid(t):  # a sigmoid schedule: log SNR linear in t, clipped to ±10
    return 10 - 20 * t


def test_cosine_schedule_is_variance_preserving() -> None:
    t = torch.linspace(0, 1, 101, dtype=F64)
    a, s = cosine_alpha_sigma(t)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t), rtol=0, atol=1e-15)
    assert a[0] == 1 and s[0] == 0 and abs(a[-1].item()) < 1e-16


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matched_time_cosine_against_brentq(scale: int) -> None:
    t = torch.linspace(0.01, 0.99, 25, dtype=F64)
    tau = matched_time(t, scale)

    def snr(v: float) -> float:
        return (math.cos(math.pi * v / 2) / math.sin(math.pi * v / 2)) ** 2

    for ti, taui in zip(t.tolist(), tau.tolist(), strict=True):
        ref = brentq(lambda v, ti=ti: snr(v) - scale**2 * snr(ti), 1e-9, ti, xtol=1e-15)
        assert abs(taui - ref) < 1e-13
    assert matched_time(torch.tensor([0.0, 1.0], dtype=F64), scale).tolist() == [0, 1]


@pytest.mark.parametrize("log_snr", [log_snr_linear, log_snr_sigmoid])
def test_matched_time_general_schedule_against_brentq(log_snr) -> None:
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    tau = matched_time(t, 2, log_snr=log_snr)
    for ti, taui in zip(t.tolist(), tau.tolist(), strict=True):

        def gap(v: float, ti: float = ti) -> float:
            return (
                log_snr(torch.tensor(v, dtype=F64))
                - log_snr(torch.tensor(ti, dtype=F64))
                - 2 * math.log(2)
            ).item()

        ref = brentq(gap, 0.0, ti, xtol=1e-15) if gap(0.0) > 0 else 0.0
        assert abs(taui - ref) < 1e-12


def test_cosine_closed_form_equals_bisection() -> None:
    t = torch.linspace(0.02, 0.98, 13, dtype=F64)

    def log_snr(v):
        return 2 * torch.log(torch.cos(math.pi * v / 2) / torch.sin(math.pi * v / 2))

    closed, bisected = matched_time(t, 3), matched_time(t, 3, log_snr=log_snr)
    torch.testing.assert_close(closed, bisected, rtol=0, atol=1e-13)


@given(st.floats(0, 1), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_pool_rescale_is_the_coefficient_norm(t: float, scale: int) -> None:
    a, s = cosine_alpha_sigma(torch.tensor(t, dtype=F64))
    rho = pool_rescale(torch.tensor(t, dtype=F64), scale)
    assert abs(rho.item() ** 2 - (a.item() ** 2 + s.item() ** 2 / scale**2)) < 1e-15
    # divided by rho, the pooled x_t has the coefficients of time tau
    a_tau, s_tau = cosine_alpha_sigma(matched_time(torch.tensor(t, dtype=F64), scale))
    if t < 1:
        assert abs(a.item() / rho.item() - a_tau.item()) < 1e-12
        assert abs(s.item() / (scale * rho.item()) - s_tau.item()) < 1e-12


# --- resampling ---------------------------------------------------------------------


def pool_loops(x: torch.Tensor, s: int) -> torch.Tensor:
    x = x.double().cpu()
    h, w = x.shape[-2] // s, x.shape[-1] // s
    out = torch.zeros(*x.shape[:-2], h, w, dtype=F64)
    for i in range(h):
        for j in range(w):
            total = 0
            for a in range(s):
                for b in range(s):
                    total = total + x[..., i * s + a, j * s + b]
            out[..., i, j] = total / s**2
    return out


def upsample_loops(x: torch.Tensor, s: int) -> torch.Tensor:
    x = x.double().cpu()
    out = torch.zeros(*x.shape[:-2], x.shape[-2] * s, x.shape[-1] * s, dtype=F64)
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x[..., i // s, j // s]
    return out


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_pool_and_upsample_against_loops(device, scale: int) -> None:
    x = torch.randn(2, 3, 6 * scale, 3 * scale, dtype=F64, device=device)
    torch.testing.assert_close(
        avg_pool(x, scale).cpu(), pool_loops(x, scale), rtol=0, atol=1e-15
    )
    y = torch.randn(2, 4, 5, device=device)
    torch.testing.assert_close(
        upsample(y, scale).double().cpu(), upsample_loops(y, scale), rtol=0, atol=0
    )
    torch.testing.assert_close(avg_pool(upsample(y, scale), scale), y)


def test_pooled_white_noise_has_variance_one_over_s2() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4000, 28, 28, generator=g, dtype=F64)
    for s in (2, 4, 7):
        var = avg_pool(noise, s).var().item()
        n = noise.numel() / s**2
        assert abs(var * s**2 - 1) < 5 * math.sqrt(2 / n)


def test_half_precision_pool_is_computed_in_float32(device) -> None:
    x = torch.full((1, 4, 4), 60000.0, dtype=torch.float16, device=device)
    out = avg_pool(x, 2)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


# --- the Gaussian random field ------------------------------------------------------


def dense_covariance(power, n: int) -> torch.Tensor:
    """The circulant covariance of the field on an n × n torus, by explicit cosines."""
    f = torch.arange(n, dtype=F64)
    f = torch.where(f >= (n + 1) // 2, f - n, f) / n
    p = power(f[:, None], f[None, :])
    idx = [(i, j) for i in range(n) for j in range(n)]
    cov = torch.zeros(n * n, n * n, dtype=F64)
    for a, (i, j) in enumerate(idx):
        for b, (k, m) in enumerate(idx):
            phase = 2 * math.pi * (f[:, None] * (i - k) + f[None, :] * (j - m))
            cov[a, b] = (p * torch.cos(phase)).sum() / n**2
    return cov


def pooling_matrix(n: int, s: int) -> torch.Tensor:
    eye = torch.eye(n * n, dtype=F64).reshape(n * n, n, n)
    return pool_loops(eye, s).reshape(n * n, -1).T


def posterior_eps(cov: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
    a, s = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)
    system = a**2 * cov + s**2 * torch.eye(cov.shape[0], dtype=F64)
    flat = x.reshape(x.shape[0], -1).T
    return (s * torch.linalg.solve(system, flat)).T.reshape(x.shape)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_field_denoiser_is_the_dense_posterior_mean(t: float) -> None:
    n = 6
    cov = dense_covariance(ring, n)
    x = torch.randn(3, n, n, dtype=F64)
    out = GaussianFieldDenoiser(ring)(x, t)
    assert (out - posterior_eps(cov, x, t)).abs().max() < 1e-13


@pytest.mark.parametrize("scale", [2, 3])
def test_pooled_field_denoiser_is_the_dense_posterior_of_the_pooled_field(
    scale: int,
) -> None:
    n = 4 * scale
    pool = pooling_matrix(n, scale)
    cov = pool @ dense_covariance(ring, n) @ pool.T
    x = torch.randn(2, 4, 4, dtype=F64)
    out = GaussianFieldDenoiser(ring, pooled_by=scale)(x, 0.4)
    assert (out - posterior_eps(cov, x, 0.4)).abs().max() < 1e-13


def test_gaussian_field_has_its_spectrum(device) -> None:
    g = torch.Generator(device).manual_seed(0)
    x = gaussian_field(ring, (3000, 16, 16), generator=g, dtype=F64)
    emp = torch.fft.rfft2(x, norm="ortho").abs().square().mean(0).cpu()
    ref = GaussianFieldDenoiser(ring).spectrum(16, 16)
    # 3000 draws: relative error of one |X|^2 mean is about 1/sqrt(3000) = 0.018
    # (twice that on the real-valued modes)
    assert ((emp / ref - 1).abs() < 0.12).all()
    assert abs((emp / ref - 1).mean().item()) < 0.01


# --- guidance and the sampler -------------------------------------------------------


def guided_reference(model, x, t: float, s: int, w: float) -> torch.Tensor:
    """ε̃ by the formula, with τ from brentq and pooling/upsampling by loops."""
    a, b = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)

    def snr(v: float) -> float:
        return (
            math.cos(math.pi * v / 2) ** 2 / max(math.sin(math.pi * v / 2), 1e-300) ** 2
        )

    tau = brentq(lambda v: snr(v) - s**2 * a**2 / b**2, 1e-12, t, xtol=1e-15)
    rho = math.sqrt(a**2 + b**2 / s**2)
    batch = torch.full((x.shape[0],), t, dtype=F64)
    eps = model(x, batch)
    low = model(pool_loops(x, s) / rho, torch.full_like(batch, tau)) / s
    return eps + (1 + w) * upsample_loops(low - pool_loops(eps, s), s)


@pytest.mark.parametrize(("s", "w"), [(2, 0.2), (2, 0.0), (3, 1.5)])
def test_guided_eps_against_formula(s: int, w: float) -> None:
    model = GaussianFieldDenoiser(ring, pooled_by=s)
    x = torch.randn(3, 4 * s, 2 * s, dtype=F64)
    out = upsample_guided_eps(model, x, 0.6, scale=s, weight=w)
    assert (out - guided_reference(model, x, 0.6, s, w)).abs().max() < 1e-12


def test_guidance_off_and_scale_one_give_the_model_back(device) -> None:
    model = GaussianFieldDenoiser(ring)
    x = torch.randn(2, 1, 8, 8, dtype=F64, device=device)
    eps = model(x, 0.3)
    off = upsample_guided_eps(model, x, 0.3, weight=-1.0)
    one = upsample_guided_eps(model, x, 0.3, scale=1, weight=0.7)
    torch.testing.assert_close(off, eps, rtol=0, atol=1e-14)
    torch.testing.assert_close(one, eps, rtol=0, atol=1e-14)


def ddim_loops(model, x, steps, guidance=None, until=0.0, clip=None):
    """DDIM by its definition: x' = ᾱ' x̂₀ + β̄' ε̂ with x̂₀ = (x − β̄ ε̂)/ᾱ."""
    times = [T_MAX * (1 - i / steps) for i in range(steps + 1)]
    for t, t_next in itertools.pairwise(times):
        if guidance is not None and t >= until:
            eps = guided_reference(model, x, t, *guidance)
        else:
            eps = model(x, torch.full((x.shape[0],), t, dtype=F64))
        a, b = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)
        x0 = (x - b * eps) / a
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - a * x0) / b
        a2, b2 = math.cos(math.pi * t_next / 2), math.sin(math.pi * t_next / 2)
        x = a2 * x0 + b2 * eps
    return x


@pytest.mark.parametrize(
    ("guidance", "until", "clip"),
    [(None, 0.0, None), ((2, 0.2), 0.0, None), ((2, 0.2), 0.5, None), (None, 0, 1.0)],
)
def test_ddim_against_naive_loop(guidance, until, clip) -> None:
    model = GaussianFieldDenoiser(ring, pooled_by=2)
    out = ddim_sample(
        model,
        (3, 1, 8, 8),
        12,
        guidance=guidance,
        guidance_until=until,
        clip=clip,
        generator=torch.Generator().manual_seed(3),
        dtype=F64,
    )
    x_start = torch.randn(
        3, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=F64
    )
    ref = ddim_loops(model, x_start, 12, guidance, until, clip)
    # the angle form and the x̂₀ form round differently near t = T_MAX (÷ ᾱ ≈ 1.6e-3)
    assert (out - ref).abs().max() < 1e-10


def test_ddim_with_the_exact_denoiser_samples_the_field() -> None:
    # with the exact ε the DDIM ODE maps N(0, I) onto the field; error is first order
    model = GaussianFieldDenoiser(ring)
    x = ddim_sample(
        model, (2000, 8, 8), 200, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    emp = torch.fft.rfft2(x, norm="ortho").abs().square().mean(0)
    ref = model.spectrum(8, 8)
    assert ((emp / ref - 1).abs() < 0.15).all()


def test_ddim_empty_batch_and_generator_device(device) -> None:
    model = GaussianFieldDenoiser(ring)
    out = ddim_sample(model, (0, 4, 4), 3, device=device)
    assert out.shape == (0, 4, 4) and out.device.type == device.type
    g = torch.Generator(device).manual_seed(0)
    assert ddim_sample(model, (1, 4, 4), 2, generator=g).device.type == device.type


# --- the convolutional denoiser -----------------------------------------------------


def test_conv_denoiser_runs_at_any_resolution_and_is_translation_equivariant(
    device,
) -> None:
    torch.manual_seed(0)
    net = ConvDenoiser(hidden=8, layers=2, max_dilation=2).to(device, F64)
    x = torch.randn(2, 1, 28, 28, dtype=F64, device=device)
    assert net(x, 0.5).shape == x.shape and net(x[..., :14, :14], 0.5).shape == (
        2,
        1,
        14,
        14,
    )
    shifted = net(torch.roll(x, (3, 2), (-2, -1)), 0.5)
    inner = (slice(None), slice(None), slice(10, 18), slice(10, 18))
    # the receptive field is 1 + 2(1 + 1 + 2 + 1) = 11 pixels: the centre is unaffected
    # by the border, so there the output moves with the input
    torch.testing.assert_close(
        shifted[inner], torch.roll(net(x, 0.5), (3, 2), (-2, -1))[inner]
    )


def test_eps_loss_is_the_mean_squared_noise_error(device) -> None:
    net = ConvDenoiser(hidden=4, layers=1).to(device, F64)
    x0 = torch.rand(5, 1, 6, 6, dtype=F64, device=device)
    loss = eps_loss(net, x0, generator=torch.Generator(device).manual_seed(7))
    g = torch.Generator(device).manual_seed(7)
    t = torch.rand(5, generator=g, device=device, dtype=F64)
    noise = torch.randn(x0.shape, generator=g, device=device, dtype=F64)
    total = 0.0
    for i in range(5):
        a, b = math.cos(math.pi * t[i].item() / 2), math.sin(math.pi * t[i].item() / 2)
        pred = net(a * x0[i : i + 1] + b * noise[i : i + 1], t[i : i + 1])
        total += (pred - noise[i : i + 1]).square().sum().item()
    assert abs(loss.item() - total / x0.numel()) < 1e-12
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
