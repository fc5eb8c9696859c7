"""Vector quantisation: ``kexue.generative.simvq`` against vector-quantize-pytorch.

* ``nearest_code``: kexue's (matmul ranking certified by a rounding bound, exact re-rank of
  uncertain rows, chunks of 4096 rows) against the
  ``torch.cdist(z, codebook).argmin(-1)`` people write (cdist's matmul expansion).
* ``vq``: the forward of ``VectorQuantizer`` (plain, and ``transform="linear"``, SimVQ)
  against the peer's ``VectorQuantize(learnable_codebook=True, ema_update=False)`` and
  ``SimVQ`` holding the same codebook (and map), training mode, as in
  tests/generative/test_simvq.py; the quantised outputs must agree.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.registry import Benchmark, Candidate, Inputs, register
from kexue.generative.simvq import VectorQuantizer, nearest_code

SIZES = {
    "quick": [{"tokens": 256, "dim": 8, "codes": 64}],
    "cpu": [
        {"tokens": 4096, "dim": 64, "codes": 512},
        {"tokens": 16384, "dim": 32, "codes": 1024},
    ],
    "cuda": [{"tokens": 65536, "dim": 64, "codes": 8192}],
}


def latents(size: dict, device: torch.device) -> Inputs:
    torch.manual_seed(0)
    plain = VectorQuantizer(size["codes"], size["dim"]).to(device)
    linear = VectorQuantizer(size["codes"], size["dim"], transform="linear").to(device)
    with torch.no_grad():
        linear.weight.add_(0.1 * torch.randn_like(linear.weight))
    z = torch.randn(size["tokens"] // 64, 64, size["dim"], device=device)
    return Inputs(z=z, plain=plain, linear=linear, codebook=plain.codes.detach())


register(
    Benchmark(
        name="nearest_code",
        sizes=SIZES,
        inputs=latents,
        expected=lambda i: torch.cdist(i.z.double(), i.codebook.double()).argmin(-1),
        tol=0.0,
        candidates=[
            Candidate(
                "cdist + argmin",
                lambda i: torch.cdist(i.z, i.codebook).argmin(-1),
                "matmul expansion |z|² - 2 z·e + |e|²",
            ),
            Candidate(
                "kexue nearest_code",
                lambda i: nearest_code(i.z, i.codebook),
                "certified matmul ranking, exact re-rank, 4096 rows per block",
                versus="cdist + argmin",
            ),
        ],
    )
)


def peer_vq(i: Inputs):
    from vector_quantize_pytorch import VectorQuantize

    dim, codes = i.z.shape[-1], i.codebook.shape[0]
    peer = VectorQuantize(dim, codes, learnable_codebook=True, ema_update=False)
    peer = peer.to(i.z.device)
    with torch.no_grad():
        peer._codebook.embed.copy_(i.codebook[None])
    return lambda: peer(i.z)


def peer_simvq(i: Inputs):
    from vector_quantize_pytorch import SimVQ

    dim, codes = i.z.shape[-1], i.codebook.shape[0]
    transform = nn.Linear(dim, dim, bias=False)
    peer = SimVQ(dim, codes, codebook_transform=transform).to(i.z.device)
    with torch.no_grad():
        peer.frozen_codebook.copy_(i.linear.codes)
        transform.weight.copy_(i.linear.weight.T)
    return lambda: peer(i.z)


PEER = "vector_quantize_pytorch"
VQ, SIMVQ = "vector-quantize-pytorch VectorQuantize", "vector-quantize-pytorch SimVQ"


def same_as(module: str):
    """The check: the quantised output equals kexue's module's."""

    def check(i: Inputs, out: tuple) -> dict:
        from benchmarks.harness import compare

        ours = getattr(i, module)(i.z)[0]
        return compare(
            out[0], ours, tol=1e-5, against=f"kexue VectorQuantizer, {module}"
        )

    return check


register(
    Benchmark(
        name="vq",
        sizes=SIZES,
        inputs=latents,
        candidates=[
            Candidate(VQ, make=peer_vq, peer=PEER, check=same_as("plain")),
            Candidate(
                "kexue VectorQuantizer",
                lambda i: i.plain(i.z),
                check=same_as("plain"),
                versus=VQ,
            ),
            Candidate(SIMVQ, make=peer_simvq, peer=PEER, check=same_as("linear")),
            Candidate(
                "kexue VectorQuantizer, linear (SimVQ)",
                lambda i: i.linear(i.z),
                check=same_as("linear"),
                versus=SIMVQ,
            ),
        ],
    )
)
