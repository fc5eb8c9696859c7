"""Hostile inputs for ``kexue.attention`` entropy normalisation, against float64
references written here from the definition ``p^γ / Σ p^γ``."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.attention as A

F64 = torch.float64
INF = math.inf
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
PN, EN, CS = (
    "attention.power_normalize",
    "attention.entropy_normalize",
    "attention.constant_entropy_sample",
)


def power64(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    p = torch.softmax(logits.detach().double().cpu(), -1) ** gamma
    return p / p.sum(-1, keepdim=True)


def entropy64(p: torch.Tensor) -> torch.Tensor:
    p = p.detach().double().cpu()
    return -torch.special.xlogy(p, p).sum(-1)


for target, call in (
    (PN, lambda x: A.power_normalize(x, 1.0)),
    (EN, lambda x: A.entropy_normalize(x, 1.0)),
    (CS, lambda x: A.constant_entropy_sample(x, 1.0)),
):
    error(
        target,
        "a list is a TypeError",
        TypeError,
        "logits",
        lambda d, c=call: c([1.0, 2.0]),
    )
    error(
        target,
        "integer logits are a TypeError",
        TypeError,
        "logits",
        lambda d, c=call: c(torch.ones(3, dtype=torch.long, device=d)),
    )
    error(
        target,
        "a rank-0 tensor is a ValueError",
        ValueError,
        "logits",
        lambda d, c=call: c(torch.tensor(1.0, device=d)),
    )
error(
    PN,
    "negative gamma",
    ValueError,
    "gamma",
    lambda d: A.power_normalize(torch.randn(3, device=d), -1.0),
)
error(
    PN,
    "gamma of the wrong shape",
    ValueError,
    "gamma",
    lambda d: A.power_normalize(torch.randn(2, 3, device=d), torch.ones(3, device=d)),
)
error(
    PN,
    "dim out of range",
    ValueError,
    "dim",
    lambda d: A.power_normalize(torch.randn(2, 3, device=d), 1.0, dim=2),
)
error(
    EN,
    "NaN target",
    ValueError,
    "target",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), math.nan),
)
error(
    EN,
    "target of the wrong shape",
    ValueError,
    "target",
    lambda d: A.entropy_normalize(torch.randn(2, 3, device=d), torch.ones(3, device=d)),
)
error(
    EN,
    "iterations 2.5",
    TypeError,
    "iterations",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), 1.0, iterations=2.5),
)
error(
    EN,
    "return_gamma 1",
    TypeError,
    "return_gamma",
    lambda d: A.entropy_normalize(torch.randn(3, device=d), 1.0, return_gamma=1),
)
error(
    CS,
    "generator 0",
    TypeError,
    "generator",
    lambda d: A.constant_entropy_sample(torch.randn(3, device=d), 1.0, generator=0),
)
error(
    CS,
    "a row of -inf only",
    ValueError,
    "logits",
    lambda d: A.constant_entropy_sample(torch.full((2, 3), -INF, device=d), 1.0),
)
error(
    CS,
    "n = 0 with a batch",
    ValueError,
    "logits",
    lambda d: A.constant_entropy_sample(torch.randn(2, 0, device=d), 1.0),
)


@case(PN, "float64 against p^γ/Σp^γ, odd view", "value")
def _(device):
    x = odd_view(4, 7, device=device, dtype=F64)
    close(A.power_normalize(x, 2.5), power64(x, 2.5), atol=1e-14)


@case(PN, "float16 logits of scale 20 computed in float32", "value")
def _(device):
    x = (20 * torch.randn(3, 9, device=device)).half()
    out = A.power_normalize(x, 3.0)
    assert out.dtype == torch.float16
    close(out, power64(x, 3.0), atol=2e-3)


@case(EN, "reaches the target, far target log 1.5 in float64", "value")
def _(device):
    x = 4 * torch.randn(5, 40, device=device, dtype=F64)
    out = A.entropy_normalize(x, math.log(1.5), iterations=12)
    close(entropy64(out), torch.full((5,), math.log(1.5), dtype=F64), atol=1e-10)


@case(EN, "masked, single-point and empty rows are finite", "finite")
def _(device):
    x = torch.tensor([[0.0, -INF, -INF], [-INF] * 3, [1.0, 2.0, -INF]], device=device)
    out, gamma = A.entropy_normalize(x, 0.3, return_gamma=True)
    finite(out, gamma)
    assert out[1].abs().sum() == 0 and out[0, 0] == 1


@case(EN, "gradients finite with -inf entries", "grad")
def _(device):
    x = torch.randn(3, 6, device=device, dtype=F64)
    x = x.masked_fill(torch.arange(6, device=device) > 3, -INF).requires_grad_()
    out = A.entropy_normalize(x, 0.8)
    (out * torch.arange(6, device=device)).sum().backward()
    finite(x.grad)


for target, call in (
    (PN, lambda x: A.power_normalize(x, 2.0)),
    (EN, lambda x: A.entropy_normalize(x, 1.0)),
    (CS, lambda x: A.constant_entropy_sample(x, 1.0)),
):

    @case(target, "an empty batch gives an empty result", "empty")
    def _(device, c=call):
        out = c(torch.randn(0, 5, device=device))
        assert out.shape[0] == 0

    @case(target, "meta tensors give meta results", "device")
    def _(device, c=call):
        out = c(torch.randn(2, 5, device="meta"))
        assert out.device.type == "meta" and out.shape[0] == 2


@case(CS, "samples stay in the support", "value")
def _(device):
    x = torch.randn(500, 6, device=device).masked_fill(
        torch.arange(6, device=device) >= 4, -INF
    )
    idx = A.constant_entropy_sample(
        x, 1.0, generator=torch.Generator(device).manual_seed(0)
    )
    assert idx.dtype == torch.long and idx.shape == (500,) and int(idx.max()) < 4
