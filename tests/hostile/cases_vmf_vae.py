"""Hostile inputs for the vMF distribution and the vMF-VAE (``kexue.generative.vmf_vae``).

References are float64 formulas written here: for ``d = 3`` the normaliser is
``kappa / (4 pi sinh kappa)`` and the mean cosine ``coth kappa - 1/kappa``.
"""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.generative as G

F64 = torch.float64
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
VMF, VAE, KL = (
    "generative.VonMisesFisher",
    "generative.VMFVAE",
    "generative.kl_to_uniform",
)
LOGC, MEAN = "generative.vmf_log_normalizer", "generative.vmf_mean_cosine"


def log_c3(kappa: float) -> float:  # log(kappa / (4 pi sinh kappa)), stable
    if kappa == 0:
        return -math.log(4 * math.pi)
    return math.log(kappa / (2 * math.pi)) - kappa - math.log1p(-math.exp(-2 * kappa))


def unit(*shape: int, device, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=F64)
    return torch.nn.functional.normalize(x, dim=-1).to(device, dtype)


for target, fn in (
    (LOGC, G.vmf_log_normalizer),
    (MEAN, G.vmf_mean_cosine),
    (KL, G.kl_to_uniform),
):
    for what, kind, names, call in (
        ("dim 1", ValueError, "dim", lambda d, f=fn: f(1, 2.0)),
        ("dim 2.0", TypeError, "dim", lambda d, f=fn: f(2.0, 2.0)),
        ("concentration -1", ValueError, "concentration", lambda d, f=fn: f(3, -1.0)),
        ("concentration inf", ValueError, "concentration", lambda d, f=fn: f(3, math.inf)),
        ("concentration NaN tensor", ValueError, "concentration", lambda d, f=fn: f(3, torch.tensor([1.0, math.nan], device=d))),
        ("concentration integer tensor", TypeError, "concentration", lambda d, f=fn: f(3, torch.ones(2, dtype=torch.long, device=d))),
        ("concentration a string", TypeError, "concentration", lambda d, f=fn: f(3, "2")),
    ):  # fmt: skip
        error(target, what, kind, names, call)

for what, kind, names, call in (
    ("loc not unit", ValueError, "loc", lambda d: G.VonMisesFisher(2 * unit(3, device=d), 1.0)),
    ("loc with one feature", ValueError, "loc", lambda d: G.VonMisesFisher(torch.ones(4, 1, device=d), 1.0)),
    ("loc rank 0", ValueError, "loc", lambda d: G.VonMisesFisher(torch.tensor(1.0, device=d), 1.0)),
    ("loc integer", TypeError, "loc", lambda d: G.VonMisesFisher(torch.ones(3, dtype=torch.long, device=d), 1.0)),
    ("loc with NaN", ValueError, "loc", lambda d: G.VonMisesFisher(torch.full((2, 3), math.nan, device=d), 1.0)),
    ("concentration that grows the batch", ValueError, "concentration", lambda d: G.VonMisesFisher(unit(2, 3, device=d), torch.ones(5, 2, device=d))),
    ("concentration on another device", ValueError, "concentration", lambda d: G.VonMisesFisher(unit(3, device=d), torch.ones((), device="meta"))),
    ("sampler unknown", ValueError, "sampler", lambda d: G.VonMisesFisher(unit(3, device=d), 1.0, sampler="ulrich")),
    ("log_prob value with 4 features for 3", ValueError, "value", lambda d: G.VonMisesFisher(unit(3, device=d), 1.0).log_prob(unit(4, device=d))),
    ("log_prob value off the sphere", ValueError, "value", lambda d: G.VonMisesFisher(unit(3, device=d), 1.0).log_prob(torch.ones(3, device=d))),
    ("log_prob value not broadcasting", ValueError, "value", lambda d: G.VonMisesFisher(unit(2, 3, device=d), 1.0).log_prob(unit(4, 3, device=d))),
):  # fmt: skip
    error(VMF, what, kind, names, call)

for what, kind, names, call in (
    ("latent_dim 1", ValueError, "latent_dim", lambda d: G.VMFVAE(5, 1, 2.0)),
    ("concentration -2", ValueError, "concentration", lambda d: G.VMFVAE(5, 3, -2.0)),
    ("concentration a tensor", TypeError, "concentration", lambda d: G.VMFVAE(5, 3, torch.tensor(2.0))),
    ("sampler unknown", ValueError, "sampler", lambda d: G.VMFVAE(5, 3, 2.0, sampler="beta")),
    ("x with 4 features for 5", ValueError, "x", lambda d: G.VMFVAE(5, 3, 2.0, hidden=4).to(d).loss(torch.rand(2, 4, device=d))),
    ("sample n -1", ValueError, "n", lambda d: G.VMFVAE(5, 3, 2.0, hidden=4).sample(-1)),
):  # fmt: skip
    error(VAE, what, kind, names, call)


@case(LOGC, "d = 3 against kappa / (4 pi sinh kappa), kappa from 0 to 1e6", "value")
def _(device):
    kappas = [0.0, 1e-6, 0.3, 4.0, 80.0, 1e6]
    ref = torch.tensor([log_c3(k) for k in kappas], dtype=F64)
    close(
        G.vmf_log_normalizer(3, torch.tensor(kappas, dtype=F64, device=device)),
        ref,
        atol=1e-10,
        rtol=1e-12,
    )
    out = G.vmf_log_normalizer(3, torch.tensor(kappas, device=device))  # float32
    assert out.dtype == torch.float32
    close(out, ref, atol=1e-6, rtol=2e-7)


@case(LOGC, "half precision in float32 inside; empty in, empty out", "empty")
def _(device):
    out = G.vmf_log_normalizer(8, torch.tensor([20.0, 6e4], device=device).half())
    assert out.dtype == torch.float16
    finite(out)
    assert G.vmf_log_normalizer(8, torch.zeros(0, 2, device=device)).shape == (0, 2)


@case(MEAN, "d = 3 against coth kappa - 1/kappa; 0 at kappa = 0", "value")
def _(device):
    kappas = [0.0, 1e-3, 0.5, 10.0, 1e4]
    ref = torch.tensor(
        [0.0] + [1 / math.tanh(k) - 1 / k for k in kappas[1:]], dtype=F64
    )
    close(
        G.vmf_mean_cosine(3, torch.tensor(kappas, dtype=F64, device=device)),
        ref,
        atol=1e-12,
    )


@case(MEAN, "d = 10^4 and kappa = 10^7 in float32 stay finite and below 1", "finite")
def _(device):
    out = G.vmf_mean_cosine(10_000, torch.tensor([1e-3, 50.0, 1e7], device=device))
    finite(out)
    assert bool(((out >= 0) & (out < 1)).all())


@case(KL, "zero at kappa = 0, d = 3 by its closed form, gradient in kappa", "grad")
def _(device):
    kappa = torch.tensor([0.0, 2.0], dtype=F64, device=device, requires_grad=True)
    kl = G.kl_to_uniform(3, kappa)
    a = 1 / math.tanh(2.0) - 0.5
    ref = torch.tensor([0.0, 2.0 * a + log_c3(2.0) + math.log(4 * math.pi)], dtype=F64)
    close(kl, ref, atol=1e-12)
    kl.sum().backward()
    finite(kappa.grad)


@case(
    VMF, "log_prob and entropy for d = 3 against the closed form; strided loc", "value"
)
def _(device):
    loc = unit(4, 3, device=device, dtype=F64)
    x = unit(5, 1, 3, device=device, dtype=F64).flip(0)  # a view, broadcast over loc
    dist = G.VonMisesFisher(loc, torch.tensor(2.5, dtype=F64, device=device))
    ref = log_c3(2.5) + 2.5 * (x.cpu() * loc.cpu()).sum(-1)
    close(dist.log_prob(x), ref, atol=1e-12)
    entropy = -log_c3(2.5) - 2.5 * (1 / math.tanh(2.5) - 1 / 2.5)
    close(dist.entropy(), torch.full((4,), entropy, dtype=F64), atol=1e-12)


@case(VMF, "empty batch in, empty samples out, both samplers", "empty")
def _(device):
    for sampler in ("inverse_cdf", "wood"):
        dist = G.VonMisesFisher(torch.zeros(0, 5, device=device), 3.0, sampler=sampler)
        assert dist.rsample((3,)).shape == (3, 0, 5)
        assert dist.log_prob(torch.zeros(0, 5, device=device)).shape == (0,)


@case(VMF, "kappa = 1e6 in float16 and float32: finite unit samples near loc", "finite")
def _(device):
    for dtype in (torch.float16, torch.float32):
        loc = unit(6, 8, device=device, dtype=dtype)
        for sampler in ("inverse_cdf", "wood"):
            z = G.VonMisesFisher(loc, 1e6, sampler=sampler).rsample((4,))
            assert z.dtype == dtype
            finite(z)
            w = (z.float() * loc.float()).sum(-1)
            assert bool((w > 0.99).all())


@case(VMF, "gradient reaches loc through rsample; an odd-offset loc view", "grad")
def _(device):
    raw = odd_view(3, 4, device=device)
    loc = torch.nn.functional.normalize(raw, dim=-1).detach().requires_grad_()
    z = G.VonMisesFisher(loc, torch.tensor([1.0, 0.0, 30.0], device=device)).rsample(
        (2,)
    )
    assert z.shape == (2, 3, 4)
    z.sum().backward()
    finite(loc.grad)


@case(
    VAE, "a loss step on the device: constant KL, gradients finite; empty batch", "grad"
)
def _(device):
    torch.manual_seed(0)
    model = G.VMFVAE(6, 3, 5.0, hidden=8).to(device)
    rec, kl = model.loss(torch.rand(4, 6, device=device))
    close(kl, G.kl_to_uniform(3, 5.0).expand(4), atol=1e-6)
    (rec.mean() + kl.mean()).backward()
    for p in model.parameters():
        finite(p.grad)
    rec, kl = model.loss(torch.zeros(0, 6, device=device))
    assert rec.shape == kl.shape == (0,)
    assert model.sample(0).shape == (0, 6)
