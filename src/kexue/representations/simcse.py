"""SimCSE, after Su Jianlin's kexue.fm/archives/8348 and Gao, Yao and Chen, arXiv
2104.08821.

Unsupervised SimCSE encodes a batch of sentences twice through the same network, with
dropout as the only difference between the two passes, and asks each first vector to
pick out its own second vector among the batch's: the InfoNCE loss

    loss = mean_i  -log( exp(s_ii / tau) / sum_j exp(s_ij / tau) ),
    s_ij = cos(a_i, b_j),

a cross-entropy over the batch with the diagonal as the targets. ``alignment`` and
``uniformity`` are the two measures of Wang and Isola (arXiv 2005.10242) with which the
paper explains what the loss does to an embedding: positive pairs close together,
everything else spread over the sphere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks

__all__ = [
    "alignment",
    "info_nce",
    "simcse_loss",
    "uniformity",
]


def info_nce(
    a: Tensor, b: Tensor, *, temperature: float = 0.05, symmetric: bool = False
) -> Tensor:
    """The InfoNCE loss of row-aligned pairs, with the batch's other rows as negatives.

    Row ``a[i]`` is scored against every ``b[j]`` by ``cos(a[i], b[j]) / temperature``
    and the loss is the cross-entropy with target ``j = i``, averaged over the rows
    (SimCSE's loss, eq. 4 of the paper, ``a`` and ``b`` the two dropout views). With
    ``symmetric`` it is the mean of that and the same loss with ``a`` and ``b``
    exchanged (columns as well as rows of the similarity matrix); negatives are always
    taken from the other side only, never from the same side.

    Args:
        a, b: ``(n, d)`` floating tensors of one shape, dtype and device, ``d >= 1``.
            A zero row has cosine 0 with everything.
        temperature: the softmax temperature ``tau > 0`` (0.05 in the paper).
        symmetric: average the two directions.

    Returns:
        A scalar tensor in ``a``'s dtype (half precision is computed in float32: its
        logits reach ``1 / tau`` and their exponentials overflow float16). An empty
        batch (``n = 0``) gives 0, with zero gradient. A batch of one has no negative
        and gives 0.

    Raises:
        TypeError: ``a`` or ``b`` is not a floating tensor, their dtypes differ;
            ``temperature`` is not a number, ``symmetric`` not a bool.
        ValueError: ``a`` or ``b`` is not 2-D, their shapes differ, ``d = 0``; they lie
            on different devices; ``temperature`` is not positive and finite.
    """
    _check_pair(a, b)
    temperature = _checks.real(temperature, "temperature", positive=True)
    symmetric = _checks.flag(symmetric, "symmetric")
    if a.shape[1] == 0:
        raise ValueError(
            f"a and b need at least one column, got shape {tuple(a.shape)}"
        )
    if a.shape[0] == 0:  # nothing to score: 0, still attached to the inputs' graph
        return (a.sum() + b.sum()) * 0
    work = _checks.compute_dtype(a.dtype)
    logits = _cosines(a.to(work), b.to(work)) / temperature
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss.to(a.dtype)


def simcse_loss(
    encoder: Callable[[Tensor, Tensor | None], Tensor],
    ids: Tensor,
    mask: Tensor | None,
    *,
    temperature: float = 0.05,
) -> Tensor:
    """Unsupervised SimCSE: two passes of one batch, dropout the only noise, then
    :func:`info_nce` between the passes.

    The encoder contract: ``encoder(ids, mask)`` returns one sentence vector per row,
    ``(batch, d)`` floating, differentiable with respect to what is trained, and
    random only through dropout that is active (an ``nn.Module`` in training mode).
    ``ids`` is whatever the encoder reads, batch first: token ids ``(batch, seq)`` for a
    :class:`~kexue.representations.BertEncoder` with a pooling on top, frozen token
    features ``(batch, seq, features)``, or frozen sentence vectors ``(batch,
    features)`` for a head trained on them (then ``mask`` is None and the encoder is
    called as ``encoder(ids, None)``).

    Args:
        encoder: a callable (e.g. an ``nn.Module``) as above.
        ids: a real tensor, batch first.
        mask: ``(batch, seq)`` boolean, True at real tokens, on ``ids``' device; or
            None for an encoder that takes no mask.
        temperature: the softmax temperature (0.05 in the paper).

    Returns:
        The loss, a scalar tensor in the dtype of the encoder's output (0 for an empty
        batch).

    Raises:
        TypeError: ``encoder`` is not callable; ``ids`` is not a real tensor; ``mask``
            is not boolean; the encoder returned something other than a floating
            tensor; ``temperature`` is not a number.
        ValueError: ``encoder`` is an ``nn.Module`` in eval mode (no dropout, so the
            two views would be equal); ``ids`` is 0-D, or 1-D with a ``mask``;
            ``mask`` is not ``(batch, seq)`` or on another device; the encoder's
            output is not ``(batch, d)``; the two passes gave identical vectors (no
            active dropout); ``temperature`` is not positive and finite.
    """
    if not callable(encoder):
        raise TypeError(f"encoder must be callable, got {type(encoder).__name__}")
    if isinstance(encoder, nn.Module) and not encoder.training:
        raise ValueError(
            "encoder is in eval mode, so dropout is off and the two passes would be "
            "identical: call encoder.train() first"
        )
    _check_batch(ids, mask)
    temperature = _checks.real(temperature, "temperature", positive=True)
    first = _encoded(encoder(ids, mask), ids.shape[0])
    second = _encoded(encoder(ids, mask), ids.shape[0])
    if first.numel() and first.device.type != "meta" and torch.equal(first, second):
        raise ValueError(
            "encoder gave identical vectors in both passes: SimCSE needs active "
            "dropout as its noise (training mode, dropout probability > 0)"
        )
    return info_nce(first, second, temperature=temperature)


def alignment(a: Tensor, b: Tensor, *, alpha: float = 2) -> Tensor:
    """Wang and Isola's alignment: the mean of ``||a_i - b_i|| ** alpha`` over positive
    pairs ``(a_i, b_i)``; lower is better aligned.

    The paper computes it on L2-normalised vectors (``F.normalize(x, dim=-1)``); the
    function uses the rows as given.

    Args:
        a, b: ``(n, d)`` floating tensors of one shape, dtype and device, ``n >= 1``.
        alpha: the exponent, ``> 0`` (2 in the paper).

    Returns:
        A scalar tensor in ``a``'s dtype (half precision computed in float32). A pair
        of equal rows contributes 0 with zero gradient (for ``alpha < 1`` the
        derivative there is infinite; 0 is the subgradient used).

    Raises:
        TypeError: ``a`` or ``b`` is not floating, their dtypes differ; ``alpha`` is
            not a number.
        ValueError: ``a`` or ``b`` is not 2-D, their shapes differ, ``n = 0``;
            different devices; ``alpha`` is not positive and finite.
    """
    _check_pair(a, b)
    alpha = _checks.real(alpha, "alpha", positive=True)
    if a.shape[0] == 0:
        raise ValueError("a and b need at least one pair of rows, got 0")
    work = _checks.compute_dtype(a.dtype)
    distance = torch.linalg.vector_norm(a.to(work) - b.to(work), dim=-1)
    # d ** alpha has an infinite or undefined derivative at d = 0 for alpha < 1 (and
    # pow's backward gives NaN there); equal rows contribute 0 with zero gradient.
    positive = distance > 0
    safe = torch.where(positive, distance, torch.ones_like(distance))
    powered = torch.where(positive, safe**alpha, torch.zeros_like(distance))
    return powered.mean().to(a.dtype)


def uniformity(x: Tensor, *, t: float = 2) -> Tensor:
    """Wang and Isola's uniformity: ``log mean_{i < j} exp(-t ||x_i - x_j||^2)`` over
    the distinct pairs of rows; lower is more uniform.

    The paper computes it on L2-normalised vectors; the function uses the rows as
    given. Squared distances come from the Gram matrix (clamped at 0 against
    rounding), so memory grows as ``n ** 2``; the mean of exponentials is a
    ``logsumexp``, which cannot underflow to ``log 0``.

    Args:
        x: ``(n, d)`` floating tensor, ``n >= 2``.
        t: the scale ``> 0`` (2 in the paper).

    Returns:
        A scalar tensor in ``x``'s dtype (half precision computed in float32), at most
        0 (0 when all rows are equal).

    Raises:
        TypeError: ``x`` is not floating; ``t`` is not a number.
        ValueError: ``x`` is not 2-D or has fewer than 2 rows; ``t`` is not positive
            and finite.
    """
    _checks.tensor(x, "x", ndim=2)
    t = _checks.real(t, "t", positive=True)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x needs at least 2 rows to form a pair, got {n}")
    work = x.to(_checks.compute_dtype(x.dtype))
    norms = work.square().sum(-1)
    squared = (norms[:, None] + norms[None, :] - 2 * work @ work.T).clamp_min(0)
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    pairs = i.shape[0]
    value = torch.logsumexp(-t * squared[i, j], dim=0) - torch.log(
        torch.tensor(float(pairs), dtype=work.dtype, device=x.device)
    )
    return value.to(x.dtype)


def _check_pair(a: object, b: object) -> None:
    """``a`` and ``b``: 2-D floating tensors of one shape, dtype and device."""
    _checks.tensor(a, "a", ndim=2)
    _checks.tensor(b, "b", ndim=2)
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    _checks.same_device(("a", a), b=b)
    _checks.same_dtype(("a", a), b=b)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape (n, d), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _cosines(a: Tensor, b: Tensor) -> Tensor:
    """``(n, n)`` cosines of the rows of ``a`` with those of ``b``; 0 for a zero row
    (``F.normalize`` divides by ``max(norm, eps)``, so the gradient stays finite)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def _check_batch(ids: object, mask: object) -> None:
    """``ids`` a real tensor, batch first; ``mask`` None or boolean ``(batch, seq)``
    on its device."""
    _checks.tensor(ids, "ids", min_ndim=1 if mask is None else 2, kind="real")
    if mask is None:
        return
    _checks.tensor(mask, "mask", kind="any")
    assert isinstance(ids, Tensor) and isinstance(mask, Tensor)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean (True at real tokens), got {mask.dtype}; for 0/1 "
            "flags pass mask.bool()"
        )
    _checks.same_device(("ids", ids), mask=mask)
    if mask.shape != ids.shape[:2]:
        raise ValueError(
            f"mask must have shape {tuple(ids.shape[:2])} (ids' batch, seq), got "
            f"{tuple(mask.shape)}"
        )


def _encoded(vectors: object, batch: int) -> Tensor:
    """What the encoder returned, checked: ``(batch, d)`` floating."""
    if not isinstance(vectors, Tensor) or not vectors.is_floating_point():
        kind = vectors.dtype if isinstance(vectors, Tensor) else type(vectors).__name__
        raise TypeError(f"encoder must return a floating tensor, got {kind}")
    if vectors.dim() != 2 or vectors.shape[0] != batch:
        raise ValueError(
            f"encoder must return (batch, d) = ({batch}, d) sentence vectors, got "
            f"shape {tuple(vectors.shape)}"
        )
    return vectors
