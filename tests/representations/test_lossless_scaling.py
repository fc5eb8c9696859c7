"""Growing a Transformer without changing its function
(kexue.representations.lossless_scaling), against naive float64 references written
here from the definitions (index loops), against ``transformers``' ``BertModel`` and
``BertForMaskedLM`` widened with these functions, and on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import functools
import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.representations.encoder import BertEncoder, load_minilm
from kexue.representations.lossless_scaling import (
    repeat_features,
    widen_bert,
    widen_embedding,
    widen_layer_norm,
    widen_linear,
)

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download

F64 = torch.float64
# Max |error| of every hidden state of MiniLM widened 384 -> 768, float32 on the CPU,
# over 6 Lee documents (values up to 10.5): 5.2e-6. CUDA sums in other orders.
MINILM_ATOL = {"cpu": 2e-5, "cuda": 2e-4}
TINY = dict(
    vocab_size=40,
    hidden_size=12,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=20,
    max_position_embeddings=16,
    type_vocab_size=2,
    layer_norm_eps=1e-3,  # large on purpose: the eps rule is visible
)


# ---------------------------------------------------------------- references
def repeat64(x: torch.Tensor, k: int, pairs: bool = False) -> torch.Tensor:
    """x~_i = x_ceil(i/k) (1-based), or by pairs: pair p of the output is pair
    p // k of the input; an index loop in float64."""
    x = x.double().cpu()
    d = x.shape[-1]
    if pairs:
        index = [2 * (p // k) + j for p in range(k * d // 2) for j in range(2)]
    else:
        index = [math.ceil((i + 1) / k) - 1 for i in range(k * d)]
    out = torch.empty(*x.shape[:-1], k * d, dtype=F64)
    for i, source in enumerate(index):
        out[..., i] = x[..., source]
    return out


def linear64(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """y_j = sum_i x_i w_ji + b_j as explicit loops (x is 1-D)."""
    x, w = x.double().cpu(), w.double().cpu()
    out = torch.zeros(w.shape[0], dtype=F64)
    for j in range(w.shape[0]):
        total = 0.0
        for i in range(w.shape[1]):
            total += float(x[i]) * float(w[j, i])
        out[j] = total + (0.0 if b is None else float(b[j]))
    return out


def layer_norm64(x, gain, bias, eps) -> torch.Tensor:
    x = x.double().cpu()
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * gain.double().cpu() + bias.double().cpu()


def tiny_bert(dtype=F64, device="cpu", **overrides) -> BertEncoder:
    torch.manual_seed(3)
    model = BertEncoder(**{**TINY, **overrides}).to(device=device, dtype=dtype)
    with torch.no_grad():  # non-trivial LayerNorm gains and biases
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
    return model.eval()


def batch(device="cpu", seq=9):
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, TINY["vocab_size"], (3, seq), generator=gen)
    mask = torch.ones(3, seq, dtype=torch.bool)
    mask[1, 6:] = False  # padding
    types = torch.randint(0, 2, (3, seq), generator=gen)
    return ids.to(device), mask.to(device), types.to(device)


# ---------------------------------------------------------------- repeat_features
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("pairs", [False, True])
def test_repeat_features_matches_the_index_formula(device, k, pairs):
    x = torch.randn(2, 3, 6, dtype=F64, device=device)
    out = repeat_features(x, k, pairs=pairs)
    assert out.device == x.device and out.dtype == x.dtype
    assert torch.equal(out.cpu(), repeat64(x, k, pairs))


def test_repeat_features_is_an_isometry_after_division():
    x, y = torch.randn(2, 5, 8, dtype=F64)
    for k in (2, 3, 5):
        rx, ry = (
            repeat_features(x, k) / math.sqrt(k),
            repeat_features(y, k) / math.sqrt(k),
        )
        torch.testing.assert_close(
            (rx * ry).sum(-1), (x * y).sum(-1), rtol=1e-14, atol=0
        )


def test_repeat_features_keeps_integers_and_empties():
    assert torch.equal(
        repeat_features(torch.tensor([1, 2])), torch.tensor([1, 1, 2, 2])
    )
    assert repeat_features(torch.zeros(4, 0), 3).shape == (4, 0)
    assert repeat_features(torch.zeros(0, 2), 3, pairs=True).shape == (0, 6)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: repeat_features([1.0, 2.0]), TypeError, "x"),
        (lambda: repeat_features(torch.tensor(1.0)), ValueError, "x"),
        (lambda: repeat_features(torch.ones(3), 0), ValueError, "factor"),
        (lambda: repeat_features(torch.ones(3), 2.0), TypeError, "factor"),
        (lambda: repeat_features(torch.ones(3), pairs=True), ValueError, "even"),
        (lambda: repeat_features(torch.ones(3), pairs=1), TypeError, "pairs"),
        (lambda: repeat_features(torch.ones(2, dtype=torch.bool)), TypeError, "x"),
    ],
)
def test_repeat_features_rejects(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ---------------------------------------------------------------- layers
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("scales", [(2**-0.5, 2**-0.5), (2**-0.5, 1.0), (1.0, 0.3)])
def test_widen_linear_against_loops(k, scales):
    a, c = scales
    layer = nn.Linear(5, 4).double()
    wide = widen_linear(layer, k, in_scale=a, out_scale=c)
    assert (wide.in_features, wide.out_features) == (5 * k, 4 * k)
    x = torch.randn(5, dtype=F64)
    got = linear64(repeat64(x, k) * a, *params(wide))
    want = repeat64(linear64(x, *params(layer)), k) * c
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


def params(layer: nn.Linear):
    return layer.weight.detach(), None if layer.bias is None else layer.bias.detach()


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 4),
    a=st.floats(0.1, 3.0),
    c=st.floats(0.1, 3.0),
    bias=st.booleans(),
)
def test_widen_linear_property(k, a, c, bias):
    layer = nn.Linear(3, 2, bias=bias).double()
    wide = widen_linear(layer, k, in_scale=a, out_scale=c)
    x = torch.randn(7, 3, dtype=F64)
    got = wide(repeat_features(x, k) * a)
    torch.testing.assert_close(
        got, repeat_features(layer(x), k) * c, rtol=1e-13, atol=1e-13
    )


def test_widen_linear_keeps_dtype_device_and_grad(device):
    layer = nn.Linear(4, 3).to(device=device, dtype=torch.float16)
    layer.bias.requires_grad_(False)
    wide = widen_linear(layer, 2, in_scale=0.5, out_scale=1.0)
    assert wide.weight.dtype == torch.float16 and wide.weight.device == device
    assert wide.weight.requires_grad and not wide.bias.requires_grad
    # half precision rounded once from the float64 product
    want = layer.weight.double().repeat_interleave(2, 0).repeat_interleave(2, 1) / 1.0
    assert torch.equal(wide.weight, want.half())


def test_widen_linear_without_bias_and_on_meta():
    wide = widen_linear(
        nn.Linear(3, 2, bias=False, device="meta"), 2, in_scale=1, out_scale=1
    )
    assert wide.bias is None and wide.weight.is_meta and wide.weight.shape == (4, 6)


def test_widen_layer_norm_is_exact_with_eps(device):
    layer = nn.LayerNorm(6, eps=0.1).to(device=device, dtype=F64)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    x = torch.randn(4, 6, dtype=F64, device=device)
    for k, a, c in [(2, 2**-0.5, 2**-0.5), (3, 1.0, 3**-0.5), (2, 0.7, 1.3)]:
        wide = widen_layer_norm(layer, k, in_scale=a, out_scale=c)
        assert wide.eps == pytest.approx(0.1 * a**2)
        got = wide(repeat_features(x, k) * a)
        want = repeat64(layer_norm64(x, layer.weight, layer.bias, 0.1), k) * c
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-14)


def test_widen_layer_norm_with_the_article_eps_is_off_by_the_eps_term():
    layer = nn.LayerNorm(6, eps=0.1).double()
    x = torch.randn(4, 6, dtype=F64)
    wide = widen_layer_norm(layer, 2)
    wide.eps = layer.eps  # the article's rule: eps unchanged
    error = (
        wide(repeat_features(x) / 2**0.5) - repeat_features(layer(x)) / 2**0.5
    ).abs()
    assert error.max() > 1e-3


def test_widen_layer_norm_keeps_the_class():
    from kexue.representations.encoder import _LayerNorm

    wide = widen_layer_norm(_LayerNorm(4, eps=1e-6), 2)
    assert type(wide) is _LayerNorm and wide.eps == pytest.approx(5e-7)


def test_widen_embedding_rows_and_options():
    emb = nn.Embedding(7, 4, padding_idx=0, max_norm=2.0).double()
    wide = widen_embedding(emb, 3)
    torch.testing.assert_close(
        wide.weight.detach(), repeat64(emb.weight.detach(), 3) / math.sqrt(3)
    )
    assert wide.padding_idx == 0 and wide.max_norm == pytest.approx(2.0)
    assert widen_embedding(emb, 2, scale=1.0).max_norm == pytest.approx(2 * 2**0.5)


# ---------------------------------------------------------------- widen_bert
@pytest.mark.parametrize("k", [2, 3])
def test_widen_bert_every_layer_is_repeat_over_sqrt_k(device, k):
    small = tiny_bert(device=device)
    wide = widen_bert(small, k)
    assert wide.config["hidden_size"] == 12 * k
    assert wide.config["intermediate_size"] == 20 * k
    assert wide.config["layer_norm_eps"] == pytest.approx(1e-3 / k)
    assert not any(p.is_meta for p in wide.parameters())
    ids, mask, types = batch(device)
    _, states = small(ids, mask, token_type_ids=types, output_hidden_states=True)
    _, states_wide = wide(ids, mask, token_type_ids=types, output_hidden_states=True)
    for h, hw in zip(states, states_wide, strict=True):
        want = repeat64(h, k) / math.sqrt(k)
        torch.testing.assert_close(hw.cpu(), want, rtol=0, atol=1e-13)


# The article's summary table for k = 2, (weight factor, bias factor) per parameter
# name ending; embeddings and LayerNorms: repeat and divide by sqrt(2), eps unchanged.
ARTICLE_TABLE = {
    "attention.self.query": (2**0.25 / 2, 2**0.25 / 2**0.5),
    "attention.self.key": (2**0.25 / 2, 2**0.25 / 2**0.5),
    "attention.self.value": (1 / 2, 1 / 2**0.5),
    "attention.output.dense": (1 / 2, 1 / 2**0.5),
    "intermediate.dense": (1 / 2**0.5, 1.0),
    "output.dense": (1 / (2 * 2**0.5), 1 / 2),
}


def article_table64(small: BertEncoder) -> dict[str, torch.Tensor]:
    """Every parameter of the 2x model by the article's table, from index loops."""
    out = {}
    for name, p in small.state_dict().items():
        module, kind = name.rsplit(".", 1)
        factors = next(
            (f for key, f in ARTICLE_TABLE.items() if module.endswith(key)), None
        )
        if factors is None:  # embeddings (rows keep their count), LayerNorms
            out[name] = repeat64(p, 2) / 2**0.5
        elif kind == "weight":  # repeated along both dimensions
            out[name] = repeat64(repeat64(p, 2).T, 2).T * factors[0]
        else:
            out[name] = repeat64(p, 2) * factors[1]
    return out


def test_widen_bert_article_scheme_is_the_table_as_written():
    small = tiny_bert()
    wide = widen_bert(small, 2, scheme="article")
    want = article_table64(small)
    got = wide.state_dict()
    assert got.keys() == want.keys()
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-15, msg=name)
    eps = [m.eps for m in wide.modules() if isinstance(m, nn.LayerNorm)]
    assert eps == [1e-3] * len(eps) and wide.config["layer_norm_eps"] == 1e-3


def test_widen_bert_article_scheme_is_off_by_the_ffn2_bias_and_eps_only():
    """The article's table differs from the exact widening only through the second
    feed-forward bias (b/2, not b/sqrt 2) and eps: with those biases zero and a tiny
    eps it is exact, with them it is not."""
    ids, mask, types = batch()

    def worst(small):
        wide = widen_bert(small, 2, scheme="article")
        _, hs = small(ids, mask, token_type_ids=types, output_hidden_states=True)
        _, hw = wide(ids, mask, token_type_ids=types, output_hidden_states=True)
        return max(
            (w - repeat64(h, 2) / 2**0.5)[mask].abs().max().item()
            for h, w in zip(hs, hw, strict=True)
        )

    small = tiny_bert(layer_norm_eps=1e-12)
    with torch.no_grad():
        for layer in small.encoder.layer:
            layer.output.dense.bias.normal_()
    assert worst(small) > 1e-2
    with torch.no_grad():
        for layer in small.encoder.layer:
            layer.output.dense.bias.zero_()
    assert worst(small) < 1e-10  # what eps = 1e-12 unchanged leaves (~ eps / var)
    assert worst(tiny_bert(layer_norm_eps=1e-12)) > 1e-4  # PyTorch's init bias is not 0


def test_widen_bert_leaves_the_original_alone():
    small = tiny_bert()
    before = {n: p.clone() for n, p in small.state_dict().items()}
    widen_bert(small, 2)
    assert all(torch.equal(before[n], p) for n, p in small.state_dict().items())
    assert small.config["hidden_size"] == 12


def test_widen_bert_mode_dtype_grad():
    small = tiny_bert(dtype=torch.float32).train()
    wide = widen_bert(small, 2)
    assert wide.training
    assert all(p.dtype == torch.float32 and p.requires_grad for p in wide.parameters())


def test_copies_stay_equal_under_adam_without_noise():
    """Copies of a feature get identical gradients: training keeps the wide model a
    small one unless noise breaks the tie."""
    ids, mask, _ = batch()
    for noise, tied in ((0.0, True), (0.05, False)):
        wide = widen_bert(
            tiny_bert().train(),
            2,
            noise=noise,
            generator=torch.Generator().manual_seed(0),
        )
        optimiser = torch.optim.Adam(wide.parameters(), lr=1e-2)
        for _ in range(5):
            loss = wide(ids, mask)[mask].pow(3).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        h = wide(ids, mask).detach()
        gap = (h[..., 0::2] - h[..., 1::2]).abs().max()
        assert (gap < 1e-12) == tied


def test_widen_bert_noise_is_small_and_seeded():
    small = tiny_bert()
    ids, mask, _ = batch()

    def make() -> BertEncoder:
        gen = torch.Generator().manual_seed(1)
        return widen_bert(small, 2, noise=1e-3, generator=gen)

    a, b = make(), make()
    assert all(
        torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )
    exact = repeat_features(small(ids, mask)) / 2**0.5
    drift = (a(ids, mask) - exact)[mask].abs().max()
    assert 1e-6 < drift < 0.05


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m: widen_bert(nn.Linear(2, 2)), TypeError, "encoder"),
        (lambda m: widen_bert(m, 0), ValueError, "factor"),
        (lambda m: widen_bert(m, noise=-1.0), ValueError, "noise"),
        (lambda m: widen_bert(m, noise="0"), TypeError, "noise"),
        (lambda m: widen_bert(m, generator=1), TypeError, "generator"),
        (lambda m: widen_bert(m, scheme="Article"), ValueError, "scheme"),
        (lambda m: widen_linear(m, 2, in_scale=1, out_scale=1), TypeError, "layer"),
        (
            lambda m: widen_linear(nn.Linear(2, 2), 2, in_scale=0, out_scale=1),
            ValueError,
            "in_scale",
        ),
        (lambda m: widen_layer_norm(nn.LayerNorm((2, 2))), ValueError, "layer"),
        (lambda m: widen_layer_norm(nn.LayerNorm(2), out_scale=-1), ValueError, "out"),
        (lambda m: widen_embedding(nn.Linear(2, 2)), TypeError, "embedding"),
        (lambda m: widen_embedding(nn.Embedding(2, 2), scale=0.0), ValueError, "scale"),
    ],
)
def test_widening_rejects(call, error, words):
    with pytest.raises(error, match=words):
        call(tiny_bert())


# ---------------------------------------------------------------- MiniLM
@functools.cache
def minilm():
    return load_minilm()


def test_minilm_widened_384_to_768(device):
    from kexue.data import lee_documents

    tokenizer, small = minilm()
    small = small.to(device)
    wide = widen_bert(small, 2)
    assert wide.config["hidden_size"] == 768
    ids, mask = tokenizer.encode(lee_documents()[:6], max_length=48)
    ids, mask = ids.to(device), mask.to(device)
    with torch.inference_mode():
        _, states = small(ids, mask, output_hidden_states=True)
        _, states_wide = wide(ids, mask, output_hidden_states=True)
    for h, hw in zip(states, states_wide, strict=True):
        error = (hw - repeat_features(h) / 2**0.5)[mask].abs().max()
        assert error < MINILM_ATOL[device.type]
    pooled = F.normalize((states[-1] * mask[..., None]).sum(1), dim=-1)
    pooled_wide = F.normalize((states_wide[-1] * mask[..., None]).sum(1), dim=-1)
    cos, cos_wide = pooled @ pooled.T, pooled_wide @ pooled_wide.T
    assert (cos - cos_wide).abs().max() < 1e-6


# ---------------------------------------------------------------- transformers peer
def hf_config(transformers, hidden, inner, eps, **extra):
    return transformers.BertConfig(
        vocab_size=TINY["vocab_size"],
        hidden_size=hidden,
        num_hidden_layers=TINY["num_hidden_layers"],
        num_attention_heads=TINY["num_attention_heads"],
        intermediate_size=inner,
        max_position_embeddings=TINY["max_position_embeddings"],
        type_vocab_size=TINY["type_vocab_size"],
        layer_norm_eps=eps,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
        **extra,
    )


def test_transformers_bertmodel_runs_widen_bert_weights():
    """widen_bert's weights loaded into transformers' own (eager) BertModel give
    repeat/sqrt(2) of the small BertModel's hidden states."""
    transformers = pytest.importorskip("transformers")
    small = tiny_bert()
    wide = widen_bert(small, 2)
    hf_small = transformers.BertModel(hf_config(transformers, 12, 20, 1e-3), False)
    hf_wide = transformers.BertModel(hf_config(transformers, 24, 40, 5e-4), False)
    for hf, ours in ((hf_small, small), (hf_wide, wide)):
        hf.double().eval()
        result = hf.load_state_dict(ours.state_dict(), strict=False)
        assert not result.unexpected_keys
        assert all("position_ids" in key for key in result.missing_keys)
    ids, mask, types = batch()
    kwargs = dict(
        attention_mask=mask.long(), token_type_ids=types, output_hidden_states=True
    )
    with torch.no_grad():
        states = hf_small(ids, **kwargs).hidden_states
        states_wide = hf_wide(ids, **kwargs).hidden_states
    for h, hw in zip(states, states_wide, strict=True):
        torch.testing.assert_close(
            hw[mask], (repeat64(h, 2) / 2**0.5)[mask], atol=1e-13, rtol=0
        )


def widen_masked_lm(transformers, model, k):
    """transformers' BertForMaskedLM widened module by module with this library's
    functions; the prediction head's dense layer keeps GELU's input (out_scale 1) and
    its LayerNorm takes a plain repetition (in_scale 1)."""
    config = model.config
    wide = (
        transformers.BertForMaskedLM(
            hf_config(
                transformers,
                k * config.hidden_size,
                k * config.intermediate_size,
                config.layer_norm_eps / k,
            )
        )
        .double()
        .eval()
    )
    s = k**-0.5
    rules = {
        "query": dict(in_scale=s, out_scale=k**-0.25),
        "key": dict(in_scale=s, out_scale=k**-0.25),
        "intermediate.dense": dict(in_scale=s, out_scale=1.0),
        "attention.output.dense": dict(in_scale=s, out_scale=s),  # before the next
        "output.dense": dict(in_scale=1.0, out_scale=s),
        "value": dict(in_scale=s, out_scale=s),
        "transform.dense": dict(in_scale=s, out_scale=1.0),
    }
    modules = dict(wide.named_modules())
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            new = widen_embedding(module, k)
        elif isinstance(module, nn.LayerNorm):
            in_scale = 1.0 if "transform" in name else s
            new = widen_layer_norm(module, k, in_scale=in_scale)
        elif isinstance(module, nn.Linear) and not name.endswith("decoder"):
            rule = next(v for key, v in rules.items() if name.endswith(key))
            new = widen_linear(module, k, **rule)
        else:
            continue
        target = modules[name]
        target.load_state_dict(new.state_dict())
        if isinstance(module, nn.LayerNorm):
            target.eps = new.eps
    wide.cls.predictions.bias.data.copy_(model.cls.predictions.bias)
    return wide


def test_transformers_masked_lm_logits_unchanged():
    """The article's output head: GELU dense (W/sqrt2, b), LayerNorm, tied decoder:
    the MLM logits of the widened BertForMaskedLM equal the small one's."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(4)
    model = transformers.BertForMaskedLM(hf_config(transformers, 12, 20, 1e-3))
    model = model.double().eval()
    wide = widen_masked_lm(transformers, model, 2)
    assert (
        wide.cls.predictions.decoder.weight
        is wide.bert.embeddings.word_embeddings.weight
    )
    ids, mask, types = batch()
    with torch.no_grad():
        logits = model(ids, attention_mask=mask.long(), token_type_ids=types).logits
        wide_logits = wide(ids, attention_mask=mask.long(), token_type_ids=types).logits
    torch.testing.assert_close(wide_logits[mask], logits[mask], atol=1e-12, rtol=0)
