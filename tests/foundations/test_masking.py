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
from torch import nn

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
    padded_bidirectional,
    reverse_padded,
    split_bidirectional,
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


def packed_bidirectional(rnn: nn.RNNBase, x: torch.Tensor, lengths: list[int]):
    """torch's own answer: ``rnn`` over ``pack_padded_sequence``, zeros at the padding
    (rows of length 0, which packing refuses, are zeros)."""
    out_width = rnn.hidden_size if rnn.proj_size == 0 else rnn.proj_size
    out = torch.zeros(*x.shape[:2], 2 * out_width, dtype=x.dtype)
    rows = [b for b, n in enumerate(lengths) if n > 0]
    if rows:
        packed = nn.utils.rnn.pack_padded_sequence(
            x[rows].nan_to_num(),  # NaN padding must not matter to the reference either
            torch.tensor([lengths[b] for b in rows]),
            batch_first=True,
            enforce_sorted=False,
        )
        y = nn.utils.rnn.pad_packed_sequence(
            rnn(packed)[0], batch_first=True, total_length=x.shape[1]
        )[0]
        out[rows] = y
    return out


RNNS = {
    "gru": lambda: nn.GRU(3, 5, batch_first=True, bidirectional=True),
    "lstm": lambda: nn.LSTM(3, 5, bidirectional=True),  # batch_first=False on purpose
    "lstm-proj": lambda: nn.LSTM(
        3, 5, batch_first=True, bidirectional=True, proj_size=2
    ),
    "relu-rnn": lambda: nn.RNN(
        3, 5, batch_first=True, bidirectional=True, nonlinearity="relu"
    ),
}


@pytest.mark.parametrize("kind", sorted(RNNS))
@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=4), seed=st.integers(0, 99)
)
def test_split_halves_over_reversed_padding_match_packed_sequences(kind, lengths, seed):
    torch.manual_seed(seed)
    rnn = RNNS[kind]().double()
    width = max(lengths) + 1
    x = torch.randn(len(lengths), width, 3, dtype=torch.float64)
    real = torch.tensor([[t < n for t in range(width)] for n in lengths])
    x = x.masked_fill(~real[..., None], math.nan)  # padding that holds garbage
    with torch.no_grad():
        ours = padded_bidirectional(*split_bidirectional(rnn), x, torch.tensor(lengths))
        reference = packed_bidirectional(rnn, x, lengths)
    torch.testing.assert_close(ours, reference, atol=1e-14, rtol=0)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    extra=st.integers(0, 6),
    fill=st.sampled_from([0.0, 1e4, -1e4, math.nan, math.inf]),
    seed=st.integers(0, 99),
)
def test_results_do_not_change_with_the_amount_of_padding(lengths, extra, fill, seed):
    """Every masked result at the real entries is the same for 0 or ``extra`` more
    padding slots, whatever they hold."""
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(lengths)
    x = torch.randn(len(lengths), 5, 3, generator=g, dtype=torch.float64)
    x = x.masked_fill(~lengths_to_mask(t, 5)[..., None], fill)
    longer = F.pad(x, (0, 0, 0, extra), value=fill)
    mask, longer_mask = lengths_to_mask(t, 5), lengths_to_mask(t, 5 + extra)
    for fn in (masked_sum, masked_mean, masked_max):
        assert torch.equal(
            fn(x, mask[..., None], 1), fn(longer, longer_mask[..., None], 1)
        )
    soft = masked_softmax(x[..., 0], mask)
    torch.testing.assert_close(
        masked_softmax(longer[..., 0], longer_mask)[:, :5], soft, atol=1e-15, rtol=0
    )
    torch.manual_seed(seed)
    halves = split_bidirectional(nn.GRU(3, 4, bidirectional=True).double())
    with torch.no_grad():
        short = padded_bidirectional(*halves, x, t)
        long = padded_bidirectional(*halves, longer, t)
    # the input projection is one GEMM over all steps: its size changes the rounding
    torch.testing.assert_close(long[:, :5], short, atol=1e-15, rtol=0)
    assert long[:, 5:].eq(0).all()


def test_padded_bidirectional_merges_by_sum_and_takes_any_causal_layer() -> None:
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    lengths = torch.tensor([4, 2, 0])
    # a causal layer that is not an RNN: the running sum over time
    out = padded_bidirectional(
        lambda s: s.cumsum(1), lambda s: s.cumsum(1) * 2, x, lengths, merge="sum"
    )
    expected = torch.zeros_like(x)
    for b, n in enumerate(lengths.tolist()):
        for t in range(n):
            expected[b, t] = x[b, : t + 1].sum(0) + 2 * x[b, t:n].sum(0)
    torch.testing.assert_close(out, expected, atol=1e-14, rtol=0)


def test_padded_bidirectional_empty_and_gradients() -> None:
    halves = split_bidirectional(nn.GRU(3, 4, batch_first=True, bidirectional=True))
    assert padded_bidirectional(
        *halves, torch.randn(2, 0, 3), torch.tensor([0, 0])
    ).shape == (
        2,
        0,
        8,
    )
    empty_batch = torch.randn(0, 5, 3)
    out = padded_bidirectional(*halves, empty_batch, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 5, 8)
    x = torch.randn(2, 5, 3, requires_grad=True)
    padded_bidirectional(*halves, x, torch.tensor([3, 5])).sum().backward()
    assert torch.all(x.grad[0, 3:] == 0) and torch.isfinite(x.grad).all()


def test_split_bidirectional_copies_configuration_and_weights() -> None:
    rnn = nn.LSTM(3, 5, bidirectional=True, proj_size=2).double().eval()
    forward, backward = split_bidirectional(rnn)
    for half, suffix in ((forward, ""), (backward, "_reverse")):
        assert type(half) is nn.LSTM and half.batch_first and not half.bidirectional
        assert half.proj_size == 2 and not half.training
        for name, p in half.named_parameters():
            assert p.dtype == torch.float64
            assert torch.equal(p, getattr(rnn, name + suffix))
            assert p.data_ptr() != getattr(rnn, name + suffix).data_ptr()  # copies


def test_padded_bidirectional_and_split_errors_name_their_argument() -> None:
    gru = nn.GRU(3, 4, batch_first=True)
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
    with pytest.raises(TypeError, match="forward must be callable"):
        padded_bidirectional("gru", gru, x, lengths)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backward must have batch_first=True"):
        padded_bidirectional(gru, nn.GRU(3, 4), x, lengths)
    with pytest.raises(ValueError, match="merge must be one of"):
        padded_bidirectional(gru, gru, x, lengths, merge="mean")
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        padded_bidirectional(gru, gru, x[0], lengths)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        padded_bidirectional(gru, gru, x, torch.tensor([6, 1]))
    with pytest.raises(TypeError, match="backward must return a tensor"):
        padded_bidirectional(gru, lambda s: s.tolist(), x, lengths)
    with pytest.raises(ValueError, match="forward must return"):
        padded_bidirectional(lambda s: s[:, 1:], gru, x, lengths)
    with pytest.raises(ValueError, match="cannot be merged by 'sum'"):
        padded_bidirectional(gru, lambda s: s, x, lengths, merge="sum")
    with pytest.raises(TypeError, match=r"rnn must be an nn\.RNN"):
        split_bidirectional(nn.Linear(3, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_layers=2"):
        split_bidirectional(nn.GRU(3, 4, num_layers=2, bidirectional=True))
    with pytest.raises(ValueError, match="bidirectional=False"):
        split_bidirectional(gru)
