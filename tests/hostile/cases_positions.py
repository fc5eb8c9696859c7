"""Hostile inputs for ``kexue.positions``: RoPE, 2-D RoPE and the sinusoidal encoding.

References are written here from the definitions, in float64 (rotations pair by pair,
``sin``/``cos`` of ``m * base^(-2i/dim)``, group means by a Python loop, the cosine
integral from SciPy), never by calling kexue.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable

import numpy as np
import torch
from hostile import Case, close, expect_error, finite, odd_view, softmax_attention64
from scipy import integrate, special

import kexue.positions as P

META = torch.device("meta")
F64 = torch.float64
CASES: list[Case] = []


def case(name: str, what: str, kind: str, *, cuda: bool = True):
    """Register ``run(device)`` as a case of ``kexue.positions.<name>``."""

    def register(run: Callable[[torch.device], None]) -> Callable:
        CASES.append(Case(f"kexue.positions.{name}", what, kind, run, cuda))
        return run

    return register


def errors(name: str, table: list[tuple[str, type[Exception], str, Callable]]) -> None:
    """One error case per row ``(what, kind, regex naming the argument, fn(device))``."""
    for what, kind, names, fn in table:

        def run(device, fn=fn, kind=kind, names=names):
            expect_error(kind, names, lambda: fn(device))

        CASES.append(Case(f"kexue.positions.{name}", what, "error", run))


# ---------------------------------------------------------------- references


def theta64(dim: int, base: float = 10000.0) -> torch.Tensor:
    return torch.tensor(
        [base ** (-2 * i / dim) for i in range(dim // 2)], dtype=torch.float64
    )


def rotate64(x: torch.Tensor, angles: torch.Tensor, layout: str) -> torch.Tensor:
    """Rotate the pairs of ``x`` by ``angles`` (``(..., dim/2)``), in float64."""
    x, angles = x.detach().double().cpu(), angles.double().cpu()
    c, s = angles.cos(), angles.sin()
    half = x.shape[-1] // 2
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, b * c + a * s), -1).flatten(-2)
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * c - b * s, b * c + a * s), -1)


def rope64(x, positions=None, base=10000.0, layout="interleaved") -> torch.Tensor:
    if positions is None:
        positions = torch.arange(x.shape[-2])
    pos = positions.detach().double().cpu()
    angles = pos.unsqueeze(-1) * theta64(x.shape[-1], base)
    return rotate64(x, angles, layout)


def rope2d64(x, coords, base=10000.0) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat(
        (
            rope64(x[..., :half], coords[..., 0], base),
            rope64(x[..., half:], coords[..., 1], base),
        ),
        -1,
    )


def sin64(positions, dim, base=10000.0) -> torch.Tensor:
    angles = positions.detach().double().cpu().unsqueeze(-1) * theta64(dim, base)
    return torch.stack((angles.sin(), angles.cos()), -1).flatten(-2)


def group_share64(values: torch.Tensor, labels: list) -> torch.Tensor:
    """R^2 of the fit by group means, by a loop; 1 where the values are constant."""
    values = values.detach().double().cpu()
    flat = values.reshape(-1, values.shape[-1])
    out = []
    for row in flat:
        groups: dict = {}
        for j, label in enumerate(labels):
            groups.setdefault(label, []).append(float(row[j]))
        means = {g: sum(v) / len(v) for g, v in groups.items()}
        residual = sum((float(row[j]) - means[g]) ** 2 for j, g in enumerate(labels))
        total = float(((row - row.mean()) ** 2).sum())
        out.append(1.0 if total == 0 else 1 - residual / total)
    return torch.tensor(out, dtype=torch.float64).reshape(values.shape[:-1])


def linear_rope64(q, k, v, positions=None, rotate_denominator=False) -> torch.Tensor:
    q, k, v = (t.detach().double().cpu() for t in (q, k, v))
    fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    rq, rk = rope64(fq, positions), rope64(fk, positions)
    scores = rq @ rk.transpose(-1, -2)
    plain = (rq if rotate_denominator else fq) @ (
        rk if rotate_denominator else fk
    ).transpose(-1, -2)
    return (scores @ v) / plain.sum(-1, keepdim=True)


def rand(*shape, device, dtype=torch.float32, scale=1.0, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(
        device, dtype
    )


def meta(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, device=META, dtype=dtype)


def is_meta(out: torch.Tensor, shape: tuple) -> None:
    assert out.device.type == "meta", f"expected a meta result, got {out.device}"
    assert tuple(out.shape) == shape, f"shape {tuple(out.shape)} != {shape}"


# ---------------------------------------------------------------- rope_angles


@case("rope_angles", "positions up to 1e7: cos/sin match float64", "value")
def _(device):
    pos = torch.tensor([0, 1, 3, 1e5, 1e7, -12345], device=device, dtype=torch.float64)
    out = P.rope_angles(pos, 8)
    assert out.dtype == torch.float32 and (out.abs() <= math.pi + 1e-6).all()
    ref = pos.cpu().unsqueeze(-1) * theta64(8)
    close(out.cos(), ref.cos(), atol=1e-6)
    close(out.sin(), ref.sin(), atol=1e-6)


@case("rope_angles", "empty positions: (0, dim/2)", "empty")
def _(device):
    out = P.rope_angles(torch.zeros(0, dtype=torch.long, device=device), 8)
    assert out.shape == (0, 4)


@case("rope_angles", "meta positions: a meta result", "device")
def _(device):
    is_meta(P.rope_angles(meta(3, 5), 8), (3, 5, 4))


@case("rope_angles", "odd-offset float positions view", "device")
def _(device):
    pos = odd_view(7, device=device, dtype=torch.float64) * 100
    ref = pos.cpu().unsqueeze(-1) * theta64(6)
    close(P.rope_angles(pos, 6).cos(), ref.cos(), atol=1e-6)


errors(
    "rope_angles",
    [
        (
            "odd dim -> ValueError",
            ValueError,
            "dim",
            lambda d: P.rope_angles(torch.arange(3, device=d), 5),
        ),
        (
            "dim 2.5 -> TypeError",
            TypeError,
            "dim",
            lambda d: P.rope_angles(torch.arange(3, device=d), 2.5),
        ),
        (
            "bool positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.rope_angles(torch.ones(3, dtype=torch.bool, device=d), 4),
        ),
        (
            "complex positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.rope_angles(torch.ones(3, dtype=torch.complex64, device=d), 4),
        ),
        (
            "base 1 -> ValueError",
            ValueError,
            "base",
            lambda d: P.rope_angles(torch.arange(3, device=d), 4, base=1.0),
        ),
        (
            "integer dtype -> TypeError",
            TypeError,
            "dtype",
            lambda d: P.rope_angles(torch.arange(3, device=d), 4, dtype=torch.int32),
        ),
    ],
)

# ---------------------------------------------------------------- rope_cos_sin


@case("rope_cos_sin", "float16 tables at position 1e7", "value")
def _(device):
    pos = torch.tensor([0, 7, 10**7], device=device)
    cos, sin = P.rope_cos_sin(pos, 16, dtype=torch.float16)
    assert cos.dtype == sin.dtype == torch.float16
    ref = pos.cpu().double().unsqueeze(-1) * theta64(16)
    close(cos, ref.cos(), atol=1e-3)
    close(sin, ref.sin(), atol=1e-3)


@case("rope_cos_sin", "empty batch of positions", "empty")
def _(device):
    cos, sin = P.rope_cos_sin(torch.zeros(0, 5, device=device), 8)
    assert cos.shape == sin.shape == (0, 5, 4)


@case("rope_cos_sin", "meta positions: meta tables", "device")
def _(device):
    cos, sin = P.rope_cos_sin(meta(4, dtype=torch.long), 8)
    is_meta(cos, (4, 4))
    is_meta(sin, (4, 4))


errors(
    "rope_cos_sin",
    [
        (
            "dim 0 -> ValueError",
            ValueError,
            "dim",
            lambda d: P.rope_cos_sin(torch.arange(3, device=d), 0),
        ),
        (
            "positions a string -> TypeError",
            TypeError,
            "positions",
            lambda d: P.rope_cos_sin("abc", 4),
        ),
        (
            "complex dtype -> TypeError",
            TypeError,
            "dtype",
            lambda d: P.rope_cos_sin(
                torch.arange(3, device=d), 4, dtype=torch.complex64
            ),
        ),
    ],
)

# ---------------------------------------------------------------- apply_rope


for _layout in ("interleaved", "half"):

    @case("apply_rope", f"{_layout}: float32 matches float64", "value")
    def _(device, layout=_layout):
        x = rand(2, 3, 5, 8, device=device)
        close(P.apply_rope(x, layout=layout), rope64(x, layout=layout), atol=2e-6)

    @case("apply_rope", f"{_layout}: real and huge positions (1e7)", "value")
    def _(device, layout=_layout):
        x = rand(4, 16, device=device, dtype=torch.float64)
        pos = torch.tensor([0.5, -3.25, 1e5, 1e7], device=device, dtype=torch.float64)
        close(
            P.apply_rope(x, pos, layout=layout),
            rope64(x, pos, layout=layout),
            atol=1e-6,
        )

    @case("apply_rope", f"{_layout}: odd-offset view (storage offset 1)", "device")
    def _(device, layout=_layout):
        x = torch.randn(1, 1, 9, device=device)[..., 1:]
        assert x.is_contiguous() and x.storage_offset() == 1
        close(P.apply_rope(x, layout=layout), rope64(x, layout=layout), atol=2e-6)

    @case("apply_rope", f"{_layout}: non-contiguous transposed view", "device")
    def _(device, layout=_layout):
        x = rand(2, 5, 3, 8, device=device).transpose(1, 2)
        close(P.apply_rope(x, layout=layout), rope64(x, layout=layout), atol=2e-6)

    for _dtype in (torch.float16, torch.bfloat16):

        @case("apply_rope", f"{_layout}: {_dtype} at magnitude 3e4", "value")
        def _(device, layout=_layout, dtype=_dtype):
            x = rand(6, 8, device=device, scale=1e4).clamp(-3e4, 3e4).to(dtype)
            pos = torch.tensor([0, 1, 2, 100, 5000, 60000], device=device)
            out = P.apply_rope(x, pos, layout=layout)
            assert out.dtype == dtype
            eps = 2**-8 if dtype == torch.float16 else 2**-5
            close(out, rope64(x, pos, layout=layout), atol=4.3e4 * eps)

    @case("apply_rope", f"{_layout}: gradient is the inverse rotation", "grad")
    def _(device, layout=_layout):
        x = rand(5, 8, device=device, dtype=torch.float64).requires_grad_()
        w = rand(5, 8, device=device, dtype=torch.float64, seed=1)
        (P.apply_rope(x, layout=layout) * w).sum().backward()
        ref = rope64(w, -torch.arange(5.0), layout=layout)
        close(x.grad, ref, atol=1e-12)


@case("apply_rope", "empty sequence: (2, 0, 8) -> (2, 0, 8)", "empty")
def _(device):
    for layout in ("interleaved", "half"):
        out = P.apply_rope(torch.zeros(2, 0, 8, device=device), layout=layout)
        assert out.shape == (2, 0, 8)


@case("apply_rope", "empty batch with positions", "empty")
def _(device):
    x = torch.zeros(0, 3, 8, device=device)
    assert P.apply_rope(x, torch.arange(3, device=device)).shape == (0, 3, 8)


@case("apply_rope", "length one: position 0 is the identity", "value")
def _(device):
    x = rand(3, 1, 8, device=device)
    close(P.apply_rope(x), x.double().cpu(), atol=0)


@case("apply_rope", "NaN in one token stays in that token", "finite")
def _(device):
    x = rand(4, 8, device=device)
    x[2, 3] = math.nan
    out = P.apply_rope(x)
    finite(out[[0, 1, 3]])
    close(out[[0, 1, 3]], rope64(x)[[0, 1, 3]], atol=2e-6)


@case("apply_rope", "meta x and positions: a meta result", "device")
def _(device):
    is_meta(P.apply_rope(meta(2, 5, 8), meta(5, dtype=torch.long)), (2, 5, 8))
    is_meta(P.apply_rope(meta(2, 5, 8), layout="half"), (2, 5, 8))


errors(
    "apply_rope",
    [
        ("x a list -> TypeError", TypeError, "x", lambda d: P.apply_rope([[1.0, 2.0]])),
        (
            "int x -> TypeError",
            TypeError,
            "x",
            lambda d: P.apply_rope(torch.ones(3, 4, dtype=torch.long, device=d)),
        ),
        (
            "bool x -> TypeError",
            TypeError,
            "x",
            lambda d: P.apply_rope(torch.ones(3, 4, dtype=torch.bool, device=d)),
        ),
        (
            "complex x -> TypeError",
            TypeError,
            "x",
            lambda d: P.apply_rope(torch.ones(3, 4, dtype=torch.complex64, device=d)),
        ),
        (
            "1-D x -> ValueError",
            ValueError,
            "x",
            lambda d: P.apply_rope(torch.ones(4, device=d)),
        ),
        (
            "odd last dimension -> ValueError",
            ValueError,
            "x",
            lambda d: P.apply_rope(torch.ones(3, 5, device=d)),
        ),
        (
            "positions too long -> ValueError",
            ValueError,
            "positions",
            lambda d: P.apply_rope(
                torch.ones(3, 4, device=d), torch.arange(4, device=d)
            ),
        ),
        (
            "bool positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.apply_rope(
                torch.ones(3, 4, device=d), torch.ones(3, dtype=torch.bool, device=d)
            ),
        ),
        (
            "positions on meta -> ValueError",
            ValueError,
            "positions",
            lambda d: P.apply_rope(torch.ones(3, 4, device=d), meta(3)),
        ),
        (
            "layout 'rotate' -> ValueError",
            ValueError,
            "layout",
            lambda d: P.apply_rope(torch.ones(3, 4, device=d), layout="rotate"),
        ),
        (
            "base nan -> ValueError",
            ValueError,
            "base",
            lambda d: P.apply_rope(torch.ones(3, 4, device=d), base=math.nan),
        ),
    ],
)

# ---------------------------------------------------------------- decay_bound


def decay_bound64(s: float, dim: int) -> float:
    total, partial = 0.0, 0j
    for i in range(dim // 2):
        partial += cmath.exp(1j * s * 10000.0 ** (-2 * i / dim))
        total += abs(partial)
    return total / (dim // 2)


@case("decay_bound", "matches the partial sums, (dim/2+1)/2 at 0, 1e7", "value")
def _(device):
    s = torch.tensor([0.0, 1.0, 10.0, -50.0, 1e7], device=device)
    ref = torch.tensor([decay_bound64(float(v), 16) for v in s.cpu()], dtype=F64)
    out = P.decay_bound(s, 16)
    assert out.dtype == torch.float64
    close(out, ref, atol=1e-9)
    assert abs(float(out[0]) - 4.5) < 1e-12


@case("decay_bound", "empty distances", "empty")
def _(device):
    assert P.decay_bound(torch.zeros(0, device=device), 8).shape == (0,)


@case("decay_bound", "meta distances: a meta result", "device")
def _(device):
    is_meta(P.decay_bound(meta(3), 8), (3,))


errors(
    "decay_bound",
    [
        (
            "odd dim -> ValueError",
            ValueError,
            "dim",
            lambda d: P.decay_bound(torch.ones(2, device=d), 7),
        ),
        (
            "dim 4.0 -> TypeError",
            TypeError,
            "dim",
            lambda d: P.decay_bound(torch.ones(2, device=d), 4.0),
        ),
        (
            "bool distances -> TypeError",
            TypeError,
            "distances",
            lambda d: P.decay_bound(torch.ones(2, dtype=torch.bool, device=d), 4),
        ),
        (
            "base 0.5 -> ValueError",
            ValueError,
            "base",
            lambda d: P.decay_bound(torch.ones(2, device=d), 4, base=0.5),
        ),
    ],
)

# ---------------------------------------------------------------- rope_linear_attention


@case("rope_linear_attention", "float64 matches the definition", "value")
def _(device):
    q, k = (
        rand(2, 6, 8, device=device, dtype=torch.float64, seed=1),
        rand(2, 6, 8, device=device, dtype=torch.float64, seed=2),
    )
    v = rand(2, 6, 3, device=device, dtype=torch.float64, seed=3)
    close(P.rope_linear_attention(q, k, v), linear_rope64(q, k, v), atol=1e-10)
    close(
        P.rope_linear_attention(q, k, v, rotate_denominator=True),
        linear_rope64(q, k, v, rotate_denominator=True),
        atol=1e-8,
    )


for _dtype in (torch.float16, torch.bfloat16):

    @case("rope_linear_attention", f"{_dtype}, N(0,1), n=2048, d=64", "finite")
    def _(device, dtype=_dtype):
        q, k, v = (rand(2048, 64, device=device, seed=s) for s in (1, 2, 3))
        out = P.rope_linear_attention(q.to(dtype), k.to(dtype), v.to(dtype))
        assert out.dtype == dtype
        finite(out)
        ref = linear_rope64(q.to(dtype), k.to(dtype), v.to(dtype))
        eps = 2**-8 if dtype == torch.float16 else 2**-5
        close(out, ref, atol=float(ref.abs().max()) * eps * 2, rtol=eps * 2)


@case("rope_linear_attention", "odd-offset views of q, k, v", "device")
def _(device):
    q, k, v = (odd_view(5, 8, device=device) for _ in range(3))
    close(P.rope_linear_attention(q, k, v), linear_rope64(q, k, v), atol=1e-5)


@case("rope_linear_attention", "gradients are finite", "grad")
def _(device):
    q, k, v = (rand(2, 7, 8, device=device, seed=s).requires_grad_() for s in (1, 2, 3))
    P.rope_linear_attention(q, k, v).sum().backward()
    finite(q.grad, k.grad, v.grad)


@case("rope_linear_attention", "empty sequence and empty batch", "empty")
def _(device):
    z = torch.zeros(2, 0, 8, device=device)
    assert P.rope_linear_attention(z, z, torch.zeros(2, 0, 3, device=device)).shape == (
        2,
        0,
        3,
    )
    z = torch.zeros(0, 4, 8, device=device)
    assert P.rope_linear_attention(z, z, torch.zeros(0, 4, 3, device=device)).shape == (
        0,
        4,
        3,
    )


@case("rope_linear_attention", "meta q, k, v: a meta result", "device")
def _(device):
    is_meta(P.rope_linear_attention(meta(3, 8), meta(3, 8), meta(3, 2)), (3, 2))


errors(
    "rope_linear_attention",
    [
        (
            "int q -> TypeError",
            TypeError,
            "q",
            lambda d: P.rope_linear_attention(
                torch.ones(3, 4, dtype=torch.long, device=d),
                torch.ones(3, 4, device=d),
                torch.ones(3, 4, device=d),
            ),
        ),
        (
            "k longer than q -> ValueError",
            ValueError,
            "k",
            lambda d: P.rope_linear_attention(
                torch.ones(3, 4, device=d),
                torch.ones(5, 4, device=d),
                torch.ones(5, 4, device=d),
            ),
        ),
        (
            "v on meta -> ValueError",
            ValueError,
            "v",
            lambda d: P.rope_linear_attention(
                torch.ones(3, 4, device=d), torch.ones(3, 4, device=d), meta(3, 4)
            ),
        ),
        (
            "k float64, q float32 -> TypeError",
            TypeError,
            "k",
            lambda d: P.rope_linear_attention(
                torch.ones(3, 4, device=d),
                torch.ones(3, 4, device=d, dtype=torch.float64),
                torch.ones(3, 4, device=d),
            ),
        ),
        (
            "odd dim -> ValueError",
            ValueError,
            "q",
            lambda d: P.rope_linear_attention(*(torch.ones(3, 5, device=d),) * 3),
        ),
        (
            "1-D q -> ValueError",
            ValueError,
            "q",
            lambda d: P.rope_linear_attention(*(torch.ones(4, device=d),) * 3),
        ),
        (
            "rotate_denominator 'yes' -> TypeError",
            TypeError,
            "rotate_denominator",
            lambda d: P.rope_linear_attention(
                *(torch.ones(3, 4, device=d),) * 3, rotate_denominator="yes"
            ),
        ),
    ],
)

# ---------------------------------------------------------------- RotaryEmbedding


for _layout in ("interleaved", "half"):

    @case(
        "RotaryEmbedding",
        f"{_layout}: cached, lookup, negative, real positions",
        "value",
    )
    def _(device, layout=_layout):
        emb = P.RotaryEmbedding(8, layout=layout, initial_length=4)
        x = rand(2, 6, 8, device=device)
        close(emb(x), rope64(x, layout=layout), atol=2e-6)
        for pos in ([5, 0, 3, 3, 20, 1], [-4, 0, 1, 2, 3, 9], [0.5, 1, 2, 3, 4, 1e6]):
            p = torch.tensor(pos, device=device)
            close(emb(x, p), rope64(x, p, layout=layout), atol=2e-6)

    @case("RotaryEmbedding", f"{_layout}: odd-offset view", "device")
    def _(device, layout=_layout):
        emb = P.RotaryEmbedding(8, layout=layout)
        x = torch.randn(1, 1, 9, device=device)[..., 1:]
        close(emb(x), rope64(x, layout=layout), atol=2e-6)
        p = torch.tensor([3], device=device)
        close(emb(x, p), rope64(x, p, layout=layout), atol=2e-6)


@case("RotaryEmbedding", "position 1e7 leaves the cache bounded", "bound")
def _(device):
    emb = P.RotaryEmbedding(2)
    x = rand(2, 2, device=device)
    p = torch.tensor([3, 10**7], device=device)
    close(emb(x, p), rope64(x, p), atol=2e-6)
    rows = [t.shape[0] for tables in emb._cache.values() for t in tables]
    assert max(rows, default=0) <= emb.max_cached_length <= 2**20, rows


@case("RotaryEmbedding", "float16/bfloat16 at 3e4", "value")
def _(device):
    emb = P.RotaryEmbedding(8)
    for dtype, eps in ((torch.float16, 2**-8), (torch.bfloat16, 2**-5)):
        x = rand(5, 8, device=device, scale=1e4).clamp(-3e4, 3e4).to(dtype)
        out = emb(x)
        assert out.dtype == dtype
        close(out, rope64(x), atol=4.3e4 * eps)


@case("RotaryEmbedding", "empty sequence, empty positions", "empty")
def _(device):
    emb = P.RotaryEmbedding(8)
    assert emb(torch.zeros(3, 0, 8, device=device)).shape == (3, 0, 8)
    out = emb(
        torch.zeros(3, 0, 8, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
    )
    assert out.shape == (3, 0, 8)


@case("RotaryEmbedding", "gradient is the inverse rotation", "grad")
def _(device):
    emb = P.RotaryEmbedding(8, layout="half")
    x = rand(5, 8, device=device, dtype=torch.float64).requires_grad_()
    w = rand(5, 8, device=device, dtype=torch.float64, seed=1)
    (emb(x) * w).sum().backward()
    close(x.grad, rope64(w, -torch.arange(5.0), layout="half"), atol=1e-7)


@case("RotaryEmbedding", "meta x (and meta positions): a meta result", "device")
def _(device):
    emb = P.RotaryEmbedding(8)
    is_meta(emb(meta(2, 5, 8)), (2, 5, 8))
    is_meta(emb(meta(2, 5, 8), meta(5, dtype=torch.long)), (2, 5, 8))


errors(
    "RotaryEmbedding",
    [
        ("dim 7 -> ValueError", ValueError, "dim", lambda d: P.RotaryEmbedding(7)),
        ("dim 8.0 -> TypeError", TypeError, "dim", lambda d: P.RotaryEmbedding(8.0)),
        (
            "layout 'x' -> ValueError",
            ValueError,
            "layout",
            lambda d: P.RotaryEmbedding(8, layout="x"),
        ),
        (
            "initial_length 0 -> ValueError",
            ValueError,
            "initial_length",
            lambda d: P.RotaryEmbedding(8, initial_length=0),
        ),
        (
            "initial_length 2.5 -> TypeError",
            TypeError,
            "initial_length",
            lambda d: P.RotaryEmbedding(8, initial_length=2.5),
        ),
        (
            "max_cached_length 0 -> ValueError",
            ValueError,
            "max_cached_length",
            lambda d: P.RotaryEmbedding(8, max_cached_length=0),
        ),
        (
            "x of the wrong dim -> ValueError",
            ValueError,
            "x",
            lambda d: P.RotaryEmbedding(8)(torch.ones(3, 4, device=d)),
        ),
        (
            "int x -> TypeError",
            TypeError,
            "x",
            lambda d: P.RotaryEmbedding(4)(
                torch.ones(3, 4, dtype=torch.int32, device=d)
            ),
        ),
        (
            "1-D x -> ValueError",
            ValueError,
            "x",
            lambda d: P.RotaryEmbedding(4)(torch.ones(4, device=d)),
        ),
        (
            "positions on meta -> ValueError",
            ValueError,
            "positions",
            lambda d: P.RotaryEmbedding(4)(torch.ones(3, 4, device=d), meta(3)),
        ),
        (
            "complex positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.RotaryEmbedding(4)(
                torch.ones(3, 4, device=d),
                torch.ones(3, dtype=torch.complex64, device=d),
            ),
        ),
    ],
)

# ---------------------------------------------------------------- OneLayerAttention


def one_layer64(model, tokens) -> torch.Tensor:
    n = tokens.shape[1]
    x = model.embed.weight.detach().double().cpu()[tokens.cpu()]
    if model.encoding == "sinusoidal":
        x = x + sin64(torch.arange(n), model.width)
    q, k, v = (x @ model.qkv.weight.detach().double().cpu().T).chunk(3, -1)
    if model.encoding == "rope":
        q, k = rope64(q), rope64(k)
    keep = torch.ones(n, n, dtype=torch.bool).tril()
    att = softmax_attention64(q, k, v, keep=keep)
    w, b = (
        model.read_out.weight.detach().double(),
        model.read_out.bias.detach().double(),
    )
    return att @ w.cpu().T + b.cpu()


for _enc in ("none", "sinusoidal", "rope"):

    @case("OneLayerAttention", f"{_enc}: logits match float64", "value")
    def _(device, enc=_enc):
        torch.manual_seed(0)
        model = P.OneLayerAttention(7, 8, enc).to(device)
        tokens = torch.randint(0, 7, (2, 6), device=device)
        close(model(tokens), one_layer64(model, tokens), atol=1e-5)


@case("OneLayerAttention", "gradients finite", "grad")
def _(device):
    model = P.OneLayerAttention(5, 8).to(device)
    model(torch.randint(0, 5, (2, 4), device=device)).sum().backward()
    finite(*(p.grad for p in model.parameters()))


@case("OneLayerAttention", "empty batch and empty sequence", "empty")
def _(device):
    model = P.OneLayerAttention(5, 8).to(device)
    assert model(torch.zeros(0, 4, dtype=torch.long, device=device)).shape == (0, 4, 5)
    assert model(torch.zeros(2, 0, dtype=torch.long, device=device)).shape == (2, 0, 5)


errors(
    "OneLayerAttention",
    [
        (
            "vocab 2.5 -> TypeError",
            TypeError,
            "vocab",
            lambda d: P.OneLayerAttention(2.5, 8),
        ),
        (
            "width 0 -> ValueError",
            ValueError,
            "width",
            lambda d: P.OneLayerAttention(5, 0),
        ),
        (
            "odd width -> ValueError",
            ValueError,
            "width",
            lambda d: P.OneLayerAttention(5, 7),
        ),
        (
            "encoding 'alibi' -> ValueError",
            ValueError,
            "encoding",
            lambda d: P.OneLayerAttention(5, 8, "alibi"),
        ),
        (
            "float tokens -> TypeError",
            TypeError,
            "tokens",
            lambda d: P.OneLayerAttention(5, 8).to(d)(torch.zeros(2, 3, device=d)),
        ),
        (
            "bool tokens -> TypeError",
            TypeError,
            "tokens",
            lambda d: P.OneLayerAttention(5, 8).to(d)(
                torch.zeros(2, 3, dtype=torch.bool, device=d)
            ),
        ),
        (
            "1-D tokens -> ValueError",
            ValueError,
            "tokens",
            lambda d: P.OneLayerAttention(5, 8).to(d)(
                torch.zeros(3, dtype=torch.long, device=d)
            ),
        ),
        (
            "tokens >= vocab -> ValueError",
            ValueError,
            "tokens",
            lambda d: P.OneLayerAttention(5, 8).to(d)(torch.full((1, 3), 5, device=d)),
        ),
        (
            "tokens on meta -> ValueError",
            ValueError,
            "tokens",
            lambda d: P.OneLayerAttention(5, 8).to(d)(meta(1, 3, dtype=torch.long)),
        ),
    ],
)

# ---------------------------------------------------------------- lag_copy_batch


@case("lag_copy_batch", "targets are the tokens lag places back", "value")
def _(device):
    tokens, targets = P.lag_copy_batch(
        torch.Generator().manual_seed(0), 3, 7, vocab=4, lag=2, device=device
    )
    assert tokens.shape == targets.shape == (3, 7) and tokens.device.type == device.type
    assert (targets[:, :2] == -100).all() and (targets[:, 2:] == tokens[:, :-2]).all()
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 4


@case("lag_copy_batch", "size 0: an empty batch", "empty")
def _(device):
    tokens, targets = P.lag_copy_batch(
        torch.Generator(), 0, 5, vocab=3, lag=1, device=device
    )
    assert tokens.shape == targets.shape == (0, 5)


errors(
    "lag_copy_batch",
    [
        (
            "generator None -> TypeError",
            TypeError,
            "generator",
            lambda d: P.lag_copy_batch(None, 2, 5, vocab=3, lag=1),
        ),
        (
            "size 2.5 -> TypeError",
            TypeError,
            "size",
            lambda d: P.lag_copy_batch(torch.Generator(), 2.5, 5, vocab=3, lag=1),
        ),
        (
            "length 0 -> ValueError",
            ValueError,
            "length",
            lambda d: P.lag_copy_batch(torch.Generator(), 2, 0, vocab=3, lag=1),
        ),
        (
            "vocab True -> TypeError",
            TypeError,
            "vocab",
            lambda d: P.lag_copy_batch(torch.Generator(), 2, 5, vocab=True, lag=1),
        ),
        (
            "lag = length -> ValueError",
            ValueError,
            "lag",
            lambda d: P.lag_copy_batch(torch.Generator(), 2, 5, vocab=3, lag=5),
        ),
        (
            "lag 1.0 -> TypeError",
            TypeError,
            "lag",
            lambda d: P.lag_copy_batch(torch.Generator(), 2, 5, vocab=3, lag=1.0),
        ),
    ],
)

# ---------------------------------------------------------------- grid_coords


@case("grid_coords", "row-major (x, y) of a 2 x 3 grid", "value")
def _(device):
    out = P.grid_coords(2, 3, device=device)
    assert out.dtype == torch.int64 and out.device.type == device.type
    assert out.cpu().tolist() == [[x, y] for y in range(2) for x in range(3)]


@case("grid_coords", "height 0: (0, 2)", "empty")
def _(device):
    assert P.grid_coords(0, 3, device=device).shape == (0, 2)


@case("grid_coords", "device meta: a meta result", "device")
def _(device):
    is_meta(P.grid_coords(3, 4, device="meta"), (12, 2))


errors(
    "grid_coords",
    [
        (
            "height 2.5 -> TypeError",
            TypeError,
            "height",
            lambda d: P.grid_coords(2.5, 3),
        ),
        ("width -1 -> ValueError", ValueError, "width", lambda d: P.grid_coords(2, -1)),
        (
            "width True -> TypeError",
            TypeError,
            "width",
            lambda d: P.grid_coords(2, True),
        ),
    ],
)

# ---------------------------------------------------------------- apply_rope_2d


@case("apply_rope_2d", "grid coordinates: matches float64", "value")
def _(device):
    x = rand(2, 12, 16, device=device)
    coords = P.grid_coords(3, 4, device=device)
    close(P.apply_rope_2d(x, coords), rope2d64(x, coords), atol=2e-6)


@case("apply_rope_2d", "real coordinates up to 1e6", "value")
def _(device):
    x = rand(3, 8, device=device, dtype=torch.float64)
    coords = torch.tensor(
        [[0.5, -2.0], [1e6, 3.0], [7.0, 1e6]], device=device, dtype=torch.float64
    )
    close(P.apply_rope_2d(x, coords), rope2d64(x, coords), atol=1e-7)


@case("apply_rope_2d", "float16/bfloat16 at 3e4", "value")
def _(device):
    coords = P.grid_coords(2, 3, device=device)
    for dtype, eps in ((torch.float16, 2**-8), (torch.bfloat16, 2**-5)):
        x = rand(6, 8, device=device, scale=1e4).clamp(-3e4, 3e4).to(dtype)
        out = P.apply_rope_2d(x, coords)
        assert out.dtype == dtype
        close(out, rope2d64(x, coords), atol=4.3e4 * eps)


@case("apply_rope_2d", "odd-offset and transposed views", "device")
def _(device):
    coords = P.grid_coords(2, 2, device=device)
    x = odd_view(4, 8, device=device)
    close(P.apply_rope_2d(x, coords), rope2d64(x, coords), atol=2e-6)
    x = rand(8, 4, device=device).T
    close(P.apply_rope_2d(x, coords), rope2d64(x, coords), atol=2e-6)


@case("apply_rope_2d", "empty sequence and length one", "empty")
def _(device):
    out = P.apply_rope_2d(
        torch.zeros(2, 0, 8, device=device),
        torch.zeros(0, 2, dtype=torch.long, device=device),
    )
    assert out.shape == (2, 0, 8)
    x = rand(1, 8, device=device)
    close(
        P.apply_rope_2d(x, torch.zeros(1, 2, device=device)), x.double().cpu(), atol=0
    )


@case("apply_rope_2d", "gradient is the inverse rotation", "grad")
def _(device):
    x = rand(4, 8, device=device, dtype=torch.float64).requires_grad_()
    w = rand(4, 8, device=device, dtype=torch.float64, seed=1)
    coords = P.grid_coords(2, 2, device=device)
    (P.apply_rope_2d(x, coords) * w).sum().backward()
    close(x.grad, rope2d64(w, -coords.cpu()), atol=1e-12)


@case("apply_rope_2d", "meta x and coords: a meta result", "device")
def _(device):
    is_meta(P.apply_rope_2d(meta(2, 4, 8), meta(4, 2)), (2, 4, 8))


errors(
    "apply_rope_2d",
    [
        (
            "dim 6 -> ValueError",
            ValueError,
            "x",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 6, device=d), torch.zeros(3, 2, device=d)
            ),
        ),
        (
            "int x -> TypeError",
            TypeError,
            "x",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 8, dtype=torch.long, device=d),
                torch.zeros(3, 2, device=d),
            ),
        ),
        (
            "1-D x -> ValueError",
            ValueError,
            "x",
            lambda d: P.apply_rope_2d(
                torch.ones(8, device=d), torch.zeros(1, 2, device=d)
            ),
        ),
        (
            "coords a list -> TypeError",
            TypeError,
            "coords",
            lambda d: P.apply_rope_2d(torch.ones(3, 8, device=d), [[0, 0]] * 3),
        ),
        (
            "bool coords -> TypeError",
            TypeError,
            "coords",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 8, device=d),
                torch.zeros(3, 2, dtype=torch.bool, device=d),
            ),
        ),
        (
            "coords (3, 3) -> ValueError",
            ValueError,
            "coords",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 8, device=d), torch.zeros(3, 3, device=d)
            ),
        ),
        (
            "coords too long -> ValueError naming coords",
            ValueError,
            "coords",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 8, device=d), torch.zeros(4, 2, device=d)
            ),
        ),
        (
            "coords on meta -> ValueError",
            ValueError,
            "coords",
            lambda d: P.apply_rope_2d(torch.ones(3, 8, device=d), meta(3, 2)),
        ),
        (
            "base 1 -> ValueError",
            ValueError,
            "base",
            lambda d: P.apply_rope_2d(
                torch.ones(3, 8, device=d), torch.zeros(3, 2, device=d), base=1
            ),
        ),
    ],
)

# ---------------------------------------------------------------- offset_share


def offsets_of(coords) -> list:
    c = coords.cpu().tolist()
    return [(b[0] - a[0], b[1] - a[1]) for a in c for b in c]


@case("offset_share", "random scores match the group-mean R^2", "value")
def _(device):
    coords = P.grid_coords(2, 3, device=device)
    scores = rand(2, 6, 6, device=device, dtype=torch.float64)
    close(
        P.offset_share(scores, coords),
        group_share64(scores.flatten(-2), offsets_of(coords)),
        atol=1e-12,
    )


@case("offset_share", "constant scores: 1, not NaN", "finite")
def _(device):
    coords = P.grid_coords(2, 2, device=device)
    close(
        P.offset_share(torch.full((4, 4), 3.0, device=device), coords),
        torch.tensor(1.0, dtype=torch.float64),
        atol=0,
    )


@case("offset_share", "float16 at magnitude 3e4", "value")
def _(device):
    coords = P.grid_coords(2, 2, device=device)
    scores = rand(4, 4, device=device, scale=1e4).clamp(-3e4, 3e4).half()
    out = P.offset_share(scores, coords)
    assert out.dtype == torch.float16
    close(out, group_share64(scores.flatten(), offsets_of(coords)), atol=2e-3)


@case("offset_share", "empty batch of score matrices", "empty")
def _(device):
    out = P.offset_share(
        torch.zeros(0, 4, 4, device=device), P.grid_coords(2, 2, device=device)
    )
    assert out.shape == (0,)


errors(
    "offset_share",
    [
        (
            "int scores -> TypeError",
            TypeError,
            "scores",
            lambda d: P.offset_share(
                torch.ones(4, 4, dtype=torch.long, device=d),
                P.grid_coords(2, 2, device=d),
            ),
        ),
        (
            "scores (4, 3) -> ValueError",
            ValueError,
            "scores",
            lambda d: P.offset_share(
                torch.ones(4, 3, device=d), P.grid_coords(2, 2, device=d)
            ),
        ),
        (
            "coords (3, 2) -> ValueError",
            ValueError,
            "coords",
            lambda d: P.offset_share(
                torch.ones(4, 4, device=d), P.grid_coords(1, 3, device=d)
            ),
        ),
        (
            "bool coords -> TypeError",
            TypeError,
            "coords",
            lambda d: P.offset_share(
                torch.ones(4, 4, device=d),
                torch.zeros(4, 2, dtype=torch.bool, device=d),
            ),
        ),
        (
            "coords on meta -> ValueError",
            ValueError,
            "coords",
            lambda d: P.offset_share(torch.ones(4, 4, device=d), meta(4, 2)),
        ),
        (
            "all meta -> named ValueError",
            ValueError,
            "meta",
            lambda d: P.offset_share(meta(4, 4), meta(4, 2, dtype=torch.long)),
        ),
    ],
)

# ---------------------------------------------------------------- additive_residual


def additive64(s) -> float:
    s = s.detach().double().cpu().numpy()
    fit = s.mean(0, keepdims=True) + s.mean(1, keepdims=True) - s.mean()
    return float(((s - fit) ** 2).sum() / ((s - s.mean()) ** 2).sum())


@case("additive_residual", "matches the two-way fit; 0 when additive", "value")
def _(device):
    s = rand(4, 5, device=device, dtype=torch.float64)
    assert abs(P.additive_residual(s) - additive64(s)) < 1e-12
    additive = torch.arange(4.0, device=device)[:, None] + torch.arange(
        5.0, device=device
    )
    assert abs(P.additive_residual(additive)) < 1e-12


@case("additive_residual", "float16 at magnitude 3e4 does not overflow", "finite")
def _(device):
    s = rand(6, 6, device=device, scale=1e4).clamp(-3e4, 3e4).half()
    out = P.additive_residual(s)
    assert isinstance(out, float) and math.isfinite(out)
    assert abs(out - additive64(s)) < 1e-3


@case("additive_residual", "non-contiguous view", "device")
def _(device):
    s = rand(5, 4, device=device).T
    assert abs(P.additive_residual(s) - additive64(s)) < 1e-6


errors(
    "additive_residual",
    [
        (
            "a list -> TypeError",
            TypeError,
            "surface",
            lambda d: P.additive_residual([[1.0, 2.0], [3.0, 5.0]]),
        ),
        (
            "int surface -> TypeError",
            TypeError,
            "surface",
            lambda d: P.additive_residual(torch.ones(3, 3, dtype=torch.long, device=d)),
        ),
        (
            "3-D surface -> ValueError",
            ValueError,
            "surface",
            lambda d: P.additive_residual(torch.ones(2, 3, 3, device=d)),
        ),
        (
            "constant surface -> ValueError",
            ValueError,
            "surface",
            lambda d: P.additive_residual(torch.ones(3, 3, device=d)),
        ),
        (
            "empty surface -> ValueError",
            ValueError,
            "surface",
            lambda d: P.additive_residual(torch.ones(0, 3, device=d)),
        ),
        (
            "meta surface -> ValueError",
            ValueError,
            "surface",
            lambda d: P.additive_residual(meta(3, 3)),
        ),
    ],
)

# ---------------------------------------------------------------- MixedRotaryEmbedding2d


def mixed64(module, x, coords) -> torch.Tensor:
    f = module.frequencies.detach().double().cpu()  # (heads, pairs, 2)
    c = coords.double().cpu()
    angles = (
        c[None, :, None, 0] * f[:, None, :, 0] + c[None, :, None, 1] * f[:, None, :, 1]
    )
    return rotate64(x, angles, "interleaved")


@case("MixedRotaryEmbedding2d", "matches float64 rotation by x f_x + y f_y", "value")
def _(device):
    m = P.MixedRotaryEmbedding2d(8, 2, generator=torch.Generator().manual_seed(0))
    m = m.to(device)
    x, coords = rand(3, 2, 6, 8, device=device), P.grid_coords(2, 3, device=device)
    close(m(x, coords), mixed64(m, x, coords), atol=1e-5)


@case("MixedRotaryEmbedding2d", "float16 x at 3e4 returns float16", "value")
def _(device):
    m = P.MixedRotaryEmbedding2d(8).to(device)
    x = rand(1, 1, 4, 8, device=device, scale=1e4).clamp(-3e4, 3e4).half()
    coords = P.grid_coords(2, 2, device=device)
    out = m(x, coords)
    assert out.dtype == torch.float16
    close(out, mixed64(m, x, coords), atol=4.3e4 * 2**-8)


@case("MixedRotaryEmbedding2d", "odd-offset x view", "device")
def _(device):
    m = P.MixedRotaryEmbedding2d(8).to(device)
    x, coords = odd_view(1, 1, 4, 8, device=device), P.grid_coords(2, 2, device=device)
    close(m(x, coords), mixed64(m, x, coords), atol=1e-5)


@case("MixedRotaryEmbedding2d", "gradients in x and frequencies finite", "grad")
def _(device):
    m = P.MixedRotaryEmbedding2d(8).to(device)
    x = rand(2, 1, 4, 8, device=device).requires_grad_()
    m(x, P.grid_coords(2, 2, device=device)).pow(2).sum().backward()
    finite(x.grad, m.frequencies.grad)


@case("MixedRotaryEmbedding2d", "empty sequence and empty batch", "empty")
def _(device):
    m = P.MixedRotaryEmbedding2d(8).to(device)
    z = torch.zeros(0, 2, device=device)
    assert m(torch.zeros(2, 1, 0, 8, device=device), z).shape == (2, 1, 0, 8)
    coords = P.grid_coords(1, 3, device=device)
    assert m(torch.zeros(0, 1, 3, 8, device=device), coords).shape == (0, 1, 3, 8)


errors(
    "MixedRotaryEmbedding2d",
    [
        (
            "dim 7 -> ValueError",
            ValueError,
            "dim",
            lambda d: P.MixedRotaryEmbedding2d(7),
        ),
        (
            "dim 8.0 -> TypeError",
            TypeError,
            "dim",
            lambda d: P.MixedRotaryEmbedding2d(8.0),
        ),
        (
            "heads 0 -> ValueError",
            ValueError,
            "heads",
            lambda d: P.MixedRotaryEmbedding2d(8, 0),
        ),
        (
            "base 1 -> ValueError",
            ValueError,
            "base",
            lambda d: P.MixedRotaryEmbedding2d(8, base=1),
        ),
        (
            "x 3-D -> ValueError",
            ValueError,
            "x",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                torch.ones(1, 4, 8, device=d), P.grid_coords(2, 2, device=d)
            ),
        ),
        (
            "int x -> TypeError",
            TypeError,
            "x",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                torch.ones(1, 1, 4, 8, dtype=torch.long, device=d),
                P.grid_coords(2, 2, device=d),
            ),
        ),
        (
            "coords (3, 2) -> ValueError",
            ValueError,
            "coords",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                torch.ones(1, 1, 4, 8, device=d), P.grid_coords(1, 3, device=d)
            ),
        ),
        (
            "bool coords -> TypeError",
            TypeError,
            "coords",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                torch.ones(1, 1, 4, 8, device=d),
                torch.zeros(4, 2, dtype=torch.bool, device=d),
            ),
        ),
        (
            "coords on meta -> ValueError",
            ValueError,
            "coords",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                torch.ones(1, 1, 4, 8, device=d), meta(4, 2)
            ),
        ),
        (
            "x on meta -> ValueError",
            ValueError,
            "x",
            lambda d: P.MixedRotaryEmbedding2d(8).to(d)(
                meta(1, 1, 4, 8), P.grid_coords(2, 2, device=d)
            ),
        ),
    ],
)

# ---------------------------------------------------------------- symbol_above_task


@case("symbol_above_task", "targets are the symbols one row up", "value")
def _(device):
    inputs, targets, coords = P.symbol_above_task(
        torch.Generator().manual_seed(0), 2, 3, 4, symbols=5, device=device
    )
    assert inputs.shape == targets.shape == (2, 12) and coords.shape == (12, 2)
    assert (targets[:, :4] == -100).all() and (targets[:, 4:] == inputs[:, :-4]).all()
    assert int(inputs.max()) < 5 and inputs.device.type == device.type


@case("symbol_above_task", "count 0: empty batch", "empty")
def _(device):
    inputs, targets, coords = P.symbol_above_task(
        torch.Generator(), 0, 2, 3, device=device
    )
    assert inputs.shape == targets.shape == (0, 6) and coords.shape == (6, 2)


errors(
    "symbol_above_task",
    [
        (
            "generator 0 -> TypeError",
            TypeError,
            "generator",
            lambda d: P.symbol_above_task(0, 2, 3, 4),
        ),
        (
            "count 2.5 -> TypeError",
            TypeError,
            "count",
            lambda d: P.symbol_above_task(torch.Generator(), 2.5, 3, 4),
        ),
        (
            "rows 0 -> ValueError",
            ValueError,
            "rows",
            lambda d: P.symbol_above_task(torch.Generator(), 2, 0, 4),
        ),
        (
            "width 2.0 -> TypeError",
            TypeError,
            "width",
            lambda d: P.symbol_above_task(torch.Generator(), 2, 3, 2.0),
        ),
        (
            "symbols 0 -> ValueError",
            ValueError,
            "symbols",
            lambda d: P.symbol_above_task(torch.Generator(), 2, 3, 4, symbols=0),
        ),
    ],
)

# ---------------------------------------------------------------- PatchAttention


def patch64(model, inputs, coords) -> torch.Tensor:
    x = model.embed.weight.detach().double().cpu()[inputs.cpu()]
    q, k, v = (x @ model.qkv.weight.detach().double().cpu().T).chunk(3, -1)
    q, k = rope2d64(q, coords.cpu()), rope2d64(k, coords.cpu())
    att = softmax_attention64(q, k, v)
    w, b = (
        model.read_out.weight.detach().double(),
        model.read_out.bias.detach().double(),
    )
    return att @ w.cpu().T + b.cpu()


@case("PatchAttention", "2-D RoPE logits match float64", "value")
def _(device):
    torch.manual_seed(0)
    model = P.PatchAttention("2-D RoPE", symbols=5, dim=8).to(device)
    inputs = torch.randint(0, 5, (2, 6), device=device)
    coords = P.grid_coords(2, 3, device=device)
    close(model(inputs, coords), patch64(model, inputs, coords), atol=1e-5)


@case("PatchAttention", "every encoding: finite logits and gradients", "grad")
def _(device):
    inputs = torch.randint(0, 5, (2, 6), device=device)
    coords = P.grid_coords(2, 3, device=device)
    for encoding in (
        "none",
        "flattened 1-D RoPE",
        "2-D RoPE",
        "RoPE-Mixed",
        "learned absolute 2-D",
    ):
        model = P.PatchAttention(encoding, symbols=5, dim=8, max_side=4).to(device)
        model(inputs, coords).sum().backward()
        finite(*(p.grad for p in model.parameters() if p.grad is not None))


@case("PatchAttention", "empty batch", "empty")
def _(device):
    model = P.PatchAttention("2-D RoPE", symbols=5, dim=8).to(device)
    out = model(
        torch.zeros(0, 6, dtype=torch.long, device=device),
        P.grid_coords(2, 3, device=device),
    )
    assert out.shape == (0, 6, 5)


errors(
    "PatchAttention",
    [
        (
            "encoding 'alibi' -> ValueError",
            ValueError,
            "encoding",
            lambda d: P.PatchAttention("alibi"),
        ),
        (
            "dim 6 -> ValueError",
            ValueError,
            "dim",
            lambda d: P.PatchAttention("none", dim=6),
        ),
        (
            "dim 8.0 -> TypeError",
            TypeError,
            "dim",
            lambda d: P.PatchAttention("none", dim=8.0),
        ),
        (
            "symbols 0 -> ValueError",
            ValueError,
            "symbols",
            lambda d: P.PatchAttention("none", symbols=0),
        ),
        (
            "max_side 0 -> ValueError",
            ValueError,
            "max_side",
            lambda d: P.PatchAttention("learned absolute 2-D", max_side=0),
        ),
        (
            "float inputs -> TypeError",
            TypeError,
            "inputs",
            lambda d: P.PatchAttention("none", dim=8).to(d)(
                torch.zeros(1, 4, device=d), P.grid_coords(2, 2, device=d)
            ),
        ),
        (
            "1-D inputs -> ValueError",
            ValueError,
            "inputs",
            lambda d: P.PatchAttention("none", dim=8).to(d)(
                torch.zeros(4, dtype=torch.long, device=d),
                P.grid_coords(2, 2, device=d),
            ),
        ),
        (
            "inputs >= symbols -> ValueError",
            ValueError,
            "inputs",
            lambda d: P.PatchAttention("none", symbols=3, dim=8).to(d)(
                torch.full((1, 4), 3, device=d), P.grid_coords(2, 2, device=d)
            ),
        ),
        (
            "coords (3, 2) for 4 patches -> ValueError",
            ValueError,
            "coords",
            lambda d: P.PatchAttention("2-D RoPE", dim=8).to(d)(
                torch.zeros(1, 4, dtype=torch.long, device=d),
                P.grid_coords(1, 3, device=d),
            ),
        ),
        (
            "coords on meta -> ValueError",
            ValueError,
            "coords",
            lambda d: P.PatchAttention("2-D RoPE", dim=8).to(d)(
                torch.zeros(1, 4, dtype=torch.long, device=d), meta(4, 2)
            ),
        ),
        (
            "coords outside the learned grid -> ValueError",
            ValueError,
            "coords",
            lambda d: P.PatchAttention("learned absolute 2-D", dim=8, max_side=2).to(d)(
                torch.zeros(1, 9, dtype=torch.long, device=d),
                P.grid_coords(3, 3, device=d),
            ),
        ),
    ],
)

# ---------------------------------------------------------------- frequencies


@case("frequencies", "base^(-2i/dim) in float64", "value")
def _(device):
    out = P.frequencies(16, base=500.0, device=device)
    assert out.dtype == torch.float64
    close(out, theta64(16, 500.0), atol=1e-15)


@case("frequencies", "device meta: a meta result", "device")
def _(device):
    is_meta(P.frequencies(8, device="meta"), (4,))


errors(
    "frequencies",
    [
        ("dim 2.5 -> TypeError", TypeError, "dim", lambda d: P.frequencies(2.5)),
        ("dim -2 -> ValueError", ValueError, "dim", lambda d: P.frequencies(-2)),
        (
            "base True -> TypeError",
            TypeError,
            "base",
            lambda d: P.frequencies(4, base=True),
        ),
        (
            "base inf -> ValueError",
            ValueError,
            "base",
            lambda d: P.frequencies(4, base=math.inf),
        ),
        (
            "int dtype -> TypeError",
            TypeError,
            "dtype",
            lambda d: P.frequencies(4, dtype=torch.int64),
        ),
    ],
)

# ---------------------------------------------------------------- sinusoidal_embedding


@case("sinusoidal_embedding", "positions up to 1e7 in float32", "value")
def _(device):
    pos = torch.tensor([0, 1, 77, 10**5, 10**7, -5], device=device)
    close(P.sinusoidal_embedding(pos, 8, dtype=torch.float32), sin64(pos, 8), atol=1e-6)


@case("sinusoidal_embedding", "float16 and bfloat16 results", "value")
def _(device):
    pos = torch.arange(0, 5000, 499, device=device)
    for dtype, eps in ((torch.float16, 2**-11), (torch.bfloat16, 2**-8)):
        out = P.sinusoidal_embedding(pos, 16, dtype=dtype)
        assert out.dtype == dtype
        close(out, sin64(pos, 16), atol=eps)


@case("sinusoidal_embedding", "empty positions: (0, dim)", "empty")
def _(device):
    out = P.sinusoidal_embedding(torch.zeros(0, dtype=torch.long, device=device), 8)
    assert out.shape == (0, 8)


@case("sinusoidal_embedding", "odd-offset real positions; meta positions", "device")
def _(device):
    pos = odd_view(5, device=device, dtype=torch.float64) * 50
    close(
        P.sinusoidal_embedding(pos, 6, dtype=torch.float64), sin64(pos, 6), atol=1e-12
    )
    is_meta(P.sinusoidal_embedding(meta(3, dtype=torch.long), 8), (3, 8))


errors(
    "sinusoidal_embedding",
    [
        (
            "bool positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.sinusoidal_embedding(
                torch.ones(3, dtype=torch.bool, device=d), 4
            ),
        ),
        (
            "complex positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.sinusoidal_embedding(
                torch.ones(3, dtype=torch.cfloat, device=d), 4
            ),
        ),
        (
            "odd dim -> ValueError",
            ValueError,
            "dim",
            lambda d: P.sinusoidal_embedding(torch.arange(3, device=d), 3),
        ),
        (
            "int dtype -> TypeError",
            TypeError,
            "dtype",
            lambda d: P.sinusoidal_embedding(
                torch.arange(3, device=d), 4, dtype=torch.int32
            ),
        ),
    ],
)

# ---------------------------------------------------------------- relative_shift_matrix


@case("relative_shift_matrix", "M_k PE(m) = PE(m + k), k up to 1e6", "value")
def _(device):
    k = torch.tensor([0.0, 3.0, -7.5, 1e6], device=device, dtype=torch.float64)
    out = P.relative_shift_matrix(k, 8, dtype=torch.float64)
    assert out.shape == (4, 8, 8)
    m = torch.tensor(12.0)
    ref = sin64(m + k.cpu(), 8)
    close(out @ sin64(m, 8).to(out.device), ref, atol=1e-9)


@case("relative_shift_matrix", "empty offsets: (0, dim, dim)", "empty")
def _(device):
    out = P.relative_shift_matrix(torch.zeros(0, device=device), 4)
    assert out.shape == (0, 4, 4)


@case("relative_shift_matrix", "meta offsets: a meta result", "device")
def _(device):
    is_meta(P.relative_shift_matrix(meta(2), 4), (2, 4, 4))
    is_meta(P.relative_shift_matrix(3, 4, device="meta"), (4, 4))


errors(
    "relative_shift_matrix",
    [
        (
            "bool offset -> TypeError",
            TypeError,
            "offset",
            lambda d: P.relative_shift_matrix(
                torch.ones(2, dtype=torch.bool, device=d), 4
            ),
        ),
        (
            "dim 5 -> ValueError",
            ValueError,
            "dim",
            lambda d: P.relative_shift_matrix(1, 5),
        ),
        (
            "int dtype -> TypeError",
            TypeError,
            "dtype",
            lambda d: P.relative_shift_matrix(1, 4, dtype=torch.long),
        ),
    ],
)

# ---------------------------------------------------------------- toeplitz_share


def diagonals(n: int) -> list:
    return [m - k for m in range(n) for k in range(n)]


@case("toeplitz_share", "random matrices match the diagonal-mean R^2", "value")
def _(device):
    a = rand(3, 5, 5, device=device, dtype=torch.float64)
    close(P.toeplitz_share(a), group_share64(a.flatten(-2), diagonals(5)), atol=1e-12)


@case("toeplitz_share", "constant matrix: 1, not NaN", "finite")
def _(device):
    a = torch.full((2, 4, 4), -2.5, device=device)
    close(P.toeplitz_share(a), torch.ones(2, dtype=torch.float64), atol=0)


@case("toeplitz_share", "float16 at 3e4: computed in float32", "value")
def _(device):
    a = rand(6, 6, device=device, scale=1e4).clamp(-3e4, 3e4).half()
    out = P.toeplitz_share(a)
    assert out.dtype == torch.float16
    close(out, group_share64(a.flatten(), diagonals(6)), atol=2e-3)


@case("toeplitz_share", "transposed view", "device")
def _(device):
    a = rand(5, 5, device=device, dtype=torch.float64).T
    close(P.toeplitz_share(a), group_share64(a.flatten(), diagonals(5)), atol=1e-12)


@case("toeplitz_share", "meta matrix: a meta result", "device")
def _(device):
    is_meta(P.toeplitz_share(meta(2, 4, 4)), (2,))


@case("toeplitz_share", "empty batch: (0,)", "empty")
def _(device):
    assert P.toeplitz_share(torch.zeros(0, 3, 3, device=device)).shape == (0,)


errors(
    "toeplitz_share",
    [
        (
            "int matrix -> TypeError",
            TypeError,
            "matrix",
            lambda d: P.toeplitz_share(torch.ones(3, 3, dtype=torch.long, device=d)),
        ),
        (
            "(3, 4) -> ValueError",
            ValueError,
            "matrix",
            lambda d: P.toeplitz_share(torch.ones(3, 4, device=d)),
        ),
        (
            "1 x 1 -> ValueError",
            ValueError,
            "matrix",
            lambda d: P.toeplitz_share(torch.ones(1, 1, device=d)),
        ),
    ],
)

# ---------------------------------------------------------------- share_explained_by_groups


@case("share_explained_by_groups", "matches group means; constant rows give 1", "value")
def _(device):
    values = rand(3, 8, device=device, dtype=torch.float64)
    values[1] = 4.0
    groups = torch.tensor([5, 1, 5, 2, 1, 1, 9, 2], device=device)
    close(
        P.share_explained_by_groups(values, groups),
        group_share64(values, groups.tolist()),
        atol=1e-12,
    )


@case("share_explained_by_groups", "2-D labels (m, 2) group by rows", "value")
def _(device):
    values = rand(6, device=device, dtype=torch.float64)
    groups = torch.tensor(
        [[0, 1], [0, 1], [1, 0], [1, 0], [1, 1], [0, 0]], device=device
    )
    ref = group_share64(values, [tuple(g) for g in groups.tolist()])
    close(P.share_explained_by_groups(values, groups), ref, atol=1e-12)


@case("share_explained_by_groups", "empty batch and no entries", "empty")
def _(device):
    out = P.share_explained_by_groups(
        torch.zeros(0, 4, device=device), torch.arange(4, device=device)
    )
    assert out.shape == (0,)
    out = P.share_explained_by_groups(
        torch.zeros(3, 0, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
    )
    assert out.shape == (3,) and bool((out == 1).all())


@case("share_explained_by_groups", "bfloat16 at 3e4: computed in float32", "value")
def _(device):
    values = rand(8, device=device, scale=1e4).clamp(-3e4, 3e4).bfloat16()
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    out = P.share_explained_by_groups(values, groups)
    assert out.dtype == torch.bfloat16
    close(out, group_share64(values, groups.tolist()), atol=1e-2)


errors(
    "share_explained_by_groups",
    [
        (
            "int values -> TypeError",
            TypeError,
            "values",
            lambda d: P.share_explained_by_groups(
                torch.ones(4, dtype=torch.long, device=d), torch.arange(4, device=d)
            ),
        ),
        (
            "groups too short -> ValueError",
            ValueError,
            "groups",
            lambda d: P.share_explained_by_groups(
                torch.ones(4, device=d), torch.arange(3, device=d)
            ),
        ),
        (
            "complex groups -> TypeError",
            TypeError,
            "groups",
            lambda d: P.share_explained_by_groups(
                torch.ones(4, device=d), torch.ones(4, dtype=torch.cfloat, device=d)
            ),
        ),
        (
            "groups on meta -> ValueError",
            ValueError,
            "groups",
            lambda d: P.share_explained_by_groups(
                torch.ones(4, device=d), meta(4, dtype=torch.long)
            ),
        ),
        (
            "0-D values -> ValueError",
            ValueError,
            "values",
            lambda d: P.share_explained_by_groups(
                torch.tensor(1.0, device=d), torch.arange(1, device=d)
            ),
        ),
    ],
)

# ---------------------------------------------------------------- decay_integral


def ci_integral64(k: float, base: float = 10000.0) -> float:
    k = abs(k)
    if k == 0:
        return 1.0
    return float((special.sici(k)[1] - special.sici(k / base)[1]) / math.log(base))


@case(
    "decay_integral",
    "matches SciPy's Ci and quadrature, k up to 1e7",
    "value",
)
def _(device):
    k = [0.0, 0.5, 3.0, -40.0, 1e7]
    out = P.decay_integral(torch.tensor(k, device=device))
    assert out.dtype == torch.float64 and out.device.type == "cpu"
    close(out, torch.tensor([ci_integral64(v) for v in k], dtype=F64), atol=1e-10)
    quad = integrate.quad(lambda t: math.cos(3.0 * 10000.0 ** (-t)), 0, 1)[0]
    assert abs(float(out[2]) - quad) < 1e-10


@case("decay_integral", "empty distances: (0,)", "empty")
def _(device):
    assert P.decay_integral(torch.zeros(0, device=device)).shape == (0,)


errors(
    "decay_integral",
    [
        (
            "bool distances -> TypeError",
            TypeError,
            "distances",
            lambda d: P.decay_integral(torch.ones(2, dtype=torch.bool, device=d)),
        ),
        (
            "NaN distance -> ValueError",
            ValueError,
            "distances",
            lambda d: P.decay_integral([1.0, math.nan]),
        ),
        (
            "base 1 -> ValueError",
            ValueError,
            "base",
            lambda d: P.decay_integral([1.0], base=1.0),
        ),
        (
            "base True -> TypeError",
            TypeError,
            "base",
            lambda d: P.decay_integral([1.0], base=True),
        ),
        (
            "meta distances -> ValueError",
            ValueError,
            "distances",
            lambda d: P.decay_integral(meta(3)),
        ),
    ],
)

# ---------------------------------------------------------------- power_decay_integral


@case(
    "power_decay_integral",
    "alpha 1 is sin(k)/k; alpha 2 matches quadrature",
    "value",
)
def _(device):
    k = [0.0, 1.0, -5.0, 1e4]
    out = P.power_decay_integral(torch.tensor(k, device=device), 1)
    ref = torch.tensor([1.0] + [math.sin(v) / v for v in k[1:]], dtype=F64)
    close(out, ref, atol=1e-12)
    out = P.power_decay_integral([0.5, 4.0], 2.0)
    ref = torch.tensor(
        [
            integrate.quad(lambda t, v=v: math.cos(v * t * t), 0, 1)[0]
            for v in (0.5, 4.0)
        ],
        dtype=F64,
    )
    close(out, ref, atol=1e-10)


@case("power_decay_integral", "empty distances: (0,)", "empty")
def _(device):
    assert P.power_decay_integral(torch.zeros(0, 3, device=device), 2).shape == (0, 3)


errors(
    "power_decay_integral",
    [
        (
            "alpha 0 -> ValueError",
            ValueError,
            "alpha",
            lambda d: P.power_decay_integral([1.0], 0),
        ),
        (
            "alpha True -> TypeError",
            TypeError,
            "alpha",
            lambda d: P.power_decay_integral([1.0], True),
        ),
        (
            "inf distance -> ValueError",
            ValueError,
            "distances",
            lambda d: P.power_decay_integral(torch.tensor([math.inf], device=d), 1),
        ),
        (
            "complex distances -> TypeError",
            TypeError,
            "distances",
            lambda d: P.power_decay_integral(
                torch.ones(2, dtype=torch.cfloat, device=d), 1
            ),
        ),
    ],
)

# ---------------------------------------------------------------- covariance_dominance


def dominance64(table) -> dict:
    c = np.cov(table.detach().double().cpu().numpy().T)
    d = np.abs(np.diag(c))
    off = np.abs(c - np.diag(np.diag(c)))
    n = len(d)
    return {
        "mean ratio": d.mean() / (off.sum() / (n * (n - 1))),
        "diagonal energy": (d**2).sum() / (c**2).sum(),
        "rows dominated": float((d > off.max(1)).mean()),
    }


@case("covariance_dominance", "matches NumPy's covariance; float16 at 3e4", "value")
def _(device):
    for dtype in (torch.float64, torch.float16):
        t = rand(50, 4, device=device, scale=1e4).clamp(-3e4, 3e4).to(dtype)
        out, ref = P.covariance_dominance(t), dominance64(t)
        assert out.keys() == ref.keys()
        for key in ref:
            assert math.isclose(out[key], ref[key], rel_tol=1e-9), (key, out, ref)


@case("covariance_dominance", "non-contiguous view", "device")
def _(device):
    t = rand(4, 30, device=device, dtype=torch.float64).T
    out, ref = P.covariance_dominance(t), dominance64(t)
    assert all(math.isclose(out[key], ref[key], rel_tol=1e-9) for key in ref)


errors(
    "covariance_dominance",
    [
        (
            "int table -> TypeError",
            TypeError,
            "table",
            lambda d: P.covariance_dominance(
                torch.ones(3, 3, dtype=torch.long, device=d)
            ),
        ),
        (
            "1-D table -> ValueError",
            ValueError,
            "table",
            lambda d: P.covariance_dominance(torch.ones(5, device=d)),
        ),
        (
            "one row -> ValueError",
            ValueError,
            "table",
            lambda d: P.covariance_dominance(torch.ones(1, 3, device=d)),
        ),
        (
            "constant columns -> ValueError",
            ValueError,
            "table",
            lambda d: P.covariance_dominance(torch.ones(5, 3, device=d)),
        ),
        (
            "meta table -> ValueError",
            ValueError,
            "table",
            lambda d: P.covariance_dominance(meta(5, 3)),
        ),
    ],
)

# ---------------------------------------------------------------- SinusoidalEmbedding


@case("SinusoidalEmbedding", "lookup, growth, negative and real positions", "value")
def _(device):
    emb = P.SinusoidalEmbedding(8, initial_length=4).to(device)
    for pos in ([0, 3, 1], [2, 40, 7], [-3, 0, 2], [0.5, 1e5, 2.0]):
        p = torch.tensor(pos, device=device)
        close(emb(p), sin64(p, 8), atol=1e-6)


@case("SinusoidalEmbedding", "position 1e7 leaves the table bounded", "bound")
def _(device):
    emb = P.SinusoidalEmbedding(2).to(device)
    p = torch.tensor([[1, 10**7]], device=device)
    close(emb(p), sin64(p, 2), atol=1e-6)
    assert len(emb.table) <= emb.max_cached_length <= 2**20, len(emb.table)


@case("SinusoidalEmbedding", "float16 module returns float16", "value")
def _(device):
    emb = P.SinusoidalEmbedding(16).to(device).half()
    p = torch.tensor([0, 9, 600, 5000], device=device)
    out = emb(p)
    assert out.dtype == torch.float16
    close(out, sin64(p, 16), atol=2**-11)


@case("SinusoidalEmbedding", "empty positions: (0, dim)", "empty")
def _(device):
    emb = P.SinusoidalEmbedding(8).to(device)
    assert emb(torch.zeros(2, 0, dtype=torch.long, device=device)).shape == (2, 0, 8)


@case("SinusoidalEmbedding", "meta module and positions: a meta result", "device")
def _(device):
    emb = P.SinusoidalEmbedding(8).to("meta")
    is_meta(emb(meta(2, 3, dtype=torch.long)), (2, 3, 8))


errors(
    "SinusoidalEmbedding",
    [
        ("dim 3 -> ValueError", ValueError, "dim", lambda d: P.SinusoidalEmbedding(3)),
        (
            "initial_length 2.5 -> TypeError",
            TypeError,
            "initial_length",
            lambda d: P.SinusoidalEmbedding(4, initial_length=2.5),
        ),
        (
            "max_cached_length -1 -> ValueError",
            ValueError,
            "max_cached_length",
            lambda d: P.SinusoidalEmbedding(4, max_cached_length=-1),
        ),
        (
            "positions on meta -> ValueError",
            ValueError,
            "positions",
            lambda d: P.SinusoidalEmbedding(4).to(d)(meta(3, dtype=torch.long)),
        ),
        (
            "bool positions -> TypeError",
            TypeError,
            "positions",
            lambda d: P.SinusoidalEmbedding(4).to(d)(
                torch.ones(3, dtype=torch.bool, device=d)
            ),
        ),
    ],
)
