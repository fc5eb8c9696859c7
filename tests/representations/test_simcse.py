"""kexue.representations.simcse against naive float64 loops, the closed-form gradient
and pytorch-metric-learning's NTXentLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.losses import NTXentLoss
from torch import nn

from kexue.representations.simcse import alignment, info_nce, simcse_loss, uniformity

F64 = torch.float64


def rows(n: int, d: int, *, seed: int = 0, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=F64, generator=g).to(dtype)


def naive_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    """The paper's eq. 4, one row at a time, in float64 Python arithmetic."""
    a, b = a.double().tolist(), b.double().tolist()

    def cos(x, y):
        dot = sum(p * q for p, q in zip(x, y, strict=True))
        return dot / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))

    total = 0.0
    for i, x in enumerate(a):
        logits = [cos(x, y) / tau for y in b]
        top = max(logits)
        total -= logits[i] - top - math.log(sum(math.exp(v - top) for v in logits))
    return total / len(a)


def ntxent_paper_form(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """NTXentLoss on cat(a, b) with explicit pairs: anchor i, positive n + i, and the
    negatives n + j (j != i) only, the cross-view negatives of the paper's eq. 4. Its
    labels convention would add the same-view negatives and, with ``ref_emb`` and equal
    labels, drop the diagonal positives, so pairs are given as an indices tuple."""
    n = a.shape[0]
    anchors, negatives = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = anchors != negatives
    pairs = (torch.arange(n), torch.arange(n) + n, anchors[off], negatives[off] + n)
    return NTXentLoss(temperature=tau)(torch.cat([a, b]), indices_tuple=pairs)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_info_nce_matches_the_naive_loop(tau: float) -> None:
    a, b = rows(9, 5), rows(9, 5, seed=1)
    assert (
        abs(info_nce(a, b, temperature=tau).item() - naive_info_nce(a, b, tau)) < 1e-12
    )


@pytest.mark.parametrize("tau", [0.05, 0.2])
def test_info_nce_matches_ntxentloss(tau: float) -> None:
    a, b = rows(16, 8, dtype=torch.float32), rows(16, 8, seed=1, dtype=torch.float32)
    ours = info_nce(a, b, temperature=tau)
    theirs = ntxent_paper_form(a, b, tau)
    assert abs(ours.item() - theirs.item()) < 2e-5
    both = (ntxent_paper_form(a, b, tau) + ntxent_paper_form(b, a, tau)) / 2
    mine = info_nce(a, b, temperature=tau, symmetric=True)
    assert abs(mine.item() - both.item()) < 2e-5


def test_symmetric_is_the_mean_of_both_directions() -> None:
    a, b = rows(7, 4), rows(7, 4, seed=2)
    both = (naive_info_nce(a, b, 0.1) + naive_info_nce(b, a, 0.1)) / 2
    out = info_nce(a, b, temperature=0.1, symmetric=True).item()
    assert abs(out - both) < 1e-12


def test_gradient_is_softmax_minus_identity_over_tau() -> None:
    """dL/ds_ij = (p_ij - delta_ij) / (tau n), pushed through the cosine."""
    tau, n = 0.07, 6
    a = rows(n, 4).requires_grad_()
    b = rows(n, 4, seed=3)
    info_nce(a, b, temperature=tau).backward()
    with torch.no_grad():
        na, nb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        s = na @ nb.T
        g = (torch.softmax(s / tau, dim=-1) - torch.eye(n, dtype=F64)) / (tau * n)
        # d cos(a_i, b_j) / d a_i = (b_j^ - cos_ij a_i^) / |a_i|
        norms = a.norm(dim=-1, keepdim=True)
        expected = (g @ nb - (g * s).sum(-1, keepdim=True) * na) / norms
    torch.testing.assert_close(a.grad, expected, atol=1e-12, rtol=0)


def test_small_temperature_tends_to_the_hardest_negative() -> None:
    a, b = rows(8, 6), rows(8, 6, seed=4)
    s = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    gap = s - s.diagonal()[:, None]
    hinge = gap.clamp_min(0).amax(-1).mean().item()
    for tau in (1e-2, 1e-3, 1e-4):
        scaled = tau * info_nce(a, b, temperature=tau).item()
        # tau log(sum_j e^{gap_j / tau}) - max(0, max gap) lies in [0, tau log n]
        assert -1e-12 <= scaled - hinge <= tau * math.log(8) + 1e-12


def test_loss_decomposes_into_alignment_and_a_uniformity_term() -> None:
    """For unit rows, L = align / (2 tau) + mean_i log mean_j e^{-|a_i-b_j|^2/(2tau)}
    + log n exactly."""
    tau, n = 0.1, 10
    a = F.normalize(rows(n, 5), dim=-1)
    b = F.normalize(rows(n, 5, seed=5), dim=-1)
    dist2 = torch.cdist(a, b).square()
    cross = (torch.logsumexp(-dist2 / (2 * tau), dim=-1) - math.log(n)).mean()
    rhs = alignment(a, b) / (2 * tau) + cross + math.log(n)
    assert abs(info_nce(a, b, temperature=tau).item() - rhs.item()) < 1e-12


def test_alignment_and_uniformity_match_loops() -> None:
    a, b = rows(12, 3), rows(12, 3, seed=6)
    for alpha in (0.5, 1.0, 2.0, 3.0):
        ref = sum(
            sum((p - q) ** 2 for p, q in zip(x, y, strict=True)) ** (alpha / 2)
            for x, y in zip(a.tolist(), b.tolist(), strict=True)
        ) / len(a)
        assert abs(alignment(a, b, alpha=alpha).item() - ref) < 1e-12
    x = F.normalize(rows(15, 4, seed=7), dim=-1).tolist()
    for t in (0.5, 2.0, 10.0):
        terms = [
            math.exp(-t * sum((p - q) ** 2 for p, q in zip(x[i], x[j], strict=True)))
            for i in range(15)
            for j in range(i + 1, 15)
        ]
        ref = math.log(sum(terms) / len(terms))
        out = uniformity(torch.tensor(x, dtype=F64), t=t).item()
        assert abs(out - ref) < 1e-12


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 6),
    tau=st.floats(0.01, 5.0),
    seed=st.integers(0, 10_000),
)
def test_info_nce_properties(n: int, d: int, tau: float, seed: int) -> None:
    a, b = rows(n, d, seed=seed), rows(n, d, seed=seed + 1)
    loss = info_nce(a, b, temperature=tau).item()
    assert loss >= 0 and math.isfinite(loss)
    # equal, mutually orthogonal unit rows are the best case: one logit 1/tau, the rest 0
    if n <= d:
        eye = torch.eye(n, d, dtype=F64)
        best = math.log(1 + (n - 1) * math.exp(-1 / tau))
        assert abs(info_nce(eye, eye, temperature=tau).item() - best) < 1e-12
    # the loss is invariant to the rows' scale (cosines)
    scaled = info_nce(3 * a, 0.5 * b, temperature=tau).item()
    assert abs(scaled - loss) < 1e-9 * max(1.0, loss)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 20), d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_uniformity_bounds(n: int, d: int, seed: int) -> None:
    x = F.normalize(rows(n, d, seed=seed), dim=-1)
    u = uniformity(x).item()
    # unit rows: squared distances in [0, 4], so u in [-8, 0]
    assert -8 - 1e-12 <= u <= 1e-12


def test_half_precision_is_computed_in_float32(device) -> None:
    a = rows(32, 16, dtype=torch.float16).to(device)
    b = rows(32, 16, seed=1, dtype=torch.float16).to(device)
    out = info_nce(a, b, temperature=0.01)
    assert out.dtype == torch.float16 and torch.isfinite(out)
    ref = naive_info_nce(a.cpu(), b.cpu(), 0.01)
    assert abs(out.item() - ref) < 2e-2 * max(1.0, ref)
    for f in (lambda: alignment(a, b), lambda: uniformity(a)):
        assert f().dtype == torch.float16 and torch.isfinite(f())


def test_devices_and_views(device) -> None:
    a = rows(10, 6).to(device)
    b = rows(6, 10, seed=1).to(device).T  # a transposed view
    ref = naive_info_nce(a.cpu(), b.cpu(), 0.05)
    assert abs(info_nce(a, b).item() - ref) < 1e-12
    assert info_nce(a, b).device == a.device


class Pooled(nn.Module):
    """Dropout then a linear map: a head on frozen sentence vectors."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.drop, self.dense = nn.Dropout(p), nn.Linear(6, 4, dtype=F64)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            x = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.dense(self.drop(x))


def test_simcse_loss_is_info_nce_of_two_dropout_passes() -> None:
    model = Pooled(0.2).train()
    x, mask = rows(8, 6), None
    torch.manual_seed(11)
    loss = simcse_loss(model, x, mask, temperature=0.1)
    torch.manual_seed(11)
    first, second = model(x, mask), model(x, mask)
    assert not torch.equal(first, second)
    assert loss.item() == info_nce(first, second, temperature=0.1).item()
    loss.backward()
    assert model.dense.weight.grad is not None
    assert torch.isfinite(model.dense.weight.grad).all()


def test_simcse_loss_with_token_features_and_mask() -> None:
    model = Pooled(0.1).train()
    x = rows(5 * 7, 6).view(5, 7, 6)
    mask = torch.arange(7) < torch.tensor([[7], [3], [1], [5], [2]])
    x = x * mask[..., None]
    torch.manual_seed(3)
    loss = simcse_loss(model, x, mask)
    torch.manual_seed(3)
    views = model(x, mask), model(x, mask)
    assert torch.isfinite(loss) and loss.item() == info_nce(*views).item()


def test_simcse_loss_refuses_missing_noise() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        simcse_loss(Pooled(0.1).eval(), rows(4, 6), None)
    with pytest.raises(ValueError, match="identical vectors"):
        simcse_loss(Pooled(0.0).train(), rows(4, 6), None)


def test_training_with_dropout_lowers_the_loss() -> None:
    """A few Adam steps of SimCSE on random vectors lower the loss (a smoke test of
    the gradient's sign)."""
    torch.manual_seed(0)
    model = Pooled(0.1).train()
    x = rows(64, 6)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = simcse_loss(model, x, None)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < sum(losses[:10])
