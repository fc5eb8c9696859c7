"""kexue.generative.simvq against float64 loops written here and the peer
``vector-quantize-pytorch`` 1.32.0 (``VectorQuantize`` and ``SimVQ``).

Peer settings: plain VQ trained by gradient is ``VectorQuantize(learnable_codebook=True,
ema_update=False, rotation_trick=False | True)``; its loss ``mse(q, z)`` lets the
gradient reach both ``q`` and ``z``, which is ours with ``beta = 1`` at half the value
(ours counts the two stop-gradient terms separately). ``SimVQ(rotation_trick=...)``
computes the codebook as ``code_transform(frozen_codebook)``, an ``nn.Linear`` whose
weight is our ``W`` transposed, and its loss is ours with ``beta = 0.25``. The peer's
``VectorQuantize`` casts to float32, so those comparisons run in float32.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from vector_quantize_pytorch import SimVQ, VectorQuantize

from kexue.generative import (
    VectorQuantizer,
    codebook_usage,
    nearest_code,
    rotation_trick,
    simvq,
)

F64 = torch.float64


def nearest64(z: torch.Tensor, codebook: torch.Tensor) -> list[int]:
    """The nearest code by a loop over codes, distances in float64."""
    z, codebook = z.detach().double().cpu(), codebook.detach().double().cpu()
    out = []
    for row in z.reshape(-1, z.shape[-1]):
        dists = [float((row - code).square().sum()) for code in codebook]
        out.append(min(range(len(dists)), key=lambda k: (dists[k], k)))
    return out


def rotation_matrix64(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``G = (‖q‖/‖z‖)(I + 2 q̂ ẑᵀ − 2 w wᵀ)`` for one pair, built as a matrix."""
    z, q = z.double(), q.double()
    z_hat, q_hat = z / z.norm(), q / q.norm()
    w = (z_hat + q_hat) / (z_hat + q_hat).norm()
    eye = torch.eye(z.shape[0], dtype=F64)
    r = eye + 2 * torch.outer(q_hat, z_hat) - 2 * torch.outer(w, w)
    return q.norm() / z.norm() * r


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_nearest_code_matches_loop(device: torch.device, chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 11, 5, generator=g, dtype=F64)
    codebook = torch.randn(37, 5, generator=g, dtype=F64)
    out = nearest_code(z.to(device), codebook.to(device), chunk=chunk)
    assert out.shape == (3, 11) and out.dtype == torch.long
    assert out.cpu().reshape(-1).tolist() == nearest64(z, codebook)


def brute64(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The nearest code by every distance at once in float64 (argmin: first index)."""
    z, codebook = z.detach().double().cpu(), codebook.detach().double().cpu()
    rows = z.reshape(-1, z.shape[-1])
    dists = (rows[:, None] - codebook).square().sum(-1)
    return dists.argmin(-1).reshape(z.shape[:-1])


def _paths(z: torch.Tensor, codebook: torch.Tensor) -> tuple[float, float]:
    """The fractions of rows the expansion settles alone, and with its candidates."""
    search = simvq._Expansion(codebook)
    rows = z.reshape(-1, z.shape[-1])
    return search(rows)[1].double().mean().item(), search.candidates(rows)[
        1
    ].double().mean().item()


@pytest.mark.parametrize(
    ("n", "d", "k", "dtype"),
    [
        (4096, 64, 512, torch.float32),  # the benchmark's sizes
        (2000, 32, 1024, torch.float32),
        (300, 4, 256, torch.float32),
        (300, 7, 45, torch.float64),  # K not a multiple of the lanes
        (100, 3, 4, torch.float32),  # K within the candidates: direct search
        (100, 5, 1, torch.float32),
    ],
)
def test_nearest_code_random_against_float64(
    device: torch.device, n: int, d: int, k: int, dtype: torch.dtype
) -> None:
    g = torch.Generator().manual_seed(n + d + k)
    z = torch.randn(n, d, generator=g, dtype=dtype)
    codebook = torch.randn(k, d, generator=g, dtype=dtype) / math.sqrt(d)
    out = nearest_code(z.to(device), codebook.to(device), chunk=777)
    assert torch.equal(out.cpu(), brute64(z, codebook))
    if k > simvq.CANDIDATES:  # random data: the expansion settles nearly every row
        assert _paths(z, codebook)[0] > 0.99


def test_nearest_code_far_from_origin_and_ties(device: torch.device) -> None:
    # Codes 1e-3 apart at distance 1e4 from the origin: the expansion
    # |z|² − 2 z·e + |e|² loses them in float32 unless centred first.
    g = torch.Generator().manual_seed(1)
    base = torch.full((4,), 1e4, dtype=F64)
    codebook = base + 1e-3 * torch.randn(20, 4, generator=g, dtype=F64)
    z = base + 1e-3 * torch.randn(50, 4, generator=g, dtype=F64)
    out = nearest_code(z.float().to(device), codebook.float().to(device))
    assert out.cpu().tolist() == nearest64(z.float(), codebook.float())
    tied = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], device=device)
    assert nearest_code(torch.zeros(1, 2, device=device), tied).item() == 0


def test_nearest_code_two_far_clusters(device: torch.device) -> None:
    # Two clusters 1e-3 wide at ±1e3: centring cannot remove both offsets, the
    # expansion's rounding bound covers every code of the cluster, and every row
    # falls back to the direct search, which must still be exact.
    g = torch.Generator().manual_seed(11)
    base = torch.full((6,), 1e3, dtype=F64)
    blob = 1e-3 * torch.randn(40, 6, generator=g, dtype=F64)
    codebook = torch.cat([base + blob[:20], -base + blob[20:]]).float()
    signs = torch.tensor([1.0, -1.0], dtype=F64).repeat_interleave(300)[:, None]
    z = (signs * base + 1e-3 * torch.randn(600, 6, generator=g, dtype=F64)).float()
    assert _paths(z, codebook) == (0.0, 0.0)
    out = nearest_code(z.to(device), codebook.to(device), chunk=100)
    assert torch.equal(out.cpu(), brute64(z, codebook))


def test_nearest_code_near_ties(device: torch.device) -> None:
    # Codes on a sphere about each row whose radii differ by single float32 ulps:
    # the expansion cannot order them (its bound is ~d ulps), float64 can.
    g = torch.Generator().manual_seed(12)
    centre = torch.randn(8, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(64, 8, generator=g), dim=-1)
    ulps = torch.randperm(64, generator=g).float()
    radius = 1.0 + ulps * 2.0**-23
    codebook = (centre + radius[:, None] * directions).float()
    z = centre + 1e-7 * torch.randn(200, 8, generator=g)
    assert _paths(z, codebook)[1] < 0.5  # most rows need the full search
    out = nearest_code(z.to(device), codebook.to(device), chunk=64)
    assert torch.equal(out.cpu(), brute64(z, codebook))


@pytest.mark.parametrize("copies", [2, 9])
def test_nearest_code_duplicated_codes(device: torch.device, copies: int) -> None:
    # A code repeated at scattered indices: the lowest index wins, whether the
    # copies fit among the re-ranked candidates (2) or not (9).
    g = torch.Generator().manual_seed(13)
    codebook = torch.randn(100, 6, generator=g)
    where = torch.randperm(100, generator=g)[:copies]
    codebook[where] = codebook[where[0]].clone()
    z = codebook[where[0]] + 1e-3 * torch.randn(50, 6, generator=g)
    out = nearest_code(z.to(device), codebook.to(device))
    assert (out.cpu() == where.min()).all()
    assert torch.equal(out.cpu(), brute64(z, codebook))


def test_nearest_code_reduced_matmul_precision(device: torch.device) -> None:
    # With TF32 or bfloat16 products allowed, the bound widens with them.
    g = torch.Generator().manual_seed(14)
    z, codebook = torch.randn(500, 16, generator=g), torch.randn(300, 16, generator=g)
    before = torch.get_float32_matmul_precision()
    try:
        for precision in ("high", "medium"):
            torch.set_float32_matmul_precision(precision)
            out = nearest_code(z.to(device), codebook.to(device))
            assert torch.equal(out.cpu(), brute64(z, codebook))
    finally:
        torch.set_float32_matmul_precision(before)


def test_nearest_code_nan_and_inf_rows(device: torch.device) -> None:
    # Rows the expansion cannot rank go to the direct search, which gives what
    # argmin over float64 distances gives (NaN first: index of the first NaN).
    g = torch.Generator().manual_seed(15)
    z, codebook = torch.randn(40, 3, generator=g), torch.randn(50, 3, generator=g)
    z[3] = math.nan
    z[7, 1] = math.inf
    codebook[5, 0] = 1e30
    out = nearest_code(z.to(device), codebook.to(device))
    assert torch.equal(out.cpu(), brute64(z, codebook))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 12),
    st.integers(1, 200),
    st.sampled_from([0.0, 1.0, 1e3, 1e5]),
    st.sampled_from([1e-3, 1.0, 1e3]),
    st.integers(0, 10_000),
)
def test_nearest_code_property(
    n: int, d: int, k: int, offset: float, scale: float, seed: int
) -> None:
    # offsets that cancel in the expansion, scales, sizes: always the float64 argmin
    g = torch.Generator().manual_seed(seed)
    shift = offset * torch.randn(d, generator=g)
    codebook = shift + scale * torch.randn(k, d, generator=g)
    z = shift + scale * torch.randn(n, d, generator=g)
    out = nearest_code(z, codebook, chunk=64)
    assert torch.equal(out, brute64(z, codebook))


def test_nearest_code_matches_peer() -> None:
    # At the benchmark's sizes the peer's search (cdist's expansion in float32)
    # agrees with ours except where its rounding swaps two codes whose float64
    # distances differ by float32 rounding; ours is the float64 argmin everywhere.
    torch.manual_seed(16)
    peer = VectorQuantize(64, 512, learnable_codebook=True, ema_update=False)
    z = torch.randn(64, 64, 64)
    codebook = peer._codebook.embed[0].detach()
    _, peer_idx, _ = peer(z)
    mine = nearest_code(z, codebook)
    assert torch.equal(mine, brute64(z, codebook))
    dists = (z.double().reshape(-1, 1, 64) - codebook.double()).square().sum(-1)
    differ = (mine != peer_idx).reshape(-1)
    assert differ.sum() <= 2  # one row here
    rows = dists[differ]
    gap = (
        rows.gather(1, peer_idx.reshape(-1)[differ, None])
        - rows.min(-1).values[:, None]
    )
    assert (gap <= 2**-23 * rows.min(-1).values[:, None]).all()


def test_nearest_code_half_and_empty(device: torch.device) -> None:
    g = torch.Generator().manual_seed(2)
    z, codebook = torch.randn(40, 3, generator=g), torch.randn(9, 3, generator=g)
    half = nearest_code(z.half().to(device), codebook.half().to(device))
    assert half.cpu().tolist() == nearest64(z.half(), codebook.half())
    empty = nearest_code(torch.zeros(0, 4, 3, device=device), codebook.to(device))
    assert empty.shape == (0, 4)


def test_rotation_trick_value_and_gradient(device: torch.device) -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 5, generator=g, dtype=F64)
    q = torch.randn(6, 5, generator=g, dtype=F64)
    upstream = torch.randn(6, 5, generator=g, dtype=F64)
    zz = z.to(device).requires_grad_()
    qq = q.to(device).requires_grad_()
    out = rotation_trick(zz, qq)
    assert (out.detach().cpu() - q).abs().max() < 1e-14
    (out * upstream.to(device)).sum().backward()
    assert qq.grad is None  # no gradient to the code through this path
    for i in range(6):
        big_g = rotation_matrix64(z[i], q[i])
        r = big_g * z[i].norm() / q[i].norm()
        assert (r @ r.T - torch.eye(5, dtype=F64)).abs().max() < 1e-14  # orthogonal
        assert (big_g @ z[i] - q[i]).abs().max() < 1e-14  # G z = q
        expected = big_g.T @ upstream[i]
        assert (zz.grad[i].cpu() - expected).abs().max() < 1e-13


def test_rotation_trick_limits(device: torch.device) -> None:
    z = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]], dtype=F64, device=device)
    q = torch.tensor([[-2.0, -4.0], [1.0, 1.0], [0.0, 0.0]], dtype=F64, device=device)
    z.requires_grad_()
    out = rotation_trick(z, q)
    assert torch.equal(out.detach(), q)
    out.backward(torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=F64))
    grad = z.grad.cpu()
    # opposite directions: G = 2 (I − 2 ẑẑᵀ), a scaled reflection (symmetric)
    z_hat = torch.tensor([1.0, 2.0], dtype=F64) / math.sqrt(5)
    reflection = 2 * (torch.eye(2, dtype=F64) - 2 * torch.outer(z_hat, z_hat))
    assert (
        grad[0] - reflection @ torch.tensor([1.0, 0.0], dtype=F64)
    ).abs().max() < 1e-14
    assert grad[1].tolist() == [0.5, 0.5]  # z = 0: straight through
    assert grad[2].tolist() == [0.0, 0.0]  # q = 0: nothing passes


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 200), st.integers(0, 10_000))
def test_codebook_usage_matches_counts(k: int, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (n,), generator=g)
    fraction, perplexity = codebook_usage(idx, k)
    values = idx.tolist()
    counts = [values.count(c) for c in range(k)]
    entropy = -sum(c / n * math.log(c / n) for c in counts if c)
    assert fraction == sum(c > 0 for c in counts) / k
    assert abs(perplexity - math.exp(entropy)) < 1e-12 * math.exp(entropy)
    assert 1 - 1e-12 <= perplexity <= min(k, n) + 1e-9


def test_quantizer_defaults_and_parameters() -> None:
    torch.manual_seed(0)
    plain = VectorQuantizer(10, 3)
    torch.manual_seed(0)
    linear = VectorQuantizer(10, 3, transform="linear", init="identity")
    torch.manual_seed(0)
    diagonal = VectorQuantizer(10, 3, transform="diagonal")
    # one random start: the three parameterisations begin at the same codebook
    assert torch.equal(plain.codebook, linear.codebook)
    assert torch.equal(plain.codebook, diagonal.codebook)
    assert [n for n, _ in plain.named_parameters()] == ["codes"]
    assert [n for n, _ in linear.named_parameters()] == ["weight"]
    assert [n for n, _ in diagonal.named_parameters()] == ["scale"]
    both = VectorQuantizer(10, 3, transform="linear", freeze_codes=False)
    assert sorted(n for n, _ in both.named_parameters()) == ["codes", "weight"]
    assert "codes" in linear.state_dict()  # frozen codes are a saved buffer
    with pytest.raises(ValueError, match="freeze_codes"):
        VectorQuantizer(10, 3, freeze_codes=True)


def test_quantizer_default_init_is_nn_linear() -> None:
    # init="default" draws W as nn.Linear(d, d) does: U(-1/sqrt(d), 1/sqrt(d)),
    # after Q, from torch's global generator.
    torch.manual_seed(3)
    vq = VectorQuantizer(10, 64, transform="linear")
    torch.manual_seed(3)
    codes = torch.randn(10, 64) / 8
    ref = nn.Linear(64, 64, bias=False).weight.detach()  # same law, same draws
    assert torch.equal(vq.codes, codes)
    assert torch.equal(vq.weight.detach(), ref)  # (the law is symmetric under ᵀ)
    assert vq.init == "default" and "init='default'" in repr(vq)
    eye = VectorQuantizer(10, 64, transform="linear", init="identity")
    assert torch.equal(eye.weight.detach(), torch.eye(64))
    with pytest.raises(ValueError, match="init"):
        VectorQuantizer(10, 3, transform="linear", init="zeros")


def _grads(out, loss, upstream, params):
    return torch.autograd.grad((out * upstream).sum() + loss, params)


@pytest.mark.parametrize("estimator", ["straight_through", "rotation"])
def test_plain_vq_matches_peer(device: torch.device, estimator: str) -> None:
    mine = VectorQuantizer(32, 6, beta=1.0, estimator=estimator).to(device)
    peer = VectorQuantize(
        6,
        32,
        learnable_codebook=True,
        ema_update=False,
        rotation_trick=estimator == "rotation",
        commitment_weight=1.0,
    ).to(device)
    with torch.no_grad():
        peer._codebook.embed.copy_(mine.codes[None])
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 20, 6, generator=g).to(device)
    upstream = torch.randn(3, 20, 6, generator=g).to(device)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    out1, idx1, loss1 = mine(z1)
    out2, idx2, loss2 = peer(z2)
    assert torch.equal(idx1, idx2)
    assert abs(loss1.item() - 2 * loss2.item()) < 1e-6  # see the module docstring
    assert (out1 - out2).abs().max() < 1e-6
    grads1 = _grads(out1, loss1, upstream, [z1, mine.codes])
    grads2 = _grads(out2, loss2, upstream, [z2, peer._codebook.embed])
    for a, b in zip(grads1, grads2, strict=True):
        assert (a - b.reshape(a.shape)).abs().max() < 1e-6


class _Diagonal(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return codes * self.scale


@pytest.mark.parametrize("transform", ["linear", "diagonal"])
@pytest.mark.parametrize("estimator", ["straight_through", "rotation"])
def test_simvq_matches_peer(
    device: torch.device, transform: str, estimator: str
) -> None:
    mine = VectorQuantizer(64, 5, transform=transform, estimator=estimator)
    mine = mine.to(device, F64)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a map far from its start, so that it matters
        if transform == "linear":
            mine.weight.copy_(torch.randn(5, 5, generator=g, dtype=F64))
        else:
            mine.scale.copy_(torch.rand(5, generator=g, dtype=F64) + 0.5)
    peer_map: nn.Module = (
        nn.Linear(5, 5, bias=False) if transform == "linear" else _Diagonal(5)
    )
    peer = SimVQ(
        5, 64, codebook_transform=peer_map, rotation_trick=estimator == "rotation"
    ).to(device, F64)
    with torch.no_grad():  # copied after the cast to float64, so nothing is rounded
        peer.frozen_codebook.copy_(mine.codes)
        if transform == "linear":
            peer_map.weight.copy_(mine.weight.T)
        else:
            peer_map.scale.copy_(mine.scale)
    z = torch.randn(4, 30, 5, generator=g, dtype=F64).to(device)
    upstream = torch.randn(4, 30, 5, generator=g, dtype=F64).to(device)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    out1, idx1, loss1 = mine(z1)
    out2, idx2, loss2 = peer(z2)
    assert torch.equal(idx1, idx2)
    assert abs(loss1.item() - loss2.item()) < 1e-14
    assert (out1 - out2).abs().max() < 1e-13
    mine_map = mine.weight if transform == "linear" else mine.scale
    peer_param = next(peer.code_transform.parameters())
    grads1 = _grads(out1, loss1, upstream, [z1, mine_map])
    grads2 = _grads(out2, loss2, upstream, [z2, peer_param])
    assert (grads1[0] - grads2[0]).abs().max() < 1e-13
    peer_grad = grads2[1].T if transform == "linear" else grads2[1]
    assert (grads1[1] - peer_grad).abs().max() < 1e-13


def test_linear_simvq_is_plain_vq_with_merged_codebook(device: torch.device) -> None:
    simvq = VectorQuantizer(50, 4, transform="linear").to(device, F64)
    with torch.no_grad():
        simvq.weight.copy_(torch.randn(4, 4, dtype=F64, device=device))
    plain = VectorQuantizer(50, 4).to(device, F64)
    with torch.no_grad():
        plain.codes.copy_(simvq.codebook)
    z = torch.randn(100, 4, dtype=F64, device=device)
    for a, b in zip(simvq(z), plain(z), strict=True):
        assert torch.equal(a, b)


def _sgd_step_change(quantizer, z, upstream, lr):
    """The codebook's change after one SGD step of ``lr`` on the quantizer's loss plus
    ``⟨upstream, quantized⟩``, and the gradient ``G`` of that loss in the codebook
    (taken from a plain quantizer holding the merged codebook ``E``)."""
    before = quantizer.codebook.detach().clone()
    merged = VectorQuantizer(*before.shape, beta=quantizer.beta).to(before.dtype)
    with torch.no_grad():
        merged.codes.copy_(before)
    out, idx, loss = merged(z)
    (g_e,) = torch.autograd.grad((out * upstream).sum() + loss, [merged.codes])
    out, idx, loss = quantizer(z)
    params = list(quantizer.parameters())
    grads = torch.autograd.grad((out * upstream).sum() + loss, params)
    with torch.no_grad():
        for p, gp in zip(params, grads, strict=True):
            p -= lr * gp
    return quantizer.codebook.detach() - before, g_e, idx


def test_first_order_update_formula() -> None:
    # Δe_i = −η (g_i WᵀW + q_i Σ_j q_jᵀ g_j) + O(η²) when Q and W both train.
    torch.manual_seed(6)
    errors = []
    for lr in (1e-2, 1e-3, 1e-4):
        torch.manual_seed(6)
        vq = VectorQuantizer(40, 3, transform="linear", freeze_codes=False).double()
        with torch.no_grad():
            vq.weight.copy_(torch.eye(3, dtype=F64) + 0.3 * torch.randn(3, 3))
        q0, w0 = vq.codes.detach().clone(), vq.weight.detach().clone()
        z = 2 * torch.randn(25, 3, dtype=F64)
        upstream = torch.randn(25, 3, dtype=F64)
        change, g_e, idx = _sgd_step_change(vq, z, upstream, lr)
        formula = -lr * (g_e @ w0.T @ w0 + q0 @ q0.T @ g_e)
        errors.append((change - formula).abs().max().item())
        unused = torch.ones(40, dtype=torch.bool)
        unused[idx] = False
        assert unused.any() and (g_e[unused] == 0).all()  # no direct gradient...
        assert (change[unused].abs().sum(-1) > 0).all()  # ...and yet they move
    # second order: ten times smaller steps, a hundred times smaller error
    assert 80 < errors[0] / errors[1] < 120 and 80 < errors[1] / errors[2] < 120


def test_frozen_codes_update_is_exact() -> None:
    # with Q frozen, E = Q W is linear in W: Δe_i = −η q_i Σ_j q_jᵀ g_j exactly
    torch.manual_seed(7)
    vq = VectorQuantizer(40, 3, transform="linear").double()
    z, upstream = 2 * torch.randn(25, 3, dtype=F64), torch.randn(25, 3, dtype=F64)
    q0 = vq.codes.clone()
    change, g_e, _ = _sgd_step_change(vq, z, upstream, 0.1)
    assert (change - (-0.1) * q0 @ q0.T @ g_e).abs().max() < 1e-15


def test_plain_vq_unselected_codes_stay() -> None:
    torch.manual_seed(8)
    vq = VectorQuantizer(40, 3).double()
    z, upstream = 2 * torch.randn(25, 3, dtype=F64), torch.randn(25, 3, dtype=F64)
    change, _, idx = _sgd_step_change(vq, z, upstream, 0.1)
    unused = torch.ones(40, dtype=torch.bool)
    unused[idx] = False
    assert (change[unused] == 0).all() and (change[~unused] != 0).any()


def test_reconstruction_gradient_never_reaches_codebook() -> None:
    # straight through: the decoder's gradient goes to z only, so with EMA updates
    # (no codebook loss) a linear map on the codebook would receive no gradient
    vq = VectorQuantizer(20, 4, transform="linear").double()
    z = torch.randn(30, 4, dtype=F64, requires_grad=True)
    out, _, _ = vq(z)
    grad = torch.autograd.grad(out.square().sum(), vq.weight, allow_unused=True)[0]
    assert grad is None


def test_quantizer_empty_and_half(device: torch.device) -> None:
    vq = VectorQuantizer(16, 4, transform="linear").to(device)
    z = torch.zeros(0, 3, 4, device=device, requires_grad=True)
    out, idx, loss = vq(z)
    assert out.shape == (0, 3, 4) and idx.shape == (0, 3) and loss.item() == 0
    loss.backward()
    assert (vq.weight.grad == 0).all()
    half = VectorQuantizer(16, 4, estimator="rotation").to(device)
    x = torch.randn(50, 4, device=device)
    _, _, ref_loss = half(x.half().float())
    half = half.half()
    out, idx, loss = half(x.half())
    assert out.dtype == loss.dtype == torch.float16
    assert torch.equal(idx, nearest_code(x.half(), half.codebook))
    assert abs(loss.item() - ref_loss.item()) < 2e-3 * ref_loss.item()
