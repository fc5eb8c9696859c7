"""Synthetic tasks that the chapters train small models on (generated, no data)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue import _checks

__all__ = [
    "local_mean_task",
    "partner_value",
    "salient_class",
    "salient_value",
]


def salient_value(
    generator: torch.Generator,
    count: int,
    length: int,
    *,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The soft arg-max task: each position outputs the value of the most salient token.

    Values and saliences are independent standard normals of shape ``(count, length)``;
    the target, also ``(count, length)``, repeats ``values[i, argmax_j salience[i, j]]``
    along each row. One attention head can solve it by attending to the largest
    salience, and how sharply it can do so is what the entropy and linear-attention
    chapters measure. Drawn on the CPU from ``generator`` (so results do not depend on
    the device), then moved to ``device``.

    Raises:
        TypeError: ``generator`` is not a ``torch.Generator``, ``count`` or ``length``
            not an int, ``device`` not a device.
        ValueError: ``generator`` is not a CPU generator, ``count < 0``,
            ``length < 1``, or ``device`` is unknown.
    """
    _generator(generator)
    count = _checks.nonnegative_int(count, "count")
    length = _checks.positive_int(length, "length")
    device = _device(device)
    values = torch.randn(count, length, generator=generator)
    salience = torch.randn(count, length, generator=generator)
    best = values.gather(1, salience.argmax(1, keepdim=True))
    target = best.expand(count, length).contiguous()  # writable, like the others
    return values.to(device), salience.to(device), target.to(device)


def partner_value(
    generator: torch.Generator,
    count: int,
    pairs: int,
    *,
    symbols: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A pairwise task: each token outputs the value of the other token with its symbol.

    Each sequence has ``2 * pairs`` tokens: ``pairs`` distinct symbols drawn from
    ``range(symbols)`` (default ``2 * pairs``), each used twice, in random order. Values
    are independent standard normals. Returns ``symbols_ids`` (long), ``values`` and
    ``target``, each ``(count, 2 * pairs)``, where ``target[b, i] = values[b, j]`` for
    the ``j != i`` with the same symbol. Softmax attention can route this token by token
    (query = own symbol, key = symbol); an average shared by all tokens cannot, because
    the target is independent of the token's own value and of any one global summary of
    fixed size. Drawn on the CPU from ``generator``, then moved to ``device``.

    Raises:
        TypeError: as :func:`salient_value`, or ``pairs``/``symbols`` not an int.
        ValueError: as :func:`salient_value`, or ``pairs < 1`` or
            ``symbols < pairs``.
    """
    _generator(generator)
    count = _checks.nonnegative_int(count, "count")
    pairs = _checks.positive_int(pairs, "pairs")
    symbols = 2 * pairs if symbols is None else _checks.positive_int(symbols, "symbols")
    if symbols < pairs:
        raise ValueError(f"symbols must be >= pairs = {pairs}, got {symbols}")
    device = _device(device)
    length = 2 * pairs
    chosen = torch.rand(count, symbols, generator=generator).argsort(dim=1)[:, :pairs]
    ids = torch.cat([chosen, chosen], dim=1)
    values = torch.randn(count, length, generator=generator)
    partner = torch.cat(
        [values[:, pairs:], values[:, :pairs]], dim=1
    )  # position i and i + pairs pair up
    order = torch.rand(count, length, generator=generator).argsort(dim=1)
    ids, values, partner = (t.gather(1, order) for t in (ids, values, partner))
    return ids.to(device), values.to(device), partner.to(device)


def salient_class(
    generator: torch.Generator,
    count: int,
    length: int,
    *,
    classes: int = 4,
    min_length: int = 1,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Classification with padding: the label is the most salient real token's class.

    Lengths are uniform in ``[min_length, length]``; sequences are padded at the end to
    ``length``. Returns ``labels`` (long, ``(count, length)``, each token's class in
    ``range(classes)``), ``salience`` (standard normals), ``mask`` (bool, True at real
    tokens) and ``target`` (long, ``(count,)``). Padded tokens hold class 0 and salience
    0 and must be ignored through the mask. Drawn on the CPU from ``generator``, then
    moved to ``device``.

    Raises:
        TypeError: as :func:`salient_value`, or ``classes``/``min_length`` not an int.
        ValueError: as :func:`salient_value`, or ``classes < 1`` or ``min_length``
            outside ``[1, length]``.
    """
    _generator(generator)
    count = _checks.nonnegative_int(count, "count")
    length = _checks.positive_int(length, "length")
    classes = _checks.positive_int(classes, "classes")
    min_length = _checks.positive_int(min_length, "min_length")
    if min_length > length:
        raise ValueError(f"min_length must be <= length = {length}, got {min_length}")
    device = _device(device)
    lengths = torch.randint(min_length, length + 1, (count,), generator=generator)
    mask = torch.arange(length) < lengths.unsqueeze(1)
    labels = torch.randint(classes, (count, length), generator=generator) * mask
    salience = torch.randn(count, length, generator=generator) * mask
    best = salience.masked_fill(~mask, float("-inf")).argmax(dim=1, keepdim=True)
    target = labels.gather(1, best).squeeze(1)
    return labels.to(device), salience.to(device), mask.to(device), target.to(device)


def local_mean_task(
    generator: torch.Generator,
    count: int,
    length: int,
    *,
    window: int = 3,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A task with local structure: each position outputs the mean of its neighbours.

    ``values`` are independent standard normals ``(count, length)``; ``target[b, i]``
    is the mean of ``values[b, j]`` over ``|i - j| <= window`` and ``0 <= j < length``
    (fewer terms near the ends). Any length works, so a model trained at one length
    can be tested at others. Drawn on the CPU from ``generator`` (the target summed in
    float64), float32, then moved to ``device``.

    Raises:
        TypeError: ``generator`` not a ``torch.Generator``; ``count``, ``length`` or
            ``window`` not an int; ``device`` not a device.
        ValueError: a generator not on the CPU, ``count < 0``, ``length < 1``,
            ``window < 0``, an unknown ``device``.
    """
    _generator(generator)
    count = _checks.nonnegative_int(count, "count")
    length = _checks.positive_int(length, "length")
    window = _checks.nonnegative_int(window, "window")
    device = _device(device)
    values = torch.randn(count, length, generator=generator)
    totals = F.pad(values.double().cumsum(1), (1, 0))  # totals[:, j] = sum of first j
    steps = torch.arange(length)
    low, high = (steps - window).clamp_min(0), (steps + window + 1).clamp_max(length)
    target = (totals[:, high] - totals[:, low]) / (high - low)
    return values.to(device), target.float().to(device)


def _generator(generator: object) -> None:
    """The tasks draw on the CPU: ``generator`` must be a CPU ``torch.Generator``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, got {type(generator).__name__}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU generator (tasks are drawn on the CPU), "
            f"got one on {generator.device}"
        )


def _device(device: object) -> torch.device | None:
    return None if device is None else _checks.device(device, "device")
