"""Hostile inputs for ``kexue.attention`` entropy normalisation and the sampling helpers
of ``kexue.probability``, against float64 references written here from the definitions
(``p^γ / Σ p^γ``, sorted loops, counting loops)."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.attention as A
import kexue.probability as P

F64 = torch.float64
INF = math.inf
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
PN, EN, CS = (
    "attention.power_normalize",
    "attention.entropy_normalize",
    "attention.constant_entropy_sample",
)


def power64(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    p = torch.softmax(logits.detach().double().cpu(), -1) ** gamma
    return p / p.sum(-1, keepdim=True)


def entropy64(p: torch.Tensor) -> torch.Tensor:
    p = p.detach().double().cpu()
    return -torch.special.xlogy(p, p).sum(-1)


for target, call in (
    (PN, lambda x: A.power_normalize(x, 1.0)),
    (EN, lambda x: A.entropy_normalize(x, 1.0)),
    (CS, lambda x: A.constant_entropy_sample(x, 1.0)),
):
    error(
        target,
        "a list is a TypeError",
        TypeError,
        "logits",
        lambda d, c=call: c([1.0, 2.0]),
    )
    error(
        target,
        "integer logits are a TypeError",
        TypeError,
        "logits",
        lambda d, c=call: c(torch.ones(3, dtype=torch.long, device=d)),
    )
    error(
        target,
        "a rank-0 tensor is a ValueError",
        ValueError,
        "logits",
        lambda d, c=call: c(torch.tensor(1.0, device=d)),
    )
error(
    PN,
    "negative gamma",
    ValueError,
    "gamma",
    lambda d: A.power_normalize(torch.randn(3, device=d), -1.0),
)
error(
    PN,
    "gamma of the wrong shape",
    ValueError,
    "gamma",
    lambda d: A.power_normalize(torch.randn(2, 3, device=d), torch.ones(3, device=d)),
)
error(
    PN,
    "dim out of range",
    ValueError,
    "dim",
    lambda d: A.power_normalize(torch.randn(2, 3, device=d), 1.0, dim=2),
)
error(
    EN,
    "NaN target",
    ValueError,
    "target",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), math.nan),
)
error(
    EN,
    "target of the wrong shape",
    ValueError,
    "target",
    lambda d: A.entropy_normalize(torch.randn(2, 3, device=d), torch.ones(3, device=d)),
)
error(
    EN,
    "iterations 2.5",
    TypeError,
    "iterations",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), 1.0, iterations=2.5),
)
error(
    EN,
    "return_gamma 1",
    TypeError,
    "return_gamma",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), 1.0, return_gamma=1),
)
error(
    CS,
    "generator 0",
    TypeError,
    "generator",
    lambda d: A.constant_entropy_sample(torch.randn(3, device=d), 1.0, generator=0),
)
error(
    CS,
    "a row of -inf only",
    ValueError,
    "logits",
    lambda d: A.constant_entropy_sample(torch.full((2, 3), -INF, device=d), 1.0),
)
error(
    CS,
    "n = 0 with a batch",
    ValueError,
    "logits",
    lambda d: A.constant_entropy_sample(torch.randn(2, 0, device=d), 1.0),
)


@case(PN, "float64 against p^γ/Σp^γ, odd view", "value")
def _(device):
    x = odd_view(4, 7, device=device, dtype=F64)
    close(A.power_normalize(x, 2.5), power64(x, 2.5), atol=1e-14)


@case(PN, "float16 logits of scale 20 computed in float32", "value")
def _(device):
    x = (20 * torch.randn(3, 9, device=device)).half()
    out = A.power_normalize(x, 3.0)
    assert out.dtype == torch.float16
    close(out, power64(x, 3.0), atol=2e-3)


@case(EN, "reaches the target, far target log 1.5 in float64", "value")
def _(device):
    x = 4 * torch.randn(5, 40, device=device, dtype=F64)
    out = A.entropy_normalize(x, math.log(1.5), iterations=12)
    close(entropy64(out), torch.full((5,), math.log(1.5), dtype=F64), atol=1e-10)


@case(EN, "masked, single-point and empty rows are finite", "finite")
def _(device):
    x = torch.tensor([[0.0, -INF, -INF], [-INF] * 3, [1.0, 2.0, -INF]], device=device)
    out, gamma = A.entropy_normalize(x, 0.3, return_gamma=True)
    finite(out, gamma)
    assert out[1].abs().sum() == 0 and out[0, 0] == 1


@case(EN, "gradients finite with -inf entries", "grad")
def _(device):
    x = torch.randn(3, 6, device=device, dtype=F64)
    x = x.masked_fill(torch.arange(6, device=device) > 3, -INF).requires_grad_()
    out = A.entropy_normalize(x, 0.8)
    (out * torch.arange(6, device=device)).sum().backward()
    finite(x.grad)


for target, call in (
    (PN, lambda x: A.power_normalize(x, 2.0)),
    (EN, lambda x: A.entropy_normalize(x, 1.0)),
    (CS, lambda x: A.constant_entropy_sample(x, 1.0)),
):

    @case(target, "an empty batch gives an empty result", "empty")
    def _(device, c=call):
        out = c(torch.randn(0, 5, device=device))
        assert out.shape[0] == 0

    @case(target, "meta tensors give meta results", "device")
    def _(device, c=call):
        out = c(torch.randn(2, 5, device="meta"))
        assert out.device.type == "meta" and out.shape[0] == 2


@case(CS, "samples stay in the support", "value")
def _(device):
    x = torch.randn(500, 6, device=device).masked_fill(
        torch.arange(6, device=device) >= 4, -INF
    )
    idx = A.constant_entropy_sample(
        x, 1.0, generator=torch.Generator(device).manual_seed(0)
    )
    assert idx.dtype == torch.long and idx.shape == (500,) and int(idx.max()) < 4


# kexue.probability.sampling: truncation, the bigram model, chains, distinct-n.
TK, TP, BG, SC, DN = (
    "probability.top_k_filter",
    "probability.top_p_filter",
    "probability.bigram_log_probs",
    "probability.sample_chain",
    "probability.distinct_n",
)
LONG = torch.long
for target, call in (
    (TK, lambda x: P.top_k_filter(x, 2)),
    (TP, lambda x: P.top_p_filter(x, 0.5)),
):
    error(
        target, "a list is a TypeError", TypeError, "logits", lambda d, c=call: c([1.0])
    )
    error(
        target,
        "integer logits are a TypeError",
        TypeError,
        "logits",
        lambda d, c=call: c(torch.ones(3, dtype=LONG, device=d)),
    )

    @case(target, "an empty batch gives an empty result", "empty")
    def _(device, c=call):
        assert c(torch.randn(0, 5, device=device)).shape == (0, 5)

    @case(target, "meta tensors give meta results", "device")
    def _(device, c=call):
        out = c(torch.randn(2, 5, device="meta"))
        assert out.device.type == "meta" and out.shape == (2, 5)

    @case(target, "a row of -inf only stays -inf, no NaN", "finite")
    def _(device, c=call):
        x = torch.tensor([[-INF] * 4, [0.0, 1.0, 2.0, 3.0]], device=device)
        out = c(x)
        assert not out.isnan().any() and (out[0] == -INF).all()


error(
    TK, "k = 0", ValueError, "k", lambda d: P.top_k_filter(torch.randn(3, device=d), 0)
)
error(
    TK,
    "k = 2.0",
    TypeError,
    "k",
    lambda d: P.top_k_filter(torch.randn(3, device=d), 2.0),
)
error(
    TP,
    "p = 1.5",
    ValueError,
    "p",
    lambda d: P.top_p_filter(torch.randn(3, device=d), 1.5),
)
error(
    TP, "p = 0", ValueError, "p", lambda d: P.top_p_filter(torch.randn(3, device=d), 0)
)


@case(TK, "float64 odd view against a sorted-loop reference", "value")
def _(device):
    x = odd_view(3, 8, device=device, dtype=F64)
    ref = x.detach().cpu().clone()
    for row in ref:
        row[row.argsort(descending=True)[3:]] = -INF
    close(P.top_k_filter(x, 3), ref, atol=0)


@case(TP, "float16 logits of scale 20: the kept set of the float64 rule", "value")
def _(device):
    x = (20 * torch.randn(4, 9, device=device)).half()
    probs = torch.softmax(x.double().cpu(), -1)
    ranked, order = probs.sort(-1, descending=True)
    ref = torch.zeros_like(probs, dtype=torch.bool).scatter(
        -1, order, ranked.cumsum(-1) - ranked < 0.6
    )
    out = P.top_p_filter(x, 0.6)
    assert out.dtype == torch.float16 and torch.equal((out > -INF).cpu(), ref)


def docs(d, *rows):
    return [torch.tensor(r, dtype=LONG, device=d) for r in rows]


error(
    BG,
    "a tensor for documents",
    TypeError,
    "documents",
    lambda d: P.bigram_log_probs(torch.zeros(3, dtype=LONG, device=d), 3),
)
error(
    BG,
    "float ids",
    TypeError,
    r"documents\[0\]",
    lambda d: P.bigram_log_probs([torch.zeros(3, device=d)], 3),
)
error(
    BG,
    "an id out of range",
    ValueError,
    r"documents\[1\]",
    lambda d: P.bigram_log_probs(docs(d, [0, 1], [2, 3]), 3),
)
error(
    BG,
    "smoothing 0",
    ValueError,
    "smoothing",
    lambda d: P.bigram_log_probs(docs(d, [0, 1]), 3, smoothing=0),
)
error(
    BG,
    "vocab_size 0",
    ValueError,
    "vocab_size",
    lambda d: P.bigram_log_probs(docs(d, [0]), 0),
)


@case(BG, "no documents, or one-token ones: the uniform table", "empty")
def _(device):
    for documents in ([], docs(device, [1], [])):
        out = P.bigram_log_probs(documents, 3, dtype=F64)
        close(out, torch.full((3, 3), -math.log(3), dtype=F64), atol=1e-15)


@case(BG, "float64 against a counting loop", "value")
def _(device):
    documents = docs(device, [0, 2, 2, 1, 0], [1, 1])
    counts = torch.zeros(3, 3, dtype=F64)
    for doc in documents:
        for a, b in zip(doc[:-1].tolist(), doc[1:].tolist(), strict=True):
            counts[a, b] += 1
    ref = torch.log((counts + 0.1) / (counts.sum(1, keepdim=True) + 0.3))
    close(P.bigram_log_probs(documents, 3, smoothing=0.1, dtype=F64), ref, atol=1e-15)


def table(d, dtype=torch.float32):
    return torch.log_softmax(torch.randn(4, 4, device=d, dtype=dtype), -1)


def start(d, *ids):
    return torch.tensor(ids, dtype=LONG, device=d)


error(
    SC,
    "a non-square table",
    ValueError,
    "log_probs",
    lambda d: P.sample_chain(torch.zeros(3, 4, device=d), start(d, 0), 2),
)
error(
    SC,
    "start out of range",
    ValueError,
    "start",
    lambda d: P.sample_chain(table(d), start(d, 4), 2),
)
error(
    SC,
    "float start",
    TypeError,
    "start",
    lambda d: P.sample_chain(table(d), torch.zeros(2, device=d), 2),
)
error(
    SC,
    "steps -1",
    ValueError,
    "steps",
    lambda d: P.sample_chain(table(d), start(d, 0), -1),
)
error(
    SC,
    "warp not callable",
    TypeError,
    "warp",
    lambda d: P.sample_chain(table(d), start(d, 0), 2, warp=3),
)
error(
    SC,
    "warp dropping every entry",
    ValueError,
    "warp",
    lambda d: P.sample_chain(
        table(d), start(d, 0), 2, warp=lambda x: torch.full_like(x, -INF)
    ),
)


@case(SC, "no chains, and meta tensors, give shaped results", "empty")
def _(device):
    tokens, ent = P.sample_chain(table(device), start(device), 3)
    assert tokens.shape == (0, 4) and ent.shape == (0, 3)
    tokens, ent = P.sample_chain(table("meta"), start("meta", 0, 1), 3)
    assert tokens.shape == (2, 4) and tokens.device.type == "meta"


@case(SC, "float16 table: entropies against float64, samples in range", "value")
def _(device):
    t = table(device, torch.float16)
    gen = torch.Generator(device).manual_seed(0)
    tokens, ent = P.sample_chain(t, start(device, 0, 1, 2, 3), 5, generator=gen)
    q = torch.softmax(t.double().cpu()[tokens[:, :-1].cpu()], -1)
    close(ent, -torch.special.xlogy(q, q).sum(-1), atol=1e-6)
    assert ent.dtype == torch.float32 and int(tokens.max()) < 4


error(
    DN,
    "float tokens",
    TypeError,
    "tokens",
    lambda d: P.distinct_n(torch.zeros(2, 3, device=d), 2),
)
error(
    DN,
    "1-D tokens",
    ValueError,
    "tokens",
    lambda d: P.distinct_n(torch.zeros(3, dtype=LONG, device=d), 2),
)
error(
    DN,
    "n = 0",
    ValueError,
    "n",
    lambda d: P.distinct_n(torch.zeros(2, 3, dtype=LONG, device=d), 0),
)
error(
    DN,
    "a meta tensor has no values",
    ValueError,
    "tokens",
    lambda d: P.distinct_n(torch.zeros(2, 3, dtype=LONG, device="meta"), 2),
)


@case(DN, "no rows, or rows shorter than n, give 0", "empty")
def _(device):
    assert P.distinct_n(torch.zeros(0, 5, dtype=LONG, device=device), 2) == 0.0
    assert P.distinct_n(torch.zeros(3, 1, dtype=LONG, device=device), 2) == 0.0


@case(DN, "a strided view against a set of tuples", "value")
def _(device):
    t = torch.randint(0, 3, (6, 10), device=device)[:, ::2]
    grams = {tuple(r[i : i + 2]) for r in t.tolist() for i in range(4)}
    assert P.distinct_n(t, 2) == len(grams) / 24
