"""kexue.generative.wgan against POT's exact transport (``ot.emd2``, ``ot.emd`` duals),
scipy's ``linear_sum_assignment``, brute force over permutations, and closed forms
(a linear critic's gradient penalty)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from kexue.generative import (
    MLPCritic,
    WassersteinGAN,
    c_transform,
    exact_w1,
    gradient_penalty,
    mlp,
    wasserstein_critic_estimate,
)
from kexue.training import train

F64 = torch.float64


def pot_w1(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.detach().double().cpu().numpy(), y.detach().double().cpu().numpy()
    cost = ot.dist(x, y, metric="euclidean")
    return float(
        ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost)
    )


@pytest.mark.parametrize(("n", "m", "d"), [(16, 16, 2), (12, 8, 3), (7, 5, 784)])
def test_exact_w1_matches_pot(device: torch.device, n: int, m: int, d: int) -> None:
    g = torch.Generator().manual_seed(n * m)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randn(m, d, generator=g, dtype=F64) + 0.5
    out = exact_w1(x.to(device), y.to(device))
    assert out.dtype == F64 and out.shape == ()
    assert abs(out.item() - pot_w1(x, y)) < 1e-12


def test_exact_w1_matches_scipy_and_brute_force() -> None:
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(6, 2, generator=g, dtype=F64), torch.rand(6, 2, generator=g)
    y = y.double()
    cost = torch.cdist(x, y).numpy()
    r, c = linear_sum_assignment(cost)
    brute = min(
        sum(cost[i, p[i]] for i in range(6)) / 6
        for p in itertools.permutations(range(6))
    )
    out = exact_w1(x, y).item()
    assert abs(out - cost[r, c].mean()) < 1e-14 and abs(out - brute) < 1e-14


def test_exact_w1_batched_half_and_grad(device: torch.device) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 10, 4, generator=g, dtype=F64).to(device)
    y = torch.randn(3, 10, 4, generator=g, dtype=F64).to(device)
    out = exact_w1(x, y)
    ref = [pot_w1(x[i], y[i]) for i in range(3)]
    torch.testing.assert_close(
        out.cpu(), torch.tensor(ref, dtype=F64), atol=1e-12, rtol=0
    )
    half = exact_w1(x.half(), y.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double().cpu(), out.cpu(), atol=0, rtol=5e-3)
    # gradient of the matched distances: the unit vectors (x_i - y_σ(i)) / (n |.|)
    xg = x[0].clone().requires_grad_(True)
    exact_w1(xg, y[0]).backward()
    assert torch.allclose(
        xg.grad.norm(dim=-1), torch.full((10,), 0.1, dtype=F64, device=device)
    )


def test_exact_w1_identical_sets_is_zero_with_zero_grad() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    out = exact_w1(x, x.detach()[torch.randperm(5)])
    out.backward()
    assert out.item() == 0 and torch.equal(x.grad, torch.zeros_like(x))


def test_exact_w1_size_limit() -> None:
    with pytest.raises(ValueError, match="max_size"):
        exact_w1(torch.zeros(7, 2), torch.zeros(11, 2), max_size=50)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    shift=st.floats(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_exact_w1_metric_properties(n: int, m: int, shift: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 2, generator=g, dtype=F64), torch.randn(m, 2, generator=g)
    y = y.double()
    z = torch.randn(3, 2, generator=g, dtype=F64)
    xy, yx = exact_w1(x, y).item(), exact_w1(y, x).item()
    assert abs(xy - yx) < 1e-12  # symmetric
    assert xy <= exact_w1(x, z).item() + exact_w1(z, y).item() + 1e-12  # triangle
    # translating one cloud by t moves W1 by at most |t|; both: no change
    t = torch.tensor([shift, 0.0], dtype=F64)
    assert abs(exact_w1(x + t, y + t).item() - xy) < 1e-12
    assert exact_w1(x + t, y).item() <= xy + abs(shift) + 1e-12
    assert abs(xy - pot_w1(x, y)) < 1e-12


def test_c_transform_against_loops_and_pot_duals(device: torch.device) -> None:
    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(8, 3, generator=g, dtype=F64), torch.rand(5, 3, generator=g)
    y = y.double()
    phi = torch.randn(8, generator=g, dtype=F64)
    cost = torch.cdist(x, y)
    out = c_transform(phi.to(device), cost.to(device)).cpu()
    loop = torch.tensor(
        [min(cost[i, j].item() - phi[i].item() for i in range(8)) for j in range(5)],
        dtype=F64,
    )
    assert torch.equal(out, loop)
    # dual feasibility for any phi; equality for POT's optimal potential
    assert bool((phi[:, None] + out[None] <= cost + 1e-15).all())
    a, b = np.full(8, 1 / 8), np.full(5, 1 / 5)
    u = ot.emd(a, b, cost.numpy(), log=True)[1]["u"]
    bound = u.mean() + c_transform(torch.as_tensor(u), cost).mean().item()
    assert abs(bound - pot_w1(x, y)) < 1e-12


def test_c_transform_batched_and_half() -> None:
    values = torch.randn(2, 4, 3)
    cost = torch.rand(2, 4, 3, 6)
    out = c_transform(values, cost)
    ref = (cost.double() - values.double()[..., None]).amin(-2)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)
    half = c_transform(values.half(), cost.half())
    assert half.dtype == torch.float16 and half.shape == (2, 4, 6)


def test_critic_estimates(device: torch.device) -> None:
    torch.manual_seed(3)
    critic = MLPCritic(2, hidden=8).to(device, F64)
    real = torch.randn(12, 2, device=device, dtype=F64)
    fake = torch.randn(9, 2, device=device, dtype=F64) + 1
    diff = wasserstein_critic_estimate(critic, real, fake)
    ref = critic(real).mean() - critic(fake).mean()
    assert abs(diff.item() - ref.item()) < 1e-14
    bound = wasserstein_critic_estimate(critic, real, fake, method="c-transform")
    assert bound.item() <= exact_w1(real, fake).item() + 1e-12
    # a critic that returns (n, 1) is accepted
    column = torch.nn.Linear(2, 1).to(device, F64)
    two = wasserstein_critic_estimate(column, real, fake)
    assert abs(two.item() - (column(real).mean() - column(fake).mean()).item()) < 1e-14


def test_c_transform_estimate_reaches_w1_when_trained() -> None:
    """Free values on the real batch, trained to maximise the c-transform bound,
    reach the exact W1 (the bound is tight at the optimum)."""
    torch.manual_seed(0)
    real, fake = torch.randn(10, 2, dtype=F64), torch.randn(10, 2, dtype=F64) + 2
    table = torch.nn.Embedding(10, 1).double()
    index = torch.arange(10)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return table(index[: len(x)]).squeeze(-1)  # values attached to real points

    def loss(model: torch.nn.Module) -> torch.Tensor:
        return -wasserstein_critic_estimate(critic, real, fake, method="c-transform")

    train(table, loss, 600, lr=0.05)
    final = wasserstein_critic_estimate(critic, real, fake, method="c-transform")
    gap = exact_w1(real, fake).item() - final.item()
    assert 0 <= gap < 5e-3  # a lower bound, within Adam's last oscillation (1.7e-3)


@pytest.mark.parametrize("center", [0.0, 1.0, 2.0])
def test_gradient_penalty_linear_critic(device: torch.device, center: float) -> None:
    linear = torch.nn.Linear(4, 1).to(device, F64)
    real = torch.randn(7, 4, device=device, dtype=F64)
    fake = torch.randn(7, 4, device=device, dtype=F64)
    out = gradient_penalty(linear, real, fake, center=center)
    assert abs(out.item() - (linear.weight.norm().item() - center) ** 2) < 1e-14
    out.backward()  # differentiable in the critic's weights
    assert linear.weight.grad is not None


def test_gradient_penalty_against_finite_differences() -> None:
    """A nonlinear critic: the gradient norm at the interpolates against central
    differences in float64, with the same interpolation weights."""
    torch.manual_seed(1)
    critic = MLPCritic(3, hidden=6).double()
    real, fake = torch.randn(5, 3, dtype=F64), torch.randn(5, 3, dtype=F64)
    out = gradient_penalty(
        critic, real, fake, generator=torch.Generator().manual_seed(4)
    )
    eps = torch.rand(5, 1, generator=torch.Generator().manual_seed(4), dtype=F64)
    mixed = eps * real + (1 - eps) * fake
    h, norms = 1e-6, []
    for row in mixed:
        grad = [
            (critic(row + h * e).item() - critic(row - h * e).item()) / (2 * h)
            for e in torch.eye(3, dtype=F64)
        ]
        norms.append(math.sqrt(sum(v * v for v in grad)))
    ref = float(np.mean([(v - 1) ** 2 for v in norms]))
    assert abs(out.item() - ref) < 1e-8


def test_mlp_critic_shapes() -> None:
    critic = MLPCritic(5, hidden=4, layers=2)
    assert critic(torch.randn(3, 5)).shape == (3,)
    assert critic(torch.randn(2, 3, 5)).shape == (2, 3)
    with pytest.raises(ValueError, match="x"):
        critic(torch.randn(3, 4))


@pytest.mark.parametrize("method", ["gradient-penalty", "c-transform"])
def test_wgan_alternates(method: str) -> None:
    """Critic steps leave the generator untouched and generator steps the critic."""
    torch.manual_seed(0)
    gan = WassersteinGAN(
        mlp(2, 2, hidden=8), MLPCritic(2, hidden=8), 2, method=method, critic_steps=2
    )
    opt = torch.optim.Adam(gan.parameters(), lr=1e-2)
    real = torch.randn(16, 2)
    for step in range(1, 7):
        gen_before = [p.clone() for p in gan.generator.parameters()]
        critic_before = [p.clone() for p in gan.critic.parameters()]
        opt.zero_grad()
        gan.loss(real).backward()
        opt.step()
        gen_moved = any(
            not torch.equal(a, b)
            for a, b in zip(gen_before, gan.generator.parameters(), strict=True)
        )
        critic_moved = any(
            not torch.equal(a, b)
            for a, b in zip(critic_before, gan.critic.parameters(), strict=True)
        )
        assert (gen_moved, critic_moved) == (
            (True, False) if step % 3 == 0 else (False, True)
        )


def test_wgan_exact_learns_a_shift() -> None:
    """The exact-W1 generator moves a point cloud onto a shifted target."""
    torch.manual_seed(0)
    gan = WassersteinGAN(torch.nn.Linear(2, 2), None, 2, method="exact")
    target = torch.tensor([3.0, -1.0])

    def loss(model: torch.nn.Module) -> torch.Tensor:
        return model.loss(torch.randn(64, 2) + target)

    log = train(gan, loss, 300, lr=0.05)
    # two batches of 64 from one 2-D Gaussian are ~0.45 apart (the minibatch bias)
    assert log.losses[-1] < 0.8 and log.losses[0] > 2
    with torch.no_grad():
        assert (gan.sample(2000).mean(0) - target).norm() < 0.2
