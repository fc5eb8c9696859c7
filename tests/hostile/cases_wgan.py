"""Hostile inputs for ``kexue.generative.wgan``.

References are float64 computations written here: the assignment cost by brute force over
permutations, the c-transform as a double loop, a linear critic's gradient penalty
``(‖w‖ − c)²`` and the critic difference ``mean f(real) − mean f(fake)``.
"""

from __future__ import annotations

import itertools

import torch
from hostile import Registry, close, finite, odd_view

import kexue.generative as G

F64 = torch.float64
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
W1, CT, GP = (
    "generative.exact_w1",
    "generative.c_transform",
    "generative.gradient_penalty",
)
EST, CRITIC, GAN = (
    "generative.wasserstein_critic_estimate",
    "generative.MLPCritic",
    "generative.WassersteinGAN",
)


def brute_w1(x, y):
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    cost = torch.cdist(x, y)
    n = len(x)
    best = min(
        sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n))
    )
    return float(best) / n


def pts(*shape, device, dtype=torch.float32):
    return torch.randn(*shape, device=device, dtype=dtype)


def lin(device, d=2):
    return torch.nn.Linear(d, 1).to(device)


for what, kind, names, call in (
    ("x a list", TypeError, "x", lambda d: G.exact_w1([[0.0, 1.0]], torch.zeros(1, 2, device=d))),
    ("y integer", TypeError, "y", lambda d: G.exact_w1(pts(3, 2, device=d), torch.zeros(3, 2, dtype=torch.long, device=d))),
    ("x of rank 1", ValueError, "x", lambda d: G.exact_w1(pts(3, device=d), pts(3, 2, device=d))),
    ("d differs", ValueError, "d", lambda d: G.exact_w1(pts(3, 2, device=d), pts(3, 4, device=d))),
    ("no points in y", ValueError, "m=0", lambda d: G.exact_w1(pts(3, 2, device=d), pts(0, 2, device=d))),
    ("dtypes differ", TypeError, "dtype", lambda d: G.exact_w1(pts(3, 2, device=d), pts(3, 2, device=d, dtype=F64))),
    ("NaN in x", ValueError, "finite", lambda d: G.exact_w1(torch.full((2, 2), float("nan"), device=d), pts(2, 2, device=d))),
    ("lcm past max_size", ValueError, "max_size", lambda d: G.exact_w1(pts(7, 2, device=d), pts(11, 2, device=d), max_size=70)),
    ("max_size 2.0", TypeError, "max_size", lambda d: G.exact_w1(pts(2, 2, device=d), pts(2, 2, device=d), max_size=2.0)),
):  # fmt: skip
    error(W1, what, kind, names, call)

for what, kind, names, call in (
    ("values integer", TypeError, "values", lambda d: G.c_transform(torch.zeros(3, dtype=torch.long, device=d), torch.zeros(3, 2, device=d))),
    ("cost of the wrong shape", ValueError, "cost", lambda d: G.c_transform(torch.zeros(3, device=d), torch.zeros(4, 2, device=d))),
    ("no support points", ValueError, "values", lambda d: G.c_transform(torch.zeros(0, device=d), torch.zeros(0, 2, device=d))),
    ("cost a list", TypeError, "cost", lambda d: G.c_transform(torch.zeros(2, device=d), [[0.0], [1.0]])),
):  # fmt: skip
    error(CT, what, kind, names, call)

for what, kind, names, call in (
    ("shapes differ", ValueError, "shape", lambda d: G.gradient_penalty(lin(d), pts(3, 2, device=d), pts(4, 2, device=d))),
    ("negative center", ValueError, "center", lambda d: G.gradient_penalty(lin(d), pts(3, 2, device=d), pts(3, 2, device=d), center=-1.0)),
    ("center a string", TypeError, "center", lambda d: G.gradient_penalty(lin(d), pts(3, 2, device=d), pts(3, 2, device=d), center="1")),
    ("critic not callable", TypeError, "critic", lambda d: G.gradient_penalty(3, pts(3, 2, device=d), pts(3, 2, device=d))),
    ("critic output (n, 2)", ValueError, "critic", lambda d: G.gradient_penalty(torch.nn.Linear(2, 2).to(d), pts(3, 2, device=d), pts(3, 2, device=d))),
    ("generator an int", TypeError, "generator", lambda d: G.gradient_penalty(lin(d), pts(3, 2, device=d), pts(3, 2, device=d), generator=1)),
):  # fmt: skip
    error(GP, what, kind, names, call)

for what, kind, names, call in (
    ("unknown method", ValueError, "method", lambda d: G.wasserstein_critic_estimate(lin(d), pts(3, 2, device=d), pts(3, 2, device=d), method="kr")),
    ("empty fake", ValueError, "fake", lambda d: G.wasserstein_critic_estimate(lin(d), pts(3, 2, device=d), pts(0, 2, device=d))),
    ("sample shapes differ", ValueError, "real", lambda d: G.wasserstein_critic_estimate(lin(d), pts(3, 2, device=d), pts(3, 3, device=d))),
    ("fake integer", TypeError, "fake", lambda d: G.wasserstein_critic_estimate(lin(d), pts(3, 2, device=d), torch.zeros(3, 2, dtype=torch.long, device=d))),
    ("critic returns a list", TypeError, "critic", lambda d: G.wasserstein_critic_estimate(lambda x: [0.0], pts(3, 2, device=d), pts(3, 2, device=d))),
):  # fmt: skip
    error(EST, what, kind, names, call)

for what, kind, names, call in (
    ("in_dim 0", ValueError, "in_dim", lambda d: G.MLPCritic(0)),
    ("hidden 2.5", TypeError, "hidden", lambda d: G.MLPCritic(2, hidden=2.5)),
    ("x with 3 features for 2", ValueError, "x", lambda d: G.MLPCritic(2).to(d)(pts(4, 3, device=d))),
    ("x integer", TypeError, "x", lambda d: G.MLPCritic(2).to(d)(torch.zeros(4, 2, dtype=torch.long, device=d))),
):  # fmt: skip
    error(CRITIC, what, kind, names, call)

for what, kind, names, call in (
    ("unknown method", ValueError, "method", lambda d: G.WassersteinGAN(G.mlp(2, 2), G.MLPCritic(2), 2, method="wgan")),
    ("generator a function", TypeError, "generator", lambda d: G.WassersteinGAN(lambda z: z, G.MLPCritic(2), 2)),
    ("critic None for gradient-penalty", TypeError, "critic", lambda d: G.WassersteinGAN(G.mlp(2, 2), None, 2)),
    ("critic_steps 0", ValueError, "critic_steps", lambda d: G.WassersteinGAN(G.mlp(2, 2), G.MLPCritic(2), 2, critic_steps=0)),
    ("negative penalty", ValueError, "penalty", lambda d: G.WassersteinGAN(G.mlp(2, 2), G.MLPCritic(2), 2, penalty=-1.0)),
    ("real integer", TypeError, "real", lambda d: G.WassersteinGAN(G.mlp(2, 2), G.MLPCritic(2), 2).to(d).loss(torch.zeros(4, 2, dtype=torch.long, device=d))),
):  # fmt: skip
    error(GAN, what, kind, names, call)


@case(W1, "equal sizes against brute force over permutations, float64", "value")
def _(device):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g)
    out = G.exact_w1(x.to(device), y.double().to(device))
    close(out, torch.tensor(brute_w1(x, y), dtype=F64), atol=1e-12)


@case(W1, "float16 computed in float32, returned in float16; strided views", "finite")
def _(device):
    x = odd_view(6, 2, device=device, dtype=F64)
    y = torch.randn(6, 4, device=device, dtype=F64)[:, ::2]  # a non-contiguous view
    ref = torch.tensor(brute_w1(x, y), dtype=F64)
    close(G.exact_w1(x, y), ref, atol=1e-12)
    half = G.exact_w1(x.half() * 1e3, y.half() * 1e3)  # distances ~1e3 in float16
    assert half.dtype == torch.float16
    finite(half)
    close(half / 1e3, ref, atol=0, rtol=5e-3)


@case(W1, "an empty batch of pairs gives an empty result", "empty")
def _(device):
    out = G.exact_w1(pts(0, 4, 2, device=device), pts(0, 4, 2, device=device))
    assert out.shape == (0,)


@case(W1, "gradient at coincident points is 0, not NaN", "grad")
def _(device):
    x = torch.zeros(3, 2, device=device, requires_grad=True)
    G.exact_w1(x, torch.zeros(3, 2, device=device)).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@case(W1, "y on the meta device: a named error", "device", cuda=False)
def _(device):
    from hostile import expect_error

    expect_error(
        ValueError, "device", lambda: G.exact_w1(pts(2, 2, device=device), torch.zeros(2, 2, device="meta"))
    )  # fmt: skip


@case(CT, "against a double loop in float64; m = 0 gives an empty result", "value")
def _(device):
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(4, generator=g, dtype=F64)
    cost = torch.rand(4, 3, generator=g, dtype=F64)
    loop = torch.tensor([min(cost[i, j] - phi[i] for i in range(4)) for j in range(3)])
    close(G.c_transform(phi.to(device), cost.to(device)), loop.double(), atol=0)
    empty = G.c_transform(phi.to(device), torch.zeros(4, 0, dtype=F64, device=device))
    assert empty.shape == (0,)


@case(CT, "bfloat16 in, bfloat16 out, within its rounding", "finite")
def _(device):
    phi = torch.tensor([300.0, -200.0], device=device, dtype=torch.bfloat16)
    cost = torch.tensor([[1.0, 500.0], [2.0, 3.0]], device=device, dtype=torch.bfloat16)
    out = G.c_transform(phi, cost)
    assert out.dtype == torch.bfloat16
    close(out, torch.tensor([-299.0, 200.0], dtype=F64), atol=2.0)


@case(GP, "linear critic: exactly (|w| - c)^2, gradient reaches the weights", "grad")
def _(device):
    critic = torch.nn.Linear(3, 1).to(device, F64)
    out = G.gradient_penalty(critic, pts(5, 3, device=device, dtype=F64), pts(5, 3, device=device, dtype=F64), center=0.5)  # fmt: skip
    close(
        out,
        torch.tensor((critic.weight.norm().item() - 0.5) ** 2, dtype=F64),
        atol=1e-14,
    )
    out.backward()
    finite(critic.weight.grad)


@case(GP, "an empty batch gives 0, still attached to the graph", "empty")
def _(device):
    critic = G.MLPCritic(2, hidden=4).to(device)
    out = G.gradient_penalty(critic, pts(0, 2, device=device), pts(0, 2, device=device))
    assert out.item() == 0 and out.requires_grad


@case(EST, "difference against the formula; c-transform below exact W1", "value")
def _(device):
    critic = G.MLPCritic(2, hidden=4).to(device, F64)
    real, fake = (
        pts(6, 2, device=device, dtype=F64),
        pts(4, 2, device=device, dtype=F64),
    )
    diff = G.wasserstein_critic_estimate(critic, real, fake)
    close(diff, (critic(real).mean() - critic(fake).mean()).detach(), atol=1e-14)
    bound = G.wasserstein_critic_estimate(critic, real, fake, method="c-transform")
    assert bound.item() <= G.exact_w1(real, fake).item() + 1e-12


@case(EST, "on the device; gradients reach the fake batch", "grad")
def _(device):
    critic = G.MLPCritic(2, hidden=4).to(device)
    fake = pts(5, 2, device=device).requires_grad_(True)
    out = G.wasserstein_critic_estimate(critic, pts(5, 2, device=device), fake, method="c-transform")  # fmt: skip
    out.backward()
    assert out.device.type == device.type
    finite(fake.grad)


@case(CRITIC, "no rows in, no rows out; leading dims kept", "empty")
def _(device):
    critic = G.MLPCritic(3, hidden=4).to(device)
    assert critic(pts(0, 3, device=device)).shape == (0,)
    assert critic(pts(2, 5, 3, device=device)).shape == (2, 5)


@case(GAN, "alternates: critic steps leave the generator's gradient empty", "grad")
def _(device):
    torch.manual_seed(0)
    gan = G.WassersteinGAN(G.mlp(2, 2, hidden=4), G.MLPCritic(2, hidden=4), 2, critic_steps=1).to(device)  # fmt: skip
    real = pts(8, 2, device=device)
    gan.loss(real).backward()  # a critic step
    assert all(p.grad is None for p in gan.generator.parameters())
    gan.zero_grad(set_to_none=True)
    gan.loss(real).backward()  # a generator step
    assert all(p.grad is None for p in gan.critic.parameters())
    finite(*[p.grad for p in gan.generator.parameters()])


@case(GAN, "sample(0) is empty; exact method needs no critic", "empty")
def _(device):
    gan = G.WassersteinGAN(G.mlp(2, 2, hidden=4), None, 2, method="exact").to(device)
    assert gan.sample(0).shape == (0, 2)
    finite(gan.loss(pts(4, 2, device=device)))
