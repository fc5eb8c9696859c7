"""kexue.representations.globalpointer against naive float64 loops (both heads, with
RoPE written out as explicit 2x2 rotations), the brute-force pairwise form of the loss
and pytorch-metric-learning's ``logsumexp(..., add_one=True)``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from kexue.representations import WordPieceTokenizer, load_minilm
from kexue.representations.globalpointer import (
    ENTITY_TYPES,
    EfficientGlobalPointer,
    GlobalPointer,
    decode_spans,
    multilabel_categorical_crossentropy,
    nested_entity_task,
    span_f1,
)

F64 = torch.float64
mlce = multilabel_categorical_crossentropy


# ---------------------------------------------------------------- references
def pairwise_loss64(s: list[float], pos: list[bool]) -> float:
    """The loss before factorising (archive 7359): every (negative, positive) pair, every
    negative against the threshold 0 and the threshold against every positive."""
    neg_s = [v for v, p in zip(s, pos, strict=True) if not p]
    pos_s = [v for v, p in zip(s, pos, strict=True) if p]
    total = 1.0
    total += sum(math.exp(a - b) for a in neg_s for b in pos_s)
    total += sum(math.exp(a) for a in neg_s) + sum(math.exp(-b) for b in pos_s)
    return math.log(total)


def rotate64(x: torch.Tensor, position: int) -> torch.Tensor:
    """RoPE by its definition: pair (2k, 2k+1) times the rotation by
    position * 10000^(-2k/d)."""
    out = x.clone()
    for k in range(x.shape[0] // 2):
        angle = position * 10000.0 ** (-2 * k / x.shape[0])
        c, s = math.cos(angle), math.sin(angle)
        out[2 * k] = c * x[2 * k] - s * x[2 * k + 1]
        out[2 * k + 1] = s * x[2 * k] + c * x[2 * k + 1]
    return out


def gp_loop64(
    model: GlobalPointer, h: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """GlobalPointer's scores, one span at a time, in float64."""
    w, b = model.dense.weight.double(), model.dense.bias.double()
    d, types = model.head_size, model.num_types
    batch, seq, _ = h.shape
    out = torch.full((batch, types, seq, seq), -math.inf, dtype=F64)
    for n in range(batch):
        proj = h[n].double() @ w.T + b  # (seq, types * 2d): per type q then k
        for t in range(types):
            for i in range(seq):
                for j in range(i, seq):
                    if not (mask[n, i] and mask[n, j]):
                        continue
                    q = proj[i, t * 2 * d : t * 2 * d + d]
                    k = proj[j, t * 2 * d + d : (t + 1) * 2 * d]
                    if model.rope:
                        q, k = rotate64(q, i), rotate64(k, j)
                    out[n, t, i, j] = q @ k / math.sqrt(d)
    return out


def egp_loop64(
    model: EfficientGlobalPointer, h: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Efficient GlobalPointer's scores by the article's formula, in float64:
    q_i^T k_j / sqrt(d) + (w_end . [q_j; k_j] + w_start . [q_i; k_i]) / 2."""
    w, b = model.dense.weight.double(), model.dense.bias.double()
    tw, tb = model.type_dense.weight.double(), model.type_dense.bias.double()
    d, types = model.head_size, model.num_types
    batch, seq, _ = h.shape
    out = torch.full((batch, types, seq, seq), -math.inf, dtype=F64)
    for n in range(batch):
        proj = h[n].double() @ w.T + b  # (seq, 2d), q and k interleaved
        for t in range(types):
            for i in range(seq):
                for j in range(i, seq):
                    if not (mask[n, i] and mask[n, j]):
                        continue
                    q, k = proj[i, ::2], proj[j, 1::2]
                    if model.rope:
                        q, k = rotate64(q, i), rotate64(k, j)
                    end = tw[2 * t] @ proj[j] + tb[2 * t]
                    start = tw[2 * t + 1] @ proj[i] + tb[2 * t + 1]
                    out[n, t, i, j] = q @ k / math.sqrt(d) + (end + start) / 2
    return out


def padded(batch: int, seq: int, lengths: list[int], device) -> torch.Tensor:
    return (
        torch.arange(seq, device=device) < torch.tensor(lengths, device=device)[:, None]
    )


# ---------------------------------------------------------------- the loss
@pytest.mark.parametrize("classes", [1, 2, 7, 40])
def test_loss_equals_the_pairwise_form(classes: int, device) -> None:
    logits = 3 * torch.randn(6, classes, dtype=F64)
    targets = torch.rand(6, classes) < 0.3
    out = mlce(logits.to(device), targets.to(device))
    ref = [
        pairwise_loss64(s.tolist(), p.tolist())
        for s, p in zip(logits, targets, strict=True)
    ]
    torch.testing.assert_close(
        out.cpu(), torch.tensor(ref, dtype=F64), rtol=1e-13, atol=0
    )


def test_loss_matches_pytorch_metric_learning(device) -> None:
    logits = 4 * torch.randn(5, 3, 50, dtype=F64, device=device)
    targets = torch.rand(5, 3, 50, device=device) < 0.1
    flat, keep = logits.flatten(0, 1), targets.flatten(0, 1)
    neg = lmu.logsumexp(flat, keep_mask=~keep, add_one=True, dim=1)
    pos = lmu.logsumexp(-flat, keep_mask=keep, add_one=True, dim=1)
    ref = (neg + pos).view(5, 3)
    torch.testing.assert_close(mlce(logits, targets), ref, rtol=1e-14, atol=1e-14)


def test_loss_over_another_dim_and_float_targets(device) -> None:
    logits = torch.randn(4, 9, 3, dtype=F64, device=device)
    targets = torch.rand(4, 9, 3, device=device) < 0.4
    moved = mlce(logits.movedim(1, -1), targets.movedim(1, -1))
    torch.testing.assert_close(mlce(logits, targets, dim=1), moved)
    torch.testing.assert_close(mlce(logits, targets.double(), dim=1), moved)


def test_one_class_is_binary_cross_entropy(device) -> None:
    logits = 5 * torch.randn(200, 1, dtype=F64, device=device)
    targets = torch.rand(200, 1, device=device) < 0.5
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets.double(), reduction="none"
    )
    torch.testing.assert_close(mlce(logits, targets), bce[:, 0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("scale", [1.0, 100.0, 3e4, 6e4])
def test_float16_at_extreme_logits(scale: float, device) -> None:
    """Logits up to float16's largest: the float16 loss is the float64 loss of the same
    logits rounded once (inf only where that exceeds 65504, as at 6e4)."""
    logits = (scale * (2 * torch.rand(8, 64) - 1)).half().to(device)
    targets = (torch.rand(8, 64) < 0.2).to(device)
    out = mlce(logits, targets)
    exact = mlce(logits.double(), targets)
    if scale < 100:  # math.exp overflows beyond
        rows = zip(logits.double().cpu().tolist(), targets.cpu().tolist(), strict=True)
        ref = torch.tensor([pairwise_loss64(s, p) for s, p in rows], dtype=F64)
        torch.testing.assert_close(exact.cpu(), ref)
    assert out.dtype == torch.float16
    fits = exact < 65504
    assert torch.equal(torch.isfinite(out), fits) and (fits.all() or scale > 3e4)
    torch.testing.assert_close(out.double()[fits], exact[fits], rtol=2**-11, atol=1e-3)


def test_masked_classes_and_empty_rows_have_zero_gradient(device) -> None:
    logits = torch.tensor(
        [[-math.inf, -math.inf, -math.inf], [1.0, -math.inf, 2.0]],
        device=device,
        requires_grad=True,
    )
    targets = torch.tensor([[False] * 3, [True, False, False]], device=device)
    loss = mlce(logits, targets)
    loss.sum().backward()
    assert loss[0] == 0 and torch.isfinite(loss).all()
    assert torch.isfinite(logits.grad).all() and (logits.grad[:, 1] == 0).all()


def test_loss_gradient_matches_float64(device) -> None:
    logits = torch.randn(3, 20, dtype=F64, device=device, requires_grad=True)
    targets = torch.rand(3, 20, device=device) < 0.3
    assert torch.autograd.gradcheck(lambda x: mlce(x, targets), (logits,))


# ---------------------------------------------------------------- the heads
@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("head", [GlobalPointer, EfficientGlobalPointer])
def test_heads_match_the_loop(head, rope: bool, device) -> None:
    model = head(12, 3, head_size=8, rope=rope).double().to(device)
    h = torch.randn(2, 7, 12, dtype=F64, device=device)
    mask = padded(2, 7, [7, 4], device)
    loop = gp_loop64 if head is GlobalPointer else egp_loop64
    ref = loop(model.cpu(), h.cpu(), mask.cpu())
    model.to(device)
    torch.testing.assert_close(model(h, mask).cpu(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("head", [GlobalPointer, EfficientGlobalPointer])
def test_rope_scores_depend_on_the_offset_only(head, device) -> None:
    """The same two token vectors at (i, j) and (i + 5, j + 5) score the same with
    RoPE, whatever the other tokens are; without RoPE any two positions do."""
    for rope in (True, False):
        model = head(16, 2, head_size=8, rope=rope).double().to(device)
        a, b = torch.randn(2, 16, dtype=F64, device=device)
        h = torch.randn(1, 12, 16, dtype=F64, device=device)
        h[0, 1], h[0, 4], h[0, 6], h[0, 9] = a, b, a, b
        s = model(h)[0]
        torch.testing.assert_close(s[:, 1, 4], s[:, 6, 9], rtol=1e-12, atol=1e-12)
        h[0, 10] = b  # a longer span: the same only without RoPE
        same = torch.allclose(s[:, 1, 4], model(h)[0][:, 1, 10], rtol=1e-12)
        assert same != rope


@pytest.mark.parametrize("head", [GlobalPointer, EfficientGlobalPointer])
def test_padding_never_reaches_scores_or_gradients(head, device) -> None:
    model = head(8, 2, head_size=4).to(device)
    h = torch.randn(2, 5, 8, device=device)
    mask = padded(2, 5, [5, 3], device)
    clean = model(h, mask)
    h_nan = h.clone().masked_fill(~mask[..., None], math.nan).requires_grad_()
    scores = model(h_nan, mask)
    torch.testing.assert_close(scores, clean)
    assert (scores[1, :, 3:, :] == -math.inf).all() and (
        scores[1, :, :, 3:] == -math.inf
    ).all()
    mlce(
        scores.flatten(-2), torch.zeros_like(scores, dtype=bool).flatten(-2)
    ).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(h_nan.grad).all()


@pytest.mark.parametrize("head", [GlobalPointer, EfficientGlobalPointer])
def test_half_precision_close_to_float32(head, device) -> None:
    model = head(32, 3, head_size=16).to(device)
    h = torch.randn(2, 9, 32, device=device)
    ref = model(h)
    out = model.half()(h.half())
    assert out.dtype == torch.float16
    keep = torch.isfinite(ref)
    torch.testing.assert_close(out.float()[keep], ref[keep], rtol=0.02, atol=0.02)


def test_parameter_counts() -> None:
    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    D, d = 384, 32
    per_type = count(GlobalPointer(D, 5, d)) - count(GlobalPointer(D, 4, d))
    assert per_type == 2 * d * (D + 1)  # 2Dd weights and 2d biases
    efficient = count(EfficientGlobalPointer(D, 5, d)) - count(
        EfficientGlobalPointer(D, 4, d)
    )
    assert efficient == 2 * (2 * d + 1)  # 4d weights and 2 biases
    assert count(GlobalPointer(D, 4, d, rope=False)) == count(GlobalPointer(D, 4, d))


def test_empty_batch_and_sequence(device) -> None:
    for head in (GlobalPointer, EfficientGlobalPointer):
        model = head(8, 2, head_size=4).to(device)
        assert model(torch.zeros(0, 5, 8, device=device)).shape == (0, 2, 5, 5)
        assert model(torch.zeros(3, 0, 8, device=device)).shape == (3, 2, 0, 0)


def test_head_errors() -> None:
    with pytest.raises(ValueError, match="head_size"):
        GlobalPointer(8, 2, head_size=5)
    GlobalPointer(8, 2, head_size=5, rope=False)  # odd is fine without pairs
    with pytest.raises(TypeError, match="rope"):
        EfficientGlobalPointer(8, 2, rope=1)
    model = GlobalPointer(8, 2, head_size=4)
    with pytest.raises(ValueError, match="hidden"):
        model(torch.zeros(1, 3, 7))
    with pytest.raises(TypeError, match="mask"):
        model(torch.zeros(1, 3, 8), torch.ones(1, 3))
    with pytest.raises(TypeError, match="hidden_states"):
        model(torch.zeros(1, 3, 8, dtype=F64))


# ---------------------------------------------------------------- decoding, F1
def test_decode_spans_matches_a_loop(device) -> None:
    scores = torch.randn(2, 3, 6, 6, device=device)
    scores[0, 1, 2, 2] = math.nan
    rows = decode_spans(scores, threshold=0.5).cpu().tolist()
    expected = [
        [b, t, i, j]
        for b in range(2)
        for t in range(3)
        for i in range(6)
        for j in range(i, 6)
        if scores[b, t, i, j] > 0.5
    ]
    assert rows == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_span_f1_is_the_articles_formula(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y_true = torch.rand(3, 2, 5, 5, generator=g) < 0.2
    y_pred = torch.rand(3, 2, 5, 5, generator=g) < 0.2
    scores = span_f1(y_pred.nonzero(), y_true.nonzero())
    both = (y_true & y_pred).sum().item()
    total = (y_true.sum() + y_pred.sum()).item()
    assert scores["f1"] == (2 * both / total if total else 1.0)
    if y_pred.any():
        assert scores["precision"] == both / y_pred.sum().item()
    if y_true.any():
        assert scores["recall"] == both / y_true.sum().item()


def test_span_f1_counts_repeated_rows_once() -> None:
    gold = torch.tensor([[0, 1, 2], [0, 3, 3]])
    pred = torch.tensor([[0, 1, 2], [0, 1, 2], [1, 0, 0]])
    assert span_f1(pred, gold) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    empty = torch.zeros(0, 3, dtype=torch.long)
    assert span_f1(empty, empty)["f1"] == 1.0 and span_f1(empty, gold)["f1"] == 0.0


# ---------------------------------------------------------------- the nested task
@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return load_minilm()[0]


def test_task_targets_spell_the_entities(tokenizer: WordPieceTokenizer) -> None:
    texts, ids, mask, targets = nested_entity_task(
        tokenizer, 40, generator=torch.Generator().manual_seed(0)
    )
    assert targets.shape == (40, len(ENTITY_TYPES), ids.shape[1], ids.shape[1])
    _, _, offsets = tokenizer.encode(texts, return_offsets=True)
    for b, t, i, j in targets.nonzero().tolist():
        assert mask[b, i] and mask[b, j] and 0 < i <= j
        name = texts[b][offsets[b, i, 0] : offsets[b, j, 1]]
        if ENTITY_TYPES[t] == "place":  # nests a city and a region
            assert len(name.split(", ")) == 2
            assert targets[b, 0, i].any() and targets[b, 1:3, :, j].any()
        else:
            assert name.isalpha() and name[0].isupper()


def test_task_is_reproducible_and_splits_pairs(tokenizer: WordPieceTokenizer) -> None:
    first = nested_entity_task(
        tokenizer, 30, generator=torch.Generator().manual_seed(3)
    )
    again = nested_entity_task(
        tokenizer, 30, generator=torch.Generator().manual_seed(3)
    )
    assert first[0] == again[0] and torch.equal(first[3], again[3])
    train = nested_entity_task(
        tokenizer, 300, generator=torch.Generator().manual_seed(1)
    )
    test = nested_entity_task(
        tokenizer, 100, split="test", generator=torch.Generator().manual_seed(1)
    )

    def places(texts: list[str]) -> set[str]:
        words = " ".join(texts).replace(",", " ,").split()
        triples = zip(words, words[1:], words[2:], strict=False)
        return {f"{a}, {b}" for a, c, b in triples if c == "," and b[0].isupper()}

    assert places(train[0]) and not places(train[0]) & places(test[0])
    assert nested_entity_task(tokenizer, 0)[1].shape == (0, 0)


def test_task_errors(tokenizer: WordPieceTokenizer) -> None:
    with pytest.raises(TypeError, match="tokenizer"):
        nested_entity_task("bert", 3)
    with pytest.raises(ValueError, match="split"):
        nested_entity_task(tokenizer, 3, split="dev")
    with pytest.raises(ValueError, match="count"):
        nested_entity_task(tokenizer, -1)
