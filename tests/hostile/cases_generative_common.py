"""Hostile inputs for the generative part's shared pieces (``kexue.generative.common``).

References are float64 formulas written here: the Bernoulli cross-entropy
``-(x log σ(l) + (1 - x) log σ(-l))`` and the Gaussian KL ``½ Σ (m² + e^v - 1 - v)``.
"""

from __future__ import annotations

import torch
from hostile import Registry, close, finite, odd_view

import kexue.generative as G

F64 = torch.float64
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
MLP, ENC, DEC = "generative.mlp", "generative.Encoder", "generative.Decoder"
NLL, KL = "generative.bernoulli_nll", "generative.gaussian_kl"


def nll64(logits, x):
    lg, x = logits.detach().double().cpu(), x.detach().double().cpu()
    return -(x * torch.nn.functional.logsigmoid(lg)).sum(-1) - (
        (1 - x) * torch.nn.functional.logsigmoid(-lg)
    ).sum(-1)


def kl64(m, v):
    m, v = m.detach().double().cpu(), v.detach().double().cpu()
    return 0.5 * (m.square() + v.exp() - 1 - v).sum(-1)


for what, kind, names, call in (
    ("in_dim 0", ValueError, "in_dim", lambda d: G.mlp(0, 2)),
    ("out_dim '2'", TypeError, "out_dim", lambda d: G.mlp(3, "2")),
    ("hidden True", TypeError, "hidden", lambda d: G.mlp(3, 2, hidden=True)),
    ("layers 0", ValueError, "layers", lambda d: G.mlp(3, 2, layers=0)),
):
    error(MLP, what, kind, names, call)

for what, kind, names, call in (
    ("latent_dim 0", ValueError, "latent_dim", lambda d: G.Encoder(4, 0)),
    ("heads 1.0", TypeError, "heads", lambda d: G.Encoder(4, 2, heads=1.0)),
    ("x with 3 features for 4", ValueError, "x", lambda d: G.Encoder(4, 2).to(d)(torch.ones(2, 3, device=d))),
    ("x integer", TypeError, "x", lambda d: G.Encoder(4, 2).to(d)(torch.ones(2, 4, dtype=torch.long, device=d))),
    ("x a list", TypeError, "x", lambda d: G.Encoder(4, 2)([[1.0] * 4])),
):  # fmt: skip
    error(ENC, what, kind, names, call)

for what, kind, names, call in (
    ("out_dim -1", ValueError, "out_dim", lambda d: G.Decoder(2, -1)),
    ("z of rank 0", ValueError, "z", lambda d: G.Decoder(2, 3).to(d)(torch.tensor(1.0, device=d))),
    ("z with 3 features for 2", ValueError, "z", lambda d: G.Decoder(2, 3).to(d)(torch.ones(3, device=d))),
):  # fmt: skip
    error(DEC, what, kind, names, call)

for what, kind, names, call in (
    ("x of another shape", ValueError, "shape", lambda d: G.bernoulli_nll(torch.zeros(2, 3, device=d), torch.zeros(2, 4, device=d))),
    ("x above 1", ValueError, "x", lambda d: G.bernoulli_nll(torch.zeros(2, device=d), torch.tensor([0.0, 2.0], device=d))),
    ("x NaN", ValueError, "x", lambda d: G.bernoulli_nll(torch.zeros(2, device=d), torch.tensor([0.0, float("nan")], device=d))),
    ("logits integer", TypeError, "logits", lambda d: G.bernoulli_nll(torch.zeros(2, dtype=torch.long, device=d), torch.zeros(2, device=d))),
    ("logits rank 0", ValueError, "logits", lambda d: G.bernoulli_nll(torch.tensor(0.0, device=d), torch.tensor(0.0, device=d))),
):  # fmt: skip
    error(NLL, what, kind, names, call)

for what, kind, names, call in (
    ("log_var of another shape", ValueError, "shape", lambda d: G.gaussian_kl(torch.zeros(2, 3, device=d), torch.zeros(3, device=d))),
    ("mean integer", TypeError, "mean", lambda d: G.gaussian_kl(torch.zeros(2, dtype=torch.long, device=d), torch.zeros(2, device=d))),
    ("log_var a list", TypeError, "log_var", lambda d: G.gaussian_kl(torch.zeros(2, device=d), [0.0, 0.0])),
):  # fmt: skip
    error(KL, what, kind, names, call)


@case(MLP, "no rows in, no rows out; a strided view", "empty")
def _(device):
    net = G.mlp(6, 2, hidden=4).to(device, F64)
    assert net(torch.zeros(0, 6, device=device, dtype=F64)).shape == (0, 2)
    x = odd_view(3, 6, device=device, dtype=F64)
    close(net(x), net(x.contiguous()), atol=0)


@case(ENC, "heads of the right shape on the device, gradients reach the input", "grad")
def _(device):
    torch.manual_seed(0)
    enc = G.Encoder(5, 3, heads=2, hidden=4).to(device)
    x = torch.randn(4, 5, device=device, requires_grad=True)
    mean, log_var = enc(x)
    assert mean.shape == log_var.shape == (4, 3) and mean.device.type == device.type
    (mean.sum() + log_var.sum()).backward()
    finite(x.grad)


@case(DEC, "empty batch in, empty batch out", "empty")
def _(device):
    out = G.Decoder(2, 5, hidden=3).to(device)(torch.zeros(0, 2, device=device))
    assert out.shape == (0, 5)


@case(NLL, "logits ±1e4 in float16: float32 inside, the exact value", "finite")
def _(device):
    logits = torch.tensor([[1e4, -1e4, 3.0]], device=device, dtype=torch.float16)
    x = torch.tensor([[1.0, 0.0, 0.5]], device=device, dtype=torch.float16)
    out = G.bernoulli_nll(logits, x)
    finite(out)
    close(out, nll64(logits, x), atol=2e-3)


@case(NLL, "grey levels in float64 against the formula; no rows", "value")
def _(device):
    g = torch.Generator().manual_seed(3)
    lg = (3 * torch.randn(4, 7, generator=g, dtype=F64)).to(device)
    x = torch.rand(4, 7, generator=g, dtype=F64).to(device)
    close(G.bernoulli_nll(lg, x), nll64(lg, x), atol=1e-12)
    empty = G.bernoulli_nll(
        torch.zeros(0, 7, device=device), torch.zeros(0, 7, device=device)
    )
    assert empty.shape == (0,)


@case(KL, "against the formula in float64, bfloat16 within its rounding", "value")
def _(device):
    g = torch.Generator().manual_seed(4)
    m = torch.randn(3, 5, generator=g, dtype=F64).to(device)
    v = torch.randn(3, 5, generator=g, dtype=F64).to(device)
    close(G.gaussian_kl(m, v), kl64(m, v), atol=1e-12)
    out = G.gaussian_kl(m.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    close(out, kl64(m.bfloat16(), v.bfloat16()), atol=0.1, rtol=1e-2)


@case(KL, "gradient at the prior is zero", "grad")
def _(device):
    m = torch.zeros(2, 3, device=device, requires_grad=True)
    v = torch.zeros(2, 3, device=device, requires_grad=True)
    G.gaussian_kl(m, v).sum().backward()
    assert torch.equal(m.grad, torch.zeros_like(m)) and torch.equal(
        v.grad, torch.zeros_like(v)
    )
