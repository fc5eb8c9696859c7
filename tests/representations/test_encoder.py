"""WordPiece and BERT (kexue.representations.encoder) against independent
implementations: HF ``tokenizers`` (ids and character offsets) and ``transformers``'
``BertModel`` (every layer's hidden states, sentence embeddings), both read from the
same all-MiniLM-L6-v2 folder, offline."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kexue import data
from kexue.data import minilm_weights_path
from kexue.representations.encoder import (
    BertEncoder,
    WordPieceTokenizer,
    encode_poolings,
    encode_sentences,
    load_minilm,
    mean_pool,
)

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download

FOLDER = minilm_weights_path().parent
# Max |error| of the hidden states against BertModel measured on the CPU on 24 Lee
# documents (values up to 10.5): 9.1e-6; sentence vectors (unit norm): 1.3e-7. CUDA
# kernels sum in other orders (allowance not measured here: no GPU on the build host).
HIDDEN_ATOL = {"cpu": 3e-5, "cuda": 2e-4}
SENTENCE_ATOL = {"cpu": 1e-6, "cuda": 2e-5}

HOSTILE = [
    "Café naïve résumé ÉCOLE Ångström",
    "中文字符 and 日本語 かな カタカナ 한국어",
    "emoji 😀👍🏽 👨‍👩‍👧 ❤️ \U0001f972",
    "ctrl\x00\x07\x1b\x7f\u200b\ufffd end",
    "ab\x07cd",  # a removed control character joins its neighbours
    "x" * 100,
    "x" * 101,  # over BERT's 100 characters: [UNK]
    "supercalifragilisticexpialidocious" * 3,
    "",
    "   \t\n\r  ",
    "!!!...???,,,;;;",
    "$^~`|+<=>",  # ASCII symbols count as punctuation
    "mixed Ελληνικά Русский עברית العربية हिन्दी ไทย",
    "İstanbul ΣΑΣ straße ǅ ﬁ",
    "hello [MASK] world [SEP]x[CLS]",  # literal special tokens stay whole
    "[mask] [UNK]",
    "a\u2028b\u00a0c\u3000d\x85e\x0bf\x1cg",  # whitespace and control characters
    "e\u0301\u0323 \u00e8\u0323\u0301 \u0300start",
    "\uf900\uf901 \U00020000 \U0002b920",  # compatibility and extension ideographs
    "a—b–c “quoted” «guillemets» ‘x’ …",
    "12,345.67 3.14e-10 don't",
    "\u0378\U000e0001\ue000",  # unassigned, tag, private use
]


@functools.cache
def minilm() -> tuple[WordPieceTokenizer, BertEncoder]:
    return load_minilm()


@functools.cache
def hf_tokenizer(max_length: int):
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    # The file pads to a fixed 128; encode pads to the longest text and truncates.
    hf.enable_truncation(max_length)
    hf.enable_padding(pad_id=0, pad_token="[PAD]")
    return hf


@functools.cache
def bert_model():
    transformers = pytest.importorskip("transformers")
    return transformers.BertModel.from_pretrained(str(FOLDER)).eval()


def lee() -> list[str]:
    """The Lee corpus: 50 test documents and 300 background documents."""
    return data.lee_documents() + data.lee_background()


def assert_same_as_hf(tok: WordPieceTokenizer, texts: list[str], max_length: int):
    ids, mask, offsets = tok.encode(texts, max_length=max_length, return_offsets=True)
    encodings = hf_tokenizer(max_length).encode_batch(texts)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert offsets.shape == (*ids.shape, 2)
    for b, enc in enumerate(encodings):
        assert ids[b].tolist() == enc.ids, texts[b][:60]
        assert mask[b].tolist() == [bool(m) for m in enc.attention_mask], texts[b][:60]
        assert [tuple(o) for o in offsets[b].tolist()] == enc.offsets, texts[b][:60]


# ---------------------------------------------------------------- the tokenizer
def test_ids_and_offsets_match_tokenizers_on_lee() -> None:
    assert_same_as_hf(minilm()[0], lee(), 256)


@pytest.mark.parametrize("max_length", [2, 3, 8, 256, 512])
def test_ids_and_offsets_match_tokenizers_on_hostile_strings(max_length: int) -> None:
    assert_same_as_hf(minilm()[0], [*HOSTILE, *lee()[:3]], max_length)


def test_every_code_point_of_planes_0_and_1_matches_but_newer_unicode() -> None:
    """Each code point of the BMP and the SMP (emoji) inside and between words. The
    tables behind tokenizers' categories predate Python's Unicode 14: characters
    assigned or recategorised since (NKo U+07FD, Arabic U+0898.., U+2E55..) differ. This
    book measured 503 such code points over all 17 planes, none below U+0600 and none
    an ideograph; the test pins that."""
    tok, hf = minilm()[0], hf_tokenizer(512)
    hf.no_padding()
    try:
        codes = [c for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF]
        texts = [f"a{chr(c)}b x{chr(c)} {chr(c)}" for c in codes]
        differ = []
        for c, text, enc in zip(codes, texts, hf.encode_batch(texts), strict=True):
            ids, spans = tok.tokenize(text)
            if [101, *ids, 102] != enc.ids or [(0, 0), *spans, (0, 0)] != enc.offsets:
                differ.append(c)
    finally:
        hf.enable_padding(pad_id=0, pad_token="[PAD]")
    assert len(differ) <= 503
    assert min(differ, default=0x600) >= 0x600
    cjk = "".join(chr(c) for c in differ if 0x4E00 <= c <= 0x9FFF or c >= 0x20000)
    assert not cjk


def test_basic_tokenisation_by_hand() -> None:
    tok = minilm()[0]
    ids, _ = tok.tokenize("Héllo, WORLD!! 中文")
    assert [tok.inverse[i] for i in ids] == [
        "hello",
        ",",
        "world",
        "!",
        "!",
        "中",
        "文",
    ]
    ids, spans = tok.tokenize("unaffable")  # greedy longest match, ## continuations
    assert [tok.inverse[i] for i in ids] == ["una", "##ffa", "##ble"]
    assert spans == [(0, 3), (3, 6), (6, 9)]
    assert tok.tokenize("x" * 101)[0] == [tok.unk_id]
    assert tok.tokenize("")[0] == [] and tok.tokenize(" \t\n")[0] == []


def test_encode_shapes_padding_and_truncation() -> None:
    tok = minilm()[0]
    ids, mask = tok.encode(["one two three", "one"])
    assert ids.shape == mask.shape == (2, 5)
    assert ids[1, 3:].tolist() == [tok.pad_id, tok.pad_id] and mask.sum(1).tolist() == [
        5,
        3,
    ]
    ids, mask = tok.encode("word " * 1000)  # the model's own 256 by default
    assert (
        ids.shape == (1, 256) and ids[0, -1] == tok.sep_id and ids[0, 0] == tok.cls_id
    )
    ids, mask, offsets = tok.encode([], return_offsets=True)
    assert ids.shape == mask.shape == (0, 0) and offsets.shape == (0, 0, 2)
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("x", max_length=513)
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("x", max_length=1)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tok.encode(["x", 3])  # type: ignore[list-item]


def test_from_vocab_reads_the_settings_beside_it(tmp_path: Path) -> None:
    tok = WordPieceTokenizer.from_vocab(FOLDER)
    assert (tok.max_length, tok.max_positions, tok.lowercase) == (256, 512, True)
    (tmp_path / "vocab.txt").write_text(
        (FOLDER / "vocab.txt").read_text("utf-8"), "utf-8"
    )
    bare = WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt")
    assert (bare.max_length, bare.max_positions, bare.lowercase) == (512, 512, True)
    cased = WordPieceTokenizer.from_vocab(tmp_path, lowercase=False, max_length=64)
    assert cased.tokenize("Hello")[0] != tok.tokenize("Hello")[0]  # no "Hello" entry
    with pytest.raises(FileNotFoundError, match="path"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt")


def test_decode_inverts_encode_up_to_case_and_accents() -> None:
    tok = minilm()[0]
    ids, _ = tok.encode(["Unaffable Café, isn't it?", "short"])
    assert tok.decode(ids) == ["unaffable cafe , isn ' t it ?", "short"]
    assert tok.decode([101, 7592, 102]) == "hello"
    with pytest.raises(ValueError, match="ids"):
        tok.decode([len(tok)])


# ---------------------------------------------------------------- the encoder
def test_every_layer_matches_bert_model(device: torch.device) -> None:
    tok, encoder = load_minilm(device=device)
    texts = lee()[:8]  # about 2,000 tokens: enough padding and length variety
    ids, mask = tok.encode(texts)
    types = ((torch.arange(ids.shape[1]) > 20) & mask).long()  # a second segment
    with torch.inference_mode():
        for token_types in (None, types):
            theirs = bert_model()(
                input_ids=ids,
                attention_mask=mask.long(),
                token_type_ids=token_types,
                output_hidden_states=True,
            ).hidden_states
            last, ours = encoder(
                ids.to(device),
                mask.to(device),
                token_type_ids=None if token_types is None else token_types.to(device),
                output_hidden_states=True,
            )
            assert len(ours) == 7 and last is ours[-1]
            for a, b in zip(ours, theirs, strict=True):
                error = (a.cpu() - b)[mask].abs().max().item()
                assert error < HIDDEN_ATOL[device.type], error


def test_sentence_vectors_match_sentence_transformers_recipe(
    device: torch.device,
) -> None:
    """Mean pooling over real tokens, then L2 normalisation (all-MiniLM-L6-v2's
    modules.json), with BertModel; texts in batches of 7, sorted and restored."""
    tok, encoder = load_minilm(device=device)
    texts = [*lee()[:12], *HOSTILE]
    ids, mask = tok.encode(texts)
    with torch.inference_mode():
        hidden = bert_model()(input_ids=ids, attention_mask=mask.long())[0]
    weight = mask[..., None].float()
    expected = F.normalize((hidden * weight).sum(1) / weight.sum(1), dim=-1)
    ours = encode_sentences(texts, tokenizer=tok, encoder=encoder, batch_size=7)
    assert ours.dtype == torch.float32 and ours.device.type == device.type
    error = (ours.cpu() - expected).abs().max().item()
    assert error < SENTENCE_ATOL[device.type], error


def test_padding_does_not_change_a_text() -> None:
    tok, encoder = minilm()
    alone = encode_sentences(["A short one."], tokenizer=tok, encoder=encoder)
    padded = encode_sentences(
        ["A short one.", lee()[0]], tokenizer=tok, encoder=encoder, batch_size=2
    )
    assert (alone[0] - padded[0]).abs().max() < 1e-6


def test_layers_and_poolings_against_by_hand() -> None:
    tok, encoder = minilm()
    texts = ["The cat sat on the mat.", "A dog.", ""]
    ids, mask = tok.encode(texts)
    with torch.inference_mode():
        _, states = encoder(ids, mask, output_hidden_states=True)
    weight = mask[..., None].double()
    first_last = (states[1] + states[-1]).double() / 2
    by_hand = {
        "mean": (first_last * weight).sum(1) / weight.sum(1),
        "cls": first_last[:, 0],
        "max": first_last.masked_fill(~mask[..., None], -torch.inf).amax(1),
    }
    for pooling, expected in by_hand.items():
        ours = encode_sentences(
            texts,
            tokenizer=tok,
            encoder=encoder,
            layer=(1, -1),
            pooling=pooling,
            normalize=False,
        )
        assert (ours.double() - expected).abs().max() < 1e-5, pooling
    embedded = encode_sentences(texts, tokenizer=tok, encoder=encoder, layer=0)
    expected = F.normalize(mean_pool(states[0], mask), dim=-1)
    assert (embedded - expected).abs().max() < 1e-6
    assert encode_sentences([], tokenizer=tok, encoder=encoder).shape == (0, 384)


def test_mean_pool_is_the_masked_mean(device: torch.device) -> None:
    hidden = torch.randn(3, 5, 4, dtype=torch.float64, device=device)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]).bool()
    out = mean_pool(hidden, mask.to(device))
    assert torch.allclose(out[0], hidden[0, :2].mean(0))
    assert torch.allclose(out[1], hidden[1].mean(0))
    assert torch.equal(out[2], torch.zeros(4, dtype=torch.float64, device=device))


def test_fully_padded_row_and_half_precision_stay_finite(device: torch.device) -> None:
    tok, encoder = minilm()
    ids, mask = tok.encode(["Half precision and an empty row.", "x"])
    mask[1] = False
    with torch.inference_mode():
        reference = encoder(ids, mask)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            half = BertEncoder.from_safetensors(minilm_weights_path()).to(device, dtype)
            out = half(ids.to(device), mask.to(device))
            assert out.dtype == dtype and torch.isfinite(out).all()
            # float16 keeps ~3 decimal digits, bfloat16 ~2, on values up to ~6.
            error = (out[0].float().cpu() - reference[0]).abs().max().item()
            assert error < {torch.float32: 1e-4, torch.float16: 3e-2}.get(dtype, 0.2)


def test_meta_propagates_shapes() -> None:
    encoder = BertEncoder().to("meta")
    ids = torch.zeros(2, 7, dtype=torch.int64, device="meta")
    last, states = encoder(
        ids,
        torch.ones(2, 7, dtype=torch.bool, device="meta"),
        output_hidden_states=True,
    )
    assert last.device.type == "meta" and last.shape == (2, 7, 384) and len(states) == 7


def test_checkpoint_keys_are_checked(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(minilm_weights_path()))
    (tmp_path / "config.json").write_text((FOLDER / "config.json").read_text())
    extra = {**state, "encoder.layer.0.extra.weight": torch.zeros(1)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys.*extra"):
        BertEncoder.from_safetensors(tmp_path / "extra.safetensors")
    shifted = {**state, "embeddings.position_ids": state["embeddings.position_ids"] + 1}
    save_file(shifted, str(tmp_path / "shifted.safetensors"))
    with pytest.raises(ValueError, match="position_ids"):
        BertEncoder.from_safetensors(tmp_path / "shifted.safetensors")
    del state["pooler.dense.weight"], state["pooler.dense.bias"]
    del state["embeddings.position_ids"]
    save_file(state, str(tmp_path / "bare.safetensors"))
    BertEncoder.from_safetensors(tmp_path / "bare.safetensors")  # both are optional


# ---------------------------------------------------------------- all poolings at once
def test_encode_poolings_matches_bert_model_by_hand() -> None:
    """Every pooling of every layer against transformers' BertModel, pooled here in
    float64 (hidden states agree to HIDDEN_ATOL; pooling adds no error of its own)."""
    tok, encoder = minilm()
    texts = [*lee()[:6], "A dog.", ""]
    ours = encode_poolings(texts, tokenizer=tok, encoder=encoder, batch_size=3)
    ids, mask = tok.encode(texts)
    with torch.inference_mode():
        states = bert_model()(
            input_ids=ids, attention_mask=mask.long(), output_hidden_states=True
        ).hidden_states
    weight = mask[..., None].double()
    expected = {
        f"mean {i}": (h.double() * weight).sum(1) / weight.sum(1).clamp_min(1)
        for i, h in enumerate(states)
    }
    expected["cls 6"] = states[-1][:, 0].double()
    expected["max 6"] = (
        states[-1].double().masked_fill(~mask[..., None], -torch.inf).amax(1)
    )
    expected["first-last"] = (expected["mean 1"] + expected["mean 6"]) / 2
    assert list(ours) == list(expected)
    for name, value in ours.items():
        assert value.dtype == torch.float32 and value.shape == (len(texts), 384)
        error = (value.double() - expected[name]).abs().max().item()
        assert error < HIDDEN_ATOL["cpu"], (name, error)


def test_encode_poolings_equals_encode_sentences(device: torch.device) -> None:
    tok, encoder = load_minilm(device=device)
    texts = ["The cat sat on the mat.", "A dog.", "", "Rain is expected later today."]
    ours = encode_poolings(texts, tokenizer=tok, encoder=encoder, batch_size=2)
    recipes = {"mean 0": (0, "mean"), "mean 3": (3, "mean"), "cls 6": (-1, "cls")}
    recipes |= {"max 6": (-1, "max"), "first-last": ((1, -1), "mean")}
    for name, (layer, pooling) in recipes.items():
        single = encode_sentences(
            texts,
            tokenizer=tok,
            encoder=encoder,
            batch_size=2,  # the same batches, so the same rounding
            layer=layer,
            pooling=pooling,
            normalize=False,
        )
        assert ours[name].device == single.device
        assert (ours[name] - single).abs().max() < 1e-6, name
    empty = encode_poolings([], tokenizer=tok, encoder=encoder)
    assert len(empty) == 10 and all(v.shape == (0, 384) for v in empty.values())


def test_encode_poolings_errors() -> None:
    tok, encoder = minilm()
    with pytest.raises(TypeError, match="texts"):
        encode_poolings(3, tokenizer=tok, encoder=encoder)
    with pytest.raises(TypeError, match="tokenizer"):
        encode_poolings(["a"], tokenizer=None, encoder=encoder)
    with pytest.raises(TypeError, match="encoder"):
        encode_poolings(["a"], tokenizer=tok, encoder=None)
    with pytest.raises(ValueError, match="batch_size"):
        encode_poolings(["a"], tokenizer=tok, encoder=encoder, batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        encode_poolings(["a"], tokenizer=tok, encoder=encoder, max_length=1)
