"""Hostile inputs for ``kexue.representations`` whitening (``Whitening``,
``fit_whitening``) and ``spearman``, against float64 references written here from the
definitions (the article's numpy recipe, explicit rank loops)."""

from __future__ import annotations

import numpy as np
import torch
from hostile import Registry, close, finite, odd_view

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error


def sample(n: int, d: int, device, dtype=F64, offset: float = 2.0) -> torch.Tensor:
    """Rows with a non-isotropic, well-conditioned covariance and a common offset."""
    scales = torch.linspace(2.0, 0.5, d, dtype=F64)
    x = (
        torch.randn(n, d, dtype=F64)
        * scales
        @ torch.linalg.qr(torch.randn(d, d))[0].to(F64)
        + offset
    )
    return x.to(device=device, dtype=dtype)


# ---------------------------------------------------------------- float64 references
def whiten64(fit: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The article's numpy recipe: np.cov, SVD, u[:, :k] / sqrt(s[:k])."""
    vecs = fit.detach().double().cpu().numpy()
    mu = vecs.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov(vecs.T))
    out = (x.detach().double().cpu().numpy() - mu) @ (u[:, :k] / np.sqrt(s[:k]))
    return torch.from_numpy(out)


def unit_abs(z: torch.Tensor) -> torch.Tensor:
    """|z| column by column: whitening is defined up to the sign of each column."""
    return z.detach().double().cpu().abs()


def spearman64(a: torch.Tensor, b: torch.Tensor) -> float:
    """Average ranks by counting (rank = #smaller + (#equal + 1)/2), then Pearson."""

    def ranks(x: list[float]) -> list[float]:
        return [sum(y < v for y in x) + (sum(y == v for y in x) + 1) / 2 for v in x]

    ra = np.array(ranks(a.double().cpu().tolist()))
    rb = np.array(ranks(b.double().cpu().tolist()))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))


# ---------------------------------------------------------------- fit_whitening
@case("representations.fit_whitening", "float64 against the article's recipe", "value")
def _(device):
    x = sample(80, 6, device)
    for k in (None, 2):
        out = R.fit_whitening(x, k=k)(x)
        close(unit_abs(out), unit_abs(whiten64(x, x, k or 6)), atol=1e-12)


@case("representations.fit_whitening", "whitened covariance is I to 1e-13", "value")
def _(device):
    x = sample(200, 8, device)
    z = R.fit_whitening(x)(x).double().cpu()
    close(z.T @ z / 199, torch.eye(8, dtype=F64), atol=1e-13)


@case("representations.fit_whitening", "float16 fit: float32 weights, finite", "finite")
def _(device):
    x = sample(100, 5, device, dtype=torch.float16, offset=0.0)
    w = R.fit_whitening(x)
    assert w.weight.dtype == torch.float32 and w.mean.dtype == torch.float32
    out = w(x)
    assert out.dtype == torch.float16
    finite(out)
    close(unit_abs(out), unit_abs(whiten64(x, x, 5)), atol=2e-2)


@case("representations.fit_whitening", "tiny variance 1e-12 scale whitened", "value")
def _(device):
    x = 1e-6 * sample(60, 4, device)  # covariance ~1e-12: still full rank
    close(unit_abs(R.fit_whitening(x)(x)), unit_abs(whiten64(x, x, 4)), atol=1e-9)


@case("representations.fit_whitening", "large offset 1e6 does not cancel", "value")
def _(device):
    x = sample(100, 4, device, offset=1e6)
    close(unit_abs(R.fit_whitening(x)(x)), unit_abs(whiten64(x, x, 4)), atol=1e-6)


@case("representations.fit_whitening", "odd-offset and transposed views", "device")
def _(device):
    x = odd_view(40, 3, device=device, dtype=F64)
    close(unit_abs(R.fit_whitening(x)(x)), unit_abs(whiten64(x, x, 3)), atol=1e-12)
    y = torch.randn(3, 40, dtype=F64, device=device).T
    close(unit_abs(R.fit_whitening(y)(y)), unit_abs(whiten64(y, y, 3)), atol=1e-12)


@case("representations.fit_whitening", "rank-deficient x whitens k <= rank", "value")
def _(device):
    x = sample(5, 10, device)  # 5 rows: rank 4
    out = R.fit_whitening(x, k=4)(x)
    close(unit_abs(out), unit_abs(whiten64(x, x, 4)), atol=1e-10)


error(
    "representations.fit_whitening",
    "rank 4 < k = 10: named error",
    ValueError,
    "rank 4",
    lambda d: R.fit_whitening(sample(5, 10, d)),
)
error(
    "representations.fit_whitening",
    "constant columns: rank 0",
    ValueError,
    "x has a covariance of rank 0",
    lambda d: R.fit_whitening(torch.ones(8, 3, device=d)),
)
error(
    "representations.fit_whitening",
    "one row",
    ValueError,
    "x needs at least 2 rows",
    lambda d: R.fit_whitening(torch.randn(1, 3, device=d)),
)
error(
    "representations.fit_whitening",
    "empty (0, 3)",
    ValueError,
    "x needs at least 2 rows",
    lambda d: R.fit_whitening(torch.empty(0, 3, device=d)),
)
error(
    "representations.fit_whitening",
    "no column (5, 0)",
    ValueError,
    "x needs at least one column",
    lambda d: R.fit_whitening(torch.empty(5, 0, device=d)),
)
error(
    "representations.fit_whitening",
    "NaN in x",
    ValueError,
    "x must hold finite",
    lambda d: R.fit_whitening(
        torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [2.0, 0.0]], device=d)
    ),
)
error(
    "representations.fit_whitening",
    "int tensor",
    TypeError,
    "x",
    lambda d: R.fit_whitening(torch.ones(5, 2, dtype=torch.int64, device=d)),
)
error(
    "representations.fit_whitening",
    "1-D x",
    ValueError,
    "x must have 2 dimensions",
    lambda d: R.fit_whitening(torch.randn(5, device=d)),
)
error(
    "representations.fit_whitening",
    "a numpy array",
    TypeError,
    "x",
    lambda d: R.fit_whitening(np.ones((5, 2))),
)
error(
    "representations.fit_whitening",
    "k = 0",
    ValueError,
    "k",
    lambda d: R.fit_whitening(torch.randn(5, 2, device=d), k=0),
)
error(
    "representations.fit_whitening",
    "k = 2.0",
    TypeError,
    "k",
    lambda d: R.fit_whitening(torch.randn(5, 2, device=d), k=2.0),
)
error(
    "representations.fit_whitening",
    "k > d",
    ValueError,
    "k must be at most d",
    lambda d: R.fit_whitening(torch.randn(5, 2, device=d), k=3),
)
error(
    "representations.fit_whitening",
    "unbiased=1",
    TypeError,
    "unbiased",
    lambda d: R.fit_whitening(torch.randn(5, 2, device=d), unbiased=1),
)
error(
    "representations.fit_whitening",
    "meta x",
    ValueError,
    "x is a meta tensor",
    lambda d: R.fit_whitening(torch.empty(5, 2, device=META)),
)


# ---------------------------------------------------------------- Whitening
@case("representations.Whitening", "(x - mean) @ weight in float64", "value")
def _(device):
    mean = torch.randn(4, dtype=F64, device=device)
    weight = torch.randn(4, 3, dtype=F64, device=device)
    x = torch.randn(2, 5, 4, dtype=F64, device=device)
    ref = (x.cpu() - mean.cpu()) @ weight.cpu()
    close(R.Whitening(mean, weight)(x), ref, atol=1e-14)


@case("representations.Whitening", "float32 buffers, float64 input", "value")
def _(device):
    x = sample(50, 4, device)
    w = R.fit_whitening(x.float())
    out = w(x)
    assert out.dtype == F64
    close(unit_abs(out), unit_abs(whiten64(x, x, 4)), atol=1e-4)


@case("representations.Whitening", "empty batches keep their shape", "empty")
def _(device):
    w = R.Whitening(torch.zeros(4, device=device), torch.eye(4, 2, device=device))
    assert w(torch.empty(0, 4, device=device)).shape == (0, 2)
    assert w(torch.empty(3, 0, 4, device=device)).shape == (3, 0, 2)


@case("representations.Whitening", "gradient is weight summed", "grad")
def _(device):
    mean = torch.randn(3, dtype=F64, device=device)
    weight = torch.randn(3, 2, dtype=F64, device=device)
    x = torch.randn(5, 3, dtype=F64, device=device, requires_grad=True)
    R.Whitening(mean, weight)(x).sum().backward()
    close(x.grad, weight.sum(1).cpu().expand(5, 3), atol=1e-14)


@case("representations.Whitening", "odd-offset view input", "device")
def _(device):
    w = R.Whitening(
        torch.zeros(3, dtype=F64, device=device), torch.eye(3, dtype=F64, device=device)
    )
    x = odd_view(4, 3, device=device, dtype=F64)
    close(w(x), x.cpu(), atol=0)


@case("representations.Whitening", "on meta: meta in, meta out", "device")
def _(device):
    w = R.Whitening(torch.zeros(4), torch.eye(4, 2)).to(META)
    out = w(torch.empty(3, 4, device=META))
    assert out.device.type == "meta" and tuple(out.shape) == (3, 2)


error(
    "representations.Whitening",
    "x on meta, buffers not",
    ValueError,
    "x is on meta",
    lambda d: R.Whitening(torch.zeros(2, device=d), torch.eye(2, device=d))(
        torch.empty(3, 2, device=META)
    ),
)
error(
    "representations.Whitening",
    "wrong width",
    ValueError,
    r"x must have shape \(\.\.\., 2\)",
    lambda d: R.Whitening(torch.zeros(2, device=d), torch.eye(2, device=d))(
        torch.randn(3, 5, device=d)
    ),
)
error(
    "representations.Whitening",
    "0-d input",
    ValueError,
    "x",
    lambda d: R.Whitening(torch.zeros(1, device=d), torch.eye(1, device=d))(
        torch.tensor(1.0, device=d)
    ),
)
error(
    "representations.Whitening",
    "int input",
    TypeError,
    "x",
    lambda d: R.Whitening(torch.zeros(2, device=d), torch.eye(2, device=d))(
        torch.ones(3, 2, dtype=torch.int64, device=d)
    ),
)
error(
    "representations.Whitening",
    "weight rows != mean length",
    ValueError,
    "weight must have shape",
    lambda d: R.Whitening(torch.zeros(3, device=d), torch.eye(2, device=d)),
)
error(
    "representations.Whitening",
    "mean and weight dtypes differ",
    TypeError,
    "weight",
    lambda d: R.Whitening(torch.zeros(2, device=d), torch.eye(2, dtype=F64, device=d)),
)
error(
    "representations.Whitening",
    "2-D mean",
    ValueError,
    "mean must have 1 dimensions",
    lambda d: R.Whitening(torch.zeros(1, 2, device=d), torch.eye(2, device=d)),
)
error(
    "representations.Whitening",
    "mean and weight on different devices",
    ValueError,
    "weight is on meta",
    lambda d: R.Whitening(torch.zeros(2, device=d), torch.eye(2, device=META)),
)


# ---------------------------------------------------------------- spearman
@case("representations.spearman", "ties: against rank counting", "value")
def _(device):
    a = torch.randint(0, 4, (30,), device=device)
    b = torch.randn(30, device=device).round()
    assert abs(R.spearman(a, b) - spearman64(a, b)) < 1e-12


@case("representations.spearman", "float16 and strided inputs", "value")
def _(device):
    a = torch.randn(40, device=device).half()
    b = torch.randn(80, dtype=F64, device=device)[::2]
    assert abs(R.spearman(a, b) - spearman64(a, b)) < 1e-12


@case("representations.spearman", "constant input gives NaN, as SciPy", "finite")
def _(device):
    out = R.spearman(torch.ones(5, device=device), torch.randn(5, device=device))
    assert np.isnan(out)


@case("representations.spearman", "huge values 1e300 keep ranks", "value")
def _(device):
    a = torch.tensor([1e300, -1e300, 0.0, 1e299], dtype=F64, device=device)
    assert abs(R.spearman(a, a) - 1.0) < 1e-15


error(
    "representations.spearman",
    "length mismatch",
    ValueError,
    "same length",
    lambda d: R.spearman(torch.randn(3, device=d), torch.randn(4, device=d)),
)
error(
    "representations.spearman",
    "empty inputs",
    ValueError,
    "at least 2",
    lambda d: R.spearman(torch.empty(0, device=d), torch.empty(0, device=d)),
)
error(
    "representations.spearman",
    "bool input",
    TypeError,
    "a",
    lambda d: R.spearman(torch.ones(3, dtype=torch.bool, device=d), torch.ones(3)),
)
error(
    "representations.spearman",
    "2-D input",
    ValueError,
    "b must have 1 dimensions",
    lambda d: R.spearman(torch.randn(3, device=d), torch.randn(3, 1, device=d)),
)
error(
    "representations.spearman",
    "NaN in a",
    ValueError,
    "a must hold finite",
    lambda d: R.spearman(
        torch.tensor([1.0, float("nan"), 2.0], device=d), torch.randn(3, device=d)
    ),
)
error(
    "representations.spearman",
    "different devices",
    ValueError,
    "b is on meta",
    lambda d: R.spearman(torch.randn(3, device=d), torch.empty(3, device=META)),
)
error(
    "representations.spearman",
    "a list",
    TypeError,
    "a",
    lambda d: R.spearman([1.0, 2.0], torch.randn(2, device=d)),
)


# ---------------------------------------------------------------- covariance_rank
def rank64(x: torch.Tensor) -> int:
    """numpy.linalg.matrix_rank of the covariance, with the floor max(n, d) eps s_max."""
    vecs = x.detach().double().cpu().numpy()
    n, d = vecs.shape
    cov = np.cov(vecs.T).reshape(d, d)
    tol = max(n, d) * np.finfo(np.float64).eps * max(np.linalg.eigvalsh(cov).max(), 0)
    return int(np.linalg.matrix_rank(cov, tol=tol, hermitian=True))


@case(
    "representations.covariance_rank",
    "full, deficient and n <= d against numpy",
    "value",
)
def _(device):
    low = sample(50, 3, device) @ torch.randn(3, 6, dtype=F64, device=device)
    for x in (sample(40, 5, device), low, sample(4, 6, device)):
        assert R.covariance_rank(x) == rank64(x)
    assert R.covariance_rank(sample(4, 6, device)) == 3


@case("representations.covariance_rank", "float16 and odd-offset views", "device")
def _(device):
    assert R.covariance_rank(sample(50, 4, device, dtype=torch.float16)) == 4
    x = odd_view(30, 3, device=device, dtype=F64)
    assert R.covariance_rank(x) == rank64(x) == 3


error(
    "representations.covariance_rank",
    "int64 rows: TypeError",
    TypeError,
    "x",
    lambda d: R.covariance_rank(torch.ones(4, 2, dtype=torch.int64, device=d)),
)
error(
    "representations.covariance_rank",
    "one row: ValueError",
    ValueError,
    "x",
    lambda d: R.covariance_rank(torch.ones(1, 2, device=d)),
)
error(
    "representations.covariance_rank",
    "NaN: ValueError",
    ValueError,
    "finite",
    lambda d: R.covariance_rank(torch.full((3, 2), float("nan"), device=d)),
)
error(
    "representations.covariance_rank",
    "meta: ValueError",
    ValueError,
    "meta",
    lambda d: R.covariance_rank(torch.ones(3, 2, device=META)),
)


# ---------------------------------------------------------------- Whitening.truncate
@case("representations.Whitening", "truncate(k) equals a fit with k", "value")
def _(device):
    x = sample(60, 5, device)
    out = R.fit_whitening(x).truncate(2)(x)
    assert out.shape == (60, 2)
    close(unit_abs(out), unit_abs(whiten64(x, x, 2)), atol=1e-12)


error(
    "representations.Whitening",
    "truncate(k > out_features): ValueError",
    ValueError,
    "k",
    lambda d: R.fit_whitening(sample(20, 3, d)).truncate(4),
)
error(
    "representations.Whitening",
    "truncate(1.5): TypeError",
    TypeError,
    "k",
    lambda d: R.fit_whitening(sample(20, 3, d)).truncate(1.5),
)


# ---------------------------------------------------------------- cosine_matrix
def cos64(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = x.detach().double().cpu(), y.detach().double().cpu()
    out = torch.zeros(len(a), len(b), dtype=F64)
    for i in range(len(a)):
        for j in range(len(b)):
            norm = float(a[i].norm() * b[j].norm())
            out[i, j] = 0.0 if norm == 0 else float(a[i] @ b[j]) / norm
    return out


@case(
    "representations.cosine_matrix", "float64 against a loop; zero row gives 0", "value"
)
def _(device):
    x, y = sample(6, 4, device), sample(3, 4, device)
    x[1] = 0
    close(R.cosine_matrix(x, y), cos64(x, y), atol=1e-15)
    close(R.cosine_matrix(x), cos64(x, x), atol=1e-15)


@case("representations.cosine_matrix", "float16 huge values: finite, float16", "finite")
def _(device):
    x = torch.full((3, 4), 6e4, dtype=torch.float16, device=device)
    out = R.cosine_matrix(x)
    assert out.dtype == torch.float16
    finite(out)
    close(out, torch.ones(3, 3, dtype=F64), atol=1e-3)


@case("representations.cosine_matrix", "empty rows: empty matrix", "empty")
def _(device):
    x = torch.zeros(0, 4, device=device)
    assert R.cosine_matrix(x).shape == (0, 0)
    assert R.cosine_matrix(x, torch.ones(2, 4, device=device)).shape == (0, 2)


@case("representations.cosine_matrix", "odd-offset and transposed views", "device")
def _(device):
    x = odd_view(5, 3, device=device, dtype=F64)
    y = torch.randn(3, 4, dtype=F64, device=device).T
    close(R.cosine_matrix(x, y), cos64(x, y), atol=1e-15)


error(
    "representations.cosine_matrix",
    "widths differ: ValueError",
    ValueError,
    "width",
    lambda d: R.cosine_matrix(torch.ones(2, 3, device=d), torch.ones(2, 4, device=d)),
)
error(
    "representations.cosine_matrix",
    "dtypes differ: TypeError",
    TypeError,
    "dtype",
    lambda d: R.cosine_matrix(
        torch.ones(2, 3, device=d), torch.ones(2, 3, dtype=F64, device=d)
    ),
)
error(
    "representations.cosine_matrix",
    "1-D x: ValueError",
    ValueError,
    "x",
    lambda d: R.cosine_matrix(torch.ones(3, device=d)),
)
error(
    "representations.cosine_matrix",
    "list y: TypeError",
    TypeError,
    "y",
    lambda d: R.cosine_matrix(torch.ones(2, 3, device=d), [[1.0, 2.0, 3.0]]),
)


# ---------------------------------------------------------------- anisotropy
@case("representations.anisotropy", "against a loop, with and without groups", "value")
def _(device):
    x = sample(7, 3, device)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 2], device=device)
    cos = cos64(x, x)
    g = groups.cpu()
    both = [(i, j) for i in range(7) for j in range(7) if i != j]
    apart = [(i, j) for i, j in both if g[i] != g[j]]
    for pairs, out in ((both, R.anisotropy(x)), (apart, R.anisotropy(x, groups))):
        expected = sum(float(cos[i, j]) for i, j in pairs) / len(pairs)
        assert abs(out - expected) < 1e-15, (out, expected)


@case("representations.anisotropy", "float16 rows: finite", "finite")
def _(device):
    out = R.anisotropy(torch.full((4, 3), 6e4, dtype=torch.float16, device=device))
    assert abs(out - 1.0) < 1e-12


error(
    "representations.anisotropy",
    "one row: ValueError",
    ValueError,
    "x",
    lambda d: R.anisotropy(torch.ones(1, 3, device=d)),
)
error(
    "representations.anisotropy",
    "groups of wrong length: ValueError",
    ValueError,
    "groups",
    lambda d: R.anisotropy(torch.ones(3, 2, device=d), torch.tensor([0, 1], device=d)),
)
error(
    "representations.anisotropy",
    "float groups: TypeError",
    TypeError,
    "groups",
    lambda d: R.anisotropy(torch.ones(3, 2, device=d), torch.zeros(3, device=d)),
)
error(
    "representations.anisotropy",
    "one group: ValueError",
    ValueError,
    "group",
    lambda d: R.anisotropy(
        torch.randn(3, 2, device=d), torch.zeros(3, dtype=torch.long, device=d)
    ),
)
error(
    "representations.anisotropy",
    "meta: ValueError",
    ValueError,
    "meta",
    lambda d: R.anisotropy(torch.ones(3, 2, device=META)),
)
