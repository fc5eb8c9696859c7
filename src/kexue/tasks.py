"""Synthetic tasks that the chapters train small models on (generated on the fly, no data files)."""

from __future__ import annotations

import torch
from torch import Tensor


def salient_value(
    generator: torch.Generator, count: int, length: int, *, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The soft arg-max task: every position must output the value of the most salient token.

    Values and saliences are independent standard normals of shape ``(count, length)``; the target, also
    ``(count, length)``, repeats ``values[i, argmax_j salience[i, j]]`` along each row. One attention head
    can solve it by attending to the largest salience, and how sharply it can do so is what the entropy
    and linear-attention chapters measure. Drawn on the CPU from ``generator`` (so results do not depend on
    the device), then moved to ``device``.
    """
    if count < 0 or length < 1:
        raise ValueError(f"need count >= 0 and length >= 1, got {count}, {length}")
    values = torch.randn(count, length, generator=generator)
    salience = torch.randn(count, length, generator=generator)
    target = values.gather(1, salience.argmax(1, keepdim=True)).expand(count, length)
    return values.to(device), salience.to(device), target.to(device)
