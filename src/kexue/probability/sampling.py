"""Sampling from a next-token distribution: truncation, a bigram model, chains.

The pieces a decoding experiment needs at CPU scale: top-k and top-p (nucleus)
truncation of logits, an add-k smoothed bigram language model, a vectorised sampler
of Markov chains under a logit transform, and the distinct-n diversity of the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "bigram_log_probs",
    "distinct_n",
    "sample_chain",
    "top_k_filter",
    "top_p_filter",
]


def _logits(logits: object) -> Tensor:
    return _checks.tensor(logits, "logits", min_ndim=1)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, ``-inf`` elsewhere.

    Entries tied with the ``k``-th largest are all kept (as in the ``transformers``
    ``TopKLogitsWarper``); ``k ≥ n`` keeps every entry.

    Args:
        logits: floating tensor ``(..., n)``.
        k: positive int.

    Returns:
        Tensor of the shape, dtype and device of ``logits``.

    Raises:
        TypeError: ``logits`` not a floating tensor, ``k`` not an int.
        ValueError: ``logits`` of rank 0, ``k < 1``.
    """
    x = _logits(logits)
    k = _checks.positive_int(k, "k")
    if x.numel() == 0:
        return x.clone()
    kth = x.topk(min(k, x.shape[-1]), dim=-1).values[..., -1:]
    return x.masked_fill(x < kth, -torch.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus truncation: keep the fewest most probable entries of mass ``≥ p``.

    An entry is kept when the mass of the entries more probable than it (in sorted
    order) is below ``p``, so the most probable entry is always kept; the others get
    ``-inf``. This is the rule of the ``transformers`` ``TopPLogitsWarper``.

    Args:
        logits: floating tensor ``(..., n)``; probabilities are ``softmax(logits)``,
            computed in float32 for half precision.
        p: the mass to keep, in ``(0, 1]``.

    Returns:
        Tensor of the shape, dtype and device of ``logits``; a row of ``-inf`` only
        stays so.

    Raises:
        TypeError: ``logits`` not a floating tensor, ``p`` not a number.
        ValueError: ``logits`` of rank 0, ``p`` outside ``(0, 1]``.
    """
    x = _logits(logits)
    p = _checks.real(p, "p", positive=True)
    if p > 1:
        raise ValueError(f"p must lie in (0, 1], got {p}")
    if x.numel() == 0:
        return x.clone()
    probs = torch.softmax(x.to(_checks.compute_dtype(x.dtype)), -1)
    ranked, order = probs.sort(-1, descending=True)
    drop = ranked.cumsum(-1) - ranked >= p  # the mass before each entry
    return x.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -torch.inf)


def _documents(documents: object, vocab_size: int) -> list[Tensor]:
    if not isinstance(documents, Sequence) or isinstance(documents, str | Tensor):
        raise TypeError(
            "documents must be a list or tuple of 1-D integer tensors, "
            f"got {type(documents).__name__}"
        )
    docs = [
        _checks.tensor(d, f"documents[{i}]", ndim=1, kind="integer")
        for i, d in enumerate(documents)
    ]
    for i, d in enumerate(docs):
        _checks.same_device(("documents[0]", docs[0]), **{f"documents[{i}]": d})
        if (
            d.numel()
            and d.device.type != "meta"
            and not ((d.min() >= 0) & (d.max() < vocab_size))
        ):
            raise ValueError(f"documents[{i}] must hold ids in [0, {vocab_size})")
    return docs


def bigram_log_probs(
    documents: Sequence[Tensor],
    vocab_size: int,
    *,
    smoothing: float = 0.01,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Add-k smoothed bigram model: ``log P(next = j | previous = i)``.

    ``P(j | i) = (c_ij + k) / (Σ_j c_ij + k V)`` with ``c_ij`` the number of times ``j``
    follows ``i`` inside a document (no pair crosses a document boundary).

    Args:
        documents: list or tuple of 1-D integer tensors of token ids in
            ``[0, vocab_size)``, on one device.
        vocab_size: ``V``, a positive int; the table has ``V²`` entries.
        smoothing: ``k``, a positive number (``k = 0`` would give ``log 0``).
        dtype: floating dtype of the result (default: torch's default dtype).

    Returns:
        Tensor ``(V, V)``, row ``i`` the log probabilities of the token after ``i``,
        on the documents' device (the CPU without documents).

    Raises:
        TypeError: ``documents`` not a list/tuple of integer tensors, ``vocab_size``
            not an int, ``smoothing`` not a number, ``dtype`` not a floating dtype.
        ValueError: a document not 1-D, with ids out of range or on another device,
            ``vocab_size < 1``, ``smoothing ≤ 0``.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    k = _checks.real(smoothing, "smoothing", positive=True)
    dtype = _checks.float_dtype(dtype)
    docs = _documents(documents, vocab_size)
    device = docs[0].device if docs else torch.device("cpu")
    pairs = [d[:-1] * vocab_size + d[1:] for d in docs]
    flat = torch.cat(pairs) if pairs else torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(flat.long().to(device), minlength=vocab_size**2)
    counts = counts.view(vocab_size, vocab_size).to(dtype)
    return torch.log((counts + k) / (counts.sum(1, keepdim=True) + k * vocab_size))


def sample_chain(
    log_probs: Tensor,
    start: Tensor,
    steps: int,
    *,
    warp: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample Markov chains from a transition table, each step through ``warp``.

    At each step the row of ``log_probs`` of every chain's last token goes through
    ``warp`` (for example :func:`top_k_filter`), and the next token is drawn from the
    softmax of the result.

    Args:
        log_probs: floating tensor ``(V, V)``, row ``i`` the logits of the token after
            ``i`` (for example from :func:`bigram_log_probs`).
        start: integer tensor ``(chains,)`` of first tokens in ``[0, V)``.
        steps: number of tokens to draw after ``start``, a non-negative int.
        warp: callable taking logits ``(chains, V)`` and returning logits of that
            shape (``-inf`` = excluded); None samples from ``log_probs`` as it is.
        generator: a ``torch.Generator`` on the device of ``log_probs``, or None.

    Returns:
        ``(tokens, entropies)``: int64 ``(chains, steps + 1)`` beginning with
        ``start``, and the entropy (nats) of each distribution sampled from,
        ``(chains, steps)`` in the compute dtype of ``log_probs``.

    Raises:
        TypeError: wrong kinds of ``log_probs``, ``start``, ``steps``, ``warp``,
            ``generator``.
        ValueError: ``log_probs`` not square, ``start`` not 1-D, out of range or on
            another device; ``warp`` returning another shape or a row without a
            finite logit.
    """
    table = _checks.tensor(log_probs, "log_probs", ndim=2)
    if table.shape[0] != table.shape[1]:
        raise ValueError(f"log_probs must be square (V, V), got {tuple(table.shape)}")
    tokens = _checks.tensor(start, "start", ndim=1, kind="integer")
    _checks.same_device(("log_probs", table), start=tokens)
    steps = _checks.nonnegative_int(steps, "steps")
    if warp is not None and not callable(warp):
        raise TypeError(f"warp must be callable or None, got {type(warp).__name__}")
    generator = _checks.generator(generator, "generator")
    dtype = _checks.compute_dtype(table.dtype)
    chains, vocab = tokens.shape[0], table.shape[0]
    if chains == 0 or table.device.type == "meta":
        ids = torch.zeros(chains, steps + 1, dtype=torch.long, device=table.device)
        return ids, torch.zeros(chains, steps, dtype=dtype, device=table.device)
    if not bool(((tokens >= 0) & (tokens < vocab)).all()):
        raise ValueError(f"start must hold ids in [0, {vocab})")
    out, entropies = [tokens.long()], []
    for _ in range(steps):
        probs = _step(table[out[-1]], warp).to(dtype)
        entropies.append(-torch.special.xlogy(probs, probs).sum(-1))
        out.append(torch.multinomial(probs, 1, generator=generator)[:, 0])
    stacked = torch.stack(entropies, 1) if entropies else torch.zeros(chains, 0)
    return torch.stack(out, 1), stacked.to(dtype=dtype, device=table.device)


def _step(rows: Tensor, warp: Callable[[Tensor], Tensor] | None) -> Tensor:
    logits = rows if warp is None else warp(rows)
    if not isinstance(logits, Tensor) or logits.shape != rows.shape:
        raise ValueError(
            f"warp must return a tensor of shape {tuple(rows.shape)}, got "
            f"{getattr(logits, 'shape', type(logits).__name__)}"
        )
    if not bool((logits > -torch.inf).any(-1).all()):
        raise ValueError(
            "warp returned a row without a finite logit: nothing to sample"
        )
    return torch.softmax(logits.to(_checks.compute_dtype(logits.dtype)), -1)


def distinct_n(tokens: Tensor, n: int = 2) -> float:
    """Distinct-n: the fraction of the n-grams of the rows that are distinct.

    The n-grams of each row are its windows of ``n`` consecutive tokens; none crosses
    rows. 1 means no n-gram repeats anywhere in the batch.

    Args:
        tokens: integer tensor ``(rows, length)``.
        n: positive int.

    Returns:
        A float in ``(0, 1]``; 0.0 when there is no n-gram (``length < n`` or no rows).

    Raises:
        TypeError: ``tokens`` not an integer tensor, ``n`` not an int.
        ValueError: ``tokens`` not 2-D, ``n < 1``, a ``meta`` tensor (no values).
    """
    t = _checks.tensor(tokens, "tokens", ndim=2, kind="integer")
    n = _checks.positive_int(n, "n")
    if t.device.type == "meta":
        raise ValueError("tokens is a meta tensor: distinct-n needs values")
    if t.shape[0] == 0 or t.shape[1] < n:
        return 0.0
    grams = t.unfold(1, n, 1).reshape(-1, n)
    return torch.unique(grams, dim=0).shape[0] / grams.shape[0]
