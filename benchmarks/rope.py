"""RoPE: ``kexue.positions.rope`` against rotary-embedding-torch and Llama's rotate-half.

Every candidate rotates the same ``x`` ``(batch, heads, seq, head_dim)`` at positions
``0 .. seq-1`` and is checked against a float64 rotation in its own pairing
(interleaved or half). rotary-embedding-torch (the reference) is called as
``RotaryEmbedding(dim).rotate_queries_or_keys(x)``, its angle cache primed once in
float32 (it builds positions in the dtype of ``x``). ``rotate-half eager`` is Hugging
Face Llama's ``x * cos + rotate_half(x) * sin`` with cos and sin cached at full width.
On CUDA (and on the CPU with ``--compile``) kexue's tables and the interleaved rotation
in real arithmetic are also fused by ``torch.compile``. With the floor rows.
"""

from __future__ import annotations

import torch

from benchmarks.harness import compare
from benchmarks.registry import Benchmark, Candidate, Inputs, register
from kexue.positions.rope import RotaryEmbedding, apply_rope, rope_cos_sin

COMPILE = {"cpu": False}  # set by the command line's --compile (always on CUDA)
PEER = "rotary-embedding-torch"


def exact_rotation(x: torch.Tensor, layout: str, base: float = 10000.0) -> torch.Tensor:
    """The rotation in float64 from first principles (no kexue code)."""
    seq, dim = x.shape[-2], x.shape[-1]
    f64 = {"dtype": torch.float64, "device": x.device}
    angles = torch.arange(seq, **f64)[:, None] * base ** (
        -torch.arange(0, dim, 2, **f64) / dim
    )
    cos, sin, x = angles.cos(), angles.sin(), x.double()
    if layout == "interleaved":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), -1).flatten(-2)
    x0, x1 = x[..., : dim // 2], x[..., dim // 2 :]
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)


def rotate_half_eager(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Hugging Face Llama's form: ``cat(-x2, x1)`` and full-width cos/sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


def rotate_interleaved_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Interleaved RoPE in real arithmetic (``cos``/``sin``: ``(seq, dim/2)``), in
    ``cos.dtype``: the form handed to ``torch.compile``."""
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)
    return out.flatten(-2).to(x.dtype)


def tolerance(dtype: torch.dtype, seq: int) -> float:
    """Error relative to max |x| accepted: float32 angle products ``m * theta`` are off
    by a few ``seq * 2^-24`` rad; bfloat16 output rounding is ``2^-9`` relative."""
    if dtype == torch.float64:
        return 1e-10
    base = 8 * seq * 2.0**-24 + 1e-6
    return base if dtype == torch.float32 else base + 2.0**-8


def inputs(size: dict, device: torch.device) -> Inputs:
    dtype, generator = getattr(torch, size["dtype"]), torch.Generator(device)
    x = torch.randn(
        size["shape"], device=device, dtype=dtype, generator=generator.manual_seed(0)
    )
    seq, dim = x.shape[-2:]
    compute = torch.promote_types(dtype, torch.float32)
    cos, sin = rope_cos_sin(torch.arange(seq, device=device), dim, dtype=compute)
    return Inputs(
        x=x,
        cos=cos,
        sin=sin,
        full=(torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)),
        exact={layout: exact_rotation(x, layout) for layout in ("interleaved", "half")},
        module=RotaryEmbedding(dim),
        tol=tolerance(dtype, seq),
    )


def check(layout: str):
    def against(i: Inputs, out: torch.Tensor) -> dict:
        return compare(out, i.exact[layout], tol=i.tol, against=f"float64 ({layout})")

    return against


def peer(i: Inputs):
    import rotary_embedding_torch as ret

    layer = ret.RotaryEmbedding(i.x.shape[-1]).to(i.x.device)
    layer.rotate_queries_or_keys(i.x.float())  # primes its cache in float32
    return lambda: layer.rotate_queries_or_keys(i.x)


def compiled(i: Inputs):
    fn = torch.compile(rotate_interleaved_real, dynamic=False, fullgraph=True)
    return lambda: fn(i.x, i.cos, i.sin)


def compile_off(i: Inputs) -> str | None:
    on = i.x.device.type == "cuda" or COMPILE["cpu"]
    return None if on else "CUDA only (on the CPU: --compile)"


CPU = ((1, 8, 256), (1, 8, 1024), (2, 16, 1024), (2, 16, 2048), (4, 32, 2048))
GPU = [(1, 32, 2048, 128), (4, 32, 4096, 128), (8, 32, 4096, 128)]
BOTH = ("bfloat16", "float32")
HALF, INTERLEAVED = check("half"), check("interleaved")
register(
    Benchmark(
        name="rope",
        sizes={
            "quick": [{"shape": (1, 2, 64, 16), "dtype": "float32"}],
            "cpu": [{"shape": (*s, 64), "dtype": "float32"} for s in CPU],
            "cuda": [{"shape": s, "dtype": d} for s in GPU for d in BOTH],
            "short": [{"shape": GPU[-1], "dtype": d} for d in BOTH],
        },
        inputs=inputs,
        group=lambda s: f"{tuple(s['shape'])} {s['dtype']}",
        floor=True,
        candidates=[
            Candidate(
                PEER,
                note="rotate_queries_or_keys; angle table cached",
                make=peer,
                peer="rotary_embedding_torch",
                check=INTERLEAVED,
            ),
            Candidate(
                "kexue apply_rope",
                lambda i: apply_rope(i.x),
                "tables computed on every call",
                check=INTERLEAVED,
                versus=PEER,
            ),
            Candidate(
                "kexue RotaryEmbedding",
                lambda i: i.module(i.x),
                "tables cached",
                check=INTERLEAVED,
                versus=PEER,
            ),
            Candidate(
                "kexue apply_rope, half layout",
                lambda i: apply_rope(i.x, layout="half"),
                check=HALF,
                versus="rotate-half eager",
            ),
            Candidate(
                "rotate-half eager",
                lambda i: rotate_half_eager(i.x, *i.full),
                "Llama form, cos/sin cached",
                check=HALF,
            ),
            Candidate(
                "kexue rotation, torch.compile",
                note="kexue's tables, fused",
                make=compiled,
                skip=compile_off,
                check=INTERLEAVED,
            ),
        ],
    )
)
