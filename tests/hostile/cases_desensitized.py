"""Hostile inputs for ``kexue.representations`` desensitised pretraining
(``permutation_cipher``, ``frequency_rank_alignment``, ``mlm_mask``,
``MaskedLanguageModel``), against references written here: Python loops over the
ids, the derived masking probabilities, and a float64 cross-entropy loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hostile import Registry, close, finite

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
PC, FA, MM, LM = (
    "representations.permutation_cipher",
    "representations.frequency_rank_alignment",
    "representations.mlm_mask",
    "representations.MaskedLanguageModel",
)


def ids_on(device, *shape, high=20, dtype=torch.int64) -> torch.Tensor:
    return torch.randint(5, high, shape, dtype=dtype).to(device)


def tiny_model(device, vocab: int = 20, dtype=F64) -> R.MaskedLanguageModel:
    encoder = R.BertEncoder(
        vocab_size=vocab,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
    )
    return R.MaskedLanguageModel(encoder).to(device=device, dtype=dtype)


# ---------------------------------------------------------------- permutation_cipher
error(PC, "a list of ids", TypeError, "ids", lambda d: R.permutation_cipher([1, 2], 5))
error(
    PC,
    "floating ids",
    TypeError,
    "ids",
    lambda d: R.permutation_cipher(torch.ones(3, device=d), 5),
)
error(
    PC,
    "vocab_size 2.5",
    TypeError,
    "vocab_size",
    lambda d: R.permutation_cipher(ids_on(d, 3), 2.5),
)
error(
    PC,
    "vocab_size 0",
    ValueError,
    "vocab_size",
    lambda d: R.permutation_cipher(ids_on(d, 3), 0),
)
error(
    PC,
    "an id at vocab_size",
    ValueError,
    "ids",
    lambda d: R.permutation_cipher(torch.tensor([0, 5], device=d), 5),
)
error(
    PC,
    "a negative id",
    ValueError,
    "ids",
    lambda d: R.permutation_cipher(torch.tensor([-1, 2], device=d), 5),
)
error(
    PC,
    "vocab_size 300 with int8 ids",
    ValueError,
    "vocab_size",
    lambda d: R.permutation_cipher(ids_on(d, 3, dtype=torch.int8), 300),
)
error(
    PC,
    "a keep id out of range",
    ValueError,
    "keep",
    lambda d: R.permutation_cipher(ids_on(d, 3), 20, keep=[20]),
)
error(
    PC,
    "a keep string",
    TypeError,
    "keep",
    lambda d: R.permutation_cipher(ids_on(d, 3), 20, keep="ab"),
)
error(
    PC,
    "a seed for generator",
    TypeError,
    "generator",
    lambda d: R.permutation_cipher(ids_on(d, 3), 20, generator=0),
)


@case(PC, "a permutation, kept ids fixed, ciphered = loop over the ids", "value")
def _(device):
    ids = ids_on(device, 4, 6, high=12, dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    ciphered, perm = R.permutation_cipher(ids, 12, keep=(0, 7), generator=g)
    table = perm.tolist()
    assert sorted(table) == list(range(12)) and table[0] == 0 and table[7] == 7
    expected = [[table[i] for i in row] for row in ids.tolist()]
    assert ciphered.dtype == torch.int32 and ciphered.tolist() == expected


@case(PC, "empty ids: empty ciphered, a full permutation", "empty")
def _(device):
    ciphered, perm = R.permutation_cipher(
        torch.empty(0, 3, dtype=torch.long, device=device), 6
    )
    assert ciphered.shape == (0, 3) and sorted(perm.tolist()) == list(range(6))


@case(PC, "a transposed view and a meta tensor", "device")
def _(device):
    ids = ids_on(device, 5, 4).T
    ciphered, perm = R.permutation_cipher(ids, 20)
    assert torch.equal(ciphered, perm[ids])
    meta, perm = R.permutation_cipher(
        torch.empty(2, 3, dtype=torch.long, device=META), 9
    )
    assert meta.shape == (2, 3) and meta.device == META and perm.shape == (9,)


# ---------------------------------------------------------------- frequency_rank_alignment
def naive_alignment(cipher: list, plain: list, keep: list) -> list:
    c_rank = sorted(
        (i for i in range(len(cipher)) if i not in keep), key=lambda i: (-cipher[i], i)
    )
    p_rank = sorted(
        (i for i in range(len(plain)) if i not in keep), key=lambda i: (-plain[i], i)
    )
    out = list(range(len(cipher)))
    for c, p in zip(c_rank, p_rank, strict=False):
        out[c] = p
    return out


error(
    FA,
    "2-D counts",
    ValueError,
    "cipher_counts",
    lambda d: R.frequency_rank_alignment(
        torch.ones(2, 3, device=d), torch.ones(6, device=d)
    ),
)
error(
    FA,
    "boolean counts",
    TypeError,
    "plain_counts",
    lambda d: R.frequency_rank_alignment(
        torch.ones(3, device=d), torch.ones(3, dtype=torch.bool, device=d)
    ),
)
error(
    FA,
    "a negative count",
    ValueError,
    "cipher_counts",
    lambda d: R.frequency_rank_alignment(
        torch.tensor([1.0, -1.0], device=d), torch.ones(3, device=d)
    ),
)
error(
    FA,
    "a NaN count",
    ValueError,
    "plain_counts",
    lambda d: R.frequency_rank_alignment(
        torch.ones(2, device=d), torch.tensor([1.0, math.nan], device=d)
    ),
)
error(
    FA,
    "fewer plain ids than ciphered ids",
    ValueError,
    "plain_counts",
    lambda d: R.frequency_rank_alignment(
        torch.ones(4, device=d), torch.ones(3, device=d)
    ),
)
error(
    FA,
    "a keep id outside the smaller vocabulary",
    ValueError,
    "keep",
    lambda d: R.frequency_rank_alignment(
        torch.ones(3, device=d), torch.ones(5, device=d), keep=[3]
    ),
)
error(
    FA,
    "meta counts",
    ValueError,
    "cipher_counts",
    lambda d: R.frequency_rank_alignment(
        torch.ones(3, device=META), torch.ones(3, device=META)
    ),
)


@case(FA, "ties, keep and a larger plain vocabulary against a sort loop", "value")
def _(device):
    cipher = [3, 0, 5, 5, 1, 3, 2, 9]
    plain = [2.0, 7.0, 7.0, 0.0, 1.0, 4.0, 4.0, 8.0, 3.0, 0.5]
    out = R.frequency_rank_alignment(
        torch.tensor(cipher, device=device),
        torch.tensor(plain, device=device),
        keep=[0, 1],
    )
    assert out.device.type == device.type and out.tolist() == naive_alignment(
        cipher, plain, [0, 1]
    )


@case(FA, "empty counts give an empty alignment", "empty")
def _(device):
    out = R.frequency_rank_alignment(
        torch.zeros(0, device=device), torch.ones(4, device=device)
    )
    assert out.shape == (0,) and out.dtype == torch.int64


@case(FA, "strided views of counts", "device")
def _(device):
    cipher = torch.tensor([4, 9, 1, 7, 2, 8, 3, 0], device=device)[::2]
    plain = torch.tensor(
        [[5.0, 1.0], [2.0, 3.0], [9.0, 0.0], [4.0, 6.0]], device=device
    ).T[0]
    out = R.frequency_rank_alignment(cipher, plain)
    assert out.tolist() == naive_alignment(cipher.tolist(), plain.tolist(), [])


# ---------------------------------------------------------------- mlm_mask
def mask_call(d, **kw):
    args = {"mask_id": 4, "vocab_size": 20}
    args.update(kw)
    ids = args.pop("ids", None)
    return R.mlm_mask(ids_on(d, 6, 7) if ids is None else ids, **args)


error(MM, "prob 1.5", ValueError, "prob", lambda d: mask_call(d, prob=1.5))
error(MM, "prob a string", TypeError, "prob", lambda d: mask_call(d, prob="0.15"))
error(MM, "prob NaN", ValueError, "prob", lambda d: mask_call(d, prob=math.nan))
error(
    MM,
    "split summing to 0.9",
    ValueError,
    "split",
    lambda d: mask_call(d, split=(0.8, 0.1, 0.0)),
)
error(
    MM,
    "split of two numbers",
    ValueError,
    "split",
    lambda d: mask_call(d, split=(0.8, 0.2)),
)
error(MM, "split a string", TypeError, "split", lambda d: mask_call(d, split="8:1:1"))
error(
    MM,
    "a negative split",
    ValueError,
    "split",
    lambda d: mask_call(d, split=(1.1, -0.1, 0.0)),
)
error(
    MM,
    "mask_id out of range",
    ValueError,
    "mask_id",
    lambda d: mask_call(d, mask_id=20),
)
error(MM, "mask_id a bool", TypeError, "mask_id", lambda d: mask_call(d, mask_id=True))
error(
    MM,
    "floating ids",
    TypeError,
    "ids",
    lambda d: mask_call(d, ids=torch.ones(3, device=d)),
)
error(
    MM,
    "an id out of range",
    ValueError,
    "ids",
    lambda d: mask_call(d, ids=torch.tensor([1, 25], device=d)),
)
error(
    MM,
    "a special id out of range",
    ValueError,
    "special",
    lambda d: mask_call(d, special=[-1]),
)
error(
    MM,
    "vocab_size 1000 with int8 ids",
    ValueError,
    "vocab_size",
    lambda d: mask_call(d, ids=ids_on(d, 3, dtype=torch.int8), vocab_size=1000),
)
error(
    MM,
    "a generator that is not one",
    TypeError,
    "generator",
    lambda d: mask_call(d, generator=1),
)


@case(MM, "kind frequencies within 5 s.e. of p(0.8 + 0.1/V), ...", "value")
def _(device):
    vocab, p, n = 10, 0.15, 200_000
    ids = ids_on(device, 400, 500, high=vocab)
    inputs, labels = R.mlm_mask(ids, mask_id=2, vocab_size=vocab, special=[0, 1, 2])
    chosen = labels != -100
    observed = [
        (~chosen).sum(),
        (chosen & (inputs == 2)).sum(),
        (chosen & (inputs == ids)).sum(),
    ]
    derived = [1 - p, p * (0.8 + 0.1 / vocab), p * (0.1 + 0.1 / vocab)]
    for seen, q in zip(observed, derived, strict=True):
        assert abs(int(seen) / n - q) < 5 * math.sqrt(q * (1 - q) / n)
    assert torch.equal(labels[chosen], ids[chosen].long())


@case(MM, "special ids never chosen, prob 1", "value")
def _(device):
    ids = torch.tensor([[0, 5, 6, 1], [7, 0, 0, 8]], device=device)
    _, labels = R.mlm_mask(
        ids, prob=1.0, mask_id=4, vocab_size=20, special=torch.tensor([0, 1])
    )
    assert labels.tolist() == [[-100, 5, 6, -100], [7, -100, -100, 8]]


@case(MM, "an empty batch gives empty inputs and labels", "empty")
def _(device):
    inputs, labels = R.mlm_mask(
        torch.empty(0, 9, dtype=torch.long, device=device), mask_id=1, vocab_size=5
    )
    assert inputs.shape == labels.shape == (0, 9) and labels.dtype == torch.int64


@case(MM, "a transposed view; meta ids propagate shapes", "device")
def _(device):
    ids = ids_on(device, 9, 4).T
    g = torch.Generator().manual_seed(4)
    inputs, labels = R.mlm_mask(ids, mask_id=4, vocab_size=20, generator=g)
    again = R.mlm_mask(
        ids.contiguous(),
        mask_id=4,
        vocab_size=20,
        generator=torch.Generator().manual_seed(4),
    )
    assert torch.equal(inputs, again[0]) and torch.equal(labels, again[1])
    meta_in, meta_labels = R.mlm_mask(
        torch.empty(2, 5, dtype=torch.long, device=META), mask_id=1, vocab_size=5
    )
    assert meta_in.shape == meta_labels.shape == (2, 5) and meta_in.device == META


# ---------------------------------------------------------------- MaskedLanguageModel
error(
    LM,
    "an nn.Linear as encoder",
    TypeError,
    "encoder",
    lambda d: R.MaskedLanguageModel(torch.nn.Linear(2, 2)),
)


def loss_call(d, labels):
    model = tiny_model(d)
    ids = ids_on(d, 2, 5)
    return model.loss(ids, torch.ones_like(ids, dtype=torch.bool), labels)


error(
    LM,
    "floating labels",
    TypeError,
    "labels",
    lambda d: loss_call(d, torch.zeros(2, 5, device=d)),
)
error(
    LM,
    "labels of another shape",
    ValueError,
    "labels",
    lambda d: loss_call(d, torch.zeros(2, 4, dtype=torch.long, device=d)),
)
error(
    LM,
    "a label at vocab_size",
    ValueError,
    "labels",
    lambda d: loss_call(d, torch.full((2, 5), 20, device=d)),
)
error(
    LM,
    "ids out of the vocabulary",
    ValueError,
    "ids",
    lambda d: tiny_model(d)(
        torch.full((1, 3), 20, device=d), torch.ones(1, 3, dtype=torch.bool, device=d)
    ),
)


@case(LM, "loss equals a float64 cross-entropy loop", "value")
def _(device):
    model = tiny_model(device)
    with torch.no_grad():
        model.bias.normal_()
    ids = ids_on(device, 2, 6)
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[1, 4], labels[1, 0] = 3, 17, 9
    mask = torch.ones_like(ids, dtype=torch.bool)
    logits = model(ids, mask).detach().double().cpu()
    terms = []
    for b, t in ((0, 1), (1, 4), (1, 0)):
        row = logits[b, t].tolist()
        top = max(row)
        log_z = top + math.log(sum(math.exp(s - top) for s in row))
        terms.append(log_z - row[int(labels[b, t])])
    close(
        model.loss(ids, mask, labels),
        torch.tensor(sum(terms) / 3, dtype=F64),
        atol=1e-12,
    )


@case(LM, "no labelled position: loss 0 and zero gradients", "grad")
def _(device):
    model = tiny_model(device)
    ids = ids_on(device, 2, 6)
    loss = model.loss(
        ids, torch.ones_like(ids, dtype=torch.bool), torch.full_like(ids, -100)
    )
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@case(LM, "bfloat16 model: float32 loss, finite", "finite")
def _(device):
    model = tiny_model(device, dtype=torch.bfloat16)
    with torch.no_grad():
        model.bias.fill_(60.0)  # scores whose exponentials overflow bfloat16's sum
        model.bias[3] = -60.0
    ids = ids_on(device, 2, 6)
    labels = torch.full_like(ids, 3)
    loss = model.loss(ids, torch.ones_like(ids, dtype=torch.bool), labels)
    finite(loss)
    assert loss.dtype == torch.float32 and loss.item() > 100


@case(LM, "an empty batch: (0, seq, vocab) logits, loss 0", "empty")
def _(device):
    model = tiny_model(device)
    ids = torch.empty(0, 4, dtype=torch.long, device=device)
    assert model(ids, ids.bool()).shape == (0, 4, 20)
    assert model.loss(ids, ids.bool(), ids).item() == 0.0


@case(LM, "meta model: logits' shape; meta labels a named error", "device")
def _(device):
    model = tiny_model(device).to(META)
    ids = torch.zeros(2, 4, dtype=torch.long, device=META)
    assert model(ids, ids.bool()).shape == (2, 4, 20)
    from hostile import expect_error

    expect_error(ValueError, "labels", lambda: model.loss(ids, ids.bool(), ids))


@case(LM, "gradient reaches the tied embeddings as in F.linear", "grad")
def _(device):
    model = tiny_model(device)
    ids = ids_on(device, 1, 5)
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 6
    model.loss(ids, torch.ones_like(ids, dtype=torch.bool), labels).backward()
    weight = model.encoder.embeddings.word_embeddings.weight
    hidden = model.encoder(ids, torch.ones_like(ids, dtype=torch.bool))[0, 2]
    x = model.norm(F.gelu(model.dense(hidden)))
    p = torch.softmax(x @ weight.T + model.bias, -1).detach()
    # d loss / d weight[v] through the decoder alone is (p_v - [v = 6]) x; rows not in
    # the input get only that term
    unused = [v for v in range(20) if v not in ids.tolist()[0]]
    target = torch.nn.functional.one_hot(torch.tensor(6), 20).to(device, F64)
    expected = (p - target)[:, None] * x.detach()[None, :]
    close(weight.grad[unused], expected[unused], atol=1e-12)
