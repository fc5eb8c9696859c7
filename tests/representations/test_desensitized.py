"""kexue.representations.desensitized: the cipher and the alignment against naive
Python references, ``mlm_mask`` against its derived probabilities (chi-squared tests,
scipy.stats) and against ``transformers``' ``DataCollatorForLanguageModeling``, and the
masked-language-model head against a float64 loop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.representations.desensitized import (
    MaskedLanguageModel,
    frequency_rank_alignment,
    mlm_mask,
    permutation_cipher,
)
from kexue.representations.encoder import BertEncoder

F64 = torch.float64
ALPHA = 1e-3  # a correct sampler fails a chi-squared test this seldom (fixed seeds)


def observed_kinds(
    ids: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, mask_id: int
) -> np.ndarray:
    """Counts of what a position became: not chosen, [MASK], unchanged, another id."""
    chosen = labels != -100
    became_mask = chosen & (inputs == mask_id)
    same = chosen & (inputs == ids)
    other = chosen & ~became_mask & ~same
    return np.array([int(t.sum()) for t in (~chosen, became_mask, same, other)])


def kind_probabilities(
    p: float, split: tuple[float, float, float], vocab: int
) -> np.ndarray:
    """The derived probabilities of the four kinds for a non-special id other than
    [MASK]: a uniform random id is [MASK] or the id itself with probability 1/V each."""
    s_mask, s_random, s_keep = split
    return np.array(
        [
            1 - p,
            p * (s_mask + s_random / vocab),
            p * (s_keep + s_random / vocab),
            p * s_random * (vocab - 2) / vocab,
        ]
    )


# ---------------------------------------------------------------- permutation_cipher
def test_cipher_is_a_permutation_that_keeps_the_kept(device: torch.device) -> None:
    ids = torch.randint(0, 40, (7, 13), device=device)
    g = torch.Generator().manual_seed(1)
    ciphered, perm = permutation_cipher(ids, 40, keep=[0, 3, 39], generator=g)
    assert perm.device == ids.device and perm.dtype == torch.int64
    assert sorted(perm.tolist()) == list(range(40))
    assert perm[[0, 3, 39]].tolist() == [0, 3, 39]
    assert torch.equal(ciphered, perm[ids]) and ciphered.dtype == ids.dtype
    assert torch.equal(perm.argsort()[ciphered], ids)  # the key deciphers


def test_cipher_with_a_cpu_generator_is_device_independent(
    device: torch.device,
) -> None:
    ids = torch.arange(30).view(5, 6)
    a = permutation_cipher(ids, 30, generator=torch.Generator().manual_seed(3))
    b = permutation_cipher(
        ids.to(device), 30, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())


def test_cipher_is_uniform_over_permutations() -> None:
    """All 4! = 24 permutations of the free ids {1, 2, 3, 4} (0 kept) equally often."""
    g = torch.Generator().manual_seed(0)
    draws = 12_000
    index = {p: i for i, p in enumerate(itertools.permutations(range(1, 5)))}
    counts = np.zeros(24)
    for _ in range(draws):
        _, perm = permutation_cipher(torch.arange(5), 5, keep=[0], generator=g)
        assert perm[0] == 0
        counts[index[tuple(perm[1:].tolist())]] += 1
    assert scipy.stats.chisquare(counts).pvalue > ALPHA


# ---------------------------------------------------------------- frequency_rank_alignment
def naive_alignment(
    cipher: list[float], plain: list[float], keep: list[int]
) -> list[int]:
    """Rank by (-count, id) with Python's sort; the r-th ciphered id gets the r-th plain id."""
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


@settings(max_examples=60, deadline=None)
@given(
    cipher=st.lists(st.integers(0, 6), min_size=3, max_size=25),
    extra=st.lists(st.integers(0, 6), max_size=10),
    keep=st.sets(st.integers(0, 2), max_size=3),
)
def test_alignment_matches_the_naive_ranking(
    cipher: list[int], extra: list[int], keep: set[int]
) -> None:
    plain = list(reversed(cipher)) + extra  # ties on purpose: counts in 0..6
    out = frequency_rank_alignment(
        torch.tensor(cipher), torch.tensor(plain, dtype=F64), keep=keep
    )
    assert out.tolist() == naive_alignment(cipher, plain, sorted(keep))
    assert len(set(out.tolist())) == len(cipher)  # distinct guesses


def test_alignment_recovers_a_cipher_with_distinct_counts(device: torch.device) -> None:
    counts = torch.randperm(50, device=device) * 3 + 1  # distinct
    ids = torch.repeat_interleave(torch.arange(50, device=device), counts)
    ciphered, perm = permutation_cipher(ids, 50, keep=[0, 1])
    cipher_counts = torch.bincount(ciphered, minlength=50)
    alignment = frequency_rank_alignment(cipher_counts, counts, keep=[0, 1])
    assert torch.equal(alignment, perm.argsort())


def test_alignment_needs_enough_plain_ids() -> None:
    with pytest.raises(ValueError, match="plain_counts"):
        frequency_rank_alignment(torch.ones(6), torch.ones(5))
    # a larger plain vocabulary is fine: its rarest ids are left over
    assert frequency_rank_alignment(
        torch.tensor([1, 5]), torch.tensor([9, 0, 4])
    ).tolist() == [2, 0]


# ---------------------------------------------------------------- mlm_mask
def test_mask_leaves_unchosen_and_special_positions_alone(device: torch.device) -> None:
    ids = torch.randint(0, 20, (64, 32), device=device)
    inputs, labels = mlm_mask(
        ids, prob=0.5, mask_id=4, vocab_size=20, special=[0, 1, 4]
    )
    chosen = labels != -100
    assert labels.dtype == torch.int64 and inputs.dtype == ids.dtype
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert torch.equal(labels[chosen], ids[chosen])
    assert not torch.isin(ids[chosen], torch.tensor([0, 1, 4], device=device)).any()
    assert chosen.any() and (~chosen).any()


def test_mask_kinds_follow_the_derived_probabilities() -> None:
    """Chi-squared over the four observable kinds, V = 50 so the 1/V terms matter."""
    vocab, mask_id = 50, 3
    ids = torch.randint(5, vocab, (4000, 100))
    g = torch.Generator().manual_seed(0)
    inputs, labels = mlm_mask(
        ids, mask_id=mask_id, vocab_size=vocab, special=range(5), generator=g
    )
    seen = observed_kinds(ids, inputs, labels, mask_id)
    expected = kind_probabilities(0.15, (0.8, 0.1, 0.1), vocab) * ids.numel()
    assert scipy.stats.chisquare(seen, expected).pvalue > ALPHA
    # The test has power: a 70-20-10 rule is rejected on the same draws.
    wrong = kind_probabilities(0.15, (0.7, 0.2, 0.1), vocab) * ids.numel()
    assert scipy.stats.chisquare(seen, wrong).pvalue < 1e-12


def test_mask_count_per_row_is_binomial() -> None:
    """Chosen positions per row of n = 120 real tokens (8 special): Binomial(120, 0.15)
    by chi-squared, which tests the mean n p and the variance n p (1 - p) at once."""
    rows, n, p = 5000, 120, 0.15
    ids = torch.randint(2, 30, (rows, n + 8))
    ids[:, :8] = 0  # special
    g = torch.Generator().manual_seed(1)
    _, labels = mlm_mask(
        ids, prob=p, mask_id=1, vocab_size=30, special=[0, 1], generator=g
    )
    counts = (labels != -100).sum(1).numpy()
    edges = np.array([-0.5, 9.5, *np.arange(10.5, 28.5), 130.5])  # tails merged
    seen, _ = np.histogram(counts, edges)
    cdf = scipy.stats.binom.cdf(edges, n, p)
    assert (
        scipy.stats.chisquare(seen, np.diff(cdf) * rows, sum_check=False).pvalue > ALPHA
    )
    assert (
        abs(counts.var(ddof=1) / (n * p * (1 - p)) - 1) < 0.06
    )  # 4 s.e. of a variance


def test_random_replacements_are_uniform_over_the_vocabulary() -> None:
    ids = torch.full((3000, 50), 7)
    g = torch.Generator().manual_seed(2)
    inputs, labels = mlm_mask(
        ids, prob=1.0, split=(0.0, 1.0, 0.0), mask_id=0, vocab_size=25, generator=g
    )
    assert (labels == 7).all()
    seen = torch.bincount(inputs.flatten(), minlength=25).numpy()
    assert scipy.stats.chisquare(seen).pvalue > ALPHA


def test_mask_matches_transformers_collator() -> None:
    """The same ids through ``DataCollatorForLanguageModeling.torch_mask_tokens``: the
    kinds and the per-row counts of the two samplers are indistinguishable
    (chi-squared tests of homogeneity)."""
    transformers = pytest.importorskip("transformers")
    from kexue.data import minilm_weights_path

    tokenizer = transformers.BertTokenizerFast.from_pretrained(
        str(minilm_weights_path().parent), local_files_only=True
    )
    collator = transformers.DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=0.15
    )
    vocab, mask_id = len(tokenizer), tokenizer.mask_token_id
    ids = torch.randint(1000, vocab, (3000, 64))
    theirs, their_labels = collator.torch_mask_tokens(
        ids.clone(), special_tokens_mask=torch.zeros_like(ids, dtype=torch.bool)
    )
    ours, our_labels = mlm_mask(ids, mask_id=mask_id, vocab_size=vocab)
    kinds = np.stack(
        [
            observed_kinds(ids, ours, our_labels, mask_id),
            observed_kinds(ids, theirs, their_labels, mask_id),
        ]
    )
    assert scipy.stats.chi2_contingency(kinds).pvalue > ALPHA
    derived = kind_probabilities(0.15, (0.8, 0.1, 0.1), vocab) * ids.numel()
    assert (
        scipy.stats.chisquare(kinds[1], derived).pvalue > ALPHA
    )  # the peer obeys it too
    per_row = [
        (lab != -100).sum(1).clamp(4, 16).numpy() for lab in (our_labels, their_labels)
    ]
    table = np.stack([np.bincount(c, minlength=17)[4:] for c in per_row])
    assert scipy.stats.chi2_contingency(table).pvalue > ALPHA


def test_mask_is_reproducible_and_device_independent(device: torch.device) -> None:
    ids = torch.randint(0, 100, (16, 20))
    runs = [
        mlm_mask(
            ids.to(where),
            mask_id=5,
            vocab_size=100,
            generator=torch.Generator().manual_seed(9),
        )
        for where in ("cpu", device)
    ]
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(*runs, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    prob=st.floats(0, 1),
    weights=st.tuples(*[st.floats(0, 1)] * 3).filter(lambda w: sum(w) > 0.1),
    seed=st.integers(0, 2**31),
)
def test_mask_invariants(
    shape: list[int], prob: float, weights: tuple[float, float, float], seed: int
) -> None:
    split = tuple(w / sum(weights) for w in weights)
    split = (split[0], split[1], max(0.0, 1 - split[0] - split[1]))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 12, shape, generator=g, dtype=torch.int32)
    inputs, labels = mlm_mask(
        ids, prob=prob, split=split, mask_id=11, vocab_size=12, special=[0], generator=g
    )
    chosen = labels != -100
    assert inputs.shape == labels.shape == ids.shape and inputs.dtype == torch.int32
    assert torch.equal(inputs[~chosen], ids[~chosen]) and not (ids[chosen] == 0).any()
    assert ((inputs >= 0) & (inputs < 12)).all()
    if prob == 0:
        assert not chosen.any()


# ---------------------------------------------------------------- MaskedLanguageModel
def small_model(vocab: int = 30, dtype: torch.dtype = F64) -> MaskedLanguageModel:
    encoder = BertEncoder(
        vocab_size=vocab,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=12,
    )
    model = MaskedLanguageModel(encoder).to(dtype)
    with torch.no_grad():
        model.bias.normal_()
    return model


def test_loss_equals_a_float64_loop(device: torch.device) -> None:
    model = small_model().to(device)
    ids = torch.randint(5, 30, (3, 10), device=device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[2, 7:] = False
    inputs, labels = mlm_mask(
        ids, prob=0.4, mask_id=4, vocab_size=30, special=[0, 1, 2, 3, 4]
    )
    hidden = model.encoder(inputs, mask)
    weight = model.encoder.embeddings.word_embeddings.weight.detach()
    terms = []
    for b, t in zip(*torch.nonzero(labels != -100, as_tuple=True), strict=True):
        x = F.layer_norm(
            F.gelu(hidden[b, t] @ model.dense.weight.T + model.dense.bias),
            (16,),
            model.norm.weight,
            model.norm.bias,
            model.norm.eps,
        )
        scores = [(x @ weight[v] + model.bias[v]).item() for v in range(30)]
        top = max(scores)
        log_z = top + math.log(sum(math.exp(s - top) for s in scores))
        terms.append(log_z - scores[int(labels[b, t])])
    loss = model.loss(inputs, mask, labels)
    assert abs(loss.item() - sum(terms) / len(terms)) < 1e-12
    logits = model(inputs, mask)
    assert logits.shape == (3, 10, 30)
    full = F.cross_entropy(
        logits.reshape(-1, 30), labels.reshape(-1), ignore_index=-100
    )
    assert abs(full.item() - loss.item()) < 1e-12


def test_decoder_is_tied_to_the_embeddings() -> None:
    model = small_model()
    ids = torch.randint(5, 30, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[0, 3] = 17
    model.loss(ids, torch.ones_like(ids, dtype=torch.bool), labels).backward()
    grad = model.encoder.embeddings.word_embeddings.weight.grad
    # every row is a decoder row, so every row gets a gradient through the softmax
    assert (grad.abs().sum(1) > 0).all()


def test_no_label_gives_zero_loss_and_zero_gradient() -> None:
    model = small_model()
    ids = torch.randint(5, 30, (2, 8))
    loss = model.loss(
        ids, torch.ones_like(ids, dtype=torch.bool), torch.full_like(ids, -100)
    )
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_half_precision_loss_is_computed_in_float32() -> None:
    model = small_model(dtype=torch.bfloat16)
    ids = torch.randint(5, 30, (2, 8))
    labels = ids.clone()
    loss = model.loss(ids, torch.ones_like(ids, dtype=torch.bool), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
