"""Hostile inputs for ``kexue.probability`` (closed-form Gaussian classifier and
regression), against float64 references written here from the definitions."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite

import kexue.probability as P

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error
CLASSIFIER = "probability.gaussian_classifier"
REGRESSION = "probability.gaussian_regression"
POOLED = "probability.pooled_covariance"


def data(device, n: int = 30, d: int = 4, classes: int = 3, dtype=torch.float32):
    g = torch.Generator().manual_seed(n + d)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g, dtype=F64) + y[:, None].double()
    return x.to(device, dtype), y.to(device)


def reference(x: torch.Tensor, y: torch.Tensor, classes: int, shrinkage: float = 0.0):
    """Sigma, W and b by loops over classes, in float64 on the CPU."""
    x, y = x.detach().double().cpu(), y.cpu()
    n, d = x.shape
    means = torch.stack([x[y == i].mean(0) for i in range(classes)])
    sigma = sum(
        torch.outer(r - means[c], r - means[c])
        for r, c in zip(x, y.tolist(), strict=True)
    )
    sigma = sigma / n
    sigma = (1 - shrinkage) * sigma + shrinkage * sigma.trace() / d * torch.eye(d, dtype=F64)  # fmt: skip
    weight = torch.linalg.solve(sigma, means.T)
    prior = torch.tensor([math.log(float((y == i).sum()) / n) for i in range(classes)])
    return sigma, weight, prior.double() - 0.5 * (means * weight.T).sum(-1)


# ---------------------------------------------------------------- values
@case(POOLED, "float32 input against the float64 loop", "value")
def _(device):
    x, y = data(device)
    close(P.pooled_covariance(x, y), reference(x, y, 3)[0], atol=1e-6)


@case(CLASSIFIER, "float32, shrinkage 0.2, against the float64 loop", "value")
def _(device):
    x, y = data(device)
    _, weight, bias = reference(x, y, 3, 0.2)
    w, b = P.gaussian_classifier(x, y, shrinkage=0.2)
    assert w.dtype == torch.float32 and w.device.type == device.type
    close(w, weight, atol=1e-5, rtol=1e-5)
    close(b, bias, atol=1e-5, rtol=1e-5)


@case(CLASSIFIER, "bfloat16 input is fitted in float64, returned in bfloat16", "value")
def _(device):
    x, y = data(device, dtype=torch.bfloat16)
    _, weight, bias = reference(x, y, 3)
    w, b = P.gaussian_classifier(x, y)
    assert w.dtype == torch.bfloat16
    close(w, weight, atol=0, rtol=2**-8)
    close(b, bias, atol=0, rtol=2**-8)


@case(CLASSIFIER, "n < d and a constant feature: finite, no weight on it", "finite")
def _(device):
    x, y = data(device, n=6, d=20)
    x[:, 3] = 7.0
    w, b = P.gaussian_classifier(x, y)
    finite(w, b)
    assert w[3].abs().max() < 1e-4


@case(CLASSIFIER, "all points at their class means (Sigma = 0): zero weights", "finite")
def _(device):
    y = torch.tensor([0, 0, 1, 1], device=device)
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0], [3.0, -1.0]], device=device)
    for s in (0.0, 0.5):
        w, b = P.gaussian_classifier(x, y, shrinkage=s)
        assert (w == 0).all()
        close(b, torch.log(torch.tensor([0.5, 0.5], dtype=F64)), atol=1e-7)


@case(CLASSIFIER, "covariance='total', float32, against the float64 loop", "value")
def _(device):
    x, y = data(device)
    x64 = x.double().cpu()
    centred = x64 - x64.mean(0)
    total = centred.T @ centred / x64.shape[0]
    means = torch.stack([x64[y.cpu() == i].mean(0) for i in range(3)])
    weight = torch.linalg.solve(total, means.T)
    w, _ = P.gaussian_classifier(x, y, covariance="total")
    assert w.dtype == torch.float32 and w.device.type == device.type
    close(w, weight, atol=1e-5, rtol=1e-5)


@case(CLASSIFIER, "covariance='total', one class, one sample: zeros", "finite")
def _(device):
    x = torch.tensor([[1.0, -2.0]], device=device)
    w, b = P.gaussian_classifier(
        x, torch.zeros(1, dtype=torch.long, device=device), covariance="total"
    )
    close(w, torch.zeros(2, 1, dtype=F64), atol=0)
    close(b, torch.zeros(1, dtype=F64), atol=0)


@case(
    CLASSIFIER, "num_classes beyond the labels: weight 0, bias -inf, no NaN", "finite"
)
def _(device):
    x, y = data(device, classes=2)
    w, b = P.gaussian_classifier(x, y, num_classes=4)
    assert (w[:, 2:] == 0).all() and torch.isneginf(b[2:]).all()
    finite(w, b[:2], torch.softmax(x @ w + b, -1))


@case(CLASSIFIER, "one sample, one class: W = Sigma^+ mu = 0, b = 0", "finite")
def _(device):
    x = torch.tensor([[1.0, -2.0]], device=device)
    w, b = P.gaussian_classifier(x, torch.zeros(1, dtype=torch.long, device=device))
    close(w, torch.zeros(2, 1, dtype=F64), atol=0)
    close(b, torch.zeros(1, dtype=F64), atol=0)


@case(CLASSIFIER, "no features (d = 0): W (0, C), b the log priors", "empty")
def _(device):
    y = torch.tensor([0, 1, 1, 1], device=device)
    w, b = P.gaussian_classifier(torch.zeros(4, 0, device=device), y)
    assert w.shape == (0, 2)
    close(b, torch.log(torch.tensor([0.25, 0.75], dtype=F64)), atol=1e-7)


@case(POOLED, "no features (d = 0): a (0, 0) covariance", "empty")
def _(device):
    out = P.pooled_covariance(torch.zeros(3, 0, device=device), torch.zeros(3, dtype=torch.long, device=device))  # fmt: skip
    assert out.shape == (0, 0)


@case(CLASSIFIER, "non-contiguous views of x and y", "device")
def _(device):
    x, y = data(device, n=60)
    xt = x.T.contiguous().T  # column-major view
    w, b = P.gaussian_classifier(xt[::2], y[::2])
    _, weight, bias = reference(x[::2], y[::2], 3)
    close(w, weight, atol=1e-5, rtol=1e-5)
    close(b, bias, atol=1e-5, rtol=1e-5)


@case(REGRESSION, "float32 against float64 least squares; 1-D y", "value")
def _(device):
    x, _ = data(device, n=40, d=3)
    y = (
        x.double() @ torch.tensor([1.0, -2.0, 0.5], dtype=F64, device=device) + 3
    ).float()
    w, b = P.gaussian_regression(x, y)
    design = torch.cat([x.double().cpu(), torch.ones(40, 1, dtype=F64)], 1)
    solution = torch.linalg.lstsq(design, y.double().cpu()[:, None]).solution[:, 0]
    close(w, solution[:3], atol=1e-5)
    close(b, solution[3], atol=1e-5)


@case(REGRESSION, "constant input column (singular Sigma_xx): finite", "finite")
def _(device):
    x, _ = data(device, n=10, d=3, dtype=F64)
    x[:, 1] = 2.0
    w, b = P.gaussian_regression(x, torch.randn(10, 2, dtype=F64, device=device))
    finite(w, b)
    assert w[1].abs().max() < 1e-10


@case(REGRESSION, "targets with no columns (n, 0): W (d, 0), b (0,)", "empty")
def _(device):
    x, _ = data(device, dtype=F64)
    w, b = P.gaussian_regression(x, torch.zeros(30, 0, dtype=F64, device=device))
    assert w.shape == (4, 0) and b.shape == (0,)


# ---------------------------------------------------------------- errors
def _labels(device, n=30):
    return torch.arange(n, device=device) % 3


for target in (CLASSIFIER, POOLED):
    fit = P.gaussian_classifier if target == CLASSIFIER else P.pooled_covariance
    error(
        target, "x a list", TypeError, "x", lambda d, f=fit: f([[1.0]], _labels(d, 1))
    )
    error(target, "integer x", TypeError, "x", lambda d, f=fit: f(torch.ones(30, 2, dtype=torch.long, device=d), _labels(d)))  # fmt: skip
    error(target, "x of rank 1", ValueError, "x", lambda d, f=fit: f(torch.ones(30, device=d), _labels(d)))  # fmt: skip
    error(target, "x with no rows", ValueError, "x", lambda d, f=fit: f(torch.ones(0, 2, device=d), _labels(d, 0)))  # fmt: skip
    error(target, "NaN in x", ValueError, "x", lambda d, f=fit: f(torch.full((30, 2), math.nan, device=d), _labels(d)))  # fmt: skip
    error(target, "float y", TypeError, "y", lambda d, f=fit: f(torch.ones(30, 2, device=d), torch.zeros(30, device=d)))  # fmt: skip
    error(target, "y of the wrong length", ValueError, "y", lambda d, f=fit: f(torch.ones(30, 2, device=d), _labels(d, 29)))  # fmt: skip
    error(target, "negative label", ValueError, "y", lambda d, f=fit: f(torch.ones(30, 2, device=d), _labels(d) - 1))  # fmt: skip
    error(target, "label >= num_classes", ValueError, "num_classes", lambda d, f=fit: f(torch.ones(30, 2, device=d), _labels(d), num_classes=2))  # fmt: skip
    error(target, "num_classes 2.0", TypeError, "num_classes", lambda d, f=fit: f(torch.ones(30, 2, device=d), _labels(d), num_classes=2.0))  # fmt: skip
    error(target, "y on another device", ValueError, "y", lambda d, f=fit: f(torch.ones(30, 2, device=d), _labels(META)))  # fmt: skip
    error(target, "meta x", ValueError, "x", lambda d, f=fit: f(torch.ones(30, 2, device=META), _labels(META)))  # fmt: skip

error(CLASSIFIER, "covariance 'within'", ValueError, "covariance", lambda d: P.gaussian_classifier(*data(d), covariance="within"))  # fmt: skip
error(CLASSIFIER, "covariance None", ValueError, "covariance", lambda d: P.gaussian_classifier(*data(d), covariance=None))  # fmt: skip
error(CLASSIFIER, "shrinkage 1.5", ValueError, "shrinkage", lambda d: P.gaussian_classifier(*data(d), shrinkage=1.5))  # fmt: skip
error(CLASSIFIER, "shrinkage -0.1", ValueError, "shrinkage", lambda d: P.gaussian_classifier(*data(d), shrinkage=-0.1))  # fmt: skip
error(CLASSIFIER, "shrinkage a tensor", TypeError, "shrinkage", lambda d: P.gaussian_classifier(*data(d), shrinkage=torch.tensor(0.1)))  # fmt: skip
error(REGRESSION, "integer y", TypeError, "y", lambda d: P.gaussian_regression(data(d)[0], _labels(d)))  # fmt: skip
error(REGRESSION, "float64 y with float32 x", TypeError, "y", lambda d: P.gaussian_regression(data(d)[0], torch.ones(30, device=d, dtype=F64)))  # fmt: skip
error(REGRESSION, "y of rank 3", ValueError, "y", lambda d: P.gaussian_regression(data(d)[0], torch.ones(30, 1, 1, device=d)))  # fmt: skip
error(REGRESSION, "y with a different number of rows", ValueError, "y", lambda d: P.gaussian_regression(data(d)[0], torch.ones(29, device=d)))  # fmt: skip
error(REGRESSION, "inf in y", ValueError, "y", lambda d: P.gaussian_regression(data(d)[0], torch.full((30,), math.inf, device=d)))  # fmt: skip
error(REGRESSION, "x a numpy array", TypeError, "x", lambda d: P.gaussian_regression(data(d)[0].cpu().numpy(), torch.ones(30, device=d)))  # fmt: skip
error(REGRESSION, "meta x", ValueError, "x", lambda d: P.gaussian_regression(torch.ones(30, 2, device=META), torch.ones(30, device=META)))  # fmt: skip
