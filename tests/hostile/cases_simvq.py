"""Hostile inputs for vector quantisation with a codebook map
(``kexue.generative.simvq``).

References are float64 formulas written here: the nearest code by a loop over codes,
the rotation ``G = (‖q‖/‖z‖)(I + 2 q̂ ẑᵀ − 2 w wᵀ)`` built as a matrix, and code counts.
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
NEAR, ROT = "generative.nearest_code", "generative.rotation_trick"
USAGE, VQ = "generative.codebook_usage", "generative.VectorQuantizer"


def nearest64(z, codebook):
    z, codebook = z.detach().double().cpu(), codebook.detach().double().cpu()
    rows = z.reshape(-1, z.shape[-1])
    out = [int(((codebook - row) ** 2).sum(-1).argmin()) for row in rows]
    return torch.tensor(out).reshape(z.shape[:-1])


def ones(*shape, device, dtype=torch.float32):
    return torch.ones(*shape, device=device, dtype=dtype)


for what, kind, names, call in (
    ("z a list", TypeError, "z", lambda d: G.nearest_code([[0.0, 1.0]], ones(3, 2, device=d))),
    ("z integer", TypeError, "z", lambda d: G.nearest_code(ones(4, 2, device=d, dtype=torch.long), ones(3, 2, device=d))),
    ("z of rank 0", ValueError, "z", lambda d: G.nearest_code(torch.tensor(1.0, device=d), ones(3, 1, device=d))),
    ("codebook of rank 3", ValueError, "codebook", lambda d: G.nearest_code(ones(4, 2, device=d), ones(1, 3, 2, device=d))),
    ("codebook with no code", ValueError, "codebook", lambda d: G.nearest_code(ones(4, 2, device=d), ones(0, 2, device=d))),
    ("codebook of another width", ValueError, "codebook", lambda d: G.nearest_code(ones(4, 2, device=d), ones(3, 5, device=d))),
    ("codebook float64 for float32", TypeError, "codebook", lambda d: G.nearest_code(ones(4, 2, device=d), ones(3, 2, device=d, dtype=F64))),
    ("chunk 0", ValueError, "chunk", lambda d: G.nearest_code(ones(4, 2, device=d), ones(3, 2, device=d), chunk=0)),
    ("chunk 2.0", TypeError, "chunk", lambda d: G.nearest_code(ones(4, 2, device=d), ones(3, 2, device=d), chunk=2.0)),
    ("codebook on meta", ValueError, "codebook", lambda d: G.nearest_code(ones(4, 2, device=d), ones(3, 2, device=META))),
):  # fmt: skip
    error(NEAR, what, kind, names, call)

for what, kind, names, call in (
    ("z a list", TypeError, "z", lambda d: G.rotation_trick([1.0, 2.0], ones(2, device=d))),
    ("z_q integer", TypeError, "z_q", lambda d: G.rotation_trick(ones(3, 2, device=d), ones(3, 2, device=d, dtype=torch.long))),
    ("z_q of another shape", ValueError, "z_q", lambda d: G.rotation_trick(ones(3, 2, device=d), ones(3, 1, device=d))),
    ("z_q broadcastable but not equal", ValueError, "z_q", lambda d: G.rotation_trick(ones(3, 2, device=d), ones(1, 2, device=d))),
    ("z_q float64 for float32", TypeError, "z_q", lambda d: G.rotation_trick(ones(3, 2, device=d), ones(3, 2, device=d, dtype=F64))),
    ("z of rank 0", ValueError, "z", lambda d: G.rotation_trick(torch.tensor(1.0, device=d), torch.tensor(1.0, device=d))),
):  # fmt: skip
    error(ROT, what, kind, names, call)

for what, kind, names, call in (
    ("indices floating", TypeError, "indices", lambda d: G.codebook_usage(ones(4, device=d), 4)),
    ("indices bool", TypeError, "indices", lambda d: G.codebook_usage(torch.ones(4, dtype=torch.bool, device=d), 4)),
    ("no indices", ValueError, "indices", lambda d: G.codebook_usage(torch.zeros(0, dtype=torch.long, device=d), 4)),
    ("index = num_codes", ValueError, "indices", lambda d: G.codebook_usage(torch.tensor([0, 4], device=d), 4)),
    ("index -1", ValueError, "indices", lambda d: G.codebook_usage(torch.tensor([-1, 2], device=d), 4)),
    ("num_codes 0", ValueError, "num_codes", lambda d: G.codebook_usage(torch.tensor([0], device=d), 0)),
    ("num_codes 4.0", TypeError, "num_codes", lambda d: G.codebook_usage(torch.tensor([0], device=d), 4.0)),
):  # fmt: skip
    error(USAGE, what, kind, names, call)

for what, kind, names, call in (
    ("num_codes 0", ValueError, "num_codes", lambda d: G.VectorQuantizer(0, 4)),
    ("dim 2.5", TypeError, "dim", lambda d: G.VectorQuantizer(8, 2.5)),
    ("transform 'affine'", ValueError, "transform", lambda d: G.VectorQuantizer(8, 4, transform="affine")),
    ("estimator 'gumbel'", ValueError, "estimator", lambda d: G.VectorQuantizer(8, 4, estimator="gumbel")),
    ("frozen codes without a transform", ValueError, "freeze_codes", lambda d: G.VectorQuantizer(8, 4, freeze_codes=True)),
    ("freeze_codes 1", TypeError, "freeze_codes", lambda d: G.VectorQuantizer(8, 4, transform="linear", freeze_codes=1)),
    ("beta -0.1", ValueError, "beta", lambda d: G.VectorQuantizer(8, 4, beta=-0.1)),
    ("init 'zeros'", ValueError, "init", lambda d: G.VectorQuantizer(8, 4, transform="linear", init="zeros")),
    ("init None", ValueError, "init", lambda d: G.VectorQuantizer(8, 4, init=None)),
    ("beta a tensor", TypeError, "beta", lambda d: G.VectorQuantizer(8, 4, beta=torch.tensor(0.25))),
    ("z with 3 features for 4", ValueError, "z", lambda d: G.VectorQuantizer(8, 4).to(d)(ones(5, 3, device=d))),
    ("z float64 for a float32 module", TypeError, "z", lambda d: G.VectorQuantizer(8, 4).to(d)(ones(5, 4, device=d, dtype=F64))),
    ("z integer", TypeError, "z", lambda d: G.VectorQuantizer(8, 4).to(d)(ones(5, 4, device=d, dtype=torch.long))),
    ("z on meta, module elsewhere", ValueError, "z", lambda d: G.VectorQuantizer(8, 4).to(d)(ones(5, 4, device=META))),
):  # fmt: skip
    error(VQ, what, kind, names, call)


@case(NEAR, "float64 against a loop; chunks of 3; a strided view; float16", "value")
def _(device):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 9, 3, generator=g, dtype=F64).to(device)
    codebook = torch.randn(17, 3, generator=g, dtype=F64).to(device)
    assert torch.equal(
        G.nearest_code(z, codebook, chunk=3).cpu(), nearest64(z, codebook)
    )
    view = odd_view(12, 6, device=device, dtype=F64)[:, ::2]
    assert torch.equal(G.nearest_code(view, codebook).cpu(), nearest64(view, codebook))
    half = G.nearest_code(z.half(), codebook.half())
    assert torch.equal(half.cpu(), nearest64(z.half(), codebook.half()))


@case(NEAR, "codes 1e-3 apart at 1e4 from the origin, float32", "finite")
def _(device):
    g = torch.Generator().manual_seed(1)
    codebook = 1e4 + 1e-3 * torch.randn(10, 4, generator=g, dtype=F64)
    z = 1e4 + 1e-3 * torch.randn(30, 4, generator=g, dtype=F64)
    out = G.nearest_code(z.float().to(device), codebook.float().to(device))
    assert torch.equal(out.cpu(), nearest64(z.float(), codebook.float()))


@case(NEAR, "9 copies of a code, 2 clusters at ±1e3, 45 codes: float64 argmin", "value")
def _(device):
    # copies beyond the re-ranked candidates must go to the lowest index; clusters
    # far on both sides of the mean code leave the expansion no certain ranking
    g = torch.Generator().manual_seed(3)
    codebook = torch.randn(45, 5, generator=g)
    codebook[torch.arange(9) * 5 + 2] = codebook[2].clone()
    z = codebook[2] + 1e-3 * torch.randn(20, 5, generator=g)
    out = G.nearest_code(z.to(device), codebook.to(device))
    assert (out.cpu() == 2).all()
    base = torch.full((5,), 1e3, dtype=F64)
    far = torch.cat([base + 1e-3 * codebook[:20], -base + 1e-3 * codebook[20:]]).float()
    z = torch.cat([base + 1e-3 * z[:10], -base + 1e-3 * z[10:]]).float()
    out = G.nearest_code(z.to(device), far.to(device), chunk=7)
    assert torch.equal(out.cpu(), nearest64(z, far))


@case(NEAR, "empty batch in, empty out; meta propagates the shape", "empty")
def _(device):
    codebook = torch.randn(5, 3, device=device)
    assert G.nearest_code(torch.zeros(0, 4, 3, device=device), codebook).shape == (0, 4)
    out = G.nearest_code(
        torch.zeros(2, 6, 3, device=META), torch.zeros(5, 3, device=META)
    )
    assert out.shape == (2, 6) and out.device.type == "meta"


@case(ROT, "value equals z_q; gradient G^T g against the matrix in float64", "value")
def _(device):
    g = torch.Generator().manual_seed(2)
    z, q, up = (torch.randn(5, 4, generator=g, dtype=F64) for _ in range(3))
    zz = z.to(device).requires_grad_()
    out = G.rotation_trick(zz, q.to(device))
    close(out, q, atol=1e-14)
    (out * up.to(device)).sum().backward()
    for i in range(5):
        zh, qh = z[i] / z[i].norm(), q[i] / q[i].norm()
        w = (zh + qh) / (zh + qh).norm()
        r = torch.eye(4, dtype=F64) + 2 * torch.outer(qh, zh) - 2 * torch.outer(w, w)
        close(zz.grad[i], q[i].norm() / z[i].norm() * r.T @ up[i], atol=1e-13)


@case(ROT, "zero z, zero z_q, opposite directions, float16: finite", "finite")
def _(device):
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 2.0], [3.0, -1.0]], device=device)
    q = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, -2.0], [2.0, 0.5]], device=device)
    z.requires_grad_()
    out = G.rotation_trick(z, q)
    out.sum().backward()
    finite(out, z.grad)
    close(out, q, atol=1e-6)
    half = G.rotation_trick(z.detach().half(), q.half())
    assert half.dtype == torch.float16
    close(half, q, atol=1e-3)


@case(ROT, "empty in, empty out; a strided view", "empty")
def _(device):
    empty = torch.zeros(0, 3, device=device)
    assert G.rotation_trick(empty, empty).shape == (0, 3)
    view = odd_view(8, 6, device=device, dtype=F64)[:, ::2]
    q = torch.randn(8, 3, device=device, dtype=F64)
    close(G.rotation_trick(view, q), q, atol=1e-14)


@case(USAGE, "fraction and perplexity against counts; indices of any shape", "value")
def _(device):
    idx = torch.tensor([[0, 0, 1], [3, 3, 3]], device=device)
    fraction, perplexity = G.codebook_usage(idx, 5)
    p = [2 / 6, 1 / 6, 3 / 6]
    assert fraction == 3 / 5
    assert abs(perplexity - math.exp(-sum(x * math.log(x) for x in p))) < 1e-12
    assert G.codebook_usage(torch.tensor([2], device=device), 3) == (1 / 3, 1.0)


@case(VQ, "output is the nearest code; loss against float64; grads reach z", "value")
def _(device):
    torch.manual_seed(3)
    for transform in ("none", "diagonal", "linear"):
        vq = G.VectorQuantizer(12, 3, transform=transform, beta=0.5).to(device, F64)
        z = torch.randn(7, 3, device=device, dtype=F64, requires_grad=True)
        out, idx, loss = vq(z)
        book = vq.codebook.detach().cpu()
        assert torch.equal(idx.cpu(), nearest64(z, book))
        chosen = book[nearest64(z, book)]
        close(out, chosen, atol=1e-15)
        ref = 1.5 * (chosen - z.detach().cpu()).square().mean()
        close(loss, ref, atol=1e-14)
        loss.backward()
        finite(z.grad)


@case(VQ, "float16 module and input: finite, float16 out", "finite")
def _(device):
    torch.manual_seed(4)
    vq = G.VectorQuantizer(16, 4, transform="linear", estimator="rotation")
    vq = vq.to(device).half()
    z = (100 * torch.randn(9, 4, device=device)).half().requires_grad_()
    out, _, loss = vq(z)
    assert out.dtype == loss.dtype == torch.float16
    loss.backward()
    finite(out, loss, z.grad)


@case(VQ, "empty batch: empty outputs, zero loss with zero gradient", "empty")
def _(device):
    vq = G.VectorQuantizer(8, 4, transform="diagonal").to(device)
    out, idx, loss = vq(torch.zeros(3, 0, 4, device=device))
    assert out.shape == (3, 0, 4) and idx.shape == (3, 0) and loss.item() == 0
    loss.backward()
    assert (vq.scale.grad == 0).all()


@case(VQ, "a meta module propagates shapes", "device")
def _(device):
    vq = G.VectorQuantizer(8, 4, transform="linear").to(META)
    out, idx, loss = vq(torch.zeros(2, 5, 4, device=META))
    assert out.shape == (2, 5, 4) and idx.shape == (2, 5) and loss.shape == ()
