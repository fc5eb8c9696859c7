"""Hostile inputs for ``kexue.representations`` (WordPiece, BERT, sentence vectors),
against a float64 BERT written here as loops over layers and heads, and token ids read
from the vocabulary by hand."""

from __future__ import annotations

import functools
import math

import torch
from hostile import Registry, close, finite

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.representations.")
case, error = CASES.case, CASES.error
TINY = {
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 12,
    "max_position_embeddings": 16,
}


@functools.cache
def tokenizer() -> R.WordPieceTokenizer:
    from kexue.data import minilm_weights_path

    return R.WordPieceTokenizer.from_vocab(minilm_weights_path().parent)


def tiny(device, dtype=F64, **sizes) -> R.BertEncoder:
    """A small random BERT (vocabulary of MiniLM's tokenizer unless given)."""
    torch.manual_seed(0)
    model = R.BertEncoder(**{**TINY, **sizes}).to(device, dtype)
    with torch.no_grad():  # LayerNorm away from (1, 0) so a wrong one would show
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def ids_mask(device, batch=3, seq=6, vocab=30522):
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    lengths = torch.tensor([seq, 2, 1][:batch] + [seq] * max(0, batch - 3))
    mask = torch.arange(seq) < lengths[:, None]
    return ids, mask.to(device)


def bert64(model: R.BertEncoder, ids, mask, types=None) -> list[torch.Tensor]:
    """BERT by the definition in float64: a loop over layers and heads; softmax over
    the real keys only (a row with none: zero attention output)."""
    p = {k: v.detach().double().cpu() for k, v in model.state_dict().items()}
    ids, mask = ids.cpu(), mask.cpu()
    types = torch.zeros_like(ids) if types is None else types.cpu()
    eps, heads = model.config["layer_norm_eps"], model.config["num_attention_heads"]

    def ln(x, prefix):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * p[f"{prefix}.weight"] + p[
            f"{prefix}.bias"
        ]

    def lin(x, prefix):
        return x @ p[f"{prefix}.weight"].T + p[f"{prefix}.bias"]

    seq = ids.shape[1]
    x = (
        p["embeddings.word_embeddings.weight"][ids]
        + p["embeddings.position_embeddings.weight"][:seq]
        + p["embeddings.token_type_embeddings.weight"][types]
    )
    x = ln(x, "embeddings.LayerNorm")
    states = [x]
    for i in range(model.config["num_hidden_layers"]):
        pre = f"encoder.layer.{i}"
        q, k, v = (
            lin(x, f"{pre}.attention.self.{n}") for n in ("query", "key", "value")
        )
        d = q.shape[-1] // heads
        context = torch.zeros_like(q)
        for b in range(ids.shape[0]):
            if not mask[b].any():
                continue
            for h in range(heads):
                cols = slice(h * d, (h + 1) * d)
                logits = q[b, :, cols] @ k[b, :, cols].T / math.sqrt(d)
                logits = logits.masked_fill(~mask[b][None, :], -torch.inf)
                context[b, :, cols] = torch.softmax(logits, -1) @ v[b, :, cols]
        x = ln(
            lin(context, f"{pre}.attention.output.dense") + x,
            f"{pre}.attention.output.LayerNorm",
        )
        inner = lin(x, f"{pre}.intermediate.dense")
        inner = 0.5 * inner * (1 + torch.erf(inner / math.sqrt(2)))
        x = ln(lin(inner, f"{pre}.output.dense") + x, f"{pre}.output.LayerNorm")
        states.append(x)
    return states


# ---------------------------------------------------------------- WordPieceTokenizer
T = "WordPieceTokenizer"
error(
    T,
    "encode(3): TypeError names texts",
    TypeError,
    "texts",
    lambda d: tokenizer().encode(3),
)
error(
    T,
    "encode(['a', None]): TypeError names texts[1]",
    TypeError,
    r"texts\[1\]",
    lambda d: tokenizer().encode(["a", None]),
)
error(
    T,
    "max_length=513 above the 512 positions: ValueError",
    ValueError,
    "max_length",
    lambda d: tokenizer().encode("a", max_length=513),
)
error(
    T,
    "max_length=1 (no room for [CLS] [SEP]): ValueError",
    ValueError,
    "max_length",
    lambda d: tokenizer().encode("a", max_length=1),
)
error(
    T,
    "max_length=2.5: TypeError",
    TypeError,
    "max_length",
    lambda d: tokenizer().encode("a", max_length=2.5),
)
error(
    T,
    "return_offsets=1: TypeError",
    TypeError,
    "return_offsets",
    lambda d: tokenizer().encode("a", return_offsets=1),
)
error(
    T,
    "vocabulary without [UNK]: ValueError",
    ValueError,
    "vocab",
    lambda d: R.WordPieceTokenizer(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "a"]),
)
error(
    T,
    "vocab a string: TypeError",
    TypeError,
    "vocab",
    lambda d: R.WordPieceTokenizer("abc"),
)
error(
    T,
    "decode of an id past the vocabulary: ValueError",
    ValueError,
    "ids",
    lambda d: tokenizer().decode(torch.tensor([101, 30522])),
)
error(
    T,
    "decode of float ids: TypeError",
    TypeError,
    "ids",
    lambda d: tokenizer().decode(torch.tensor([1.0])),
)


@case(T, "empty batch: ids, mask (0, 0), offsets (0, 0, 2)", "empty")
def _tok_empty(device):
    ids, mask, offsets = tokenizer().encode([], return_offsets=True)
    assert ids.shape == mask.shape == (0, 0) and offsets.shape == (0, 0, 2)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool


@case(T, "empty, blank and control-only texts: just [CLS] [SEP]", "empty")
def _tok_blank(device):
    ids, mask, offsets = tokenizer().encode(
        ["", " \t\n\r\u3000", "\x00\x07\u200b\ufffd"], return_offsets=True
    )
    assert ids.tolist() == [[101, 102]] * 3 and mask.all()
    assert not offsets.any()


@case(T, "101-character word is [UNK] over its whole span; 100 is not", "value")
def _tok_long(device):
    tok = tokenizer()
    ids, spans = tok.tokenize("ab " + "x" * 101)
    assert ids[-1] == tok.vocab["[UNK]"] and spans[-1] == (3, 104)
    assert tok.vocab["[UNK]"] not in tok.tokenize("x" * 100)[0]


@case(T, "accents, CJK and punctuation: ids read from the vocabulary", "value")
def _tok_value(device):
    tok = tokenizer()
    ids, _, offsets = tok.encode("Ça, 中!", return_offsets=True)
    expected = [tok.vocab[t] for t in ("[CLS]", "ca", ",", "中", "!", "[SEP]")]
    assert ids[0].tolist() == expected
    assert offsets[0].tolist() == [[0, 0], [0, 2], [2, 3], [4, 5], [5, 6], [0, 0]]


@case(T, "texts longer than max_length keep [CLS] ... [SEP]", "bound")
def _tok_truncate(device):
    ids, mask = tokenizer().encode(["word " * 600, "a"], max_length=9)
    assert ids.shape == (2, 9) and ids[0, -1] == 102 and mask[1].sum() == 3


# ---------------------------------------------------------------- BertEncoder
B = "BertEncoder"


def _call(model_device, **changes):
    def call(device):
        model = tiny(device if model_device is None else model_device)
        ids, mask = ids_mask(device)
        args = {"ids": ids, "mask": mask, **changes}
        ids, mask = args.pop("ids"), args.pop("mask")
        ids = ids(device) if callable(ids) else ids
        mask = mask(device) if callable(mask) else mask
        return model(ids, mask, **args)

    return call


error(
    B,
    "float ids: TypeError",
    TypeError,
    "ids",
    _call(None, ids=lambda d: torch.zeros(3, 6, device=d)),
)
error(
    B,
    "0/1 integer mask: TypeError names mask",
    TypeError,
    "mask",
    _call(None, mask=lambda d: torch.ones(3, 6, dtype=torch.int64, device=d)),
)
error(
    B,
    "mask of another shape: ValueError",
    ValueError,
    "mask",
    _call(None, mask=lambda d: torch.ones(3, 5, dtype=torch.bool, device=d)),
)
error(
    B,
    "id 30522 past the vocabulary: ValueError",
    ValueError,
    "ids",
    _call(None, ids=lambda d: torch.full((3, 6), 30522, device=d)),
)
error(
    B,
    "negative id: ValueError",
    ValueError,
    "ids",
    _call(None, ids=lambda d: torch.full((3, 6), -1, device=d)),
)
error(
    B,
    "more positions than the model has: ValueError",
    ValueError,
    "positions",
    _call(
        None,
        ids=lambda d: torch.zeros(1, 17, dtype=torch.int64, device=d),
        mask=lambda d: torch.ones(1, 17, dtype=torch.bool, device=d),
    ),
)
error(
    B,
    "token type 2 of 2: ValueError",
    ValueError,
    "token_type_ids",
    lambda d: _call(None, token_type_ids=torch.full((3, 6), 2, device=d))(d),
)
error(
    B,
    "1-D ids: ValueError",
    ValueError,
    "ids",
    _call(None, ids=lambda d: torch.zeros(6, dtype=torch.int64, device=d)),
)
error(
    B,
    "ids on meta, weights elsewhere: ValueError",
    ValueError,
    "ids",
    lambda d: tiny(d)(
        torch.zeros(1, 2, dtype=torch.int64, device=META),
        torch.ones(1, 2, dtype=torch.bool, device=META),
    ),
)
error(
    B,
    "hidden 8 over 3 heads: ValueError",
    ValueError,
    "num_attention_heads",
    lambda d: R.BertEncoder(hidden_size=8, num_attention_heads=3),
)
error(
    B,
    "hidden_size=8.0: TypeError",
    TypeError,
    "hidden_size",
    lambda d: R.BertEncoder(hidden_size=8.0),
)
error(
    B,
    "output_hidden_states='yes': TypeError",
    TypeError,
    "output_hidden_states",
    _call(None, output_hidden_states="yes"),
)


@case(B, "every layer against a float64 loop over heads, two segments", "value")
def _bert_value(device):
    model = tiny(device)
    ids, mask = ids_mask(device)
    types = (torch.arange(6, device=device) > 2).long().expand(3, 6)
    last, states = model(ids, mask, token_type_ids=types, output_hidden_states=True)
    assert last is states[-1] and len(states) == 3
    for ours, ref in zip(states, bert64(model, ids, mask, types), strict=True):
        keep = mask.cpu()
        close(ours.cpu()[keep], ref[keep], atol=1e-12)


@case(B, "fully padded row: finite, attention output 0", "finite")
def _bert_padded(device):
    model = tiny(device)
    ids, mask = ids_mask(device)
    mask[1] = False
    states = model(ids, mask, output_hidden_states=True)[1]
    finite(*states)
    ref = bert64(model, ids, mask)
    close(states[-1][1], ref[-1][1], atol=1e-12)  # reference: zero attention output
    close(states[-1][0], ref[-1][0], atol=1e-12)


@case(B, "float16 and bfloat16 weights: finite, near float32", "finite")
def _bert_half(device):
    ids, mask = ids_mask(device)
    reference = tiny(device, torch.float32)(ids, mask)
    for dtype in (torch.float16, torch.bfloat16):
        model = tiny(device, torch.float32).to(dtype)
        out = model(ids, mask)
        assert out.dtype == dtype
        finite(out)
        # measured: 2.3e-3 (float16), 1.3e-2 (bfloat16) on values up to 2.6
        close(out.float()[mask], reference[mask], atol=0.05)


@case(B, "empty batch and empty sequence: empty hidden states", "empty")
def _bert_empty(device):
    model = tiny(device)
    for shape in ((0, 4), (2, 0)):
        ids = torch.zeros(shape, dtype=torch.int64, device=device)
        last, states = model(ids, ids.bool(), output_hidden_states=True)
        assert last.shape == (*shape, 8) and all(s.shape == last.shape for s in states)


@case(B, "meta module and meta ids: shapes propagate", "device")
def _bert_meta(device):
    model = R.BertEncoder(**TINY).to(META)
    out = model(
        torch.zeros(2, 5, dtype=torch.int64, device=META),
        torch.ones(2, 5, dtype=torch.bool, device=META),
    )
    assert out.device == META and out.shape == (2, 5, 8)


@case(B, "transposed (non-contiguous) ids and mask: same as contiguous", "device")
def _bert_views(device):
    model = tiny(device)
    ids, mask = ids_mask(device)
    out = model(ids.T.contiguous().T, mask.T.contiguous().T)
    close(out, model(ids, mask), atol=0)


@case(B, "gradients reach the weights, finite with a padded row", "grad")
def _bert_grad(device):
    model = tiny(device).train()
    ids, mask = ids_mask(device)
    mask[2] = False
    model(ids, mask).sum().backward()
    finite(*(p.grad for p in model.parameters() if p.grad is not None))


# ---------------------------------------------------------------- load_minilm
L = "load_minilm"
error(
    L, "device=2.5: TypeError", TypeError, "device", lambda d: R.load_minilm(device=2.5)
)
error(
    L,
    "device='gpu0': ValueError",
    ValueError,
    "device",
    lambda d: R.load_minilm(device="gpu0"),
)


@case(L, "the checkpoint in eval mode on the device, 256 tokens", "device")
def _load(device):
    tok, model = R.load_minilm(device=device)
    weight = model.embeddings.word_embeddings.weight
    assert not model.training and weight.device.type == device.type
    assert weight.dtype == torch.float32 and tok.max_length == 256
    assert model.config["num_hidden_layers"] == 6 and len(tok) == 30522


# ---------------------------------------------------------------- mean_pool
M = "mean_pool"
error(
    M,
    "integer mask: TypeError",
    TypeError,
    "mask",
    lambda d: R.mean_pool(
        torch.zeros(2, 3, 4, device=d), torch.ones(2, 3, dtype=torch.int64, device=d)
    ),
)
error(
    M,
    "mask (2, 4) for hidden (2, 3, 4): ValueError",
    ValueError,
    "mask",
    lambda d: R.mean_pool(
        torch.zeros(2, 3, 4, device=d), torch.ones(2, 4, dtype=torch.bool, device=d)
    ),
)
error(
    M,
    "2-D hidden: ValueError",
    ValueError,
    "hidden",
    lambda d: R.mean_pool(
        torch.zeros(2, 3, device=d), torch.ones(2, 3, dtype=torch.bool, device=d)
    ),
)
error(
    M,
    "integer hidden: TypeError",
    TypeError,
    "hidden",
    lambda d: R.mean_pool(
        torch.zeros(2, 3, 4, dtype=torch.int64, device=d),
        torch.ones(2, 3, dtype=torch.bool, device=d),
    ),
)
error(
    M,
    "mask on meta: ValueError",
    ValueError,
    "mask",
    lambda d: R.mean_pool(
        torch.zeros(2, 3, 4, device=d), torch.ones(2, 3, dtype=torch.bool, device=META)
    ),
)


@case(M, "NaN at padding never reaches the mean; empty row gives 0", "value")
def _pool_value(device):
    hidden = torch.randn(3, 4, 5, dtype=F64, device=device)
    mask = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], device=device
    ).bool()
    poisoned = hidden.masked_fill(~mask[..., None], torch.nan)
    ref = torch.stack(
        [
            hidden[0, :2].mean(0),
            hidden[1].mean(0),
            torch.zeros(5, dtype=F64, device=device),
        ]
    )
    close(R.mean_pool(poisoned, mask), ref, atol=1e-15)


@case(M, "float16 of 6e4 (sum overflows float16): finite", "finite")
def _pool_half(device):
    hidden = torch.full((1, 8, 2), 6e4, dtype=torch.float16, device=device)
    out = R.mean_pool(hidden, torch.ones(1, 8, dtype=torch.bool, device=device))
    assert out.dtype == torch.float16
    close(out, torch.full((1, 2), 6e4, dtype=F64), atol=0)


@case(M, "empty batch and empty sequence", "empty")
def _pool_empty(device):
    out = R.mean_pool(
        torch.zeros(0, 3, 4, device=device),
        torch.zeros(0, 3, dtype=torch.bool, device=device),
    )
    assert out.shape == (0, 4)
    out = R.mean_pool(
        torch.zeros(2, 0, 4, device=device),
        torch.zeros(2, 0, dtype=torch.bool, device=device),
    )
    close(out, torch.zeros(2, 4, dtype=F64), atol=0)


@case(M, "meta tensors: shape propagates", "device")
def _pool_meta(device):
    out = R.mean_pool(
        torch.zeros(2, 3, 4, device=META),
        torch.ones(2, 3, dtype=torch.bool, device=META),
    )
    assert out.device == META and out.shape == (2, 4)


# ---------------------------------------------------------------- encode_sentences
E = "encode_sentences"


def _encode(**changes):
    def call(device):
        args = {
            "tokenizer": tokenizer(),
            "encoder": tiny(device, torch.float32),
            **changes,
        }
        texts = args.pop("texts", ["a b", "c"])
        return R.encode_sentences(texts, **args)

    return call


error(E, "tokenizer=None: TypeError", TypeError, "tokenizer", _encode(tokenizer=None))
error(
    E,
    "a transformers-like module as encoder: TypeError",
    TypeError,
    "encoder",
    _encode(encoder=torch.nn.Linear(2, 2)),
)
error(E, "batch_size=0: ValueError", ValueError, "batch_size", _encode(batch_size=0))
error(E, "layer=3 of 3 states: ValueError", ValueError, "layer", _encode(layer=3))
error(E, "layer=(): ValueError", ValueError, "layer", _encode(layer=()))
error(
    E, "layer=[1, -1] (a list): TypeError", TypeError, "layer", _encode(layer=[1, -1])
)
error(E, "pooling='sum': ValueError", ValueError, "pooling", _encode(pooling="sum"))
error(E, "normalize=1: TypeError", TypeError, "normalize", _encode(normalize=1))
error(
    E, "max_length=600: ValueError", ValueError, "max_length", _encode(max_length=600)
)
error(E, "texts=b'bytes': TypeError", TypeError, "texts", _encode(texts=b"bytes"))


@case(E, "no texts: (0, hidden) float32 on the encoder's device", "empty")
def _encode_empty(device):
    out = _encode(texts=[])(device)
    assert out.shape == (0, 8) and out.dtype == torch.float32
    assert out.device.type == device.type


@case(E, "sorted batches restore the order; float64 BERT by hand", "value")
def _encode_value(device):
    texts = ["a much longer text than the others, with words", "", "short one", "x"]
    model = tiny(device, F64)
    tok = tokenizer()
    ids, mask = tok.encode(texts)
    states = bert64(model, ids, mask)
    weight = mask[..., None].double()
    mean = ((states[0] + states[-1]) * weight).sum(1) / weight.sum(1) / 2
    ref = mean / mean.norm(dim=-1, keepdim=True)
    out = R.encode_sentences(
        texts, tokenizer=tok, encoder=model, batch_size=2, layer=(0, -1)
    )
    close(out, ref, atol=1e-6)  # float32 output


@case(E, "empty strings and unknown scripts: finite unit rows", "finite")
def _encode_finite(device):
    out = _encode(texts=["", "   ", "\x00", "😀" * 300, "x" * 5000])(device)
    finite(out)
    close(out.norm(dim=-1), torch.ones(5, dtype=F64), atol=1e-6)


# ---------------------------------------------------------------- encode_poolings
P = "encode_poolings"


def _poolings(**changes):
    def call(device):
        args = {"tokenizer": tokenizer(), "encoder": tiny(device, torch.float32)}
        args |= changes
        texts = args.pop("texts", ["a b", "c"])
        return R.encode_poolings(texts, **args)

    return call


error(P, "tokenizer=None: TypeError", TypeError, "tokenizer", _poolings(tokenizer=None))
error(
    P,
    "a transformers-like module as encoder: TypeError",
    TypeError,
    "encoder",
    _poolings(encoder=torch.nn.Linear(2, 2)),
)
error(P, "batch_size=0: ValueError", ValueError, "batch_size", _poolings(batch_size=0))
error(
    P, "batch_size=2.0: TypeError", TypeError, "batch_size", _poolings(batch_size=2.0)
)
error(P, "max_length=1: ValueError", ValueError, "max_length", _poolings(max_length=1))
error(P, "texts=b'bytes': TypeError", TypeError, "texts", _poolings(texts=b"bytes"))


@case(P, "no texts: every pooling (0, hidden) float32", "empty")
def _poolings_empty(device):
    out = _poolings(texts=[])(device)
    assert out and all(v.shape == (0, 8) for v in out.values())
    assert all(v.dtype == torch.float32 for v in out.values())


@case(P, "sorted batches restore the order; float64 BERT pooled by hand", "value")
def _poolings_value(device):
    texts = ["a much longer text than the others, with words", "", "short one", "x"]
    model = tiny(device, F64)
    tok = tokenizer()
    ids, mask = tok.encode(texts)
    states = bert64(model, ids, mask)
    last = len(states) - 1
    weight = mask[..., None].double()
    out = R.encode_poolings(texts, tokenizer=tok, encoder=model, batch_size=3)
    for i, h in enumerate(states):
        close(out[f"mean {i}"], (h * weight).sum(1) / weight.sum(1), atol=1e-6)
    close(out[f"cls {last}"], states[-1][:, 0], atol=1e-6)
    top = states[-1].masked_fill(~mask[..., None], -torch.inf).amax(1)
    close(out[f"max {last}"], top, atol=1e-6)
    first_last = ((states[1] + states[-1]) * weight).sum(1) / weight.sum(1) / 2
    close(out["first-last"], first_last, atol=1e-6)


@case(P, "empty strings and unknown scripts: finite rows", "finite")
def _poolings_finite(device):
    out = _poolings(texts=["", "   ", "\x00", "😀" * 300, "x" * 5000])(device)
    finite(*out.values())
