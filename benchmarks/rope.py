"""RoPE: ``kexue.positions.rope`` against rotary-embedding-torch and the Llama-style rotate-half form.

All candidates rotate the same ``x`` of shape ``(batch, heads, seq, head_dim)`` at positions ``0 .. seq-1``
and are checked, before timing, against a float64 rotation (the half-layout candidates against the
float64 rotation in their own pairing): the ratios compare equal work.

* ``rotary-embedding-torch`` (the reference): ``RotaryEmbedding(dim).rotate_queries_or_keys(x)``, its
  usual call; it caches the angle table and takes cos and sin on every call. Its cache is filled once with
  float32 positions: it builds positions in the dtype of ``x``, so a first call in bfloat16 would round the
  positions above 256 (its check records what that costs).
* ``kexue apply_rope``: the function, tables computed on every call (float64 angles, reduced).
* ``kexue RotaryEmbedding``: the module, tables cached.
* ``kexue apply_rope, half layout`` and ``rotate-half eager``: Llama's pairing; the eager form is
  ``x * cos + rotate_half(x) * sin`` with cos and sin cached at full width, as in Hugging Face's Llama.
* ``kexue rotation, torch.compile``: kexue's cached cos/sin tables (``rope_cos_sin``) and the interleaved
  rotation written in real arithmetic, fused by ``torch.compile`` into one kernel. Run on CUDA (the
  issue's bandwidth target) and on the CPU only with ``--compile``. It is a benchmark candidate, not a
  code path of ``kexue``: ``apply_rope`` stays the eager reference.

On CUDA each row also states the achieved memory bandwidth, ``2 * x.nbytes / time`` (read ``x``, write the
output; the tables are a ``seq x head_dim`` sliver), as a fraction of the card's peak.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.harness import Candidate, Settings, compare, measure_group
from kexue.positions.rope import RotaryEmbedding, apply_rope, rope_cos_sin

CPU_SHAPES = [  # from 0.5 MB to 64 MB of float32, about doubling
    ((1, 8, 256, 64), torch.float32),
    ((1, 8, 512, 64), torch.float32),
    ((1, 8, 1024, 64), torch.float32),
    ((2, 8, 1024, 64), torch.float32),
    ((2, 16, 1024, 64), torch.float32),
    ((2, 16, 2048, 64), torch.float32),
    ((4, 16, 2048, 64), torch.float32),
    ((4, 32, 2048, 64), torch.float32),
]
GPU_SHAPES = [
    (shape, dtype)
    for shape in ((1, 32, 2048, 128), (4, 32, 4096, 128), (8, 32, 4096, 128))
    for dtype in (torch.bfloat16, torch.float32)
]
QUICK_SHAPES = [((1, 2, 64, 16), torch.float32)]


def exact_rotation(x: torch.Tensor, layout: str, base: float = 10000.0) -> torch.Tensor:
    """The rotation in float64 from first principles (no kexue code): the check's reference."""
    seq, dim = x.shape[-2], x.shape[-1]
    theta = base ** (
        -torch.arange(0, dim, 2, dtype=torch.float64, device=x.device) / dim
    )
    angles = torch.arange(seq, dtype=torch.float64, device=x.device)[:, None] * theta
    cos, sin = angles.cos(), angles.sin()
    x = x.double()
    if layout == "interleaved":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(
            -2
        )
    half = dim // 2
    x0, x1 = x[..., :half], x[..., half:]
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)


def rotate_half_eager(
    x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor
) -> torch.Tensor:
    """Hugging Face Llama's form: ``cat(-x2, x1)`` and full-width cos/sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos_full + torch.cat((-x2, x1), dim=-1) * sin_full).to(x.dtype)


def rotate_interleaved_real(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Interleaved RoPE in real arithmetic (``cos``/``sin``: ``(seq, dim/2)``), computed in ``cos.dtype``;
    the form handed to ``torch.compile`` (inductor does not fuse complex arithmetic)."""
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return (
        torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)
        .flatten(-2)
        .to(x.dtype)
    )


def tolerance(dtype: torch.dtype, seq: int) -> float:
    """Largest error relative to max |x| accepted by the check: float32 angle products ``m * theta`` (as
    rotary-embedding-torch forms them, with theta itself rounded) are off by up to a few ``seq * 2^-24``
    rad; bfloat16 output rounding is ``2^-9`` relative. The check asks for the same rotation, not for the
    best precision (the RoPE chapter measures that)."""
    if dtype == torch.float64:
        return 1e-10
    base = 8 * seq * 2.0**-24 + 1e-6
    return base if dtype == torch.float32 else base + 2.0**-8


def run(
    device: torch.device, settings: Settings, *, size: str, compile_rotation: bool
) -> list[dict[str, Any]]:
    """``size``: "quick" (a smoke test), "short" (the first and last shape) or "full"."""
    shapes = GPU_SHAPES if device.type == "cuda" else CPU_SHAPES
    if size == "quick":
        shapes = QUICK_SHAPES
    elif size == "short":
        per_dtype = len({dtype for _, dtype in shapes})
        shapes = shapes[:per_dtype] + shapes[-per_dtype:]
    rows: list[dict[str, Any]] = []
    for shape, dtype in shapes:
        rows += _group(shape, dtype, device, settings, compile_rotation)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _group(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    settings: Settings,
    compile_rotation: bool,
) -> list[dict[str, Any]]:
    from benchmarks.peers import rotary_embedding_torch

    ret = rotary_embedding_torch()
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype)
    seq, dim = shape[-2], shape[-1]
    tol = tolerance(dtype, seq)
    exact = {layout: exact_rotation(x, layout) for layout in ("interleaved", "half")}
    compute = torch.promote_types(dtype, torch.float32)
    cos, sin = rope_cos_sin(torch.arange(seq, device=device), dim, dtype=compute)
    cos_full, sin_full = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
    module = RotaryEmbedding(dim)
    bytes_moved = 2 * x.numel() * x.element_size()

    def cand(name: str, fn, layout: str, note: str = "") -> Candidate:
        check = compare(
            fn(), exact[layout], tol=tol, against=f"float64 rotation ({layout} pairs)"
        )
        return Candidate(name, fn, note=note, bytes_moved=bytes_moved, check=check)

    candidates: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    reference = "rotary-embedding-torch"
    if ret is not None:
        peer = ret.RotaryEmbedding(dim).to(device)
        note = "rotate_queries_or_keys; angle table cached (primed in float32), cos/sin per call"
        if dtype != torch.float32:
            fresh = peer.rotate_queries_or_keys(
                x
            )  # a first call in x's dtype: positions in that dtype
            wrong = compare(
                fresh, exact["interleaved"], tol=tol, against="float64 rotation"
            )
            note += (
                f"; without priming, positions are built in {str(dtype).removeprefix('torch.')} and the "
                f"output is off by {wrong['value']:.3g} x max|x|"
            )
            peer = ret.RotaryEmbedding(dim).to(device)
        peer.rotate_queries_or_keys(
            x.float()
        )  # fills its angle cache with float32 positions
        candidates.append(
            cand(reference, lambda: peer.rotate_queries_or_keys(x), "interleaved", note)
        )
    else:
        reference = "kexue apply_rope"
        skipped.append(
            (
                "rotary-embedding-torch",
                "not installed (make bench installs requirements-bench.txt)",
            )
        )
    candidates += [
        cand(
            "kexue apply_rope",
            lambda: apply_rope(x),
            "interleaved",
            "tables computed on every call",
        ),
        cand(
            "kexue RotaryEmbedding", lambda: module(x), "interleaved", "tables cached"
        ),
        cand(
            "kexue apply_rope, half layout",
            lambda: apply_rope(x, layout="half"),
            "half",
            "tables per call",
        ),
        cand(
            "rotate-half eager",
            lambda: rotate_half_eager(x, cos_full, sin_full),
            "half",
            "Llama form, cos/sin cached at full width",
        ),
    ]
    if compile_rotation:
        compiled = torch.compile(rotate_interleaved_real, dynamic=False, fullgraph=True)
        try:
            candidates.append(
                cand(
                    "kexue rotation, torch.compile",
                    lambda: compiled(x, cos, sin),
                    "interleaved",
                    "kexue's cached tables, real-arithmetic rotation fused by torch.compile",
                )
            )
        except (
            Exception
        ) as err:  # a compiler failure is a result, not a crash of the whole run
            skipped.append(
                (
                    "kexue rotation, torch.compile",
                    f"torch.compile failed: {type(err).__name__}: {err}",
                )
            )
    mb = x.numel() * x.element_size() / 1e6
    params = {
        "shape": list(shape),
        "dtype": str(dtype).removeprefix("torch."),
        "MB": mb,
    }
    group = f"{tuple(shape)} {params['dtype']}, {mb:.0f} MB"
    return measure_group(
        "rope",
        group,
        params,
        candidates,
        reference,
        device=device,
        settings=settings,
        skipped=skipped,
    )
