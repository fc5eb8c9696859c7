"""kexue.attention.entropy_scale against torch SDPA and explicit softmax references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.attention.entropy_scale import (
    SalientValueHead,
    attention_entropy,
    entropy_gap,
    entropy_invariant_scale,
    laplace_entropy_gap,
    scaled_attention,
    visible_keys,
)


def reference_attention(q, k, v, row_scale, allowed):
    """softmax(row_scale * q k^T) v, written out with an explicit -inf mask."""
    scores = (q @ k.mT) * row_scale
    scores = scores.masked_fill(~allowed, -math.inf)
    return torch.softmax(scores, dim=-1) @ v


def test_scale_values() -> None:
    assert entropy_invariant_scale(512, 64).item() == pytest.approx(1 / 8)
    assert entropy_invariant_scale(64, 64, train_length=64).item() == pytest.approx(
        1 / 8
    )
    assert entropy_invariant_scale(4096, 64).item() == pytest.approx(
        math.log(4096) / math.log(512) / 8
    )
    counts = torch.tensor([0, 1, 2, 16, 512])
    expected = [
        0.0,
        0.0,
        math.log(2) / math.log(512) / 8,
        math.log(16) / math.log(512) / 8,
        1 / 8,
    ]
    assert entropy_invariant_scale(counts, 64).tolist() == pytest.approx(expected)
    clamped = entropy_invariant_scale(counts, 64, min_length=16)
    assert clamped.tolist() == pytest.approx([expected[3]] * 4 + [1 / 8])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head_dim": 0}, "head_dim"),
        ({"head_dim": 8, "train_length": 1}, "train_length"),
        ({"head_dim": 8, "min_length": 0}, "min_length"),
    ],
)
def test_scale_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entropy_invariant_scale(10, **kwargs)


def test_scale_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        entropy_invariant_scale(torch.tensor([3, -1]), 8)


@pytest.mark.parametrize("causal", [False, True])
def test_standard_scale_is_torch_sdpa(causal: bool, device: torch.device) -> None:
    q, k, v = torch.randn(3, 2, 4, 9, 16, dtype=torch.float64, device=device)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(scaled_attention(q, k, v, causal=causal), expected)


def test_standard_scale_with_boolean_and_additive_masks() -> None:
    q, k, v = torch.randn(3, 2, 3, 6, 8, dtype=torch.float64)
    keep = torch.rand(2, 1, 6, 6) > 0.3
    keep[..., 0] = True  # no empty rows here
    additive = torch.zeros(2, 1, 6, 6, dtype=torch.float64).masked_fill(
        ~keep, -math.inf
    )
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(scaled_attention(q, k, v, mask=keep), expected)
    torch.testing.assert_close(scaled_attention(q, k, v, mask=additive), expected)


def test_entropy_invariant_scale_uses_per_row_counts_in_causal_attention() -> None:
    q, k, v = torch.randn(3, 1, 2, 10, 8, dtype=torch.float64)
    got = scaled_attention(
        q, k, v, scale="entropy_invariant", causal=True, train_length=10
    )
    counts = torch.arange(1, 11, dtype=torch.float64)[:, None]  # row i sees i + 1 keys
    row_scale = torch.log(counts) / math.log(10) / math.sqrt(8)
    allowed = torch.ones(10, 10, dtype=torch.bool).tril()
    torch.testing.assert_close(got, reference_attention(q, k, v, row_scale, allowed))


def test_entropy_invariant_scale_counts_unmasked_keys() -> None:
    q, k, v = torch.randn(3, 2, 1, 5, 4, dtype=torch.float64)
    keep = torch.tensor([[True, True, False, False, False], [True] * 5])[
        :, None, None, :
    ]  # padding
    got = scaled_attention(
        q, k, v, scale="entropy_invariant", mask=keep, train_length=5, min_length=None
    )
    counts = keep.sum(-1, keepdim=True).double()
    row_scale = torch.log(counts) / math.log(5) / 2
    torch.testing.assert_close(got, reference_attention(q, k, v, row_scale, keep))


def test_equals_standard_at_the_training_length() -> None:
    q, k, v = torch.randn(3, 2, 2, 64, 16, dtype=torch.float64)
    torch.testing.assert_close(
        scaled_attention(q, k, v, scale="entropy_invariant", train_length=64),
        scaled_attention(q, k, v),
    )


def test_fixed_numeric_scale() -> None:
    q, k, v = torch.randn(3, 1, 1, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(
        scaled_attention(q, k, v, scale=0.3),
        F.scaled_dot_product_attention(q, k, v, scale=0.3),
    )


@pytest.mark.parametrize("scale", ["standard", "entropy_invariant"])
def test_rows_without_keys_are_zero_and_not_nan(scale: str) -> None:
    q, k, v = torch.randn(3, 1, 1, 4, 4, dtype=torch.float64)
    q.requires_grad_(True)
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[2] = False  # query 2 may see nothing
    out = scaled_attention(q, k, v, scale=scale, mask=keep)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 0, 2], torch.zeros(4, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(
        q.grad[0, 0, 2], torch.zeros(4, dtype=torch.float64)
    )


def test_gradients_flow_through_both_scales() -> None:
    q, k, v = torch.randn(3, 1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    for scale in ("standard", "entropy_invariant"):
        assert torch.autograd.gradcheck(
            lambda a, b, c, s=scale: scaled_attention(
                a, b, c, scale=s, causal=True, train_length=5
            ),
            (q, k, v),
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_stays_close(dtype: torch.dtype, device: torch.device) -> None:
    q, k, v = torch.randn(3, 2, 2, 32, 16, device=device)
    exact = scaled_attention(
        q.double(), k.double(), v.double(), scale="entropy_invariant", causal=True
    )
    got = scaled_attention(
        q.to(dtype), k.to(dtype), v.to(dtype), scale="entropy_invariant", causal=True
    )
    assert got.dtype == dtype
    assert (got.double() - exact).abs().max() < 20 * torch.finfo(dtype).eps


def test_shape_and_scale_errors() -> None:
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="q and k must have the same last dimension"):
        scaled_attention(q, torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="batch, heads, seq, dim"):
        scaled_attention(torch.randn(2, 3, 4), q, q)
    with pytest.raises(ValueError, match=r"mask of shape .* must broadcast"):
        scaled_attention(q, q, q, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="scale must be"):
        scaled_attention(q, q, q, scale="log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be"):
        scaled_attention(q, q, q, scale=float("nan"))


def test_visible_keys_combines_mask_and_causality() -> None:
    keep = torch.tensor([True, False, True])
    allowed = visible_keys(3, 3, mask=keep, causal=True)
    assert allowed.tolist() == [
        [True, False, False],
        [True, False, False],
        [True, False, True],
    ]


def test_attention_entropy() -> None:
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    torch.testing.assert_close(
        attention_entropy(probs), torch.tensor([0.0, math.log(2), math.log(3)])
    )
    logits = torch.randn(4, 7, requires_grad=True)
    entropy = attention_entropy(torch.softmax(logits, -1))
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(TypeError, match="floating"):
        attention_entropy(torch.ones(3, dtype=torch.long))


def test_entropy_gap_against_the_closed_form_in_three_dimensions() -> None:
    # d = 3: c = cos(theta) is uniform on [-1, 1], so with a = 3 lam
    # E[e^(a c)] = sinh(a)/a and H - log n = log(sinh(a)/a) - a coth(a) + 1.
    for lam in (0.05, 0.3, 1.0, 2.5):
        a = 3 * lam
        exact = math.log(math.sinh(a) / a) - a / math.tanh(a) + 1
        assert entropy_gap(lam, 3) == pytest.approx(exact, rel=1e-12, abs=1e-14)


def test_entropy_gap_against_monte_carlo() -> None:
    generator = torch.Generator().manual_seed(0)
    q = F.normalize(
        torch.randn(64, 16, generator=generator, dtype=torch.float64), dim=-1
    )
    k = F.normalize(
        torch.randn(20000, 16, generator=generator, dtype=torch.float64), dim=-1
    )
    scores = 16 * q @ k.T
    lam = 0.4
    measured = attention_entropy(torch.softmax(lam * scores, -1)).mean().item()
    assert measured - math.log(20000) == pytest.approx(entropy_gap(lam, 16), abs=0.02)


def test_laplace_gap() -> None:
    golden = (math.sqrt(5) - 1) / 2
    assert laplace_entropy_gap(1.0, 64) == pytest.approx(
        32 * math.log(golden), rel=1e-14
    )
    # small lam: c* ~ lam, so the gap is -d lam^2 / 2 to leading order
    assert laplace_entropy_gap(1e-4, 64) == pytest.approx(-32e-8, rel=1e-6)
    for lam in (0.125, 0.5, 1.0):  # within 1 % of the quadrature at d = 64
        assert laplace_entropy_gap(lam, 64) == pytest.approx(
            entropy_gap(lam, 64), rel=0.01
        )


@pytest.mark.parametrize("function", [entropy_gap, laplace_entropy_gap])
def test_gap_functions_reject_bad_arguments(function) -> None:
    with pytest.raises(ValueError, match="head_dim"):
        function(1.0, 2)
    with pytest.raises(ValueError, match="lam"):
        function(0.0, 8)
    with pytest.raises(ValueError, match="lam"):
        function(math.inf, 8)
    with pytest.raises(TypeError, match="lam"):
        function("1", 8)


def test_salient_value_head_scales_agree_at_the_training_length() -> None:
    torch.manual_seed(0)
    model = SalientValueHead(8, train_length=16).double()
    values, salience = torch.randn(2, 3, 16, dtype=torch.float64)
    standard = model(values, salience)
    standard_entropy = model.entropy(values, salience).item()
    model.scale = "entropy_invariant"
    torch.testing.assert_close(model(values, salience), standard, rtol=0, atol=1e-14)
    assert model.entropy(values, salience).item() == pytest.approx(standard_entropy)
    assert standard.shape == (3, 16)
    assert 0 < standard_entropy <= math.log(16)
    longer = torch.randn(2, 3, 64, dtype=torch.float64)
    assert model(*longer).shape == (3, 64)


def test_salient_value_head_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="width"):
        SalientValueHead(0)
    with pytest.raises(ValueError, match="train_length"):
        SalientValueHead(8, train_length=1)
    model = SalientValueHead(8)
    with pytest.raises(ValueError, match="values and salience"):
        model(torch.randn(3, 5), torch.randn(3, 6))
