"""HiPPO: ``legs_matvec`` (O(N) per vector, a prefix sum) against the dense product with
the LegS matrix (built once, not timed), batch 32 in float64, checked to 1e-10, with the
floor rows; and the online recurrence ``legs_memory`` as the order N and the length
grow. The recurrence has no peer: its rows give time and memory. It precomputes one
``N x N`` transition per step (memory like ``length * N^2``); sizes whose transitions
would pass 64 MiB are skipped.
"""

from __future__ import annotations

import torch

from benchmarks.registry import Benchmark, Candidate, Inputs, grid, register
from kexue.sequences.hippo import legs, legs_matvec, legs_memory

MATVEC_BATCH, ONLINE_BATCH = 32, 16
TRANSITION_LIMIT_BYTES = 64 * 2**20


def matvec_inputs(size: dict, device: torch.device) -> Inputs:
    N, g = size["N"], torch.Generator().manual_seed(size["N"])
    x = torch.randn(MATVEC_BATCH, N, dtype=torch.float64, generator=g).to(device)
    return Inputs(x=x, A_T=legs(N)[0].to(device).T.contiguous())


register(
    Benchmark(
        name="hippo_matvec",
        sizes={
            "quick": grid(N=(16, 64)),
            "cpu": grid(N=(64, 256, 1024, 4096)),
            "cuda": grid(N=(64, 256, 1024, 4096, 16384)),
        },
        inputs=matvec_inputs,
        group=lambda s: f"N = {s['N']}, batch {MATVEC_BATCH}",
        params=lambda i: {"batch": MATVEC_BATCH, "dtype": "float64"},
        expected=lambda i: i.x @ i.A_T,
        tol=1e-10,
        floor=True,
        candidates=[
            Candidate(
                "dense v @ A.T", lambda i: i.x @ i.A_T, "A built once, not timed"
            ),
            Candidate(
                "kexue legs_matvec", lambda i: legs_matvec(i.x), versus="dense v @ A.T"
            ),
        ],
    )
)


def online_inputs(size: dict, device: torch.device) -> Inputs:
    g = torch.Generator().manual_seed(size["length"])
    u = torch.randn(ONLINE_BATCH, size["length"], generator=g).to(device)
    return Inputs(N=size["N"], u=u)


def too_big(i: Inputs) -> str | None:
    size = i.u.shape[1] * i.N * i.N * 4
    if size > TRANSITION_LIMIT_BYTES:
        return f"its transitions would take {size / 2**20:.0f} MiB"
    return None


register(
    Benchmark(
        name="hippo_online",
        sizes={
            "quick": grid(N=8, length=(32, 64)),
            "cpu": grid(N=(16, 64, 256), length=(256, 1024, 4096)),
            "short": grid(N=64, length=1024),
        },
        inputs=online_inputs,
        group=lambda s: f"N = {s['N']}, length {s['length']}, batch {ONLINE_BATCH}",
        params=lambda i: {"batch": ONLINE_BATCH, "dtype": "float32"},
        candidates=[
            Candidate(
                "kexue legs_memory",
                lambda i: legs_memory(i.u, i.N),
                "sequential over length",
                skip=too_big,
            )
        ],
    )
)
