"""kexue.tasks: shapes, the targets, determinism."""

from __future__ import annotations

import pytest
import torch

from kexue.tasks import partner_value, salient_class, salient_value


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
    with pytest.raises(ValueError, match="length must be a positive int"):
        salient_value(torch.Generator(), 3, 0)
    with pytest.raises(TypeError, match="count must be an int"):
        salient_value(torch.Generator(), 2.5, 4)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        salient_value(0, 2, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device='gpu0'"):
        salient_value(torch.Generator(), 2, 4, device="gpu0")


def test_salient_value_target_is_writable() -> None:
    _, _, target = salient_value(torch.Generator().manual_seed(0), 3, 4)
    target[0, 0] = 1.0  # an expanded view would refuse this write
    assert target[0, 1] != 1.0 or target[0, 0] == target[0, 1]


def test_partner_value_pairs_every_token_with_its_twin() -> None:
    ids, values, target = partner_value(
        torch.Generator().manual_seed(0), 6, 5, symbols=12
    )
    assert ids.shape == values.shape == target.shape == (6, 10)
    for row in range(6):
        assert sorted(torch.bincount(ids[row], minlength=12).unique().tolist()) in (
            [0, 2],
            [2],
        )
        for i in range(10):
            twin = [j for j in range(10) if j != i and ids[row, j] == ids[row, i]]
            assert len(twin) == 1 and target[row, i] == values[row, twin[0]]


def test_salient_class_labels_the_most_salient_real_token() -> None:
    labels, salience, mask, target = salient_class(
        torch.Generator().manual_seed(1), 50, 9, classes=3, min_length=2
    )
    assert labels.shape == salience.shape == mask.shape == (50, 9) and target.shape == (
        50,
    )
    lengths = mask.sum(1)
    assert lengths.min() >= 2 and lengths.max() <= 9 and lengths.unique().numel() > 3
    for row in range(50):
        n = int(lengths[row])
        assert mask[row, :n].all() and not mask[row, n:].any()  # padding at the end
        assert target[row] == labels[row, int(salience[row, :n].argmax())]
        assert (labels[row, n:] == 0).all() and (salience[row, n:] == 0).all()


def test_new_tasks_are_deterministic_and_check_sizes() -> None:
    first = partner_value(torch.Generator().manual_seed(3), 4, 3)
    second = partner_value(torch.Generator().manual_seed(3), 4, 3)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(ValueError, match="symbols must be >= pairs"):
        partner_value(torch.Generator(), 3, 4, symbols=3)
    with pytest.raises(ValueError, match="min_length must be <= length"):
        salient_class(torch.Generator(), 3, 4, min_length=5)
    with pytest.raises(TypeError, match="classes must be an int"):
        salient_class(torch.Generator(), 3, 4, classes=2.0)
