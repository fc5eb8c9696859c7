"""GlobalPointer: named entities as spans, scored all at once (kexue.fm/archives/8373).

A sentence of ``n`` tokens has ``n(n+1)/2`` spans ``[i, j]`` with ``i <= j``. For every
entity type ``alpha``, :class:`GlobalPointer` gives each span the score
``s_alpha(i, j) = q_{i,alpha}^T k_{j,alpha} / sqrt(d)``: attention logits without
values, one head per type, with the rotary position embedding
(:func:`kexue.positions.apply_rope`, interleaved pairs, positions ``0, 1, ...``) on
``q`` and ``k`` so that the score sees the span's length ``j - i``.
:class:`EfficientGlobalPointer` (kexue.fm/archives/8877) shares one ``q, k`` pair
across types and adds a per-type linear term on ``[q_i; k_i]`` and ``[q_j; k_j]``.
Spans with ``i > j`` and spans that touch padding score ``-inf``.

Both are trained with :func:`multilabel_categorical_crossentropy`
(kexue.fm/archives/7359) over the flattened ``(seq, seq)`` scores of each type, and
decoded by keeping every span with a positive score (:func:`decode_spans`);
:func:`span_f1` is entity-level F1. The layouts follow the reference code in bert4keras
(``GlobalPointer``: per type ``q`` then ``k``; ``EfficientGlobalPointer``: ``q`` and
``k`` interleaved, the type term halved), so the scores are those of that code for the
same weights.

:func:`nested_entity_task` generates the chapter's nested-entity data from the
country/capital/city vocabulary of word2vec's analogy questions.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.foundations.masking import causal_mask
from kexue.positions import apply_rope

__all__ = [
    "EfficientGlobalPointer",
    "GlobalPointer",
    "decode_spans",
    "multilabel_categorical_crossentropy",
    "nested_entity_task",
    "span_f1",
]

#: The entity types of :func:`nested_entity_task`, in the order of its targets' axis 1.
ENTITY_TYPES: tuple[str, ...] = ("city", "country", "state", "place")


# ---------------------------------------------------------------- the loss
def multilabel_categorical_crossentropy(
    logits: Tensor, targets: Tensor, dim: int = -1
) -> Tensor:
    """Multi-label softmax cross-entropy with the threshold at 0 (archive 7359):
    ``log(1 + sum_neg e^{s_i}) + log(1 + sum_pos e^{-s_j})`` over ``dim``.

    Args:
        logits: floating scores ``(..., classes, ...)``; ``-inf`` marks a class that
            cannot occur (a masked span): it adds nothing as a negative, and makes the
            loss ``+inf`` if ``targets`` calls it positive.
        targets: the positive classes, ``logits``' shape: boolean, or 0/1 values of a
            real dtype (as Keras code passes them); on ``logits``' device.
        dim: the class dimension.

    Returns:
        ``logits``' shape without ``dim``, in ``logits``' dtype. Computed in float32 for
        half precision (and in the input precision otherwise) with the largest
        exponent taken out, so logits of any finite size give a finite loss (a float16
        result above 65504 is ``inf``, as the value is). No positive and no negative
        give 0, with zero gradient; an empty class dimension gives 0.

    Raises:
        TypeError: ``logits`` not floating; ``targets`` not a tensor, complex, or of
            another kind than bool/real; ``dim`` not an int.
        ValueError: ``logits`` 0-d; ``targets`` of another shape or device, or with
            values other than 0 and 1; ``dim`` out of range.
    """
    _checks.tensor(logits, "logits", min_ndim=1)
    positive = _as_targets(targets, logits)
    dim = _class_dim(dim, logits)
    scores = logits.to(_checks.compute_dtype(logits.dtype))
    neg = scores.masked_fill(positive, -torch.inf)
    pos = (-scores).masked_fill(~positive, -torch.inf)
    loss = _log1p_sum_exp(neg, dim) + _log1p_sum_exp(pos, dim)
    return loss.to(logits.dtype)


def _log1p_sum_exp(x: Tensor, dim: int) -> Tensor:
    """``log(1 + sum e^x)`` over ``dim``: the ``1`` is a logit 0 (the threshold class).
    The shift ``m = max(0, max x)`` keeps every exponent <= 0, and is finite even when
    every entry is ``-inf`` (where ``torch.logsumexp`` has a NaN gradient)."""
    if x.shape[dim] == 0:
        return x.sum(dim)  # log(1 + 0)
    m = x.amax(dim, keepdim=True).clamp_min(0).detach()
    total = torch.exp(-m) + torch.exp(x - m).sum(dim, keepdim=True)
    return (torch.log(total) + m).squeeze(dim)


def _as_targets(targets: object, logits: Tensor) -> Tensor:
    """``targets`` as a boolean tensor of ``logits``' shape."""
    _checks.tensor(targets, "targets", kind="any")
    assert isinstance(targets, Tensor)
    if targets.is_complex():
        raise TypeError(f"targets must be boolean or 0/1 reals, got {targets.dtype}")
    _checks.same_device(("logits", logits), targets=targets)
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets must have logits' shape {tuple(logits.shape)}, got "
            f"{tuple(targets.shape)}"
        )
    if targets.dtype == torch.bool:
        return targets
    if targets.numel() and targets.device.type != "meta":
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise ValueError("targets must hold only 0 and 1 (or be boolean)")
    return targets != 0


def _class_dim(dim: object, logits: Tensor) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -logits.dim() <= dim < logits.dim():
        raise ValueError(
            f"dim must be in [{-logits.dim()}, {logits.dim() - 1}] for logits of shape "
            f"{tuple(logits.shape)}, got {dim}"
        )
    return dim % logits.dim()


# ---------------------------------------------------------------- the heads
class GlobalPointer(nn.Module):
    """Span scores ``s_alpha(i, j) = (R_i q_{i,alpha})^T (R_j k_{j,alpha}) / sqrt(d)``
    for every entity type ``alpha`` (archive 8373).

    One linear map gives, per type, a query and a key of ``head_size`` features
    (``num_types * 2 * head_size`` outputs with bias: ``2 d (D + 1)`` parameters per
    type for ``hidden = D``, ``head_size = d``); ``R_i`` is RoPE at position ``i``.

    Args:
        hidden: the width ``D`` of the token vectors.
        num_types: the number of entity types (heads).
        head_size: the width ``d`` of each query and key; even with ``rope``.
        rope: rotate queries and keys by their positions (the score then depends on
            positions only through ``j - i``); False gives the plain inner product.

    Raises:
        TypeError: a size not an int; ``rope`` not a bool.
        ValueError: a size below 1; an odd ``head_size`` with ``rope``.
    """

    def __init__(
        self, hidden: int, num_types: int, head_size: int = 64, *, rope: bool = True
    ) -> None:
        super().__init__()
        self.hidden, self.num_types, self.head_size, self.rope = _sizes(
            hidden, num_types, head_size, rope
        )
        self.dense = nn.Linear(hidden, num_types * 2 * head_size)

    def forward(self, hidden_states: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scores of every span.

        Args:
            hidden_states: ``(batch, seq, hidden)`` token vectors in the module's dtype
                and on its device.
            mask: ``(batch, seq)`` boolean, True at real tokens, or None (all real).
                What padded positions hold (NaN included) reaches neither the scores
                nor the gradients.

        Returns:
            ``(batch, num_types, seq, seq)`` in the input's dtype (half precision
            multiplied in float32): entry ``[b, alpha, i, j]`` scores tokens ``i..j``
            (inclusive) as type ``alpha``; ``-inf`` where ``i > j`` or either end is
            padding. An empty batch or sequence gives an empty result.

        Raises:
            TypeError: ``hidden_states`` not floating or of another dtype than the
                weights; ``mask`` not boolean.
            ValueError: wrong ranks or widths; ``mask``'s shape; another device.
        """
        x = _check_states(hidden_states, mask, self.dense.weight, self.hidden)
        batch, seq, _ = x.shape
        qk = self.dense(x).view(batch, seq, self.num_types, 2, self.head_size)
        q, k = qk.to(_checks.compute_dtype(x.dtype)).transpose(1, 2).unbind(3)
        if self.rope:  # (batch, types, seq, d): positions along seq
            q, k = apply_rope(q), apply_rope(k)
        scores = torch.einsum("btid,btjd->btij", q, k) / math.sqrt(self.head_size)
        return _mask_spans(scores, mask).to(x.dtype)


class EfficientGlobalPointer(nn.Module):
    """Efficient GlobalPointer (archive 8877): one query/key pair shared by all types,
    and a per-type linear term, ``s_alpha(i, j) = (R_i q_i)^T (R_j k_j) / sqrt(d) +
    (w_alpha^T [q_j; k_j] + u_alpha^T [q_i; k_i]) / 2 + biases``.

    Parameters: ``2 d (D + 1)`` shared, ``2 (2 d + 1)`` per type (the article's ``4d``
    plus two biases). ``q`` and ``k`` are the even and odd outputs of one linear map and
    the type term reads them before the rotation, as in bert4keras.

    Args:
        hidden, num_types, head_size, rope: as :class:`GlobalPointer`.

    Raises:
        TypeError, ValueError: as :class:`GlobalPointer`.
    """

    def __init__(
        self, hidden: int, num_types: int, head_size: int = 64, *, rope: bool = True
    ) -> None:
        super().__init__()
        self.hidden, self.num_types, self.head_size, self.rope = _sizes(
            hidden, num_types, head_size, rope
        )
        self.dense = nn.Linear(hidden, 2 * head_size)
        self.type_dense = nn.Linear(2 * head_size, 2 * num_types)

    def forward(self, hidden_states: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scores of every span; arguments, result and errors as
        :meth:`GlobalPointer.forward`."""
        x = _check_states(hidden_states, mask, self.dense.weight, self.hidden)
        qk = self.dense(x)
        wide = qk.to(_checks.compute_dtype(x.dtype))
        q, k = wide[..., ::2], wide[..., 1::2]  # (batch, seq, d) each
        if self.rope:
            q, k = apply_rope(q), apply_rope(k)
        shared = torch.einsum("bid,bjd->bij", q, k) / math.sqrt(self.head_size)
        typed = self.type_dense(qk).to(wide.dtype).transpose(1, 2) / 2  # (b, 2T, seq)
        # even rows score the span's end j, odd rows its start i
        scores = shared[:, None] + typed[:, ::2, None, :] + typed[:, 1::2, :, None]
        return _mask_spans(scores, mask).to(x.dtype)


def _sizes(
    hidden: object, num_types: object, head_size: object, rope: object
) -> tuple[int, int, int, bool]:
    hidden = _checks.positive_int(hidden, "hidden")
    num_types = _checks.positive_int(num_types, "num_types")
    head_size = _checks.positive_int(head_size, "head_size")
    rope = _checks.flag(rope, "rope")
    if rope and head_size % 2:
        raise ValueError(f"head_size must be even with rope (pairs), got {head_size}")
    return hidden, num_types, head_size, rope


def _check_states(x: object, mask: object, weight: Tensor, hidden: int) -> Tensor:
    """The checked token vectors, zero at padding (so that NaN there never meets a
    weight: 0 * NaN would reach the gradients through the einsum)."""
    x = _checks.tensor(x, "hidden_states", ndim=3)
    _checks.same_device(("the module's weights", weight), hidden_states=x)
    _checks.same_dtype(("the module's weights", weight), hidden_states=x)
    if x.shape[-1] != hidden:
        raise ValueError(
            f"hidden_states must have {hidden} features (hidden), got shape "
            f"{tuple(x.shape)}"
        )
    if mask is None:
        return x
    _checks.tensor(mask, "mask", ndim=2, kind="any")
    assert isinstance(mask, Tensor)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean (True at real tokens), got {mask.dtype}; "
            "for 0/1 flags pass mask.bool()"
        )
    _checks.same_device(("hidden_states", x), mask=mask)
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"mask must have shape {tuple(x.shape[:2])} (hidden_states' batch, seq), "
            f"got {tuple(mask.shape)}"
        )
    return x.masked_fill(~mask[..., None], 0)


def _mask_spans(scores: Tensor, mask: Tensor | None) -> Tensor:
    """``-inf`` below the diagonal (start after end) and at padded starts or ends."""
    seq = scores.shape[-1]
    # causal_mask keeps j <= i; its transpose keeps the spans, j >= i
    keep = causal_mask(seq, device=scores.device).mT
    if mask is not None:
        keep = keep & mask[:, None, :, None] & mask[:, None, None, :]
    return scores.masked_fill(~keep, -torch.inf)


# ---------------------------------------------------------------- decoding and F1
def decode_spans(scores: Tensor, threshold: float = 0.0) -> Tensor:
    """Every span scored above ``threshold`` (0 for a head trained with
    :func:`multilabel_categorical_crossentropy`).

    Args:
        scores: floating ``(..., seq, seq)``, e.g. ``(batch, types, seq, seq)``; only
            entries with start <= end (the upper triangle) are spans. NaN and ``-inf``
            are never above a threshold.
        threshold: a finite number.

    Returns:
        ``(count, scores.ndim)`` int64 on ``scores``' device: one row of indices per
        span, e.g. ``(batch, type, start, end)``, in lexicographic order.

    Raises:
        TypeError: ``scores`` not floating; ``threshold`` not a number.
        ValueError: ``scores`` below 2-D or its last two dimensions unequal; ``meta``
            scores (the count depends on the values); ``threshold`` not finite.
    """
    _checks.tensor(scores, "scores", min_ndim=2)
    threshold = _checks.real(threshold, "threshold")
    if scores.shape[-1] != scores.shape[-2]:
        raise ValueError(
            f"scores must end in (seq, seq), got shape {tuple(scores.shape)}"
        )
    if scores.device.type == "meta":
        raise ValueError("scores on the meta device have no values to decode")
    upper = causal_mask(scores.shape[-1], device=scores.device).mT
    return torch.nonzero((scores > threshold) & upper)


def span_f1(pred: Tensor, gold: Tensor) -> dict[str, float]:
    """Entity-level precision, recall and F1 of two sets of spans.

    A span is a row of indices (``(batch, type, start, end)`` from
    :func:`decode_spans`, or ``targets.nonzero()``); a predicted span counts only if
    the whole row is in ``gold``. Repeated rows count once.
    ``F1 = 2 |P & G| / (|P| + |G|)``, the article's
    ``2 sum(y_true y_pred) / sum(y_true + y_pred)``; a ratio ``0 / 0`` is 1 (nothing
    predicted wrongly, nothing missed).

    Args:
        pred, gold: ``(count, columns)`` integer tensors with the same number of
            columns, on one device.

    Returns:
        ``{"precision": ..., "recall": ..., "f1": ...}`` as Python floats.

    Raises:
        TypeError: not integer tensors.
        ValueError: not 2-D; different column counts or devices; ``meta`` tensors.
    """
    _checks.tensor(pred, "pred", ndim=2, kind="integer")
    _checks.tensor(gold, "gold", ndim=2, kind="integer")
    _checks.same_device(("pred", pred), gold=gold)
    if pred.shape[1] != gold.shape[1]:
        raise ValueError(
            f"pred and gold must have the same number of columns, got shapes "
            f"{tuple(pred.shape)} and {tuple(gold.shape)}"
        )
    if pred.device.type == "meta":
        raise ValueError("pred and gold on the meta device have no values to compare")
    rows = torch.cat([pred.long(), gold.long()])
    if rows.numel():
        ids = torch.unique(rows, dim=0, return_inverse=True)[1]
    else:  # unique(dim=0) of (0, 0) fails; no rows, no ids
        ids = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    predicted, true = ids[: len(pred)].unique(), ids[len(pred) :].unique()
    hits = int(torch.isin(predicted, true).sum())
    n_pred, n_gold = len(predicted), len(true)
    return {
        "precision": hits / n_pred if n_pred else 1.0,
        "recall": hits / n_gold if n_gold else 1.0,
        "f1": 2 * hits / (n_pred + n_gold) if n_pred + n_gold else 1.0,
    }


# ---------------------------------------------------------------- the nested task
# (template, slots): "place" is "City, Country" or "City, State", an entity that nests
# its city and its country or state; the other slots are single entities.
_TEMPLATES: tuple[str, ...] = (
    "{city} is the capital of {country}.",
    "We flew from {place} to {place}.",
    "The mayor of {place} visited {country} last week.",
    "Flights between {place}, {place} and {place} were cancelled.",
    "{country} and {country} signed a treaty in {city}.",
    "Weather today: {place} 21 degrees; {place} 23 degrees; {place} 19 degrees.",
    "She moved from {city} to {place} after school.",
    "The embassy of {country} in {city} is closed.",
    "{state} is larger than {state}, but {place} is busier.",
    "Trains from {place} reach {city} by noon.",
)
_TEST_EVERY = 4  # every fourth (city, region) pair is held out for split="test"


def nested_entity_task(
    tokenizer: object,
    count: int,
    *,
    split: str = "train",
    generator: torch.Generator | None = None,
) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """Templated sentences with nested entities, tokenised, with span targets.

    Names come from word2vec's analogy questions (:func:`kexue.data.analogies`): the
    116 (capital, country) pairs of ``capital-common-countries`` and ``capital-world``
    and the 68 (city, state) pairs of ``city-in-state``. Each sentence fills one of ten
    templates; a ``place`` slot is a pair written ``"Athens, Greece"`` and is an entity
    of type ``place`` that nests a ``city`` and a ``country`` (or ``state``). Types, in
    the order of ``ENTITY_TYPES``: city, country, state, place. Every fourth pair
    (sorted) is held out: ``split="test"`` draws only from those, ``"train"`` from the
    rest, so test sentences name unseen pairs.

    Args:
        tokenizer: a :class:`~kexue.representations.WordPieceTokenizer`.
        count: the number of sentences (>= 0).
        split: ``"train"`` or ``"test"``.
        generator: the random source (None: torch's global one).

    Returns:
        ``texts`` (``count`` strings), ``ids`` and ``mask`` ``(count, seq)`` as
        :meth:`WordPieceTokenizer.encode` gives them (``[CLS]`` at position 0), and
        ``targets`` ``(count, 4, seq, seq)`` boolean, True at ``[b, type, i, j]`` when
        tokens ``i..j`` (inclusive, positions in ``ids``) are an entity of that type.
        CPU tensors.

    Raises:
        TypeError: ``tokenizer`` not a WordPieceTokenizer; ``count`` not an int;
            ``generator`` not a torch.Generator.
        ValueError: ``count`` < 0; unknown ``split``.
        ImportError: gensim (which ships the analogy file) is not installed.
    """
    from kexue.representations.encoder import WordPieceTokenizer

    if not isinstance(tokenizer, WordPieceTokenizer):
        raise TypeError(
            f"tokenizer must be a WordPieceTokenizer, got {type(tokenizer).__name__}"
        )
    count = _checks.nonnegative_int(count, "count")
    split = _checks.choice(split, "split", ("train", "test"))
    generator = _checks.generator(generator)
    capitals, cities = _pairs(split)
    sentences = [_sentence(capitals, cities, generator) for _ in range(count)]
    texts = [text for text, _ in sentences]
    if not texts:
        empty = torch.zeros(0, 0, dtype=torch.long)
        return [], empty, empty.bool(), torch.zeros(0, 4, 0, 0, dtype=torch.bool)
    ids, mask, offsets = tokenizer.encode(texts, return_offsets=True)
    seq = ids.shape[1]
    targets = torch.zeros(len(texts), len(ENTITY_TYPES), seq, seq, dtype=torch.bool)
    for b, (_, spans) in enumerate(sentences):
        starts, ends = offsets[b, :, 0].tolist(), offsets[b, :, 1].tolist()
        for start, end, kind in spans:
            # tokens 1.. hold the text (0 is [CLS]); the span's first and last tokens
            i, j = starts.index(start, 1), ends.index(end, 1)
            targets[b, kind, i, j] = True
    return texts, ids, mask, targets


def _pairs(split: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (capital, country) and (city, state) pairs of one split."""
    from kexue.data import analogies

    sections = analogies()
    chosen = []
    for names in (("capital-common-countries", "capital-world"), ("city-in-state",)):
        pairs = sorted(
            {
                (row[k], row[k + 1])
                for name in names
                for row in sections[name]
                for k in (0, 2)
            }
        )
        held_out = split == "test"
        chosen.append(
            [p for i, p in enumerate(pairs) if (i % _TEST_EVERY == 3) == held_out]
        )
    return chosen[0], chosen[1]


_T = TypeVar("_T")


def _sentence(
    capitals: list[tuple[str, str]],
    cities: list[tuple[str, str]],
    generator: torch.Generator | None,
) -> tuple[str, list[tuple[int, int, int]]]:
    """One filled template and its entities ``(char start, char end, type)``."""

    def pick(options: list[_T]) -> _T:
        return options[int(torch.randint(len(options), (), generator=generator))]

    template = str(pick(list(_TEMPLATES)))
    text, spans = "", []
    for part in template.replace("}", "{").split("{"):
        if part not in ("city", "country", "state", "place"):
            text += part
            continue
        # a country comes with its capital, a state with one of its cities
        in_state = part == "state" or (part != "country" and bool(pick([0, 1])))
        city, region = pick(cities if in_state else capitals)
        region_type = 2 if in_state else 1
        start = len(text)
        if part == "place":
            text += f"{city}, {region}"
            spans += [(start, start + len(city), 0), (start, len(text), 3)]
            spans.append((len(text) - len(region), len(text), region_type))
        elif part == "city":
            text += city
            spans.append((start, len(text), 0))
        else:
            text += region
            spans.append((start, len(text), region_type))
    return text, spans
