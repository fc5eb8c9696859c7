"""Hostile inputs for ``kexue.representations`` Johnson-Lindenstrauss tools
(``jl_min_dim``, ``gaussian_projection``, ``distortion``, ``simhash``,
``simhash_cosine``, ``randomized_svd``), against float64 references written here from
the definitions (pair loops, bit counting, a full SVD)."""

from __future__ import annotations

import itertools
import math

import torch
from hostile import Registry, close, finite, odd_view

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ratios64(x: torch.Tensor, a: torch.Tensor) -> tuple[float, float]:
    """Min and max squared-distance ratio over distinct pairs, by a loop."""
    x, a = x.detach().double().cpu(), a.detach().double().cpu()
    out = []
    for i, j in itertools.combinations(range(x.shape[0]), 2):
        d = x[i] - x[j]
        if d.abs().max() > 0:
            out.append(float((a @ d).square().sum() / d.square().sum()))
    return min(out), max(out)


def signs64(x: torch.Tensor, bits: int, seed: int) -> torch.Tensor:
    """SimHash by the definition: CPU hyperplanes from the seed (drawn in float64 for
    float64 rows, float32 otherwise), float64 signs."""
    draw = F64 if x.dtype == F64 else torch.float32
    planes = torch.randn(bits, x.shape[-1], generator=gen(seed), dtype=draw).double()
    return x.detach().double().cpu() @ planes.T > 0


# ---------------------------------------------------------------- jl_min_dim
T = "representations.jl_min_dim"


@case(T, "N = 200, eps = 0.3 gives 1413 = floor(24 log 200 / 0.09) + 1", "value")
def _(device):
    assert R.jl_min_dim(200, 0.3) == 1413
    assert (
        R.jl_min_dim(200, 0.3, constant=16) == math.floor(16 * math.log(200) / 0.09) + 1
    )
    assert R.jl_min_dim(1, 0.5) == 1


error(T, "num_points = 2.5", TypeError, "num_points", lambda d: R.jl_min_dim(2.5, 0.3))
error(T, "num_points = 0", ValueError, "num_points", lambda d: R.jl_min_dim(0, 0.3))
error(T, "eps = 1", ValueError, "eps", lambda d: R.jl_min_dim(10, 1.0))
error(T, "eps = True", TypeError, "eps", lambda d: R.jl_min_dim(10, True))
error(T, "eps = nan", ValueError, "eps", lambda d: R.jl_min_dim(10, math.nan))
error(
    T,
    "constant = 0",
    ValueError,
    "constant",
    lambda d: R.jl_min_dim(10, 0.3, constant=0),
)

# ---------------------------------------------------------------- gaussian_projection
T = "representations.gaussian_projection"


@case(T, "CPU generator: same matrix on every device, scale 1/sqrt(n)", "value")
def _(device):
    a = R.gaussian_projection(30, 9, generator=gen(0), device=device, dtype=F64)
    ref = torch.randn(9, 30, generator=gen(0), dtype=F64) / 3
    close(a, ref, atol=1e-15)
    assert a.device.type == device.type


@case(T, "float16: drawn in float32, scaled, then rounded", "finite")
def _(device):
    a = R.gaussian_projection(
        40, 4, generator=gen(1), dtype=torch.float16, device=device
    )
    assert a.dtype == torch.float16
    finite(a)
    close(a, torch.randn(4, 40, generator=gen(1)).double() / 2, atol=1e-3)


@case(T, "in_dim = 0 gives an empty (n, 0) matrix", "empty")
def _(device):
    assert R.gaussian_projection(0, 5, device=device).shape == (5, 0)


@case(T, "device='meta' gives a meta matrix of the right shape", "device")
def _(device):
    a = R.gaussian_projection(7, 3, device=META)
    assert a.device.type == "meta" and a.shape == (3, 7)


error(T, "out_dim = 0", ValueError, "out_dim", lambda d: R.gaussian_projection(4, 0))
error(T, "in_dim = -1", ValueError, "in_dim", lambda d: R.gaussian_projection(-1, 3))
error(T, "out_dim = 2.0", TypeError, "out_dim", lambda d: R.gaussian_projection(4, 2.0))
error(
    T,
    "integer dtype",
    TypeError,
    "dtype",
    lambda d: R.gaussian_projection(4, 2, dtype=torch.int64),
)
error(
    T,
    "generator = 0",
    TypeError,
    "generator",
    lambda d: R.gaussian_projection(4, 2, generator=0),
)
error(
    T,
    "device = 'gpu!'",
    ValueError,
    "device",
    lambda d: R.gaussian_projection(4, 2, device="gpu!"),
)

# ---------------------------------------------------------------- distortion
T = "representations.distortion"


@case(T, "against a float64 pair loop, chunk 3, shifted data", "value")
def _(device):
    x = torch.randn(25, 8, dtype=F64) + 10.0
    a = R.gaussian_projection(8, 5, dtype=F64)
    got = R.distortion(x.to(device), a.to(device), chunk=3)
    close(
        torch.tensor(got, dtype=F64),
        torch.tensor(ratios64(x, a), dtype=F64),
        atol=1e-12,
    )


@case(T, "float16 points and float32 projection: float64 inside", "finite")
def _(device):
    x = (torch.randn(20, 6) * 100).half()
    a = R.gaussian_projection(6, 4)
    got = R.distortion(x.to(device), a.to(device))
    close(
        torch.tensor(got, dtype=F64),
        torch.tensor(ratios64(x, a), dtype=F64),
        atol=1e-10,
    )


@case(T, "a transposed (non-contiguous) x and an odd-offset projection", "device")
def _(device):
    x = torch.randn(6, 18, device=device).T
    a = odd_view(3, 6, device=device)
    got = R.distortion(x, a)
    close(
        torch.tensor(got, dtype=F64),
        torch.tensor(ratios64(x, a), dtype=F64),
        atol=1e-10,
    )


@case(T, "duplicate rows are skipped, not 0/0", "finite")
def _(device):
    x = torch.randn(5, 4, dtype=F64, device=device)
    x = torch.cat([x, x])
    a = R.gaussian_projection(4, 2, dtype=F64, device=device)
    got = R.distortion(x, a)
    assert all(math.isfinite(v) for v in got)
    close(
        torch.tensor(got, dtype=F64),
        torch.tensor(ratios64(x, a), dtype=F64),
        atol=1e-12,
    )


X4 = lambda d: torch.randn(5, 4, device=d)  # noqa: E731
A4 = lambda d: torch.randn(2, 4, device=d)  # noqa: E731
error(T, "one row: no pair", ValueError, "x", lambda d: R.distortion(X4(d)[:1], A4(d)))
error(
    T,
    "no row (empty): no pair",
    ValueError,
    "x",
    lambda d: R.distortion(X4(d)[:0], A4(d)),
)
error(
    T,
    "all rows equal: no pair",
    ValueError,
    "x",
    lambda d: R.distortion(torch.ones(4, 4, device=d), A4(d)),
)
error(
    T,
    "integer x",
    TypeError,
    "x",
    lambda d: R.distortion(torch.ones(4, 4, dtype=torch.long, device=d), A4(d)),
)
error(T, "1-D x", ValueError, "x", lambda d: R.distortion(X4(d)[0], A4(d)))
error(
    T,
    "projection with 3 columns for 4-D points",
    ValueError,
    "projection",
    lambda d: R.distortion(X4(d), A4(d)[:, :3]),
)
error(
    T,
    "NaN in x",
    ValueError,
    "x",
    lambda d: R.distortion(
        X4(d).index_fill(0, torch.tensor([1], device=d), math.nan), A4(d)
    ),
)
error(
    T, "chunk = 0", ValueError, "chunk", lambda d: R.distortion(X4(d), A4(d), chunk=0)
)
error(
    T,
    "meta x",
    ValueError,
    "meta",
    lambda d: R.distortion(
        torch.randn(5, 4, device=META), torch.randn(2, 4, device=META)
    ),
)

# ---------------------------------------------------------------- simhash
T = "representations.simhash"


@case(T, "signs against float64 products with the same hyperplanes", "value")
def _(device):
    x = torch.randn(3, 10, 12, dtype=F64)
    codes = R.simhash(x.to(device), 40, generator=gen(2))
    assert codes.dtype == torch.bool and codes.shape == (3, 10, 40)
    assert torch.equal(codes.cpu(), signs64(x, 40, 2))


@case(T, "float16 rows near the float16 maximum: signs computed in float32", "finite")
def _(device):
    x = torch.full((4, 300), 6e4).half() * torch.randn(4, 300).sign().half()
    codes = R.simhash(x.to(device), 16, generator=gen(3))
    assert torch.equal(codes.cpu(), signs64(x, 16, 3))


@case(T, "no rows in, (0, bits) out", "empty")
def _(device):
    assert R.simhash(torch.randn(0, 5, device=device), 8).shape == (0, 8)


@case(T, "an odd-offset view hashes like its copy", "device")
def _(device):
    x = odd_view(4, 9, device=device)
    assert torch.equal(
        R.simhash(x, 20, generator=gen(4)), R.simhash(x.clone(), 20, generator=gen(4))
    )


error(T, "bits = 0", ValueError, "bits", lambda d: R.simhash(X4(d), 0))
error(
    T,
    "integer x",
    TypeError,
    "x",
    lambda d: R.simhash(torch.ones(3, 4, dtype=torch.int32, device=d), 8),
)
error(T, "0-d x", ValueError, "x", lambda d: R.simhash(torch.tensor(1.0, device=d), 8))
error(
    T,
    "generator = 'seed'",
    TypeError,
    "generator",
    lambda d: R.simhash(X4(d), 8, generator="seed"),
)

# ---------------------------------------------------------------- simhash_cosine
T = "representations.simhash_cosine"
BITS_A = lambda d: torch.rand(4, 10, generator=gen(5)).to(d) > 0.5  # noqa: E731
BITS_B = lambda d: torch.rand(3, 10, generator=gen(6)).to(d) > 0.5  # noqa: E731


@case(T, "cos(pi h) and 1 - 2h against bit counting", "value")
def _(device):
    a, b = BITS_A(device), BITS_B(device)
    unequal = torch.tensor(
        [
            [sum(int(a[i, k] != b[j, k]) for k in range(10)) / 10 for j in range(3)]
            for i in range(4)
        ],
        dtype=F64,
    )
    close(R.simhash_cosine(a, b), torch.cos(math.pi * unequal), atol=1e-6)
    close(R.simhash_cosine(a, b, method="sign"), 1 - 2 * unequal, atol=1e-6)


@case(T, "no rows in codes_a: (0, N_b) out", "empty")
def _(device):
    assert R.simhash_cosine(BITS_A(device)[:0], BITS_B(device)).shape == (0, 3)


error(
    T,
    "float codes",
    TypeError,
    "codes_a",
    lambda d: R.simhash_cosine(BITS_A(d).float(), BITS_B(d)),
)
error(
    T,
    "different bit counts",
    ValueError,
    "codes_b",
    lambda d: R.simhash_cosine(BITS_A(d), BITS_B(d)[:, :9]),
)
error(
    T,
    "different leading dimensions (no broadcasting)",
    ValueError,
    "codes_a",
    lambda d: R.simhash_cosine(BITS_A(d)[None], BITS_B(d)),
)
error(
    T,
    "1-D codes",
    ValueError,
    "codes_a",
    lambda d: R.simhash_cosine(BITS_A(d)[0], BITS_B(d)),
)
error(
    T,
    "zero bits",
    ValueError,
    "bit",
    lambda d: R.simhash_cosine(BITS_A(d)[:, :0], BITS_B(d)[:, :0]),
)
error(
    T,
    "method = 'cos'",
    ValueError,
    "method",
    lambda d: R.simhash_cosine(BITS_A(d), BITS_B(d), method="cos"),
)

# ---------------------------------------------------------------- randomized_svd
T = "representations.randomized_svd"


def low_rank(device, dtype=F64) -> torch.Tensor:
    g = gen(7)
    m = torch.randn(30, 4, dtype=F64, generator=g) @ torch.randn(
        4, 20, dtype=F64, generator=g
    )
    return m.to(device=device, dtype=dtype)


@case(T, "rank-4 matrix: singular values and product of a float64 SVD", "value")
def _(device):
    m = low_rank(device)
    u, s, v = R.randomized_svd(m, 4, generator=gen(8))
    s_ref = torch.linalg.svdvals(m.cpu())[:4]
    close(s, s_ref, atol=1e-12 * s_ref[0].item())
    close(u * s @ v.mT, m, atol=1e-12 * s_ref[0].item())


@case(T, "float16 in: float32 inside, float16 out, finite", "finite")
def _(device):
    out = R.randomized_svd(low_rank(device, torch.float16), 4, generator=gen(9))
    assert all(t.dtype == torch.float16 for t in out)
    finite(*out)


@case(T, "a transposed view decomposes like its copy", "device")
def _(device):
    m = low_rank(device).mT
    s_view = R.randomized_svd(m, 3, generator=gen(10))[1]
    close(s_view, R.randomized_svd(m.contiguous(), 3, generator=gen(10))[1], atol=1e-12)


@case(T, "meta matrix: meta factors of the right shapes", "device")
def _(device):
    u, s, v = R.randomized_svd(torch.randn(2, 30, 20, device=META), 5)
    assert u.shape == (2, 30, 5) and s.shape == (2, 5) and v.shape == (2, 20, 5)
    assert u.device.type == "meta"


@case(T, "empty batch in, empty factors out", "empty")
def _(device):
    u, s, v = R.randomized_svd(torch.randn(0, 30, 20, device=device), 5)
    assert u.shape == (0, 30, 5) and s.shape == (0, 5) and v.shape == (0, 20, 5)


error(
    T,
    "rank > min(rows, cols)",
    ValueError,
    "rank",
    lambda d: R.randomized_svd(low_rank(d), 21),
)
error(T, "rank = 0", ValueError, "rank", lambda d: R.randomized_svd(low_rank(d), 0))
error(
    T,
    "integer m",
    TypeError,
    "m",
    lambda d: R.randomized_svd(torch.ones(5, 5, dtype=torch.long, device=d), 2),
)
error(
    T, "1-D m", ValueError, "m", lambda d: R.randomized_svd(torch.ones(5, device=d), 1)
)
error(
    T,
    "oversample = -1",
    ValueError,
    "oversample",
    lambda d: R.randomized_svd(low_rank(d), 2, oversample=-1),
)
error(
    T,
    "power_iters = 1.5",
    TypeError,
    "power_iters",
    lambda d: R.randomized_svd(low_rank(d), 2, power_iters=1.5),
)
