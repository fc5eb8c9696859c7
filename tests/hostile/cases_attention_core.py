"""Hostile inputs for softmax attention with the entropy-invariant scale
(``kexue.attention.entropy_scale``) and for linear attention and Performer
(``kexue.attention.linear``).

References are float64 and written from the definitions here, never by calling kexue.
"""

from __future__ import annotations

import math

import mpmath
import torch
from hostile import Case, close, expect_error, finite, odd_view, softmax_attention64

import kexue.attention as A

T = "kexue.attention."
F64 = torch.float64


def _qkv(*shape: int, device, dtype=torch.float32, scale: float = 1.0, dv=None):
    b, h, n, d = shape
    q = scale * torch.randn(b, h, n, d, device=device, dtype=F64)
    k = scale * torch.randn(b, h, n, d, device=device, dtype=F64)
    v = torch.randn(b, h, n, d if dv is None else dv, device=device, dtype=F64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


# ---------------------------------------------------------------- references


def _linear64(q, k, v, phi, *, causal=False, keep=None, eps=1e-6):
    """phi(q) phi(k)^T v / row sums, quadratic, float64; rows with no weight: 0."""
    q, k, v = (t.detach().double().cpu() for t in (q, k, v))
    w = phi(q) @ phi(k).mT
    if causal:
        w = w.tril()
    if keep is not None:
        w = w * keep.cpu().double().unsqueeze(-2)
    den = w.sum(-1, keepdim=True) + eps
    out = w @ v / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, out, torch.zeros_like(out))


def _exp_kernel64(q, k):
    """exp(q) . exp(k) summed over features, as exp(q_r + k_r): fine in float64."""
    q, k = q.detach().double().cpu(), k.detach().double().cpu()
    return torch.exp(q.unsqueeze(-2) + k.unsqueeze(-3)).sum(-1)


def _elu1(x):
    return torch.nn.functional.elu(x) + 1


def _favor64(x, w, *, is_query, eps=1e-4):
    """Performer features by the docstring's definition, float64."""
    x, w = x.detach().double().cpu(), w.detach().double().cpu()
    d, m = x.shape[-1], w.shape[0]
    xs = x * d**-0.25
    logits = xs @ w.T - xs.pow(2).sum(-1, keepdim=True) / 2
    dims = -1 if is_query else (-1, -2)
    return (torch.exp(logits - logits.amax(dim=dims, keepdim=True)) + eps) / m**0.5


def _performer64(q, k, v, w, *, causal=False, keep=None):
    phi_q = _favor64(q, w, is_query=True)
    kk = k.detach().double().cpu()
    if keep is not None:  # padded keys: out of the stabiliser and of the sums
        logits_k = kk * kk.shape[-1] ** -0.25
        logits_k = logits_k @ w.double().cpu().T - logits_k.pow(2).sum(-1, True) / 2
        kept = keep.cpu().unsqueeze(-1).expand_as(logits_k)
        top = logits_k.masked_fill(~kept, -torch.inf).amax((-1, -2), keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        phi_k = (torch.exp(logits_k - top) + 1e-4) / w.shape[0] ** 0.5
    else:
        phi_k = _favor64(k, w, is_query=False)
    return _linear64(phi_q, phi_k, v, lambda t: t, causal=causal, keep=keep, eps=0.0)


def _entropy64(p):
    p = p.detach().double().cpu()
    return -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)


# ---------------------------------------------------------------- scaled_attention
SA = T + "scaled_attention"


def sa_alibi_bias(device):
    q, k, v = _qkv(2, 2, 5, 8, device=device)
    slopes = torch.tensor([0.5, 0.25], device=device).view(1, 2, 1, 1)
    pos = torch.arange(5, device=device)
    bias = -slopes * (pos[None, :] - pos[:, None]).abs()  # (1, 2, 5, 5)
    close(
        A.scaled_attention(q, k, v, mask=bias),
        softmax_attention64(q, k, v, bias=bias),
        atol=2e-6,
    )


def sa_alibi_bias_entropy(device):
    q, k, v = _qkv(1, 1, 6, 4, device=device, dtype=F64)
    bias = torch.randn(6, 6, device=device, dtype=F64)
    bias[0, 3:] = -torch.inf
    got = A.scaled_attention(q, k, v, mask=bias, scale="entropy_invariant")
    counts = torch.tensor([3.0] + [6.0] * 5, dtype=F64)[:, None]
    row = torch.log(counts) / math.log(512) / 2
    ref = softmax_attention64(q * row.to(device), k, v, bias=bias, scale=1.0)
    close(got, ref, atol=1e-12)


def sa_int_mask(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    mask = torch.ones(3, 3, dtype=torch.int64, device=device)
    expect_error(TypeError, "mask", lambda: A.scaled_attention(q, k, v, mask=mask))


def sa_bool_mask_causal(device):
    q, k, v = _qkv(2, 1, 6, 4, device=device, dtype=F64)
    keep = torch.rand(2, 1, 6, 6, device=device) > 0.4
    got = A.scaled_attention(q, k, v, mask=keep, causal=True)
    allowed = keep & torch.ones(6, 6, dtype=torch.bool, device=device).tril()
    close(got, softmax_attention64(q, k, v, keep=allowed), atol=1e-12)


def sa_entropy_causal_rect(device):
    q, _k, _v = _qkv(1, 2, 4, 8, device=device, dtype=F64)
    k2 = torch.randn(1, 2, 7, 8, device=device, dtype=F64)
    v2 = torch.randn(1, 2, 7, 3, device=device, dtype=F64)
    got = A.scaled_attention(q, k2, v2, scale="entropy_invariant", causal=True)
    allowed = torch.ones(4, 7, dtype=torch.bool).tril()
    counts = allowed.sum(-1, keepdim=True).double()
    row = torch.log(counts) / math.log(512) / math.sqrt(8)
    ref = softmax_attention64(q.cpu() * row, k2, v2, keep=allowed, scale=1.0)
    close(got, ref, atol=1e-12)


def sa_numeric_scale(device):
    q, k, v = _qkv(1, 1, 5, 4, device=device, dtype=F64)
    close(
        A.scaled_attention(q, k, v, scale=0.3),
        softmax_attention64(q, k, v, scale=0.3),
        atol=1e-12,
    )


def sa_half(dtype, tol):
    def run(device):
        q = 12 * torch.randn(1, 2, 16, 64, device=device)
        k, v = q.clone(), torch.randn(1, 2, 16, 64, device=device)  # q.k ~ 9000
        q, k, v = (t.to(dtype) for t in (q, k, v))
        out = A.scaled_attention(q, k, v, scale=1.0 / 64)
        assert out.dtype == dtype
        close(out, softmax_attention64(q, k, v, scale=1.0 / 64), atol=tol)

    return run


def sa_fully_masked(device):
    q, k, v = _qkv(1, 1, 4, 4, device=device, dtype=F64)
    q.requires_grad_(True)
    keep = torch.ones(4, 4, dtype=torch.bool, device=device)
    keep[1] = False
    bias = torch.zeros(4, 4, dtype=F64, device=device)
    bias[2] = -torch.inf
    for scale in ("standard", "entropy_invariant"):
        for mask in (keep, bias):
            out = A.scaled_attention(q, k, v, mask=mask, scale=scale)
            allowed = mask if mask.dtype == torch.bool else mask > -torch.inf
            ref = softmax_attention64(q, k, v, keep=allowed)
            if scale == "standard":
                close(out, ref, atol=1e-12)
            (grad,) = torch.autograd.grad(out.sum(), q)
            finite(out, grad)
            row = 1 if mask.dtype == torch.bool else 2
            assert (out[0, 0, row] == 0).all() and (grad[0, 0, row] == 0).all()


def sa_left_padding_causal(device):
    q, k, v = _qkv(2, 1, 5, 4, device=device)
    keep = torch.tensor([[0, 0, 1, 1, 1], [1] * 5], dtype=torch.bool, device=device)
    keep = keep[:, None, None, :]
    out = A.scaled_attention(q, k, v, mask=keep, causal=True)
    allowed = keep & torch.ones(5, 5, dtype=torch.bool, device=device).tril()
    close(out, softmax_attention64(q, k, v, keep=allowed), atol=2e-6)
    assert (out[0, 0, :2] == 0).all()


def sa_nan_in_padding(device):
    q, k, v = _qkv(1, 1, 5, 4, device=device)
    keep = torch.tensor([1, 1, 1, 0, 0], dtype=torch.bool, device=device)
    k, v = k.clone(), v.clone()
    k[..., 3:, :], v[..., 4, :] = torch.nan, torch.inf
    out = A.scaled_attention(q, k, v, mask=keep)
    kr, vr = k.clone(), v.clone()
    kr[..., 3:, :], vr[..., 3:, :] = 0, 0
    close(out, softmax_attention64(q, kr, vr, keep=keep), atol=2e-6)


def sa_empty(device):
    q, k, v = _qkv(2, 1, 3, 4, device=device)
    e = torch.empty(2, 1, 0, 4, device=device)
    assert A.scaled_attention(e, k, v).shape == (2, 1, 0, 4)
    out = A.scaled_attention(q, e, e, scale="entropy_invariant")
    assert out.shape == (2, 1, 3, 4) and (out == 0).all()
    z = torch.empty(0, 1, 3, 4, device=device)
    assert A.scaled_attention(z, z, z, causal=True).shape == (0, 1, 3, 4)


def sa_length_one(device):
    q, k, v = _qkv(1, 1, 1, 4, device=device, dtype=F64)
    for scale in ("standard", "entropy_invariant"):
        close(A.scaled_attention(q, k, v, scale=scale, causal=True), v, atol=1e-15)


def sa_grad(device):
    q, k, v = _qkv(1, 1, 5, 4, device=device, dtype=F64)
    args = tuple(t.requires_grad_(True) for t in (q, k, v))
    bias = torch.randn(5, 5, dtype=F64, device=device)
    assert torch.autograd.gradcheck(
        lambda a, b, c: A.scaled_attention(
            a, b, c, mask=bias, scale="entropy_invariant", causal=True
        ),
        args,
    )


def sa_views(device):
    base = torch.randn(1, 1, 4, 6, 8, device=device)
    q, k, v = base[:, :, 0], base[:, :, 1].transpose(-1, -2).mT, base[:, :, 2, :, ::2]
    assert not v.is_contiguous()
    close(A.scaled_attention(q, k, v), softmax_attention64(q, k, v), atol=2e-6)
    o = odd_view(1, 1, 6, 8, device=device)
    close(A.scaled_attention(o, o, o), softmax_attention64(o, o, o), atol=2e-6)


def sa_meta(device):
    q = _meta(2, 3, 5, 8)
    m = torch.ones(5, 5, dtype=torch.bool, device="meta")
    for scale in ("standard", "entropy_invariant"):
        out = A.scaled_attention(q, q, q, mask=m, scale=scale, causal=True)
        assert out.is_meta and out.shape == (2, 3, 5, 8)


def sa_mixed_devices(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    expect_error(
        ValueError, r"\bk\b", lambda: A.scaled_attention(q, _meta(1, 1, 3, 4), v)
    )
    m = torch.ones(3, 3, dtype=torch.bool, device="meta")
    expect_error(ValueError, "mask", lambda: A.scaled_attention(q, k, v, mask=m))


def sa_errors(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    f = A.scaled_attention
    expect_error(TypeError, r"\bq\b", lambda: f(q.tolist(), k, v))
    expect_error(TypeError, r"\bq\b", lambda: f(q.long(), k, v))
    expect_error(TypeError, r"\bv\b", lambda: f(q, k, v.to(torch.complex64)))
    expect_error(TypeError, r"\bk\b", lambda: f(q, k.bool(), v))
    expect_error(ValueError, r"\bq\b", lambda: f(q[0], k, v))
    expect_error(ValueError, r"\bq\b.*\bk\b", lambda: f(q, k[..., :3], v))
    expect_error(ValueError, r"\bv\b", lambda: f(q, k, v[..., :2, :]))
    expect_error(ValueError, "mask", lambda: f(q, k, v, mask=torch.ones(4, 4) > 0))
    expect_error(TypeError, "mask", lambda: f(q, k, v, mask=[[True]]))
    expect_error(ValueError, "scale", lambda: f(q, k, v, scale="log"))
    expect_error(ValueError, "scale", lambda: f(q, k, v, scale=math.nan))
    expect_error(TypeError, "scale", lambda: f(q, k, v, scale=True))
    expect_error(ValueError, "train_length", lambda: f(q, k, v, train_length=1))
    expect_error(TypeError, "train_length", lambda: f(q, k, v, train_length=2.5))
    expect_error(ValueError, "min_length", lambda: f(q, k, v, min_length=0))
    expect_error(TypeError, "causal", lambda: f(q, k, v, causal="yes"))


# ---------------------------------------------------------------- visible_keys
VK = T + "visible_keys"


def vk_masks(device):
    keep = torch.tensor([True, False, True], device=device)
    got = A.visible_keys(3, 3, mask=keep, causal=True, device=device)
    ref = torch.tensor([[1, 0, 0], [1, 0, 0], [1, 0, 1]], dtype=torch.bool)
    assert got.dtype == torch.bool and torch.equal(got.cpu(), ref)
    alibi = -torch.arange(9.0, device=device).view(3, 3)  # finite: all visible
    assert A.visible_keys(3, 3, mask=alibi, device=device).all()
    drop = torch.zeros(2, 1, 3, device=device)
    drop[0, 0, 1] = -torch.inf
    got = A.visible_keys(2, 3, mask=drop, device=device)
    assert got.shape == (2, 2, 3) and got.sum().item() == 10


def vk_errors(device):
    f = A.visible_keys
    expect_error(
        TypeError, "mask", lambda: f(3, 3, mask=torch.ones(3, dtype=torch.int32))
    )
    expect_error(ValueError, "mask", lambda: f(3, 3, mask=torch.ones(4) > 0))
    expect_error(TypeError, "query_length", lambda: f(2.5, 3))
    expect_error(ValueError, "key_length", lambda: f(3, -1))
    expect_error(TypeError, "causal", lambda: f(3, 3, causal=None))
    m = torch.ones(3, dtype=torch.bool, device="meta")
    expect_error(ValueError, "mask", lambda: f(3, 3, mask=m, device=device))


def vk_empty_meta(device):
    assert A.visible_keys(0, 4, causal=True, device=device).shape == (0, 4)
    assert A.visible_keys(3, 0, device=device).shape == (3, 0)
    m = torch.ones(2, 1, 5, dtype=torch.bool, device="meta")
    out = A.visible_keys(4, 5, mask=m, causal=True)
    assert out.is_meta and out.shape == (2, 4, 5)


# ---------------------------------------------------------------- entropy_invariant_scale
EIS = T + "entropy_invariant_scale"


def eis_values(device):
    n = torch.tensor([0, 1, 2, 16, 512, 10**9], device=device)
    ref = torch.tensor(
        [0.0, 0.0] + [math.log(x) / math.log(512) / 8 for x in (2, 16, 512, 10**9)],
        dtype=F64,
    )
    got = A.entropy_invariant_scale(n, 64)
    assert got.dtype == torch.float32 and got.device == n.device
    close(got, ref, atol=1e-7)
    n64 = torch.tensor([3.0, 1e300], dtype=F64, device=device)
    got = A.entropy_invariant_scale(n64, 4, train_length=3, min_length=16)
    ref = torch.tensor([math.log(16), math.log(1e300)], dtype=F64) / math.log(3) / 2
    assert got.dtype == F64
    close(got, ref, atol=1e-15)
    close(A.entropy_invariant_scale(512, 64), torch.tensor(0.125, dtype=F64), atol=1e-8)


def eis_errors(device):
    f = A.entropy_invariant_scale
    expect_error(ValueError, "head_dim", lambda: f(10, 0))
    expect_error(TypeError, "head_dim", lambda: f(10, 2.5))
    expect_error(TypeError, "head_dim", lambda: f(10, True))
    expect_error(ValueError, "train_length", lambda: f(10, 8, train_length=1))
    expect_error(TypeError, "train_length", lambda: f(10, 8, train_length=64.0))
    expect_error(ValueError, "min_length", lambda: f(10, 8, min_length=0))
    expect_error(
        ValueError, r"\bn\b", lambda: f(torch.tensor([3, -1], device=device), 8)
    )
    expect_error(ValueError, r"\bn\b", lambda: f(math.nan, 8))
    expect_error(TypeError, r"\bn\b", lambda: f("10", 8))
    expect_error(TypeError, r"\bn\b", lambda: f(torch.ones(2, dtype=torch.bool), 8))
    expect_error(
        TypeError, r"\bn\b", lambda: f(torch.ones(2, dtype=torch.complex64), 8)
    )


def eis_empty_meta(device):
    out = A.entropy_invariant_scale(torch.empty(0, 3, device=device), 8)
    assert out.shape == (0, 3)
    out = A.entropy_invariant_scale(torch.empty(4, 1, device="meta"), 8)
    assert out.is_meta and out.shape == (4, 1)


# ---------------------------------------------------------------- attention_entropy
AE = T + "attention_entropy"


def ae_values(device):
    p = torch.softmax(torch.randn(3, 7, device=device, dtype=F64), -1)
    p[0] = torch.tensor([1.0, 0, 0, 0, 0, 0, 0])
    close(A.attention_entropy(p), _entropy64(p), atol=1e-14)
    close(A.attention_entropy(p.T, dim=0), _entropy64(p), atol=1e-14)


def ae_half(dtype, tol):
    def run(device):
        p = torch.full((2, 20000), 1 / 20000, device=device).to(dtype)
        got = A.attention_entropy(p)
        assert got.dtype == dtype
        close(got, _entropy64(p), atol=tol)

    return run


def ae_errors(device):
    f = A.attention_entropy
    expect_error(TypeError, "probs", lambda: f(torch.ones(3, dtype=torch.long)))
    expect_error(TypeError, "probs", lambda: f(torch.ones(3, dtype=torch.complex64)))
    expect_error(TypeError, "probs", lambda: f([0.5, 0.5]))
    expect_error(ValueError, "dim", lambda: f(torch.ones(3), dim=1))
    expect_error(TypeError, "dim", lambda: f(torch.ones(3), dim=0.5))


def ae_empty(device):
    assert A.attention_entropy(torch.empty(0, 5, device=device)).shape == (0,)
    out = A.attention_entropy(torch.empty(3, 0, device=device))
    assert out.shape == (3,) and (out == 0).all()
    m = A.attention_entropy(torch.empty(3, 4, device="meta"))
    assert m.is_meta and m.shape == (3,)


def ae_grad_view(device):
    logits = torch.randn(4, 7, device=device, dtype=F64, requires_grad=True)
    probs = torch.softmax(logits, -1)
    (g,) = torch.autograd.grad(A.attention_entropy(probs[:, ::2]).sum(), logits)
    finite(g)
    o = odd_view(3, 5, device=device).softmax(-1)
    close(A.attention_entropy(o), _entropy64(o), atol=1e-6)


# ---------------------------------------------------------------- entropy gaps
EG, LEG = T + "entropy_gap", T + "laplace_entropy_gap"


def eg_closed_form(device):
    for lam in (1e-6, 0.3, 2.5, 40.0):
        a = 3 * lam
        ref = mpmath.log(mpmath.sinh(a) / a) - a * mpmath.coth(a) + 1
        got = A.entropy_gap(lam, 3)
        assert math.isfinite(got) and abs(got - float(ref)) <= 1e-10 * max(1, abs(ref))


def gap_errors(target):
    f = A.entropy_gap if target == EG else A.laplace_entropy_gap

    def run(device):
        expect_error(ValueError, "head_dim", lambda: f(1.0, 2))
        expect_error(TypeError, "head_dim", lambda: f(1.0, 3.5))
        expect_error(TypeError, "head_dim", lambda: f(1.0, True))
        expect_error(ValueError, "lam", lambda: f(0.0, 8))
        expect_error(ValueError, "lam", lambda: f(math.inf, 8))
        expect_error(ValueError, "lam", lambda: f(math.nan, 8))
        expect_error(TypeError, "lam", lambda: f("1", 8))
        expect_error(TypeError, "lam", lambda: f(torch.tensor(1.0), 8))
        if f is A.entropy_gap:
            expect_error(ValueError, "digits", lambda: f(1.0, 8, digits=0))
            expect_error(TypeError, "digits", lambda: f(1.0, 8, digits=15.5))

    return run


def leg_values(device):
    for lam in (1e-300, 1e-4, 0.5, 1.0, 1e3, 1e300):
        with mpmath.workdps(60):
            lm = mpmath.mpf(lam)
            c = 2 * lm / (1 + mpmath.sqrt(1 + 4 * lm * lm))
            ref = float(32 * mpmath.log(1 - c * c))
        got = A.laplace_entropy_gap(lam, 64)
        assert math.isfinite(got) and abs(got - ref) <= 1e-12 * abs(ref) + 1e-300, (
            lam,
            got,
            ref,
        )


# ---------------------------------------------------------------- SalientValueHead
SVH = T + "SalientValueHead"


def _svh64(model, values, salience, scale):
    p = {n: t.detach().double().cpu() for n, t in model.named_parameters()}
    x = torch.stack((values, salience), -1).double().cpu()
    tokens = x @ p["embed.weight"].T + p["embed.bias"]
    q, k, v = (tokens @ p["qkv.weight"].T).chunk(3, -1)
    n, w = q.shape[-2], q.shape[-1]
    s = w**-0.5 if scale == "standard" else math.log(n) / math.log(16) / w**0.5
    out = softmax_attention64(q[:, None], k[:, None], v[:, None], scale=s)[:, 0]
    return out @ p["read_out.weight"].T[:, 0] + p["read_out.bias"]


def svh_values(device):
    model = A.SalientValueHead(8, train_length=16).to(device)
    values, salience = torch.randn(2, 3, 40, device=device)
    for scale in ("standard", "entropy_invariant"):
        model.scale = scale
        close(
            model(values, salience), _svh64(model, values, salience, scale), atol=1e-5
        )
    finite(model.entropy(values, salience))


def svh_empty(device):
    model = A.SalientValueHead(8).to(device)
    assert model(*torch.empty(2, 0, 5, device=device)).shape == (0, 5)
    assert model(*torch.empty(2, 3, 0, device=device)).shape == (3, 0)
    e = model.entropy(*torch.empty(2, 3, 0, device=device))
    assert e.shape == () and torch.isfinite(e)


def svh_errors(device):
    expect_error(ValueError, "width", lambda: A.SalientValueHead(0))
    expect_error(TypeError, "width", lambda: A.SalientValueHead(2.5))
    expect_error(
        ValueError, "train_length", lambda: A.SalientValueHead(8, train_length=1)
    )
    expect_error(
        TypeError, "train_length", lambda: A.SalientValueHead(8, train_length=None)
    )
    model = A.SalientValueHead(8).to(device)
    x = torch.randn(3, 5, device=device)
    expect_error(ValueError, "salience", lambda: model(x, x[:, :4]))
    expect_error(ValueError, "values", lambda: model(x[None], x[None]))
    expect_error(TypeError, "values", lambda: model(x.long(), x))
    expect_error(TypeError, "values", lambda: model(x.double(), x.double()))
    expect_error(ValueError, "values", lambda: model(_meta(3, 5), _meta(3, 5)))
    expect_error(ValueError, "salience", lambda: model(x, _meta(3, 5)))
    expect_error(ValueError, "values", lambda: model.entropy(x[None], x[None]))


def svh_grad_views(device):
    model = A.SalientValueHead(8).to(device)
    base = torch.randn(5, 3, device=device)
    values, salience = base.T, odd_view(3, 5, device=device)
    out = model(values, salience)
    out.sum().backward()
    finite(out, *(p.grad for p in model.parameters()))


# ---------------------------------------------------------------- linear_attention
LA = T + "linear_attention"


def la_values(causal):
    def run(device):
        q, k, v = _qkv(2, 2, 13, 4, device=device, dv=3)
        for fmap, phi in (
            ("elu", _elu1),
            ("relu", torch.relu),
            (torch.square, torch.square),
        ):
            got = A.linear_attention(
                q, k, v, feature_map=fmap, causal=causal, chunk_size=4
            )
            close(got, _linear64(q, k, v, phi, causal=causal), atol=5e-6, rtol=1e-5)

    return run


def la_rect(device):
    q = torch.randn(1, 2, 5, 4, device=device, dtype=F64)
    _, k, v = _qkv(1, 2, 9, 4, device=device, dtype=F64)
    for causal in (False, True):
        got = A.linear_attention(q, k, v, causal=causal, chunk_size=2)
        keep = torch.ones(5, 9, dtype=torch.bool).tril() if causal else None
        w = _elu1(q.cpu()) @ _elu1(k.cpu()).mT
        w = w * keep if causal else w
        close(got, w @ v.cpu() / (w.sum(-1, keepdim=True) + 1e-6), atol=1e-12)


def la_exp_large(causal):
    def run(device):
        q, k, v = _qkv(1, 2, 40, 8, device=device, scale=100.0)
        got = A.linear_attention(
            q, k, v, feature_map="exp", causal=causal, chunk_size=16
        )
        w = _exp_kernel64(q, k)
        w = w.tril() if causal else w
        ref = w @ v.double().cpu() / (w.sum(-1, keepdim=True) + 1e-6)
        close(got, ref, atol=2e-5, rtol=1e-5)

    return run


def la_exp_small(device):
    """exp features of very negative inputs: each product underflows in float32."""
    q, k, v = _qkv(1, 1, 9, 4, device=device)
    q, k = q - 60, k - 60
    for causal in (False, True):
        got = A.linear_attention(q, k, v, feature_map="exp", eps=0.0, causal=causal)
        w = _exp_kernel64(q, k)
        w = w.tril() if causal else w
        close(got, w @ v.double().cpu() / w.sum(-1, keepdim=True), atol=2e-5)


def la_half(dtype, causal, tol, n=2048):
    def run(device):
        q, k, v = _qkv(1, 1, n, 64, device=device, dtype=dtype, dv=8)
        got = A.linear_attention(q, k, v, causal=causal)
        assert got.dtype == dtype
        close(got, _linear64(q, k, v, _elu1, causal=causal), atol=tol)

    return run


def la_fully_masked(causal):
    def run(device):
        q, k, v = _qkv(2, 1, 5, 4, device=device, dtype=F64)
        keep = torch.tensor([[0, 0, 1, 1, 1], [0] * 5], dtype=torch.bool, device=device)
        keep = keep[:, None, :]
        qg = q.clone().requires_grad_(True)
        for fmap, phi in (("elu", _elu1), ("exp", torch.exp), ("relu", torch.relu)):
            for eps in (0.0, 1e-6):
                out = A.linear_attention(
                    qg, k, v, feature_map=fmap, mask=keep, causal=causal, eps=eps
                )
                ref = _linear64(q, k, v, phi, causal=causal, keep=keep, eps=eps)
                close(out, ref, atol=1e-12)
                (g,) = torch.autograd.grad(out.sum(), qg)
                finite(g)
                assert (g[1] == 0).all() and (out[1] == 0).all()
                if causal:
                    assert (g[0, 0, :2] == 0).all() and (out[0, 0, :2] == 0).all()

    return run


def la_nan_padding(device):
    q, k, v = _qkv(1, 1, 6, 4, device=device)
    keep = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool, device=device)
    k, v = k.clone(), v.clone()
    k[..., 4:, :], v[..., 5, :] = torch.nan, torch.inf
    kr, vr = k.nan_to_num(0.0), v.nan_to_num(0.0, 0.0, 0.0)
    for fmap, phi in (("elu", _elu1), ("exp", torch.exp)):
        for causal in (False, True):
            out = A.linear_attention(
                q, k, v, mask=keep, feature_map=fmap, causal=causal
            )
            ref = _linear64(q, kr, vr, phi, causal=causal, keep=keep)
            close(out, ref, atol=5e-6)


def la_empty(device):
    q, _k, _v = _qkv(2, 1, 3, 4, device=device)
    e = torch.empty(2, 1, 0, 4, device=device)
    for causal in (False, True):
        for fmap in ("elu", "exp"):
            assert A.linear_attention(
                e, e, e, causal=causal, feature_map=fmap
            ).shape == (
                2,
                1,
                0,
                4,
            )
            out = A.linear_attention(q, e, e, causal=causal, feature_map=fmap)
            assert out.shape == (2, 1, 3, 4) and (out == 0).all()
        z = torch.empty(0, 1, 3, 4, device=device)
        assert A.linear_attention(z, z, z, causal=causal).shape == (0, 1, 3, 4)


def la_length_one(device):
    q, k, v = _qkv(1, 1, 1, 4, device=device, dtype=F64)
    for fmap in ("elu", "exp"):
        got = A.linear_attention(q, k, v, causal=True, feature_map=fmap, eps=0.0)
        close(got, v, atol=1e-14)


def la_grad(device):
    q, k, v = _qkv(1, 1, 4, 2, device=device, dtype=F64)
    args = tuple(t.requires_grad_(True) for t in (q, k, v))
    for fmap in ("elu", "exp"):
        assert torch.autograd.gradcheck(
            lambda a, b, c, f=fmap: A.linear_attention(
                a, b, c, causal=True, chunk_size=3, feature_map=f
            ),
            args,
        )
        assert torch.autograd.gradcheck(
            lambda a, b, c, f=fmap: A.linear_attention(a, b, c, feature_map=f), args
        )


def la_views(device):
    base = torch.randn(1, 1, 3, 6, 8, device=device)
    q, k, v = base[:, :, 0], base[:, :, 1].mT.mT, base[:, :, 2, :, ::2]
    for causal in (False, True):
        got = A.linear_attention(q, k, v, causal=causal, chunk_size=4)
        close(got, _linear64(q, k, v, _elu1, causal=causal), atol=2e-6)
    o = odd_view(1, 1, 6, 8, device=device)
    close(A.linear_attention(o, o, o), _linear64(o, o, o, _elu1), atol=2e-6)


def la_meta(device):
    q = _meta(2, 3, 70, 8)
    m = torch.ones(2, 1, 70, dtype=torch.bool, device="meta")
    for causal in (False, True):
        for fmap in ("elu", "exp"):
            out = A.linear_attention(q, q, q, mask=m, causal=causal, feature_map=fmap)
            assert out.is_meta and out.shape == (2, 3, 70, 8)


def la_mixed_devices(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    f = A.linear_attention
    expect_error(ValueError, r"\bv\b", lambda: f(q, k, _meta(1, 1, 3, 4)))
    m = torch.ones(1, 1, 3, dtype=torch.bool, device="meta")
    expect_error(ValueError, "mask", lambda: f(q, k, v, mask=m))


def la_errors(device):
    q, k, v = _qkv(1, 1, 4, 8, device=device)
    f = A.linear_attention
    expect_error(
        TypeError, "chunk_size", lambda: f(q, k, v, causal=True, chunk_size=2.5)
    )
    expect_error(
        ValueError, "chunk_size", lambda: f(q, k, v, causal=True, chunk_size=0)
    )
    expect_error(ValueError, "feature_map", lambda: f(q, k, v, feature_map="softmax"))
    expect_error(TypeError, "feature_map", lambda: f(q, k, v, feature_map=3))
    expect_error(ValueError, "eps", lambda: f(q, k, v, eps=-1e-3))
    expect_error(ValueError, "eps", lambda: f(q, k, v, eps=math.nan))
    expect_error(TypeError, "causal", lambda: f(q, k, v, causal="no"))
    expect_error(TypeError, r"\bq\b", lambda: f(q.long(), k, v))
    expect_error(TypeError, r"\bk\b", lambda: f(q, k.to(torch.complex64), v))
    expect_error(TypeError, r"\bv\b", lambda: f(q, k, None))
    expect_error(ValueError, r"\bq\b", lambda: f(q[0], k, v))
    expect_error(ValueError, r"\bq\b.*\bk\b", lambda: f(q, k[..., :7], v))
    expect_error(ValueError, r"\bv\b", lambda: f(q, k, v[..., :3, :]))
    expect_error(TypeError, "mask", lambda: f(q, k, v, mask=torch.ones(1, 1, 4)))
    expect_error(TypeError, "mask", lambda: f(q, k, v, mask=torch.ones(1, 1, 4).int()))
    expect_error(ValueError, "mask", lambda: f(q, k, v, mask=torch.ones(1, 1, 5) > 0))


# ---------------------------------------------------------------- orthogonal_gaussian
OG = T + "orthogonal_gaussian"


def og_values(device):
    g = torch.Generator(device=device).manual_seed(0)
    w = A.orthogonal_gaussian(20, 8, generator=g, dtype=F64)
    assert w.shape == (20, 8) and w.dtype == F64 and w.device.type == device.type
    for block in (w[:8], w[8:16], w[16:]):
        u = block / block.norm(dim=-1, keepdim=True)
        eye = torch.eye(u.shape[0], dtype=F64, device=device)
        close(u @ u.T, eye, atol=1e-12)
    half = A.orthogonal_gaussian(3, 1, dtype=torch.float16)
    assert half.dtype == torch.float16 and half.shape == (3, 1)
    finite(half)


def og_errors(device):
    f = A.orthogonal_gaussian
    expect_error(ValueError, "num_features", lambda: f(0, 4))
    expect_error(TypeError, "num_features", lambda: f(2.5, 4))
    expect_error(TypeError, "dim", lambda: f(4, True))
    expect_error(ValueError, "dim", lambda: f(4, -2))
    expect_error(TypeError, "dtype", lambda: f(4, 4, dtype=torch.int64))
    expect_error(TypeError, "dtype", lambda: f(4, 4, dtype="float32"))
    expect_error(TypeError, "generator", lambda: f(4, 4, generator=0))


# ---------------------------------------------------------------- favor_features
FF = T + "favor_features"


def ff_values(device):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 8, generator=g).to(device)
    x = torch.randn(2, 6, 8, device=device)
    for is_query in (True, False):
        got = A.favor_features(x, w, is_query=is_query)
        close(got, _favor64(x, w, is_query=is_query), atol=1e-6)
        got = A.favor_features(x.double().requires_grad_(), w, is_query=is_query, eps=0)
        close(got, _favor64(x, w, is_query=is_query, eps=0.0), atol=1e-14)


def ff_half(dtype, tol):
    def run(device):
        w = torch.randn(16, 64, device=device)
        x = (30 * torch.randn(1, 9, 64, device=device)).to(dtype)  # |x~|^2 / 2 > 1e5
        for is_query in (True, False):
            got = A.favor_features(x, w, is_query=is_query)
            assert got.dtype == dtype
            close(got, _favor64(x, w, is_query=is_query), atol=tol)

    return run


def ff_errors(device):
    x, w = torch.randn(5, 8, device=device), torch.randn(6, 8, device=device)
    f = A.favor_features
    expect_error(ValueError, "projection", lambda: f(x, w[:, :7], is_query=True))
    expect_error(ValueError, "projection", lambda: f(x, w[0], is_query=True))
    expect_error(TypeError, "projection", lambda: f(x, w.long(), is_query=True))
    expect_error(ValueError, "projection", lambda: f(x, _meta(6, 8), is_query=True))
    expect_error(ValueError, "projection", lambda: f(x, w[:0], is_query=True))
    expect_error(ValueError, r"\bx\b", lambda: f(x[0], w, is_query=True))
    expect_error(TypeError, r"\bx\b", lambda: f(x.int(), w, is_query=True))
    expect_error(ValueError, "eps", lambda: f(x, w, is_query=True, eps=-1.0))
    expect_error(TypeError, "is_query", lambda: f(x, w, is_query=None))


def ff_empty_meta_views(device):
    w = torch.randn(6, 8, device=device)
    for is_query in (True, False):
        assert A.favor_features(
            torch.empty(2, 0, 8, device=device), w, is_query=is_query
        ).shape == (2, 0, 6)
        out = A.favor_features(_meta(3, 5, 8), _meta(6, 8), is_query=is_query)
        assert out.is_meta and out.shape == (3, 5, 6)
        x = torch.randn(8, 5, device=device).T
        close(
            A.favor_features(x, w.mT.mT, is_query=is_query),
            _favor64(x, w, is_query=is_query),
            atol=1e-6,
        )


# ---------------------------------------------------------------- performer_attention
PA = T + "performer_attention"


def pa_values(device):
    q, k, v = _qkv(2, 2, 9, 8, device=device, dtype=F64)
    w = torch.randn(16, 8, dtype=F64, device=device)
    for causal in (False, True):
        close(
            A.performer_attention(q, k, v, w, causal=causal),
            _performer64(q, k, v, w, causal=causal),
            atol=1e-12,
        )


def pa_empty_rows(causal):
    def run(device):
        q, k, v = _qkv(2, 1, 5, 4, device=device, dtype=F64)
        w = torch.randn(8, 4, dtype=F64, device=device)
        keep = torch.tensor([[0, 0, 1, 1, 1], [0] * 5], dtype=torch.bool, device=device)
        keep = keep[:, None, :]
        qg, kg = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
        out = A.performer_attention(qg, kg, v, w, mask=keep, causal=causal)
        close(out, _performer64(q, k, v, w, causal=causal, keep=keep), atol=1e-12)
        gq, gk = torch.autograd.grad(out.sum(), (qg, kg))
        finite(out, gq, gk)
        assert (out[1] == 0).all() and (gq[1] == 0).all() and (gk[1] == 0).all()
        if causal:
            assert (out[0, 0, :2] == 0).all() and (gq[0, 0, :2] == 0).all()

    return run


def pa_nan_padding(device):
    q, k, v = _qkv(1, 1, 6, 4, device=device)
    w = torch.randn(8, 4, device=device)
    keep = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool, device=device)
    k, v = k.clone(), v.clone()
    k[..., 4:, :], v[..., 5, :] = 1e30, torch.nan
    for causal in (False, True):
        out = A.performer_attention(q, k, v, w, mask=keep, causal=causal)
        ref = _performer64(
            q, k.nan_to_num(0.0), v.nan_to_num(0.0), w, causal=causal, keep=keep
        )
        close(out, ref, atol=5e-6)


def pa_half(dtype, tol):
    def run(device):
        q, k, v = _qkv(1, 1, 512, 64, device=device)
        q, k = 6 * q, 6 * k
        w = torch.randn(32, 64, device=device)
        for causal in (False, True):
            got = A.performer_attention(
                *(t.to(dtype) for t in (q, k, v)), w, causal=causal
            )
            assert got.dtype == dtype
            qq, kk, vv = (t.to(dtype) for t in (q, k, v))
            close(got, _performer64(qq, kk, vv, w, causal=causal), atol=tol)

    return run


def pa_empty(device):
    q, _k, _v = _qkv(2, 1, 3, 4, device=device)
    w = torch.randn(8, 4, device=device)
    e = torch.empty(2, 1, 0, 4, device=device)
    for causal in (False, True):
        assert A.performer_attention(e, e, e, w, causal=causal).shape == (2, 1, 0, 4)
        out = A.performer_attention(q, e, e, w, causal=causal)
        assert out.shape == (2, 1, 3, 4) and (out == 0).all()


def pa_meta_devices(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    w = torch.randn(8, 4, device=device)
    f = A.performer_attention
    expect_error(ValueError, "projection", lambda: f(q, k, v, _meta(8, 4)))
    expect_error(
        ValueError,
        "mask",
        lambda: f(q, k, v, w, mask=torch.ones(3, dtype=torch.bool, device="meta")),
    )
    out = f(
        _meta(2, 1, 70, 4),
        _meta(2, 1, 70, 4),
        _meta(2, 1, 70, 4),
        _meta(8, 4),
        causal=True,
    )
    assert out.is_meta and out.shape == (2, 1, 70, 4)


def pa_errors(device):
    q, k, v = _qkv(1, 1, 3, 4, device=device)
    w = torch.randn(8, 4, device=device)
    f = A.performer_attention
    expect_error(ValueError, "projection", lambda: f(q, k, v, w[:, :3]))
    expect_error(TypeError, "projection", lambda: f(q, k, v, w.int()))
    expect_error(
        TypeError, "mask", lambda: f(q, k, v, w, mask=torch.ones(3, dtype=torch.int8))
    )
    expect_error(ValueError, r"\bq\b", lambda: f(q[0], k, v, w))
    expect_error(TypeError, "causal", lambda: f(q, k, v, w, causal=1))


def pa_grad_views(device):
    q, k, v = _qkv(1, 1, 4, 2, device=device, dtype=F64)
    w = torch.randn(3, 2, dtype=F64, device=device)
    args = tuple(t.requires_grad_(True) for t in (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: A.performer_attention(a, b, c, w, causal=True), args
    )
    o = odd_view(1, 1, 6, 2, device=device)
    close(
        A.performer_attention(o, o.mT.mT, o, w.float()),
        _performer64(o, o, o, w),
        atol=2e-6,
    )


# ---------------------------------------------------------------- performer_relative_error
PRE = T + "performer_relative_error"


def pre_values(device):
    q, k, v = _qkv(1, 1, 8, 4, device=device, dtype=F64)
    g = torch.Generator(device=device).manual_seed(3)
    got = A.performer_relative_error(q, k, v, 6, orthogonal=False, draws=3, generator=g)
    g = torch.Generator(device=device).manual_seed(3)
    exact = softmax_attention64(q, k, v)
    ref = 0.0
    for _ in range(3):
        w = torch.randn(6, 4, generator=g, dtype=F64, device=device)
        ref += ((_performer64(q, k, v, w) - exact).norm() / exact.norm()).item() / 3
    assert isinstance(got, float) and abs(got - ref) < 1e-10


def pre_errors(device):
    q, k, v = _qkv(1, 1, 4, 4, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    f = A.performer_relative_error
    expect_error(
        ValueError,
        "draws",
        lambda: f(q, k, v, 4, orthogonal=True, draws=0, generator=g),
    )
    expect_error(
        TypeError,
        "draws",
        lambda: f(q, k, v, 4, orthogonal=True, draws=2.5, generator=g),
    )
    expect_error(
        ValueError,
        "num_features",
        lambda: f(q, k, v, 0, orthogonal=True, draws=1, generator=g),
    )
    expect_error(
        TypeError,
        "generator",
        lambda: f(q, k, v, 4, orthogonal=True, draws=1, generator=None),
    )
    expect_error(
        TypeError,
        "orthogonal",
        lambda: f(q, k, v, 4, orthogonal="yes", draws=1, generator=g),
    )
    expect_error(
        ValueError,
        r"\bq\b",
        lambda: f(q[0], k, v, 4, orthogonal=True, draws=1, generator=g),
    )
    e = torch.empty(1, 1, 0, 4, device=device)
    expect_error(
        ValueError,
        r"\bq\b|\bk\b|\bv\b",
        lambda: f(e, e, e, 4, orthogonal=True, draws=1, generator=g),
    )
    z = torch.zeros_like(v)
    expect_error(
        ValueError,
        r"\bv\b",
        lambda: f(q, k, z, 4, orthogonal=True, draws=1, generator=g),
    )


def pre_half(device):
    q, k, v = _qkv(1, 1, 64, 16, device=device, dtype=torch.float16)
    g = torch.Generator(device=device).manual_seed(0)
    got = A.performer_relative_error(
        6 * q, 6 * k, v, 32, orthogonal=True, draws=2, generator=g
    )
    assert math.isfinite(got) and 0 <= got < 10


# ---------------------------------------------------------------- OneLayerAttention
OLA = T + "OneLayerAttention"


def _ola64(model, values, salience):
    p = {n: t.detach().double().cpu() for n, t in model.named_parameters()}
    x = torch.stack((values, salience), -1).double().cpu()
    tokens = x @ p["embed.weight"].T + p["embed.bias"]
    q, k, v = (tokens @ p["qkv.weight"].T).chunk(3, -1)
    if model.kind == "softmax":
        out = softmax_attention64(q, k, v)
    else:
        phi = {"elu": _elu1, "exp": torch.exp, "relu": torch.relu}[model.kind]
        out = _linear64(q, k, v, phi)
    return out @ p["read_out.weight"].T[:, 0] + p["read_out.bias"]


def ola_values(device):
    values, salience = torch.randn(2, 3, 11, device=device)
    for kind in ("softmax", "elu", "exp", "relu"):
        model = A.OneLayerAttention(kind, width=8).to(device)
        close(model(values, salience), _ola64(model, values, salience), atol=2e-5)


def ola_errors(device):
    expect_error(ValueError, "kind", lambda: A.OneLayerAttention("sigmoid"))
    expect_error(ValueError, "kind", lambda: A.OneLayerAttention(None))
    expect_error(ValueError, "width", lambda: A.OneLayerAttention("elu", width=0))
    expect_error(TypeError, "width", lambda: A.OneLayerAttention("elu", width=3.0))
    model = A.OneLayerAttention("elu", width=4).to(device)
    x = torch.randn(2, 5, device=device)
    expect_error(ValueError, "salience", lambda: model(x, x[:, :4]))
    expect_error(ValueError, "values", lambda: model(x[0], x[0]))
    expect_error(TypeError, "values", lambda: model(x.bool(), x))
    expect_error(TypeError, "values", lambda: model(x.half(), x.half()))
    expect_error(ValueError, "values", lambda: model(_meta(2, 5), _meta(2, 5)))


def ola_empty_grad(device):
    for kind in ("softmax", "exp"):
        model = A.OneLayerAttention(kind, width=4).to(device)
        assert model(*torch.empty(2, 0, 6, device=device)).shape == (0, 6)
        assert model(*torch.empty(2, 3, 0, device=device)).shape == (3, 0)
        values, salience = 30 * torch.randn(2, 3, 7, device=device)
        out = model(values.T.contiguous().T, salience)
        out.sum().backward()
        finite(out, *(p.grad for p in model.parameters()))


CASES: list[Case] = [
    # scaled_attention
    Case(SA, "finite float ALiBi bias is added to the logits", "value", sa_alibi_bias),
    Case(
        SA,
        "float bias with -inf entries, entropy-invariant per-row counts",
        "value",
        sa_alibi_bias_entropy,
    ),
    Case(SA, "int 0/1 mask rejected by name", "error", sa_int_mask),
    Case(SA, "boolean mask and causal combine", "value", sa_bool_mask_causal),
    Case(
        SA,
        "entropy-invariant causal with Lq < Lk and dv != d",
        "value",
        sa_entropy_causal_rect,
    ),
    Case(SA, "a fixed numeric scale", "value", sa_numeric_scale),
    Case(
        SA,
        "float16 with q.k ~ 9000 (over float16's range)",
        "value",
        sa_half(torch.float16, 2e-3),
    ),
    Case(SA, "bfloat16 with q.k ~ 9000", "value", sa_half(torch.bfloat16, 2e-2)),
    Case(
        SA,
        "fully masked rows (bool and -inf float) give zeros, zero gradient",
        "finite",
        sa_fully_masked,
    ),
    Case(
        SA,
        "left padding with causal=True: rows with no key are zeros",
        "finite",
        sa_left_padding_causal,
    ),
    Case(
        SA, "NaN/inf in padded keys and values do not leak", "finite", sa_nan_in_padding
    ),
    Case(SA, "empty queries, empty keys, empty batch", "empty", sa_empty),
    Case(SA, "length one returns v", "value", sa_length_one),
    Case(SA, "gradcheck with a float bias, causal, entropy-invariant", "grad", sa_grad),
    Case(SA, "non-contiguous and odd-offset views", "device", sa_views),
    Case(SA, "meta tensors propagate shapes", "device", sa_meta),
    Case(SA, "k or mask on another device: named error", "device", sa_mixed_devices),
    Case(SA, "wrong kinds, ranks, shapes, scales, sizes", "error", sa_errors),
    # visible_keys
    Case(
        VK,
        "bool mask + causal, finite float bias all visible, -inf dropped",
        "value",
        vk_masks,
    ),
    Case(
        VK, "int mask, bad sizes, bad shape, mask on another device", "error", vk_errors
    ),
    Case(VK, "zero lengths and meta masks", "empty", vk_empty_meta),
    # entropy_invariant_scale
    Case(
        EIS, "counts from 0 to 1e300 against log(n)/log(L)/sqrt(d)", "value", eis_values
    ),
    Case(EIS, "bad head_dim, train_length, min_length and n", "error", eis_errors),
    Case(EIS, "empty and meta counts", "empty", eis_empty_meta),
    # attention_entropy
    Case(AE, "entropy with exact zeros, along dim 0 too", "value", ae_values),
    Case(AE, "float16 uniform over 20000 keys", "value", ae_half(torch.float16, 2e-3)),
    Case(
        AE, "bfloat16 uniform over 20000 keys", "value", ae_half(torch.bfloat16, 5e-2)
    ),
    Case(AE, "int, complex, list probs and a bad dim", "error", ae_errors),
    Case(AE, "empty rows, empty batch, meta", "empty", ae_empty),
    Case(
        AE,
        "finite gradients through softmax of a strided view; odd offset",
        "grad",
        ae_grad_view,
    ),
    # entropy gaps
    Case(EG, "d = 3 closed form from lam 1e-6 to 40", "value", eg_closed_form),
    Case(EG, "bad head_dim, lam and digits", "error", gap_errors(EG)),
    Case(
        LEG,
        "lam from 1e-300 to 1e300 against a 60-digit evaluation",
        "value",
        leg_values,
    ),
    Case(LEG, "bad head_dim and lam", "error", gap_errors(LEG)),
    # SalientValueHead
    Case(SVH, "both scales against a float64 forward", "value", svh_values),
    Case(SVH, "empty batch, length zero, entropy of nothing", "empty", svh_empty),
    Case(SVH, "bad width, shapes, dtypes and devices", "error", svh_errors),
    Case(SVH, "gradients through views and odd offsets", "grad", svh_grad_views),
    # linear_attention
    Case(LA, "elu, relu, callable, non-causal", "value", la_values(False)),
    Case(LA, "elu, relu, callable, causal chunks", "value", la_values(True)),
    Case(LA, "queries and keys of different lengths", "value", la_rect),
    Case(
        LA, "exp features at |q|, |k| ~ 100, non-causal", "finite", la_exp_large(False)
    ),
    Case(LA, "exp features at |q|, |k| ~ 100, causal", "finite", la_exp_large(True)),
    Case(
        LA, "exp features of inputs ~ -60 (products underflow)", "finite", la_exp_small
    ),
    Case(
        LA,
        "float16 n = 2048, d = 64, non-causal",
        "value",
        la_half(torch.float16, False, 2e-3),
    ),
    Case(
        LA,
        "float16 n = 2048, d = 64, causal",
        "value",
        la_half(torch.float16, True, 4e-3),
    ),
    Case(
        LA,
        "bfloat16 n = 512, d = 64, causal",
        "value",
        la_half(torch.bfloat16, True, 3e-2, n=512),
    ),
    Case(
        LA,
        "fully masked rows: zeros, zero gradient, any eps",
        "finite",
        la_fully_masked(False),
    ),
    Case(
        LA,
        "left padding with causal=True: zeros, zero gradient",
        "finite",
        la_fully_masked(True),
    ),
    Case(LA, "NaN/inf in padded keys and values do not leak", "finite", la_nan_padding),
    Case(LA, "empty queries, keys, batch", "empty", la_empty),
    Case(LA, "length one returns v", "value", la_length_one),
    Case(LA, "gradcheck, elu and exp, causal and not", "grad", la_grad),
    Case(LA, "non-contiguous and odd-offset views", "device", la_views),
    Case(LA, "meta tensors propagate shapes", "device", la_meta),
    Case(LA, "v or mask on another device: named error", "device", la_mixed_devices),
    Case(
        LA,
        "chunk_size 2.5, bad feature_map, eps, masks, ranks, dtypes",
        "error",
        la_errors,
    ),
    # orthogonal_gaussian
    Case(
        OG, "orthogonal blocks on the generator's device; float16", "value", og_values
    ),
    Case(OG, "bad sizes, dtype, generator", "error", og_errors),
    # favor_features
    Case(FF, "against the definition, both stabilisers", "value", ff_values),
    Case(
        FF,
        "float16 with |x~|^2/2 over float16's range",
        "value",
        ff_half(torch.float16, 1e-3),
    ),
    Case(FF, "bfloat16 with |x~|^2/2 large", "value", ff_half(torch.bfloat16, 1e-2)),
    Case(FF, "bad projection, x, eps, is_query", "error", ff_errors),
    Case(FF, "empty sequence, meta, views", "empty", ff_empty_meta_views),
    # performer_attention
    Case(PA, "against a float64 FAVOR+, causal and not", "value", pa_values),
    Case(PA, "fully masked rows: zeros, zero gradient", "finite", pa_empty_rows(False)),
    Case(
        PA,
        "left padding with causal=True: zeros, zero gradient",
        "finite",
        pa_empty_rows(True),
    ),
    Case(PA, "huge/NaN padded keys and values do not leak", "finite", pa_nan_padding),
    Case(PA, "float16 at |q|, |k| ~ 6 sqrt(d)", "value", pa_half(torch.float16, 3e-3)),
    Case(PA, "empty queries and keys", "empty", pa_empty),
    Case(
        PA,
        "projection or mask on another device; meta shapes",
        "device",
        pa_meta_devices,
    ),
    Case(PA, "bad projection, mask, rank, causal", "error", pa_errors),
    Case(PA, "gradcheck causal; views and odd offsets", "grad", pa_grad_views),
    # performer_relative_error
    Case(PRE, "against a direct float64 loop", "value", pre_values),
    Case(PRE, "bad draws, num_features, generator, empty, zero v", "error", pre_errors),
    Case(PRE, "float16 inputs give a finite error", "finite", pre_half),
    # OneLayerAttention
    Case(OLA, "softmax, elu, exp, relu against a float64 forward", "value", ola_values),
    Case(OLA, "bad kind, width, shapes, dtypes, devices", "error", ola_errors),
    Case(
        OLA,
        "empty batch and length; large inputs: finite gradients",
        "grad",
        ola_empty_grad,
    ),
]
