"""Hostile inputs for relu² attention, the gated attention unit and the local-mean task
(``kexue.attention.gau``, ``kexue.tasks``).

References are float64 on the CPU, written here from the definitions: relu² weights
``relu(q k^T / sqrt(d) + bias)^2`` divided by the visible count, a fixed number or the
row's sum; the GAU from its parameters with RoPE written out pair by pair; the task's
window means by slicing.
"""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.attention as A
from kexue.tasks import local_mean_task

F64 = torch.float64
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
RA, GAU, LM = (
    "attention.relu2_attention",
    "attention.GatedAttentionUnit",
    "tasks.local_mean_task",
)


def _randn(*shape, device, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=F64)).to(device, dtype)


def relu2_64(q, k, v, *, normalizer="length", length=None, keep=None, bias=None):
    """relu² attention in float64 by the definition; dropped keys weigh 0."""
    q, k, v = (t.detach().double().cpu() for t in (q, k, v))
    s = q @ k.mT / math.sqrt(max(q.shape[-1], 1))
    if bias is not None:
        s = s + bias.detach().double().cpu()
    keep = torch.ones_like(s, dtype=torch.bool) if keep is None else keep.cpu()
    keep = keep.expand(s.shape)
    w = torch.where(keep, s.nan_to_num(0.0).clamp_min(0) ** 2, torch.zeros(()))
    if normalizer == "length":
        z = keep.sum(-1, keepdim=True).clamp_min(1).double()
    elif normalizer == "fixed":
        z = length
    else:
        z = w.sum(-1, keepdim=True)
        z = torch.where(z > 0, z, torch.ones_like(z))
    return (w / z) @ torch.where(keep.any(-2).unsqueeze(-1), v, torch.zeros(()))


def _rope64(x):
    """Interleaved RoPE, base 10000, positions 0..n-1, written out."""
    n, s = x.shape[-2], x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, s, 2, dtype=F64) / s)
    angle = torch.arange(n, dtype=F64)[:, None] * theta  # (n, s/2)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * angle.cos() - b * angle.sin()
    out[..., 1::2] = a * angle.sin() + b * angle.cos()
    return out


def gau64(unit, x, keep=None):
    """The unit's output in float64 from its parameters (relu² attention only)."""
    p = {n: t.detach().double().cpu() for n, t in unit.named_parameters()}
    x = x.detach().double().cpu()
    h = torch.nn.functional.silu(x @ p["dense_in.weight"].T + p["dense_in.bias"])
    e = unit.hidden
    u, v, z = h[..., :e], h[..., e : 2 * e], h[..., 2 * e :]
    q = _rope64(z * p["gamma"][0] + p["beta"][0])
    k = _rope64(z * p["gamma"][1] + p["beta"][1])
    length = unit.train_length if unit.normalizer == "fixed" else None
    o = relu2_64(q, k, v, normalizer=unit.normalizer, length=length, keep=keep)
    return (u * o) @ p["dense_out.weight"].T + p["dense_out.bias"]


# ---------------------------------------------------------------- relu2_attention
def _qkv(device, dtype=torch.float32, n=5, scale=1.0):
    return tuple(
        _randn(2, 3, n, 4, device=device, dtype=dtype, scale=scale, seed=i)
        for i in range(3)
    )


for what, kind, names, call in (
    ("q as a list", TypeError, r"\bq\b", lambda q, k, v: A.relu2_attention([1.0], k, v)),
    ("integer q", TypeError, r"\bq\b", lambda q, k, v: A.relu2_attention(q.long(), k, v)),
    ("k of another width", ValueError, r"\bk\b", lambda q, k, v: A.relu2_attention(q, k[..., :3], v)),
    ("v of another length", ValueError, r"\bv\b", lambda q, k, v: A.relu2_attention(q, k, v[..., :2, :])),
    ("unknown normalizer", ValueError, "normalizer", lambda q, k, v: A.relu2_attention(q, k, v, normalizer="n")),
    ("fixed without length", ValueError, "length", lambda q, k, v: A.relu2_attention(q, k, v, normalizer="fixed")),
    ("length with normalizer='length'", ValueError, "length", lambda q, k, v: A.relu2_attention(q, k, v, length=3)),
    ("NaN length", ValueError, "length", lambda q, k, v: A.relu2_attention(q, k, v, normalizer="fixed", length=math.nan)),
    ("integer mask", TypeError, "mask", lambda q, k, v: A.relu2_attention(q, k, v, mask=torch.ones(5, 5, dtype=torch.int32, device=q.device))),
    ("mask that does not broadcast", ValueError, "mask", lambda q, k, v: A.relu2_attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.bool, device=q.device))),
    ("mask that would grow the batch", ValueError, "mask", lambda q, k, v: A.relu2_attention(q, k, v, mask=torch.ones(4, 2, 3, 5, 5, dtype=torch.bool, device=q.device))),
    ("meta mask", ValueError, "mask", lambda q, k, v: A.relu2_attention(q, k, v, mask=torch.ones(5, 5, dtype=torch.bool, device="meta"))),
    ("causal=1", TypeError, "causal", lambda q, k, v: A.relu2_attention(q, k, v, causal=1)),
):  # fmt: skip
    error(RA, what, kind, names, lambda d, c=call: c(*_qkv(d)))


@case(RA, "bool mask and causal, every normaliser, against float64", "value")
def _(device):
    q, k, v = _qkv(device, F64, n=6, scale=1.5)
    keep = _randn(2, 1, 6, 6, device=device, seed=5) > -0.5
    allowed = keep & torch.ones(6, 6, dtype=torch.bool, device=device).tril()
    for normalizer, length in (("length", None), ("fixed", 3.5), ("sum", None)):
        got = A.relu2_attention(
            q, k, v, normalizer=normalizer, length=length, mask=keep, causal=True
        )
        ref = relu2_64(q, k, v, normalizer=normalizer, length=length, keep=allowed)
        close(got, ref, atol=1e-13)


@case(RA, "float mask: a finite bias moves the relu, -inf drops", "value")
def _(device):
    q, k, v = _qkv(device, F64)
    bias = _randn(5, 5, device=device, dtype=F64, seed=7)
    bias[:, 0] = -math.inf
    got = A.relu2_attention(q, k, v, mask=bias)
    keep = bias > -math.inf
    close(
        got, relu2_64(q, k, v, keep=keep, bias=bias.masked_fill(~keep, 0)), atol=1e-13
    )
    # four of five keys visible: "length" is "fixed" with length 4
    close(got, relu2_64(q, k, v, normalizer="fixed", length=4, keep=keep, bias=bias.masked_fill(~keep, 0)), atol=1e-13)  # fmt: skip


@case(RA, "fully masked row and left padding under causal: zeros, zero grad", "grad")
def _(device):
    q, k, v = (t.requires_grad_() for t in _qkv(device, F64))
    keep = torch.tensor([False, False, True, True, True], device=device)
    for normalizer in ("length", "sum"):
        out = A.relu2_attention(q, k, v, mask=keep, causal=True, normalizer=normalizer)
        grads = torch.autograd.grad(out[:, :, :2].sum(), (q, k, v))
        assert (out[:, :, :2] == 0).all()
        assert all((g == 0).all() for g in grads)


@case(RA, "NaN and inf in padded keys and values do not leak", "finite")
def _(device):
    q, k, v = _qkv(device)
    keep = torch.tensor([True, True, True, False, False], device=device)
    k2, v2 = k.clone(), v.clone()
    k2[..., 3:, :], v2[..., 3:, :] = math.nan, math.inf
    q2 = q.clone().requires_grad_()
    for normalizer in ("length", "sum"):
        out = A.relu2_attention(q2, k2, v2, mask=keep, normalizer=normalizer)
        (grad,) = torch.autograd.grad(out.sum(), q2)
        finite(out, grad)
        close(out, relu2_64(q, k, v, keep=keep, normalizer=normalizer), atol=2e-6)


@case(RA, "float16 and bfloat16 logits of ~900: float32 inside, no overflow", "finite")
def _(device):
    q = _randn(1, 6, 16, device=device, scale=8.0, seed=1)
    k, v = q.clone(), _randn(1, 6, 3, device=device, seed=2)
    for normalizer, length in (("sum", None), ("fixed", 1e4)):
        ref = relu2_64(q, k, v, normalizer=normalizer, length=length)
        for dtype, unit in ((torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)):
            args = (t.to(dtype) for t in (q, k, v))
            out = A.relu2_attention(*args, normalizer=normalizer, length=length)
            assert out.dtype == dtype
            finite(out)
            close(out, ref, atol=16 * unit * ref.abs().max().item())


@case(RA, "empty queries, keys or batch", "empty")
def _(device):
    for n, m, b in ((0, 4, 2), (3, 0, 2), (3, 4, 0)):
        q = _randn(b, n, 5, device=device)
        k, v = _randn(b, m, 5, device=device), _randn(b, m, 2, device=device)
        for normalizer in ("length", "sum"):
            out = A.relu2_attention(q, k, v, normalizer=normalizer, causal=True)
            assert out.shape == (b, n, 2) and (out == 0).all()


@case(RA, "gradcheck with a bias and causality", "grad")
def _(device):
    q, k, v = (t.requires_grad_() for t in _qkv(device, F64, n=4, scale=2.0))
    bias = _randn(4, 4, device=device, dtype=F64, seed=9)
    for normalizer in ("length", "sum"):
        assert torch.autograd.gradcheck(
            lambda a, b, c, nz=normalizer: A.relu2_attention(
                a, b, c, mask=bias, causal=True, normalizer=nz
            ),
            (q, k, v),
        )


@case(RA, "non-contiguous views, odd offsets, meta tensors", "device")
def _(device):
    base = _randn(3, 2, 6, 8, device=device)
    q, k, v = base[0], base[1].mT.contiguous().mT, base[2][..., ::2]
    assert not v.is_contiguous()
    close(A.relu2_attention(q, k, v), relu2_64(q, k, v), atol=2e-6)
    o = odd_view(2, 6, 8, device=device)
    close(A.relu2_attention(o, o, o, normalizer="sum"), relu2_64(o, o, o, normalizer="sum"), atol=2e-6)  # fmt: skip
    meta = torch.empty(2, 5, 8, device="meta")
    out = A.relu2_attention(meta, meta, meta, causal=True, normalizer="sum")
    assert out.is_meta and out.shape == (2, 5, 8)


# ---------------------------------------------------------------- GatedAttentionUnit
for what, kind, names, kwargs in (
    ("dim 2.5", TypeError, "dim", {"dim": 2.5}),
    ("dim 0", ValueError, "dim", {"dim": 0}),
    ("expansion 0", ValueError, "expansion", {"dim": 4, "expansion": 0}),
    ("odd key_dim with rope", ValueError, "key_dim", {"dim": 4, "key_dim": 3}),
    ("unknown attention", ValueError, "attention", {"dim": 4, "attention": "relu"}),
    ("normalizer with softmax", ValueError, "normalizer", {"dim": 4, "attention": "softmax", "normalizer": "sum"}),
    ("train_length 1", ValueError, "train_length", {"dim": 4, "train_length": 1}),
    ("rope None", TypeError, "rope", {"dim": 4, "rope": None}),
):  # fmt: skip
    error(GAU, what, kind, names, lambda d, kw=kwargs: A.GatedAttentionUnit(**kw))


def _unit(device, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    unit = A.GatedAttentionUnit(6, key_dim=8, train_length=5, **kwargs)
    with torch.no_grad():
        unit.beta.normal_()
    return unit.to(device, dtype)


for what, kind, names, call in (
    ("x of rank 2", ValueError, r"\bx\b", lambda u, x: u(x[0])),
    ("x of another width", ValueError, r"\bx\b", lambda u, x: u(x[..., :5])),
    ("float64 x for a float32 unit", TypeError, "dtype", lambda u, x: u(x.double())),
    ("x as a list", TypeError, r"\bx\b", lambda u, x: u(x.tolist())),
    ("integer mask", TypeError, "mask", lambda u, x: u(x, torch.ones(7, 7, dtype=torch.long, device=x.device))),
    ("padding mask (batch, n) not lifted", ValueError, "mask", lambda u, x: u(x, torch.ones(2, 7, dtype=torch.bool, device=x.device))),
    ("meta mask", ValueError, "mask", lambda u, x: u(x, torch.ones(7, 7, dtype=torch.bool, device="meta"))),
    ("x on meta", ValueError, r"\bx\b", lambda u, x: u(x.to("meta"))),
    ("causal 'yes'", TypeError, "causal", lambda u, x: u(x, causal="yes")),
):  # fmt: skip
    error(
        GAU, what, kind, names, lambda d, c=call: c(_unit(d), _randn(2, 7, 6, device=d))
    )


@case(GAU, "relu² normalisers with padding, against float64", "value")
def _(device):
    x = _randn(2, 7, 6, device=device, dtype=F64, seed=3)
    keep = (torch.arange(7, device=device) < torch.tensor([7, 4], device=device)[:, None])[:, None, :]  # fmt: skip
    for normalizer in ("length", "fixed", "sum"):
        unit = _unit(device, F64, normalizer=normalizer)
        close(unit(x, keep), gau64(unit, x, keep), atol=1e-12)


@case(GAU, "NaN in padded tokens does not reach real tokens", "finite")
def _(device):
    x = _randn(2, 7, 6, device=device, seed=3)
    keep = (torch.arange(7, device=device) < torch.tensor([7, 4], device=device)[:, None])  # fmt: skip
    dirty = x.masked_fill(~keep[..., None], math.nan)
    for attention in ("relu2", "softmax", "softmax_plus"):
        unit = _unit(device, attention=attention)
        clean = unit(x.masked_fill(~keep[..., None], 0.0), keep[:, None, :])
        out = unit(dirty, keep[:, None, :])
        finite(out[keep])
        close(out[keep], clean[keep].double(), atol=1e-6)


@case(GAU, "half precision: attention in float32, finite output", "finite")
def _(device):
    x = _randn(2, 9, 6, device=device, seed=4)
    for attention in ("relu2", "softmax_plus"):
        ref = _unit(device, F64, attention=attention)(x.double())
        for dtype, unit in ((torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)):
            out = _unit(device, dtype, attention=attention)(x.to(dtype))
            assert out.dtype == dtype
            finite(out)
            close(out, ref, atol=16 * unit * ref.abs().max().item())


@case(GAU, "empty batch and empty sequence", "empty")
def _(device):
    for attention in ("relu2", "softmax", "softmax_plus"):
        unit = _unit(device, attention=attention)
        for shape in ((0, 4, 6), (2, 0, 6)):
            out = unit(torch.empty(*shape, device=device))
            assert out.shape == shape


@case(GAU, "gradients reach every parameter, finite under a padding mask", "grad")
def _(device):
    unit = _unit(device, F64, normalizer="sum")
    x = _randn(2, 6, 6, device=device, dtype=F64, seed=6)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=torch.bool, device=device)
    unit(x, keep[:, None, :], causal=True).sum().backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@case(GAU, "an input at an odd storage offset and a non-contiguous one", "device")
def _(device):
    unit = _unit(device, F64)
    x = odd_view(2, 5, 6, device=device, dtype=F64)
    close(unit(x), gau64(unit, x), atol=1e-12)
    wide = _randn(2, 5, 12, device=device, dtype=F64)[..., ::2]
    close(unit(wide), gau64(unit, wide), atol=1e-12)


# ---------------------------------------------------------------- local_mean_task
for what, kind, names, call in (
    ("generator None", TypeError, "generator", lambda d: local_mean_task(None, 2, 5)),
    ("count -1", ValueError, "count", lambda d: local_mean_task(torch.Generator(), -1, 5)),
    ("length 0", ValueError, "length", lambda d: local_mean_task(torch.Generator(), 2, 0)),
    ("window 1.5", TypeError, "window", lambda d: local_mean_task(torch.Generator(), 2, 5, window=1.5)),
    ("device 'gpu0'", ValueError, "device", lambda d: local_mean_task(torch.Generator(), 2, 5, device="gpu0")),
):  # fmt: skip
    error(LM, what, kind, names, call)


@case(LM, "window means by slicing, on the device asked for", "value")
def _(device):
    values, target = local_mean_task(
        torch.Generator().manual_seed(1), 3, 8, window=2, device=device
    )
    assert values.device.type == device.type and target.dtype == torch.float32
    v = values.double().cpu()
    ref = torch.stack([v[:, max(i - 2, 0) : i + 3].mean(1) for i in range(8)], 1)
    close(target, ref, atol=1e-6)


@case(LM, "no sequences, or a window longer than the sequence", "empty")
def _(device):
    values, target = local_mean_task(torch.Generator(), 0, 6, device=device)
    assert values.shape == target.shape == (0, 6)
    values, target = local_mean_task(torch.Generator(), 2, 3, window=10)
    close(target, values.double().mean(1, keepdim=True).expand(2, 3), atol=1e-6)
