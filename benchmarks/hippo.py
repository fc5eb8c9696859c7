"""HiPPO: ``legs_matvec`` (O(N) per vector, a prefix sum) against the dense product with the LegS matrix,
and the online LegS recurrence ``legs_memory`` as the order N and the length grow.

The matvec's reference is ``v @ A.T`` with ``A = legs(N)`` built once (its construction is not timed), in
float64, batch 32; the check compares the two to 1e-10 relative. The recurrence has no peer here: its
rows give time and memory against length and N. It precomputes one ``N x N`` transition per step, so its
memory grows like ``length * N^2``; sizes whose transitions would pass 64 MiB are left out.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.harness import Candidate, Settings, compare, measure_group
from kexue.sequences.hippo import legs, legs_matvec, legs_memory

MATVEC_BATCH = 32
ONLINE_BATCH = 16
TRANSITION_LIMIT_BYTES = 64 * 2**20


def sizes(device: torch.device, size: str) -> dict[str, list[int]]:
    """Sizes: "quick" (a smoke test), "short" (every other order, one length), "full"."""
    if size == "short":
        full = sizes(device, "full")
        return {**full, "orders": full["orders"][::2], "lengths": full["lengths"][1:2]}
    if size == "quick":
        return {"orders": [16, 64], "online_orders": [8], "lengths": [32, 64]}
    if device.type == "cuda":
        return {
            "orders": [64, 256, 1024, 4096, 16384],
            "online_orders": [16, 64, 256],
            "lengths": [256, 1024, 4096],
        }
    return {
        "orders": [64, 256, 1024, 4096],
        "online_orders": [16, 64, 256],
        "lengths": [256, 1024, 4096],
    }


def run(device: torch.device, settings: Settings, *, size: str) -> list[dict[str, Any]]:
    cfg = sizes(device, size)
    rows: list[dict[str, Any]] = []
    for N in cfg["orders"]:
        torch.manual_seed(N)
        v = torch.randn(MATVEC_BATCH, N, dtype=torch.float64, device=device)
        A_T = legs(N)[0].to(device).T.contiguous()
        dense = v @ A_T
        candidates = [
            Candidate(
                "dense v @ A.T",
                lambda v=v, A_T=A_T: v @ A_T,
                note="A built once, not timed",
            ),
            Candidate(
                "kexue legs_matvec",
                lambda v=v: legs_matvec(v),
                check=compare(
                    legs_matvec(v), dense, tol=1e-10, against="dense v @ A.T"
                ),
            ),
        ]
        params = {"N": N, "batch": MATVEC_BATCH, "dtype": "float64"}
        rows += measure_group(
            "hippo_matvec",
            f"N = {N}, batch {MATVEC_BATCH}",
            params,
            candidates,
            "dense v @ A.T",
            device=device,
            settings=settings,
        )
    for N in cfg["online_orders"]:
        for length in cfg["lengths"]:
            params = {
                "N": N,
                "length": length,
                "batch": ONLINE_BATCH,
                "dtype": "float32",
            }
            group = f"N = {N}, length {length}, batch {ONLINE_BATCH}"
            transitions = length * N * N * 4
            if transitions > TRANSITION_LIMIT_BYTES:
                rows.append(
                    _skipped_row(
                        group,
                        params,
                        f"its {length} transitions would take {transitions / 2**20:.0f} MiB",
                    )
                )
                continue
            torch.manual_seed(length)
            u = torch.randn(ONLINE_BATCH, length, device=device)
            candidates = [
                Candidate(
                    "kexue legs_memory",
                    lambda u=u, N=N: legs_memory(u, N),
                    note="sequential over length",
                )
            ]
            rows += measure_group(
                "hippo_online",
                group,
                params,
                candidates,
                "kexue legs_memory",
                device=device,
                settings=settings,
            )
    return rows


def _skipped_row(group: str, params: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "suite": "hippo_online",
        "group": group,
        "params": params,
        "candidate": "kexue legs_memory",
        "reference": "kexue legs_memory",
        "status": "skipped",
        "time_s": None,
        "ratio_to_reference": None,
        "peak_memory_bytes": None,
        "error_vs_exact": None,
        "check": None,
        "note": reason,
    }
