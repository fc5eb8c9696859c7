"""Upsample guidance: sampling a diffusion model above the resolution it was trained at.

Hwang, Park and Jo (arXiv 2404.01709), read by Su Jianlin (kexue.fm archive 10055):
average pooling ``s × s`` pixels of ``x_t = ᾱ_t x₀ + β̄_t ε`` divides the noise's
standard deviation by ``s``, so the pooled image has the signal-to-noise ratio of an
earlier time ``τ``; after rescaling by ``ρ_t = √(ᾱ_t² + β̄_t²/s²)`` it is a valid
input of the low-resolution model at ``τ``. Its prediction, upsampled, replaces the
coarse part of the model's own prediction at the high resolution:

    ε̃ = ε_θ(x_t, t) + (1 + w) U[ ε_θ(D[x_t]/ρ_t, τ)/s − D[ε_θ(x_t, t)] ].

The schedule is the cosine one, ``ᾱ_t = cos(πt/2)``, ``β̄_t = sin(πt/2)`` with ``t ∈
[0, 1]`` (``t = 0`` clean, ``t = 1`` pure noise), for which ``τ`` has a closed form.
The module also holds an exact denoiser, that of a stationary Gaussian random field (a
filter in Fourier space that applies at any resolution), a tiny convolutional denoiser
and its training loss, and a deterministic DDIM sampler.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.generative.common import mlp

__all__ = [
    "ConvDenoiser",
    "GaussianFieldDenoiser",
    "avg_pool",
    "cosine_alpha_sigma",
    "ddim_sample",
    "eps_loss",
    "gaussian_field",
    "matched_time",
    "pool_rescale",
    "upsample",
    "upsample_guided_eps",
]

#: The sampler starts at this time, not at 1: an ε-prediction says nothing about x₀
#: where ᾱ = 0 (the DDIM step divides by ᾱ). ᾱ(0.999) ≈ 1.6e-3.
T_MAX = 0.999
#: Bisection steps of :func:`matched_time` for a general schedule (2^-60 of [0, 1]).
_BISECTIONS = 60

EpsModel = Callable[[Tensor, Tensor], Tensor]
Power = Callable[[Tensor, Tensor], Tensor]


# --- the schedule ---------------------------------------------------------------------


def _times(t: object, name: str = "t", like: Tensor | None = None) -> Tensor:
    """``t`` as a floating tensor with every entry in [0, 1] (a number gives a 0-d
    tensor of the dtype and device of ``like``, else of the default dtype)."""
    if isinstance(t, int | float) and not isinstance(t, bool):
        if like is None:
            t = torch.tensor(float(t), dtype=torch.get_default_dtype())
        else:
            t = torch.tensor(float(t), dtype=like.dtype, device=like.device)
    t = _checks.tensor(t, name)
    if t.device.type != "meta" and t.numel() and not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1] (and not be NaN)")
    return t


def _scale(scale: object) -> int:
    return _checks.positive_int(scale, "scale")


def cosine_alpha_sigma(t: Tensor | float) -> tuple[Tensor, Tensor]:
    """The cosine schedule ``(ᾱ_t, β̄_t) = (cos(πt/2), sin(πt/2))``, ``ᾱ² + β̄² = 1``.

    Args:
        t: a floating tensor of any shape (or a number), every entry in [0, 1].

    Returns:
        Two tensors of the shape and dtype of ``t``.

    Raises:
        TypeError: ``t`` not a number or a floating tensor.
        ValueError: ``t`` outside [0, 1] or NaN.
    """
    t = _times(t)
    angle = t * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def matched_time(
    t: Tensor | float,
    scale: int,
    *,
    log_snr: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The time ``τ`` at which ``SNR(τ) = scale² · SNR(t)``.

    For the cosine schedule (``log_snr=None``), ``SNR = cot²(πt/2)`` and
    ``τ = (2/π) arctan(tan(πt/2)/scale)``, computed as an ``atan2`` so that ``t = 1``
    gives ``τ = 1``. For another schedule pass its ``log SNR`` as a function of time,
    strictly decreasing on [0, 1]; ``τ`` is then found by bisection in float64 (to
    2⁻⁶⁰), clamped to [0, 1] where no time has the required SNR.

    Args:
        t: a floating tensor of any shape (or a number), entries in [0, 1].
        scale: positive int ``s``, the pooling factor.
        log_snr: None (cosine) or a callable mapping a float64 tensor of times to a
            tensor of the same shape.

    Returns:
        ``τ`` of the shape and dtype of ``t``, ``τ ≤ t``.

    Raises:
        TypeError: ``t`` not floating, ``scale`` not an int, ``log_snr`` not callable or
            returning no tensor.
        ValueError: ``t`` outside [0, 1], ``scale < 1``, ``log_snr`` returning another
            shape.
    """
    t, s = _times(t), _scale(scale)
    if log_snr is None:
        angle = t * (math.pi / 2)
        tau = torch.atan2(torch.sin(angle), s * torch.cos(angle)) * (2 / math.pi)
        return torch.where(t == 1, t, tau)  # cos(π/2) rounds to 6e-17, not 0
    if not callable(log_snr):
        raise TypeError(f"log_snr must be callable or None, got {type(log_snr)}")
    t64 = t.to(torch.float64)
    target = _log_snr(log_snr, t64) + 2 * math.log(s)
    lo, hi = torch.zeros_like(t64), t64.clone()
    for _ in range(_BISECTIONS):  # log SNR decreases: above target means τ is later
        mid = (lo + hi) / 2
        later = _log_snr(log_snr, mid) > target
        lo, hi = torch.where(later, mid, lo), torch.where(later, hi, mid)
    return ((lo + hi) / 2).to(t.dtype)


def _log_snr(fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    out = fn(t)
    if not isinstance(out, Tensor):
        raise TypeError(f"log_snr must return a tensor, got {type(out).__name__}")
    if out.shape != t.shape:
        raise ValueError(
            f"log_snr must return the shape of its input {tuple(t.shape)}, "
            f"got {tuple(out.shape)}"
        )
    return out.to(torch.float64)


def pool_rescale(t: Tensor | float, scale: int) -> Tensor:
    """``ρ_t = √(ᾱ_t² + β̄_t²/scale²)``: the standard deviation of a pooled ``x_t`` per
    unit of data variance, by which ``D[x_t]`` is divided (cosine schedule).

    Args:
        t: floating tensor (or number), entries in [0, 1]. scale: positive int.

    Returns:
        ``ρ_t`` of the shape and dtype of ``t``, in ``[1/scale, 1]``.

    Raises:
        TypeError, ValueError: as :func:`matched_time`.
    """
    t, s = _times(t), _scale(scale)
    alpha, sigma = cosine_alpha_sigma(t)
    return torch.sqrt(alpha.square() + sigma.square() / s**2)


# --- resampling -----------------------------------------------------------------------


def _image(x: object, name: str, scale: int | None = None) -> Tensor:
    """``x`` floating ``(..., H, W)``; with ``scale``, ``H, W`` divisible by it."""
    x = _checks.tensor(x, name, min_ndim=2)
    if scale is not None and (x.shape[-2] % scale or x.shape[-1] % scale):
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} must have height and width divisible "
            f"by scale={scale}"
        )
    return x


def avg_pool(x: Tensor, scale: int) -> Tensor:
    """The operator ``D``: the mean of each ``scale × scale`` block of pixels.

    Args:
        x: floating ``(..., H, W)``, ``H`` and ``W`` divisible by ``scale``.
        scale: positive int.

    Returns:
        ``(..., H/scale, W/scale)`` of ``x``'s dtype (half precision summed in
        float32).

    Raises:
        TypeError: ``x`` not a floating tensor, ``scale`` not an int.
        ValueError: ``x`` of rank < 2, sides not divisible, ``scale < 1``.
    """
    s = _scale(scale)
    x = _image(x, "x", s)
    *lead, h, w = x.shape
    blocks = x.to(_checks.compute_dtype(x.dtype)).reshape(*lead, h // s, s, w // s, s)
    # divide first: a sum of s² values near the dtype's maximum would overflow
    return (blocks / s**2).sum(dim=(-3, -1)).to(x.dtype)


def upsample(x: Tensor, scale: int) -> Tensor:
    """The operator ``U``: nearest-neighbour upsampling (each pixel repeated into a
    ``scale × scale`` block), so that ``D[U[y]] = y``.

    Args:
        x: floating ``(..., h, w)``. scale: positive int.

    Returns:
        ``(..., h·scale, w·scale)`` of ``x``'s dtype.

    Raises:
        TypeError: ``x`` not floating, ``scale`` not an int.
        ValueError: rank < 2, ``scale < 1``.
    """
    s = _scale(scale)
    x = _image(x, "x")
    return x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


# --- guidance and sampling ------------------------------------------------------------


def _batch_times(t: object, x: Tensor) -> Tensor:
    """``t`` (a number, a 0-d or a ``(B,)`` tensor) as ``(B,)`` in ``x``'s dtype."""
    t = _times(t, like=x)
    _checks.same_device(("x_t", x), t=t)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != x.shape[:1]:
        raise ValueError(
            f"t must be a number or of shape (B,) = {tuple(x.shape[:1])}, "
            f"got {tuple(t.shape)}"
        )
    return t.to(x.dtype)


def _call(eps_model: EpsModel, x: Tensor, t: Tensor) -> Tensor:
    out = eps_model(x, t)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"eps_model must return a tensor of its input's shape {tuple(x.shape)}, "
            f"got {got}"
        )
    return out


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """``(B,)`` reshaped to broadcast over the other dimensions of ``x``."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def upsample_guided_eps(
    eps_model: EpsModel,
    x_t: Tensor,
    t: Tensor | float,
    *,
    scale: int = 2,
    weight: float = 0.2,
) -> Tensor:
    """The guided noise prediction ``ε̃`` of a low-resolution model at a high one.

    ``ε̃ = ε + (1 + w)·U[ε_θ(D[x_t]/ρ_t, τ)/s − D[ε]]`` with ``ε = ε_θ(x_t, t)``,
    ``τ = matched_time(t, s)`` and ``ρ_t = pool_rescale(t, s)`` (cosine schedule).
    ``weight = −1`` gives ``ε`` back (no guidance); ``weight = 0`` replaces the coarse
    part of ``ε`` by the pooled prediction exactly.

    Args:
        eps_model: called as ``eps_model(x, t)`` with ``x`` ``(B, ..., H, W)`` and
            ``t`` ``(B,)``, returns a tensor of ``x``'s shape; it is called once at
            the full and once at the pooled resolution.
        x_t: floating ``(B, ..., H, W)``, ``H, W`` divisible by ``scale``.
        t: a number or a ``(B,)`` tensor of times in [0, 1].
        scale: positive int ``s``. weight: finite real ``w``.

    Returns:
        ``(B, ..., H, W)`` of ``x_t``'s dtype.

    Raises:
        TypeError: ``eps_model`` not callable, ``x_t`` not floating, ``scale`` not an
            int, ``weight`` not a number.
        ValueError: ``x_t`` of rank < 3 or sides not divisible by ``scale``, ``t``
            outside [0, 1] or of another batch, on another device, ``weight`` not
            finite, the model's output of another shape.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    s = _scale(scale)
    x_t = _image(x_t, "x_t", s)
    if x_t.dim() < 3:
        raise ValueError(f"x_t must be (B, ..., H, W), got {tuple(x_t.shape)}")
    w = _checks.real(weight, "weight")
    if not math.isfinite(w):
        raise ValueError(f"weight must be finite, got {w}")
    t = _batch_times(t, x_t)
    eps = _call(eps_model, x_t, t)
    low_in = avg_pool(x_t, s) / _per_sample(pool_rescale(t, s), x_t)
    low = _call(eps_model, low_in, matched_time(t, s)) / s
    return eps + (1 + w) * upsample(low - avg_pool(eps, s), s)


def ddim_sample(
    eps_model: EpsModel,
    shape: tuple[int, ...],
    steps: int,
    *,
    guidance: tuple[int, float] | None = None,
    guidance_until: float = 0.0,
    clip: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Deterministic DDIM (η = 0) on the cosine schedule from ``x ~ N(0, I)``.

    ``steps`` equal steps in time from ``T_MAX = 0.999`` to 0; with ``φ = πt/2`` one
    step is ``x ← [cos φ' · x − sin(φ − φ') · ε̂]/cos φ`` (the DDIM update written with
    angles), which is exact when ``ε̂`` is the noise of ``x``.

    Args:
        eps_model: as in :func:`upsample_guided_eps`.
        shape: ``(B, ..., H, W)`` of positive ints, at least three of them.
        steps: positive int.
        guidance: None, or ``(scale, weight)`` for :func:`upsample_guided_eps`.
        guidance_until: guidance is applied at the steps that start at a time
            ``t ≥ guidance_until`` (the paper's ``w_t`` for latent models); in [0, 1].
        clip: None, or a positive bound: the predicted ``x̂₀ = (x − β̄ε̂)/ᾱ`` is
            clamped to ``[−clip, clip]`` and ``ε̂`` recomputed from it (the
            ``clip_denoised`` of DDPM code; it keeps the first steps, where ``ᾱ`` is
            near 0 and a small error in ``ε̂`` is divided by it, from running away).
        generator: a ``torch.Generator`` for ``x_T`` (on the output's device).
        device: where to sample (default: the generator's device, else the CPU).
        dtype: a floating dtype (default: torch's default).

    Returns:
        ``(B, ..., H, W)`` samples of ``dtype``.

    Raises:
        TypeError: a wrong kind of argument (``shape`` not a tuple of ints, ...).
        ValueError: ``shape`` of fewer than three sizes or with a size < 1 (a batch of 0
            gives an empty result), ``steps < 1``, a bad ``guidance`` pair,
            ``guidance_until`` outside [0, 1].
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    shape = _shape(shape)
    steps = _checks.positive_int(steps, "steps")
    until = _checks.real(guidance_until, "guidance_until")
    if not 0 <= until <= 1:
        raise ValueError(f"guidance_until must lie in [0, 1], got {until}")
    if clip is not None:
        clip = _checks.real(clip, "clip", positive=True)
    gen = _checks.generator(generator)
    dtype = _checks.float_dtype(dtype)
    where = _where(device, gen)
    scale, weight = _guidance(guidance, shape)
    x = torch.randn(shape, generator=gen, device=where, dtype=dtype)
    if x.numel() == 0:
        return x
    times = torch.linspace(T_MAX, 0.0, steps + 1, dtype=torch.float64).tolist()
    for t, t_next in itertools.pairwise(times):
        tb = torch.full(shape[:1], t, device=where, dtype=dtype)
        if scale is not None and t >= until:
            eps = upsample_guided_eps(eps_model, x, tb, scale=scale, weight=weight)
        else:
            eps = _call(eps_model, x, tb)
        x = _ddim_step(x, eps, t, t_next, clip)
    return x


def _ddim_step(
    x: Tensor, eps: Tensor, t: float, t_next: float, clip: float | None
) -> Tensor:
    phi, phi_next = t * math.pi / 2, t_next * math.pi / 2
    if clip is None:  # x' = cos φ' x̂₀ + sin φ' ε̂, written without x̂₀
        return (math.cos(phi_next) * x - math.sin(phi - phi_next) * eps) / math.cos(phi)
    x0 = ((x - math.sin(phi) * eps) / math.cos(phi)).clamp(-clip, clip)
    eps = (x - math.cos(phi) * x0) / math.sin(phi)
    return math.cos(phi_next) * x0 + math.sin(phi_next) * eps


def _shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, tuple | list | torch.Size):
        raise TypeError(f"shape must be a tuple of ints, got {type(shape).__name__}")
    sizes = tuple(
        _checks.nonnegative_int(n, f"shape[{i}]") for i, n in enumerate(shape)
    )
    if len(sizes) < 3 or min(sizes[1:]) < 1:
        raise ValueError(f"shape must be (B, ..., H, W) with sizes ≥ 1, got {sizes}")
    return sizes


def _where(device: object, gen: torch.Generator | None) -> torch.device:
    if device is not None:
        where = _checks.device(device)
        if gen is not None and gen.device.type != where.type:
            raise ValueError(
                f"generator is on {gen.device} but device is {where}: pass a "
                "generator of the sampling device"
            )
        return where
    return gen.device if gen is not None else torch.device("cpu")


def _guidance(guidance: object, shape: tuple[int, ...]) -> tuple[int | None, float]:
    if guidance is None:
        return None, 0.0
    if not isinstance(guidance, tuple | list) or len(guidance) != 2:
        raise TypeError(f"guidance must be None or (scale, weight), got {guidance!r}")
    s = _checks.positive_int(guidance[0], "guidance scale")
    w = _checks.real(guidance[1], "guidance weight")
    if not math.isfinite(w):
        raise ValueError(f"guidance weight must be finite, got {w}")
    if shape[-2] % s or shape[-1] % s:
        raise ValueError(
            f"shape {shape} must have height and width divisible by the guidance "
            f"scale {s}"
        )
    return s, w


# --- an exact denoiser: the stationary Gaussian random field -------------------------


def _frequencies(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The rfft2 grid in cycles per pixel: ``fy`` ``(h, 1)``, ``fx`` ``(1, w//2+1)``."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)[None, :]
    return fy, fx


def _power(power: Power, fy: Tensor, fx: Tensor) -> Tensor:
    out = power(fy, fx)
    if not isinstance(out, Tensor):
        raise TypeError(f"power must return a tensor, got {type(out).__name__}")
    shape = torch.broadcast_shapes(fy.shape, fx.shape)
    out = torch.broadcast_to(out.to(torch.float64), shape)
    if not bool(((out >= 0) & torch.isfinite(out)).all()):
        raise ValueError("power must return finite values ≥ 0")
    return out


def _box_gain(f: Tensor, s: int) -> Tensor:
    """``|mean of s taps|²`` at frequency ``f`` (cycles per pixel): ``[sin πsf /
    (s sin πf)]²``, 1 at ``f = 0``."""
    num, den = torch.sin(math.pi * s * f), s * torch.sin(math.pi * f)
    return torch.where(den.abs() > 1e-12, num / den.where(den != 0, 1.0), 1.0) ** 2


def _pooled_power(power: Power, s: int, fy: Tensor, fx: Tensor) -> Tensor:
    """The spectrum of ``D[x]`` for a field of spectrum ``power``: the ``s²`` aliases
    ``(f + m)/s`` of each frequency, weighted by the box filter, over ``s²``."""
    shape = torch.broadcast_shapes(fy.shape, fx.shape)
    total = torch.zeros(shape, dtype=fy.dtype, device=fy.device)
    for my in range(s):
        for mx in range(s):
            gy, gx = (fy + my) / s, (fx + mx) / s
            gy, gx = gy - torch.round(gy), gx - torch.round(gx)  # into [-1/2, 1/2]
            gain = _box_gain(gy, s) * _box_gain(gx, s)
            total = total + gain * _power(power, gy, gx)
    return total / s**2


class GaussianFieldDenoiser(nn.Module):
    """The exact ε-prediction for a stationary Gaussian random field.

    If ``x₀`` is a periodic stationary Gaussian field whose orthonormal 2-D DFT has
    variance ``P(f)`` at frequency ``f`` (cycles per pixel), then for ``x_t = ᾱ x₀ +
    β̄ ε`` each Fourier mode is an independent pair and ``E[ε | x_t]`` is the filter
    ``β̄/(ᾱ² P(f) + β̄²)`` applied to ``x_t``. ``P`` is a function of the continuous
    frequency, so the same denoiser applies at any resolution, like a convolution.
    With ``pooled_by = s`` the denoiser is that of ``D[x₀]`` (``s × s`` average pooling
    of the field), whose spectrum sums the ``s²`` aliases of each frequency.

    Args:
        power: ``power(fy, fx)`` with float64 tensors of frequencies in [-1/2, 1/2]
            that broadcast together, returns finite values ≥ 0 of that shape; it
            must be even (``P(−f) = P(f)``) for the field to be real.
        pooled_by: positive int (1: the field itself).

    ``forward(x_t, t)``: ``x_t`` floating ``(B, ..., H, W)``, ``t`` a number or
    ``(B,)`` in [0, 1]; returns ``ε̂`` of ``x_t``'s shape and dtype (half precision
    filtered in float32). Raises TypeError/ValueError as :func:`upsample_guided_eps`.
    """

    def __init__(self, power: Power, *, pooled_by: int = 1) -> None:
        super().__init__()
        if not callable(power):
            raise TypeError(f"power must be callable, got {type(power).__name__}")
        self.power = power
        self.pooled_by = _checks.positive_int(pooled_by, "pooled_by")

    def spectrum(self, h: int, w: int, device: torch.device | None = None) -> Tensor:
        """``P`` on the ``rfft2`` grid of an ``h × w`` image: float64 ``(h, w//2+1)``.

        Raises TypeError/ValueError for sizes that are not positive ints."""
        h, w = _checks.positive_int(h, "h"), _checks.positive_int(w, "w")
        fy, fx = _frequencies(h, w, torch.device("cpu") if device is None else device)
        if self.pooled_by == 1:
            return _power(self.power, fy, fx)
        return _pooled_power(self.power, self.pooled_by, fy, fx)

    def forward(self, x_t: Tensor, t: Tensor | float) -> Tensor:
        x_t = _image(x_t, "x_t")
        if x_t.dim() < 3:
            raise ValueError(f"x_t must be (B, ..., H, W), got {tuple(x_t.shape)}")
        t = _batch_times(t, x_t).to(torch.float64)
        if x_t.numel() == 0:
            return x_t.clone()
        work = _checks.compute_dtype(x_t.dtype)
        h, w = x_t.shape[-2:]
        p = self.spectrum(h, w, device=x_t.device)
        alpha, sigma = (_per_sample(v, x_t) for v in cosine_alpha_sigma(t))
        den = alpha.square() * p + sigma.square()
        gain = torch.where(den > 0, sigma / den.where(den > 0, 1.0), 0.0)
        spec = torch.fft.rfft2(x_t.to(work), norm="ortho")
        out = torch.fft.irfft2(spec * gain.to(work), s=x_t.shape[-2:], norm="ortho")
        return out.to(x_t.dtype)


def gaussian_field(
    power: Power,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Samples of the periodic stationary Gaussian field of spectrum ``power``.

    White noise filtered by ``√P(f)`` in Fourier space (orthonormal DFT), so the
    covariance is the circulant matrix with eigenvalues ``P``.

    Args:
        power: as in :class:`GaussianFieldDenoiser`.
        shape: ``(B, ..., H, W)`` of ints (sizes ≥ 1 after the batch, which may be 0).
        generator, device, dtype: as in :func:`ddim_sample`.

    Returns:
        ``shape`` samples of ``dtype``.

    Raises:
        TypeError, ValueError: a wrong kind or value of argument, as
            :func:`ddim_sample`; ``power`` not callable or returning negative values.
    """
    if not callable(power):
        raise TypeError(f"power must be callable, got {type(power).__name__}")
    shape = _shape(shape)
    gen = _checks.generator(generator)
    dtype = _checks.float_dtype(dtype)
    where = _where(device, gen)
    white = torch.randn(shape, generator=gen, device=where, dtype=torch.float64)
    if white.numel() == 0:
        return white.to(dtype)
    h, w = shape[-2:]
    p = GaussianFieldDenoiser(power).spectrum(h, w, device=where)
    spec = torch.fft.rfft2(white, norm="ortho") * p.sqrt()
    return torch.fft.irfft2(spec, s=shape[-2:], norm="ortho").to(dtype)


# --- a tiny convolutional denoiser ----------------------------------------------------


class ConvDenoiser(nn.Module):
    """A small fully convolutional ε-prediction network that runs at any resolution.

    A 3×3 input convolution, ``layers`` residual blocks (3×3 convolution with dilation
    1, 2, 4, … cycling, plus a per-channel bias from the time, then SiLU), and a 3×3
    output convolution. The time enters as ``(ᾱ_t, β̄_t)`` of the cosine schedule through
    a small MLP; nothing depends on the image size, so a model trained at one
    resolution can be called at another, as upsample guidance requires.

    Args:
        channels: positive int, image channels. hidden: positive int, feature maps.
        layers: positive int, residual blocks. max_dilation: positive int, the
            dilation cycle's largest value (1 gives plain 3×3 convolutions).

    ``forward(x, t)``: ``x`` floating ``(B, channels, H, W)``, ``t`` a number or
    ``(B,)`` in [0, 1]; returns ``(B, channels, H, W)``.
    """

    def __init__(
        self,
        channels: int = 1,
        *,
        hidden: int = 16,
        layers: int = 4,
        max_dilation: int = 4,
    ) -> None:
        super().__init__()
        self.channels = _checks.positive_int(channels, "channels")
        self.hidden = hidden = _checks.positive_int(hidden, "hidden")
        layers = _checks.positive_int(layers, "layers")
        top = _checks.positive_int(max_dilation, "max_dilation")
        cycle = [2**k for k in range(top.bit_length()) if 2**k <= top]
        self.dilations = [cycle[i % len(cycle)] for i in range(layers)]
        self.inp = nn.Conv2d(self.channels, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Conv2d(hidden, hidden, 3, padding=d, dilation=d) for d in self.dilations
        )
        self.time = mlp(2, hidden * layers, hidden=32, layers=2)
        self.out = nn.Conv2d(hidden, self.channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        x = _checks.tensor(x, "x", ndim=4)
        if x.shape[1] != self.channels:
            raise ValueError(
                f"x must have {self.channels} channels, got shape {tuple(x.shape)}"
            )
        t = _batch_times(t, x)
        alpha, sigma = cosine_alpha_sigma(t)
        biases = self.time(torch.stack([alpha, sigma], -1))
        biases = biases.reshape(x.shape[0], len(self.blocks), self.hidden, 1, 1)
        h = self.inp(x)
        for i, block in enumerate(self.blocks):
            h = h + self.act(block(h) + biases[:, i])
        return self.out(h)


def eps_loss(
    eps_model: EpsModel, x0: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    """The denoising loss ``E‖ε_θ(ᾱ_t x₀ + β̄_t ε, t) − ε‖²`` per pixel, ``t ~ U[0, 1]``.

    One time per example, drawn with ``generator`` (cosine schedule).

    Args:
        eps_model: as in :func:`upsample_guided_eps`.
        x0: floating ``(B, ..., H, W)``, ``B ≥ 1``.
        generator: a ``torch.Generator`` on ``x0``'s device, or None.

    Returns:
        A scalar tensor of ``x0``'s dtype (the mean squared error).

    Raises:
        TypeError: ``eps_model`` not callable, ``x0`` not floating, ``generator`` not a
            generator.
        ValueError: ``x0`` of rank < 3 or empty, the model's output of another shape.
    """
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    x0 = _image(x0, "x0")
    if x0.dim() < 3 or x0.numel() == 0:
        raise ValueError(f"x0 must be a non-empty (B, ..., H, W), got {x0.shape}")
    gen = _checks.generator(generator)
    t = torch.rand(x0.shape[0], generator=gen, device=x0.device, dtype=x0.dtype)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    alpha, sigma = (_per_sample(v, x0) for v in cosine_alpha_sigma(t))
    pred = _call(eps_model, alpha * x0 + sigma * noise, t)
    return (pred - noise).square().mean()
