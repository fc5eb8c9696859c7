"""kexue.tasks.salient_value: shapes, the target, determinism."""

from __future__ import annotations

import pytest
import torch

from kexue.tasks import salient_value


def test_target_is_the_value_at_the_largest_salience() -> None:
    values, salience, target = salient_value(torch.Generator().manual_seed(0), 5, 9)
    assert values.shape == salience.shape == target.shape == (5, 9)
    for row in range(5):
        expected = values[row, int(salience[row].argmax())]
        assert torch.all(target[row] == expected)


def test_same_generator_seed_same_task() -> None:
    first = salient_value(torch.Generator().manual_seed(3), 4, 6)
    second = salient_value(torch.Generator().manual_seed(3), 4, 6)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="length >= 1"):
        salient_value(torch.Generator(), 3, 0)
