"""kexue.measure: median times and peak memory, checked on allocations whose size is known."""

from __future__ import annotations

import time

import pytest
import torch

from kexue.measure import best_time, median_time, peak_memory

MIB = 2**20


def test_median_time_of_a_sleep():
    elapsed = median_time(lambda: time.sleep(0.01), repeats=3, warmup=0)
    assert 0.009 < elapsed < 0.2


@pytest.mark.parametrize("timer", [median_time, best_time])
@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"repeats": 0}, ValueError, "repeats"),
        ({"repeats": 2.5}, TypeError, "repeats"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"warmup": True}, TypeError, "warmup"),
    ],
)
def test_timers_reject_bad_counts(timer, kwargs, error, name):
    with pytest.raises(error, match=name):
        timer(lambda: None, **kwargs)


@pytest.mark.parametrize("timer", [median_time, best_time])
def test_timers_reject_a_non_callable(timer):
    with pytest.raises(TypeError, match="fn must be callable"):
        timer(None)


def test_best_time_is_the_fastest_call():
    pauses = iter([0.03, 0.005, 0.03])  # one fast call among slow ones
    fastest = best_time(lambda: time.sleep(next(pauses)), repeats=3, warmup=0)
    assert 0.004 < fastest < 0.02


def test_peak_counts_tensors_alive_together(device):
    def two_then_one():
        a = torch.empty(MIB // 4, device=device)  # 1 MiB of float32
        b = torch.empty(MIB // 2, device=device)  # 2 MiB
        del a
        return b.sum()

    assert peak_memory(two_then_one, device) == pytest.approx(3 * MIB, abs=4096)


def test_freed_memory_is_released_before_the_next_allocation(device):
    def one_after_another():
        for _ in range(3):
            torch.ones(MIB // 4, device=device).sum()

    assert peak_memory(one_after_another, device) == pytest.approx(MIB, abs=4096)


def test_views_in_place_results_and_inputs_are_not_counted():
    existing = torch.zeros(MIB // 4)
    assert (
        peak_memory(lambda: existing.view(-1, 4).t(), "cpu") < 1024
    )  # at most a scalar's few bytes
    assert peak_memory(lambda: existing.mul_(2), "cpu") < 1024
    assert peak_memory(lambda: existing + 1, "cpu") == pytest.approx(MIB, abs=1024)


def test_scratch_memory_inside_one_operator_is_counted():
    x = torch.randn(2048, 64)
    # sorting returns values and indices (0.5 MiB + 1 MiB); softmax of a 16 MiB product holds two of them
    assert peak_memory(lambda: x.sort(dim=0), "cpu") >= 1.5 * MIB
    assert peak_memory(lambda: (x @ x.T).softmax(-1), "cpu") >= 32 * MIB


def test_no_stderr_is_left_behind(capfd):
    peak_memory(lambda: torch.ones(10) + 1, "cpu")
    assert capfd.readouterr().err == ""


def test_peak_memory_rejects_other_devices():
    with pytest.raises(ValueError, match="cpu or cuda"):
        peak_memory(lambda: None, "meta")
    with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
        peak_memory(lambda: None, "gpu0")
    with pytest.raises(TypeError, match="device must be"):
        peak_memory(lambda: None, 1.5)
