"""kexue.generative.eae against a float64 double loop written here, the peer
``entropy_estimators`` (``continuous.get_h``, a KD-tree and SciPy's digamma), the
closed-form Gaussian entropy and torch's own ``BatchNorm1d``.

The peer's Euclidean branch sums ``log(2 ε)`` (a diameter) while using the volume of
the unit ball of radius 1, so its estimate is ours plus ``d log 2``; the tests subtract
that offset and say so. Its max-norm branch is consistent (a cube of side ``2ε`` has
volume ``(2ε)^d``) and is not what ours computes.
"""

from __future__ import annotations

import math

import pytest
import torch
from entropy_estimators import continuous
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.generative import (
    EntropicAutoencoder,
    eae_loss,
    knn_entropy,
    log_unit_ball_volume,
)

F64 = torch.float64


def knn_entropy64(x: torch.Tensor, k: int) -> float:
    """The estimator by its definition: a double loop over pairs, sorted distances."""
    x = x.detach().double().cpu()
    n, d = x.shape
    total = 0.0
    for i in range(n):
        dists = sorted(float((x[i] - x[j]).norm()) for j in range(n) if j != i)
        total += math.log(dists[k - 1])
    harmonic = sum(1.0 / m for m in range(k, n))  # psi(n) - psi(k)
    return d * total / n + log_unit_ball_volume(d) + harmonic


def gaussian_entropy(d: int) -> float:
    return 0.5 * d * math.log(2 * math.pi * math.e)


def test_log_unit_ball_volume_known_values() -> None:
    assert log_unit_ball_volume(1) == pytest.approx(math.log(2), abs=1e-15)
    assert log_unit_ball_volume(2) == pytest.approx(math.log(math.pi), abs=1e-15)
    assert log_unit_ball_volume(3) == pytest.approx(
        math.log(4 * math.pi / 3), abs=1e-15
    )
    # the recursion B_d = 2π/d · B_{d−2}, far past where B_d underflows
    for d in (3, 10, 101, 2000):
        gap = log_unit_ball_volume(d) - log_unit_ball_volume(d - 2)
        assert gap == pytest.approx(math.log(2 * math.pi / d), abs=1e-11)
    assert math.isfinite(log_unit_ball_volume(10**6))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_knn_entropy_matches_double_loop(device: torch.device, k: int) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.randn(60, 3, generator=g, dtype=F64)
    out = knn_entropy(x.to(device), k, chunk=7)
    assert out.shape == () and out.dtype == F64
    assert abs(out.item() - knn_entropy64(x, k)) < 1e-12


@pytest.mark.parametrize(("d", "k"), [(1, 1), (2, 3), (5, 1), (8, 2)])
def test_knn_entropy_matches_peer(device: torch.device, d: int, k: int) -> None:
    g = torch.Generator().manual_seed(d)
    x = torch.randn(1500, d, generator=g, dtype=F64)
    peer = continuous.get_h(x.numpy(), k=k, norm="euclidean") - d * math.log(2)
    assert abs(knn_entropy(x.to(device), k).item() - peer) < 1e-11


@pytest.mark.parametrize(("d", "tolerance"), [(2, 0.08), (8, 0.15)])
def test_knn_entropy_near_gaussian_entropy(d: int, tolerance: float) -> None:
    # n = 5000 standard normal points; measured errors over seeds: sd 0.026 (d = 2),
    # 0.04 (d = 8), bias about -0.06 at d = 8.
    g = torch.Generator().manual_seed(11)
    x = torch.randn(5000, d, generator=g)
    assert abs(knn_entropy(x).item() - gaussian_entropy(d)) < tolerance


def test_knn_entropy_batched_and_chunked(device: torch.device) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 50, 4, generator=g, dtype=F64).to(device)
    out = knn_entropy(x, 2, chunk=9)
    assert out.shape == (3, 2)
    each = torch.stack([knn_entropy(x[i, j], 2) for i in range(3) for j in range(2)])
    torch.testing.assert_close(out.flatten(), each, rtol=0, atol=1e-13)
    torch.testing.assert_close(knn_entropy(x, 2, chunk=1), out, rtol=0, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
    seed=st.integers(0, 1000),
)
def test_knn_entropy_scaling_and_translation(scale: float, shift: float, seed: int):
    # H(a z + b) = H(z) + d log a exactly for the estimate: the reason the code must be
    # normalised before its entropy is maximised.
    x = torch.randn(80, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    moved = knn_entropy(scale * x + shift)
    assert abs(moved.item() - knn_entropy(x).item() - 3 * math.log(scale)) < 1e-9


def test_knn_entropy_gradient(device: torch.device) -> None:
    # Away from ties, dH/dx_i = (d/n) Σ over pairs (i, j) in which i or j is the
    # neighbour: (x_i − x_j)/ε² for each point's own neighbour, and its reaction.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 2, generator=g, dtype=F64).to(device).requires_grad_()
    knn_entropy(x).backward()
    with torch.no_grad():
        dist = torch.cdist(x, x).fill_diagonal_(math.inf)
        j = dist.argmin(-1)
        diff = x - x[j]
        pull = diff / diff.square().sum(-1, keepdim=True)
        expected = torch.zeros_like(x).index_add_(
            0, torch.arange(30, device=device), pull
        )
        expected.index_add_(0, j, -pull)
        expected *= 2 / 30
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t: knn_entropy(t, 2), (x.detach().clone().requires_grad_(),)
    )


def test_knn_entropy_duplicates_give_minus_inf_and_finite_gradient() -> None:
    x = torch.tensor(
        [[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1.0]], requires_grad=True
    )
    out = knn_entropy(x)
    assert out.item() == -math.inf
    out.backward()
    assert torch.isfinite(x.grad).all()


def test_knn_entropy_half_precision() -> None:
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(3))
    out = knn_entropy(x.half())
    assert out.dtype == torch.float16
    assert abs(out.item() - knn_entropy(x.half().float()).item()) < 5e-3


def test_autoencoder_batch_norm_constraint(device: torch.device) -> None:
    model = EntropicAutoencoder(12, 3, hidden=16, bounded=True).to(device)
    x = torch.rand(64, 12, device=device)
    reconstruction, code = model(x)
    assert reconstruction.shape == (64, 12) and code.shape == (64, 3)
    assert ((reconstruction > 0) & (reconstruction < 1)).all()
    # training mode: every batch has mean 0 and biased variance 1, up to rounding and
    # batch norm's eps (variance σ²/(σ² + eps) for raw codes of variance σ²)
    (h,) = model.encoder(x)
    raw = h.var(0, unbiased=False)
    assert code.mean(0).abs().max() < 1e-5
    torch.testing.assert_close(code.var(0, unbiased=False), raw / (raw + 1e-5))
    # the same as torch's batch norm without affine parameters on the raw codes
    ref = torch.nn.functional.batch_norm(h, None, None, training=True, eps=1e-5)
    torch.testing.assert_close(code, ref)
    assert not any(p.requires_grad for p in model.norm.parameters())
    assert list(model.norm.parameters()) == []


def test_autoencoder_eval_uses_running_statistics(device: torch.device) -> None:
    model = EntropicAutoencoder(6, 2, hidden=8, momentum=1.0).to(device)
    x = torch.randn(50, 6, device=device)
    train_code = model.encode(x)
    model.eval()
    # momentum 1: the running mean is the last batch's mean, the running variance its
    # unbiased variance, so eval codes differ from training codes by sqrt((n-1)/n).
    torch.testing.assert_close(model.encode(x), train_code * math.sqrt(49 / 50))
    assert model.encode(x[:1]).shape == (1, 2)  # one row is fine in eval mode
    assert model.sample(5).shape == (5, 6)


def test_autoencoder_empty_batch_keeps_running_statistics() -> None:
    model = EntropicAutoencoder(6, 2, hidden=8)
    before = model.norm.running_mean.clone()
    reconstruction, code = model(torch.zeros(0, 6))
    assert reconstruction.shape == (0, 6) and code.shape == (0, 2)
    assert torch.equal(model.norm.running_mean, before)
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(1, 6))


def test_eae_loss_value(device: torch.device) -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.rand(40, 5, generator=g, dtype=F64).to(device)
    r = torch.rand(40, 5, generator=g, dtype=F64).to(device)
    code = torch.randn(40, 3, generator=g, dtype=F64).to(device)
    expected = (x - r).square().sum(-1).mean() - 0.7 * knn_entropy64(code, 2)
    out = eae_loss(x, r, code, weight=0.7, k=2)
    assert abs(out.item() - expected.item()) < 1e-12
    plain = eae_loss(x, r, code[:1].expand(40, 3), weight=0.0)  # no estimate at 0
    assert abs(plain.item() - (x - r).square().sum(-1).mean().item()) < 1e-12


def test_eae_trains_towards_gaussian_code() -> None:
    # A tiny EAE on 2-D data lifted to 6-D: the entropy term raises the code's entropy.
    torch.manual_seed(0)
    data = torch.randn(512, 2) @ torch.randn(2, 6) + 0.1 * torch.randn(512, 6)

    def fit(weight: float) -> float:
        torch.manual_seed(1)
        model = EntropicAutoencoder(6, 2, hidden=32)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            batch = data[torch.randint(0, 512, (128,))]
            loss = eae_loss(batch, *model(batch), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return knn_entropy(model.encode(data)).item()

    assert fit(1.0) > fit(0.0)
