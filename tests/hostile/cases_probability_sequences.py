"""Hostile inputs for ``kexue.probability`` (estimators, smoothing) and
``kexue.sequences`` (HiPPO), against float64 (or mpmath) references written here from the
definitions."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import scipy.linalg
import sympy as sp
import torch
from hostile import Case, Registry, close, finite, odd_view

import kexue.probability as P
import kexue.sequences as S

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error


def meta_like(out, *shape: int) -> None:
    assert out.device.type == "meta", f"expected a meta result, got {out.device}"
    assert tuple(out.shape) == shape, f"shape {tuple(out.shape)} != {shape}"


def rand(*shape: int, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, device=device, dtype=dtype)


# ---------------------------------------------------------------- float64 references
def var64(x: torch.Tensor, correction: int = 1) -> torch.Tensor:
    x = x.detach().double().cpu()
    return ((x - x.mean(-1, keepdim=True)) ** 2).sum(-1) / (x.shape[-1] - correction)


def c4_mp(n: int) -> float:
    with mpmath.workdps(40):
        n = mpmath.mpf(n)
        return float(
            mpmath.sqrt(2 / (n - 1)) * mpmath.gamma(n / 2) / mpmath.gamma((n - 1) / 2)
        )


def relu64(x: torch.Tensor, w: float, kernel: str = "gaussian") -> torch.Tensor:
    x = x.detach().double().cpu()
    z = x / w
    if kernel == "gaussian":
        phi = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return x * 0.5 * torch.erfc(-z / math.sqrt(2)) + w * phi
    return w * torch.logaddexp(torch.zeros_like(z), z)


def step64(x: torch.Tensor, w: float) -> torch.Tensor:
    return 0.5 * torch.erfc(-x.detach().double().cpu() / w / math.sqrt(2))


def legs64(N: int) -> torch.Tensor:
    A = torch.zeros(N, N, dtype=F64)
    for n in range(N):
        for k in range(n):
            A[n, k] = -math.sqrt((2 * n + 1) * (2 * k + 1))
        A[n, n] = -(n + 1)
    return A


def legt64(N: int, w: float) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(N, N, dtype=F64)
    for n in range(N):
        for k in range(N):
            sign = 1.0 if k < n else (-1.0) ** (n - k)
            A[n, k] = -math.sqrt((2 * n + 1) * (2 * k + 1)) * sign / w
    B = torch.tensor([math.sqrt(2 * (2 * n + 1)) / w for n in range(N)], dtype=F64)
    return A, B


def legendre64(coeffs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """sum_n c_n sqrt((2n+1)/2) P_n(s) by numpy's Legendre series."""
    c = coeffs.detach().double().cpu().numpy()
    N = c.shape[-1]
    scaled = c * np.sqrt((2 * np.arange(N) + 1) / 2)
    pts = s.detach().double().cpu().numpy()
    out = np.stack(
        [np.polynomial.legendre.legval(pts, row) for row in scaled.reshape(-1, N)]
    )
    return torch.from_numpy(out.reshape(*c.shape[:-1], len(pts)))


def bilinear64(A, B, eps):
    eye = np.eye(A.shape[0])
    left = np.linalg.inv(eye - eps * A / 2)
    return left @ (eye + eps * A / 2), left @ (eps * B)


def legs_s4_64(u: torch.Tensor, N: int) -> torch.Tensor:
    A = legs64(N).numpy()
    B = np.sqrt(2 * (2 * np.arange(N) + 1))
    u = u.detach().double().cpu().numpy()
    out = np.zeros((*u.shape, N))
    c = np.zeros((u.shape[0], N))
    eye = np.eye(N)
    for k in range(1, u.shape[1] + 1):
        left = np.linalg.inv(eye - A / (2 * k))
        c = c @ (left @ (eye + A / (2 * k))).T + np.outer(u[:, k - 1], left @ B / k)
        out[:, k - 1] = c
    return torch.from_numpy(out)


# ------------------------------------------------------------------ estimators
def _variance_value(device):
    x = rand(3, 7, device=device, dtype=F64)
    close(P.variance(x), var64(x), atol=1e-14)
    close(P.variance(x, correction=0), var64(x, 0), atol=1e-14)


case("probability.variance", "float64 against the two-pass definition", "value")(
    _variance_value
)


@case("probability.variance", "float16, 1000 samples of std 10: finite, ~100", "finite")
def _(device):
    x = (10 * rand(1000, device=device, dtype=F64)).half()
    out = P.variance(x)
    assert out.dtype == torch.float16
    close(out, var64(x.double()), atol=0.1)


@case("probability.variance", "bfloat16 at 1e18 magnitude stays finite", "finite")
def _(device):
    x = (1e18 * rand(64, device=device, dtype=F64)).bfloat16()
    out = P.variance(x)
    assert out.dtype == torch.bfloat16
    close(out, var64(x.double()), atol=0, rtol=1e-2)


@case("probability.variance", "large offset 1e8 does not cancel digits", "value")
def _(device):
    x = 1e8 + rand(2, 100, device=device, dtype=F64)
    close(P.variance(x), var64(x), atol=1e-8)


@case("probability.variance", "odd-offset and non-contiguous views", "device")
def _(device):
    x = odd_view(4, 9, device=device, dtype=F64)
    close(P.variance(x), var64(x), atol=1e-14)
    y = rand(9, 4, device=device, dtype=F64).T
    close(P.variance(y), var64(y), atol=1e-14)


@case("probability.variance", "empty batch (0, 5) gives (0,)", "empty")
def _(device):
    assert P.variance(torch.empty(0, 5, device=device)).shape == (0,)


@case("probability.variance", "meta input gives a meta result", "device")
def _(device):
    meta_like(P.variance(torch.empty(3, 5, device=META)), 3)


@case("probability.variance", "finite gradient", "grad")
def _(device):
    x = rand(4, 6, device=device, dtype=F64).requires_grad_()
    P.variance(x).sum().backward()
    ref = 2 * (x - x.mean(-1, keepdim=True)) / 5
    close(x.grad, ref, atol=1e-14)


error(
    "probability.variance",
    "int tensor",
    TypeError,
    "x",
    lambda d: P.variance(torch.ones(5, dtype=torch.int64, device=d)),
)
error(
    "probability.variance", "a list", TypeError, "x", lambda d: P.variance([1.0, 2.0])
)
error(
    "probability.variance",
    "0-d tensor",
    ValueError,
    "x",
    lambda d: P.variance(torch.tensor(1.0, device=d)),
)
error(
    "probability.variance",
    "dim out of range",
    ValueError,
    "dim",
    lambda d: P.variance(rand(3, 4, device=d), dim=2),
)
error(
    "probability.variance",
    "dim=1.5",
    TypeError,
    "dim",
    lambda d: P.variance(rand(3, 4, device=d), dim=1.5),
)
error(
    "probability.variance",
    "correction=0.5",
    TypeError,
    "correction",
    lambda d: P.variance(rand(4, device=d), correction=0.5),
)
error(
    "probability.variance",
    "one sample, unbiased",
    ValueError,
    "correction|x",
    lambda d: P.variance(rand(1, device=d)),
)
error(
    "probability.variance",
    "zero samples",
    ValueError,
    "x",
    lambda d: P.variance(rand(3, 0, device=d), correction=0),
)


@case("probability.c4", "n = 2, 3, 10, 99, 100, 1000, 1e4 against mpmath", "value")
def _(device):
    ns = [2, 3, 10, 99, 100, 1000, 10**4, 10**6]
    out = P.c4(torch.tensor(ns, device=device))
    close(out, torch.tensor([c4_mp(n) for n in ns], dtype=F64), atol=0, rtol=5e-14)


@case("probability.c4", "c4(1e8), c4(1e15) below 1 and accurate", "value")
def _(device):
    for n in (10**8, 10**12, 10**15):
        value = P.c4(n)
        assert value.item() < 1, f"c4({n}) = {value.item()!r} is not below 1"
        close(value, torch.tensor(c4_mp(n), dtype=F64), atol=0, rtol=1e-15)


@case("probability.c4", "huge int 10**30 gives 1 (rounded), no overflow", "finite")
def _(device):
    assert P.c4(10**30).item() == 1.0


@case("probability.c4", "monotone increasing on 2..2000", "value")
def _(device):
    out = P.c4(torch.arange(2, 2001, device=device))
    assert bool((out[1:] > out[:-1]).all()) and bool((out < 1).all())


@case("probability.c4", "empty tensor gives empty float64", "empty")
def _(device):
    out = P.c4(torch.empty(0, dtype=torch.int64, device=device))
    assert out.shape == (0,) and out.dtype == F64


@case("probability.c4", "meta int tensor gives a meta result", "device")
def _(device):
    meta_like(P.c4(torch.empty(4, dtype=torch.int64, device=META)), 4)


error("probability.c4", "n = 1", ValueError, "n", lambda d: P.c4(1))
error("probability.c4", "n = 2.5", TypeError, "n", lambda d: P.c4(2.5))
error("probability.c4", "n = True", TypeError, "n", lambda d: P.c4(True))
error(
    "probability.c4",
    "float tensor",
    TypeError,
    "n",
    lambda d: P.c4(torch.tensor([3.0], device=d)),
)
error(
    "probability.c4",
    "tensor with a 1",
    ValueError,
    "n",
    lambda d: P.c4(torch.tensor([1, 5], device=d)),
)
error("probability.c4", "a string", TypeError, "n", lambda d: P.c4("5"))


@case("probability.unbiased_std", "float64 is s / c4 (mpmath)", "value")
def _(device):
    x = rand(3, 5, device=device, dtype=F64)
    close(P.unbiased_std(x), var64(x).sqrt() / c4_mp(5), atol=1e-14)


@case("probability.unbiased_std", "float16 std 10 at 1000 samples: finite", "finite")
def _(device):
    x = (10 * rand(1000, device=device, dtype=F64)).half()
    out = P.unbiased_std(x)
    assert out.dtype == torch.float16
    close(out, var64(x.double()).sqrt() / c4_mp(1000), atol=0.02)


@case("probability.unbiased_std", "keepdim and dim=0", "value")
def _(device):
    x = rand(6, 2, device=device, dtype=F64)
    out = P.unbiased_std(x, 0, keepdim=True)
    close(out, (var64(x.T).sqrt() / c4_mp(6))[None], atol=1e-14)


@case("probability.unbiased_std", "empty batch (0, 4) gives (0,)", "empty")
def _(device):
    assert P.unbiased_std(torch.empty(0, 4, device=device)).shape == (0,)


@case("probability.unbiased_std", "meta input gives a meta result", "device")
def _(device):
    meta_like(P.unbiased_std(torch.empty(2, 5, device=META)), 2)


@case("probability.unbiased_std", "finite gradient on a view", "grad")
def _(device):
    base = rand(5, 8, device=device, dtype=F64).requires_grad_()
    P.unbiased_std(base[:, 1::2]).sum().backward()
    finite(base.grad)


error(
    "probability.unbiased_std",
    "one sample",
    ValueError,
    "x",
    lambda d: P.unbiased_std(rand(3, 1, device=d)),
)
error(
    "probability.unbiased_std",
    "bool tensor",
    TypeError,
    "x",
    lambda d: P.unbiased_std(torch.ones(4, dtype=torch.bool, device=d)),
)
error(
    "probability.unbiased_std",
    "complex tensor",
    TypeError,
    "x",
    lambda d: P.unbiased_std(torch.ones(4, dtype=torch.complex64, device=d)),
)
error(
    "probability.unbiased_std",
    "dim out of range",
    ValueError,
    "dim",
    lambda d: P.unbiased_std(rand(4, device=d), dim=3),
)


def _mean(v, dim):
    return v.mean(dim)


def _sq_mean(v, dim):
    return v.mean(dim) ** 2


@case("probability.jackknife", "mean^2 against an explicit float64 loop", "value")
def _(device):
    x = rand(3, 6, device=device, dtype=F64)
    xs = x.cpu()
    n = 6
    parts = torch.stack(
        [torch.cat([xs[:, :i], xs[:, i + 1 :]], 1).mean(1) ** 2 for i in range(n)], 1
    )
    corrected = n * xs.mean(1) ** 2 - (n - 1) * parts.mean(1)
    err = ((n - 1) / n * ((parts - parts.mean(1, keepdim=True)) ** 2).sum(1)).sqrt()
    for vectorize in (True, False):
        out = P.jackknife(_sq_mean, x, vectorize=vectorize)
        close(out[0], corrected, atol=1e-14)
        close(out[1], err, atol=1e-14)


@case("probability.jackknife", "dim=0 on a non-contiguous view", "device")
def _(device):
    x = rand(5, 8, device=device, dtype=F64)[:, ::2]
    out = P.jackknife(_mean, x, 0)
    close(out[0], x.mean(0), atol=1e-14)


@case("probability.jackknife", "float16 at 6e4: corrected mean finite", "finite")
def _(device):
    x = torch.full((40,), 6e4, device=device, dtype=torch.float16)
    corrected, err = P.jackknife(_mean, x)
    assert corrected.dtype == torch.float16
    close(corrected, torch.tensor(6e4, dtype=F64).half().double(), atol=0)
    finite(err)


@case("probability.jackknife", "empty batch (0, 5) gives (0,) twice", "empty")
def _(device):
    a, b = P.jackknife(_mean, torch.empty(0, 5, device=device))
    assert a.shape == b.shape == (0,)


@case("probability.jackknife", "meta input gives meta results", "device")
def _(device):
    a, b = P.jackknife(_mean, torch.empty(3, 5, device=META))
    meta_like(a, 3)
    meta_like(b, 3)


@case("probability.jackknife", "finite gradient", "grad")
def _(device):
    x = rand(2, 5, device=device, dtype=F64).requires_grad_()
    a, b = P.jackknife(_sq_mean, x)
    (a.sum() + b.sum()).backward()
    finite(x.grad)


error(
    "probability.jackknife",
    "one sample",
    ValueError,
    "x",
    lambda d: P.jackknife(_mean, rand(3, 1, device=d)),
)
error(
    "probability.jackknife",
    "statistic not callable",
    TypeError,
    "statistic",
    lambda d: P.jackknife(3, rand(5, device=d)),
)
error(
    "probability.jackknife",
    "int tensor",
    TypeError,
    "x",
    lambda d: P.jackknife(_mean, torch.ones(5, dtype=torch.int32, device=d)),
)
error(
    "probability.jackknife",
    "dim out of range",
    ValueError,
    "dim",
    lambda d: P.jackknife(_mean, rand(5, device=d), 1),
)
error(
    "probability.jackknife",
    "0-d x",
    ValueError,
    "x",
    lambda d: P.jackknife(_mean, torch.tensor(1.0, device=d)),
)
error(
    "probability.jackknife",
    "statistic returns a float",
    TypeError,
    "statistic",
    lambda d: P.jackknife(lambda v, dim: 1.0, rand(5, device=d)),
)
error(
    "probability.jackknife",
    "statistic keeps the axis",
    ValueError,
    "statistic",
    lambda d: P.jackknife(lambda v, dim: v, rand(5, device=d)),
)

_x1, _x2, _mu, _var = sp.symbols("x1 x2 mu sigma2")


@case(
    "probability.expectation_iid",
    "E[x1 x2] = mu^2, E[x1^2] = var + mu^2",
    "value",
    cuda=False,
)
def _(device):
    assert P.expectation_iid(_x1 * _x2, [_x1, _x2], _mu, _var) == _mu**2
    assert (
        sp.expand(P.expectation_iid(_x1**2, [_x1, _x2], _mu, _var) - _var - _mu**2) == 0
    )
    m3 = sp.Symbol("m3")
    assert P.expectation_iid(_x1**3, (_x1,), _mu, _var) == m3


@case("probability.expectation_iid", "a constant with no samples", "empty", cuda=False)
def _(device):
    assert P.expectation_iid(sp.Integer(3), [], _mu, _var) == 3


error(
    "probability.expectation_iid",
    "non-polynomial expr",
    ValueError,
    "expr",
    lambda d: P.expectation_iid(sp.exp(_x1), [_x1], _mu, _var),
)
error(
    "probability.expectation_iid",
    "expr a string",
    TypeError,
    "expr",
    lambda d: P.expectation_iid("x1", [_x1], _mu, _var),
)
error(
    "probability.expectation_iid",
    "samples not symbols",
    TypeError,
    "samples",
    lambda d: P.expectation_iid(_x1, [1.0], _mu, _var),
)
error(
    "probability.expectation_iid",
    "samples a symbol, not a list",
    TypeError,
    "samples",
    lambda d: P.expectation_iid(_x1, _x1, _mu, _var),
)
error(
    "probability.expectation_iid",
    "mean a string",
    TypeError,
    "mean",
    lambda d: P.expectation_iid(_x1, [_x1], "mu", _var),
)


@case("probability.mean_and_error", "float64 against statistics by hand", "value")
def _(device):
    x = rand(50, device=device, dtype=F64)
    m, e = P.mean_and_error(x)
    xs = x.cpu().tolist()
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / (len(xs) - 1))
    assert isinstance(m, float) and isinstance(e, float)
    assert abs(m - mean) < 1e-14 and abs(e - sd / math.sqrt(50)) < 1e-14


@case("probability.mean_and_error", "float16 std 10, 1000 estimates: finite", "finite")
def _(device):
    x = (10 * rand(1000, device=device, dtype=F64)).half()
    m, e = P.mean_and_error(x)
    ref = var64(x.double()).sqrt().item() / math.sqrt(1000)
    assert math.isfinite(m) and abs(e - ref) < 1e-2 * ref


@case("probability.mean_and_error", "odd-offset view", "device")
def _(device):
    x = odd_view(20, device=device, dtype=F64)
    m, _ = P.mean_and_error(x)
    assert abs(m - x.mean().item()) < 1e-14


error(
    "probability.mean_and_error",
    "2-D",
    ValueError,
    "estimates",
    lambda d: P.mean_and_error(rand(2, 3, device=d)),
)
error(
    "probability.mean_and_error",
    "one estimate",
    ValueError,
    "estimates",
    lambda d: P.mean_and_error(rand(1, device=d)),
)
error(
    "probability.mean_and_error",
    "empty",
    ValueError,
    "estimates",
    lambda d: P.mean_and_error(rand(0, device=d)),
)
error(
    "probability.mean_and_error",
    "int tensor",
    TypeError,
    "estimates",
    lambda d: P.mean_and_error(torch.arange(5, device=d)),
)
error(
    "probability.mean_and_error",
    "meta (a float is returned)",
    ValueError,
    "estimates",
    lambda d: P.mean_and_error(torch.empty(5, device=META)),
)


@case(
    "probability.log_variance_bias", "n = 2..1e12 against mpmath", "value", cuda=False
)
def _(device):
    for n in (2, 3, 10, 201, 10**4, 10**8, 10**12):
        with mpmath.workdps(40):
            k = mpmath.mpf(n - 1) / 2
            ref = float(mpmath.digamma(k) - mpmath.log(k))
        out = P.log_variance_bias(n)
        assert isinstance(out, float)
        assert abs(out - ref) <= 1e-13 * abs(ref), (n, out, ref)


error(
    "probability.log_variance_bias",
    "n = 1",
    ValueError,
    "n",
    lambda d: P.log_variance_bias(1),
)
error(
    "probability.log_variance_bias",
    "n = 2.5",
    TypeError,
    "n",
    lambda d: P.log_variance_bias(2.5),
)
error(
    "probability.log_variance_bias",
    "n = True",
    TypeError,
    "n",
    lambda d: P.log_variance_bias(True),
)
error(
    "probability.log_variance_bias",
    "n a tensor",
    TypeError,
    "n",
    lambda d: P.log_variance_bias(torch.tensor(5)),
)

# ------------------------------------------------------------------ smoothing
SMOOTH = {
    "smooth_step": lambda x, w, k: P.smooth_step(x, w, kernel=k),
    "smooth_relu": lambda x, w, k: P.smooth_relu(x, w, kernel=k),
    "step_smoothed_relu": lambda x, w, k: P.step_smoothed_relu(x, w, kernel=k),
    "smooth_abs": lambda x, w, k: P.smooth_abs(x, w, kernel=k),
    "smooth_max": lambda x, w, k: P.smooth_max(x, torch.zeros_like(x), w, kernel=k),
    "smooth_floor": lambda x, w, k: P.smooth_floor(x, w, lo=-3, hi=3, kernel=k),
    "kernel_density": lambda x, w, k: P.kernel_density(x, w, kernel=k),
}


def smooth64(name: str, x: torch.Tensor, w: float, kernel: str) -> torch.Tensor:
    x = x.detach().double().cpu()
    if kernel == "gaussian":
        step = step64(x, w)
    else:
        step = torch.sigmoid(x / w)
    if name == "smooth_step":
        return step
    if name in ("smooth_relu", "smooth_max"):
        return relu64(x, w, kernel)
    if name == "step_smoothed_relu":
        return x * step
    if name == "smooth_abs":
        return 2 * relu64(x, w, kernel) - x
    if name == "smooth_floor":
        n = torch.arange(-3, 4, dtype=F64)
        z = (x[..., None] - n) / w
        s = (
            0.5 * torch.erfc(-z / math.sqrt(2))
            if kernel == "gaussian"
            else torch.sigmoid(z)
        )
        return s.sum(-1) - 4
    z = x / w
    if kernel == "gaussian":
        return torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * w)
    return torch.sigmoid(z) * torch.sigmoid(-z) / w


def _smooth_cases(name: str, fn) -> None:
    t = f"probability.{name}"

    @case(t, "float64, both kernels, against the definition", "value")
    def _(device):
        x = torch.linspace(-4, 4, 33, device=device, dtype=F64)
        for kernel in ("gaussian", "logistic"):
            close(fn(x, 0.7, kernel), smooth64(name, x, 0.7, kernel), atol=1e-13)

    @case(t, "float16 at +-6e4 is finite and right", "finite")
    def _(device):
        x = torch.tensor([-6e4, -1.0, 0.0, 2.0, 6e4], device=device).half()
        out = fn(x, 0.5, "gaussian")
        assert out.dtype == torch.float16
        ref = smooth64(name, x, 0.5, "gaussian")
        close(out, ref, atol=1e-3, rtol=1e-3)

    @case(t, "bfloat16 at +-1e30 is finite", "finite")
    def _(device):
        x = torch.tensor([-1e30, 1e30, 0.5], device=device).bfloat16()
        out = fn(x, 1.0, "logistic")
        assert out.dtype == torch.bfloat16
        finite(out)

    @case(t, "empty (0, 3) gives (0, 3)", "empty")
    def _(device):
        assert fn(torch.empty(0, 3, device=device), 1.0, "gaussian").shape == (0, 3)

    @case(t, "odd-offset and non-contiguous views", "device")
    def _(device):
        x = odd_view(3, 5, device=device, dtype=F64)
        close(fn(x, 0.3, "logistic"), smooth64(name, x, 0.3, "logistic"), atol=1e-13)
        y = rand(5, 3, device=device, dtype=F64).T
        close(fn(y, 0.3, "gaussian"), smooth64(name, y, 0.3, "gaussian"), atol=1e-13)

    @case(t, "meta input gives a meta result", "device")
    def _(device):
        meta_like(fn(torch.empty(2, 3, device=META), 0.5, "gaussian"), 2, 3)

    @case(t, "finite gradients at +-1e4, float64", "grad")
    def _(device):
        x = torch.tensor([-1e4, -1.0, 0.0, 1e4], device=device, dtype=F64)
        x.requires_grad_()
        for kernel in ("gaussian", "logistic"):
            fn(x, 0.1, kernel).sum().backward()
            finite(x.grad)

    error(
        t,
        "int x",
        TypeError,
        r"\bx\b|\ba\b|\bu\b",
        lambda d: fn(torch.arange(3, device=d), 1.0, "gaussian"),
    )
    error(
        t,
        "complex x",
        TypeError,
        r"\bx\b|\ba\b|\bu\b",
        lambda d: fn(torch.ones(3, dtype=torch.complex64, device=d), 1.0, "gaussian"),
    )
    error(
        t,
        "width 0",
        ValueError,
        "width",
        lambda d: fn(rand(3, device=d), 0.0, "gaussian"),
    )
    error(
        t,
        "width nan",
        ValueError,
        "width",
        lambda d: fn(rand(3, device=d), math.nan, "gaussian"),
    )
    error(
        t,
        "width a string",
        TypeError,
        "width",
        lambda d: fn(rand(3, device=d), "1", "gaussian"),
    )
    error(
        t,
        "width True",
        TypeError,
        "width",
        lambda d: fn(rand(3, device=d), True, "gaussian"),
    )
    error(
        t,
        "unknown kernel",
        ValueError,
        "kernel",
        lambda d: fn(rand(3, device=d), 1.0, "box"),
    )


for _name, _fn in SMOOTH.items():
    _smooth_cases(_name, _fn)

for _name in (
    "smooth_step",
    "smooth_relu",
    "step_smoothed_relu",
    "smooth_abs",
    "smooth_floor",
):

    def _tensor_width(device, name=_name):
        x = rand(4, 3, device=device, dtype=F64)
        w = torch.tensor([0.5, 1.0, 2.0], device=device, dtype=F64)
        out = SMOOTH[name](x, w, "gaussian")
        ref = torch.stack(
            [smooth64(name, x[:, j], float(w[j]), "gaussian") for j in range(3)], 1
        )
        close(out, ref, atol=1e-13)

    CASES.append(
        Case(
            f"kexue.probability.{_name}",
            "tensor width broadcast over the last axis",
            "value",
            _tensor_width,
        )
    )
    error(
        f"probability.{_name}",
        "width tensor on meta",
        ValueError,
        "width",
        lambda d, n=_name: SMOOTH[n](
            rand(3, device=d), torch.ones(3, device=META), "gaussian"
        ),
    )
    error(
        f"probability.{_name}",
        "width tensor that does not broadcast",
        ValueError,
        "width",
        lambda d, n=_name: SMOOTH[n](
            rand(3, device=d), torch.ones(4, device=d), "gaussian"
        ),
    )
    error(
        f"probability.{_name}",
        "width tensor that would grow x",
        ValueError,
        "width",
        lambda d, n=_name: SMOOTH[n](
            rand(3, device=d), torch.ones(2, 3, device=d), "gaussian"
        ),
    )
    error(
        f"probability.{_name}",
        "int width tensor",
        TypeError,
        "width",
        lambda d, n=_name: SMOOTH[n](
            rand(3, device=d), torch.ones(3, dtype=torch.int64, device=d), "gaussian"
        ),
    )
    error(
        f"probability.{_name}",
        "negative width in a tensor",
        ValueError,
        "width",
        lambda d, n=_name: SMOOTH[n](
            rand(3, device=d), torch.tensor([1.0, -1.0, 1.0], device=d), "gaussian"
        ),
    )


@case("probability.smooth_max", "float16 a=6e4, b=-6e4: finite, 6e4", "finite")
def _(device):
    a = torch.tensor([6e4, -6e4, 1.0], device=device).half()
    b = torch.tensor([-6e4, 6e4, 1.0], device=device).half()
    out = P.smooth_max(a, b, 0.5)
    assert out.dtype == torch.float16
    ref = b.double().cpu() + relu64(a.double() - b.double(), 0.5)
    close(out, ref, atol=1e-3, rtol=1e-3)


@case("probability.smooth_max", "broadcast a (3, 1) against b (4,)", "value")
def _(device):
    a, b = rand(3, 1, device=device, dtype=F64), rand(4, device=device, dtype=F64)
    ref = b.cpu() + relu64(a.cpu() - b.cpu(), 0.2)
    close(P.smooth_max(a, b, 0.2), ref, atol=1e-13)


error(
    "probability.smooth_max",
    "b on meta",
    ValueError,
    r"\bb\b",
    lambda d: P.smooth_max(rand(3, device=d), torch.zeros(3, device=META), 1.0),
)
error(
    "probability.smooth_max",
    "b a float",
    TypeError,
    r"\bb\b",
    lambda d: P.smooth_max(rand(3, device=d), 0.0, 1.0),
)
error(
    "probability.smooth_max",
    "b int",
    TypeError,
    r"\bb\b",
    lambda d: P.smooth_max(
        rand(3, device=d), torch.zeros(3, dtype=torch.int64, device=d), 1.0
    ),
)
error(
    "probability.smooth_max",
    "a and b do not broadcast",
    ValueError,
    r"\ba\b.*\bb\b",
    lambda d: P.smooth_max(rand(3, device=d), rand(4, device=d), 1.0),
)
error(
    "probability.smooth_floor",
    "lo = 1",
    ValueError,
    "lo",
    lambda d: P.smooth_floor(rand(3, device=d), 0.1, lo=1, hi=3),
)
error(
    "probability.smooth_floor",
    "hi = -1",
    ValueError,
    "hi",
    lambda d: P.smooth_floor(rand(3, device=d), 0.1, lo=-1, hi=-1),
)
error(
    "probability.smooth_floor",
    "lo = -2.5",
    TypeError,
    "lo",
    lambda d: P.smooth_floor(rand(3, device=d), 0.1, lo=-2.5, hi=3),
)
error(
    "probability.smooth_floor",
    "hi = True",
    TypeError,
    "hi",
    lambda d: P.smooth_floor(rand(3, device=d), 0.1, lo=0, hi=True),
)


@case(
    "probability.smooth_floor",
    "the article's numbers 3.2 -> 2.88, 7.9 -> 7.27",
    "value",
)
def _(device):
    x = torch.tensor([3.2, 7.9], device=device, dtype=F64)
    n = torch.arange(-5, 11, dtype=F64)
    ref = torch.sigmoid((x.cpu()[:, None] - n) * 10).sum(-1) - 6
    close(P.smooth_floor(x, 0.1, lo=-5, hi=10), ref, atol=1e-13)


@case(
    "probability.convolve_numerically", "relu against the closed form, float64", "value"
)
def _(device):
    x = torch.linspace(-2, 2, 9, device=device, dtype=F64)
    grid = torch.linspace(-30, 30, 60001, device=device, dtype=F64)
    out = P.convolve_numerically(torch.relu, x, 0.5, grid=grid)
    close(out, relu64(x, 0.5), atol=1e-7)


@case("probability.convolve_numerically", "float16 grid: finite, grid dtype", "finite")
def _(device):
    x = torch.tensor([0.0, 1.0], device=device)
    grid = torch.linspace(-8, 8, 1001, device=device).half()
    out = P.convolve_numerically(torch.relu, x, 1.0, grid=grid)
    assert out.dtype == torch.float16
    close(out, relu64(x, 1.0), atol=1e-2)


@case("probability.convolve_numerically", "empty x gives (0,)", "empty")
def _(device):
    grid = torch.linspace(-1, 1, 5, device=device)
    out = P.convolve_numerically(
        torch.relu, torch.empty(0, device=device), 1.0, grid=grid
    )
    assert out.shape == (0,)


@case(
    "probability.convolve_numerically", "meta x and grid give a meta result", "device"
)
def _(device):
    out = P.convolve_numerically(
        torch.relu, torch.empty(3, device=META), 1.0, grid=torch.empty(7, device=META)
    )
    meta_like(out, 3)


@case("probability.convolve_numerically", "gradient through x", "grad")
def _(device):
    x = torch.tensor([0.3], device=device, dtype=F64, requires_grad=True)
    grid = torch.linspace(-10, 10, 4001, device=device, dtype=F64)
    P.convolve_numerically(torch.relu, x, 1.0, grid=grid).sum().backward()
    close(x.grad, step64(x, 1.0), atol=1e-5)


_g = lambda d: torch.linspace(-1, 1, 5, device=d)  # noqa: E731
error(
    "probability.convolve_numerically",
    "grid on meta",
    ValueError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=torch.empty(5, device=META)
    ),
)
error(
    "probability.convolve_numerically",
    "x 2-D",
    ValueError,
    r"\bx\b",
    lambda d: P.convolve_numerically(torch.relu, rand(2, 3, device=d), 1.0, grid=_g(d)),
)
error(
    "probability.convolve_numerically",
    "grid 2-D",
    ValueError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=_g(d)[None]
    ),
)
error(
    "probability.convolve_numerically",
    "grid of one point",
    ValueError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=_g(d)[:1]
    ),
)
error(
    "probability.convolve_numerically",
    "grid decreasing",
    ValueError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=_g(d).flip(0)
    ),
)
error(
    "probability.convolve_numerically",
    "int grid",
    TypeError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=torch.arange(5, device=d)
    ),
)
error(
    "probability.convolve_numerically",
    "int x",
    TypeError,
    r"\bx\b",
    lambda d: P.convolve_numerically(
        torch.relu, torch.arange(3, device=d), 1.0, grid=_g(d)
    ),
)
error(
    "probability.convolve_numerically",
    "f not callable",
    TypeError,
    r"\bf\b",
    lambda d: P.convolve_numerically(3, rand(3, device=d), 1.0, grid=_g(d)),
)
error(
    "probability.convolve_numerically",
    "f changes the shape",
    ValueError,
    r"\bf\b",
    lambda d: P.convolve_numerically(
        lambda g: g[:2], rand(3, device=d), 1.0, grid=_g(d)
    ),
)
error(
    "probability.convolve_numerically",
    "grid a list",
    TypeError,
    "grid",
    lambda d: P.convolve_numerically(
        torch.relu, rand(3, device=d), 1.0, grid=[0.0, 1.0]
    ),
)
error(
    "probability.convolve_numerically",
    "width -1",
    ValueError,
    "width",
    lambda d: P.convolve_numerically(torch.relu, rand(3, device=d), -1.0, grid=_g(d)),
)


# ------------------------------------------------------------------ HiPPO matrices
@case("sequences.legs", "N = 1, 5 against the definition", "value", cuda=False)
def _(device):
    for N in (1, 5):
        A, B = S.legs(N)
        close(A, legs64(N), atol=1e-14)
        close(
            B,
            torch.tensor([math.sqrt(2 * (2 * n + 1)) for n in range(N)], dtype=F64),
            atol=1e-14,
        )


@case(
    "sequences.legt", "N = 1, 6, window 1.5 against the definition", "value", cuda=False
)
def _(device):
    for N in (1, 6):
        A, B = S.legt(N, window=1.5)
        A64, B64 = legt64(N, 1.5)
        close(A, A64, atol=1e-14)
        close(B, B64, atol=1e-14)


@case("sequences.lagt", "N = 1, 4 against the definition", "value", cuda=False)
def _(device):
    A, B = S.lagt(4)
    ref = torch.tensor(
        [
            [-0.5 if i == j else (-1.0 if j < i else 0.0) for j in range(4)]
            for i in range(4)
        ]
    )
    close(A, ref, atol=0)
    close(B, torch.ones(4), atol=0)
    assert S.lagt(1)[0].shape == (1, 1)


for _t in ("legs", "legt", "lagt"):
    _call = {"legs": S.legs, "legt": S.legt, "lagt": S.lagt}[_t]
    error(f"sequences.{_t}", "N = 2.5", TypeError, r"\bN\b", lambda d, f=_call: f(2.5))
    error(f"sequences.{_t}", "N = 0", ValueError, r"\bN\b", lambda d, f=_call: f(0))
    error(
        f"sequences.{_t}", "N = True", TypeError, r"\bN\b", lambda d, f=_call: f(True)
    )
    error(
        f"sequences.{_t}",
        "N a tensor",
        TypeError,
        r"\bN\b",
        lambda d, f=_call: f(torch.tensor(3)),
    )
error(
    "sequences.legt", "window 0", ValueError, "window", lambda d: S.legt(3, window=0.0)
)
error(
    "sequences.legt",
    "window inf",
    ValueError,
    "window",
    lambda d: S.legt(3, window=math.inf),
)
error(
    "sequences.legt",
    "window a string",
    TypeError,
    "window",
    lambda d: S.legt(3, window="1"),
)


@case("sequences.legs_matvec", "float64 batch against the dense product", "value")
def _(device):
    v = rand(3, 2, 7, device=device, dtype=F64)
    close(S.legs_matvec(v), v.cpu() @ legs64(7).T, atol=1e-12)


@case("sequences.legs_matvec", "float16 at 5, N=64 (results to 4e4): right", "finite")
def _(device):
    v = torch.full((2, 64), 5.0, device=device, dtype=torch.float16)
    out = S.legs_matvec(v)
    assert out.dtype == torch.float16
    ref = v.double().cpu() @ legs64(64).T
    close(out, ref.half().double(), atol=0, rtol=1e-3)


@case("sequences.legs_matvec", "bfloat16 at 1e30 stays finite", "finite")
def _(device):
    v = torch.full((64,), 1e30, device=device, dtype=torch.bfloat16)
    finite(S.legs_matvec(v))


@case("sequences.legs_matvec", "empty batch and N = 0", "empty")
def _(device):
    assert S.legs_matvec(torch.empty(0, 5, device=device)).shape == (0, 5)
    assert S.legs_matvec(torch.empty(3, 0, device=device)).shape == (3, 0)


@case("sequences.legs_matvec", "odd-offset and transposed views", "device")
def _(device):
    v = odd_view(2, 9, device=device, dtype=F64)
    close(S.legs_matvec(v), v.cpu() @ legs64(9).T, atol=1e-12)
    w = rand(9, 2, device=device, dtype=F64).T
    close(S.legs_matvec(w), w.cpu() @ legs64(9).T, atol=1e-12)


@case("sequences.legs_matvec", "meta input gives a meta result", "device")
def _(device):
    meta_like(S.legs_matvec(torch.empty(2, 6, device=META)), 2, 6)


@case("sequences.legs_matvec", "gradient is A^T 1", "grad")
def _(device):
    v = rand(5, device=device, dtype=F64).requires_grad_()
    S.legs_matvec(v).sum().backward()
    close(v.grad, legs64(5).sum(0), atol=1e-12)


error(
    "sequences.legs_matvec",
    "int v",
    TypeError,
    r"\bv\b",
    lambda d: S.legs_matvec(torch.ones(4, dtype=torch.int64, device=d)),
)
error(
    "sequences.legs_matvec",
    "complex v",
    TypeError,
    r"\bv\b",
    lambda d: S.legs_matvec(torch.ones(4, dtype=torch.complex64, device=d)),
)
error(
    "sequences.legs_matvec",
    "0-d v",
    ValueError,
    r"\bv\b",
    lambda d: S.legs_matvec(torch.tensor(1.0, device=d)),
)
error(
    "sequences.legs_matvec",
    "a list",
    TypeError,
    r"\bv\b",
    lambda d: S.legs_matvec([1.0]),
)


@case("sequences.legs_solve", "float64 against a dense solve, lam = 0.3, -0.7", "value")
def _(device):
    v = rand(2, 8, device=device, dtype=F64)
    for lam in (0.3, -0.7):
        ref = torch.linalg.solve(torch.eye(8, dtype=F64) - lam * legs64(8), v.cpu().T).T
        close(S.legs_solve(v, lam), ref, atol=1e-11)


@case("sequences.legs_solve", "float16 in, float16 out, finite", "finite")
def _(device):
    v = torch.full((32,), 3e4, device=device, dtype=torch.float16)
    out = S.legs_solve(v, 0.5)
    assert out.dtype == torch.float16
    ref = torch.linalg.solve(
        torch.eye(32, dtype=F64) - 0.5 * legs64(32), v.double().cpu()
    )
    close(out, ref.half().double(), atol=1.0, rtol=2e-3)


@case("sequences.legs_solve", "empty batch and N = 0", "empty")
def _(device):
    assert S.legs_solve(torch.empty(0, 5, device=device), 0.5).shape == (0, 5)
    assert S.legs_solve(torch.empty(3, 0, device=device), 0.5).shape == (3, 0)


@case("sequences.legs_solve", "odd-offset view; meta gives meta", "device")
def _(device):
    v = odd_view(3, 6, device=device, dtype=F64)
    ref = torch.linalg.solve(torch.eye(6, dtype=F64) - 0.2 * legs64(6), v.cpu().T).T
    close(S.legs_solve(v, 0.2), ref, atol=1e-12)
    meta_like(S.legs_solve(torch.empty(2, 6, device=META), 0.2), 2, 6)


@case("sequences.legs_solve", "finite gradient", "grad")
def _(device):
    v = rand(6, device=device, dtype=F64).requires_grad_()
    S.legs_solve(v, 0.4).sum().backward()
    ref = torch.linalg.solve(
        torch.eye(6, dtype=F64) - 0.4 * legs64(6), torch.eye(6, dtype=F64)
    ).sum(0)
    close(v.grad, ref, atol=1e-12)


error(
    "sequences.legs_solve",
    "singular lam = -1/3",
    ValueError,
    "lam",
    lambda d: S.legs_solve(rand(4, device=d), -1 / 3),
)
error(
    "sequences.legs_solve",
    "lam nan",
    ValueError,
    "lam",
    lambda d: S.legs_solve(rand(4, device=d), math.nan),
)
error(
    "sequences.legs_solve",
    "lam a tensor",
    TypeError,
    "lam",
    lambda d: S.legs_solve(rand(4, device=d), torch.tensor(0.5)),
)
error(
    "sequences.legs_solve",
    "int v",
    TypeError,
    r"\bv\b",
    lambda d: S.legs_solve(torch.ones(4, dtype=torch.int64, device=d), 0.5),
)
error(
    "sequences.legs_solve",
    "0-d v",
    ValueError,
    r"\bv\b",
    lambda d: S.legs_solve(torch.tensor(1.0, device=d), 0.5),
)


@case("sequences.discretize", "all methods, B (N,) and (N, 2), against scipy", "value")
def _(device):
    A64, B64 = legt64(5, 1.5)
    A, B = A64.to(device), B64.to(device)
    An, Bn = A64.numpy(), B64.numpy()
    eye = np.eye(5)
    refs = {
        "forward": (eye + 0.05 * An, 0.05 * Bn),
        "backward": (
            np.linalg.inv(eye - 0.05 * An),
            np.linalg.inv(eye - 0.05 * An) @ (0.05 * Bn),
        ),
        "bilinear": bilinear64(An, Bn, 0.05),
    }
    block = np.zeros((6, 6))
    block[:5, :5], block[:5, 5] = 0.05 * An, 0.05 * Bn
    ex = scipy.linalg.expm(block)
    refs["zoh"] = (ex[:5, :5], ex[:5, 5])
    for method, (Ar, Br) in refs.items():
        Ab, Bb = S.discretize(A, B, 0.05, method=method)
        close(Ab, torch.from_numpy(Ar), atol=1e-12)
        close(Bb, torch.from_numpy(Br), atol=1e-12)
        Ab2, Bb2 = S.discretize(A, torch.stack([B, B], 1), 0.05, method=method)
        close(Ab2, torch.from_numpy(Ar), atol=1e-12)
        close(Bb2, torch.from_numpy(np.stack([Br, Br], 1)), atol=1e-12)


@case(
    "sequences.discretize", "float16 A, B: computed in float32, float16 out", "finite"
)
def _(device):
    A64, B64 = legt64(4, 1.0)
    for method in ("backward", "bilinear", "zoh"):
        Ab, Bb = S.discretize(
            A64.half().to(device), B64.half().to(device), 0.1, method=method
        )
        assert Ab.dtype == Bb.dtype == torch.float16
        finite(Ab, Bb)


@case("sequences.discretize", "a (0,) tensor of steps and N = 0", "empty")
def _(device):
    A64, B64 = legt64(3, 1.0)
    for method in ("forward", "backward", "bilinear", "zoh"):
        Ab, Bb = S.discretize(
            A64.to(device),
            B64.to(device),
            torch.empty(0, dtype=F64, device=device),
            method=method,
        )
        assert Ab.shape == (0, 3, 3) and Bb.shape == (0, 3)
        Ab, Bb = S.discretize(
            torch.empty(0, 0, dtype=F64, device=device),
            torch.empty(0, dtype=F64, device=device),
            0.1,
            method=method,
        )
        assert Ab.shape == (0, 0) and Bb.shape == (0,)


@case("sequences.discretize", "meta A, B give meta results", "device")
def _(device):
    for method in ("forward", "backward", "bilinear", "zoh"):
        Ab, Bb = S.discretize(
            torch.empty(4, 4, device=META),
            torch.empty(4, device=META),
            0.1,
            method=method,
        )
        meta_like(Ab, 4, 4)
        meta_like(Bb, 4)


@case("sequences.discretize", "transposed A view", "device")
def _(device):
    A64, B64 = legt64(4, 1.0)
    At = A64.T.contiguous().to(device).T
    Ab, _ = S.discretize(At, B64.to(device), 0.1)
    close(
        Ab, torch.from_numpy(bilinear64(A64.numpy(), B64.numpy(), 0.1)[0]), atol=1e-12
    )


@case("sequences.discretize", "gradient through A (zoh)", "grad")
def _(device):
    A = legt64(3, 1.0)[0].to(device).requires_grad_()
    Ab, Bb = S.discretize(A, torch.ones(3, dtype=F64, device=device), 0.1, method="zoh")
    (Ab.sum() + Bb.sum()).backward()
    finite(A.grad)


_A = lambda d: torch.eye(3, device=d)  # noqa: E731
error(
    "sequences.discretize",
    "B on meta",
    ValueError,
    r"\bB\b",
    lambda d: S.discretize(_A(d), torch.ones(3, device=META), 0.1),
)
error(
    "sequences.discretize",
    "step tensor on meta",
    ValueError,
    "step",
    lambda d: S.discretize(_A(d), torch.ones(3, device=d), torch.ones(2, device=META)),
)
error(
    "sequences.discretize",
    "A not square",
    ValueError,
    r"\bA\b",
    lambda d: S.discretize(torch.ones(3, 2, device=d), torch.ones(3, device=d), 0.1),
)
error(
    "sequences.discretize",
    "B 0-d",
    ValueError,
    r"\bB\b",
    lambda d: S.discretize(_A(d), torch.tensor(1.0, device=d), 0.1),
)
error(
    "sequences.discretize",
    "B of the wrong length",
    ValueError,
    r"\bB\b",
    lambda d: S.discretize(_A(d), torch.ones(4, device=d), 0.1),
)
error(
    "sequences.discretize",
    "B 3-D",
    ValueError,
    r"\bB\b",
    lambda d: S.discretize(_A(d), torch.ones(3, 1, 1, device=d), 0.1),
)
error(
    "sequences.discretize",
    "int A",
    TypeError,
    r"\bA\b",
    lambda d: S.discretize(
        torch.eye(3, dtype=torch.int64, device=d), torch.ones(3, device=d), 0.1
    ),
)
error(
    "sequences.discretize",
    "A and B dtypes differ",
    TypeError,
    r"\bB\b",
    lambda d: S.discretize(_A(d), torch.ones(3, dtype=F64, device=d), 0.1),
)
error(
    "sequences.discretize",
    "step 0",
    ValueError,
    "step",
    lambda d: S.discretize(_A(d), torch.ones(3, device=d), 0.0),
)
error(
    "sequences.discretize",
    "step a string",
    TypeError,
    "step",
    lambda d: S.discretize(_A(d), torch.ones(3, device=d), "0.1"),
)
error(
    "sequences.discretize",
    "unknown method",
    ValueError,
    "method",
    lambda d: S.discretize(_A(d), torch.ones(3, device=d), 0.1, method="euler"),
)

# ------------------------------------------------------------------ online memory


@case("sequences.legs_memory", "s4 scheme against a float64 loop", "value")
def _(device):
    u = rand(2, 12, device=device, dtype=F64)
    close(S.legs_memory(u, 6), legs_s4_64(u, 6), atol=1e-12)


@case("sequences.legs_memory", "float16 and int input: dtypes, finite", "finite")
def _(device):
    u = torch.full((1, 50), 3e4, device=device, dtype=torch.float16)
    out = S.legs_memory(u, 4)
    assert out.dtype == torch.float16
    close(out, legs_s4_64(u.double(), 4).half().double(), atol=40.0, rtol=2e-3)
    ints = S.legs_memory(torch.ones(1, 5, dtype=torch.int64, device=device), 3)
    assert ints.dtype == torch.float32
    close(ints, legs_s4_64(torch.ones(1, 5), 3), atol=1e-5)


@case("sequences.legs_memory", "length 0, length 1 and batch 0, every scheme", "empty")
def _(device):
    for scheme in ("s4", "article", "exact"):
        assert S.legs_memory(
            torch.empty(2, 0, device=device), 3, scheme=scheme
        ).shape == (2, 0, 3)
        assert S.legs_memory(
            torch.ones(2, 1, device=device), 3, scheme=scheme
        ).shape == (2, 1, 3)
        assert S.legs_memory(
            torch.empty(0, 4, device=device), 3, scheme=scheme
        ).shape == (0, 4, 3)


@case("sequences.legs_memory", "meta u gives a meta result; odd-offset view", "device")
def _(device):
    for scheme in ("s4", "article", "exact"):
        meta_like(
            S.legs_memory(torch.empty(2, 5, device=META), 3, scheme=scheme), 2, 5, 3
        )
    u = odd_view(2, 7, device=device, dtype=F64)
    close(S.legs_memory(u, 4), legs_s4_64(u, 4), atol=1e-12)


@case("sequences.legs_memory", "finite gradient", "grad")
def _(device):
    u = rand(1, 6, device=device, dtype=F64).requires_grad_()
    S.legs_memory(u, 4, scheme="exact").sum().backward()
    finite(u.grad)


error(
    "sequences.legs_memory",
    "u 1-D",
    ValueError,
    r"\bu\b",
    lambda d: S.legs_memory(rand(5, device=d), 3),
)
error(
    "sequences.legs_memory",
    "bool u",
    TypeError,
    r"\bu\b",
    lambda d: S.legs_memory(torch.ones(1, 5, dtype=torch.bool, device=d), 3),
)
error(
    "sequences.legs_memory",
    "complex u",
    TypeError,
    r"\bu\b",
    lambda d: S.legs_memory(torch.ones(1, 5, dtype=torch.complex64, device=d), 3),
)
error(
    "sequences.legs_memory",
    "N = 2.5",
    TypeError,
    r"\bN\b",
    lambda d: S.legs_memory(rand(1, 5, device=d), 2.5),
)
error(
    "sequences.legs_memory",
    "N = 0",
    ValueError,
    r"\bN\b",
    lambda d: S.legs_memory(rand(1, 5, device=d), 0),
)
error(
    "sequences.legs_memory",
    "unknown scheme",
    ValueError,
    "scheme",
    lambda d: S.legs_memory(rand(1, 5, device=d), 3, scheme="euler"),
)


def legt_mem64(u, N, window, dt):
    A, B = legt64(N, window)
    Ab, Bb = bilinear64(A.numpy(), B.numpy(), dt)
    u = u.detach().double().cpu().numpy()
    c = np.zeros((u.shape[0], N))
    out = np.zeros((*u.shape, N))
    for k in range(u.shape[1]):
        c = c @ Ab.T + np.outer(u[:, k], Bb)
        out[:, k] = c
    return torch.from_numpy(out)


@case("sequences.legt_memory", "float64 against a float64 loop", "value")
def _(device):
    u = rand(2, 10, device=device, dtype=F64)
    close(
        S.legt_memory(u, 5, window=1.0, dt=0.05),
        legt_mem64(u, 5, 1.0, 0.05),
        atol=1e-10,
    )


@case("sequences.legt_memory", "float16 input: float16 out, finite", "finite")
def _(device):
    u = torch.full((1, 20), 1e3, device=device, dtype=torch.float16)
    out = S.legt_memory(u, 4, window=1.0, dt=0.1)
    assert out.dtype == torch.float16
    close(out, legt_mem64(u.double(), 4, 1.0, 0.1).half().double(), atol=2.0, rtol=2e-3)


@case("sequences.legt_memory", "length 0 and batch 0", "empty")
def _(device):
    assert S.legt_memory(
        torch.empty(2, 0, device=device), 3, window=1.0, dt=0.1
    ).shape == (2, 0, 3)
    assert S.legt_memory(
        torch.empty(0, 4, device=device), 3, window=1.0, dt=0.1
    ).shape == (0, 4, 3)


@case("sequences.legt_memory", "meta u gives meta; transposed view", "device")
def _(device):
    meta_like(
        S.legt_memory(torch.empty(2, 5, device=META), 3, window=1.0, dt=0.1), 2, 5, 3
    )
    u = rand(6, 2, device=device, dtype=F64).T
    close(
        S.legt_memory(u, 3, window=2.0, dt=0.1), legt_mem64(u, 3, 2.0, 0.1), atol=1e-10
    )


@case("sequences.legt_memory", "finite gradient", "grad")
def _(device):
    u = rand(1, 6, device=device, dtype=F64).requires_grad_()
    S.legt_memory(u, 4, window=1.0, dt=0.1).sum().backward()
    finite(u.grad)


error(
    "sequences.legt_memory",
    "u 3-D",
    ValueError,
    r"\bu\b",
    lambda d: S.legt_memory(rand(1, 2, 3, device=d), 3, window=1.0, dt=0.1),
)
error(
    "sequences.legt_memory",
    "bool u",
    TypeError,
    r"\bu\b",
    lambda d: S.legt_memory(
        torch.ones(1, 3, dtype=torch.bool, device=d), 3, window=1.0, dt=0.1
    ),
)
error(
    "sequences.legt_memory",
    "dt = 0",
    ValueError,
    r"\bdt\b",
    lambda d: S.legt_memory(rand(1, 3, device=d), 3, window=1.0, dt=0.0),
)
error(
    "sequences.legt_memory",
    "dt a tensor",
    TypeError,
    r"\bdt\b",
    lambda d: S.legt_memory(rand(1, 3, device=d), 3, window=1.0, dt=torch.tensor(0.1)),
)
error(
    "sequences.legt_memory",
    "window -1",
    ValueError,
    "window",
    lambda d: S.legt_memory(rand(1, 3, device=d), 3, window=-1.0, dt=0.1),
)
error(
    "sequences.legt_memory",
    "N = 2.5",
    TypeError,
    r"\bN\b",
    lambda d: S.legt_memory(rand(1, 3, device=d), 2.5, window=1.0, dt=0.1),
)

# ------------------------------------------------------------------ reconstruct


@case(
    "sequences.reconstruct", "(2, 3, N) coefficients at (P,) points, float64", "value"
)
def _(device):
    c = rand(2, 3, 7, device=device, dtype=F64)
    s = torch.linspace(-1, 1, 11, device=device, dtype=F64)
    close(S.reconstruct(c, s), legendre64(c, s), atol=1e-12)


@case("sequences.reconstruct", "N = 1 and N = 2", "value")
def _(device):
    s = torch.linspace(-1, 1, 5, device=device, dtype=F64)
    for N in (1, 2):
        c = rand(N, device=device, dtype=F64)
        close(S.reconstruct(c, s), legendre64(c, s), atol=1e-14)


@case("sequences.reconstruct", "float16 coefficients 300, N = 32 (sum 4e4)", "finite")
def _(device):
    c = torch.full((32,), 300.0, device=device, dtype=torch.float16)
    s = torch.tensor([1.0, -1.0, 0.3], device=device, dtype=torch.float16)
    out = S.reconstruct(c, s)
    assert out.dtype == torch.float16
    ref = legendre64(c, s)
    close(out, ref.half().double(), atol=0, rtol=2e-3)


@case("sequences.reconstruct", "int points are promoted; float64 points cast", "value")
def _(device):
    c = rand(4, device=device, dtype=F64)
    s = torch.tensor([-1, 0, 1], device=device)
    close(S.reconstruct(c, s), legendre64(c, s.double()), atol=1e-14)
    out = S.reconstruct(c.float(), s.double())
    assert out.dtype == torch.float32


@case("sequences.reconstruct", "N = 0, no points, empty batch", "empty")
def _(device):
    s = torch.linspace(-1, 1, 3, device=device)
    assert torch.equal(
        S.reconstruct(torch.empty(2, 0, device=device), s),
        torch.zeros(2, 3, device=device),
    )
    assert S.reconstruct(
        rand(2, 4, device=device), torch.empty(0, device=device)
    ).shape == (2, 0)
    assert S.reconstruct(torch.empty(0, 4, device=device), s).shape == (0, 3)


@case("sequences.reconstruct", "meta gives meta; odd-offset views", "device")
def _(device):
    meta_like(
        S.reconstruct(torch.empty(2, 5, device=META), torch.empty(7, device=META)), 2, 7
    )
    c = odd_view(3, 5, device=device, dtype=F64)
    s = torch.linspace(-1, 1, 8, device=device, dtype=F64)[::2]
    close(S.reconstruct(c, s), legendre64(c, s), atol=1e-13)


@case("sequences.reconstruct", "gradient is the basis", "grad")
def _(device):
    c = rand(5, device=device, dtype=F64).requires_grad_()
    s = torch.tensor([0.25], device=device, dtype=F64)
    S.reconstruct(c, s).sum().backward()
    close(c.grad, legendre64(torch.eye(5, dtype=F64), s.cpu())[:, 0], atol=1e-14)


error(
    "sequences.reconstruct",
    "points 2-D (was batched silently)",
    ValueError,
    "points",
    lambda d: S.reconstruct(rand(4, 5, device=d), rand(4, 3, device=d)),
)
error(
    "sequences.reconstruct",
    "points 0-d",
    ValueError,
    "points",
    lambda d: S.reconstruct(rand(5, device=d), torch.tensor(0.5, device=d)),
)
error(
    "sequences.reconstruct",
    "int coefficients",
    TypeError,
    "coeffs",
    lambda d: S.reconstruct(
        torch.ones(5, dtype=torch.int64, device=d), rand(3, device=d)
    ),
)
error(
    "sequences.reconstruct",
    "complex points",
    TypeError,
    "points",
    lambda d: S.reconstruct(
        rand(5, device=d), torch.ones(3, dtype=torch.complex64, device=d)
    ),
)
error(
    "sequences.reconstruct",
    "0-d coefficients",
    ValueError,
    "coeffs",
    lambda d: S.reconstruct(torch.tensor(1.0, device=d), rand(3, device=d)),
)
error(
    "sequences.reconstruct",
    "points on meta",
    ValueError,
    "points",
    lambda d: S.reconstruct(rand(5, device=d), torch.empty(3, device=META)),
)
error(
    "sequences.reconstruct",
    "points a list",
    TypeError,
    "points",
    lambda d: S.reconstruct(rand(5, device=d), [0.0]),
)


@case(
    "sequences.legendre_projection",
    "u = 1 and u = t on [0, 2]: exact coefficients",
    "value",
    cuda=False,
)
def _(device):
    one = S.legendre_projection(torch.ones_like, 0.0, 2.0, 3)
    close(one, torch.tensor([math.sqrt(2), 0.0, 0.0], dtype=F64), atol=5e-14)
    # t = 1 + s on [0, 2]: c_0 = sqrt(2), c_1 = int s g_1 = sqrt(2/3)
    lin = S.legendre_projection(lambda t: t, 0.0, 2.0, 3)
    close(
        lin, torch.tensor([math.sqrt(2), math.sqrt(2 / 3), 0.0], dtype=F64), atol=5e-14
    )


@case("sequences.legendre_projection", "N = 1, nodes = 1", "value", cuda=False)
def _(device):
    out = S.legendre_projection(torch.ones_like, 0.0, 1.0, 1, nodes=1)
    close(out, torch.tensor([math.sqrt(2)], dtype=F64), atol=1e-14)


@case(
    "sequences.legendre_projection",
    "u returning float32 is cast to float64",
    "finite",
    cuda=False,
)
def _(device):
    out = S.legendre_projection(lambda t: t.float(), 0.0, 1.0, 4)
    assert out.dtype == F64
    finite(out)


error(
    "sequences.legendre_projection",
    "N = 2.5",
    TypeError,
    r"\bN\b",
    lambda d: S.legendre_projection(torch.sin, 0.0, 1.0, 2.5),
)
error(
    "sequences.legendre_projection",
    "nodes = 0",
    ValueError,
    "nodes",
    lambda d: S.legendre_projection(torch.sin, 0.0, 1.0, 3, nodes=0),
)
error(
    "sequences.legendre_projection",
    "nodes = 2.0",
    TypeError,
    "nodes",
    lambda d: S.legendre_projection(torch.sin, 0.0, 1.0, 3, nodes=2.0),
)
error(
    "sequences.legendre_projection",
    "width = 0",
    ValueError,
    "width",
    lambda d: S.legendre_projection(torch.sin, 0.0, 0.0, 3),
)
error(
    "sequences.legendre_projection",
    "start = nan",
    ValueError,
    "start",
    lambda d: S.legendre_projection(torch.sin, math.nan, 1.0, 3),
)
error(
    "sequences.legendre_projection",
    "start a string",
    TypeError,
    "start",
    lambda d: S.legendre_projection(torch.sin, "0", 1.0, 3),
)
error(
    "sequences.legendre_projection",
    "u not callable",
    TypeError,
    r"\bu\b",
    lambda d: S.legendre_projection(3, 0.0, 1.0, 3),
)
error(
    "sequences.legendre_projection",
    "u returns a float",
    TypeError,
    r"\bu\b",
    lambda d: S.legendre_projection(lambda t: 1.0, 0.0, 1.0, 3),
)
error(
    "sequences.legendre_projection",
    "u returns the wrong shape",
    ValueError,
    r"\bu\b",
    lambda d: S.legendre_projection(lambda t: t[:3], 0.0, 1.0, 3),
)
error(
    "sequences.legendre_projection",
    "u returns a meta tensor",
    ValueError,
    r"\bu\b",
    lambda d: S.legendre_projection(
        lambda t: torch.empty_like(t, device=META), 0.0, 1.0, 3
    ),
)
error(
    "sequences.legendre_projection",
    "u returns complex",
    TypeError,
    r"\bu\b",
    lambda d: S.legendre_projection(lambda t: t.to(torch.complex128), 0.0, 1.0, 3),
)
