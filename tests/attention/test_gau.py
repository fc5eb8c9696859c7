"""kexue.attention.gau against float64 loops written from the definitions and against
the FLASH-pytorch package's GAU (``flash_pytorch.GAU``)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.attention.gau import GatedAttentionUnit, relu2_attention
from kexue.tasks import local_mean_task

F64 = torch.float64


# ---------------------------------------------------------------- naive references
def relu2_loops(q, k, v, *, normalizer="length", length=None, keep=None, bias=None):
    """``relu2_attention`` row by row and key by key, in float64 on the CPU.

    ``keep``: boolean ``(..., n, m)`` (True = visible), ``bias``: added to the logits.
    """
    q, k, v = (t.detach().double().cpu() for t in (q, k, v))
    n, m, d = q.shape[-2], k.shape[-2], q.shape[-1]
    lead = q.shape[:-2]
    keep = torch.ones(*lead, n, m, dtype=torch.bool) if keep is None else keep.cpu()
    keep = keep.expand(*lead, n, m)
    bias = torch.zeros(*lead, n, m, dtype=F64) if bias is None else bias.double().cpu()
    bias = bias.expand(*lead, n, m)
    out = torch.zeros(*lead, n, v.shape[-1], dtype=F64)
    for index in torch.cartesian_prod(*(torch.arange(s) for s in (*lead, n))):
        *b, i = index.view(-1).tolist()
        weights = torch.zeros(m, dtype=F64)
        for j in range(m):
            if keep[(*b, i, j)]:
                s = float(q[(*b, i)] @ k[(*b, j)]) / math.sqrt(d) + float(
                    bias[(*b, i, j)]
                )
                weights[j] = max(s, 0.0) ** 2
        if normalizer == "length":
            z = max(int(keep[(*b, i)].sum()), 1)
        elif normalizer == "fixed":
            z = length
        else:
            z = float(weights.sum()) or 1.0
        out[(*b, i)] = sum(
            (weights[j] / z * v[(*b, j)] for j in range(m)),
            torch.zeros(v.shape[-1], dtype=F64),
        )
    return out


def rope_loops(x, base=10000.0):
    """Interleaved RoPE, pair by pair: ``(x_2i, x_2i+1)`` rotated by ``t * theta_i``."""
    out = x.clone()
    n, s = x.shape[-2], x.shape[-1]
    for t in range(n):
        for i in range(s // 2):
            angle = t * base ** (-2 * i / s)
            c, sn = math.cos(angle), math.sin(angle)
            a, b = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            out[..., t, 2 * i] = a * c - b * sn
            out[..., t, 2 * i + 1] = a * sn + b * c
    return out


def gau_reference(unit, x, keep=None):
    """The gated attention unit from its parameters, in float64 with explicit loops
    for RoPE and the attention weights."""
    p = {n: t.detach().double().cpu() for n, t in unit.named_parameters()}
    x = x.detach().double().cpu()
    h = x @ p["dense_in.weight"].T + p["dense_in.bias"]
    h = h * torch.sigmoid(h)  # swish
    e, s = unit.hidden, unit.key_dim
    u, v, z = h[..., :e], h[..., e : 2 * e], h[..., 2 * e :]
    q = z * p["gamma"][0] + p["beta"][0]
    k = z * p["gamma"][1] + p["beta"][1]
    if unit.rope:
        q, k = rope_loops(q), rope_loops(k)
    n = x.shape[1]
    if unit.attention == "relu2":
        length = unit.train_length if unit.normalizer == "fixed" else None
        o = relu2_loops(q, k, v, normalizer=unit.normalizer, length=length, keep=keep)
    else:
        keep = torch.ones(x.shape[0], n, n, dtype=torch.bool) if keep is None else keep
        keep = keep.expand(x.shape[0], n, n).cpu()
        o = torch.zeros_like(v)
        for b in range(x.shape[0]):
            for i in range(n):
                visible = [j for j in range(n) if keep[b, i, j]]
                lam = 1 / math.sqrt(s)
                if unit.attention == "softmax_plus":
                    lam *= math.log(max(len(visible), 1)) / math.log(unit.train_length)
                logits = torch.tensor(
                    [float(q[b, i] @ k[b, j]) * lam for j in visible], dtype=F64
                )
                w = torch.softmax(logits, 0) if visible else logits
                for wj, j in zip(w, visible, strict=True):
                    o[b, i] += wj * v[b, j]
    return (u * o) @ p["dense_out.weight"].T + p["dense_out.bias"]


EPS = torch.finfo(F64).eps


def near(out, ref, units):
    """``out`` within ``units`` float64 roundoffs of ``max |ref|`` of the reference."""
    error = (out.detach().double().cpu() - ref).abs().max().item()
    bound = units * EPS * max(ref.abs().max().item(), 1e-300)
    assert error <= bound, (
        f"error {error:.2e} > {bound:.2e} ({error / bound * units:.1f} units)"
    )


def _randn(*shape, device, dtype=F64, scale=1.0):
    return (scale * torch.randn(*shape, dtype=F64)).to(device, dtype)


# ---------------------------------------------------------------- relu2_attention
@pytest.mark.parametrize("normalizer", ["length", "fixed", "sum"])
@pytest.mark.parametrize("causal", [False, True])
def test_relu2_matches_loops(normalizer, causal, device) -> None:
    q, k, v = (_randn(2, 3, 7, 8, device=device, scale=2.0) for _ in range(3))
    keep = torch.rand(2, 1, 7, 7, device=device) > 0.3
    keep[0, 0, 2] = False  # a fully masked row
    length = 5.5 if normalizer == "fixed" else None
    out = relu2_attention(
        q, k, v, normalizer=normalizer, length=length, mask=keep, causal=causal
    )
    visible = (
        keep & torch.ones(7, 7, dtype=torch.bool, device=device).tril()
        if causal
        else keep
    )
    ref = relu2_loops(q, k, v, normalizer=normalizer, length=length, keep=visible)
    near(out, ref, 16)  # measured on the CPU: up to 3.7 units
    assert out[0, :, 2].abs().max() == 0  # nothing to attend: zeros


def test_relu2_float_mask_is_added_before_the_relu(device) -> None:
    q, k, v = (_randn(4, 6, 5, device=device) for _ in range(3))
    bias = _randn(4, 6, 6, device=device)
    bias[:, :, 1] = -math.inf  # key 1 dropped
    out = relu2_attention(q, k, v, mask=bias)
    keep = bias > -math.inf
    ref = relu2_loops(q, k, v, keep=keep, bias=bias.masked_fill(~keep, 0))
    near(out, ref, 16)
    # the dropped key does not count for the "length" normaliser: 5 of 6 visible
    by_five = relu2_attention(q, k, v, mask=bias, normalizer="fixed", length=5)
    near(out, by_five.cpu(), 4)


def test_relu2_one_dimensional_mask_and_nan_padding(device) -> None:
    q, k, v = (_randn(3, 5, 4, device=device) for _ in range(3))
    keep = torch.tensor([True, True, False, True, False], device=device)
    k2, v2 = k.clone(), v.clone()
    k2[:, ~keep], v2[:, ~keep] = math.nan, math.inf
    q2 = q.clone().requires_grad_()
    out = relu2_attention(q2, k2, v2, mask=keep, normalizer="sum")
    ref = relu2_loops(q, k, v, keep=keep.expand(5, 5), normalizer="sum")
    near(out, ref, 16)
    out.sum().backward()
    assert torch.isfinite(q2.grad).all()


def test_relu2_empty_row_has_zero_gradient(device) -> None:
    q, k, v = (_randn(1, 4, 3, device=device).requires_grad_() for _ in range(3))
    keep = torch.ones(4, 4, dtype=torch.bool, device=device)
    keep[1] = False
    for normalizer in ("length", "sum"):
        out = relu2_attention(q, k, v, mask=keep, normalizer=normalizer)
        (grad_q,) = torch.autograd.grad(out[0, 1].sum(), q)
        assert out[0, 1].abs().max() == 0 and grad_q.abs().max() == 0


def test_relu2_sum_rows_are_distributions() -> None:
    q, k = torch.randn(2, 2, 9, 6, dtype=F64), torch.randn(2, 2, 11, 6, dtype=F64)
    eye = torch.eye(11, dtype=F64).expand(2, 2, 11, 11)
    weights = relu2_attention(q, k, eye, normalizer="sum")  # A itself
    totals = weights.sum(-1)
    has_mass = ((q @ k.mT) > 0).any(-1)
    assert torch.allclose(totals[has_mass], torch.ones((), dtype=F64), atol=1e-15)
    assert (totals[~has_mass] == 0).all()


@settings(max_examples=30, deadline=None)
@given(lam=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_relu2_sum_has_no_temperature(lam: float, seed: int) -> None:
    """Positive homogeneity: relu(lam s)^2 / sum relu(lam s)^2 does not depend on lam."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(3, 5, 4, generator=g, dtype=F64) for _ in range(3))
    base = relu2_attention(q, k, v, normalizer="sum")
    scaled = relu2_attention(lam * q, k, v, normalizer="sum")
    torch.testing.assert_close(scaled, base, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_relu2_half_precision_does_not_overflow(dtype, device) -> None:
    q = _randn(2, 6, 16, device=device, scale=8.0)  # logits of several hundred
    k, v = q.clone(), _randn(2, 6, 3, device=device)
    ref = relu2_loops(q, k, v, normalizer="fixed", length=6.0)
    out = relu2_attention(
        q.to(dtype), k.to(dtype), v.to(dtype), normalizer="fixed", length=6.0
    )
    assert out.dtype == dtype and torch.isfinite(out).all()
    unit = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}[dtype]
    # inputs rounded to the dtype move relu^2 logits by ~2 units relative; 8 units
    torch.testing.assert_close(
        out.double().cpu(), ref, atol=8 * unit * ref.abs().max().item(), rtol=0
    )


def test_relu2_empty_inputs(device) -> None:
    for n, m in ((0, 4), (3, 0), (0, 0)):
        q, k, v = (
            _randn(2, n, 5, device=device),
            _randn(2, m, 5, device=device),
            _randn(2, m, 3, device=device),
        )
        for normalizer in ("length", "sum"):
            out = relu2_attention(q, k, v, normalizer=normalizer, causal=True)
            assert out.shape == (2, n, 3) and (out == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"normalizer": "n"}, ValueError, "normalizer"),
        ({"normalizer": "fixed"}, ValueError, "length"),
        ({"length": 4.0}, ValueError, "length"),
        ({"normalizer": "fixed", "length": 0.0}, ValueError, "length"),
        ({"normalizer": "fixed", "length": "4"}, TypeError, "length"),
        ({"mask": torch.ones(3, 3, dtype=torch.long)}, TypeError, "mask"),
        ({"mask": torch.ones(4, 3, dtype=torch.bool)}, ValueError, "mask"),
        ({"causal": 1}, TypeError, "causal"),
    ],
)
def test_relu2_rejects(kwargs, error, name) -> None:
    q, k, v = torch.randn(3, 2, 3, 4).unbind(0)
    with pytest.raises(error, match=name):
        relu2_attention(q, k, v, **kwargs)


# ---------------------------------------------------------------- GatedAttentionUnit
CONFIGS = [
    {"attention": "relu2"},
    {"attention": "relu2", "normalizer": "fixed"},
    {"attention": "relu2", "normalizer": "sum"},
    {"attention": "softmax"},
    {"attention": "softmax_plus"},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(c.values()))
@pytest.mark.parametrize("masked", [False, True])
def test_gau_matches_float64_loops(config, masked, device) -> None:
    unit = GatedAttentionUnit(6, key_dim=8, train_length=5, **config).double()
    with torch.no_grad():  # offsets and scales away from their initial 0 and 1
        unit.beta.normal_()
        unit.gamma.normal_()
    unit = unit.to(device)
    x = _randn(2, 7, 6, device=device)
    keep = None
    if masked:
        keep = (
            torch.arange(7, device=device)
            < torch.tensor([7, 4], device=device)[:, None]
        )[:, None, :]
    out = unit(x, keep)
    ref = gau_reference(unit, x, keep)
    near(out, ref, 16)  # measured on the CPU: up to 1.6 units


def test_gau_scores_are_the_rotated_logits() -> None:
    unit = GatedAttentionUnit(4, key_dim=6).double()
    x = torch.randn(2, 5, 4, dtype=F64)
    p = dict(unit.named_parameters())
    h = torch.nn.functional.silu(unit.dense_in(x))
    z = h[..., 2 * unit.hidden :]
    q = rope_loops(z * p["gamma"][0] + p["beta"][0])
    k = rope_loops(z * p["gamma"][1] + p["beta"][1])
    torch.testing.assert_close(
        unit.scores(x), q @ k.mT / math.sqrt(6), atol=1e-14, rtol=0
    )


def _flash_pair(dim, s, n, *, causal=False):
    """FLASH-pytorch's GAU and ours with its weights.

    What differs and how the comparison removes it: FLASH-pytorch normalises its input
    (LayerNorm; here ``norm_klass=nn.Identity``), adds the input back (``add_residual``;
    off), adds a learned T5 relative-position bias to the logits (its embedding is
    zeroed) and has no RoPE (``rope=False`` here). It computes ``relu(q k^T / n)^2``,
    i.e. ``relu(q k^T)^2 / n^2``, where ours has ``relu(q k^T / sqrt(s))^2 / Z``; with
    ``Z`` fixed at ``n^2 / s`` (``train_length``) the two are the same function. Its two
    dense layers ``to_hidden`` (value, gate) and ``to_qk`` are our one ``dense_in``
    (gate ``u``, value ``v``, ``z``), stacked.
    """
    flash_pytorch = pytest.importorskip("flash_pytorch")
    theirs = flash_pytorch.GAU(
        dim=dim,
        query_key_dim=s,
        expansion_factor=2.0,
        add_residual=False,
        causal=causal,
        norm_klass=torch.nn.Identity,
    ).double()
    assert (n * n) % s == 0
    ours = GatedAttentionUnit(
        dim, key_dim=s, normalizer="fixed", train_length=n * n // s, rope=False
    ).double()
    e = 2 * dim
    with torch.no_grad():
        theirs.rel_pos_bias.relative_attention_bias.weight.zero_()
        theirs.offsetscale.beta.normal_()
        theirs.offsetscale.gamma.normal_()
        w, b = theirs.to_hidden[0].weight, theirs.to_hidden[0].bias
        ours.dense_in.weight.copy_(torch.cat([w[e:], w[:e], theirs.to_qk[0].weight]))
        ours.dense_in.bias.copy_(torch.cat([b[e:], b[:e], theirs.to_qk[0].bias]))
        ours.gamma.copy_(theirs.offsetscale.gamma)
        ours.beta.copy_(theirs.offsetscale.beta)
        ours.dense_out.weight.copy_(theirs.to_out[0].weight)
        ours.dense_out.bias.copy_(theirs.to_out[0].bias)
    return ours, theirs


@pytest.mark.parametrize("causal", [False, True])
def test_gau_matches_flash_pytorch(causal, device) -> None:
    ours, theirs = _flash_pair(10, 16, 12, causal=causal)  # Z = 144 / 16 = 9
    ours, theirs = ours.to(device), theirs.to(device)
    x = _randn(3, 12, 10, device=device, scale=2.0)
    padding = (
        torch.arange(12, device=device)
        < torch.tensor([12, 9, 5], device=device)[:, None]
    )
    expected = theirs(x, mask=padding)
    out = ours(x, padding[:, None, :], causal=causal)
    near(out, expected.detach().cpu(), 8)  # measured on the CPU: up to 1.6 units


def test_gau_softmax_plus_is_softmax_at_the_training_length() -> None:
    soft = GatedAttentionUnit(4, key_dim=8, attention="softmax", train_length=9)
    plus = GatedAttentionUnit(4, key_dim=8, attention="softmax_plus", train_length=9)
    plus.load_state_dict(soft.state_dict())
    x = torch.randn(2, 9, 4)
    torch.testing.assert_close(plus(x), soft(x), atol=1e-6, rtol=0)
    assert not torch.allclose(plus(x[:, :5]), soft(x[:, :5]), atol=1e-4)


def test_gau_fixed_and_length_agree_at_the_training_length_only() -> None:
    fixed = GatedAttentionUnit(4, key_dim=8, normalizer="fixed", train_length=9)
    by_n = GatedAttentionUnit(4, key_dim=8, normalizer="length", train_length=9)
    by_n.load_state_dict(fixed.state_dict())
    x = torch.randn(2, 18, 4)
    torch.testing.assert_close(by_n(x[:, :9]), fixed(x[:, :9]), atol=1e-6, rtol=0)
    # length 18: "length" divides by 18 instead of 9, so its output is half of fixed's
    # before the output bias
    half = by_n(x) - by_n.dense_out.bias
    torch.testing.assert_close(half, (fixed(x) - fixed.dense_out.bias) / 2)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(c.values()))
def test_gau_causal_prefix_does_not_see_the_future(config) -> None:
    unit = GatedAttentionUnit(4, key_dim=8, train_length=6, **config)
    x = torch.randn(2, 10, 4)
    torch.testing.assert_close(
        unit(x, causal=True)[:, :6], unit(x[:, :6], causal=True), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gau_half_precision(dtype, device) -> None:
    unit = GatedAttentionUnit(8, key_dim=8, train_length=16).to(device)
    x = torch.randn(2, 16, 8, device=device)
    ref = unit(x)
    out = unit.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    unit_roundoff = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}[dtype]
    # rounding of weights and activations through three layers: measured up to 1.05
    # units of the dtype, relative to the largest output, over five draws
    tol = 6 * unit_roundoff * ref.abs().max().item()
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=0)


def test_gau_empty_batch_and_sequence(device) -> None:
    unit = GatedAttentionUnit(4, key_dim=4).to(device)
    for shape in ((0, 5, 4), (2, 0, 4)):
        out = unit(torch.randn(*shape, device=device))
        assert out.shape == shape


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"dim": 0}, ValueError, "dim"),
        ({"dim": 4, "expansion": 1.5}, TypeError, "expansion"),
        ({"dim": 4, "key_dim": 5}, ValueError, "key_dim"),
        ({"dim": 4, "attention": "linear"}, ValueError, "attention"),
        (
            {"dim": 4, "attention": "softmax", "normalizer": "sum"},
            ValueError,
            "normalizer",
        ),
        ({"dim": 4, "normalizer": "n"}, ValueError, "normalizer"),
        ({"dim": 4, "train_length": 1}, ValueError, "train_length"),
        ({"dim": 4, "rope": 1}, TypeError, "rope"),
    ],
)
def test_gau_constructor_rejects(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        GatedAttentionUnit(**kwargs)


def test_gau_forward_rejects() -> None:
    unit = GatedAttentionUnit(4, key_dim=4)
    with pytest.raises(ValueError, match="x"):
        unit(torch.randn(5, 4))
    with pytest.raises(ValueError, match="dim=4"):
        unit(torch.randn(2, 5, 3))
    with pytest.raises(TypeError, match="dtype"):
        unit(torch.randn(2, 5, 4, dtype=F64))
    with pytest.raises(ValueError, match="mask"):
        unit(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="causal"):
        unit(torch.randn(2, 5, 4), causal=None)


# ---------------------------------------------------------------- local_mean_task
def test_local_mean_task_target() -> None:
    values, target = local_mean_task(torch.Generator().manual_seed(0), 3, 9, window=2)
    for b in range(3):
        for i in range(9):
            window = values[b, max(i - 2, 0) : i + 3].double()
            assert abs(target[b, i].item() - window.mean().item()) < 1e-6
    again = local_mean_task(torch.Generator().manual_seed(0), 3, 9, window=2)
    assert torch.equal(again[0], values) and torch.equal(again[1], target)


def test_local_mean_task_rejects() -> None:
    g = torch.Generator()
    with pytest.raises(TypeError, match="generator"):
        local_mean_task(0, 3, 9)
    with pytest.raises(ValueError, match="length"):
        local_mean_task(g, 3, 0)
    with pytest.raises(ValueError, match="window"):
        local_mean_task(g, 3, 9, window=-1)
