"""Smooth approximations of non-smooth functions by convolution, kexue.fm/archives/8718.

Convolving ``f`` with a density ``phi`` of width ``w`` is an expectation under noise,
``g(x) = E_eps[f(x - eps)]``, and tends to ``f`` as ``w -> 0`` (``phi`` tends to the
Dirac delta). For the ReLU, ``g`` is the second antiderivative of ``phi``: its
derivative is the kernel's CDF, a smooth step.

Two kernels: ``"gaussian"`` (standard deviation ``w``; ReLU becomes
``x Phi(x/w) + w phi(x/w)``) and ``"logistic"`` (scale ``w``, i.e. temperature
``t = 1/w``; ReLU becomes ``w softplus(x/w)``). Everything is written in forms that do
not overflow (``ndtr``, ``softplus``, ``sigmoid``), computes in float32 at least and
returns the input's dtype. :func:`convolve_numerically` is the independent reference:
the convolution integral by the trapezoid rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue import _checks

__all__ = [
    "convolve_numerically",
    "kernel_density",
    "smooth_abs",
    "smooth_floor",
    "smooth_max",
    "smooth_relu",
    "smooth_step",
    "step_smoothed_relu",
]

Kernel = Literal["gaussian", "logistic"]
KERNELS: tuple[str, ...] = ("gaussian", "logistic")


def smooth_step(
    x: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """The kernel's CDF: a smooth Heaviside step, ``Phi(x/w)`` or ``sigmoid(x/w)``.

    Shapes, dtypes and errors as in :func:`smooth_relu`.
    """
    x, width, out_dtype = _prepare(x, width, kernel)
    return _step(x / width, kernel).to(out_dtype)


def smooth_relu(
    x: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """ReLU convolved with the kernel.

    ``x Phi(x/w) + w phi(x/w)`` for the Gaussian, ``w softplus(x/w)`` for the logistic.

    Args:
        x: floating tensor, any shape (empty too), dtype and device.
        width: the kernel's width ``w > 0``: a number, or a floating tensor on the
            device of ``x`` that broadcasts to the shape of ``x`` (e.g. one width per
            channel of the last axis).
        kernel: ``"gaussian"`` or ``"logistic"``.

    Returns:
        Tensor of the shape and dtype of ``x`` (half precision computed in float32);
        non-negative, above ``max(x, 0)``, and within ``w / sqrt(2 pi)`` (Gaussian) or
        ``w log 2`` (logistic) of it.

    Raises:
        TypeError: ``x`` not a floating tensor; ``width`` not a number or a floating
            tensor.
        ValueError: ``kernel`` unknown; ``width`` not positive and finite, on another
            device, or not broadcastable to ``x``'s shape.
    """
    x, width, out_dtype = _prepare(x, width, kernel)
    return _relu(x, width, kernel).to(out_dtype)


def step_smoothed_relu(
    x: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """``x * smooth_step(x)``: ReLU as ``x * step(x)`` with only the step smoothed.

    With ``width = 1`` this is GELU (Gaussian kernel, ``torch.nn.functional.gelu``) and
    Swish/SiLU (logistic kernel, ``torch.nn.functional.silu``). Unlike
    :func:`smooth_relu` it dips below zero for negative ``x``. Shapes, dtypes and
    errors as in :func:`smooth_relu`.
    """
    x, width, out_dtype = _prepare(x, width, kernel)
    return (x * _step(x / width, kernel)).to(out_dtype)


def smooth_abs(
    x: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """``|x| = 2 relu(x) - x``, with the smoothed ReLU (computed in float32 at least:
    ``2 relu(x)`` overflows float16 near its maximum). Shapes, dtypes and errors as in
    :func:`smooth_relu`."""
    x, width, out_dtype = _prepare(x, width, kernel)
    return (2 * _relu(x, width, kernel) - x).to(out_dtype)


def smooth_max(
    a: Tensor, b: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """``max(a, b) = b + relu(a - b)``, smoothed.

    ``a`` and ``b``: floating tensors on one device that broadcast against each other;
    the result has the broadcast shape and their promoted dtype, computed in float32 at
    least (``a - b`` overflows float16 for operands of opposite sign). ``width`` and
    ``kernel`` as in :func:`smooth_relu` (``width`` broadcasts to the result's shape).

    Raises:
        TypeError: ``a`` or ``b`` not a floating tensor; ``width`` of the wrong type.
        ValueError: ``a`` and ``b`` on different devices or not broadcastable; bad
            ``width`` or ``kernel``.
    """
    a = _checks.tensor(a, "a")
    b = _checks.tensor(b, "b")
    _checks.same_device(("a", a), b=b)
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"a and b must broadcast, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    compute = _checks.compute_dtype(out_dtype)
    a, b = a.to(compute), b.to(compute)
    diff, width, _ = _prepare(a - b, width, kernel)
    return (b + _relu(diff, width, kernel)).to(out_dtype)


def smooth_floor(
    x: Tensor, width: float | Tensor, *, lo: int, hi: int, kernel: Kernel = "logistic"
) -> Tensor:
    """A smooth floor on ``[lo, hi + 1)`` from smoothed unit steps.

    ``sum_{n=lo}^{0} [step(x - n) - 1] + sum_{n=1}^{hi} step(x - n)``: each unit step of
    the floor at integer ``n`` is replaced by the smooth step, centred at ``n``; outside
    ``[lo, hi + 1)`` the result saturates at ``lo - 1`` and ``hi``. With the article's
    ``width = 0.1`` (logistic, ``t = 10``), ``lo = -5``, ``hi = 10``: ``3.2 -> 2.88``
    and ``7.9 -> 7.27``. Shapes and dtypes as in :func:`smooth_relu`; the work and
    memory are ``x.numel() * (hi - lo + 1)``.

    Raises:
        TypeError: ``lo`` or ``hi`` not an int; ``x``, ``width`` as in
            :func:`smooth_relu`.
        ValueError: ``lo > 0`` or ``hi < 0`` (need ``lo <= 0 <= hi``); bad ``width`` or
            ``kernel``.
    """
    lo = _signed_int(lo, "lo", sign=-1)
    hi = _signed_int(hi, "hi", sign=1)
    x, width, out_dtype = _prepare(x, width, kernel)
    steps = torch.arange(lo, hi + 1, dtype=x.dtype, device=x.device)
    # (..., hi - lo + 1): one smoothed step per integer
    values = _step((x.unsqueeze(-1) - steps) / width.unsqueeze(-1), kernel)
    # the terms n <= 0 each carry a -1
    return (values.sum(-1) - (1 - lo)).to(out_dtype)


def kernel_density(
    u: Tensor, width: float | Tensor, *, kernel: Kernel = "gaussian"
) -> Tensor:
    """The kernel's density ``phi_w(u)``, in the shape and dtype of ``u``.

    Gaussian of standard deviation ``w``, or logistic of scale ``w``:
    ``sigmoid(u/w) sigmoid(-u/w) / w``. ``u`` is a floating tensor; ``width`` and the
    errors as in :func:`smooth_relu` (with ``u`` for ``x``).
    """
    u, width_tensor, out_dtype = _prepare(u, width, kernel, name="u")
    return _density(u, width_tensor, kernel).to(out_dtype)


def convolve_numerically(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    width: float | Tensor,
    *,
    kernel: Kernel = "gaussian",
    grid: Tensor,
) -> Tensor:
    """``int f(y) phi_w(x - y) dy`` by the trapezoid rule on ``grid``, for each ``x``.

    An independent reference for the closed forms: it never uses them.

    Args:
        f: maps ``grid`` to a real tensor of its shape (on its device).
        x: floating ``(P,)`` (``P = 0`` gives an empty result).
        width: the kernel's width, a positive number (or a 0-d floating tensor).
        kernel: ``"gaussian"`` or ``"logistic"``.
        grid: floating ``(G,)``, ``G >= 2``, increasing, on the device of ``x``, wide
            enough for the kernel's tails.

    Returns:
        ``(P,)`` in the dtype of ``grid`` (half precision computed in float32); the work
        and memory are ``P * G``.

    Raises:
        TypeError: ``f`` not callable or not returning a real tensor; ``x`` or ``grid``
            not a floating tensor.
        ValueError: ``x`` or ``grid`` not 1-D, ``grid`` shorter than 2 or not
            increasing, on another device than ``x``, or ``f(grid)`` of another shape
            or device; bad ``width`` or ``kernel``.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    x = _checks.tensor(x, "x", ndim=1)
    grid = _checks.tensor(grid, "grid", ndim=1)
    _checks.same_device(("x", x), grid=grid)
    if len(grid) < 2:
        raise ValueError(f"grid needs at least 2 points, got {len(grid)}")
    if grid.device.type != "meta" and not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("grid must be increasing")
    values = _checks.tensor(f(grid), "f(grid)", kind="real")
    if values.shape != grid.shape:
        raise ValueError(
            f"f must map grid {tuple(grid.shape)} to the same shape, got "
            f"{tuple(values.shape)}"
        )
    _checks.same_device(("grid", grid), **{"f(grid)": values})
    grid_c, width_tensor, out_dtype = _prepare(grid, width, kernel, name="grid")
    offsets = x.to(grid_c.dtype)[:, None] - grid_c[None, :]  # (P, G)
    density = _density(offsets, width_tensor, kernel)
    integrand = values.to(grid_c.dtype)[None, :] * density
    return torch.trapezoid(integrand, grid_c, dim=-1).to(out_dtype)


def _step(z: Tensor, kernel: str) -> Tensor:
    return torch.special.ndtr(z) if kernel == "gaussian" else torch.sigmoid(z)


def _relu(x: Tensor, width: Tensor, kernel: str) -> Tensor:
    """The smoothed ReLU in the dtype of ``x`` (already the compute dtype)."""
    z = x / width
    if kernel == "gaussian":
        density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        # far left both terms are tiny and nearly cancel; the exact value is positive
        return (x * torch.special.ndtr(z) + width * density).clamp_min(0)
    return width * F.softplus(z)


def _density(u: Tensor, width: Tensor, kernel: str) -> Tensor:
    z = u / width
    if kernel == "gaussian":
        return torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * width)
    return torch.sigmoid(z) * torch.sigmoid(-z) / width


def _prepare(
    x: object, width: object, kernel: object, *, name: str = "x"
) -> tuple[Tensor, Tensor, torch.dtype]:
    """``x`` in its compute dtype (float32 at least), ``width`` as a tensor of that
    dtype on its device, broadcastable to its shape, and the dtype to return."""
    x = _checks.tensor(x, name)
    _checks.choice(kernel, "kernel", KERNELS)
    compute = _checks.compute_dtype(x.dtype)
    if not isinstance(width, Tensor):
        value = _checks.real(width, "width", positive=True)
        return (
            x.to(compute),
            torch.tensor(value, dtype=compute, device=x.device),
            x.dtype,
        )
    _checks.tensor(width, "width")
    _checks.same_device((name, x), width=width)
    if _broadcast(width.shape, x.shape) != x.shape:
        raise ValueError(
            f"width must broadcast to the shape of {name} {tuple(x.shape)}, got "
            f"{tuple(width.shape)}"
        )
    if width.device.type != "meta" and not bool(
        torch.all(torch.isfinite(width) & (width > 0))
    ):
        raise ValueError("width must be positive and finite everywhere")
    return x.to(compute), width.to(compute), x.dtype


def _broadcast(a: torch.Size, b: torch.Size) -> torch.Size | None:
    try:
        return torch.broadcast_shapes(a, b)
    except RuntimeError:
        return None


def _signed_int(value: object, name: str, *, sign: int) -> int:
    """``lo`` (``sign = -1``: an int ``<= 0``) or ``hi`` (``sign = 1``: ``>= 0``);
    ``_checks`` has no check for a non-positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value * sign < 0:
        raise ValueError(f"need lo <= 0 <= hi, got {name}={value}")
    return value
