"""HiPPO on the CPU: the O(N) LegS matvec against the dense product, and the online recurrence (make bench).

The matvec ratio should grow about linearly in N (O(N^2) against O(N) work). Nothing here asserts a speed.
"""

from __future__ import annotations

import pytest
import torch

from kexue.sequences.hippo import legs, legs_matvec, legs_memory


@pytest.mark.parametrize("N", [64, 256, 1024, 4096])
@pytest.mark.parametrize("candidate", ["dense", "legs_matvec"])
def test_matvec(benchmark, N: int, candidate: str) -> None:
    benchmark.group = f"LegS A v, N = {N}, batch 32"
    v = torch.randn(32, N, dtype=torch.float64)
    if candidate == "dense":
        A = legs(N)[0]
        benchmark(torch.matmul, v, A.T)
    else:
        benchmark(legs_matvec, v)


def test_online_recurrence(benchmark) -> None:
    benchmark.group = "LegS online memory, batch 16, length 4096, N = 64"
    u = torch.randn(16, 4096)
    benchmark.pedantic(legs_memory, args=(u, 64), rounds=3, iterations=1)
