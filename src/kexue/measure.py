"""Small, honest measurements of time and memory for the chapters' scaling figures.

Chapters compare how cost grows with sequence length; they need the median of a few runs
and the peak memory a call allocates, on the CPU as well as on CUDA. The benchmarks
(``benchmarks/harness.py``) use the same peak-memory measurement.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile

from kexue import _checks

__all__ = [
    "best_time",
    "median_time",
    "peak_memory",
]


def median_time(
    fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1
) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after warm-up.

    ``warmup`` calls run first and are not timed. CUDA work is synchronised before and
    after each call, so queued kernels are counted.

    Raises:
        TypeError: ``fn`` is not callable, ``repeats`` or ``warmup`` not an int.
        ValueError: ``repeats < 1`` or ``warmup < 0``.
    """
    return statistics.median(_wall_times(fn, repeats, warmup))


def best_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Fastest wall time of ``fn()`` in seconds over ``repeats`` calls, after warm-up.

    Other work on the machine only ever adds time to a call, so on a shared machine the
    fastest call is the steadiest estimate of what the call itself costs (the advice of
    Python's ``timeit``). Warm-up, synchronisation and errors as in
    :func:`median_time`.
    """
    return min(_wall_times(fn, repeats, warmup))


def _wall_times(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    _callable(fn, "fn")
    repeats = _checks.positive_int(repeats, "repeats")
    warmup = _checks.nonnegative_int(warmup, "warmup")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        fn()
        _synchronize()
        times.append(time.perf_counter() - start)
    return times


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes allocated by one call of ``fn()`` on ``device``, beyond those before.

    Inputs that exist before the call are excluded, the output is included. On CUDA this
    is the caching allocator's peak (``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``). On the CPU, torch's profiler (``profile_memory=True``)
    records every allocation and free of the CPU allocator during the call, and the peak
    of their running sum is returned; scratch memory inside a fused kernel is counted
    too. The profiler's C++ start/stop log lines on file descriptor 2 are silenced, so a
    notebook cell stays free of stderr output.

    Raises:
        TypeError: ``fn`` is not callable, ``device`` not a device.
        ValueError: ``device`` is neither the CPU nor an available CUDA device.
    """
    _callable(fn, "fn")
    device = _checks.device(device, "device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was given but CUDA is not available here")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out
        return int(peak)
    if device.type != "cpu":
        raise ValueError(f"device must be cpu or cuda, got {device}")
    with (
        _quiet_stderr(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        out = fn()
        del out
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return int(peak)


def _callable(fn: object, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (where it can be)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
