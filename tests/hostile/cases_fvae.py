"""Hostile inputs for the flows and losses of ``kexue.generative.fvae``.

References are float64 formulas written here: a one-coupling flow in closed form, the
Gaussian likelihood with its normaliser, and the Gaussian KL.
"""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.generative as G

F64 = torch.float64
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
COUPLING, FLOW = "generative.AffineCoupling", "generative.RealNVP"
FVAE, VAE = "generative.fvae_loss", "generative.vae_loss"


def random_flow(*args, device, dtype=torch.float32, **kw) -> G.RealNVP:
    torch.manual_seed(0)
    flow = G.RealNVP(*args, **kw)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.4)
    return flow.to(device, dtype)


def pair(device, heads=2, dtype=torch.float32):
    torch.manual_seed(0)
    enc = G.Encoder(4, 2, heads=heads, hidden=8).to(device, dtype)
    return enc, G.Decoder(2, 4, hidden=8).to(device, dtype)


def flow_call(d, **kw):
    return random_flow(3, 2, 4, device=d, **kw)


for what, kind, names, call in (
    ("dim 1", ValueError, "dim", lambda d: G.AffineCoupling(1)),
    ("dim 2.0", TypeError, "dim", lambda d: G.AffineCoupling(2.0)),
    ("parity 2", ValueError, "parity", lambda d: G.AffineCoupling(3, parity=2)),
    ("cond_dim -1", ValueError, "cond_dim", lambda d: G.AffineCoupling(3, cond_dim=-1)),
    ("hidden 0", ValueError, "hidden", lambda d: G.AffineCoupling(3, 0)),
    ("x with 4 features for 3", ValueError, "x", lambda d: G.AffineCoupling(3).to(d)(torch.ones(2, 4, device=d))),
    ("x integer", TypeError, "x", lambda d: G.AffineCoupling(3).to(d)(torch.ones(2, 3, dtype=torch.long, device=d))),
    ("x float64 for float32 weights", TypeError, "x", lambda d: G.AffineCoupling(3).to(d)(torch.ones(2, 3, dtype=F64, device=d))),
    ("x on meta", ValueError, "x", lambda d: G.AffineCoupling(3).to(d)(torch.ones(2, 3, device="meta"))),
    ("cond given without cond_dim", ValueError, "cond", lambda d: G.AffineCoupling(3).to(d)(torch.ones(2, 3, device=d), torch.ones(2, 1, device=d))),
    ("cond missing", ValueError, "cond", lambda d: G.AffineCoupling(3, cond_dim=2).to(d)(torch.ones(2, 3, device=d))),
    ("cond of another batch", ValueError, "cond", lambda d: G.AffineCoupling(3, cond_dim=2).to(d)(torch.ones(2, 3, device=d), torch.ones(5, 2, device=d))),
    ("inverse y with 2 features", ValueError, "y", lambda d: G.AffineCoupling(3).to(d).inverse(torch.ones(2, 2, device=d))),
):  # fmt: skip
    error(COUPLING, what, kind, names, call)

for what, kind, names, call in (
    ("layers 0", ValueError, "layers", lambda d: G.RealNVP(3, 0)),
    ("layers 2.5", TypeError, "layers", lambda d: G.RealNVP(3, 2.5)),
    ("depth 0", ValueError, "layers", lambda d: G.RealNVP(3, 2, depth=0)),
    ("x rank 0", ValueError, "x", lambda d: flow_call(d)(torch.tensor(1.0, device=d))),
    ("x not a tensor", TypeError, "x", lambda d: flow_call(d)([[1.0, 2.0, 3.0]])),
    ("inverse z with 4 features", ValueError, "z", lambda d: flow_call(d).inverse(torch.ones(1, 4, device=d))),
    ("sample count -1", ValueError, "count", lambda d: flow_call(d).sample(-1)),
    ("sample generator a seed", TypeError, "generator", lambda d: flow_call(d).sample(2, generator=0)),
):  # fmt: skip
    error(FLOW, what, kind, names, call)

for target, fn in ((VAE, G.vae_loss), (FVAE, None)):

    def loss(x, enc, dec, f=fn, **kw):
        if f is not None:
            return f(x, enc, dec, **kw)
        return G.fvae_loss(x, enc, None, dec, **kw)

    for what, kind, names, call in (
        ("x rank 1", ValueError, "x", lambda d, L=loss: L(torch.rand(4, device=d), *pair(d))),
        ("x integer", TypeError, "x", lambda d, L=loss: L(torch.ones(2, 4, dtype=torch.long, device=d), *pair(d))),
        ("x outside [0, 1] for Bernoulli", ValueError, "x", lambda d, L=loss: L(torch.full((2, 4), 2.0, device=d), *pair(d))),
        ("encoder not callable", TypeError, "encoder", lambda d, L=loss: L(torch.rand(2, 4, device=d), "enc", pair(d)[1])),
        ("encoder with one head", ValueError, "encoder", lambda d, L=loss: L(torch.rand(2, 4, device=d), pair(d, heads=1)[0], pair(d)[1])),
        ("decoder of the wrong width", ValueError, "decoder", lambda d, L=loss: L(torch.rand(2, 4, device=d), pair(d)[0], lambda z: z)),
        ("sigma 0", ValueError, "sigma", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), sigma=0.0)),
        ("sigma a string", TypeError, "sigma", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), sigma="1")),
        ("sigma of shape (3,) for 4 features", ValueError, "sigma", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), sigma=torch.ones(3, device=d))),
        ("sigma negative tensor", ValueError, "sigma", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), sigma=-torch.ones((), device=d))),
        ("sigma on meta", ValueError, "sigma", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), sigma=torch.ones((), device="meta"))),
        ("generator a seed", TypeError, "generator", lambda d, L=loss: L(torch.rand(2, 4, device=d), *pair(d), generator=0)),
    ):  # fmt: skip
        error(target, what, kind, names, call)

for what, kind, names, call in (
    ("decode 'z'", ValueError, "decode", lambda d: G.fvae_loss(torch.rand(2, 4, device=d), *pair(d)[:1], None, pair(d)[1], decode="z")),
    ("flow not callable", TypeError, "flow", lambda d: G.fvae_loss(torch.rand(2, 4, device=d), pair(d)[0], 3, pair(d)[1])),
    ("context without a flow", ValueError, "context", lambda d: G.fvae_loss(torch.rand(2, 4, device=d), pair(d, heads=3)[0], None, pair(d)[1], decode="output")),
    ("context with decode='input'", ValueError, "decode", lambda d: G.fvae_loss(torch.rand(2, 4, device=d), pair(d, heads=3)[0], random_flow(2, 2, 4, cond_dim=2, device=d), pair(d)[1])),
    ("flow returning one tensor", ValueError, "flow", lambda d: G.fvae_loss(torch.rand(2, 4, device=d), pair(d)[0], lambda h: (h, h), pair(d)[1])),
):  # fmt: skip
    error(FVAE, what, kind, names, call)


@case(COUPLING, "one coupling in closed form, float64, an odd-offset view", "value")
def _(device):
    layer = G.AffineCoupling(2, 4, parity=1).double().to(device)
    with torch.no_grad():
        layer.net[-1].bias.copy_(torch.tensor([0.5, -1.0], dtype=F64))  # raw s, t
    x = odd_view(3, 2, device=device, dtype=F64)
    y, logdet = layer(x)
    log_s = math.tanh(0.5)  # scale 1 times tanh(raw s)
    ref = torch.stack([x[:, 0].cpu() * math.exp(log_s) - 1.0, x[:, 1].cpu()], -1)
    close(y, ref, atol=1e-14)
    close(logdet, torch.full((3,), log_s, dtype=F64), atol=1e-15)
    close(layer.inverse(y)[0], x.cpu(), atol=1e-14)


@case(COUPLING, "empty batch in, empty out; half precision stays finite", "empty")
def _(device):
    layer = G.AffineCoupling(4, 8, cond_dim=2).to(device)
    y, logdet = layer(
        torch.zeros(0, 4, device=device), torch.zeros(0, 2, device=device)
    )
    assert y.shape == (0, 4) and logdet.shape == (0,)
    half = layer.to(torch.bfloat16)
    y, logdet = half(
        torch.randn(3, 4, device=device, dtype=torch.bfloat16),
        torch.randn(3, 2, device=device, dtype=torch.bfloat16),
    )
    assert logdet.dtype == torch.bfloat16
    finite(y, logdet)


@case(FLOW, "inverse of forward and summed logdet, leading dims (2, 3)", "value")
def _(device):
    flow = random_flow(4, 3, 8, cond_dim=1, device=device, dtype=F64)
    x = torch.randn(2, 3, 4, dtype=F64, device=device)
    c = torch.randn(2, 3, 1, dtype=F64, device=device)
    z, logdet = flow(x, c)
    assert logdet.shape == (2, 3)
    back, back_logdet = flow.inverse(z, c)
    close(back, x, atol=1e-13)
    close(back_logdet, -logdet, atol=1e-13)
    ref = -0.5 * z.square().sum(-1) - 2 * math.log(2 * math.pi) + logdet
    close(flow.log_prob(x, c), ref, atol=1e-13)


@case(FLOW, "gradient reaches the parameters and x; empty samples", "grad")
def _(device):
    flow = random_flow(3, 2, 4, device=device)
    x = torch.randn(5, 3, device=device, requires_grad=True)
    flow.log_prob(x).sum().backward()
    finite(x.grad, *(p.grad for p in flow.parameters()))
    assert flow.sample(0).shape == (0, 3)
    assert flow.sample(2, generator=torch.Generator(device)).device.type == device.type


@case(VAE, "Gaussian reconstruction and KL against float64 formulas", "value")
def _(device):
    enc, dec = pair(device, dtype=F64)
    x = torch.randn(3, 4, dtype=F64, device=device)
    rec, kl = G.vae_loss(
        x, enc, dec, sigma=0.5, generator=torch.Generator(device).manual_seed(0)
    )
    mean, log_var = enc(x)
    u = torch.randn(
        3, 2, generator=torch.Generator(device).manual_seed(0), dtype=F64, device=device
    )
    err = (x - dec(mean + (0.5 * log_var).exp() * u)).square().sum(-1)
    ref = 2 * err + 4 * math.log(0.5) + 2 * math.log(2 * math.pi)
    close(rec, ref.detach(), atol=1e-12)
    ref_kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)
    close(kl, ref_kl.detach(), atol=1e-12)


@case(VAE, "empty batch in, empty terms out", "empty")
def _(device):
    rec, kl = G.vae_loss(torch.zeros(0, 4, device=device), *pair(device))
    assert rec.shape == kl.shape == (0,)


@case(FVAE, "a trainable sigma and a flow get finite gradients; empty batch", "grad")
def _(device):
    enc, dec = pair(device)
    flow = random_flow(2, 3, 4, device=device)
    log_sigma = torch.zeros((), device=device, requires_grad=True)
    x = torch.rand(6, 4, device=device)
    rec, kl = G.fvae_loss(x, enc, flow, dec, sigma=log_sigma.exp())
    (rec + kl).sum().backward()
    finite(log_sigma.grad, *(p.grad for p in flow.parameters()))
    rec, kl = G.fvae_loss(torch.zeros(0, 4, device=device), enc, flow, dec)
    assert rec.shape == kl.shape == (0,)


@case(FVAE, "identity flow: one-sample KL is the Gaussian KL at u = 0", "value")
def _(device):
    enc, dec = pair(device, dtype=F64)
    x = torch.rand(3, 4, dtype=F64, device=device)
    mean, log_var = enc(x)

    def fixed(v):  # zero variance in the limit is not allowed; use log_var = 0
        return mean, torch.zeros_like(log_var)

    _, kl = G.fvae_loss(x, fixed, None, dec, generator=torch.Generator(device))
    # with log_var = 0, kl = ½(|mean + u|² − |u|²), whose mean is ½|mean|²
    assert kl.shape == (3,)
    finite(kl)
    u = torch.randn(3, 2, generator=torch.Generator(device), dtype=F64, device=device)
    ref = 0.5 * ((mean + u).square() - u.square()).sum(-1)
    close(kl, ref.detach(), atol=1e-12)
