"""Hostile inputs for ``kexue.representations`` GlobalPointer (the two heads, the
multi-label loss, decoding, span F1 and the nested-entity task), against float64
references written here from the definitions (archives 7359, 8373, 8877)."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
LOSS = "representations.multilabel_categorical_crossentropy"
HEADS = ("representations.GlobalPointer", "representations.EfficientGlobalPointer")


def loss64(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_neg e^s) + log(1 + sum_pos e^-s) per row, by Python sums in float64
    (inputs small enough for math.exp)."""
    rows = []
    for s, p in zip(
        logits.double().cpu().tolist(), targets.cpu().tolist(), strict=True
    ):
        neg = sum(math.exp(v) for v, t in zip(s, p, strict=True) if not t)
        pos = sum(math.exp(-v) for v, t in zip(s, p, strict=True) if t)
        rows.append(math.log1p(neg) + math.log1p(pos))
    return torch.tensor(rows, dtype=F64)


def scores64(model, h: torch.Tensor) -> torch.Tensor:
    """The span scores of either head in float64 (the module cast to float64 on the
    CPU, no mask): an independent precision, the same definition."""
    import copy

    return copy.deepcopy(model).double().cpu()(h.double().cpu())


# ---------------------------------------------------------------- the loss
@case(LOSS, "float64 against Python sums", "value")
def _(device):
    logits = 3 * torch.randn(5, 30, dtype=F64)
    targets = torch.rand(5, 30) < 0.2
    close(
        R.multilabel_categorical_crossentropy(logits.to(device), targets.to(device)),
        loss64(logits, targets),
        atol=1e-13,
    )


@case(LOSS, "float16 logits at ±3e4: finite, one rounding", "finite")
def _(device):
    logits = (3e4 * (2 * torch.rand(4, 50) - 1)).half().to(device)
    targets = (torch.rand(4, 50) < 0.2).to(device)
    out = R.multilabel_categorical_crossentropy(logits, targets)
    assert out.dtype == torch.float16
    finite(out)
    ref = R.multilabel_categorical_crossentropy(logits.double(), targets)
    close(out, ref, atol=0, rtol=2**-11)


@case(LOSS, "all -inf row, no positive: 0 with zero gradient", "grad")
def _(device):
    logits = torch.full((2, 4), -math.inf, device=device, requires_grad=True)
    targets = torch.zeros(2, 4, dtype=torch.bool, device=device)
    out = R.multilabel_categorical_crossentropy(logits, targets)
    out.sum().backward()
    close(out, torch.zeros(2, dtype=F64), atol=0)
    assert (logits.grad == 0).all()


@case(LOSS, "empty batch and empty class dimension", "empty")
def _(device):
    f = R.multilabel_categorical_crossentropy
    out = f(
        torch.zeros(0, 5, device=device), torch.zeros(0, 5, dtype=bool, device=device)
    )
    assert out.shape == (0,)
    out = f(
        torch.zeros(3, 0, device=device), torch.zeros(3, 0, dtype=bool, device=device)
    )
    close(out, torch.zeros(3, dtype=F64), atol=0)


@case(LOSS, "odd-offset logits and transposed targets", "device")
def _(device):
    logits = odd_view(3, 8, device=device, dtype=F64)
    targets = (torch.rand(8, 3, device=device) < 0.3).T
    out = R.multilabel_categorical_crossentropy(logits, targets)
    close(out, loss64(logits, targets), atol=1e-13)


@case(LOSS, "meta tensors propagate the shape", "device")
def _(device):
    out = R.multilabel_categorical_crossentropy(
        torch.zeros(2, 3, 5, device=META), torch.zeros(2, 3, 5, dtype=bool, device=META)
    )
    assert out.shape == (2, 3) and out.device.type == "meta"


error(
    LOSS,
    "integer logits",
    TypeError,
    "logits",
    lambda d: R.multilabel_categorical_crossentropy(
        torch.zeros(2, 3, dtype=torch.long, device=d),
        torch.zeros(2, 3, dtype=bool, device=d),
    ),
)
error(
    LOSS,
    "targets of another shape",
    ValueError,
    "targets",
    lambda d: R.multilabel_categorical_crossentropy(
        torch.zeros(2, 3, device=d), torch.zeros(3, 2, dtype=bool, device=d)
    ),
)
error(
    LOSS,
    "targets with a 2",
    ValueError,
    "targets",
    lambda d: R.multilabel_categorical_crossentropy(
        torch.zeros(2, 3, device=d), torch.full((2, 3), 2.0, device=d)
    ),
)
error(
    LOSS,
    "dim out of range",
    ValueError,
    "dim",
    lambda d: R.multilabel_categorical_crossentropy(
        torch.zeros(2, 3, device=d), torch.zeros(2, 3, dtype=bool, device=d), dim=2
    ),
)


# ---------------------------------------------------------------- the heads
for target in HEADS:
    head = getattr(R, target.rpartition(".")[2])

    @case(target, "float32 scores agree with float64", "value")
    def _(device, head=head):
        model = head(16, 3, head_size=8).to(device)
        h = torch.randn(2, 6, 16, device=device)
        out, ref = model(h), scores64(model, h)
        keep = torch.isfinite(ref)
        assert torch.equal(torch.isfinite(out).cpu(), keep)
        close(out.cpu()[keep], ref[keep], atol=1e-5)

    @case(target, "NaN at padding: scores and gradients clean", "grad")
    def _(device, head=head):
        model = head(8, 2, head_size=4).to(device)
        h = torch.randn(2, 5, 8, device=device)
        mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2], device=device)
        bad = h.masked_fill(~mask[..., None], math.nan).requires_grad_()
        out = model(bad, mask)
        assert not out.isnan().any()
        close(out[0], model(h[:1])[0], atol=0)
        out.masked_fill(out.isinf(), 0).sum().backward()
        finite(bad.grad, *(p.grad for p in model.parameters()))

    @case(target, "float16 module: float16 scores close to float32", "finite")
    def _(device, head=head):
        model = head(16, 2, head_size=8).to(device)
        h = 10 * torch.randn(2, 7, 16, device=device)
        ref = model(h)
        out = model.half()(h.half())
        assert out.dtype == torch.float16
        keep = torch.isfinite(ref)
        assert not out.isnan().any()
        close(out[keep], ref[keep], atol=0.5, rtol=0.02)

    @case(target, "empty batch and sequence", "empty")
    def _(device, head=head):
        model = head(8, 2, head_size=4).to(device)
        assert model(torch.zeros(0, 3, 8, device=device)).shape == (0, 2, 3, 3)
        assert model(torch.zeros(2, 0, 8, device=device)).shape == (2, 2, 0, 0)

    @case(target, "odd-offset hidden states", "device")
    def _(device, head=head):
        model = head(8, 2, head_size=4).to(device).double()
        h = odd_view(2, 5, 8, device=device, dtype=F64)
        close(model(h), scores64(model, h), atol=1e-12)

    error(
        target,
        "hidden_states of the wrong width",
        ValueError,
        "hidden",
        lambda d, head=head: head(8, 2, head_size=4).to(d)(
            torch.zeros(1, 3, 6, device=d)
        ),
    )
    error(
        target,
        "integer mask",
        TypeError,
        "mask",
        lambda d, head=head: head(8, 2, head_size=4).to(d)(
            torch.zeros(1, 3, 8, device=d), torch.ones(1, 3, dtype=torch.long, device=d)
        ),
    )
    error(
        target,
        "mask of another shape",
        ValueError,
        "mask",
        lambda d, head=head: head(8, 2, head_size=4).to(d)(
            torch.zeros(1, 3, 8, device=d), torch.ones(1, 4, dtype=bool, device=d)
        ),
    )
    error(
        target,
        "float64 input to a float32 head",
        TypeError,
        "hidden_states",
        lambda d, head=head: head(8, 2, head_size=4).to(d)(
            torch.zeros(1, 3, 8, dtype=F64, device=d)
        ),
    )
    error(
        target,
        "odd head_size with rope",
        ValueError,
        "head_size",
        lambda d, head=head: head(8, 2, head_size=3),
    )
    error(
        target,
        "num_types 2.0",
        TypeError,
        "num_types",
        lambda d, head=head: head(8, 2.0),
    )


# ---------------------------------------------------------------- decoding and F1
@case(
    "representations.decode_spans",
    "rows of a loop; NaN, -inf and i > j skipped",
    "value",
)
def _(device):
    scores = torch.randn(2, 2, 5, 5, device=device)
    scores[0, 0, 1, 1], scores[0, 1, 2, 3] = math.nan, -math.inf
    rows = R.decode_spans(scores).cpu().tolist()
    s = scores.cpu()
    assert rows == [
        [b, t, i, j]
        for b in range(2)
        for t in range(2)
        for i in range(5)
        for j in range(i, 5)
        if s[b, t, i, j] > 0
    ]


@case("representations.decode_spans", "empty scores: (0, ndim) rows", "empty")
def _(device):
    assert R.decode_spans(torch.zeros(0, 3, 4, 4, device=device)).shape == (0, 4)
    assert R.decode_spans(torch.zeros(2, 0, 0, device=device)).shape == (0, 3)


@case("representations.decode_spans", "transposed scores decode their values", "device")
def _(device):
    scores = torch.randn(4, 4, device=device)
    rows = R.decode_spans(scores.T).cpu().tolist()
    t = scores.T.cpu()
    assert rows == [[i, j] for i in range(4) for j in range(i, 4) if t[i, j] > 0]


error(
    "representations.decode_spans",
    "meta scores",
    ValueError,
    "meta",
    lambda d: R.decode_spans(torch.zeros(2, 3, 3, device=META)),
)
error(
    "representations.decode_spans",
    "non-square last dims",
    ValueError,
    "scores",
    lambda d: R.decode_spans(torch.zeros(2, 3, 4, device=d)),
)
error(
    "representations.decode_spans",
    "threshold nan",
    ValueError,
    "threshold",
    lambda d: R.decode_spans(torch.zeros(3, 3, device=d), threshold=math.nan),
)


@case("representations.span_f1", "the article's 2TP / (P + G) on random sets", "value")
def _(device):
    true = torch.rand(3, 2, 6, 6) < 0.2
    pred = torch.rand(3, 2, 6, 6) < 0.2
    out = R.span_f1(pred.nonzero().to(device), true.nonzero().to(device))
    both, total = (true & pred).sum().item(), (true.sum() + pred.sum()).item()
    assert math.isclose(out["f1"], 2 * both / total, rel_tol=1e-15)


@case("representations.span_f1", "both empty: 1; empty prediction: 0", "empty")
def _(device):
    empty = torch.zeros(0, 4, dtype=torch.long, device=device)
    gold = torch.tensor([[0, 0, 1, 1]], device=device)
    assert R.span_f1(empty, empty) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert R.span_f1(empty, gold)["f1"] == 0.0


error(
    "representations.span_f1",
    "float rows",
    TypeError,
    "pred",
    lambda d: R.span_f1(
        torch.zeros(2, 4, device=d), torch.zeros(2, 4, dtype=torch.long, device=d)
    ),
)
error(
    "representations.span_f1",
    "different column counts",
    ValueError,
    "columns",
    lambda d: R.span_f1(
        torch.zeros(2, 4, dtype=torch.long, device=d),
        torch.zeros(2, 3, dtype=torch.long, device=d),
    ),
)
error(
    "representations.span_f1",
    "meta rows",
    ValueError,
    "meta",
    lambda d: R.span_f1(
        torch.zeros(2, 4, dtype=torch.long, device=META),
        torch.zeros(2, 4, dtype=torch.long, device=META),
    ),
)


# ---------------------------------------------------------------- the task
def _tokenizer():
    from kexue.representations.encoder import SPECIAL_TOKENS

    words = "is the capital of we flew from to , . ; : and a".split()
    return R.WordPieceTokenizer([*SPECIAL_TOKENS, *words])


@case(
    "representations.nested_entity_task", "count 0: empty tensors", "empty", cuda=False
)
def _(device):
    texts, ids, _, targets = R.nested_entity_task(_tokenizer(), 0)
    assert texts == [] and ids.shape == (0, 0) and targets.shape == (0, 4, 0, 0)


@case(
    "representations.nested_entity_task",
    "unknown words still align",
    "value",
    cuda=False,
)
def _(device):
    # names missing from the vocabulary become [UNK] tokens that keep their offsets
    _, _, mask, targets = R.nested_entity_task(
        _tokenizer(), 5, generator=torch.Generator().manual_seed(0)
    )
    assert targets.any() and not (targets & ~mask[:, None, :, None]).any()


error(
    "representations.nested_entity_task",
    "a string tokenizer",
    TypeError,
    "tokenizer",
    lambda d: R.nested_entity_task("bert", 2),
)
error(
    "representations.nested_entity_task",
    "count -1",
    ValueError,
    "count",
    lambda d: R.nested_entity_task(_tokenizer(), -1),
)
error(
    "representations.nested_entity_task",
    "split 'dev'",
    ValueError,
    "split",
    lambda d: R.nested_entity_task(_tokenizer(), 1, split="dev"),
)
