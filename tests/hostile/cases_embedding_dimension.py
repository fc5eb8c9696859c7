"""Hostile inputs for ``kexue.representations`` embedding dimension (``pair_entropy``,
``min_dimension``, ``cooccurrence``, ``fit_log_bilinear``,
``log_bilinear_cross_entropy``, ``log_bilinear_entropy``), against float64 references
written here: the Bessel closed form of ``h_n`` by mpmath, loops over positions and
over pairs."""

from __future__ import annotations

import math

import mpmath
import torch
from hostile import Registry, close, finite

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.representations.")
case, error = CASES.case, CASES.error


# ---------------------------------------------------------------- float64 references
def h64(n: int) -> float:
    """h_n = log Gamma(n/2) + nu log(2/n) + log I_nu(n) - n I_(nu+1)(n) / I_nu(n)."""
    with mpmath.workdps(30):
        nu = mpmath.mpf(n) / 2 - 1
        low, high = mpmath.besseli(nu, n), mpmath.besseli(nu + 1, n)
        return float(
            mpmath.loggamma(mpmath.mpf(n) / 2)
            + nu * mpmath.log(mpmath.mpf(2) / n)
            + mpmath.log(low)
            - n * high / low
        )


def counts64(docs, vocab, window) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocab)}
    out = torch.zeros(len(vocab), len(vocab), dtype=F64)
    for doc in docs:
        for a, wa in enumerate(doc):
            for b, wb in enumerate(doc):
                if a != b and abs(a - b) <= window and wa in index and wb in index:
                    out[index[wa], index[wb]] += 1
    return out


def cross_entropy64(joint, u, v) -> torch.Tensor:
    q = joint.detach().double().cpu()
    u, v = u.detach().double().cpu(), v.detach().double().cpu()
    logits = torch.tensor([[float(x @ y) for y in v] for x in u], dtype=F64)
    log_z = torch.logsumexp(logits.reshape(-1), 0)
    return -(q / q.sum() * (logits - log_z)).sum()


def entropy64(u, v) -> torch.Tensor:
    u, v = u.detach().double().cpu(), v.detach().double().cpu()
    logits = torch.tensor([float(x @ y) for x in u for y in v], dtype=F64)
    log_p = logits - torch.logsumexp(logits, 0)
    return -(log_p.exp() * log_p).sum()


def tables(n: int, m: int, d: int, device, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    joint = torch.rand(n, m, generator=g, dtype=F64).to(device, dtype)
    u = torch.randn(n, d, generator=g, dtype=F64).to(device, dtype)
    v = torch.randn(m, d, generator=g, dtype=F64).to(device, dtype)
    return joint, u, v


# ---------------------------------------------------------------- pair_entropy
@case("pair_entropy", "ints against the mpmath Bessel closed form", "value")
def _(device):
    for n in (2, 3, 50, 301):
        assert abs(R.pair_entropy(n) - h64(n)) < 1e-13 * max(1, abs(h64(n)))


@case("pair_entropy", "a strided integer tensor on the device, shape kept", "device")
def _(device):
    n = torch.tensor([[2, 9, 40], [3, 64, 7]], device=device).T  # a transposed view
    out = R.pair_entropy(n)
    assert out.shape == (3, 2) and out.device == n.device and out.dtype == F64
    close(
        out,
        torch.tensor([[h64(int(k)) for k in row] for row in n.tolist()], dtype=F64),
        atol=1e-12,
    )


@case("pair_entropy", "empty tensors give empty float64", "empty")
def _(device):
    for shape in ((0,), (2, 0)):
        out = R.pair_entropy(torch.zeros(shape, dtype=torch.int64, device=device))
        assert out.shape == shape and out.dtype == F64


@case("pair_entropy", "n = 10^7 stays finite, on the -0.2406 n line", "finite")
def _(device):
    value = R.pair_entropy(10**7)
    assert math.isfinite(value)
    assert abs(value + 0.5 * math.log((1 + math.sqrt(5)) / 2) * 10**7 + 0.0739) < 1e-3


error("pair_entropy", "bool n", TypeError, r"\bn\b", lambda d: R.pair_entropy(True))
error("pair_entropy", "float n", TypeError, r"\bn\b", lambda d: R.pair_entropy(2.5))
error("pair_entropy", "n = 1", ValueError, r"\bn\b", lambda d: R.pair_entropy(1))
error(
    "pair_entropy",
    "float tensor",
    TypeError,
    r"\bn\b",
    lambda d: R.pair_entropy(torch.tensor([4.0], device=d)),
)
error(
    "pair_entropy",
    "a tensor holding 0",
    ValueError,
    r"\bn\b",
    lambda d: R.pair_entropy(torch.tensor([4, 0], device=d)),
)
error(
    "pair_entropy",
    "meta tensor",
    ValueError,
    r"\bn\b",
    lambda d: R.pair_entropy(torch.tensor([4], device=META)),
)
error(
    "pair_entropy",
    "unknown method",
    ValueError,
    "method",
    lambda d: R.pair_entropy(8, method="simpson"),
)
error(
    "pair_entropy",
    "method not a str",
    TypeError,
    "method",
    lambda d: R.pair_entropy(8, method=1),
)


# ---------------------------------------------------------------- min_dimension
@case(
    "min_dimension", "the article's N = 10^5 and 5 x 10^6; exact coefficient", "value"
)
def _(device):
    assert abs(R.min_dimension(100_000) - 2 / 0.24 * math.log(1e5)) < 1e-12
    assert round(R.min_dimension(5_000_000)) == 129  # 128.5: "about 128"
    coefficient = 4 / math.log((1 + math.sqrt(5)) / 2)
    assert abs(R.min_dimension(7, exact=True) - coefficient * math.log(7)) < 1e-12
    assert R.min_dimension(1) == 0.0


@case("min_dimension", "an integer tensor view; empty in, empty out", "empty")
def _(device):
    sizes = torch.tensor([1, 10, 100, 1000], device=device)[::2]
    close(
        R.min_dimension(sizes),
        torch.tensor([0.0, 2 / 0.24 * math.log(100)], dtype=F64),
        atol=1e-12,
    )
    empty = R.min_dimension(torch.zeros(0, dtype=torch.int32, device=device))
    assert empty.shape == (0,) and empty.dtype == F64


error("min_dimension", "N = 0", ValueError, "vocab_size", lambda d: R.min_dimension(0))
error(
    "min_dimension", "float N", TypeError, "vocab_size", lambda d: R.min_dimension(1e5)
)
error(
    "min_dimension",
    "exact = 1",
    TypeError,
    "exact",
    lambda d: R.min_dimension(10, exact=1),
)
error(
    "min_dimension",
    "meta tensor",
    ValueError,
    "vocab_size",
    lambda d: R.min_dimension(torch.tensor([4], device=META)),
)
error(
    "min_dimension",
    "bool tensor",
    TypeError,
    "vocab_size",
    lambda d: R.min_dimension(torch.tensor([True], device=d)),
)


# ---------------------------------------------------------------- cooccurrence
@case("cooccurrence", "documents against a loop over position pairs", "value")
def _(device):
    docs = [list("abcabxxca"), list("ccz"), [], list("b")]
    for window in (1, 2, 4):
        out = R.cooccurrence(docs, ["a", "b", "c"], window=window, device=device)
        assert out.device.type == device.type
        close(out, counts64(docs, ["a", "b", "c"], window), atol=0)


@case("cooccurrence", "empty vocabulary, empty corpus", "empty")
def _(device):
    assert R.cooccurrence([["a"]], [], window=2, device=device).shape == (0, 0)
    assert R.cooccurrence([], ["a", "b"], window=2, device=device).sum() == 0
    assert R.cooccurrence([[], []], ["a"], window=1, device=device).shape == (1, 1)


error(
    "cooccurrence",
    "a bare string",
    TypeError,
    "tokens",
    lambda d: R.cooccurrence("a b", ["a"], window=1),
)
error(
    "cooccurrence",
    "int tokens",
    TypeError,
    "tokens",
    lambda d: R.cooccurrence([1, 2], ["a"], window=1),
)
error(
    "cooccurrence",
    "documents mixed with strings",
    TypeError,
    "tokens",
    lambda d: R.cooccurrence([["a"], "b"], ["a"], window=1),
)
error(
    "cooccurrence",
    "repeated vocab",
    ValueError,
    "vocab",
    lambda d: R.cooccurrence(["a"], ["a", "a"], window=1),
)
error(
    "cooccurrence",
    "vocab a string",
    TypeError,
    "vocab",
    lambda d: R.cooccurrence(["a"], "ab", window=1),
)
error(
    "cooccurrence",
    "window 0",
    ValueError,
    "window",
    lambda d: R.cooccurrence(["a"], ["a"], window=0),
)
error(
    "cooccurrence",
    "window 1.0",
    TypeError,
    "window",
    lambda d: R.cooccurrence(["a"], ["a"], window=1.0),
)
error(
    "cooccurrence",
    "not a device",
    ValueError,
    "device",
    lambda d: R.cooccurrence(["a"], ["a"], window=1, device="nowhere"),
)


# ---------------------------------------------------------------- fit_log_bilinear
@case("fit_log_bilinear", "a rank-1 pair model is fitted to its entropy", "value")
def _(device):
    g = torch.Generator().manual_seed(0)
    u0, v0 = (
        torch.randn(6, 1, generator=g, dtype=F64),
        torch.randn(5, 1, generator=g, dtype=F64),
    )
    joint = torch.softmax((u0 @ v0.T).reshape(-1), 0).reshape(6, 5).to(device)
    u, v = R.fit_log_bilinear(joint, 1, steps=200, lr=0.1, generator=g)
    assert u.device == joint.device and u.dtype == F64
    gap = float(R.log_bilinear_cross_entropy(joint, u, v)) - float(entropy64(u0, v0))
    assert -1e-12 < gap < 1e-6  # the fit cannot beat the true model's entropy


@case("fit_log_bilinear", "half precision and counts of 1e30 stay finite", "finite")
def _(device):
    joint = torch.rand(5, 4, device=device)
    u, v = R.fit_log_bilinear(joint.half(), 2, steps=10)
    assert u.dtype == torch.float16
    finite(u, v)
    finite(*R.fit_log_bilinear(joint * 1e30, 2, steps=10))


@case("fit_log_bilinear", "a transposed view fits like its contiguous copy", "device")
def _(device):
    joint = torch.rand(4, 6, device=device, dtype=F64).T
    fits = [
        R.fit_log_bilinear(j, 2, steps=5, generator=torch.Generator().manual_seed(1))
        for j in (joint, joint.contiguous())
    ]
    close(fits[0][0], fits[1][0], atol=1e-12)
    close(fits[0][1], fits[1][1], atol=1e-12)


@case("fit_log_bilinear", "an empty joint gives zero tables", "empty")
def _(device):
    u, v = R.fit_log_bilinear(torch.zeros(0, 3, device=device), 2, steps=5)
    assert u.shape == (0, 2) and v.shape == (3, 2) and not v.any()


def _fit(joint, dim=2, steps=1, **kw):
    return lambda d: R.fit_log_bilinear(joint(d), dim, steps=steps, **kw)


error(
    "fit_log_bilinear",
    "integer joint",
    TypeError,
    "joint",
    _fit(lambda d: torch.ones(2, 2, dtype=torch.int64, device=d)),
)
error(
    "fit_log_bilinear",
    "1-D joint",
    ValueError,
    "joint",
    _fit(lambda d: torch.ones(4, device=d)),
)
error(
    "fit_log_bilinear",
    "a negative entry",
    ValueError,
    "joint",
    _fit(lambda d: torch.tensor([[1.0, -1.0]], device=d)),
)
error(
    "fit_log_bilinear",
    "a NaN entry",
    ValueError,
    "joint",
    _fit(lambda d: torch.tensor([[1.0, math.nan]], device=d)),
)
error(
    "fit_log_bilinear",
    "all zeros",
    ValueError,
    "joint",
    _fit(lambda d: torch.zeros(2, 2, device=d)),
)
error(
    "fit_log_bilinear",
    "meta joint",
    ValueError,
    "joint",
    _fit(lambda d: torch.ones(2, 2, device=META)),
)
error(
    "fit_log_bilinear",
    "dim 0",
    ValueError,
    "dim",
    _fit(lambda d: torch.ones(2, 2, device=d), dim=0),
)
error(
    "fit_log_bilinear",
    "steps -1",
    ValueError,
    "steps",
    _fit(lambda d: torch.ones(2, 2, device=d), steps=-1),
)
error(
    "fit_log_bilinear",
    "lr 0",
    ValueError,
    "lr",
    _fit(lambda d: torch.ones(2, 2, device=d), lr=0),
)
error(
    "fit_log_bilinear",
    "scale inf",
    ValueError,
    "scale",
    _fit(lambda d: torch.ones(2, 2, device=d), scale=math.inf),
)
error(
    "fit_log_bilinear",
    "generator a seed",
    TypeError,
    "generator",
    _fit(lambda d: torch.ones(2, 2, device=d), generator=0),
)


# ---------------------------------------------------------------- log_bilinear_cross_entropy
@case("log_bilinear_cross_entropy", "float64 against a loop over pairs", "value")
def _(device):
    joint, u, v = tables(5, 3, 4, device, F64)
    close(
        R.log_bilinear_cross_entropy(joint, u, v),
        cross_entropy64(joint, u, v),
        atol=1e-13,
    )


@case("log_bilinear_cross_entropy", "gradient in u is (P - Q) v", "grad")
def _(device):
    joint, u, v = tables(4, 5, 3, device, F64)
    u.requires_grad_(True)
    R.log_bilinear_cross_entropy(joint, u, v).backward()
    p = torch.softmax((u @ v.T).reshape(-1), 0).reshape(4, 5)
    close(u.grad, (p - joint / joint.sum()).detach() @ v, atol=1e-14)


@case(
    "log_bilinear_cross_entropy",
    "logits of 1e4 and half precision stay finite",
    "finite",
)
def _(device):
    joint, u, v = tables(3, 3, 2, device)
    close(
        R.log_bilinear_cross_entropy(joint, u * 100, v * 100),
        cross_entropy64(joint, u * 100, v * 100),
        atol=0,
        rtol=1e-4,
    )
    out = R.log_bilinear_cross_entropy(joint.half(), u.half(), v.half())
    assert out.dtype == torch.float16
    finite(out)


@case("log_bilinear_cross_entropy", "meta tensors give a meta scalar", "device")
def _(device):
    joint, u, v = tables(3, 2, 2, META)
    out = R.log_bilinear_cross_entropy(joint, u, v)
    assert out.device.type == "meta" and out.shape == ()


@case("log_bilinear_cross_entropy", "no pairs give 0 with a gradient", "empty")
def _(device):
    u = torch.zeros(0, 2, device=device, requires_grad=True)
    out = R.log_bilinear_cross_entropy(
        torch.zeros(0, 0, device=device), u, torch.zeros(0, 2, device=device)
    )
    out.backward()
    assert out.item() == 0 and u.grad.shape == (0, 2)


error(
    "log_bilinear_cross_entropy",
    "joint of the wrong shape",
    ValueError,
    "joint",
    lambda d: R.log_bilinear_cross_entropy(
        *tables(3, 2, 2, d)[:1], *tables(2, 2, 2, d)[1:]
    ),
)
error(
    "log_bilinear_cross_entropy",
    "u and v of different widths",
    ValueError,
    "u",
    lambda d: R.log_bilinear_cross_entropy(
        torch.ones(2, 2, device=d),
        torch.ones(2, 3, device=d),
        torch.ones(2, 2, device=d),
    ),
)
error(
    "log_bilinear_cross_entropy",
    "float64 u with float32 joint",
    TypeError,
    "u",
    lambda d: R.log_bilinear_cross_entropy(
        torch.ones(2, 2, device=d),
        torch.ones(2, 2, device=d, dtype=F64),
        torch.ones(2, 2, device=d),
    ),
)
error(
    "log_bilinear_cross_entropy",
    "joint on meta, tables on the device",
    ValueError,
    "joint|u",
    lambda d: R.log_bilinear_cross_entropy(
        torch.ones(2, 2, device=META),
        torch.ones(2, 2, device=d),
        torch.ones(2, 2, device=d),
    ),
)


# ---------------------------------------------------------------- log_bilinear_entropy
@case("log_bilinear_entropy", "float64 against a loop over pairs", "value")
def _(device):
    _, u, v = tables(4, 6, 3, device, F64)
    close(R.log_bilinear_entropy(u, v), entropy64(u, v), atol=1e-13)


@case(
    "log_bilinear_entropy",
    "logits of 1e6 give 0, not NaN; zero vectors log(N M)",
    "finite",
)
def _(device):
    _, u, v = tables(3, 4, 2, device)
    assert abs(float(R.log_bilinear_entropy(u * 1e3, v * 1e3))) < 1e-6
    zeros = R.log_bilinear_entropy(
        torch.zeros(3, 2, device=device), torch.zeros(4, 2, device=device)
    )
    assert abs(float(zeros) - math.log(12)) < 1e-6
    finite(R.log_bilinear_entropy(u.half(), v.half()))


@case("log_bilinear_entropy", "gradcheck in float64", "grad")
def _(device):
    _, u, v = tables(3, 2, 2, device, F64)
    u.requires_grad_(True)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(R.log_bilinear_entropy, (u, v))


@case("log_bilinear_entropy", "no word on one side gives 0", "empty")
def _(device):
    out = R.log_bilinear_entropy(
        torch.zeros(0, 3, device=device), torch.ones(4, 3, device=device)
    )
    assert out.shape == () and out.item() == 0


error(
    "log_bilinear_entropy",
    "integer u",
    TypeError,
    "u",
    lambda d: R.log_bilinear_entropy(
        torch.ones(2, 2, dtype=torch.int64, device=d), torch.ones(2, 2, device=d)
    ),
)
error(
    "log_bilinear_entropy",
    "3-D v",
    ValueError,
    "v",
    lambda d: R.log_bilinear_entropy(
        torch.ones(2, 2, device=d), torch.ones(1, 2, 2, device=d)
    ),
)
error(
    "log_bilinear_entropy",
    "u on meta",
    ValueError,
    "u|v",
    lambda d: R.log_bilinear_entropy(
        torch.ones(2, 2, device=META), torch.ones(2, 2, device=d)
    ),
)
