"""Pretraining on desensitised text, after Su Jianlin's kexue.fm/archives/8213.

Desensitised (ID-mapped) text replaces every token by an arbitrary number: to the
model it is a text whose vocabulary has been permuted. ``permutation_cipher`` makes
such a text from one we can read, keeping a few ids (the special tokens) fixed.
``frequency_rank_alignment`` guesses the mapping back the way the article initialises
BERT's embeddings for the ciphered vocabulary: the most frequent ciphered id gets the
most frequent plain token of any other text, the second the second, and so on.
``mlm_mask`` corrupts a batch for masked-language-model training, BERT's 15% and
80-10-10 rule, and ``MaskedLanguageModel`` puts BERT's prediction head, tied to the
word embeddings, on a :class:`~kexue.representations.BertEncoder`.

Random draws are made on the ``generator``'s device (on ``ids``' device without one)
and moved to ``ids``' device, so that a CPU generator gives the same draws whatever
device the ids are on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.representations.encoder import BertEncoder, _LayerNorm

__all__ = [
    "MaskedLanguageModel",
    "frequency_rank_alignment",
    "mlm_mask",
    "permutation_cipher",
]

IGNORE = -100  # the label of a position that is not predicted (cross_entropy's default)


# ---------------------------------------------------------------- argument checks
def _id_tensor(ids: object, vocab_size: int, name: str = "ids") -> Tensor:
    """``ids`` an integer tensor with every entry in ``[0, vocab_size)`` and a dtype
    that can hold ``vocab_size - 1`` (the largest id a draw may produce)."""
    ids = _checks.tensor(ids, name, kind="integer")
    if vocab_size - 1 > torch.iinfo(ids.dtype).max:
        raise ValueError(
            f"vocab_size {vocab_size} does not fit {name}' dtype {ids.dtype} "
            f"(largest value {torch.iinfo(ids.dtype).max})"
        )
    if ids.numel() and ids.device.type != "meta":
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name} must lie in [0, {vocab_size}), got values in [{low}, {high}]"
            )
    return ids


def _id_set(values: object, name: str, size: int) -> list[int]:
    """``values`` (ints in a list, tuple, set or range, or a 1-D integer tensor) as a
    sorted list of distinct ids in ``[0, size)``."""
    if isinstance(values, Tensor):
        _checks.tensor(values, name, ndim=1, kind="integer")
        if values.device.type == "meta":
            raise ValueError(f"{name} must hold values, got a meta tensor")
        values = values.tolist()
    if not isinstance(values, list | tuple | set | frozenset | range):
        raise TypeError(
            f"{name} must be a list, tuple, set or range of ints, "
            f"got {type(values).__name__}"
        )
    chosen = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must hold ints, got {type(value).__name__}")
        if not 0 <= value < size:
            raise ValueError(f"{name} must hold ids in [0, {size}), got {value}")
        chosen.add(value)
    return sorted(chosen)


def _draw_device(generator: torch.Generator | None, ids: Tensor) -> torch.device:
    return ids.device if generator is None else generator.device


# ---------------------------------------------------------------- the cipher
def permutation_cipher(
    ids: Tensor,
    vocab_size: int,
    *,
    keep: Sequence[int] | Tensor = (),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Desensitise ``ids``: replace every id by its image under a random permutation
    of the vocabulary that leaves the ids in ``keep`` where they are.

    The permutation is uniform over the ``(vocab_size - len(keep))!`` permutations of
    the other ids. ``permutation.argsort()`` is the key that deciphers.

    Args:
        ids: integer tensor of any shape, entries in ``[0, vocab_size)``.
        vocab_size: the number of ids.
        keep: ids that map to themselves (special tokens such as ``[PAD]``, ``[CLS]``).
        generator: a ``torch.Generator`` (the permutation is drawn on its device), or
            None for torch's global generator on ``ids``' device.

    Returns:
        ``ciphered`` (``ids``' shape, dtype and device), ``permutation[ids]``, and
        ``permutation`` ``(vocab_size,)`` int64 on ``ids``' device:
        ``permutation[plain] = ciphered id``.

    Raises:
        TypeError: ``ids`` is not an integer tensor; ``vocab_size`` is not an int;
            ``keep`` is not a collection of ints; ``generator`` is not a generator.
        ValueError: ``vocab_size < 1`` or too large for ``ids``' dtype; an id of
            ``ids`` or ``keep`` outside ``[0, vocab_size)``.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    ids = _id_tensor(ids, vocab_size)
    kept = _id_set(keep, "keep", vocab_size)
    generator = _checks.generator(generator)
    free = torch.ones(vocab_size, dtype=torch.bool)
    free[kept] = False
    free_ids = free.nonzero().squeeze(1).to(ids.device)
    draw_on = _draw_device(generator, ids)
    order = torch.randperm(len(free_ids), generator=generator, device=draw_on)
    permutation = torch.arange(vocab_size, device=ids.device)
    permutation[free_ids] = free_ids[order.to(ids.device)]
    return permutation[ids.long()].to(ids.dtype), permutation


# ---------------------------------------------------------------- the alignment
def frequency_rank_alignment(
    cipher_counts: Tensor,
    plain_counts: Tensor,
    *,
    keep: Sequence[int] | Tensor = (),
) -> Tensor:
    """Guess the plain token of every ciphered id by frequency rank.

    The ids in ``keep`` (shared special tokens) map to themselves. The others are
    sorted by descending count in each vocabulary, equal counts in ascending id
    order, and the ``r``-th ciphered id is aligned with the ``r``-th plain id. The
    plain counts may come from any text in the plain language: the article counts a
    general corpus, not the hidden text itself.

    Args:
        cipher_counts: ``(n_cipher,)`` non-negative counts (or frequencies) of the
            ciphered ids, integer or floating.
        plain_counts: ``(n_plain,)`` the same for the plain vocabulary, on
            ``cipher_counts``' device; it needs at least as many ids outside ``keep``
            as ``cipher_counts`` has.
        keep: ids in both vocabularies that map to themselves.

    Returns:
        ``alignment`` ``(n_cipher,)`` int64 on the counts' device:
        ``alignment[c]`` is the plain id guessed for the ciphered id ``c``; distinct
        ids get distinct guesses. Empty counts give an empty alignment.

    Raises:
        TypeError: a count tensor is not real (bool, complex) or not a tensor;
            ``keep`` is not a collection of ints.
        ValueError: counts not 1-D, negative or not finite; different devices; a
            ``keep`` id outside either vocabulary; fewer plain than ciphered ids
            outside ``keep``; ``meta`` tensors (the alignment depends on values).
    """
    for name, counts in (
        ("cipher_counts", cipher_counts),
        ("plain_counts", plain_counts),
    ):
        _checks.tensor(counts, name, ndim=1, kind="real")
        if counts.device.type == "meta":
            raise ValueError(f"{name} must hold values, got a meta tensor")
        if counts.numel() and not (torch.isfinite(counts).all() and counts.min() >= 0):
            raise ValueError(f"{name} must be finite and non-negative")
    _checks.same_device(("cipher_counts", cipher_counts), plain_counts=plain_counts)
    n_cipher, n_plain = len(cipher_counts), len(plain_counts)
    kept = _id_set(keep, "keep", min(n_cipher, n_plain))
    cipher_free = _ranked(cipher_counts, kept)
    plain_free = _ranked(plain_counts, kept)
    if len(plain_free) < len(cipher_free):
        raise ValueError(
            f"plain_counts has {len(plain_free)} ids outside keep but cipher_counts "
            f"has {len(cipher_free)}: every ciphered id needs a plain id"
        )
    alignment = torch.arange(n_cipher, device=cipher_counts.device)
    alignment[cipher_free] = plain_free[: len(cipher_free)]
    return alignment


def _ranked(counts: Tensor, kept: list[int]) -> Tensor:
    """The ids not in ``kept``, most frequent first, ties in ascending id order."""
    free = torch.ones(len(counts), dtype=torch.bool, device=counts.device)
    free[kept] = False
    ids = free.nonzero().squeeze(1)
    # A stable descending sort keeps equal counts in ascending id order.
    order = torch.sort(counts[ids], descending=True, stable=True).indices
    return ids[order]


# ---------------------------------------------------------------- the masking
def mlm_mask(
    ids: Tensor,
    *,
    prob: float = 0.15,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    mask_id: int,
    vocab_size: int,
    special: Sequence[int] | Tensor = (),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-language-model corruption of a batch of token ids.

    Every position whose id is not in ``special`` is chosen for prediction
    independently with probability ``prob``. A chosen position is then, with the
    probabilities ``split = (p_mask, p_random, p_keep)``, replaced by ``mask_id``,
    replaced by an id drawn uniformly from ``[0, vocab_size)`` (which may be the
    original id or a special one, as in BERT and ``transformers``), or kept.

    Args:
        ids: integer tensor of any shape, entries in ``[0, vocab_size)``.
        prob: the probability that a position is chosen, in ``[0, 1]``.
        split: three non-negative probabilities that sum to 1.
        mask_id: the id of ``[MASK]``, in ``[0, vocab_size)``.
        vocab_size: the number of ids.
        special: ids never chosen (padding, ``[CLS]``, ``[SEP]``, ...).
        generator: a ``torch.Generator`` (the draws are made on its device), or None.

    Returns:
        ``inputs`` (``ids``' shape, dtype and device), the corrupted ids the model
        reads, and ``labels`` (``ids``' shape, int64): the original id at the chosen
        positions and -100 elsewhere, ``cross_entropy``'s ``ignore_index``.

    Raises:
        TypeError: ``ids`` is not an integer tensor; a number or id of the wrong
            type; ``split`` not a sequence; ``generator`` not a generator.
        ValueError: ``prob`` outside ``[0, 1]``; ``split`` not three non-negative
            numbers summing to 1; ``vocab_size < 1`` or too large for ``ids``' dtype;
            ``mask_id``, a ``special`` id or an entry of ``ids`` outside
            ``[0, vocab_size)``.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    ids = _id_tensor(ids, vocab_size)
    prob = _check_prob(prob)
    p_mask, p_random, _ = _check_split(split)
    mask_id = _checks.nonnegative_int(mask_id, "mask_id")
    if mask_id >= vocab_size:
        raise ValueError(f"mask_id must be in [0, {vocab_size}), got {mask_id}")
    never = _id_set(special, "special", vocab_size)
    generator = _checks.generator(generator)
    draw_on = _draw_device(generator, ids)
    # Three draws of the full shape, always: the random stream used does not depend
    # on the values, so a batch is corrupted the same way on every device.
    chosen_u, kind_u = torch.rand(2, *ids.shape, generator=generator, device=draw_on)
    random_ids = torch.randint(
        vocab_size, ids.shape, generator=generator, device=draw_on
    )
    chosen_u, kind_u, random_ids = (
        t.to(ids.device) for t in (chosen_u, kind_u, random_ids)
    )
    allowed = ~torch.isin(ids, torch.tensor(never, dtype=ids.dtype, device=ids.device))
    chosen = (chosen_u < prob) & allowed
    to_mask = chosen & (kind_u < p_mask)
    to_random = chosen & (kind_u >= p_mask) & (kind_u < p_mask + p_random)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids.to(ids.dtype), inputs)
    labels = torch.where(
        chosen, ids.long(), torch.full_like(ids, IGNORE, dtype=torch.long)
    )
    return inputs, labels


def _check_prob(prob: object) -> float:
    prob = _checks.real(prob, "prob", nonnegative=True)
    if prob > 1:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    return prob


def _check_split(split: object) -> tuple[float, float, float]:
    if not isinstance(split, list | tuple):
        raise TypeError(
            f"split must be a tuple of three probabilities, got {type(split).__name__}"
        )
    if len(split) != 3:
        raise ValueError(f"split must hold three probabilities, got {len(split)}")
    parts = tuple(_checks.real(p, "split", nonnegative=True) for p in split)
    if abs(sum(parts) - 1) > 1e-9:
        raise ValueError(f"split must sum to 1, got {sum(parts)}")
    return parts  # type: ignore[return-value]


# ---------------------------------------------------------------- the model
class MaskedLanguageModel(nn.Module):
    """A :class:`BertEncoder` with BERT's masked-language-model head.

    The head is BERT's: a dense layer, GELU and LayerNorm on the last hidden states,
    then scores against the encoder's word embeddings (the decoder is tied to the
    input embeddings, so re-initialising ``encoder.embeddings.word_embeddings``
    changes both) plus a bias per token.

    Args:
        encoder: the encoder; it becomes a submodule (not copied).

    Raises:
        TypeError: ``encoder`` is not a :class:`BertEncoder`.
    """

    def __init__(self, encoder: BertEncoder) -> None:
        super().__init__()
        if not isinstance(encoder, BertEncoder):
            raise TypeError(
                f"encoder must be a BertEncoder, got {type(encoder).__name__}"
            )
        hidden, vocab = encoder.config["hidden_size"], encoder.config["vocab_size"]
        weight = encoder.embeddings.word_embeddings.weight
        self.encoder = encoder
        self.dense = nn.Linear(hidden, hidden, device=weight.device, dtype=weight.dtype)
        self.norm = _LayerNorm(
            hidden,
            eps=encoder.config["layer_norm_eps"],
            device=weight.device,
            dtype=weight.dtype,
        )
        self.bias = nn.Parameter(
            torch.zeros(vocab, device=weight.device, dtype=weight.dtype)
        )

    def head(self, hidden: Tensor) -> Tensor:
        """Token scores ``(..., vocab)`` from hidden states ``(..., hidden)``."""
        x = self.norm(F.gelu(self.dense(hidden)))
        return x @ self.encoder.embeddings.word_embeddings.weight.T + self.bias

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Scores of every token at every position.

        Args:
            ids, mask: as :meth:`BertEncoder.forward` (``mask`` True at real tokens).

        Returns:
            ``(batch, seq, vocab)`` logits in the module's dtype.

        Raises:
            TypeError, ValueError: as :meth:`BertEncoder.forward`.
        """
        return self.head(self.encoder(ids, mask))

    def loss(self, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over the labelled positions (scores computed there only).

        Args:
            ids, mask: as :meth:`forward`.
            labels: ``(batch, seq)`` integer, the id to predict or -100 where nothing
                is predicted (as :func:`mlm_mask` returns them).

        Returns:
            A scalar in float32 (in float64 for a float64 model): 0, with a zero
            gradient, when no position is labelled.

        Raises:
            TypeError: ``labels`` is not an integer tensor; as :meth:`forward`.
            ValueError: ``labels`` not of ``ids``' shape or device, a ``meta``
                tensor, or a label outside ``[0, vocab_size)`` and not -100; as
                :meth:`forward`.
        """
        hidden = self.encoder(ids, mask)
        _checks.tensor(labels, "labels", kind="integer")
        _checks.same_device(("ids", ids), labels=labels)
        if labels.device.type == "meta":
            raise ValueError(
                "labels is a meta tensor: the positions scored depend on its values"
            )
        if labels.shape != ids.shape:
            raise ValueError(
                f"labels must have ids' shape {tuple(ids.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        vocab = self.encoder.config["vocab_size"]
        picked = labels != IGNORE
        targets = labels[picked]
        if targets.numel() and hidden.device.type != "meta":
            low, high = (int(v) for v in torch.aminmax(targets))
            if low < 0 or high >= vocab:
                raise ValueError(
                    f"labels must be -100 or in [0, {vocab}), got values in "
                    f"[{low}, {high}]"
                )
        logits = self.head(hidden[picked])
        work = _checks.compute_dtype(logits.dtype)
        total = F.cross_entropy(logits.to(work), targets.long(), reduction="sum")
        # An empty selection gives 0 (sum over nothing), not the NaN of a 0/0 mean.
        return total / max(targets.numel(), 1)
