"""Small, honest measurements of time and memory for the chapters' scaling figures.

Chapters compare how cost grows with sequence length; they need the median of a few runs and the peak
memory a call allocates, on the CPU as well as on CUDA.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def median_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls.

    CUDA work is synchronised before and after each call, so queued kernels are counted.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be positive and warmup non-negative, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        fn()
        _synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes allocated by ``fn()`` on ``device`` above what was allocated before the call.

    On CUDA this is the caching allocator's peak (``torch.cuda.max_memory_allocated``), which includes
    a kernel's internal workspace. On the CPU, every tensor that an operator returns while ``fn`` runs is
    followed until it is freed (:class:`LiveTensorBytes`): the peak of the bytes held by tensors, which
    leaves out scratch memory that a single kernel allocates and frees inside itself. Run ``fn`` under
    ``torch.no_grad()``: tensors that autograd saves are not followed after their Python object dies.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"device must be cpu or cuda, got {device}")
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the storages that operators allocate inside the ``with`` block, live and at their peak.

    A storage is counted when an operator first returns a tensor on it, unless an operator received it as
    an input before (it existed before the block), and released when the last tensor on it that an operator
    returned is garbage-collected. Views and in-place results share their base's storage and add nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._owners: dict[int, list[int]] = {}  # data_ptr -> [nbytes, tensors alive]
        self._external: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for tensor in tree_leaves((args, kwargs or {})):
            if isinstance(tensor, torch.Tensor):
                pointer = tensor.untyped_storage().data_ptr()
                if pointer not in self._owners:
                    self._external.add(pointer)
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._follow(tensor)
        return out

    def _follow(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer == 0 or pointer in self._external:
            return
        entry = self._owners.get(pointer)
        if entry is None:
            entry = self._owners[pointer] = [storage.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(tensor, self._release, pointer)

    def _release(self, pointer: int) -> None:
        entry = self._owners.get(pointer)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._owners[pointer]
            self.current -= entry[0]


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
