"""kexue.training.train: the one Adam loop the chapters use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kexue
from kexue.training import TrainLog, train


def regression(device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = kexue.seed_everything(0)
    x = torch.randn(256, 3, generator=generator).to(device)
    y = x @ torch.tensor([1.0, -2.0, 0.5], device=device) + 0.25
    return nn.Linear(3, 1).to(device), x, y


def test_train_fits_a_linear_model(device: torch.device) -> None:
    model, x, y = regression(device)

    def loss(m: nn.Module) -> torch.Tensor:
        return (m(x)[:, 0] - y).square().mean()

    log = train(model, loss, 400, lr=0.05, evaluate=lambda m: loss(m).item(), every=100)
    assert len(log.losses) == 400
    assert [step for step, _ in log.evaluations] == [100, 200, 300, 400]
    assert log.losses[0] > 1.0
    assert log.final < 1e-6  # the data are noiseless: Adam reaches the exact weights
    torch.testing.assert_close(
        model.weight.detach()[0],
        torch.tensor([1.0, -2.0, 0.5], device=device),
        atol=1e-3,
        rtol=0,
    )


def test_train_matches_a_hand_written_adam_loop() -> None:
    model, x, y = regression(torch.device("cpu"))
    twin = nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    log = train(model, lambda m: (m(x)[:, 0] - y).square().mean(), 25, lr=1e-2)
    optimiser = torch.optim.Adam(twin.parameters(), lr=1e-2)
    for _ in range(25):
        value = (twin(x)[:, 0] - y).square().mean()
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    torch.testing.assert_close(model.weight, twin.weight, rtol=0, atol=0)
    assert log.evaluations == []


def test_betas_reach_adam() -> None:
    model, x, y = regression(torch.device("cpu"))
    twin = nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    train(model, lambda m: (m(x)[:, 0] - y).square().mean(), 10, betas=(0.0, 0.9))
    optimiser = torch.optim.Adam(twin.parameters(), lr=3e-3, betas=(0.0, 0.9))
    for _ in range(10):
        value = (twin(x)[:, 0] - y).square().mean()
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    torch.testing.assert_close(model.weight, twin.weight, rtol=0, atol=0)


def test_evaluation_runs_in_eval_mode_without_gradients() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    seen = []

    def evaluate(m: nn.Module) -> float:
        seen.append((m.training, torch.is_grad_enabled()))
        return 0.0

    train(model, lambda m: m(torch.ones(4, 2)).sum(), 3, evaluate=evaluate)
    assert seen == [(False, False)]
    assert model.training


def test_zero_steps_evaluates_the_untrained_model() -> None:
    log = train(
        nn.Linear(1, 1), lambda m: m(torch.ones(1, 1)).sum(), 0, evaluate=lambda m: 7.0
    )
    assert log == TrainLog(losses=[], evaluations=[(0, 7.0)])


def test_final_without_evaluations_raises() -> None:
    with pytest.raises(ValueError, match="no evaluation"):
        _ = TrainLog().final


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": -1}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, r"steps must be an int"),
        ({"steps": 2, "every": 1.5}, TypeError, "every must be an int"),
        ({"steps": 2, "lr": "fast"}, TypeError, "lr must be a number"),
        ({"steps": 2, "loss": lambda m: 1.0}, TypeError, "loss must return a tensor"),
        ({"steps": 2, "loss": lambda m: torch.zeros(())}, ValueError, "no gradient"),
        ({"steps": 2, "loss": None}, TypeError, "loss must be callable"),
        ({"steps": 2, "evaluate": lambda m: "x"}, TypeError, "evaluate must return"),
        ({"steps": 1, "model": nn.ReLU()}, ValueError, "model has no trainable"),
        ({"steps": 2, "every": 0}, ValueError, "every"),
        ({"steps": 2, "lr": 0.0}, ValueError, "lr"),
        ({"steps": 2, "betas": 0.9}, TypeError, "betas"),
        ({"steps": 2, "betas": (0.5, 1.0)}, ValueError, "betas"),
        ({"steps": 2, "loss": lambda m: m(torch.ones(3, 1))}, ValueError, "scalar"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, error: type, match: str) -> None:
    arguments = {"model": nn.Linear(1, 1), "loss": lambda m: m(torch.ones(1, 1)).sum()}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        train(**arguments)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        train(lambda x: x, lambda m: torch.zeros(()), 1)  # type: ignore[arg-type]
