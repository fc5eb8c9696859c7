"""kexue.probability.sampling against transformers' logits warpers and naive loops."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from kexue.probability.sampling import (
    bigram_log_probs,
    distinct_n,
    sample_chain,
    top_k_filter,
    top_p_filter,
)

F64 = torch.float64


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_top_k_matches_transformers(device, k: int) -> None:
    logits = torch.randn(6, 11, dtype=F64, device=device)
    ref = TopKLogitsWarper(top_k=min(k, 11))(None, logits.clone())
    torch.testing.assert_close(top_k_filter(logits, k), ref, atol=0, rtol=0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1.0])
def test_top_p_matches_transformers(device, p: float) -> None:
    logits = 2 * torch.randn(8, 30, dtype=F64, device=device)
    ref = TopPLogitsWarper(top_p=p)(None, logits.clone())
    torch.testing.assert_close(top_p_filter(logits, p), ref, atol=0, rtol=0)


def test_top_p_naive_loop() -> None:
    logits = torch.randn(20, 9, dtype=F64)
    out = top_p_filter(logits, 0.7)
    for row, kept in zip(torch.softmax(logits, -1), out > -math.inf, strict=True):
        mass = 0.0
        for i in row.argsort(descending=True).tolist():
            assert bool(kept[i]) == (mass < 0.7)
            mass += row[i].item()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40), st.floats(0.05, 1.0), st.integers(1, 40), st.integers(0, 999)
)
def test_truncation_never_raises_entropy(n: int, p: float, k: int, seed: int) -> None:
    # The renormalised top entries majorise the distribution, and entropy is
    # Schur-concave.
    logits = 3 * torch.randn(
        n, generator=torch.Generator().manual_seed(seed), dtype=F64
    )

    def h(x: torch.Tensor) -> float:
        q = torch.softmax(x, -1)
        return -torch.special.xlogy(q, q).sum().item()

    assert h(top_k_filter(logits, k)) <= h(logits) + 1e-12
    assert h(top_p_filter(logits, p)) <= h(logits) + 1e-12


def test_half_precision_top_p(device) -> None:
    logits = (4 * torch.randn(5, 50, device=device)).half()
    out = top_p_filter(logits, 0.8)
    assert out.dtype == torch.float16
    ref = TopPLogitsWarper(top_p=0.8)(None, logits.float())
    assert torch.equal(out.float() > -math.inf, ref > -math.inf)


def test_bigram_against_counting_loop(device) -> None:
    docs = [torch.tensor(d, device=device) for d in ([0, 1, 1, 2], [2, 0, 1], [3])]
    lp = bigram_log_probs(docs, 4, smoothing=0.5, dtype=F64)
    counts = [[0.0] * 4 for _ in range(4)]
    for d in docs:
        for a, b in zip(d[:-1].tolist(), d[1:].tolist(), strict=True):
            counts[a][b] += 1
    ref = torch.tensor(
        [[(c + 0.5) / (sum(row) + 2.0) for c in row] for row in counts], dtype=F64
    )
    torch.testing.assert_close(lp.exp().cpu(), ref, atol=1e-15, rtol=0)
    assert lp.device.type == torch.device(device).type


def test_sample_chain_frequencies_and_warp(device) -> None:
    table = torch.log(torch.tensor([[0.9, 0.1], [0.3, 0.7]], dtype=F64, device=device))
    gen = torch.Generator(device=device).manual_seed(0)
    start = torch.zeros(20000, dtype=torch.long, device=device)
    tokens, ent = sample_chain(table, start, 1, generator=gen)
    assert tokens.shape == (20000, 2) and ent.shape == (20000, 1)
    assert abs(tokens[:, 1].double().mean().item() - 0.1) < 0.01
    torch.testing.assert_close(
        ent[0, 0].cpu(),
        torch.tensor(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), dtype=F64),
    )
    greedy, ent = sample_chain(table, start[:5], 4, warp=partial(top_k_filter, k=1))
    assert (greedy[:, 1:] == 0).all() and (ent == 0).all()


def test_distinct_n_naive() -> None:
    tokens = torch.tensor([[1, 2, 1, 2, 3], [1, 2, 9, 9, 9]])
    grams = [tuple(r[i : i + 2]) for r in tokens.tolist() for i in range(4)]
    assert distinct_n(tokens, 2) == len(set(grams)) / len(grams)
    assert distinct_n(tokens, 1) == 4 / 10
    assert distinct_n(tokens, 6) == 0.0


def test_errors() -> None:
    with pytest.raises(TypeError, match="k"):
        top_k_filter(torch.randn(3), 2.0)
    with pytest.raises(ValueError, match="p"):
        top_p_filter(torch.randn(3), 1.5)
    with pytest.raises(ValueError, match="documents"):
        bigram_log_probs([torch.tensor([0, 5])], 3)
    with pytest.raises(ValueError, match="smoothing"):
        bigram_log_probs([torch.tensor([0, 1])], 3, smoothing=0)
    with pytest.raises(ValueError, match="warp"):
        sample_chain(
            torch.zeros(3, 3),
            torch.zeros(2, dtype=torch.long),
            2,
            warp=lambda x: x[:, :2],
        )
    with pytest.raises(ValueError, match="start"):
        sample_chain(torch.zeros(3, 3), torch.tensor([3]), 2)
    with pytest.raises(TypeError, match="tokens"):
        distinct_n(torch.zeros(2, 3), 2)
