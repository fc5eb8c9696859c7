"""kexue.attention.fastformer against a per-token loop, and its padding and symmetry properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.attention.fastformer import (
    FastformerAttention,
    FastformerBlock,
    SequenceClassifier,
    TokenRegressor,
    explicit_softmax_attention,
)


def loop_reference(
    layer: FastformerAttention, x: torch.Tensor, length: int
) -> torch.Tensor:
    """The layer written out token by token for one sequence ``x`` of shape (seq, dim), first ``length``
    tokens real: plain sums over tokens, one head at a time, straight from the paper's equations
    (with the official code's score layers)."""
    heads, dh = layer.heads, layer.head_dim

    def linear(module: torch.nn.Linear, v: torch.Tensor) -> torch.Tensor:
        return module.weight.to(v.dtype) @ v + module.bias.to(v.dtype)

    real = range(length)
    q = [linear(layer.query, x[i]) for i in real]
    k = [linear(layer.key, x[i]) for i in real]
    v = q if layer.value is None else [linear(layer.value, x[i]) for i in real]

    def pool(score_layer: torch.nn.Linear, rows: list[torch.Tensor]) -> torch.Tensor:
        scores = [linear(score_layer, r) / math.sqrt(dh) for r in rows]  # each (heads,)
        pooled = torch.zeros_like(rows[0])
        for h in range(heads):
            top = max(s[h] for s in scores)
            weights = [torch.exp(s[h] - top) for s in scores]
            total = sum(weights)
            block = slice(h * dh, (h + 1) * dh)
            for w, r in zip(weights, rows, strict=True):
                pooled[block] += w / total * r[block]
        return pooled

    q_bar = pool(layer.query_score, q)
    p = [k_i * q_bar for k_i in k]
    k_bar = pool(layer.key_score, p)
    out = torch.stack([linear(layer.transform, k_bar * v_i) for v_i in v])
    if layer.query_residual:
        out = out + torch.stack(q)
    return out


@pytest.mark.parametrize("share_query_value", [True, False])
@pytest.mark.parametrize("query_residual", [True, False])
def test_matches_the_per_token_loop(
    share_query_value: bool, query_residual: bool, device: torch.device
) -> None:
    layer = FastformerAttention(
        12, 3, share_query_value=share_query_value, query_residual=query_residual
    )
    layer = layer.to(device, torch.float64)
    x = torch.randn(3, 7, 12, dtype=torch.float64, device=device)
    lengths = [7, 4, 1]
    mask = torch.arange(7, device=device) < torch.tensor(
        lengths, device=device
    ).unsqueeze(1)
    got = layer(x, mask)
    for b, length in enumerate(lengths):
        torch.testing.assert_close(
            got[b, :length], loop_reference(layer, x[b], length), rtol=1e-12, atol=1e-12
        )


def test_pooling_weights_sum_to_one_and_vanish_on_padding(device: torch.device) -> None:
    layer = FastformerAttention(8, 2).to(device)
    x = torch.randn(2, 6, 8, device=device)
    mask = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool, device=device
    )
    _, alpha, beta = layer(x, mask, return_weights=True)
    for weights in (alpha, beta):
        assert weights.shape == (2, 6, 2)
        torch.testing.assert_close(weights.sum(1), torch.ones(2, 2, device=device))
        assert (weights[1, 3:] == 0).all()


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 9),
    extra=st.integers(0, 12),
    heads=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_real_outputs_do_not_depend_on_trailing_padding(
    length: int, extra: int, heads: int, seed: int
) -> None:
    torch.manual_seed(seed)
    layer = FastformerAttention(8, heads).double()
    x = torch.randn(1, length, 8, dtype=torch.float64)
    padded = torch.cat([x, 100 * torch.randn(1, extra, 8, dtype=torch.float64)], dim=1)
    mask = torch.arange(length + extra) < length
    short = layer(x)
    long = layer(padded, mask.unsqueeze(0))
    torch.testing.assert_close(long[:, :length], short, rtol=1e-12, atol=1e-12)


def test_padding_may_hold_anything_even_nan(device: torch.device) -> None:
    layer = FastformerBlock(8, 2).to(device)
    x = torch.randn(2, 5, 8, device=device)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool, device=device
    )
    poisoned = x.clone()
    poisoned[~mask] = float("nan")
    clean, dirty = layer(x, mask), layer(poisoned, mask)
    torch.testing.assert_close(dirty[mask], clean[mask], rtol=0, atol=0)
    assert torch.isfinite(dirty[mask]).all()


def test_a_sequence_of_only_padding_stays_finite() -> None:
    layer = FastformerAttention(8, 2)
    out = layer(torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool))
    assert torch.equal(out, torch.zeros_like(out))  # zeros, not NaN


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), length=st.integers(2, 10))
def test_permutation_equivariance(seed: int, length: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = FastformerBlock(8, 2).double()
    x = torch.randn(2, length, 8, dtype=torch.float64, generator=generator)
    perm = torch.randperm(length, generator=generator)
    torch.testing.assert_close(
        layer(x[:, perm]), layer(x)[:, perm], rtol=1e-12, atol=1e-12
    )


def test_gradients_reach_every_parameter_and_the_input() -> None:
    layer = FastformerAttention(6, 2, share_query_value=False).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda t: layer(t, mask), (x,))
    layer(x, mask)[mask].sum().backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert (x.grad[1, 2:] == 0).all()  # padded inputs get no gradient from real outputs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_close_to_float32(
    dtype: torch.dtype, device: torch.device
) -> None:
    layer = FastformerBlock(32, 4).to(device)
    x = torch.randn(2, 16, 32, device=device)
    mask = torch.arange(16, device=device) < torch.tensor(
        [16, 9], device=device
    ).unsqueeze(1)
    reference = layer(x, mask)
    got = layer.to(dtype)(x.to(dtype), mask)
    assert got.dtype == dtype
    # measured on the CPU over 20 seeds: at most 0.004 (float16) and 0.025 (bfloat16) on these
    # LayerNorm-scale outputs, i.e. a few units in the last place of each format
    assert (got.float() - reference)[mask].abs().max() < {
        torch.float16: 0.02,
        torch.bfloat16: 0.1,
    }[dtype]


def test_ablations_change_the_parameters() -> None:
    shared = FastformerAttention(8, 2)
    separate = FastformerAttention(8, 2, share_query_value=False)
    assert shared.value is None and separate.value is not None
    count = sum(p.numel() for p in shared.parameters())
    assert count == 3 * (8 * 8 + 8) + 2 * (
        8 * 2 + 2
    )  # query, key, transform (no value); two scores
    assert sum(p.numel() for p in separate.parameters()) == count + 8 * 8 + 8
    no_residual = FastformerAttention(8, 2, query_residual=False)
    no_residual.load_state_dict(shared.state_dict())
    x = torch.randn(1, 3, 8)
    torch.testing.assert_close(shared(x) - no_residual(x), shared.query(x))


def test_official_initialisation() -> None:
    layer = FastformerAttention(64, 4)
    layer.reset_parameters(std=0.02)
    assert (layer.query.bias == 0).all()
    assert abs(layer.key.weight.std().item() - 0.02) < 0.002
    layer.reset_parameters()
    assert (layer.query.bias != 0).any()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        FastformerAttention(10, 3)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        FastformerAttention(8, 0)
    with pytest.raises(ValueError, match="ffn_dim must be a positive int"):
        FastformerBlock(8, 2, ffn_dim=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        FastformerBlock(8, 2, dropout=1.0)
    layer = FastformerAttention(8, 2)
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        layer(torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, 8\)"):
        layer(torch.randn(1, 4, 6))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        layer(torch.ones(1, 4, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        layer([[0.0] * 8])
    x = torch.randn(2, 4, 8)
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        layer(x, torch.ones(2, 4))
    with pytest.raises(
        ValueError, match=r"mask must have shape \(batch, seq\) = \(2, 4\)"
    ):
        layer(x, torch.ones(2, 5, dtype=torch.bool))


def test_explicit_softmax_attention_matches_torch_in_float64(
    device: torch.device,
) -> None:
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).to(device, torch.float64)
    x = torch.randn(2, 9, 16, dtype=torch.float64, device=device)
    expected = mha(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(
        explicit_softmax_attention(mha, x), expected, rtol=1e-12, atol=1e-12
    )


def test_explicit_softmax_attention_rejects_bad_input() -> None:
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(TypeError, match=r"mha must be nn\.MultiheadAttention"):
        explicit_softmax_attention(torch.nn.Linear(8, 8), torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="batch_first"):
        explicit_softmax_attention(
            torch.nn.MultiheadAttention(8, 2), torch.randn(1, 3, 8)
        )
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, 8\)"):
        explicit_softmax_attention(mha, torch.randn(1, 3, 6))


@pytest.mark.parametrize("kind", TokenRegressor.KINDS)
def test_token_regressor_shapes_and_equivariance(kind: str) -> None:
    torch.manual_seed(0)
    model = TokenRegressor(kind, 5, width=16).double().eval()
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    out = model(x)
    assert out.shape == (3, 7)
    order = torch.randperm(7)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, order]), model(x)[:, order])


def test_token_regressor_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        TokenRegressor("linear attention", 5)


@pytest.mark.parametrize(
    ("query_residual", "init_std"), [(True, 0.02), (False, None), (None, None)]
)
def test_sequence_classifier_ignores_padding(
    query_residual: bool | None, init_std: float | None
) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(query_residual, init_std, width=16).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)
    logits = model(x, mask)
    assert logits.shape == (2, 4)
    alone = model(x[1:, :3], mask[1:, :3])
    torch.testing.assert_close(logits[1:], alone, rtol=1e-12, atol=1e-12)
    if init_std is not None:
        assert (model.block.attention.query.bias == 0).all()
