"""HiPPO: memory as online projection onto Legendre polynomials.

After kexue.fm/archives/10114 and 10137. The coefficients ``c_n(T)`` of the history
``u`` in an orthonormal basis obey a linear ODE ``c'(T) = A c(T) + B u(T)`` (LegT, a
sliding window) or ``T c'(T) = A c(T) + B u(T)`` (LegS, the whole history,
rescaled). Basis: ``g_n(s) = sqrt((2n+1)/2) P_n(s)`` on ``[-1, 1]``, the article's
convention.

How this maps to the HiPPO paper and the S4 code (``hippo.py``, ``transition``): S4's
``B`` is this module's ``B / sqrt(2)`` (it uses ``sqrt(2n+1)``), because S4's
coefficients are those of ``u`` against ``sqrt(2n+1) P_n`` with the uniform
*probability* measure on the interval, i.e. ``c_S4 = c / sqrt(2)``. S4's ``legt``
matrices are this module's with ``window = 2`` (its ``A`` has the factor 1/2 that
``1/w`` gives at ``w = 2``). The ``A`` of LegS is the same in both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from kexue import _checks

__all__ = [
    "discretize",
    "lagt",
    "legendre_projection",
    "legs",
    "legs_matvec",
    "legs_memory",
    "legs_solve",
    "legt",
    "legt_memory",
    "reconstruct",
]

Method = Literal["forward", "backward", "bilinear", "zoh"]
METHODS: tuple[Method, ...] = ("forward", "backward", "bilinear", "zoh")


def legs(N: int) -> tuple[Tensor, Tensor]:
    """LegS: ``A_nk = -sqrt((2n+1)(2k+1))`` (k < n), ``-(n+1)`` (k = n), 0 (k > n).

    ``B_n = sqrt(2(2n+1))``. Returns float64 tensors ``A (N, N)``, ``B (N,)``; the state
    obeys ``T c'(T) = A c + B u(T)``.

    Raises:
        TypeError: ``N`` is not an int.
        ValueError: ``N < 1``.
    """
    N = _checks.positive_int(N, "N")
    root = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    A = -torch.tril(root[:, None] * root[None, :], diagonal=-1) - torch.diag(
        torch.arange(1, N + 1, dtype=torch.float64)
    )
    return A, math.sqrt(2) * root


def legt(N: int, *, window: float = 1.0) -> tuple[Tensor, Tensor]:
    """LegT on a window ``w``: ``B_n = sqrt(2(2n+1)) / w`` and
    ``A_nk = -(1/w) sqrt((2n+1)(2k+1)) * (1 if k < n else (-1)^(n-k))``.

    The state obeys ``c'(T) = A c + B u(T)``; float64 tensors ``(N, N)``, ``(N,)``.

    Raises:
        TypeError: ``N`` not an int, ``window`` not a number.
        ValueError: ``N < 1``, ``window`` not positive and finite.
    """
    N = _checks.positive_int(N, "N")
    window = _checks.real(window, "window", positive=True)
    n = torch.arange(N, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    sign = torch.where(
        n[None, :] < n[:, None], 1.0, (-1.0) ** (n[:, None] - n[None, :])
    )
    A = -(root[:, None] * root[None, :]) * sign / window
    return A, math.sqrt(2) * root / window


def lagt(N: int) -> tuple[Tensor, Tensor]:
    """LagT (Laguerre, exponentially decaying measure), as in S4.

    ``A = -I/2 - tril(1, -1)``, ``B = 1``; float64 tensors ``(N, N)``, ``(N,)``.

    Raises:
        TypeError: ``N`` is not an int.
        ValueError: ``N < 1``.
    """
    N = _checks.positive_int(N, "N")
    A = -0.5 * torch.eye(N, dtype=torch.float64) - torch.tril(
        torch.ones(N, N, dtype=torch.float64), diagonal=-1
    )
    return A, torch.ones(N, dtype=torch.float64)


def legs_matvec(v: Tensor) -> Tensor:
    """``A v`` for the LegS matrix in O(N) per vector, by a prefix sum:
    ``(A v)_n = n v_n - sqrt(2n+1) sum_{k<=n} sqrt(2k+1) v_k``.

    ``v``: floating ``(..., N)`` (``N = 0`` and empty batches give empty results), any
    device. Returns the shape and dtype of ``v``; half precision is computed in float32
    (the prefix sum overflows float16).

    Raises:
        TypeError: ``v`` not a floating tensor.
        ValueError: ``v`` is 0-d.
    """
    v = _checks.tensor(v, "v", min_ndim=1)
    w = v.to(_checks.compute_dtype(v.dtype))
    n, root = _legs_weights(v.shape[-1], w.dtype, w.device)
    # n w - root * cumsum(root w): four passes, the weights built once per (N, dtype)
    return torch.addcmul(n * w, root, torch.cumsum(root * w, dim=-1), value=-1).to(
        v.dtype
    )


@functools.lru_cache(maxsize=64)
def _legs_weights(
    size: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``n`` and ``sqrt(2n + 1)`` for ``n < size``, cached: a small N's matvec is a few
    microseconds, which building them again would double. Made outside inference mode,
    so that a first call under it does not leave tensors autograd cannot save."""
    with torch.inference_mode(False):
        n = torch.arange(size, dtype=dtype, device=device)
        return n, torch.sqrt(2 * n + 1)


def discretize(
    A: Tensor, B: Tensor, step: float | Tensor, *, method: Method = "bilinear"
) -> tuple[Tensor, Tensor]:
    """Discretise ``x' = A x + B u`` with step ``step``: returns ``(A_bar, B_bar)`` with
    ``x_(k+1) = A_bar x_k + B_bar u_k``.

    Methods: ``"forward"`` (Euler, ``I + eps A``), ``"backward"`` (``(I - eps A)^-1``),
    ``"bilinear"`` (``(I - eps A/2)^-1 (I + eps A/2)``) and ``"zoh"`` (exact for
    piecewise-constant ``u``: ``e^(eps A)`` and ``int_0^eps e^(s A) ds B``, computed as
    one matrix exponential of ``[[A, B], [0, 0]]``, so a singular ``A`` is fine).
    Inverses are never formed: linear solves instead.

    Args:
        A: floating ``(N, N)``. B: ``(N,)`` or ``(N, M)``, of the dtype and device of
            ``A``. step: a positive number, or a floating tensor of positive steps of
            any shape (possibly empty) on ``A``'s device: the results get that shape in
            front.

    Returns:
        ``A_bar (..., N, N)`` and ``B_bar (..., N)`` or ``(..., N, M)`` in ``A``'s
        dtype; half precision is computed in float32 (the solves need it).

    Raises:
        TypeError: ``A``, ``B`` or ``step`` of the wrong type, ``B``'s dtype not
            ``A``'s.
        ValueError: ``method`` unknown, ``A`` not square, ``B`` of the wrong rank or
            length, a tensor on another device, a step not positive and finite.
    """
    method = _checks.choice(method, "method", METHODS)
    A = _checks.tensor(A, "A", ndim=2)
    B = _checks.tensor(B, "B")
    _checks.same_device(("A", A), B=B)
    _checks.same_dtype(("A", A), B=B)
    if A.shape[0] != A.shape[1] or B.dim() not in (1, 2) or B.shape[0] != A.shape[0]:
        raise ValueError(
            "need A (N, N) and B (N,) or (N, M), got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )
    compute = _checks.compute_dtype(A.dtype)
    eps = _positive(step, "step", A).to(compute)
    A_bar, B_bar = _discretize(A.to(compute), B.to(compute), eps, method)
    return A_bar.to(A.dtype), B_bar.to(A.dtype)


def _discretize(
    A: Tensor, B: Tensor, eps: Tensor, method: str
) -> tuple[Tensor, Tensor]:
    vector_b = B.dim() == 1
    Bm = B[:, None] if vector_b else B
    e = eps[..., None, None]
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    if method == "forward":
        A_bar, B_bar = eye + e * A, e * Bm
    elif method == "backward":
        left = eye - e * A
        A_bar, B_bar = (
            torch.linalg.solve(left, eye.expand_as(left)),
            torch.linalg.solve(left, e * Bm),
        )
    elif method == "bilinear":
        left = eye - e * A / 2
        A_bar = torch.linalg.solve(left, eye + e * A / 2)
        B_bar = torch.linalg.solve(
            left, (e * Bm).expand(*left.shape[:-1], Bm.shape[-1])
        )
    else:
        n, m = Bm.shape
        block = torch.zeros(*eps.shape, n + m, n + m, dtype=A.dtype, device=A.device)
        block[..., :n, :n] = e * A
        block[..., :n, n:] = e * Bm
        exponential = torch.matrix_exp(block)
        A_bar, B_bar = exponential[..., :n, :n], exponential[..., :n, n:]
    return A_bar, (B_bar[..., 0] if vector_b else B_bar)


def _positive(step: object, name: str, like: Tensor) -> Tensor:
    """``step`` (a number or a floating tensor on ``like``'s device) as a tensor of
    positive finite values (not checked on the meta device)."""
    if not isinstance(step, Tensor):
        value = _checks.real(step, name, positive=True)
        return torch.tensor(value, dtype=like.dtype, device=like.device)
    step = _checks.tensor(step, name)
    _checks.same_device(("A", like), **{name: step})
    if step.device.type != "meta" and not bool(
        torch.all(torch.isfinite(step) & (step > 0))
    ):
        raise ValueError(f"{name} must be positive and finite everywhere")
    return step


def legs_memory(u: Tensor, N: int, *, scheme: str = "s4") -> Tensor:
    """Run LegS online over ``u`` of shape ``(batch, length)``: ``(batch, length, N)``.

    No step size is needed (timescale equivariance). ``scheme`` picks the recurrence:

    - ``"s4"`` (S4's ``HiPPOScale``): sample ``k = 1, 2, ...`` is at time ``k`` and
      ``c_k = (I - A/(2k))^-1 [(I + A/(2k)) c_(k-1) + (B/k) u_k]``, from ``c_0 = 0``.
    - ``"article"`` (kexue.fm/archives/10137): ``u_k`` is held on ``[k, k+1)``,
      ``x_1 = -A^-1 B u_0`` (exact for the constant on ``[0, 1]``) and
      ``x_(k+1) = (I - A/(2(k+1)))^-1 [(I + A/(2k)) x_k + (B/k) u_k]``.
    - ``"exact"``: the same held input, solved exactly in ``tau = ln t``: a
      zero-order hold with step ``ln((k+1)/k)``, one matrix exponential per step.

    Output ``k`` is the state after ``u_0, ..., u_k`` (time ``k + 1``). ``u`` is real
    (integer inputs are promoted to float32); computed in float32 at least and returned
    in ``u``'s floating dtype. Empty batches and ``length = 0`` give empty results.
    Memory: ``length`` transitions of ``N x N``.

    Raises:
        TypeError: ``u`` not a real tensor (bool, complex); ``N`` not an int.
        ValueError: ``u`` not 2-D; ``N < 1``; ``scheme`` unknown.
    """
    u, compute, out_dtype = _signal(u)
    N = _checks.positive_int(N, "N")
    scheme = _checks.choice(scheme, "scheme", ("s4", "article", "exact"))
    batch, length = u.shape
    if length == 0:
        return torch.zeros(batch, 0, N, dtype=out_dtype, device=u.device)
    A, B = (m.to(dtype=compute, device=u.device) for m in legs(N))
    steps = torch.arange(1, length + 1, dtype=compute, device=u.device)
    eye = torch.eye(N, dtype=compute, device=u.device)
    k = steps[:, None, None]
    if scheme == "exact":
        transition, drive = _discretize(A, B, torch.log1p(1 / steps), "zoh")
    else:
        # (length, N, N) and (length, N)
        left = eye - A / (2 * (k if scheme == "s4" else k + 1))
        transition = torch.linalg.solve(left, eye + A / (2 * k))
        drive = torch.linalg.solve(left, (B / steps[:, None])[..., None])[..., 0]
    state = torch.zeros(batch, N, dtype=compute, device=u.device)
    u = u.to(compute)
    out = []
    if scheme != "s4":  # x_1: the coefficients of the constant u_0 on [0, 1]
        state[:, 0] = math.sqrt(2) * u[:, 0]
        out.append(state)
    first = 0 if scheme == "s4" else 1
    for index in range(first, length):
        step = index if scheme == "s4" else index - 1
        state = state @ transition[step].T + u[:, index : index + 1] * drive[step]
        out.append(state)
    return torch.stack(out, dim=1).to(out_dtype)


def _signal(u: object) -> tuple[Tensor, torch.dtype, torch.dtype]:
    """``u`` checked as a real ``(batch, length)`` tensor, with the dtype to compute in
    and the dtype to return (float32 for integer signals)."""
    u = _checks.tensor(u, "u", kind="real")
    if u.dim() != 2:
        raise ValueError(f"u must have shape (batch, length), got {tuple(u.shape)}")
    out_dtype = u.dtype if u.is_floating_point() else torch.float32
    return u, _checks.compute_dtype(out_dtype), out_dtype


def legs_solve(v: Tensor, lam: float) -> Tensor:
    """``(I - lam A)^-1 v`` for the LegS matrix in O(N) per vector.

    With ``S_n = sum_{k<=n} sqrt(2k+1) z_k`` the system is the scalar recursion
    ``S_n = [(1 - lam n) S_(n-1) + sqrt(2n+1) v_n] / (1 + lam (n+1))``
    (kexue.fm/archives/10137), and ``z_n = (S_n - S_(n-1)) / sqrt(2n+1)``. ``v``:
    floating ``(..., N)`` (empty allowed); returns its shape and dtype, computed in
    float32 at least. ``lam`` must keep ``1 + lam (n+1)`` away from zero.

    Raises:
        TypeError: ``v`` not a floating tensor, ``lam`` not a number.
        ValueError: ``v`` 0-d; ``lam`` not finite or making ``I - lam A`` singular.
    """
    v = _checks.tensor(v, "v", min_ndim=1)
    lam = _checks.real(lam, "lam")
    N = v.shape[-1]
    # 1 + lam (n + 1) = 0 only at n + 1 = -1/lam
    nearest = round(-1 / lam) if lam < 0 else 0
    if 1 <= nearest <= N and abs(1 + lam * nearest) < 1e-12:
        raise ValueError(f"I - lam A is singular for lam = {lam!r}")
    if N == 0:
        return torch.empty_like(v)
    w = v.to(_checks.compute_dtype(v.dtype))
    root = torch.sqrt(2 * torch.arange(N, dtype=w.dtype, device=v.device) + 1)
    previous = torch.zeros_like(w[..., 0])
    sums = []
    for n in range(N):
        previous = ((1 - lam * n) * previous + root[n] * w[..., n]) / (
            1 + lam * (n + 1)
        )
        sums.append(previous)
    S = torch.stack(sums, dim=-1)
    z = torch.diff(S, dim=-1, prepend=torch.zeros_like(S[..., :1])) / root
    return z.to(v.dtype)


def legt_memory(u: Tensor, N: int, *, window: float, dt: float) -> Tensor:
    """Run LegT online over ``u`` of shape ``(batch, length)`` sampled every ``dt``.

    Returns ``(batch, length, N)``, with the bilinear discretisation of :func:`legt`
    (built in float64). ``u`` is real (integers promoted to float32); computed in
    float32 at least and returned in ``u``'s floating dtype; empty batches and
    ``length = 0`` give empty results.

    Raises:
        TypeError: ``u`` not a real tensor; ``N``, ``window`` or ``dt`` of the wrong
            type.
        ValueError: ``u`` not 2-D, ``N < 1``, ``window`` or ``dt`` not positive and
            finite.
    """
    u, compute, out_dtype = _signal(u)
    dt = _checks.real(dt, "dt", positive=True)
    A, B = legt(N, window=window)
    A_bar, B_bar = _discretize(A, B, torch.tensor(dt, dtype=A.dtype), "bilinear")
    A_bar, B_bar = (m.to(dtype=compute, device=u.device) for m in (A_bar, B_bar))
    batch, length = u.shape
    state = torch.zeros(batch, A.shape[0], dtype=compute, device=u.device)
    u = u.to(compute)
    out = []
    for k in range(length):
        state = state @ A_bar.T + u[:, k : k + 1] * B_bar
        out.append(state)
    if not out:
        return torch.zeros(batch, 0, A.shape[0], dtype=out_dtype, device=u.device)
    return torch.stack(out, dim=1).to(out_dtype)


def reconstruct(coeffs: Tensor, points: Tensor) -> Tensor:
    """``sum_n c_n g_n(s)`` at ``points`` ``s`` in ``[-1, 1]``.

    Here ``g_n = sqrt((2n+1)/2) P_n``. Legendre polynomials by the three-term
    recurrence (stable on ``[-1, 1]``).

    Args:
        coeffs: floating ``(..., N)`` (``N = 0`` gives zeros).
        points: real ``(P,)`` on the device of ``coeffs``: one 1-D set of points shared
            by every coefficient vector (for points per vector, loop or ``vmap``).
            Integer points are promoted.

    Returns:
        ``(..., P)`` in the dtype of ``coeffs``, computed in float32 at least.

    Raises:
        TypeError: ``coeffs`` not floating (integer coefficients would make the
            recurrence integer arithmetic), ``points`` not a real tensor.
        ValueError: ``coeffs`` 0-d, ``points`` not 1-D, or on another device.
    """
    coeffs = _checks.tensor(coeffs, "coeffs", min_ndim=1)
    points = _checks.tensor(points, "points", ndim=1, kind="real")
    _checks.same_device(("coeffs", coeffs), points=points)
    compute = _checks.compute_dtype(coeffs.dtype)
    N = coeffs.shape[-1]
    s = points.to(compute)
    if N == 0:
        return torch.zeros(
            *coeffs.shape[:-1], len(s), dtype=coeffs.dtype, device=s.device
        )
    values = [torch.ones_like(s), s]
    for n in range(1, N - 1):
        values.append(((2 * n + 1) * s * values[n] - n * values[n - 1]) / (n + 1))
    P = torch.stack(values[:N], dim=0)  # (N, P)
    scale = torch.sqrt((2 * torch.arange(N, dtype=compute, device=s.device) + 1) / 2)
    return ((coeffs.to(compute) * scale) @ P).to(coeffs.dtype)


def legendre_projection(
    u: Callable[[Tensor], Tensor],
    start: float,
    width: float,
    N: int,
    *,
    nodes: int = 200,
) -> Tensor:
    """``c_n = int_{-1}^{1} u(start + (s + 1) width / 2) g_n(s) ds`` for ``n < N``.

    The coefficients of ``u`` on ``[start, start + width]`` in the basis ``g_n``, by
    Gauss-Legendre quadrature with ``nodes`` points in float64 (exact for polynomial
    ``u`` of degree below ``2 nodes - N``). ``u`` maps a float64 CPU tensor of times to
    real values of the same shape (on the CPU). Returns float64 ``(N,)``.

    Raises:
        TypeError: ``u`` not callable or not returning a real tensor; ``start``,
            ``width`` not numbers; ``N``, ``nodes`` not ints.
        ValueError: ``start`` not finite, ``width`` not positive and finite, ``N`` or
            ``nodes`` below 1; ``u``'s result of another shape or device.
    """
    if not callable(u):
        raise TypeError(f"u must be callable, got {type(u).__name__}")
    start = _checks.real(start, "start")
    width = _checks.real(width, "width", positive=True)
    N = _checks.positive_int(N, "N")
    nodes = _checks.positive_int(nodes, "nodes")
    s, weights = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(nodes))
    values = _checks.tensor(u(start + (s + 1) * width / 2), "u(times)", kind="real")
    if values.shape != s.shape:
        raise ValueError(
            f"u must map times {tuple(s.shape)} to values of the same shape, got "
            f"{tuple(values.shape)}"
        )
    _checks.same_device(("the times", s), **{"u(times)": values})
    basis = torch.eye(N, dtype=torch.float64)
    return reconstruct(basis, s) @ (weights * values.to(torch.float64))
