"""Hostile inputs for Nyströmformer (``kexue.attention.nystrom``) and Fastformer
(``kexue.attention.fastformer``): their functions, layers and small models.

References are written here from the definitions, in float64 on the CPU: the paper's
Nyström formula with segment means and the hyperpower iteration, Fastformer's pooling
equations token by token, and textbook softmax attention (``softmax_attention64``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hostile import (
    Registry,
    close,
    expect_error,
    finite,
    odd_view,
    softmax_attention64,
)

import kexue.attention as ka

P = "kexue.attention."
HALF = (torch.float16, torch.bfloat16)
META = torch.device("meta")
# unit roundoff of float16 and bfloat16: half-precision results are compared with
# float64 in units of it, relative to the largest reference entry (measured errors on
# the CPU are 0.2 to 2.6 units; tolerances are 2 to 3 times those)
UNIT = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def near(out: torch.Tensor, ref: torch.Tensor, units: float) -> None:
    """``out`` within ``units`` unit roundoffs of its dtype times max |ref|."""
    close(out, ref, atol=units * UNIT[out.dtype] * ref.abs().max().item())


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, device, dtype=torch.float64, seed=0, spread=1.0) -> torch.Tensor:
    x = spread * torch.randn(*shape, dtype=torch.float64, generator=_g(seed))
    return x.to(device, dtype)


def _qkv(b, h, n, d, *, device, dtype=torch.float64, spread=1.0, dv=None):
    dv = d if dv is None else dv
    return (
        _randn(b, h, n, d, device=device, dtype=dtype, seed=1, spread=spread),
        _randn(b, h, n, d, device=device, dtype=dtype, seed=2, spread=spread),
        _randn(b, h, n, dv, device=device, dtype=dtype, seed=3),
    )


def _mask(lengths, n, device) -> torch.Tensor:
    return (
        torch.arange(n, device=device) < torch.tensor(lengths, device=device)[:, None]
    )


# --------------------------------------------------------------------- float64 references
def _pinv_steps64(a: torch.Tensor, steps: int) -> torch.Tensor:
    """Hyperpower iteration from its definition, one matrix at a time."""
    a = a.detach().double().cpu()
    flat = a.reshape(-1, *a.shape[-2:])
    out = []
    for mat in flat:
        s = mat.abs().sum(0).max() * mat.abs().sum(1).max()
        z = mat.T / s if s > 0 else torch.zeros_like(mat.T)
        eye = torch.eye(mat.shape[0], dtype=torch.float64)
        for _ in range(steps):
            az = mat @ z
            z = z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az))) / 4
        out.append(z)
    return torch.stack(out).reshape(*a.shape[:-2], a.shape[-1], a.shape[-2])


def _segments64(x: torch.Tensor, m: int) -> torch.Tensor:
    """Means of m equal contiguous segments of x (..., n, d), n divisible by m."""
    size = x.shape[-2] // m
    return torch.stack(
        [x[..., i * size : (i + 1) * size, :].mean(-2) for i in range(m)], -2
    )


def _factors64(q, k, m, scale=None):
    q, k = q.detach().double().cpu(), k.detach().double().cpu()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    qt, kt = _segments64(q, m), _segments64(k, m)
    return (
        torch.softmax(q @ kt.mT * scale, -1),
        torch.softmax(qt @ kt.mT * scale, -1),
        torch.softmax(qt @ k.mT * scale, -1),
    )


def _nystrom64(q, k, v, m, *, steps=6, scale=None):
    """The paper's F A^+ B V for n divisible by m; steps=None: the exact pinv."""
    f, a, b = _factors64(q, k, m, scale)
    pinv = torch.linalg.pinv(a) if steps is None else _pinv_steps64(a, steps)
    return f @ pinv @ b @ v.detach().double().cpu()


def _lin64(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = module.weight.detach().double().cpu()
    b = None if module.bias is None else module.bias.detach().double().cpu()
    return x @ w.T + (0 if b is None else b)


def _softmax_rows64(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over tokens (dim 0) of (tokens, heads); no tokens: an empty result."""
    if scores.shape[0] == 0:
        return scores
    w = torch.exp(scores - scores.max(0).values)
    return w / w.sum(0)


def _fastformer64(layer, x, mask=None):
    """Fastformer's equations over the real tokens of each sequence, in float64;
    zeros at padded positions."""
    x = x.detach().double().cpu()
    batch, seq, dim = x.shape
    mask = torch.ones(batch, seq, dtype=torch.bool) if mask is None else mask.cpu()
    heads, dh = layer.heads, layer.head_dim
    out = torch.zeros(batch, seq, dim, dtype=torch.float64)
    for b in range(batch):
        xs = x[b][mask[b]]  # (L, dim)
        if xs.shape[0] == 0:
            continue
        q, k = _lin64(layer.query, xs), _lin64(layer.key, xs)
        alpha = _softmax_rows64(_lin64(layer.query_score, q) / math.sqrt(dh))
        q_bar = (alpha[:, :, None] * q.view(-1, heads, dh)).sum(0)  # (heads, dh)
        p = k.view(-1, heads, dh) * q_bar
        beta = _softmax_rows64(
            _lin64(layer.key_score, p.reshape(-1, dim)) / math.sqrt(dh)
        )
        k_bar = (beta[:, :, None] * p).sum(0)
        v = q if layer.value is None else _lin64(layer.value, xs)
        u = (k_bar * v.view(-1, heads, dh)).reshape(-1, dim)
        res = _lin64(layer.transform, u) + (q if layer.query_residual else 0)
        out[b, mask[b]] = res
    return out


def _ln64(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    w, b = (t.detach().double().cpu() for t in (norm.weight, norm.bias))
    return (x - mean) / torch.sqrt(var + norm.eps) * w + b


def _block64(block, x, mask=None):
    x64 = x.detach().double().cpu()
    mask = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask.cpu()
    attn = _fastformer64(block.attention, x64, mask)
    h = _ln64(block.attention_norm, x64 + _lin64(block.attention_out, attn))
    ffn = _lin64(block.ffn[2], F.gelu(_lin64(block.ffn[0], h)))
    out = _ln64(block.ffn_norm, h + ffn)
    return torch.where(mask[..., None], out, torch.zeros(()))


def _mha64(mha, x):
    """Softmax self-attention with mha's packed weights, from the definition."""
    x = x.detach().double().cpu()
    batch, n, width = x.shape
    heads = mha.num_heads
    qkv = x @ mha.in_proj_weight.detach().double().cpu().T
    qkv = qkv + mha.in_proj_bias.detach().double().cpu()
    q, k, v = (t.view(batch, n, heads, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
    out = softmax_attention64(q, k, v).transpose(1, 2).reshape(batch, n, width)
    return _lin64(mha.out_proj, out)


# ---------------------------------------------------------------------------- the cases
CASES = Registry(P)
case = CASES.case


def _well_conditioned(*batch, n=5, device, dtype=torch.float64, spread=1.0):
    eye = torch.eye(n, dtype=torch.float64)
    a = spread * (
        eye + 0.1 * torch.randn(*batch, n, n, dtype=torch.float64, generator=_g(4))
    )
    return a.to(device, dtype)


# ------------------------------------------------------------------------- iterative_pinv
@case("iterative_pinv", "a batch of well-conditioned matrices: torch's pinv", "value")
def _(device):
    a = _well_conditioned(3, device=device)
    close(ka.iterative_pinv(a, iterations=12), torch.linalg.pinv(a.cpu()), atol=1e-14)


@case("iterative_pinv", "rectangular full rank 4x6: the pseudo-inverse", "value")
def _(device):
    a = torch.randn(4, 6, dtype=torch.float64, generator=_g(5)).to(device)
    close(ka.iterative_pinv(a, iterations=40), torch.linalg.pinv(a.cpu()), atol=1e-13)


@case("iterative_pinv", "zero iterations: Z0 = A^T / (|A|_1 |A|_inf)", "value")
def _(device):
    a = _well_conditioned(2, device=device)
    close(ka.iterative_pinv(a, iterations=0), _pinv_steps64(a, 0), atol=1e-15)


@case("iterative_pinv", "the zero matrix: zeros, not NaN", "finite")
def _(device):
    out = ka.iterative_pinv(torch.zeros(2, 3, 4, device=device), iterations=6)
    close(out, torch.zeros(2, 4, 3), atol=0)


@case("iterative_pinv", "a not a tensor: TypeError naming a", "error")
def _(device):
    expect_error(TypeError, r"\ba\b", lambda: ka.iterative_pinv([[1.0]]))


@case("iterative_pinv", "int, bool, complex a: TypeError naming a", "error")
def _(device):
    for dtype in (torch.int64, torch.bool, torch.complex64):
        a = torch.ones(3, 3, device=device).to(dtype)
        expect_error(TypeError, r"\ba\b", lambda a=a: ka.iterative_pinv(a))


@case("iterative_pinv", "a of rank 1: ValueError naming a", "error")
def _(device):
    expect_error(
        ValueError, r"\ba\b", lambda: ka.iterative_pinv(torch.ones(3, device=device))
    )


@case("iterative_pinv", "iterations 2.5 / True: TypeError, -1: ValueError", "error")
def _(device):
    a = torch.eye(3, device=device)
    for bad in (2.5, True, "6"):
        expect_error(
            TypeError, "iterations", lambda b=bad: ka.iterative_pinv(a, iterations=b)
        )
    expect_error(ValueError, "iterations", lambda: ka.iterative_pinv(a, iterations=-1))


@case("iterative_pinv", "empty batch, 0 rows, 0 columns: empty (..., n, m)", "empty")
def _(device):
    for shape, want in (
        ((0, 3, 3), (0, 3, 3)),
        ((2, 0, 3), (2, 3, 0)),
        ((3, 0), (0, 3)),
    ):
        out = ka.iterative_pinv(torch.ones(shape, device=device), iterations=3)
        assert out.shape == want, (shape, out.shape)


@case("iterative_pinv", "1x1 matrix: 1/a", "value")
def _(device):
    a = torch.tensor([[4.0]], dtype=torch.float64, device=device)
    close(ka.iterative_pinv(a), torch.tensor([[0.25]], dtype=torch.float64), atol=1e-15)


def _pinv_half(dtype):
    @case(
        "iterative_pinv",
        f"{dtype} at magnitude 500: float32 inside, {dtype} out",
        "value",
    )
    def _(device):
        a = _well_conditioned(2, device=device, dtype=dtype, spread=500.0)
        out = ka.iterative_pinv(a, iterations=8)
        assert out.dtype == dtype
        ref = torch.linalg.pinv(a.double().cpu())
        near(out, ref, 2)


for _dt in HALF:
    _pinv_half(_dt)


@case("iterative_pinv", "gradcheck through three steps (float64)", "grad")
def _(device):
    a = _well_conditioned(n=3, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ka.iterative_pinv(t, iterations=3), (a,))


@case("iterative_pinv", "transposed and odd-offset views: as contiguous", "device")
def _(device):
    a = _well_conditioned(2, device=device)
    want = ka.iterative_pinv(a.contiguous(), iterations=6)
    close(ka.iterative_pinv(a.mT.contiguous().mT, iterations=6), want.cpu(), atol=1e-15)
    odd = odd_view(2, 5, 5, device=device, dtype=torch.float64)
    odd.copy_(a)
    close(ka.iterative_pinv(odd, iterations=6), want.cpu(), atol=1e-15)


@case("iterative_pinv", "meta a: a meta result of shape (..., n, m)", "device")
def _(device):
    out = ka.iterative_pinv(torch.empty(2, 3, 4, device=META))
    assert out.device == META and out.shape == (2, 4, 3)


# ------------------------------------------------------------------------ hyperpower_step
@case("hyperpower_step", "x = 1 - e maps to 1 - (3e^3 + e^4)/4", "value")
def _(device):
    e = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64)
    out = ka.hyperpower_step((1 - e).to(device))
    close(out, 1 - (3 * e**3 + e**4) / 4, atol=1e-14)


def _step_half(dtype):
    @case(
        "hyperpower_step", f"{dtype} on [-2, 12]: float32 inside, {dtype} out", "value"
    )
    def _(device):
        x = torch.linspace(-2, 12, 57, dtype=torch.float64)
        out = ka.hyperpower_step(x.to(device, dtype))
        assert out.dtype == dtype
        x = x.to(dtype).double()
        ref = 0.25 * (13 * x - 15 * x**2 + 7 * x**3 - x**4)
        near(out, ref, 2)


for _dt in HALF:
    _step_half(_dt)


@case("hyperpower_step", "not a tensor, int/bool/complex: TypeError naming x", "error")
def _(device):
    expect_error(TypeError, r"\bx\b", lambda: ka.hyperpower_step("0.5"))
    for dtype in (torch.int64, torch.bool, torch.complex64):
        x = torch.ones(3, device=device).to(dtype)
        expect_error(TypeError, r"\bx\b", lambda x=x: ka.hyperpower_step(x))


@case("hyperpower_step", "empty: empty", "empty")
def _(device):
    assert ka.hyperpower_step(torch.ones(0, 3, device=device)).shape == (0, 3)


@case("hyperpower_step", "derivative (13 - 30x + 21x^2 - 4x^3)/4", "grad")
def _(device):
    x = torch.linspace(0, 1, 11, dtype=torch.float64, device=device).requires_grad_()
    ka.hyperpower_step(x).sum().backward()
    x0 = x.detach().cpu()
    close(x.grad, (13 - 30 * x0 + 21 * x0**2 - 4 * x0**3) / 4, atol=1e-13)


@case("hyperpower_step", "meta and odd-offset x", "device")
def _(device):
    assert ka.hyperpower_step(torch.empty(4, device=META)).device == META
    x = odd_view(2, 3, device=device, dtype=torch.float64)
    close(ka.hyperpower_step(x), ka.hyperpower_step(x.clone()).cpu(), atol=0)


# ------------------------------------------------------------------------- filter_factors
@case("filter_factors", "rows x_k of the step map, from ratios", "value")
def _(device):
    r = torch.logspace(-6, 0, 13, dtype=torch.float64)
    out = ka.filter_factors(r.to(device), 4)
    ref, x = [r], r
    for _ in range(4):
        e = 1 - x
        x = 1 - (3 * e**3 + e**4) / 4
        ref.append(x)
    close(out, torch.stack(ref), atol=1e-14)


@case(
    "filter_factors",
    "steps 2.5 / True: TypeError; -1: ValueError; list ratios",
    "error",
)
def _(device):
    r = torch.rand(3, device=device)
    for bad in (2.5, True):
        expect_error(TypeError, "steps", lambda b=bad: ka.filter_factors(r, b))
    expect_error(ValueError, "steps", lambda: ka.filter_factors(r, -1))
    expect_error(TypeError, "ratios", lambda: ka.filter_factors([0.5], 2))
    expect_error(TypeError, "ratios", lambda: ka.filter_factors(r.long(), 2))


@case("filter_factors", "empty ratios and steps = 0", "empty")
def _(device):
    assert ka.filter_factors(torch.ones(0, device=device), 3).shape == (4, 0)
    r = torch.rand(2, 3, device=device)
    out = ka.filter_factors(r, 0)
    assert out.shape == (1, 2, 3) and torch.equal(out[0], r)


def _filter_half(dtype):
    @case("filter_factors", f"{dtype}: float32 inside, {dtype} out", "value")
    def _(device):
        r = torch.logspace(-3, 0, 9, dtype=torch.float64)
        out = ka.filter_factors(r.to(device, dtype), 5)
        assert out.dtype == dtype
        x, ref = r.to(dtype).double(), [r.to(dtype).double()]
        for _ in range(5):
            x = 0.25 * x * (13 - x * (15 - x * (7 - x)))
            ref.append(x)
        near(out, torch.stack(ref), 2)


for _dt in HALF:
    _filter_half(_dt)


@case("filter_factors", "meta ratios: meta (steps + 1, ...)", "device")
def _(device):
    out = ka.filter_factors(torch.empty(5, device=META), 2)
    assert out.device == META and out.shape == (3, 5)


# ------------------------------------------------------------------------- pinv_residuals
@case("pinv_residuals", "||I - A Z_k||_2 measured in float64", "value")
def _(device):
    a = torch.softmax(torch.randn(2, 4, 4, dtype=torch.float64, generator=_g(6)), -1)
    out = ka.pinv_residuals(a.to(device), 5)
    ref = torch.stack(
        [
            torch.linalg.matrix_norm(torch.eye(4) - a @ _pinv_steps64(a, s), 2)
            for s in range(6)
        ]
    )
    close(out, ref, atol=1e-14)


@case("pinv_residuals", "non-square, rank 1, int, list a; steps 2.5", "error")
def _(device):
    expect_error(
        ValueError,
        r"\ba\b",
        lambda: ka.pinv_residuals(torch.ones(2, 3, device=device), 2),
    )
    expect_error(
        ValueError, r"\ba\b", lambda: ka.pinv_residuals(torch.ones(3, device=device), 2)
    )
    expect_error(
        TypeError,
        r"\ba\b",
        lambda: ka.pinv_residuals(torch.ones(3, 3, dtype=torch.long), 2),
    )
    expect_error(TypeError, r"\ba\b", lambda: ka.pinv_residuals([[1.0]], 2))
    expect_error(
        TypeError, "steps", lambda: ka.pinv_residuals(torch.eye(3, device=device), 2.5)
    )


@case("pinv_residuals", "empty batch: (steps + 1, 0)", "empty")
def _(device):
    assert ka.pinv_residuals(torch.ones(0, 3, 3, device=device), 2).shape == (3, 0)


def _residuals_half(dtype):
    @case(
        "pinv_residuals",
        f"{dtype} at magnitude 300: float32 inside, {dtype} out",
        "value",
    )
    def _(device):
        a = _well_conditioned(2, n=4, device=device, dtype=dtype, spread=300.0)
        out = ka.pinv_residuals(a, 3)
        assert out.dtype == dtype
        a64 = a.double().cpu()
        ref = torch.stack(
            [
                torch.linalg.matrix_norm(torch.eye(4) - a64 @ _pinv_steps64(a64, s), 2)
                for s in range(4)
            ]
        )
        near(out, ref, 2)


for _dt in HALF:
    _residuals_half(_dt)


@case("pinv_residuals", "meta a: meta result or a named error", "device")
def _(device):
    try:
        out = ka.pinv_residuals(torch.empty(2, 3, 3, device=META), 2)
    except (TypeError, ValueError) as error:
        assert "meta" in str(error)
    else:
        assert out.device == META and out.shape == (3, 2)


# --------------------------------------------------------------- predicted_pinv_residuals
@case("predicted_pinv_residuals", "f^(k)(1 - sigma_min^2 / s) in float64", "value")
def _(device):
    a = torch.softmax(torch.randn(3, 4, 4, dtype=torch.float64, generator=_g(7)), -1)
    out = ka.predicted_pinv_residuals(a.to(device), 4)
    s = a.abs().sum(-2).amax(-1) * a.abs().sum(-1).amax(-1)
    e = 1 - torch.linalg.svdvals(a)[..., -1] ** 2 / s
    ref = [e]
    for _ in range(4):
        ref.append((3 * ref[-1] ** 3 + ref[-1] ** 4) / 4)
    close(out, torch.stack(ref), atol=1e-14)


@case(
    "predicted_pinv_residuals", "a singular matrix: residual 1 at every step", "finite"
)
def _(device):
    a = torch.ones(3, 3, dtype=torch.float64, device=device)
    close(
        ka.predicted_pinv_residuals(a, 3),
        torch.ones(4, dtype=torch.float64),
        atol=1e-12,
    )
    close(
        ka.predicted_pinv_residuals(torch.zeros(3, 3, device=device), 2),
        torch.ones(3),
        atol=0,
    )


@case("predicted_pinv_residuals", "non-square, int, list a; steps 2.5", "error")
def _(device):
    f = ka.predicted_pinv_residuals
    expect_error(ValueError, r"\ba\b", lambda: f(torch.ones(2, 3, device=device), 2))
    expect_error(TypeError, r"\ba\b", lambda: f(torch.ones(3, 3, dtype=torch.long), 2))
    expect_error(TypeError, r"\ba\b", lambda: f([[1.0]], 2))
    expect_error(TypeError, "steps", lambda: f(torch.eye(3, device=device), 2.5))
    expect_error(ValueError, "steps", lambda: f(torch.eye(3, device=device), -2))


@case("predicted_pinv_residuals", "empty batch: (steps + 1, 0)", "empty")
def _(device):
    assert ka.predicted_pinv_residuals(torch.ones(0, 3, 3, device=device), 2).shape == (
        3,
        0,
    )


def _predicted_half(dtype):
    @case("predicted_pinv_residuals", f"{dtype} at magnitude 300: {dtype} out", "value")
    def _(device):
        a = _well_conditioned(2, n=4, device=device, dtype=dtype, spread=300.0)
        out = ka.predicted_pinv_residuals(a, 3)
        assert out.dtype == dtype
        a64 = a.double().cpu()
        s = a64.abs().sum(-2).amax(-1) * a64.abs().sum(-1).amax(-1)
        ref = [1 - torch.linalg.svdvals(a64)[..., -1] ** 2 / s]
        for _ in range(3):
            ref.append((3 * ref[-1] ** 3 + ref[-1] ** 4) / 4)
        near(out, torch.stack(ref), 2)


for _dt in HALF:
    _predicted_half(_dt)


@case("predicted_pinv_residuals", "meta a: meta result or a named error", "device")
def _(device):
    try:
        out = ka.predicted_pinv_residuals(torch.empty(2, 3, 3, device=META), 2)
    except (TypeError, ValueError) as error:
        assert "meta" in str(error)
    else:
        assert out.device == META and out.shape == (3, 2)


# --------------------------------------------------------------------- steps_to_tolerance
@case(
    "steps_to_tolerance", "the least k with e0^(3^k) <= tolerance", "value", cuda=False
)
def _(device):
    for e0, tol in ((0.9, 1e-12), (0.5, 1e-3), (1 - 1 / 40**2, 1e-12), (1e-20, 1e-12)):
        k = 0
        while e0 ** (3**k) > tol:
            k += 1
        assert ka.steps_to_tolerance(e0, tol) == k, (e0, tol)


@case("steps_to_tolerance", "e0 within 1e-15 of 1: a finite count", "bound", cuda=False)
def _(device):
    k = ka.steps_to_tolerance(1 - 1e-15, 1e-12)
    assert isinstance(k, int) and 30 < k < 40


@case(
    "steps_to_tolerance",
    "e0/tolerance str, bool: TypeError; nan, 1, 2: ValueError",
    "error",
    cuda=False,
)
def _(device):
    f = ka.steps_to_tolerance
    expect_error(TypeError, "e0", lambda: f("0.5"))
    expect_error(TypeError, "e0", lambda: f(True))
    expect_error(TypeError, "tolerance", lambda: f(0.5, "1e-3"))
    expect_error(ValueError, "e0", lambda: f(float("nan")))
    expect_error(ValueError, "e0", lambda: f(1.0))
    expect_error(ValueError, "e0", lambda: f(0.0))
    expect_error(ValueError, "tolerance", lambda: f(0.5, 2.0))
    expect_error(ValueError, "tolerance", lambda: f(0.5, float("nan")))


# ------------------------------------------------------------------------ smooth_sequence
def _smooth64(n, d, modes, seed, draw_dtype=torch.float64):
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    c = torch.randn(2 * modes, d, dtype=draw_dtype, generator=_g(seed)).double()
    out = torch.zeros(n, d, dtype=torch.float64)
    for j in range(1, modes + 1):
        out += torch.cos(2 * math.pi * j * t)[:, None] * c[j - 1]
        out += torch.sin(2 * math.pi * j * t)[:, None] * c[modes + j - 1]
    return out[None, None]


@case("smooth_sequence", "harmonics with the generator's coefficients, closed", "value")
def _(device):
    out = ka.smooth_sequence(17, 3, modes=2, generator=_g(8), device=device)
    close(out, _smooth64(17, 3, 2, 8), atol=1e-14)


def _smooth_half(dtype):
    @case("smooth_sequence", f"dtype {dtype}: the float32 draw, rounded", "value")
    def _(device):
        out = ka.smooth_sequence(9, 4, generator=_g(9), dtype=dtype, device=device)
        assert out.dtype == dtype
        near(out, _smooth64(9, 4, 3, 9, torch.float32), 2)


for _dt in HALF:
    _smooth_half(_dt)


@case("smooth_sequence", "n 2.5, n 1, d 0, modes 0, int dtype, bad generator", "error")
def _(device):
    f = ka.smooth_sequence
    expect_error(TypeError, r"\bn\b", lambda: f(2.5, 3))
    expect_error(ValueError, r"\bn\b", lambda: f(1, 3))
    expect_error(ValueError, r"\bd\b", lambda: f(4, 0))
    expect_error(TypeError, r"\bd\b", lambda: f(4, 3.0))
    expect_error(ValueError, "modes", lambda: f(4, 3, modes=0))
    expect_error(TypeError, "dtype", lambda: f(4, 3, dtype=torch.int64))
    expect_error(TypeError, "dtype", lambda: f(4, 3, dtype=torch.complex64))
    expect_error(TypeError, "generator", lambda: f(4, 3, generator=3))


@case("smooth_sequence", "device meta: a meta (1, 1, n, d)", "device")
def _(device):
    out = ka.smooth_sequence(6, 2, device="meta")
    assert out.device == META and out.shape == (1, 1, 6, 2)


# ------------------------------------------------------------------------- local_sequence
@case("local_sequence", "Gram matrix beta * sum_w cos w (t_i - t_j)", "value")
def _(device):
    x = ka.local_sequence(12, 1.5, frequencies=3, device=device)[0, 0].cpu()
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    ref = sum(
        1.5 * torch.cos(2 * math.pi * j * (t[:, None] - t[None])) for j in (1, 2, 3)
    )
    close(x @ x.T, ref, atol=1e-13)


def _local_half(dtype):
    @case("local_sequence", f"dtype {dtype}, beta 1e4: {dtype} out, rounded", "value")
    def _(device):
        out = ka.local_sequence(9, 1e4, frequencies=2, dtype=dtype, device=device)
        assert out.dtype == dtype
        t = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
        w = 2 * math.pi * torch.arange(1, 3, dtype=torch.float64)
        ref = 100 * torch.cat([(t * w).cos(), (t * w).sin()], -1)
        near(out, ref[None, None], 2)


for _dt in HALF:
    _local_half(_dt)


@case("local_sequence", "n 2.5, beta str/nan/-1, frequencies 0, int dtype", "error")
def _(device):
    f = ka.local_sequence
    expect_error(TypeError, r"\bn\b", lambda: f(2.5, 1.0))
    expect_error(ValueError, r"\bn\b", lambda: f(1, 1.0))
    expect_error(TypeError, "beta", lambda: f(4, "1"))
    expect_error(ValueError, "beta", lambda: f(4, float("nan")))
    expect_error(ValueError, "beta", lambda: f(4, -1.0))
    expect_error(ValueError, "frequencies", lambda: f(4, 1.0, frequencies=0))
    expect_error(TypeError, "frequencies", lambda: f(4, 1.0, frequencies=2.5))
    expect_error(TypeError, "dtype", lambda: f(4, 1.0, dtype=torch.int32))


@case("local_sequence", "device meta: a meta (1, 1, n, 2F)", "device")
def _(device):
    out = ka.local_sequence(6, 1.0, frequencies=2, device="meta")
    assert out.device == META and out.shape == (1, 1, 6, 4)


# ---------------------------------------------------------------------- segment_landmarks
def _segment_means64(x, m, mask=None):
    """Loop: the r-th real token goes to segment floor(r min(m, L) / L)."""
    x = x.detach().double().cpu()
    b, h, n, d = x.shape
    mask = torch.ones(b, n, dtype=torch.bool) if mask is None else mask.cpu()
    out = torch.zeros(b, h, m, d, dtype=torch.float64)
    exists = torch.zeros(b, m, dtype=torch.bool)
    for i in range(b):
        real = mask[i].nonzero().flatten().tolist()
        length = len(real)
        groups = [[] for _ in range(m)]
        for r, pos in enumerate(real):
            groups[r * min(m, length) // length].append(pos)
        for s, g in enumerate(groups):
            if g:
                out[i, :, s] = x[i, :, g].mean(-2)
                exists[i, s] = True
    return out, exists


@case("segment_landmarks", "seq 10, m 4, no mask: balanced contiguous means", "value")
def _(device):
    x = _randn(2, 3, 10, 4, device=device)
    out, exists = ka.segment_landmarks(x, 4)
    ref, ref_exists = _segment_means64(x, 4)
    close(out, ref, atol=1e-14)
    assert torch.equal(exists.cpu(), ref_exists)


@case(
    "segment_landmarks", "scattered padding, one short row, one fully masked", "value"
)
def _(device):
    x = _randn(3, 2, 9, 3, device=device)
    mask = torch.rand(3, 9, generator=_g(10)) < 0.6
    mask[1] = False
    mask[1, 2] = True
    mask[2] = False
    mask = mask.to(device)
    out, exists = ka.segment_landmarks(x, 4, mask)
    ref, ref_exists = _segment_means64(x, 4, mask)
    close(out, ref, atol=1e-14)
    assert torch.equal(exists.cpu(), ref_exists)


@case(
    "segment_landmarks", "NaN and inf at padded tokens: landmarks unchanged", "finite"
)
def _(device):
    x = _randn(2, 2, 8, 3, device=device)
    mask = _mask([8, 5], 8, device)
    dirty = x.clone()
    dirty[1, 0, 5:] = float("nan")
    dirty[1, 1, 6:] = float("inf")
    close(
        ka.segment_landmarks(dirty, 3, mask)[0],
        _segment_means64(x, 3, mask)[0],
        atol=1e-14,
    )


@case("segment_landmarks", "x rank 3 / int; num_landmarks 2.5 / 0", "error")
def _(device):
    x = torch.randn(1, 2, 6, 3, device=device)
    f = ka.segment_landmarks
    expect_error(ValueError, r"\bx\b", lambda: f(x[0], 2))
    expect_error(TypeError, r"\bx\b", lambda: f(x.long(), 2))
    expect_error(TypeError, r"\bx\b", lambda: f(x.bool(), 2))
    expect_error(TypeError, "num_landmarks", lambda: f(x, 2.5))
    expect_error(ValueError, "num_landmarks", lambda: f(x, 0))


@case(
    "segment_landmarks",
    "int/float mask: TypeError; (b, 1, seq) mask: ValueError",
    "error",
)
def _(device):
    x = torch.randn(2, 2, 6, 3, device=device)
    f = ka.segment_landmarks
    expect_error(
        TypeError,
        "mask",
        lambda: f(x, 2, torch.ones(2, 6, dtype=torch.long, device=device)),
    )
    expect_error(TypeError, "mask", lambda: f(x, 2, torch.ones(2, 6, device=device)))
    expect_error(
        ValueError,
        "mask",
        lambda: f(x, 2, torch.ones(2, 1, 6, dtype=torch.bool, device=device)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: f(x, 2, torch.ones(1, 6, dtype=torch.bool, device=device)),
    )


@case(
    "segment_landmarks",
    "empty batch; empty sequence: zero landmarks, none exist",
    "empty",
)
def _(device):
    out, exists = ka.segment_landmarks(torch.ones(0, 2, 6, 3, device=device), 3)
    assert out.shape == (0, 2, 3, 3) and exists.shape == (0, 3)
    out, exists = ka.segment_landmarks(torch.ones(2, 2, 0, 3, device=device), 3)
    close(out, torch.zeros(2, 2, 3, 3), atol=0)
    assert exists.shape == (2, 3) and not exists.any()


def _landmarks_half(dtype):
    @case(
        "segment_landmarks",
        f"{dtype} tokens of 3e4: means in float32, {dtype} out",
        "value",
    )
    def _(device):
        x = (3e4 + 100 * _randn(1, 1, 12, 2, device=device)).to(dtype)
        out, _ = ka.segment_landmarks(x, 3)
        assert out.dtype == dtype
        near(out, _segment_means64(x, 3)[0], 2)


for _dt in HALF:
    _landmarks_half(_dt)


@case("segment_landmarks", "gradient: finite, zero at padded tokens", "grad")
def _(device):
    x = _randn(2, 1, 7, 3, device=device).requires_grad_()
    mask = _mask([7, 3], 7, device)
    ka.segment_landmarks(x, 3, mask)[0].sum().backward()
    finite(x.grad)
    assert (x.grad[1, :, 3:] == 0).all()


@case("segment_landmarks", "mask on meta: ValueError naming mask", "device")
def _(device):
    x = torch.randn(2, 1, 6, 3, device=device)
    m = torch.ones(2, 6, dtype=torch.bool, device=META)
    expect_error(ValueError, "mask", lambda: ka.segment_landmarks(x, 2, m))


@case("segment_landmarks", "odd-offset and transposed views; meta x", "device")
def _(device):
    x = odd_view(2, 3, 7, 4, device=device, dtype=torch.float64)
    close(ka.segment_landmarks(x, 3)[0], _segment_means64(x, 3)[0], atol=1e-14)
    y = _randn(2, 7, 3, 4, device=device).transpose(1, 2)
    close(ka.segment_landmarks(y, 3)[0], _segment_means64(y, 3)[0], atol=1e-14)
    out, exists = ka.segment_landmarks(torch.empty(2, 3, 7, 4, device=META), 3)
    assert out.device == META and out.shape == (2, 3, 3, 4) and exists.shape == (2, 3)


# ----------------------------------------------------------------------- kmeans_landmarks
def _lloyd64(x, m, iterations, seed):
    """Lloyd's algorithm by loops from the same random start as kmeans_landmarks."""
    x = x.detach().double().cpu()
    start = torch.randperm(x.shape[-2], generator=_g(seed))[:m].tolist()
    out = torch.zeros(*x.shape[:2], m, x.shape[-1], dtype=torch.float64)
    for b in range(x.shape[0]):
        for h in range(x.shape[1]):
            pts = x[b, h]
            centres = [pts[i].clone() for i in start]
            for _ in range(iterations):
                groups = [[] for _ in centres]
                for p in pts:
                    dist = [float(((p - c) ** 2).sum()) for c in centres]
                    groups[dist.index(min(dist))].append(p)
                centres = [
                    torch.stack(g).mean(0) if g else c
                    for g, c in zip(groups, centres, strict=True)
                ]
            out[b, h] = torch.stack(centres)
    return out


@case("kmeans_landmarks", "four Lloyd steps: a naive loop's centres", "value")
def _(device):
    x = _randn(1, 2, 16, 3, device=device)
    out = ka.kmeans_landmarks(x, 3, iterations=4, generator=_g(11))
    close(out, _lloyd64(x, 3, 4, 11), atol=1e-14)


def _kmeans_half(dtype):
    @case(
        "kmeans_landmarks",
        f"{dtype} points of size 300: float32 distances, {dtype} out",
        "value",
    )
    def _(device):
        centres = torch.tensor([[-300.0, 0.0], [300.0, 0.0], [0.0, 300.0]])
        x = (centres.repeat(4, 1) + _randn(12, 2, device="cpu", seed=12)).to(
            device, dtype
        )
        x = x[None, None]
        out = ka.kmeans_landmarks(x, 3, iterations=3, generator=_g(13))
        assert out.dtype == dtype
        near(out, _lloyd64(x, 3, 3, 13), 2)


for _dt in HALF:
    _kmeans_half(_dt)


@case(
    "kmeans_landmarks",
    "x rank 3 / int; num_landmarks 2.5 / > seq; iterations 2.5",
    "error",
)
def _(device):
    x = torch.randn(1, 1, 6, 2, device=device)
    f = ka.kmeans_landmarks
    expect_error(ValueError, r"\bx\b", lambda: f(x[0], 2))
    expect_error(TypeError, r"\bx\b", lambda: f(x.long(), 2))
    expect_error(TypeError, r"\bx\b", lambda: f([[1.0]], 2))
    expect_error(TypeError, "num_landmarks", lambda: f(x, 2.5))
    expect_error(ValueError, "num_landmarks", lambda: f(x, 7))
    expect_error(ValueError, "num_landmarks", lambda: f(x, 0))
    expect_error(TypeError, "iterations", lambda: f(x, 2, iterations=2.5))
    expect_error(ValueError, "iterations", lambda: f(x, 2, iterations=-1))
    expect_error(TypeError, "generator", lambda: f(x, 2, generator=1))


@case("kmeans_landmarks", "empty batch: (0, h, m, d)", "empty")
def _(device):
    assert ka.kmeans_landmarks(torch.ones(0, 2, 5, 3, device=device), 2).shape == (
        0,
        2,
        2,
        3,
    )


@case("kmeans_landmarks", "gradient to x through the means: finite", "grad")
def _(device):
    x = _randn(1, 1, 10, 2, device=device).requires_grad_()
    ka.kmeans_landmarks(x, 3, iterations=3, generator=_g(1)).sum().backward()
    finite(x.grad)


@case("kmeans_landmarks", "odd-offset view; meta x: meta or a named error", "device")
def _(device):
    x = odd_view(1, 2, 9, 3, device=device, dtype=torch.float64)
    close(
        ka.kmeans_landmarks(x, 3, iterations=2, generator=_g(2)),
        _lloyd64(x, 3, 2, 2),
        atol=1e-14,
    )
    try:
        out = ka.kmeans_landmarks(torch.empty(1, 2, 9, 3, device=META), 3)
    except (TypeError, ValueError) as error:
        assert "meta" in str(error)
    else:
        assert out.device == META and out.shape == (1, 2, 3, 3)


# ------------------------------------------------------------------------ nystrom_factors
@case("nystrom_factors", "seq 12, m 4: the paper's three softmax kernels", "value")
def _(device):
    q, k, _ = _qkv(2, 2, 12, 4, device=device)
    out = ka.nystrom_factors(q, k, num_landmarks=4)
    for got, ref in zip(out, _factors64(q, k, 4), strict=True):
        close(got, ref, atol=1e-14)


@case(
    "nystrom_factors",
    "trailing padding: real rows as the unpadded prefix, NaN there",
    "finite",
)
def _(device):
    q, k, _ = _qkv(1, 2, 10, 4, device=device)
    mask = _mask([8], 10, device)
    dq, dk = q.clone(), k.clone()
    dq[..., 8:, :], dk[..., 8:, :] = float("nan"), float("inf")
    f, a, b = ka.nystrom_factors(dq, dk, num_landmarks=4, mask=mask)
    rf, ra, rb = _factors64(q[..., :8, :], k[..., :8, :], 4)
    close(f[..., :8, :], rf, atol=1e-14)
    close(a, ra, atol=1e-14)
    close(b[..., :8], rb, atol=1e-14)
    close(b[..., 8:], torch.zeros(1, 2, 4, 2), atol=0)


@case("nystrom_factors", "a fully padded row: F = B = 0, A = I", "finite")
def _(device):
    q, k, _ = _qkv(2, 1, 6, 3, device=device)
    mask = _mask([6, 0], 6, device)
    f, a, b = ka.nystrom_factors(q, k, num_landmarks=2, mask=mask)
    finite(f, a, b)
    close(f[1], torch.zeros(1, 6, 2), atol=0)
    close(b[1], torch.zeros(1, 2, 6), atol=0)
    close(a[1], torch.eye(2)[None], atol=0)


@case(
    "nystrom_factors",
    "bad q rank/dtype, k shape, num_landmarks 2.5, scale, mask",
    "error",
)
def _(device):
    q, k, _ = _qkv(1, 2, 6, 4, device=device)
    f = ka.nystrom_factors
    expect_error(ValueError, r"\bq\b", lambda: f(q[0], k, num_landmarks=2))
    expect_error(TypeError, r"\bq\b", lambda: f(q.long(), k, num_landmarks=2))
    expect_error(ValueError, r"\bk\b", lambda: f(q, k[..., :5, :], num_landmarks=2))
    expect_error(TypeError, "num_landmarks", lambda: f(q, k, num_landmarks=2.5))
    expect_error(TypeError, "scale", lambda: f(q, k, num_landmarks=2, scale="1"))
    expect_error(
        ValueError, "scale", lambda: f(q, k, num_landmarks=2, scale=float("nan"))
    )
    expect_error(
        TypeError,
        "mask",
        lambda: f(q, k, num_landmarks=2, mask=torch.ones(1, 6, device=device)),
    )


def _factors_half(dtype):
    @case(
        "nystrom_factors",
        f"{dtype} logits near 400: float32 logits, {dtype} out",
        "value",
    )
    def _(device):
        q, k, _ = _qkv(1, 2, 8, 16, device=device, dtype=dtype)
        q[..., 0], k[..., 0] = 40.0, 40.0  # q.k = 1600 + O(4): a smooth softmax
        out = ka.nystrom_factors(q, k, num_landmarks=4)
        for got, ref in zip(out, _factors64(q, k, 4), strict=True):
            assert got.dtype == dtype
            near(got, ref, 2)


for _dt in HALF:
    _factors_half(_dt)


@case("nystrom_factors", "empty batch: empty kernels", "empty")
def _(device):
    q = torch.ones(0, 2, 6, 4, device=device)
    f, a, b = ka.nystrom_factors(q, q, num_landmarks=3)
    assert (
        f.shape == (0, 2, 6, 3) and a.shape == (0, 2, 3, 3) and b.shape == (0, 2, 3, 6)
    )


@case("nystrom_factors", "k on meta: ValueError naming k", "device")
def _(device):
    q, _, _ = _qkv(1, 1, 4, 2, device=device)
    expect_error(
        ValueError,
        r"\bk\b",
        lambda: ka.nystrom_factors(
            q, torch.empty(1, 1, 4, 2, device=META, dtype=q.dtype), num_landmarks=2
        ),
    )


# ---------------------------------------------------------------------- nystrom_attention
NA = "nystrom_attention"


@case(NA, "seq 12, m 4, exact pinv: the paper's F A^+ B V", "value")
def _(device):
    q, k, v = _qkv(2, 2, 12, 4, device=device, dv=3)
    out = ka.nystrom_attention(q, k, v, num_landmarks=4, pinv_iterations=None)
    close(out, _nystrom64(q, k, v, 4, steps=None), atol=1e-13)


@case(NA, "seq 12, m 4, six steps, scale 0.3: F Z_6 B V", "value")
def _(device):
    q, k, v = _qkv(1, 3, 12, 4, device=device)
    out = ka.nystrom_attention(q, k, v, num_landmarks=4, scale=0.3)
    close(out, _nystrom64(q, k, v, 4, scale=0.3), atol=1e-13)


@case(NA, "seq <= m: exact softmax attention", "value")
def _(device):
    q, k, v = _qkv(2, 2, 5, 4, device=device)
    close(
        ka.nystrom_attention(q, k, v, num_landmarks=8),
        softmax_attention64(q, k, v),
        atol=1e-14,
    )


@case(NA, "seq 1: the value itself", "value")
def _(device):
    q, k, v = _qkv(2, 2, 1, 4, device=device, dv=3)
    close(ka.nystrom_attention(q, k, v, num_landmarks=3), v.cpu(), atol=1e-15)


@case(NA, "scattered mask, <= m real tokens: exact attention over real keys", "value")
def _(device):
    q, k, v = _qkv(2, 1, 9, 4, device=device)
    mask = torch.tensor(
        [[1, 0, 1, 1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    out = ka.nystrom_attention(q, k, v, num_landmarks=6, mask=mask.to(device))
    ref = (
        softmax_attention64(q, k, v, keep=mask[:, None, None, :])
        * mask[:, None, :, None]
    )
    close(out, ref, atol=1e-14)


@case(NA, "trailing padding: real outputs as the prefix alone, zeros after", "value")
def _(device):
    q, k, v = _qkv(1, 2, 16, 4, device=device)
    mask = _mask([12], 16, device)
    out = ka.nystrom_attention(q, k, v, num_landmarks=4, mask=mask)
    ref = _nystrom64(q[..., :12, :], k[..., :12, :], v[..., :12, :], 4)
    close(out[..., :12, :], ref, atol=1e-13)
    close(out[..., 12:, :], torch.zeros(1, 2, 4, 4), atol=0)


@case(
    NA, "NaN/inf in padded q, k, v: real outputs unchanged, zeros at padding", "finite"
)
def _(device):
    q, k, v = _qkv(2, 2, 16, 4, device=device)
    mask = _mask([16, 12], 16, device)
    clean = ka.nystrom_attention(q, k, v, num_landmarks=4, mask=mask)
    dq, dk, dv = q.clone(), k.clone(), v.clone()
    dq[1, :, 12:], dk[1, :, 13:], dv[1, :, 12:] = (
        float("nan"),
        float("inf"),
        float("nan"),
    )
    weight = torch.randn(2, 3, dtype=q.dtype, device=device)
    dirty = ka.nystrom_attention(dq, dk, dv, num_landmarks=4, mask=mask)
    close(dirty, clean.cpu(), atol=1e-13)
    with_conv = ka.nystrom_attention(
        dq, dk, dv, num_landmarks=4, mask=mask, conv_weight=weight
    )
    finite(with_conv)


@case(NA, "a fully padded row (holding NaN): zeros, the others unchanged", "finite")
def _(device):
    q, k, v = _qkv(2, 1, 10, 4, device=device)
    mask = _mask([10, 0], 10, device)
    dq = q.clone()
    dq[1] = float("nan")
    out = ka.nystrom_attention(
        dq, k, v, num_landmarks=3, mask=mask, pinv_iterations=None
    )
    close(out[1], torch.zeros(1, 10, 4), atol=0)
    ref = ka.nystrom_attention(
        q[:1], k[:1], v[:1], num_landmarks=3, pinv_iterations=None
    )
    close(out[:1], ref.cpu(), atol=1e-13)


@case(NA, "q rank 3, int/bool/complex q, dtype mismatch, v length", "error")
def _(device):
    q, k, v = _qkv(1, 2, 6, 4, device=device)
    f = ka.nystrom_attention
    expect_error(ValueError, r"\bq\b", lambda: f(q[0], k[0], v[0], num_landmarks=2))
    for dtype in (torch.int64, torch.bool, torch.complex128):
        expect_error(
            TypeError, r"\bq\b", lambda d=dtype: f(q.to(d), k, v, num_landmarks=2)
        )
    expect_error(TypeError, r"\bk\b", lambda: f(q, k.float(), v, num_landmarks=2))
    expect_error(ValueError, r"\bv\b", lambda: f(q, k, v[..., :5, :], num_landmarks=2))
    expect_error(ValueError, r"\bk\b", lambda: f(q, k[..., :3], v, num_landmarks=2))


@case(NA, "num_landmarks 2.5/0, pinv_iterations 2.5/-1, scale str", "error")
def _(device):
    q, k, v = _qkv(1, 2, 6, 4, device=device)
    f = ka.nystrom_attention
    expect_error(TypeError, "num_landmarks", lambda: f(q, k, v, num_landmarks=2.5))
    expect_error(ValueError, "num_landmarks", lambda: f(q, k, v, num_landmarks=0))
    expect_error(
        TypeError,
        "pinv_iterations",
        lambda: f(q, k, v, num_landmarks=2, pinv_iterations=2.5),
    )
    expect_error(
        ValueError,
        "pinv_iterations",
        lambda: f(q, k, v, num_landmarks=2, pinv_iterations=-1),
    )
    expect_error(TypeError, "scale", lambda: f(q, k, v, num_landmarks=2, scale="0.5"))
    expect_error(
        ValueError, "scale", lambda: f(q, k, v, num_landmarks=2, scale=float("inf"))
    )


@case(NA, "int/float/wrong-shape mask, bad conv_weight: named errors", "error")
def _(device):
    q, k, v = _qkv(1, 2, 6, 4, device=device)
    f = ka.nystrom_attention
    for bad in (torch.ones(1, 6, dtype=torch.long), torch.zeros(1, 6)):
        expect_error(
            TypeError,
            "mask",
            lambda b=bad: f(q, k, v, num_landmarks=2, mask=b.to(device)),
        )
    for shape in ((1, 1, 6), (6,), (1, 5)):
        m = torch.ones(shape, dtype=torch.bool, device=device)
        expect_error(
            ValueError, "mask", lambda m=m: f(q, k, v, num_landmarks=2, mask=m)
        )
    for shape in ((2, 4), (3, 3), (2, 3, 1)):
        w = torch.ones(shape, dtype=q.dtype, device=device)
        expect_error(
            ValueError,
            "conv_weight",
            lambda w=w: f(q, k, v, num_landmarks=2, conv_weight=w),
        )
    w = torch.ones(2, 3, dtype=torch.long, device=device)
    expect_error(
        TypeError, "conv_weight", lambda: f(q, k, v, num_landmarks=2, conv_weight=w)
    )


@case(
    NA, "empty batch, heads, sequence, value width: empty of the right shape", "empty"
)
def _(device):
    for b, h, n, dv in ((0, 2, 6, 4), (1, 0, 6, 4), (2, 2, 0, 4), (1, 2, 6, 0)):
        q, k, v = _qkv(b, h, n, 4, device=device, dv=dv)
        mask = torch.ones(b, n, dtype=torch.bool, device=device)
        w = torch.ones(h, 3, dtype=q.dtype, device=device)
        out = ka.nystrom_attention(q, k, v, num_landmarks=3, mask=mask, conv_weight=w)
        assert out.shape == (b, h, n, dv), (b, h, n, dv, out.shape)


def _nystrom_half(dtype):
    @case(NA, f"{dtype} q, k of size 20, seq 16: float32 inside, {dtype} out", "value")
    def _(device):
        q, k, v = _qkv(1, 2, 16, 8, device=device, dtype=dtype, spread=20.0)
        out = ka.nystrom_attention(q, k, v, num_landmarks=4)
        assert out.dtype == dtype
        ref = _nystrom64(q, k, v, 4)
        near(out, ref, 1)

    @case(NA, f"{dtype} q, k of size 30, seq <= m: exact attention", "value")
    def _(device):
        q, k, v = _qkv(2, 2, 6, 8, device=device, dtype=dtype, spread=30.0)
        out = ka.nystrom_attention(q, k, v, num_landmarks=8)
        near(out, softmax_attention64(q, k, v), 1)


for _dt in HALF:
    _nystrom_half(_dt)


@case(NA, "gradients: finite; zero at padded and fully padded tokens", "grad")
def _(device):
    q, k, v = (t.requires_grad_() for t in _qkv(3, 2, 12, 4, device=device))
    mask = _mask([12, 7, 0], 12, device)
    w = torch.randn(2, 3, dtype=q.dtype, device=device, requires_grad=True)
    out = ka.nystrom_attention(q, k, v, num_landmarks=4, mask=mask, conv_weight=w)
    out.square().sum().backward()
    for t in (q, k, v, w):
        finite(t.grad)
    for t in (q, k, v):
        assert (t.grad[1, :, 7:] == 0).all() and (t.grad[2] == 0).all()


@case(NA, "gradcheck, seq 8, m 3, six steps, conv (float64)", "grad", cuda=False)
def _(device):
    q, k, v = (t.requires_grad_() for t in _qkv(1, 1, 8, 2, device=device))
    w = torch.randn(1, 3, dtype=torch.float64, device=device, requires_grad=True)
    mask = _mask([7], 8, device)

    def fn(*t):
        return ka.nystrom_attention(
            *t[:3], num_landmarks=3, mask=mask, conv_weight=t[3]
        )

    assert torch.autograd.gradcheck(fn, (q, k, v, w))


@case(NA, "k, v, mask, conv_weight on meta: ValueError naming it", "device")
def _(device):
    q, k, v = _qkv(1, 2, 6, 4, device=device)
    f = ka.nystrom_attention
    meta = lambda t: torch.empty_like(t, device=META)  # noqa: E731
    expect_error(ValueError, r"\bk\b", lambda: f(q, meta(k), v, num_landmarks=2))
    expect_error(ValueError, r"\bv\b", lambda: f(q, k, meta(v), num_landmarks=2))
    mask = torch.ones(1, 6, dtype=torch.bool, device=META)
    expect_error(ValueError, "mask", lambda: f(q, k, v, num_landmarks=2, mask=mask))
    w = torch.ones(2, 3, dtype=q.dtype, device=META)
    expect_error(
        ValueError, "conv_weight", lambda: f(q, k, v, num_landmarks=2, conv_weight=w)
    )


@case(NA, "all on meta: a meta (b, h, seq, dv)", "device")
def _(device):
    q = torch.empty(2, 2, 9, 4, device=META)
    v = torch.empty(2, 2, 9, 3, device=META)
    mask = torch.empty(2, 9, dtype=torch.bool, device=META)
    out = ka.nystrom_attention(
        q, q, v, num_landmarks=3, mask=mask, conv_weight=torch.empty(2, 3, device=META)
    )
    assert out.device == META and out.shape == (2, 2, 9, 3)


@case(NA, "transposed (b, seq, h, d) views and odd offsets: as contiguous", "device")
def _(device):
    q, k, v = (
        _randn(2, 10, 3, 4, device=device, seed=s).transpose(1, 2) for s in (1, 2, 3)
    )
    want = ka.nystrom_attention(
        q.contiguous(), k.contiguous(), v.contiguous(), num_landmarks=4
    )
    close(ka.nystrom_attention(q, k, v, num_landmarks=4), want, atol=1e-14)
    odd = odd_view(2, 3, 10, 4, device=device, dtype=torch.float64)
    odd.copy_(q)
    close(ka.nystrom_attention(odd, k, v, num_landmarks=4), want, atol=1e-14)


# ----------------------------------------------------------------------- NystromAttention
def _nystrom_layer64(layer, x, mask=None):
    """The layer with seq <= num_landmarks (exact attention), from its weights."""
    x = x.detach().double().cpu()
    b, n, dim = x.shape
    h = layer.heads
    mask = torch.ones(b, n, dtype=torch.bool) if mask is None else mask.cpu()
    q, k, v = _lin64(layer.qkv, x).view(b, n, 3, h, dim // h).permute(2, 0, 3, 1, 4)
    v = v * mask[:, None, :, None]
    out = softmax_attention64(q, k, v, keep=mask[:, None, None, :])
    if layer.conv_weight is not None:
        w = layer.conv_weight.detach().double().cpu()
        size = w.shape[-1]
        padded = F.pad(v, (0, 0, size // 2, size // 2))
        for j in range(size):
            out = out + w[None, :, j, None, None] * padded[:, :, j : j + n]
    out = _lin64(layer.out, out.transpose(1, 2).reshape(b, n, dim))
    return out * mask[..., None]


@case(
    "NystromAttention",
    "seq <= m with conv: softmax attention + depthwise conv",
    "value",
)
def _(device):
    torch.manual_seed(0)
    layer = ka.NystromAttention(8, 2, num_landmarks=8, conv_kernel=3).to(
        device, torch.float64
    )
    x = _randn(2, 6, 8, device=device)
    mask = _mask([6, 4], 6, device)
    close(layer(x, mask), _nystrom_layer64(layer, x, mask), atol=1e-14)


@case(
    "NystromAttention",
    "NaN at padded x: real outputs unchanged; padded rows zero",
    "finite",
)
def _(device):
    torch.manual_seed(0)
    layer = ka.NystromAttention(8, 2, num_landmarks=2, conv_kernel=3).to(
        device, torch.float64
    )
    x = _randn(3, 9, 8, device=device)
    mask = _mask([9, 5, 0], 9, device)
    dirty = x.clone()
    dirty[~mask] = float("nan")
    out = layer(dirty, mask)
    close(out, layer(x, mask).cpu(), atol=1e-13)
    close(out[2], torch.zeros(9, 8), atol=0)


@case(
    "NystromAttention",
    "dim 8.0, heads 0, 10 % 4, num_landmarks 2.5, conv_kernel 4 / 3.0",
    "error",
)
def _(device):
    f = ka.NystromAttention
    expect_error(TypeError, "dim", lambda: f(8.0, 2))
    expect_error(ValueError, "heads", lambda: f(8, 0))
    expect_error(ValueError, "heads", lambda: f(10, 4))
    expect_error(TypeError, "num_landmarks", lambda: f(8, 2, num_landmarks=2.5))
    expect_error(TypeError, "pinv_iterations", lambda: f(8, 2, pinv_iterations=2.5))
    expect_error(ValueError, "conv_kernel", lambda: f(8, 2, conv_kernel=4))
    expect_error(TypeError, "conv_kernel", lambda: f(8, 2, conv_kernel=3.0))


@case("NystromAttention", "x rank 2, int x, wrong width; int/float mask", "error")
def _(device):
    layer = ka.NystromAttention(8, 2, num_landmarks=2).to(device)
    x = torch.randn(1, 5, 8, device=device)
    expect_error(ValueError, r"\bx\b", lambda: layer(x[0]))
    expect_error(TypeError, r"\bx\b", lambda: layer(x.long()))
    expect_error(ValueError, r"\bx\b", lambda: layer(x[..., :6]))
    expect_error(TypeError, "mask", lambda: layer(x, torch.ones(1, 5, device=device)))
    expect_error(
        TypeError,
        "mask",
        lambda: layer(x, torch.ones(1, 5, dtype=torch.int8, device=device)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: layer(x, torch.ones(1, 4, dtype=torch.bool, device=device)),
    )


@case("NystromAttention", "empty batch and empty sequence", "empty")
def _(device):
    layer = ka.NystromAttention(8, 2, num_landmarks=2, conv_kernel=3).to(device)
    for shape in ((0, 5, 8), (2, 0, 8)):
        x = torch.randn(shape, device=device)
        assert (
            layer(x, torch.ones(shape[:2], dtype=torch.bool, device=device)).shape
            == shape
        )


def _layer_half(dtype):
    @case(
        "NystromAttention",
        f"{dtype} layer and x of size 30: {dtype} out, close",
        "value",
    )
    def _(device):
        torch.manual_seed(0)
        layer = ka.NystromAttention(16, 2, num_landmarks=8, conv_kernel=3).to(
            device, dtype
        )
        x = _randn(2, 8, 16, device=device, dtype=dtype, spread=30.0)
        out = layer(x)
        assert out.dtype == dtype
        ref = _nystrom_layer64(layer, x)
        near(out, ref, 2)


for _dt in HALF:
    _layer_half(_dt)


@case("NystromAttention", "gradients: finite; zero at padded inputs", "grad")
def _(device):
    torch.manual_seed(0)
    layer = ka.NystromAttention(8, 2, num_landmarks=3, conv_kernel=3).to(device)
    x = torch.randn(3, 10, 8, device=device, requires_grad=True)
    mask = _mask([10, 6, 0], 10, device)
    layer(x, mask).square().sum().backward()
    finite(x.grad, *(p.grad for p in layer.parameters()))
    assert (x.grad[1, 6:] == 0).all() and (x.grad[2] == 0).all()


@case(
    "NystromAttention",
    "x or mask on meta: ValueError naming it; all meta: meta",
    "device",
)
def _(device):
    layer = ka.NystromAttention(8, 2, num_landmarks=2).to(device)
    x = torch.randn(1, 5, 8, device=device)
    expect_error(ValueError, r"\bx\b", lambda: layer(torch.empty(1, 5, 8, device=META)))
    expect_error(
        ValueError,
        "mask",
        lambda: layer(x, torch.ones(1, 5, dtype=torch.bool, device=META)),
    )
    meta_layer = ka.NystromAttention(8, 2, num_landmarks=2).to(META)
    out = meta_layer(torch.empty(1, 5, 8, device=META))
    assert out.device == META and out.shape == (1, 5, 8)


@case("NystromAttention", "odd-offset and transposed x: as contiguous", "device")
def _(device):
    torch.manual_seed(0)
    layer = ka.NystromAttention(8, 2, num_landmarks=3).to(device, torch.float64)
    x = odd_view(2, 7, 8, device=device, dtype=torch.float64)
    want = layer(x.clone())
    close(layer(x), want, atol=1e-14)
    close(layer(x.transpose(0, 1).contiguous().transpose(0, 1)), want, atol=1e-14)


# -------------------------------------------------------------------- FastformerAttention
FA = "FastformerAttention"


def _ff(dim=8, heads=2, device="cpu", dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return ka.FastformerAttention(dim, heads, **kw).to(device, dtype)


@case(FA, "padded batch: the equations over the real tokens, zeros at padding", "value")
def _(device):
    for kw in ({}, {"share_query_value": False, "query_residual": False}):
        layer = _ff(device=device, **kw)
        x = _randn(3, 7, 8, device=device)
        mask = _mask([7, 4, 1], 7, device)
        close(layer(x, mask), _fastformer64(layer, x, mask), atol=1e-14)


@case(FA, "return_weights: alpha, beta sum to 1 over real tokens, 0 elsewhere", "value")
def _(device):
    layer = _ff(device=device)
    mask = _mask([6, 2, 0], 6, device)
    _, alpha, beta = layer(_randn(3, 6, 8, device=device), mask, return_weights=True)
    sums = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)[:, None].expand(3, 2)
    close(alpha.sum(1), sums, atol=1e-14)
    close(beta.sum(1), sums, atol=1e-14)
    assert (alpha[~mask] == 0).all() and (beta[~mask] == 0).all()


@case(FA, "NaN/inf at padded tokens: real outputs unchanged", "finite")
def _(device):
    layer = _ff(device=device)
    x = _randn(2, 6, 8, device=device)
    mask = _mask([6, 3], 6, device)
    dirty = x.clone()
    dirty[1, 3], dirty[1, 4:] = float("nan"), float("inf")
    close(layer(dirty, mask), layer(x, mask).cpu(), atol=0)


@case(FA, "a fully padded row: zeros, no NaN", "finite")
def _(device):
    layer = _ff(device=device)
    x = _randn(2, 5, 8, device=device)
    out = layer(x, _mask([5, 0], 5, device))
    close(out[1], torch.zeros(5, 8), atol=0)


@case(FA, "dim 8.0, heads 0 / 2.5, 10 % 3, share_query_value 'yes'", "error")
def _(device):
    f = ka.FastformerAttention
    expect_error(TypeError, "dim", lambda: f(8.0, 2))
    expect_error(ValueError, "heads", lambda: f(8, 0))
    expect_error(TypeError, "heads", lambda: f(8, 2.5))
    expect_error(ValueError, "heads", lambda: f(10, 3))
    expect_error(
        TypeError, "share_query_value", lambda: f(8, 2, share_query_value="yes")
    )
    expect_error(TypeError, "query_residual", lambda: f(8, 2, query_residual=None))


@case(FA, "x rank 2, int/bool/complex x, wrong width; int/float mask, shape", "error")
def _(device):
    layer = _ff(device=device, dtype=torch.float32)
    x = torch.randn(2, 4, 8, device=device)
    expect_error(ValueError, r"\bx\b", lambda: layer(x[0]))
    for dtype in (torch.int64, torch.bool, torch.complex64):
        expect_error(TypeError, r"\bx\b", lambda d=dtype: layer(x.to(d)))
    expect_error(ValueError, r"\bx\b", lambda: layer(x[..., :6]))
    expect_error(TypeError, "mask", lambda: layer(x, torch.ones(2, 4, device=device)))
    expect_error(
        TypeError,
        "mask",
        lambda: layer(x, torch.ones(2, 4, dtype=torch.long, device=device)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: layer(x, torch.ones(2, 5, dtype=torch.bool, device=device)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: layer(x, torch.ones(4, dtype=torch.bool, device=device)),
    )


@case(FA, "empty batch and empty sequence", "empty")
def _(device):
    layer = _ff(device=device, dtype=torch.float32)
    for shape in ((0, 4, 8), (2, 0, 8)):
        x = torch.randn(shape, device=device)
        out, alpha, _ = layer(
            x,
            torch.ones(shape[:2], dtype=torch.bool, device=device),
            return_weights=True,
        )
        assert out.shape == shape and alpha.shape == (*shape[:2], 2)


@case(FA, "length one: out = W_T (k_bar * q) + q with alpha = beta = 1", "value")
def _(device):
    layer = _ff(device=device)
    x = _randn(2, 1, 8, device=device)
    close(layer(x), _fastformer64(layer, x), atol=1e-14)


def _ff_half(dtype):
    @case(FA, f"{dtype} layer, x of size 10: {dtype} out, close to float64", "value")
    def _(device):
        layer = _ff(16, 4, device=device, dtype=dtype)
        x = _randn(2, 9, 16, device=device, dtype=dtype, spread=10.0)
        mask = _mask([9, 5], 9, device)
        out = layer(x, mask)
        assert out.dtype == dtype
        near(out, _fastformer64(layer, x, mask), 3)


for _dt in HALF:
    _ff_half(_dt)


@case(FA, "gradients: finite, zero at padded tokens and fully padded rows", "grad")
def _(device):
    layer = _ff(device=device)
    x = _randn(3, 6, 8, device=device).requires_grad_()
    mask = _mask([6, 2, 0], 6, device)
    layer(x, mask).square().sum().backward()
    finite(x.grad, *(p.grad for p in layer.parameters()))
    assert (x.grad[~mask] == 0).all()


@case(FA, "x or mask on meta vs a CPU layer: ValueError; all meta: meta", "device")
def _(device):
    layer = _ff(device=device, dtype=torch.float32)
    x = torch.randn(1, 4, 8, device=device)
    expect_error(ValueError, r"\bx\b", lambda: layer(torch.empty(1, 4, 8, device=META)))
    expect_error(
        ValueError,
        "mask",
        lambda: layer(x, torch.ones(1, 4, dtype=torch.bool, device=META)),
    )
    out = _ff(device=META, dtype=torch.float32)(
        torch.empty(1, 4, 8, device=META),
        torch.empty(1, 4, dtype=torch.bool, device=META),
    )
    assert out.device == META and out.shape == (1, 4, 8)


@case(FA, "odd-offset and transposed x: as contiguous", "device")
def _(device):
    layer = _ff(device=device)
    x = odd_view(2, 5, 8, device=device, dtype=torch.float64)
    want = layer(x.clone())
    close(layer(x), want, atol=1e-14)  # measured: one unit in the last place
    close(layer(x.transpose(0, 1).contiguous().transpose(0, 1)), want, atol=1e-14)


# ------------------------------------------------------------------------ FastformerBlock
FB = "FastformerBlock"


def _fb(dim=8, heads=2, device="cpu", dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return ka.FastformerBlock(dim, heads, **kw).to(device, dtype).eval()


@case(FB, "post-LN block over real tokens, zeros at padding", "value")
def _(device):
    block = _fb(device=device, ffn_dim=12)
    x = _randn(2, 6, 8, device=device)
    mask = _mask([6, 3], 6, device)
    close(block(x, mask), _block64(block, x, mask), atol=1e-14)


@case(
    FB, "NaN at padded tokens and a fully padded row: real unchanged, zeros", "finite"
)
def _(device):
    block = _fb(device=device)
    x = _randn(3, 5, 8, device=device)
    mask = _mask([5, 2, 0], 5, device)
    dirty = x.clone()
    dirty[~mask] = float("nan")
    out = block(dirty, mask)
    close(out, block(x, mask).cpu(), atol=0)
    close(out[2], torch.zeros(5, 8), atol=0)


@case(FB, "ffn_dim 2.5/0, dropout 1/'0.1'/nan, dim 8.0, x, mask", "error")
def _(device):
    f = ka.FastformerBlock
    expect_error(TypeError, "ffn_dim", lambda: f(8, 2, ffn_dim=2.5))
    expect_error(ValueError, "ffn_dim", lambda: f(8, 2, ffn_dim=0))
    expect_error(ValueError, "dropout", lambda: f(8, 2, dropout=1.0))
    expect_error(TypeError, "dropout", lambda: f(8, 2, dropout="0.1"))
    expect_error(ValueError, "dropout", lambda: f(8, 2, dropout=float("nan")))
    expect_error(TypeError, "dim", lambda: f(8.0, 2))
    block = _fb(device=device, dtype=torch.float32)
    x = torch.randn(1, 3, 8, device=device)
    expect_error(ValueError, r"\bx\b", lambda: block(x[0]))
    expect_error(TypeError, r"\bx\b", lambda: block(x.long()))
    expect_error(TypeError, "mask", lambda: block(x, torch.ones(1, 3, device=device)))


@case(FB, "empty batch and empty sequence", "empty")
def _(device):
    block = _fb(device=device, dtype=torch.float32)
    for shape in ((0, 4, 8), (2, 0, 8)):
        assert block(torch.randn(shape, device=device)).shape == shape


def _fb_half(dtype):
    @case(FB, f"{dtype} block, x of size 10: {dtype} out, close", "value")
    def _(device):
        block = _fb(16, 4, device=device, dtype=dtype)
        x = _randn(2, 7, 16, device=device, dtype=dtype, spread=10.0)
        mask = _mask([7, 4], 7, device)
        out = block(x, mask)
        assert out.dtype == dtype
        near(out, _block64(block, x, mask), 4)


for _dt in HALF:
    _fb_half(_dt)


@case(FB, "gradients: finite, zero at padded tokens", "grad")
def _(device):
    block = _fb(device=device)
    x = _randn(2, 5, 8, device=device).requires_grad_()
    mask = _mask([5, 0], 5, device)
    block(x, mask).square().sum().backward()
    finite(x.grad)
    assert (x.grad[~mask] == 0).all()


@case(FB, "x or mask on meta: ValueError; odd-offset x", "device")
def _(device):
    block = _fb(device=device)
    x = odd_view(1, 4, 8, device=device, dtype=torch.float64)
    close(block(x), block(x.clone()).cpu(), atol=1e-14)
    expect_error(
        ValueError,
        r"\bx\b",
        lambda: block(torch.empty(1, 4, 8, device=META, dtype=x.dtype)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: block(x, torch.ones(1, 4, dtype=torch.bool, device=META)),
    )


# ------------------------------------------------------------- explicit_softmax_attention
ES = "explicit_softmax_attention"


def _mha(device, dtype=torch.float64, width=8, heads=2):
    torch.manual_seed(0)
    return torch.nn.MultiheadAttention(width, heads, batch_first=True).to(device, dtype)


@case(ES, "float64: softmax attention from mha's packed weights", "value")
def _(device):
    mha = _mha(device)
    x = _randn(2, 5, 8, device=device)
    close(ka.explicit_softmax_attention(mha, x), _mha64(mha, x), atol=1e-14)


def _es_half(dtype):
    @case(ES, f"{dtype} mha, x of size 30: float32 logits, {dtype} out", "value")
    def _(device):
        mha = _mha(device, dtype)
        x = _randn(2, 5, 8, device=device, dtype=dtype, spread=30.0)
        out = ka.explicit_softmax_attention(mha, x)
        assert out.dtype == dtype
        near(out, _mha64(mha, x), 1)


for _dt in HALF:
    _es_half(_dt)


@case(ES, "mha of the wrong type / not batch_first; x rank, dtype, width", "error")
def _(device):
    mha = _mha(device, torch.float32)
    x = torch.randn(1, 3, 8, device=device)
    f = ka.explicit_softmax_attention
    expect_error(TypeError, "mha", lambda: f(torch.nn.Linear(8, 8), x))
    expect_error(ValueError, "mha", lambda: f(torch.nn.MultiheadAttention(8, 2), x))
    expect_error(ValueError, r"\bx\b", lambda: f(mha, x[0]))
    expect_error(TypeError, r"\bx\b", lambda: f(mha, x.long()))
    expect_error(ValueError, r"\bx\b", lambda: f(mha, x[..., :6]))
    expect_error(TypeError, r"\bx\b", lambda: f(mha, x.double()))


@case(ES, "empty batch and empty sequence", "empty")
def _(device):
    mha = _mha(device, torch.float32)
    for shape in ((0, 3, 8), (2, 0, 8)):
        assert (
            ka.explicit_softmax_attention(mha, torch.randn(shape, device=device)).shape
            == shape
        )


@case(ES, "gradient: finite; odd-offset x", "grad")
def _(device):
    mha = _mha(device)
    x = odd_view(2, 4, 8, device=device, dtype=torch.float64).requires_grad_()
    ka.explicit_softmax_attention(mha, x).square().sum().backward()
    finite(x.grad)


@case(ES, "x on meta vs CPU mha: ValueError naming x; all meta: meta", "device")
def _(device):
    mha = _mha(device, torch.float32)
    f = ka.explicit_softmax_attention
    expect_error(
        ValueError, r"\bx\b", lambda: f(mha, torch.empty(1, 3, 8, device=META))
    )
    out = f(_mha(META, torch.float32), torch.empty(1, 3, 8, device=META))
    assert out.device == META and out.shape == (1, 3, 8)


# ------------------------------------------------------------------------- TokenRegressor
TR = "TokenRegressor"


@case(TR, "Fastformer kind: read_out(block(embed(x))) from the definitions", "value")
def _(device):
    torch.manual_seed(0)
    model = ka.TokenRegressor("Fastformer", 3, width=8).to(device, torch.float64).eval()
    x = _randn(2, 5, 3, device=device)
    hidden = _block64(model.block, _lin64(model.embed, x.cpu()))
    close(model(x), _lin64(model.read_out, hidden)[..., 0], atol=1e-14)


@case(TR, "kind 'x', features 2.5, width 30 or 2.0; x rank, width, dtype", "error")
def _(device):
    f = ka.TokenRegressor
    expect_error(ValueError, "kind", lambda: f("x", 3))
    expect_error(TypeError, "features", lambda: f("Fastformer", 2.5))
    expect_error(ValueError, "width", lambda: f("Fastformer", 3, width=30))
    expect_error(TypeError, "width", lambda: f("Fastformer", 3, width=2.0))
    model = f("Fastformer", 3, width=8).to(device)
    x = torch.randn(1, 4, 3, device=device)
    expect_error(ValueError, "features", lambda: model(x[0]))
    expect_error(ValueError, "features", lambda: model(x[..., :2]))
    expect_error(TypeError, "features", lambda: model(x.long()))


@case(TR, "both kinds: empty batch and empty sequence", "empty")
def _(device):
    for kind in ka.TokenRegressor.KINDS:
        model = ka.TokenRegressor(kind, 3, width=8).to(device).eval()
        for shape in ((0, 4, 3), (2, 0, 3)):
            assert model(torch.randn(shape, device=device)).shape == shape[:2], (
                kind,
                shape,
            )


@case(TR, "features on meta vs CPU model: ValueError naming features", "device")
def _(device):
    model = ka.TokenRegressor("Fastformer", 3, width=8).to(device)
    expect_error(
        ValueError, "features", lambda: model(torch.empty(1, 4, 3, device=META))
    )


@case(TR, "float16 Fastformer model, odd-offset x: finite, close to float64", "value")
def _(device):
    torch.manual_seed(0)
    model = ka.TokenRegressor("Fastformer", 3, width=8).to(device, torch.float16).eval()
    x = odd_view(2, 5, 3, device=device, dtype=torch.float16)
    out = model(x)
    assert out.dtype == torch.float16
    hidden = _block64(model.block, _lin64(model.embed, x.double().cpu()))
    near(out, _lin64(model.read_out, hidden)[..., 0], 6)


# --------------------------------------------------------------------- SequenceClassifier
SC = "SequenceClassifier"


def _sc(device, query_residual=True, init_std=0.02, dtype=torch.float64):
    torch.manual_seed(0)
    return ka.SequenceClassifier(
        query_residual, init_std, features=3, classes=4, width=8
    ).to(device, dtype)


@case(SC, "classify(masked mean of the block's real outputs)", "value")
def _(device):
    model = _sc(device)
    x = _randn(2, 6, 3, device=device)
    mask = _mask([6, 3], 6, device)
    hidden = _block64(model.block, _lin64(model.embed, x.cpu()), mask)
    mean = hidden.sum(1) / mask.sum(1, keepdim=True).cpu()
    close(model(x, mask), _lin64(model.classify, mean), atol=1e-14)


@case(SC, "NaN at padding, every kind of model: real logits unchanged", "finite")
def _(device):
    for qr, std in ((True, 0.02), (False, None), (None, None)):
        model = _sc(device, qr, std)
        x = _randn(2, 6, 3, device=device)
        mask = _mask([6, 3], 6, device)
        dirty = x.clone()
        dirty[~mask] = float("nan")
        close(model(dirty, mask), model(x, mask).cpu(), atol=0)


@case(SC, "a fully padded row: the classifier's bias, no NaN", "finite")
def _(device):
    for qr in (True, None):
        model = _sc(device, qr)
        out = model(_randn(2, 4, 3, device=device), _mask([4, 0], 4, device))
        close(out[1], model.classify.bias.detach().cpu(), atol=0)


@case(SC, "mask int/float/shape; query_residual 'x'; init_std -1; classes 0", "error")
def _(device):
    f = ka.SequenceClassifier
    expect_error(TypeError, "query_residual", lambda: f("x", None))
    expect_error(ValueError, "init_std", lambda: f(True, -1.0))
    expect_error(TypeError, "init_std", lambda: f(True, "0.02"))
    expect_error(ValueError, "classes", lambda: f(True, None, classes=0))
    expect_error(TypeError, "features", lambda: f(True, None, features=2.5))
    model = _sc(device, dtype=torch.float32)
    x = torch.randn(2, 4, 3, device=device)
    expect_error(TypeError, "mask", lambda: model(x, torch.ones(2, 4, device=device)))
    expect_error(
        TypeError,
        "mask",
        lambda: model(x, torch.ones(2, 4, dtype=torch.long, device=device)),
    )
    expect_error(
        ValueError,
        "mask",
        lambda: model(x, torch.ones(2, 3, dtype=torch.bool, device=device)),
    )
    expect_error(
        ValueError,
        "features",
        lambda: model(x[0], torch.ones(4, dtype=torch.bool, device=device)),
    )
    expect_error(TypeError, "mask", lambda: model(x, None))


@case(SC, "empty batch: (0, classes)", "empty")
def _(device):
    model = _sc(device, dtype=torch.float32)
    out = model(
        torch.randn(0, 4, 3, device=device),
        torch.ones(0, 4, dtype=torch.bool, device=device),
    )
    assert out.shape == (0, 4)


@case(SC, "gradients: finite, zero at padded features", "grad")
def _(device):
    model = _sc(device)
    x = _randn(3, 5, 3, device=device).requires_grad_()
    mask = _mask([5, 2, 0], 5, device)
    model(x, mask).square().sum().backward()
    finite(x.grad)
    assert (x.grad[~mask] == 0).all()


@case(SC, "mask or features on meta: ValueError naming it", "device")
def _(device):
    model = _sc(device, dtype=torch.float32)
    x = torch.randn(1, 4, 3, device=device)
    mask = torch.ones(1, 4, dtype=torch.bool, device=device)
    expect_error(ValueError, "mask", lambda: model(x, mask.to(META)))
    expect_error(ValueError, "features", lambda: model(x.to(META), mask))
