"""The device and seed helpers of kexue.runtime."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

import kexue
from kexue.runtime import DEVICE_ENV_VAR, get_device, seed_everything


def test_version_is_exported() -> None:
    assert isinstance(kexue.__version__, str)
    assert kexue.__version__.count(".") == 2


def test_default_device_follows_cuda_availability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected


def test_environment_variable_overrides_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")


def test_explicit_preference_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DEVICE_ENV_VAR, "not-a-device")
    assert get_device("cpu") == torch.device("cpu")


def test_bad_device_string_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV_VAR, "gpu0")
    with pytest.raises(ValueError, match=DEVICE_ENV_VAR):
        get_device()
    with pytest.raises(ValueError, match="preferred"):
        get_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_requesting_cuda_without_cuda_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")


def test_seed_everything_makes_all_three_generators_repeat() -> None:
    def draw() -> tuple[float, float, list[float], list[float]]:
        generator = seed_everything(123)
        return (
            random.random(),
            float(np.random.rand()),  # noqa: NPY002 -- the legacy global state is what is seeded
            torch.rand(3).tolist(),
            torch.rand(3, generator=generator).tolist(),
        )

    assert draw() == draw()
    seed_everything(124)
    assert torch.rand(3).tolist() != draw()[2]


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_seed_must_be_an_integer(seed: object) -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(seed)  # type: ignore[arg-type]


@pytest.fixture
def restore_determinism():
    """Put torch's determinism settings and the cuBLAS variable back after a test."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    yield saved
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:4]
    if saved[4] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def test_deterministic_mode_is_undone_by_a_later_plain_call(
    restore_determinism: tuple,
) -> None:
    """Regression: deterministic=True used to stay on for every later experiment."""
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    seed_everything(0, deterministic=True)  # twice: the first snapshot is kept
    seed_everything(0)
    assert (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    ) == restore_determinism


def test_deterministic_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="deterministic must be a bool"):
        seed_everything(0, deterministic="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("preferred", [1.5, ["cpu"], True])
def test_preferred_of_the_wrong_type_is_a_type_error(preferred: object) -> None:
    with pytest.raises(TypeError, match="preferred must be"):
        get_device(preferred)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_must_fit_numpy(seed: int) -> None:
    with pytest.raises(ValueError, match=r"2\*\*32"):
        seed_everything(seed)
