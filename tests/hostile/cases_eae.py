"""Hostile inputs for the entropic autoencoder (``kexue.generative.eae``).

References are float64 formulas written here: the unit-ball volume
``π^{d/2} / Γ(d/2 + 1)`` and the Kozachenko–Leonenko estimate by a double loop over pairs.
"""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.generative as G

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
BALL, KNN = "generative.log_unit_ball_volume", "generative.knn_entropy"
EAE, LOSS = "generative.EntropicAutoencoder", "generative.eae_loss"


def knn64(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    x = x.detach().double().cpu()
    n, d = x.shape
    logs = []
    for i in range(n):
        dists = sorted(float((x[i] - x[j]).norm()) for j in range(n) if j != i)
        logs.append(math.log(dists[k - 1]))
    ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    return torch.tensor(
        d * sum(logs) / n + ball + sum(1 / m for m in range(k, n)), dtype=F64
    )


def ones(*shape, device, dtype=torch.float32):
    return torch.ones(*shape, device=device, dtype=dtype)


for what, kind, names, call in (
    ("dim 0", ValueError, "dim", lambda d: G.log_unit_ball_volume(0)),
    ("dim 2.0", TypeError, "dim", lambda d: G.log_unit_ball_volume(2.0)),
    ("dim True", TypeError, "dim", lambda d: G.log_unit_ball_volume(True)),
):
    error(BALL, what, kind, names, call)

for what, kind, names, call in (
    ("x a list", TypeError, "x", lambda d: G.knn_entropy([[0.0, 1.0], [1.0, 0.0]])),
    ("x integer", TypeError, "x", lambda d: G.knn_entropy(ones(4, 2, device=d, dtype=torch.long))),
    ("x of rank 1", ValueError, "x", lambda d: G.knn_entropy(ones(5, device=d))),
    ("x with no features", ValueError, "x", lambda d: G.knn_entropy(ones(5, 0, device=d))),
    ("n = k samples", ValueError, "k", lambda d: G.knn_entropy(torch.randn(3, 2, device=d), 3)),
    ("k 0", ValueError, "k", lambda d: G.knn_entropy(torch.randn(3, 2, device=d), 0)),
    ("k 1.5", TypeError, "k", lambda d: G.knn_entropy(torch.randn(3, 2, device=d), 1.5)),
    ("chunk 0", ValueError, "chunk", lambda d: G.knn_entropy(torch.randn(3, 2, device=d), chunk=0)),
):  # fmt: skip
    error(KNN, what, kind, names, call)

for what, kind, names, call in (
    ("latent_dim 0", ValueError, "latent_dim", lambda d: G.EntropicAutoencoder(4, 0)),
    ("bounded 1", TypeError, "bounded", lambda d: G.EntropicAutoencoder(4, 2, bounded=1)),
    ("momentum 2", ValueError, "momentum", lambda d: G.EntropicAutoencoder(4, 2, momentum=2.0)),
    ("one row in training mode", ValueError, "x", lambda d: G.EntropicAutoencoder(4, 2).to(d)(torch.ones(1, 4, device=d))),
    ("x with 3 features for 4", ValueError, "x", lambda d: G.EntropicAutoencoder(4, 2).to(d)(torch.ones(5, 3, device=d))),
    ("code with 3 features for 2", ValueError, "code", lambda d: G.EntropicAutoencoder(4, 2).to(d).decode(torch.ones(5, 3, device=d))),
    ("sample count -1", ValueError, "count", lambda d: G.EntropicAutoencoder(4, 2).sample(-1)),
    ("sample generator a seed", TypeError, "generator", lambda d: G.EntropicAutoencoder(4, 2).sample(2, generator=0)),
):  # fmt: skip
    error(EAE, what, kind, names, call)

for what, kind, names, call in (
    ("reconstruction of another shape", ValueError, "reconstruction", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 2, device=d), ones(4, 2, device=d), weight=1.0)),
    ("code of rank 1", ValueError, "code", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(4, device=d), weight=1.0)),
    ("code of another batch", ValueError, "code", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(5, 2, device=d), weight=1.0)),
    ("one code row for k = 1", ValueError, "code", lambda d: G.eae_loss(ones(1, 3, device=d), ones(1, 3, device=d), ones(1, 2, device=d), weight=1.0)),
    ("no examples", ValueError, "x", lambda d: G.eae_loss(ones(0, 3, device=d), ones(0, 3, device=d), ones(0, 2, device=d), weight=0.0)),
    ("weight -1", ValueError, "weight", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(4, 2, device=d), weight=-1.0)),
    ("weight a tensor", TypeError, "weight", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(4, 2, device=d), weight=torch.tensor(1.0))),
    ("weight NaN", ValueError, "weight", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(4, 2, device=d), weight=math.nan)),
    ("reconstruction float64 for float32", TypeError, "reconstruction", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d, dtype=F64), ones(4, 2, device=d), weight=1.0)),
    ("code integer", TypeError, "code", lambda d: G.eae_loss(ones(4, 3, device=d), ones(4, 3, device=d), ones(4, 2, device=d, dtype=torch.long), weight=1.0)),
):  # fmt: skip
    error(LOSS, what, kind, names, call)


@case(BALL, "d = 1..12 against the Gamma formula; finite for d = 10^6", "value")
def _(device):
    for d in range(1, 13):
        assert (
            abs(
                G.log_unit_ball_volume(d)
                - math.log(math.pi ** (d / 2) / math.gamma(d / 2 + 1))
            )
            < 1e-13
        )
    assert math.isfinite(G.log_unit_ball_volume(10**6))  # the volume itself underflows


@case(KNN, "k = 1, 2 in float64 against a double loop; a strided view", "value")
def _(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=F64).to(device)
    for k in (1, 2):
        close(G.knn_entropy(x, k, chunk=7), knn64(x, k), atol=1e-12)
    view = odd_view(30, 2, device=device, dtype=F64)[::2]
    close(G.knn_entropy(view), knn64(view), atol=1e-12)


@case(KNN, "float16 computed in float32; points at 1e3 with gaps of 1e-2", "finite")
def _(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, generator=g, dtype=F64)
    out = G.knn_entropy(x.to(device, torch.float16))
    assert out.dtype == torch.float16
    close(out, knn64(x.half()), atol=2e-2)
    far = 1e3 + 1e-2 * x  # the |a|² + |b|² − 2ab expansion would cancel here
    close(G.knn_entropy(far.to(device)), knn64(far.float()), atol=1e-3)


@case(KNN, "empty batch in, empty out; meta propagates the shape", "empty")
def _(device):
    assert G.knn_entropy(torch.zeros(0, 5, 2, device=device)).shape == (0,)
    assert G.knn_entropy(torch.zeros(3, 0, 5, 2, device=device)).shape == (3, 0)
    assert G.knn_entropy(torch.zeros(2, 6, 3, device=META)).shape == (2,)


@case(KNN, "coincident points: -inf, a finite gradient", "grad")
def _(device):
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1.0]], device=device)
    x.requires_grad_()
    out = G.knn_entropy(x)
    assert out.item() == -math.inf
    out.backward()
    finite(x.grad)


@case(EAE, "codes on the device, batch mean 0 in training, gradients reach x", "grad")
def _(device):
    torch.manual_seed(0)
    model = G.EntropicAutoencoder(5, 2, hidden=8, bounded=True).to(device)
    x = torch.rand(16, 5, device=device, requires_grad=True)
    reconstruction, code = model(x)
    assert code.device.type == device.type and reconstruction.shape == (16, 5)
    assert code.mean(0).abs().max() < 1e-5
    reconstruction.sum().backward()
    finite(x.grad)


@case(EAE, "empty batch in, empty out, running averages untouched", "empty")
def _(device):
    model = G.EntropicAutoencoder(5, 2, hidden=8).to(device)
    reconstruction, code = model(torch.zeros(0, 5, device=device))
    assert reconstruction.shape == (0, 5) and code.shape == (0, 2)
    assert model.norm.num_batches_tracked.item() == 0
    assert model.sample(0).shape == (0, 5)


@case(
    EAE, "a CPU generator for a model elsewhere is a named error", "device", cuda=True
)
def _(device):
    model = G.EntropicAutoencoder(5, 2, hidden=8).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    assert model.sample(3, generator=g).device.type == device.type
    if device.type != "cpu":
        from hostile import expect_error

        cpu = torch.Generator().manual_seed(0)
        expect_error(ValueError, "generator", lambda: model.sample(2, generator=cpu))


@case(LOSS, "float64 against the formula; float16 computed in float32", "value")
def _(device):
    g = torch.Generator().manual_seed(2)
    x, r = (torch.rand(12, 4, generator=g, dtype=F64).to(device) for _ in range(2))
    code = torch.randn(12, 3, generator=g, dtype=F64).to(device)
    ref = (x - r).square().sum(-1).mean().cpu() - 0.5 * knn64(code)
    close(G.eae_loss(x, r, code, weight=0.5), ref, atol=1e-12)
    half = G.eae_loss(x.half(), r.half(), code.half(), weight=0.5)
    assert half.dtype == torch.float16
    close(half, ref, atol=2e-2)
