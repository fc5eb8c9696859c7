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

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor

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
METHODS: tuple[str, ...] = ("forward", "backward", "bilinear", "zoh")


def legs(N: int) -> tuple[Tensor, Tensor]:
    """LegS: ``A_nk = -sqrt((2n+1)(2k+1))`` (k < n), ``-(n+1)`` (k = n), 0 (k > n).

    ``B_n = sqrt(2(2n+1))``. Returns float64 tensors ``A (N, N)``, ``B (N,)``; the state
    obeys ``T c'(T) = A c + B u(T)``.
    """
    _check_order(N)
    root = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    A = -torch.tril(root[:, None] * root[None, :], diagonal=-1) - torch.diag(
        torch.arange(1, N + 1, dtype=torch.float64)
    )
    return A, math.sqrt(2) * root


def legt(N: int, *, window: float = 1.0) -> tuple[Tensor, Tensor]:
    """LegT on a window ``w``: ``B_n = sqrt(2(2n+1)) / w`` and
    ``A_nk = -(1/w) sqrt((2n+1)(2k+1)) * (1 if k < n else (-1)^(n-k))``.

    The state obeys ``c'(T) = A c + B u(T)``; float64 tensors."""
    _check_order(N)
    if not (isinstance(window, int | float) and math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive finite number, got {window!r}")
    n = torch.arange(N, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    sign = torch.where(
        n[None, :] < n[:, None], 1.0, (-1.0) ** (n[:, None] - n[None, :])
    )
    A = -(root[:, None] * root[None, :]) * sign / window
    return A, math.sqrt(2) * root / window


def lagt(N: int) -> tuple[Tensor, Tensor]:
    """LagT (Laguerre, exponentially decaying measure), as in S4.

    ``A = -I/2 - tril(1, -1)``, ``B = 1``."""
    _check_order(N)
    A = -0.5 * torch.eye(N, dtype=torch.float64) - torch.tril(
        torch.ones(N, N, dtype=torch.float64), diagonal=-1
    )
    return A, torch.ones(N, dtype=torch.float64)


def legs_matvec(v: Tensor) -> Tensor:
    """``A v`` for the LegS matrix in O(N) per vector, by a prefix sum:
    ``(A v)_n = n v_n - sqrt(2n+1) sum_{k<=n} sqrt(2k+1) v_k``.

    ``v`` has shape ``(..., N)``; any floating dtype and device.
    """
    if not v.is_floating_point() or v.dim() < 1 or v.shape[-1] < 1:
        raise ValueError("v must be a floating tensor of shape (..., N) with N >= 1")
    n = torch.arange(v.shape[-1], dtype=v.dtype, device=v.device)
    root = torch.sqrt(2 * n + 1)
    return n * v - root * torch.cumsum(root * v, dim=-1)


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
        A: ``(N, N)``; B: ``(N,)`` or ``(N, M)``; step: a positive number or a tensor of
            steps of any shape (the results get that shape in front).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (
        A.dim() != 2
        or A.shape[0] != A.shape[1]
        or B.shape[0] != A.shape[0]
        or B.dim() > 2
    ):
        raise ValueError(
            "need A (N, N) and B (N,) or (N, M), got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )
    vector_b = B.dim() == 1
    Bm = B[:, None] if vector_b else B
    eps = torch.as_tensor(step, dtype=A.dtype, device=A.device)
    if not bool(torch.all(torch.isfinite(eps) & (eps > 0))):
        raise ValueError(f"step must be positive and finite, got {step!r}")
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

    Output ``k`` is the state after ``u_0, ..., u_k`` (time ``k + 1``).
    """
    if u.dim() != 2:
        raise ValueError(f"u must have shape (batch, length), got {tuple(u.shape)}")
    if scheme not in ("s4", "article", "exact"):
        raise ValueError(f"scheme must be 's4', 'article' or 'exact', got {scheme!r}")
    A, B = (
        m.to(dtype=torch.promote_types(u.dtype, torch.float32), device=u.device)
        for m in legs(N)
    )
    steps = torch.arange(1, u.shape[1] + 1, dtype=A.dtype, device=u.device)
    eye = torch.eye(N, dtype=A.dtype, device=u.device)
    k = steps[:, None, None]
    if scheme == "s4":
        left = eye - A / (2 * k)
        # (length, N, N) and (length, N)
        transition = torch.linalg.solve(left, eye + A / (2 * k))
        drive = torch.linalg.solve(left, (B / steps[:, None])[..., None])[..., 0]
    elif scheme == "article":
        left = eye - A / (2 * (k + 1))
        transition = torch.linalg.solve(left, eye + A / (2 * k))
        drive = torch.linalg.solve(left, (B / steps[:, None])[..., None])[..., 0]
    else:
        transition, drive = discretize(A, B, torch.log1p(1 / steps), method="zoh")
    state = torch.zeros(u.shape[0], N, dtype=A.dtype, device=u.device)
    first = 1 if scheme == "s4" else 0
    if scheme != "s4":  # x_1: the coefficients of the constant u_0 on [0, 1]
        state[:, 0] = math.sqrt(2) * u[:, 0].to(A.dtype)
    out = [] if scheme == "s4" else [state]
    for index in range(1 - first, u.shape[1]):
        step = index if scheme == "s4" else index - 1
        value = u[:, index : index + 1].to(A.dtype)
        state = state @ transition[step].T + value * drive[step]
        out.append(state)
    return torch.stack(out, dim=1).to(u.dtype if u.is_floating_point() else A.dtype)


def legs_solve(v: Tensor, lam: float) -> Tensor:
    """``(I - lam A)^-1 v`` for the LegS matrix in O(N) per vector.

    With ``S_n = sum_{k<=n} sqrt(2k+1) z_k`` the system is the scalar recursion
    ``S_n = [(1 - lam n) S_(n-1) + sqrt(2n+1) v_n] / (1 + lam (n+1))``
    (kexue.fm/archives/10137), and ``z_n = (S_n - S_(n-1)) / sqrt(2n+1)``. ``v`` has
    shape ``(..., N)``; ``lam`` must keep ``1 + lam (n+1)`` away from zero.
    """
    if not v.is_floating_point() or v.dim() < 1 or v.shape[-1] < 1:
        raise ValueError("v must be a floating tensor of shape (..., N) with N >= 1")
    if not (isinstance(lam, int | float) and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number, got {lam!r}")
    N = v.shape[-1]
    if any(abs(1 + lam * (n + 1)) < 1e-12 for n in range(N)):
        raise ValueError(f"I - lam A is singular for lam = {lam!r}")
    root = torch.sqrt(2 * torch.arange(N, dtype=v.dtype, device=v.device) + 1)
    previous = torch.zeros_like(v[..., 0])
    sums = []
    for n in range(N):
        previous = ((1 - lam * n) * previous + root[n] * v[..., n]) / (
            1 + lam * (n + 1)
        )
        sums.append(previous)
    S = torch.stack(sums, dim=-1)
    return torch.diff(S, dim=-1, prepend=torch.zeros_like(S[..., :1])) / root


def legt_memory(u: Tensor, N: int, *, window: float, dt: float) -> Tensor:
    """Run LegT online over ``u`` of shape ``(batch, length)`` sampled every ``dt``.

    Returns ``(batch, length, N)``, with the bilinear discretisation of :func:`legt`.
    """
    if u.dim() != 2:
        raise ValueError(f"u must have shape (batch, length), got {tuple(u.shape)}")
    A, B = legt(N, window=window)
    A_bar, B_bar = discretize(A, B, dt, method="bilinear")
    dtype = torch.promote_types(u.dtype, torch.float32)
    A_bar, B_bar = (
        A_bar.to(dtype=dtype, device=u.device),
        B_bar.to(dtype=dtype, device=u.device),
    )
    state = torch.zeros(u.shape[0], N, dtype=dtype, device=u.device)
    out = []
    for k in range(u.shape[1]):
        state = state @ A_bar.T + u[:, k : k + 1].to(dtype) * B_bar
        out.append(state)
    return torch.stack(out, dim=1)


def reconstruct(coeffs: Tensor, points: Tensor) -> Tensor:
    """``sum_n c_n g_n(s)`` at ``points`` ``s`` in ``[-1, 1]``.

    Here ``g_n = sqrt((2n+1)/2) P_n``; ``coeffs`` has shape ``(..., N)`` and ``points``
    shape ``(P,)``; returns ``(..., P)``. Legendre polynomials by the three-term
    recurrence (stable on ``[-1, 1]``).
    """
    N = coeffs.shape[-1]
    s = points.to(coeffs.dtype)
    values = [torch.ones_like(s), s]
    for n in range(1, N - 1):
        values.append(((2 * n + 1) * s * values[n] - n * values[n - 1]) / (n + 1))
    P = torch.stack(values[:N], dim=0)  # (N, P)
    scale = torch.sqrt(
        (2 * torch.arange(N, dtype=coeffs.dtype, device=coeffs.device) + 1) / 2
    )
    return (coeffs * scale) @ P


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
    ``u`` of degree below ``2 nodes - N``). ``u`` maps a float64 tensor of times to
    values of the same shape. Returns ``(N,)``.
    """
    _check_order(N)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be a positive int, got {nodes!r}")
    if not (math.isfinite(start) and math.isfinite(width) and width > 0):
        raise ValueError(f"need a finite start and width > 0, got {start!r}, {width!r}")
    s, weights = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(nodes))
    values = u(start + (s + 1) * width / 2)
    if not isinstance(values, Tensor) or values.shape != s.shape:
        raise TypeError("u must map a tensor of times to a tensor of the same shape")
    basis = torch.eye(N, dtype=torch.float64)
    return reconstruct(basis, s) @ (weights * values.to(torch.float64))


def _check_order(N: int) -> None:
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"N must be a positive int, got {N!r}")
