"""kexue.attention.linear against quadratic references and softmax attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.attention.linear import (
    OneLayerAttention,
    favor_features,
    linear_attention,
    orthogonal_gaussian,
    performer_attention,
    performer_relative_error,
)


def quadratic(q, k, v, phi, causal=False, mask=None, eps=1e-6):
    """The same attention with the full (n, n) weight matrix."""
    weights = phi(q) @ phi(k).mT
    if causal:
        weights = weights.tril()
    if mask is not None:
        weights = weights * mask.unsqueeze(-2)
    return weights @ v / (weights.sum(-1, keepdim=True) + eps)


@pytest.mark.parametrize("feature_map", ["elu", "exp", "relu"])
def test_non_causal_matches_the_quadratic_form(
    feature_map: str, device: torch.device
) -> None:
    q, k, v = torch.randn(3, 2, 3, 17, 8, dtype=torch.float64, device=device)
    phi = {"elu": lambda x: F.elu(x) + 1, "exp": torch.exp, "relu": F.relu}[feature_map]
    got = linear_attention(q, k, v, feature_map=feature_map)
    torch.testing.assert_close(got, quadratic(q, k, v, phi))


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 64])
def test_causal_chunks_match_the_masked_quadratic_form(chunk_size: int) -> None:
    q, k, v = torch.randn(3, 2, 2, 23, 6, dtype=torch.float64)
    got = linear_attention(q, k, v, causal=True, chunk_size=chunk_size)
    expected = quadratic(q, k, v, lambda x: F.elu(x) + 1, causal=True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_gradients_through_the_causal_chunked_path() -> None:
    q, k, v = torch.randn(3, 1, 1, 9, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: linear_attention(a, b, c, causal=True, chunk_size=4), (q, k, v)
    )


def test_padding_mask_removes_keys() -> None:
    q, k, v = torch.randn(3, 2, 2, 10, 4, dtype=torch.float64)
    mask = torch.ones(2, 1, 10, dtype=torch.bool)
    mask[0, 0, 6:] = False
    got = linear_attention(q, k, v, mask=mask)
    short = linear_attention(q[:1, :, :, :], k[:1, :, :6], v[:1, :, :6])
    torch.testing.assert_close(got[:1], short)


def test_callable_feature_map() -> None:
    q, k, v = torch.randn(3, 1, 1, 5, 4, dtype=torch.float64)
    got = linear_attention(q, k, v, feature_map=lambda x: x * x)
    torch.testing.assert_close(got, quadratic(q, k, v, lambda x: x * x))


def test_orthogonal_gaussian_blocks() -> None:
    w = orthogonal_gaussian(
        40, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert w.shape == (40, 16)
    block = w[:16] / w[:16].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(
        block @ block.T, torch.eye(16, dtype=torch.float64), atol=1e-12, rtol=0
    )


def test_performer_approximates_softmax_attention() -> None:
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        0.5 * torch.randn(1, 1, 64, 16, dtype=torch.float64, generator=generator)
        for _ in range(3)
    )
    exact = F.scaled_dot_product_attention(q, k, v)
    projection = orthogonal_gaussian(4096, 16, generator=generator, dtype=torch.float64)
    approx = performer_attention(q, k, v, projection)
    assert (approx - exact).abs().max() < 0.02


def test_favor_features_estimate_the_softmax_kernel() -> None:
    """phi(q) . phi(k) estimates exp(q . k / sqrt d) up to one constant per query (the stabilisers).

    With iid features the estimate's relative variance is (exp(|q~ + k~|^2) - 1) / m (q~ = d^(-1/4) q);
    orthogonal blocks only lower it, so 5 of those standard deviations bound every entry.
    """
    generator = torch.Generator().manual_seed(1)
    q, k = 0.5 * torch.randn(2, 8, 16, dtype=torch.float64, generator=generator)
    m = 20000
    projection = orthogonal_gaussian(m, 16, generator=generator, dtype=torch.float64)
    phi_q = favor_features(q, projection, is_query=True, eps=0.0)
    phi_k = favor_features(k, projection, is_query=False, eps=0.0)
    ratio = (phi_q @ phi_k.T) / torch.exp(q @ k.T / math.sqrt(16))
    ratio = ratio / ratio.mean(
        -1, keepdim=True
    )  # removes the per-query stabiliser (keys share one)
    scaled = (q[:, None, :] + k[None, :, :]) * 16**-0.25
    relative_std = torch.sqrt((torch.exp(scaled.pow(2).sum(-1)) - 1) / m)
    # 5 standard deviations of the entry, plus 5 of the row mean it was divided by
    assert (
        (ratio - 1).abs() <= 5 * relative_std + 5 * relative_std.mean(-1, keepdim=True)
    ).all()


@pytest.mark.parametrize("is_query", [True, False])
def test_favor_features_in_place_path_gives_the_same_numbers(
    is_query: bool, device: torch.device
) -> None:
    """Without autograd the features are computed in place (benchmarks/): bit for bit the autograd path's,
    which still differentiates."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 50, 16, generator=generator).to(device)
    projection = orthogonal_gaussian(40, 16, generator=generator).to(device)
    fast = favor_features(x, projection, is_query=is_query)
    tracked = favor_features(x.clone().requires_grad_(), projection, is_query=is_query)
    assert torch.equal(fast, tracked.detach())
    with torch.no_grad():
        assert torch.equal(
            favor_features(x.clone().requires_grad_(), projection, is_query=is_query),
            fast,
        )
    tracked.sum().backward()  # the autograd path is untouched by the in-place one


def test_bad_input() -> None:
    x = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError, match="feature_map must be one of"):
        linear_attention(x, x, x, feature_map="softmax")
    with pytest.raises(ValueError, match="q and k must have the same last dimension"):
        linear_attention(x, torch.randn(1, 1, 4, 7), x)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        linear_attention(x, x, x, mask=torch.ones(1, 1, 4))
    with pytest.raises(ValueError, match="must broadcast"):
        linear_attention(x, x, x, mask=torch.ones(1, 1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="projection must be"):
        favor_features(x, torch.randn(10, 7), is_query=True)


def test_performer_relative_error_falls_with_features_and_matches_a_direct_loop() -> (
    None
):
    q, k, v = 0.5 * torch.randn(
        3, 1, 1, 32, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    few = performer_relative_error(
        q, k, v, 8, orthogonal=True, draws=5, generator=torch.Generator().manual_seed(0)
    )
    many = performer_relative_error(
        q,
        k,
        v,
        512,
        orthogonal=True,
        draws=5,
        generator=torch.Generator().manual_seed(0),
    )
    assert many < few / 2
    generator = torch.Generator().manual_seed(4)
    got = performer_relative_error(
        q, k, v, 16, orthogonal=False, draws=3, generator=generator
    )
    generator = torch.Generator().manual_seed(4)
    exact = F.scaled_dot_product_attention(q, k, v)
    expected = 0.0
    for _ in range(3):
        w = torch.randn(16, 8, dtype=torch.float64, generator=generator)
        expected += (
            (performer_attention(q, k, v, w) - exact).norm() / exact.norm()
        ).item() / 3
    assert got == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="draws must be a positive int"):
        performer_relative_error(
            q, k, v, 16, orthogonal=False, draws=0, generator=generator
        )


@pytest.mark.parametrize("kind", ["softmax", "elu", "exp"])
def test_one_layer_attention_against_a_float64_quadratic_reference(kind: str) -> None:
    torch.manual_seed(0)
    model = OneLayerAttention(kind).double()
    values, salience = torch.randn(2, 3, 7, dtype=torch.float64)
    tokens = model.embed(torch.stack((values, salience), -1))
    q, k, v = model.qkv(tokens).chunk(3, dim=-1)
    if kind == "softmax":
        weights = torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), -1)
    else:
        phi = {"elu": lambda x: F.elu(x) + 1, "exp": torch.exp}[kind]
        weights = phi(q) @ phi(k).mT
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-6)
    expected = model.read_out(weights @ v)[..., 0]
    got = model(values, salience)
    assert got.shape == (3, 7)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_one_layer_attention_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        OneLayerAttention("sigmoid")
    model = OneLayerAttention("elu")
    with pytest.raises(ValueError, match="must both be"):
        model(torch.randn(2, 5), torch.randn(2, 6))
