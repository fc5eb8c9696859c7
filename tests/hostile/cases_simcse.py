"""Hostile inputs for ``kexue.representations`` SimCSE (``info_nce``, ``simcse_loss``,
``alignment``, ``uniformity``), against float64 references written here as loops over
rows and pairs from the definitions."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite, odd_view
from torch import nn

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.representations.")
case, error = CASES.case, CASES.error


def info_nce64(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """-log softmax of cos(a_i, b_j) / tau at j = i, a loop over rows, float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    total = torch.zeros((), dtype=F64)
    for i in range(a.shape[0]):
        logits = torch.stack(
            [a[i] @ b[j] / (a[i].norm() * b[j].norm()) for j in range(b.shape[0])]
        )
        logits = logits / tau
        total -= logits[i] - torch.logsumexp(logits, 0)
    return total / a.shape[0]


def alignment64(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    terms = [((a[i] - b[i]) ** 2).sum() ** (alpha / 2) for i in range(a.shape[0])]
    return torch.stack(terms).mean()


def uniformity64(x: torch.Tensor, t: float) -> torch.Tensor:
    x = x.detach().double().cpu()
    n = x.shape[0]
    terms = [
        math.exp(-t * ((x[i] - x[j]) ** 2).sum().item())
        for i in range(n)
        for j in range(i + 1, n)
    ]
    return torch.tensor(math.log(sum(terms) / len(terms)), dtype=F64)


def pair(n: int, d: int, device, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=F64).to(device, dtype)
    b = torch.randn(n, d, generator=g, dtype=F64).to(device, dtype)
    return a, b


class Head(nn.Module):
    """Dropout then a linear map on sentence vectors; ``mask`` pools token rows."""

    def __init__(self, p: float = 0.1, d: int = 6) -> None:
        super().__init__()
        self.drop, self.dense = nn.Dropout(p), nn.Linear(d, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            x = torch.where(mask[..., None], x, torch.zeros_like(x)).sum(1)
        return self.dense(self.drop(x))


def head(device, p: float = 0.1) -> Head:
    torch.manual_seed(0)
    return Head(p).to(device).train()


# ---------------------------------------------------------------- info_nce
@case("info_nce", "float64 against a loop over rows", "value")
def _(device):
    a, b = pair(7, 5, device, F64)
    for tau in (0.05, 1.0):
        close(R.info_nce(a, b, temperature=tau), info_nce64(a, b, tau), atol=1e-12)
    both = (info_nce64(a, b, 0.1) + info_nce64(b, a, 0.1)) / 2
    close(R.info_nce(a, b, temperature=0.1, symmetric=True), both, atol=1e-12)


@case("info_nce", "float16 at tau = 0.01: computed in float32, finite", "finite")
def _(device):
    a, b = pair(16, 8, device, torch.float16)
    out = R.info_nce(a, b, temperature=0.01)
    assert out.dtype == torch.float16
    close(out, info_nce64(a, b, 0.01), atol=0.0, rtol=1e-2)


@case("info_nce", "bfloat16 and tiny tau 1e-4: finite", "finite")
def _(device):
    a, b = pair(8, 4, device, torch.bfloat16)
    out = R.info_nce(a, b, temperature=1e-4)
    finite(out)
    assert out.dtype == torch.bfloat16


@case("info_nce", "zero rows: cosine 0, finite loss and gradient", "grad")
def _(device):
    a = torch.zeros(4, 3, device=device, dtype=F64, requires_grad=True)
    b = torch.zeros(4, 3, device=device, dtype=F64)
    out = R.info_nce(a, b)
    close(out, torch.tensor(math.log(4), dtype=F64), atol=1e-12)
    out.backward()
    finite(a.grad)


@case("info_nce", "empty batch: 0 with zero gradient", "empty")
def _(device):
    a = torch.empty(0, 5, device=device, requires_grad=True)
    out = R.info_nce(a, torch.empty(0, 5, device=device))
    assert out.shape == () and out.item() == 0.0
    out.backward()
    assert a.grad.shape == (0, 5)


@case("info_nce", "batch of one: no negative, loss 0", "value")
def _(device):
    a, b = pair(1, 3, device, F64)
    close(R.info_nce(a, b), torch.zeros((), dtype=F64), atol=1e-15)


@case("info_nce", "odd-offset and transposed views", "device")
def _(device):
    a = odd_view(6, 4, device=device, dtype=F64)
    b = torch.randn(4, 6, device=device, dtype=F64).T
    close(R.info_nce(a, b), info_nce64(a, b, 0.05), atol=1e-12)


@case("info_nce", "meta tensors propagate a scalar", "device")
def _(device):
    out = R.info_nce(torch.empty(5, 3, device=META), torch.empty(5, 3, device=META))
    assert out.device.type == "meta" and out.shape == ()


error(
    "info_nce",
    "a not a tensor",
    TypeError,
    "^a must",
    lambda d: R.info_nce([[1.0]], torch.ones(1, 1, device=d)),
)
error(
    "info_nce",
    "integer b",
    TypeError,
    "^b must have a floating",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d), torch.ones(2, 2, dtype=torch.long, device=d)
    ),
)
error(
    "info_nce",
    "a 3-D",
    ValueError,
    "^a must have 2 dimensions",
    lambda d: R.info_nce(torch.ones(2, 2, 2, device=d), torch.ones(2, 2, device=d)),
)
error(
    "info_nce",
    "shapes differ",
    ValueError,
    "same shape",
    lambda d: R.info_nce(torch.ones(3, 2, device=d), torch.ones(2, 2, device=d)),
)
error(
    "info_nce",
    "dtypes differ",
    TypeError,
    "b has dtype",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d, dtype=F64)
    ),
)
error(
    "info_nce",
    "b on meta, a not",
    ValueError,
    "b is on meta",
    lambda d: R.info_nce(torch.ones(2, 2, device=d), torch.ones(2, 2, device=META)),
)
error(
    "info_nce",
    "no column",
    ValueError,
    "at least one column",
    lambda d: R.info_nce(torch.ones(2, 0, device=d), torch.ones(2, 0, device=d)),
)
error(
    "info_nce",
    "temperature 0",
    ValueError,
    "temperature must be positive",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d), temperature=0
    ),
)
error(
    "info_nce",
    "temperature inf",
    ValueError,
    "temperature must be a finite",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d), temperature=math.inf
    ),
)
error(
    "info_nce",
    "temperature a tensor",
    TypeError,
    "temperature must be a number",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d),
        torch.ones(2, 2, device=d),
        temperature=torch.tensor(0.1),
    ),
)
error(
    "info_nce",
    "symmetric = 1",
    TypeError,
    "symmetric",
    lambda d: R.info_nce(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d), symmetric=1
    ),
)


# ---------------------------------------------------------------- simcse_loss
@case("simcse_loss", "equals info_nce of two dropout passes", "value")
def _(device):
    model = head(device)
    x = torch.randn(6, 6, device=device)
    torch.manual_seed(5)
    loss = R.simcse_loss(model, x, None, temperature=0.1)
    torch.manual_seed(5)
    first, second = model(x, None), model(x, None)
    close(loss, info_nce64(first, second, 0.1), atol=1e-5)


@case("simcse_loss", "token features with padding holding NaN: finite", "finite")
def _(device):
    model = head(device)
    mask = torch.arange(5, device=device) < torch.tensor([[5], [2], [1]], device=device)
    x = torch.randn(3, 5, 6, device=device).masked_fill(~mask[..., None], math.nan)
    loss = R.simcse_loss(model, x, mask)
    finite(loss)
    loss.backward()
    finite(model.dense.weight.grad)


@case("simcse_loss", "empty batch: 0", "empty")
def _(device):
    loss = R.simcse_loss(head(device), torch.empty(0, 6, device=device), None)
    assert loss.shape == () and loss.item() == 0.0


error(
    "simcse_loss",
    "encoder not callable",
    TypeError,
    "encoder must be callable",
    lambda d: R.simcse_loss(3, torch.ones(2, 6, device=d), None),
)
error(
    "simcse_loss",
    "module in eval mode",
    ValueError,
    "encoder is in eval mode",
    lambda d: R.simcse_loss(head(d).eval(), torch.ones(2, 6, device=d), None),
)
error(
    "simcse_loss",
    "no dropout: identical passes",
    ValueError,
    "identical vectors",
    lambda d: R.simcse_loss(head(d, 0.0), torch.randn(3, 6, device=d), None),
)
error(
    "simcse_loss",
    "integer mask",
    TypeError,
    "mask must be boolean",
    lambda d: R.simcse_loss(
        head(d),
        torch.ones(2, 3, 6, device=d),
        torch.ones(2, 3, dtype=torch.long, device=d),
    ),
)
error(
    "simcse_loss",
    "mask of the wrong shape",
    ValueError,
    "mask must have shape",
    lambda d: R.simcse_loss(
        head(d),
        torch.ones(2, 3, 6, device=d),
        torch.ones(2, 4, dtype=torch.bool, device=d),
    ),
)
error(
    "simcse_loss",
    "ids a list",
    TypeError,
    "ids must be",
    lambda d: R.simcse_loss(head(d), [[1.0] * 6], None),
)
error(
    "simcse_loss",
    "bool ids",
    TypeError,
    "ids must have a real",
    lambda d: R.simcse_loss(
        head(d), torch.ones(2, 6, dtype=torch.bool, device=d), None
    ),
)
error(
    "simcse_loss",
    "encoder returns 3-D",
    ValueError,
    "encoder must return",
    lambda d: R.simcse_loss(lambda x, m: x, torch.randn(2, 3, 6, device=d), None),
)
error(
    "simcse_loss",
    "encoder returns ints",
    TypeError,
    "encoder must return a floating",
    lambda d: R.simcse_loss(
        lambda x, m: x, torch.ones(2, 6, dtype=torch.long, device=d), None
    ),
)
error(
    "simcse_loss",
    "negative temperature",
    ValueError,
    "temperature",
    lambda d: R.simcse_loss(
        head(d), torch.ones(2, 6, device=d), None, temperature=-1.0
    ),
)


# ---------------------------------------------------------------- alignment
@case("alignment", "float64 against a loop, alpha 0.5, 2, 3", "value")
def _(device):
    a, b = pair(9, 4, device, F64)
    for alpha in (0.5, 2.0, 3.0):
        close(R.alignment(a, b, alpha=alpha), alignment64(a, b, alpha), atol=1e-12)


@case("alignment", "equal rows, alpha 0.5: 0 with zero gradient", "grad")
def _(device):
    a = torch.randn(4, 3, device=device, dtype=F64, requires_grad=True)
    out = R.alignment(a, a.detach().clone(), alpha=0.5)
    out.backward()
    assert out.item() == 0.0 and torch.equal(a.grad, torch.zeros_like(a))


@case("alignment", "float16, sums of squares past 65504: float32 inside", "finite")
def _(device):
    a, b = pair(8, 64, device, torch.float16)
    a, b = 100 * a, -100 * b  # squared distances ~1e6 overflow float16, norms do not
    out = R.alignment(a, b, alpha=1.0)
    assert out.dtype == torch.float16
    close(out, alignment64(a, b, 1.0), atol=0, rtol=2e-3)


@case("alignment", "meta tensors propagate", "device")
def _(device):
    out = R.alignment(torch.empty(3, 2, device=META), torch.empty(3, 2, device=META))
    assert out.device.type == "meta"


error(
    "alignment",
    "no pair",
    ValueError,
    "at least one pair",
    lambda d: R.alignment(torch.ones(0, 2, device=d), torch.ones(0, 2, device=d)),
)
error(
    "alignment",
    "alpha 0",
    ValueError,
    "alpha must be positive",
    lambda d: R.alignment(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d), alpha=0
    ),
)
error(
    "alignment",
    "alpha a string",
    TypeError,
    "alpha must be a number",
    lambda d: R.alignment(
        torch.ones(2, 2, device=d), torch.ones(2, 2, device=d), alpha="2"
    ),
)
error(
    "alignment",
    "shapes differ",
    ValueError,
    "same shape",
    lambda d: R.alignment(torch.ones(2, 2, device=d), torch.ones(2, 3, device=d)),
)
error(
    "alignment",
    "complex a",
    TypeError,
    "^a must have a floating",
    lambda d: R.alignment(
        torch.ones(2, 2, dtype=torch.complex64, device=d), torch.ones(2, 2, device=d)
    ),
)


# ---------------------------------------------------------------- uniformity
@case("uniformity", "float64 against a loop over pairs", "value")
def _(device):
    x = torch.nn.functional.normalize(pair(10, 4, device, F64)[0], dim=-1)
    for t in (0.5, 2.0, 20.0):
        close(R.uniformity(x, t=t), uniformity64(x, t), atol=1e-12)


@case("uniformity", "far-apart rows (exp underflows): finite, exact", "finite")
def _(device):
    x = 30 * torch.eye(5, device=device, dtype=F64)  # distances^2 = 1800: e^-3600
    close(R.uniformity(x), torch.tensor(-3600.0, dtype=F64), atol=1e-9)


@case("uniformity", "equal rows: 0 with zero gradient", "grad")
def _(device):
    x = torch.ones(4, 3, device=device, dtype=F64, requires_grad=True)
    out = R.uniformity(x)
    out.backward()
    assert out.item() == 0.0
    finite(x.grad)
    close(x.grad, torch.zeros(4, 3, dtype=F64), atol=1e-12)


@case("uniformity", "float16 rows: float32 inside, finite", "finite")
def _(device):
    x = torch.nn.functional.normalize(pair(20, 8, device)[0], dim=-1).half()
    out = R.uniformity(x)
    assert out.dtype == torch.float16
    close(out, uniformity64(x, 2.0), atol=5e-3)


@case("uniformity", "odd-offset view", "device")
def _(device):
    x = odd_view(6, 3, device=device, dtype=F64)
    close(R.uniformity(x), uniformity64(x, 2.0), atol=1e-12)


error(
    "uniformity",
    "one row",
    ValueError,
    "x needs at least 2 rows",
    lambda d: R.uniformity(torch.ones(1, 3, device=d)),
)
error(
    "uniformity",
    "empty",
    ValueError,
    "x needs at least 2 rows",
    lambda d: R.uniformity(torch.ones(0, 3, device=d)),
)
error(
    "uniformity",
    "1-D x",
    ValueError,
    "x must have 2 dimensions",
    lambda d: R.uniformity(torch.ones(3, device=d)),
)
error(
    "uniformity",
    "t negative",
    ValueError,
    "t must be positive",
    lambda d: R.uniformity(torch.ones(3, 2, device=d), t=-2),
)
error(
    "uniformity",
    "integer x",
    TypeError,
    "x must have a floating",
    lambda d: R.uniformity(torch.ones(3, 2, dtype=torch.int32, device=d)),
)
