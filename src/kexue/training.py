"""One training loop for the small models the chapters train.

Every experiment in the book that trains a model does the same thing: draw a batch,
compute a loss, take an Adam step, and now and then evaluate on fixed test data.
:func:`train` is that loop, written once, so chapters only say what the batch, the loss
and the evaluation are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kexue import _checks

__all__ = [
    "TrainLog",
    "train",
]


@dataclass
class TrainLog:
    """What :func:`train` records.

    Attributes:
        losses: the training loss at every step, as Python floats (length ``steps``).
        evaluations: ``(step, value)`` for every evaluation, in order.
    """

    losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)

    @property
    def final(self) -> float:
        """The last evaluation (raises if there was none)."""
        if not self.evaluations:
            raise ValueError("no evaluation was recorded (pass evaluate=...)")
        return self.evaluations[-1][1]


def train(
    model: nn.Module,
    loss: Callable[[nn.Module], Tensor],
    steps: int,
    *,
    lr: float = 3e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    evaluate: Callable[[nn.Module], float] | None = None,
    every: int | None = None,
) -> TrainLog:
    """Train ``model`` with Adam for ``steps`` steps of ``loss(model)``.

    Args:
        model: the module to train, in place.
        loss: called once per step; draws its own batch and returns a scalar
            loss tensor.
        steps: the number of Adam steps (>= 0).
        lr: Adam's learning rate.
        betas: Adam's two decay rates, each in [0, 1) (GANs often use ``(0.5, 0.9)``
            or ``(0.0, 0.9)``).
        evaluate: called with the model in eval mode under ``torch.no_grad()``, after
            every ``every`` steps and after the last step; returns a float.
        every: evaluation period in steps (default: only after the last step).

    Returns:
        A :class:`TrainLog` of the per-step losses and the evaluations. The model is
        left in training mode (also when ``loss`` or ``evaluate`` raises).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``loss`` or ``evaluate`` not
            callable; ``steps`` or ``every`` not an int, ``lr`` not a number,
            ``betas`` not a pair of numbers; ``loss`` returned something other than a
            tensor, ``evaluate`` something other than a number.
        ValueError: ``model`` has no trainable parameter; ``steps < 0``,
            ``every < 1``, ``lr`` not positive and finite, a beta outside [0, 1);
            ``loss`` returned a non-scalar or a tensor without gradient.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(
            f"evaluate must be callable or None, got {type(evaluate).__name__}"
        )
    steps = _checks.nonnegative_int(steps, "steps")
    every = None if every is None else _checks.positive_int(every, "every")
    lr = _checks.real(lr, "lr", positive=True)
    betas = _betas(betas)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    log = TrainLog()
    model.train()
    for step in range(1, steps + 1):
        value = _scalar_loss(loss(model))
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        log.losses.append(value.item())
        if evaluate is not None and (step == steps or (every and step % every == 0)):
            log.evaluations.append((step, _evaluate(model, evaluate)))
    if evaluate is not None and steps == 0:
        log.evaluations.append((0, _evaluate(model, evaluate)))
    return log


def _betas(betas: object) -> tuple[float, float]:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
    pair = tuple(_checks.real(b, "betas") for b in betas)
    if not all(0 <= b < 1 for b in pair):
        raise ValueError(f"betas must lie in [0, 1), got {pair}")
    return pair  # type: ignore[return-value]


def _scalar_loss(value: object) -> Tensor:
    """What ``loss`` returned, checked: a scalar tensor with a gradient."""
    if not isinstance(value, Tensor):
        raise TypeError(f"loss must return a tensor, got {type(value).__name__}")
    if value.ndim != 0:
        raise ValueError(f"loss must return a scalar, got shape {tuple(value.shape)}")
    if not value.requires_grad:
        raise ValueError(
            "loss must return a tensor computed from the model's parameters "
            "(it has no gradient)"
        )
    return value


def _evaluate(model: nn.Module, evaluate: Callable[[nn.Module], float]) -> float:
    model.eval()
    try:
        with torch.no_grad():
            value = evaluate(model)
    finally:
        model.train()
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        return float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"evaluate must return a number, got {type(value).__name__}"
        ) from err
