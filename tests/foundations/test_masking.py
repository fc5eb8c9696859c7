"""kexue.foundations.masking against float64 loops written from the definitions.

References never call kexue: softmax row by row with Python floats, reductions as loops
over the valid entries, masks from their defining inequalities, and torch's own SDPA
for what ``is_causal`` means.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.foundations.masking import (
    as_sdpa_mask,
    causal_mask,
    keep_mask,
    lengths_to_mask,
    mask_to_bias,
    masked_max,
    masked_mean,
    masked_softmax,
    masked_sum,
    reverse_padded,
)

FAST = settings(max_examples=40, deadline=None)


def softmax_loop(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of ``logits + bias`` (float64, ``-inf`` bias drops);
    a row with nothing kept is zeros."""
    x = logits.double()
    b = bias.double().expand_as(x)
    out = torch.zeros(x.shape, dtype=torch.float64)
    flat_x, flat_b = x.reshape(-1, x.shape[-1]), b.reshape(-1, x.shape[-1])
    flat_o = out.view(-1, x.shape[-1])
    for r in range(flat_x.shape[0]):
        kept = [j for j in range(x.shape[-1]) if flat_b[r, j] > -math.inf]
        if not kept:
            continue
        z = [flat_x[r, j].item() + flat_b[r, j].item() for j in kept]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        for j, w in zip(kept, e, strict=True):
            flat_o[r, j] = w / math.fsum(e)
    return out


def reduce_loop(x: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    x64, keep = x.double(), mask.expand_as(x)
    rows = []
    for r in range(x.shape[0]):
        vals = [x64[r, j].item() for j in range(x.shape[1]) if keep[r, j]]
        if not vals:
            rows.append(0.0)
        elif how == "sum":
            rows.append(math.fsum(vals))
        elif how == "mean":
            rows.append(math.fsum(vals) / len(vals))
        else:
            rows.append(max(vals))
    return torch.tensor(rows, dtype=torch.float64)


shapes = st.tuples(st.integers(1, 4), st.integers(1, 7))


@FAST
@given(shape=shapes, seed=st.integers(0, 2**16), p=st.floats(0.0, 1.0))
def test_softmax_under_a_boolean_mask_matches_the_loop(shape, seed, p) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 4
    keep = torch.rand(shape, generator=g) < p
    bias = torch.zeros(shape, dtype=torch.float64).masked_fill(~keep, -math.inf)
    torch.testing.assert_close(
        masked_softmax(x, keep), softmax_loop(x, bias), atol=1e-14, rtol=0
    )


@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_a_float_mask_is_an_additive_bias(shape, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    bias = torch.randn(shape, generator=g, dtype=torch.float64) * 3  # ALiBi-like
    bias = bias.masked_fill(torch.rand(shape, generator=g) < 0.3, -math.inf)
    torch.testing.assert_close(
        masked_softmax(x, bias), softmax_loop(x, bias), atol=1e-14, rtol=0
    )
    # the boolean form of the same mask drops the same entries
    as_bool = masked_softmax(x + bias.clamp_min(-1e300), keep_mask(bias))
    torch.testing.assert_close(as_bool, masked_softmax(x, bias), atol=1e-14, rtol=0)


def test_fully_masked_rows_are_zero_with_zero_gradient() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        bias[1] = -math.inf
    out = masked_softmax(x, bias)
    (out * torch.randn(3, 4, dtype=torch.float64)).sum().backward()
    assert torch.all(out[1] == 0)
    assert torch.all(x.grad[1] == 0) and torch.all(bias.grad[1] == 0)
    assert torch.isfinite(x.grad).all() and torch.isfinite(bias.grad).all()


def test_dropped_nan_and_inf_do_not_leak() -> None:
    x = torch.tensor([[math.nan, math.inf, 1.0, 2.0]], requires_grad=True)
    keep = torch.tensor([False, False, True, True])
    for mask in (keep, mask_to_bias(keep, torch.float32)):
        out = masked_softmax(x, mask)
        out[0, 2].backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        expected = torch.tensor([0.0, 0.0, 1 / (1 + math.e), math.e / (1 + math.e)])
        torch.testing.assert_close(out[0], expected)
        x.grad = None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    x = (torch.rand(4, 9) * 6e4).to(dtype)  # exp sums that overflow float16
    out = masked_softmax(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = softmax_loop(x.double(), torch.zeros(9, dtype=torch.float64))
    torch.testing.assert_close(out.double(), ref, atol=8e-3, rtol=0)


def test_masked_softmax_errors_name_their_argument() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="mask must be boolean"):
        masked_softmax(x, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="mask of shape"):
        masked_softmax(x, torch.ones(4, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="dim must be in"):
        masked_softmax(x, dim=2)
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        masked_softmax(torch.ones(2, 3, dtype=torch.long))


@FAST
@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    how=st.sampled_from(["sum", "mean", "max"]),
)
def test_reductions_match_loops(shape, seed, how) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) < 0.5
    fn = {"sum": masked_sum, "mean": masked_mean, "max": masked_max}[how]
    torch.testing.assert_close(
        fn(x, mask, 1), reduce_loop(x, mask, how), atol=1e-14, rtol=0
    )
    kept = fn(x, mask[:, :1], dim=1, keepdim=True)  # broadcast (rows, 1) mask
    torch.testing.assert_close(
        kept[:, 0], reduce_loop(x, mask[:, :1], how), atol=1e-14, rtol=0
    )


@pytest.mark.parametrize("fn", [masked_sum, masked_mean, masked_max])
def test_reductions_ignore_masked_nan_and_have_zero_gradient_on_empty_rows(fn) -> None:
    x = torch.tensor([[math.nan, 1.0, -2.0], [math.inf, 3.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[False, True, True], [False, False, False]])
    out = fn(x, mask, 1)
    out.sum().backward()
    assert torch.isfinite(out).all() and out[1] == 0
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[1] == 0)
    assert torch.all(x.grad[0, 0] == 0)


def test_masked_max_of_minus_infinity_is_minus_infinity() -> None:
    x = torch.tensor([[-math.inf, -math.inf, 5.0]])
    assert masked_max(x, torch.tensor([[True, True, False]]), 1).item() == -math.inf


def test_reduction_errors_name_their_argument() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="mask must be boolean"):
        masked_sum(x, torch.ones(2, 3), 1)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        masked_mean(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3).bool(), 1)
    with pytest.raises(ValueError, match="dim must be in"):
        masked_max(x, torch.ones(2, 3).bool(), -3)


@FAST
@given(lengths=st.lists(st.integers(0, 6), max_size=5), extra=st.integers(0, 3))
def test_lengths_to_mask_matches_the_inequality(lengths, extra) -> None:
    t = torch.tensor(lengths, dtype=torch.long)
    width = max(lengths, default=0) + extra
    expected = torch.tensor(
        [[j < n for j in range(width)] for n in lengths], dtype=torch.bool
    ).reshape(len(lengths), width)
    assert torch.equal(lengths_to_mask(t, width), expected)
    if extra == 0:
        assert torch.equal(lengths_to_mask(t), expected)


def test_lengths_to_mask_errors() -> None:
    with pytest.raises(ValueError, match="at most max_len"):
        lengths_to_mask(torch.tensor([1, 4]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        lengths_to_mask(torch.tensor([1, -1]))
    with pytest.raises(TypeError, match="max_len must be an int"):
        lengths_to_mask(torch.tensor([1]), 2.5)
    with pytest.raises(ValueError, match="max_len must be given"):
        lengths_to_mask(torch.empty(2, dtype=torch.long, device="meta"))


@FAST
@given(n=st.integers(1, 7), m=st.integers(1, 7))
def test_causal_mask_is_sdpa_is_causal(n, m) -> None:
    """SDPA's is_causal aligns at the top left (query i sees keys j <= i) for every
    n and m; causal_mask is the same mask."""
    mask = causal_mask(n, m)
    assert torch.equal(
        mask, torch.tensor([[j <= i for j in range(m)] for i in range(n)])
    )
    g = torch.Generator().manual_seed(n * 8 + m)
    q, k, v = (torch.randn(1, s, 3, generator=g) for s in (n, m, m))
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


@FAST
@given(n=st.integers(0, 7), m=st.integers(0, 7))
def test_bottom_right_causal_mask_is_the_kv_cache_alignment(n, m) -> None:
    mask = causal_mask(n, m, align="bottom_right")
    expected = torch.tensor(
        [[j <= i + m - n for j in range(m)] for i in range(n)], dtype=torch.bool
    ).reshape(n, m)
    assert torch.equal(mask, expected)


def test_causal_mask_errors() -> None:
    with pytest.raises(TypeError, match="n must be an int"):
        causal_mask(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="align must be one of"):
        causal_mask(2, align="left")
    with pytest.raises(ValueError, match="device='gpu0'"):
        causal_mask(2, device="gpu0")


@FAST
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    features=st.integers(0, 2),
)
def test_reverse_padded_matches_the_loop_and_is_an_involution(lengths, features):
    x = torch.randn(len(lengths), 5, *([2] * features))
    t = torch.tensor(lengths)
    expected = x.clone()
    for b, n in enumerate(lengths):
        for i in range(n):
            expected[b, i] = x[b, n - 1 - i]
    out = reverse_padded(x, t)
    assert torch.equal(out, expected)
    assert torch.equal(reverse_padded(out, t), x)


def test_reverse_padded_errors() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\]"):
        reverse_padded(x, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="lengths must have 2 entries"):
        reverse_padded(x, torch.tensor([1]))
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        reverse_padded(x, torch.tensor([1.0, 2.0]))


def test_sdpa_mask_conversions() -> None:
    keep = torch.tensor([[True, False]])
    assert as_sdpa_mask(keep) is keep and as_sdpa_mask(None) is None
    with pytest.raises(TypeError, match="attn_mask must be boolean"):
        as_sdpa_mask(torch.ones(2, dtype=torch.long), "attn_mask")
    bias = mask_to_bias(keep, torch.float16)
    assert bias.dtype == torch.float16 and bias.tolist() == [[0.0, -math.inf]]
    assert mask_to_bias(torch.tensor(False), torch.float32).item() == -math.inf
    assert keep_mask(torch.tensor([0.0, -1e30, -math.inf])).tolist() == [
        True,
        True,
        False,
    ]
    with pytest.raises(TypeError, match="dtype must be a floating"):
        mask_to_bias(keep, torch.int64)
    with pytest.raises(TypeError, match=r"mask must be a torch\.Tensor"):
        keep_mask(None)  # type: ignore[arg-type]
