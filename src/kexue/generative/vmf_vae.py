"""The von Mises–Fisher distribution on the sphere and a VAE built on it (vMF-VAE).

The density on the unit sphere :math:`S^{d-1} \\subset \\mathbb{R}^d` is
:math:`C_{d,\\kappa} e^{\\kappa\\langle\\mu, x\\rangle}` with
:math:`C_{d,\\kappa} = \\kappa^{d/2-1} / ((2\\pi)^{d/2} I_{d/2-1}(\\kappa))`. With the
uniform prior (:math:`\\kappa = 0`) the KL term of a VAE depends on :math:`(d, \\kappa)`
only, so a fixed concentration fixes the KL to a positive constant
(Davidson et al. 2018; Xu and Durrett 2018; Su, kexue.fm/archives/8404).

Numerics: the Bessel function is never formed. :math:`\\log I_\\nu(\\kappa) - \\kappa`
comes from Debye's uniform expansion at an order :math:`\\nu + n \\ge 60` (error below
1e-10) and the backward recurrence of the ratios :math:`I_{m+1}/I_m` down to
:math:`\\nu`, which is stable; the ratio at :math:`\\nu` is the mean cosine
:math:`A_d(\\kappa)`. Small :math:`\\kappa` uses the Taylor series. Everything works in
float64 for float64 inputs and in float32 otherwise, on the inputs' device.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from kexue import _checks
from kexue.generative.common import Decoder, Encoder, bernoulli_nll

__all__ = [
    "VMFVAE",
    "VonMisesFisher",
    "kl_to_uniform",
    "vmf_log_normalizer",
    "vmf_mean_cosine",
]

_NU_MIN = 60  # Debye's expansion (four terms) is within 1e-10 of log I_nu from here on
_SMALL = 1e-2  # below this concentration the Taylor series is exact to ~1e-13
_GRID = 2048  # points of the inverse-CDF table
_COARSE = 512  # points of the coarse pass that finds where the mass of the angle lies
_SAMPLERS = ("inverse_cdf", "wood")


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    # float64 stays float64; every other float (half, bfloat16, float32) uses float32
    return torch.float64 if dtype == torch.float64 else torch.float32


def _debye_log_ive(nu: float, x: Tensor) -> Tensor:
    """``log I_nu(x) - x`` for ``nu >= _NU_MIN`` and ``x > 0`` (DLMF 10.41.3, four
    terms). Written with ``asinh`` and ``1/(s + z)`` so that nothing cancels."""
    z = x / nu
    s = torch.sqrt(1 + z * z)
    t = 1 / s
    t2 = t * t
    u1 = t * (3 - 5 * t2) / 24
    u2 = t2 * (81 + t2 * (-462 + t2 * 385)) / 1152
    u3 = t * t2 * (30375 + t2 * (-369603 + t2 * (765765 - t2 * 425425))) / 414720
    u4 = (
        t2
        * t2
        * (
            4465125
            + t2 * (-94121676 + t2 * (349922430 + t2 * (-446185740 + t2 * 185910725)))
        )
        / 39813120
    )
    series = 1 + (u1 + (u2 + (u3 + u4 / nu) / nu) / nu) / nu
    scaled = nu / (s + z) - nu * torch.asinh(1 / z)  # nu * eta(z) - x
    return scaled - 0.5 * (math.log(2 * math.pi) + torch.log(nu * s)) + series.log()


def _log_ive_and_ratio(nu: float, x: Tensor) -> tuple[Tensor, Tensor]:
    """``log I_nu(x) - x`` and ``I_{nu+1}(x) / I_nu(x)`` for ``x > 0``.

    Start at ``top = nu + n >= _NU_MIN`` with Debye's expansion, then run the backward
    recurrence ``R_m = 1 / (R_{m+1} + 2(m + 1)/x)`` down to ``nu``: each step multiplies
    an error by ``R_m^2 <= 1``, so the recurrence does not amplify it.
    """
    steps = max(0, math.ceil(_NU_MIN - nu))
    top = nu + steps
    log_ive = _debye_log_ive(top, x)
    ratio = torch.exp(_debye_log_ive(top + 1, x) - log_ive)
    ratios = []
    for m in range(steps):
        order = top - 1 - m  # ratio holds R_{order + 1}; make R_order
        ratio = 1 / (ratio + 2 * (order + 1) / x)
        ratios.append(ratio)
    if ratios:  # log I_nu = log I_top - sum of log R_m for m = nu .. top - 1
        log_ive = log_ive - torch.stack(ratios).log().sum(0)
    return log_ive, ratio


def _log_area(dim: int) -> float:
    """``log |S^{dim-1}| = log(2 pi^{dim/2} / Gamma(dim/2))``."""
    return math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)


def _scaled_terms(dim: int, kappa: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``log C_{d,kappa} + kappa``, ``A_d(kappa)`` and ``1 - A_d(kappa)`` in
    ``kappa``'s dtype, finite for every ``kappa >= 0``. Computed in float64 wherever the
    device has it (one value per concentration, so this costs little): in float32 the
    Debye terms and the recurrence cancel to ~1e-5, and ``1 - A`` (3.5e-7 at
    ``d = 8``, ``kappa = 1e7``) would keep no digit."""
    if kappa.device.type != "mps" and kappa.dtype != torch.float64:
        terms = _scaled_terms(dim, kappa.double())
        return (
            terms[0].to(kappa.dtype),
            terms[1].to(kappa.dtype),
            terms[2].to(kappa.dtype),
        )
    nu = dim / 2 - 1
    small = kappa < _SMALL
    safe = torch.where(small, torch.ones_like(kappa), kappa)
    log_ive, ratio = _log_ive_and_ratio(nu, safe)
    log_c = nu * safe.log() - dim / 2 * math.log(2 * math.pi) - log_ive
    # Taylor series of log C and of A = -d log C / d kappa at kappa = 0
    k2 = kappa * kappa
    log_c_small = -_log_area(dim) - k2 / (2 * dim) + k2 * k2 / (4 * dim**2 * (dim + 2))
    mean_small = kappa / dim - kappa * k2 / (dim**2 * (dim + 2))
    log_c = torch.where(small, log_c_small + kappa, log_c)
    mean = torch.where(small, mean_small, ratio)
    return log_c, mean, 1 - mean


def _concentration(value: object, name: str = "concentration") -> Tensor:
    """A number or a floating tensor, finite and >= 0, as a tensor (numbers in
    float64)."""
    if isinstance(value, Tensor):
        _checks.tensor(value, name)
    else:
        value = torch.tensor(
            _checks.real(value, name, nonnegative=True), dtype=torch.float64
        )
    if value.device.type != "meta" and value.numel():
        if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
            raise ValueError(f"{name} must be finite and non-negative")
    return value


def _dim(dim: object, name: str = "dim") -> int:
    dim = _checks.positive_int(dim, name)
    if dim < 2:
        raise ValueError(
            f"{name} must be at least 2 (the sphere S^({name}-1)), got {dim}"
        )
    return dim


def _apply(dim: object, concentration: object, pick: int) -> tuple[Tensor, ...]:
    dim = _dim(dim)
    kappa = _concentration(concentration)
    work = kappa.to(_work_dtype(kappa.dtype))
    return _scaled_terms(dim, work)[pick], kappa, work


def vmf_log_normalizer(dim: int, concentration: float | Tensor) -> Tensor:
    """``log C_{d,kappa}``: minus the log of the integral of ``exp(kappa <mu, x>)`` over
    the unit sphere ``S^{d-1}``.

    Args:
        dim: ``d >= 2``, the dimension of the ambient space.
        concentration: ``kappa >= 0``, a number or a floating tensor of any shape.

    Returns:
        A tensor of ``concentration``'s shape, device and dtype (a number gives a 0-dim
        float64 tensor); half precision is computed in float32. ``kappa = 0`` gives
        ``log(Gamma(d/2) / (2 pi^{d/2}))`` exactly.

    Raises:
        TypeError: ``dim`` not an int; ``concentration`` not a number or a floating
            tensor.
        ValueError: ``dim < 2``; ``concentration`` negative or not finite.
    """
    scaled, kappa, work = _apply(dim, concentration, 0)
    return (scaled - work).to(kappa.dtype)


def vmf_mean_cosine(dim: int, concentration: float | Tensor) -> Tensor:
    """``A_d(kappa) = E<mu, x> = I_{d/2}(kappa) / I_{d/2-1}(kappa)``, the length of the
    mean of a vMF distribution (its direction is ``mu``). Arguments, result and errors
    as in :func:`vmf_log_normalizer`; ``kappa = 0`` gives 0."""
    mean, kappa, _ = _apply(dim, concentration, 1)
    return mean.to(kappa.dtype)


def kl_to_uniform(dim: int, concentration: float | Tensor) -> Tensor:
    """``KL(vMF(mu, kappa) || uniform on S^{d-1}) = kappa A_d(kappa) + log C_{d,kappa}
    - log C_{d,0}``, which does not depend on ``mu``: zero at ``kappa = 0``, positive
    and increasing after. Arguments, result and errors as in
    :func:`vmf_log_normalizer`."""
    dim = _dim(dim)
    kappa = _concentration(concentration)
    # the sum below cancels (to ~1e-3 at kappa = 1e7 in float32): work in float64
    precise = torch.float32 if kappa.device.type == "mps" else torch.float64
    work = kappa.to(precise)
    scaled, _, gap = _scaled_terms(dim, work)
    # kappa*A + log C - log C_0 = (log C + kappa) - kappa*(1 - A) - log C_0
    kl = scaled - work * gap + _log_area(dim)
    return kl.clamp_min(0).to(kappa.dtype)


def _angle_table(dim: int, kappa: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse-CDF table of the angle ``theta = arccos w`` (density proportional
    to ``exp(kappa cos theta) sin^{d-2} theta`` on [0, pi]): ``(..., _GRID)`` angles and
    their CDF. A coarse pass keeps the cells where the log-density is within 40 of its
    maximum (the density is unimodal), so a large ``kappa`` still gets a fine grid."""
    shape = (*kappa.shape, 1)
    k = kappa.reshape(shape)
    power = torch.tensor(dim - 2.0, dtype=kappa.dtype, device=kappa.device)

    def log_density(theta: Tensor) -> Tensor:
        # sin(pi) rounds to -9e-8 in float32: clamp so that log sees 0, not < 0
        return k * (theta.cos() - 1) + torch.xlogy(power, theta.sin().clamp_min(0))

    coarse = torch.linspace(0, math.pi, _COARSE, dtype=kappa.dtype, device=kappa.device)
    logf = log_density(coarse.expand(*kappa.shape, _COARSE))
    keep = logf > logf.amax(-1, keepdim=True) - 40
    index = torch.arange(_COARSE, device=kappa.device)
    lo = torch.where(keep, index, _COARSE).amin(-1, keepdim=True) - 1
    hi = torch.where(keep, index, -1).amax(-1, keepdim=True) + 1
    lo, hi = coarse[lo.clamp_min(0)], coarse[hi.clamp_max(_COARSE - 1)]
    steps = torch.linspace(0, 1, _GRID, dtype=kappa.dtype, device=kappa.device)
    theta = lo + (hi - lo) * steps
    logf = log_density(theta)
    f = torch.exp(logf - logf.amax(-1, keepdim=True))
    cells = 0.5 * (f[..., 1:] + f[..., :-1]) * (hi - lo) / (_GRID - 1)
    cdf = F.pad(cells.cumsum(-1), (1, 0))
    return theta, cdf / cdf[..., -1:]


def _inverse_cdf(theta: Tensor, cdf: Tensor, uniform: Tensor) -> Tensor:
    """Angles at the quantiles ``uniform`` by linear interpolation in the table: one
    table ``(_GRID,)`` for any ``uniform``, or ``(rows, _GRID)`` for ``(rows, n)``."""
    i = torch.searchsorted(cdf, uniform.contiguous()).clamp(1, _GRID - 1)
    if cdf.dim() == 1:
        t0, t1, c0, c1 = theta[i - 1], theta[i], cdf[i - 1], cdf[i]
    else:
        t0, t1 = theta.gather(-1, i - 1), theta.gather(-1, i)
        c0, c1 = cdf.gather(-1, i - 1), cdf.gather(-1, i)
    return _interpolate(t0, t1, c0, c1, uniform)


def _interpolate(t0: Tensor, t1: Tensor, c0: Tensor, c1: Tensor, u: Tensor) -> Tensor:
    step = (c1 - c0).clamp_min(torch.finfo(c0.dtype).tiny)
    return t0 + (t1 - t0) * ((u - c0) / step).clamp(0, 1)


def _wood(dim: int, kappa: Tensor, max_rounds: int = 1000) -> tuple[Tensor, Tensor]:
    """Wood's (1994) rejection sampler for ``w``, one draw per entry of ``kappa``;
    returns ``(w, sqrt(1 - w^2))``. Written in ``u = 1 - w`` so that large ``kappa``
    keeps its digits in float32: ``u = 2bz / (1 - (1 - b) z)``, ``z ~ Beta``."""
    half = torch.tensor((dim - 1) / 2, dtype=kappa.dtype, device=kappa.device)
    beta = torch.distributions.Beta(half, half)
    b = (dim - 1) / (2 * kappa + torch.sqrt(4 * kappa * kappa + (dim - 1) ** 2))
    u0 = 2 * b / (1 + b)  # 1 - x0
    x0 = 1 - u0
    u = torch.full_like(kappa, float("nan"))
    pending = torch.ones_like(kappa, dtype=torch.bool)
    for _ in range(max_rounds):
        z = beta.sample(kappa.shape)
        cand = 2 * b * z / (1 - (1 - b) * z)
        # log of the acceptance ratio: kappa (w - x0) + (d-1) log((1 - x0 w)/(1 - x0^2))
        ratio = kappa * (u0 - cand) + (dim - 1) * (
            torch.log(u0 + x0 * cand) - u0.log() - torch.log(2 - u0)
        )
        accept = pending & (torch.rand_like(kappa).log() <= ratio)
        u = torch.where(accept, cand, u)
        pending = pending & ~accept
        if not bool(pending.any()):
            break
    else:  # pragma: no cover - the acceptance rate is above 1/2 for every (d, kappa)
        raise RuntimeError("Wood's sampler did not accept within max_rounds")
    u = u.clamp(0, 2)
    return 1 - u, torch.sqrt(u * (2 - u))


def _unit_norm(x: Tensor, name: str) -> None:
    if x.device.type == "meta" or not x.numel():
        return
    tol = max(1e-4, 10 * torch.finfo(x.dtype).eps)
    norms = torch.linalg.vector_norm(x.float(), dim=-1)
    if not bool(((norms - 1).abs() <= tol).all()):
        raise ValueError(f"{name} must be unit vectors along its last dimension")


class VonMisesFisher(Distribution):
    """The von Mises–Fisher distribution ``C_{d,kappa} exp(kappa <loc, x>)`` on the unit
    sphere ``S^{d-1}``.

    Args:
        loc: floating ``(..., d)``, ``d >= 2``, unit vectors (``|norm - 1| <= 1e-4`` or
            10 ulp); the batch shape is ``loc.shape[:-1]``.
        concentration: ``kappa >= 0``: a number, or a floating tensor that broadcasts
            to the batch shape without growing it (same device as ``loc``).
        sampler: ``"inverse_cdf"`` (the article's: a numeric CDF of the angle, inverted
            by interpolation in a 2048-point table) or ``"wood"`` (Wood's 1994 rejection
            sampler).

    ``rsample`` is reparameterised in ``loc``: ``z = w loc + sqrt(1 - w^2) nu`` with
    ``w`` drawn independently of ``loc`` and ``nu`` the normalised component of a
    Gaussian orthogonal to ``loc``; ``w`` carries no gradient to ``concentration``.
    Half precision is computed in float32 and returned in ``loc``'s dtype.

    Raises:
        TypeError: ``loc`` not a floating tensor; ``concentration`` not a number or a
            floating tensor.
        ValueError: ``loc`` of rank 0, ``d < 2``, not unit, not finite;
            ``concentration`` negative, not finite, not broadcastable, on another
            device; ``sampler`` unknown.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real_vector,
        "concentration": constraints.nonnegative,
    }
    support = constraints.real_vector  # the unit sphere; checked by log_prob
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        concentration: float | Tensor,
        *,
        sampler: str = "inverse_cdf",
    ) -> None:
        loc = _checks.tensor(loc, "loc", min_ndim=1)
        if (dim := loc.shape[-1]) < 2:
            raise ValueError(f"loc must end in d >= 2 features, got {tuple(loc.shape)}")
        _unit_norm(loc, "loc")
        kappa = _concentration(concentration)
        if not isinstance(concentration, Tensor):
            kappa = kappa.to(loc.device, _work_dtype(loc.dtype))
        _checks.same_device(("loc", loc), concentration=kappa)
        _checks.broadcasts(kappa, loc.shape[:-1], "concentration", "loc.shape[:-1]")
        self.sampler = _checks.choice(sampler, "sampler", _SAMPLERS)
        self.loc, self.dim = loc, dim
        self._kappa = kappa.to(
            _work_dtype(loc.dtype)
        )  # unexpanded: one table per value
        self.concentration = kappa.to(loc.dtype).expand(loc.shape[:-1])
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def _terms(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        kappa = self._kappa.expand(self.batch_shape)
        return (*_scaled_terms(self.dim, kappa), kappa)

    @property
    def mean(self) -> Tensor:
        """``A_d(kappa) loc``, shape ``(..., d)``."""
        mean = self._terms()[1]
        return (mean.unsqueeze(-1) * self.loc.to(mean.dtype)).to(self.loc.dtype)

    @property
    def mode(self) -> Tensor:
        return self.loc

    def entropy(self) -> Tensor:
        """``-log C_{d,kappa} - kappa A_d(kappa)``, shape ``batch_shape``."""
        scaled, _, gap, kappa = self._terms()
        return (kappa * gap - scaled).to(self.loc.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        """``log C_{d,kappa} + kappa <loc, value>`` for unit ``value`` ``(..., d)``
        broadcasting against ``loc``; ValueError for another last dimension, a shape
        that does not broadcast, or values off the sphere."""
        value = _checks.tensor(value, "value", min_ndim=1)
        _checks.same_device(("loc", self.loc), value=value)
        if value.shape[-1] != self.dim:
            raise ValueError(
                f"value must end in {self.dim} features, got {tuple(value.shape)}"
            )
        try:
            shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError as err:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast against the "
                f"batch shape {tuple(self.batch_shape)}"
            ) from err
        _unit_norm(value, "value")
        scaled, _, _, kappa = self._terms()
        work = scaled.dtype
        cosine = (value.to(work) * self.loc.to(work)).sum(-1)
        out = scaled + kappa * (cosine - 1)  # log C + kappa, then kappa (cos - 1)
        return out.expand(shape).to(self.loc.dtype)

    def rsample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()
    ) -> Tensor:
        """Samples ``sample_shape + batch_shape + (d,)``, differentiable in ``loc``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        work = _work_dtype(self.loc.dtype)
        mu = self.loc.to(work).expand(*shape, self.dim)
        w, s = self._sample_w(shape)
        eps = torch.randn(*shape, self.dim, dtype=work, device=mu.device)
        nu = F.normalize(eps - (eps * mu).sum(-1, keepdim=True) * mu, dim=-1)
        z = w.unsqueeze(-1) * mu + s.unsqueeze(-1) * nu
        return z.to(self.loc.dtype)

    def _sample_w(self, shape: torch.Size) -> tuple[Tensor, Tensor]:
        """``w`` and ``sqrt(1 - w^2)`` of shape ``shape``, no gradient."""
        with torch.no_grad():
            if self.sampler == "wood":
                w, s = _wood(self.dim, self._kappa.expand(shape).reshape(-1))
                return w.reshape(shape), s.reshape(shape)
            return self._sample_inverse_cdf(shape)

    def _sample_inverse_cdf(self, shape: torch.Size) -> tuple[Tensor, Tensor]:
        kappa, batch = self._kappa, self.batch_shape
        dtype, device = kappa.dtype, kappa.device
        if kappa.numel() == 1:  # one table serves every draw
            theta, cdf = _angle_table(self.dim, kappa.reshape(()))
            uniform = torch.rand(shape, dtype=dtype, device=device)
            angles = _inverse_cdf(theta, cdf, uniform)
        else:  # one table per batch entry; the draws of an entry form one row
            rows = batch.numel()
            theta, cdf = _angle_table(self.dim, kappa.expand(batch).reshape(rows))
            columns = shape.numel() // max(rows, 1)
            uniform = torch.rand(rows, columns, dtype=dtype, device=device)
            angles = _inverse_cdf(theta, cdf, uniform).T.reshape(shape)
        return angles.cos(), angles.sin()


class VMFVAE(nn.Module):
    """A VAE whose posterior is ``vMF(mu(x), kappa)`` on ``S^{latent_dim - 1}`` and
    whose prior is uniform on the sphere; ``kappa`` is a fixed hyperparameter, so the KL
    term is the constant :func:`kl_to_uniform` ``(latent_dim, kappa)``.

    Args:
        in_dim: the data size (784 for flattened MNIST); the data lie in [0, 1].
        latent_dim: ``d >= 2``.
        concentration: ``kappa >= 0``, a number.
        hidden, layers: the MLPs' width and depth (:class:`kexue.generative.Encoder`,
            :class:`kexue.generative.Decoder`).
        sampler: ``"inverse_cdf"`` or ``"wood"`` (see :class:`VonMisesFisher`).

    Raises:
        TypeError, ValueError: as the arguments' checks say (``latent_dim < 2``,
            ``concentration`` negative, an unknown ``sampler``).
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        concentration: float,
        *,
        hidden: int = 256,
        layers: int = 2,
        sampler: str = "inverse_cdf",
    ) -> None:
        super().__init__()
        self.latent_dim = _dim(latent_dim, "latent_dim")
        self.concentration = _checks.real(
            concentration, "concentration", nonnegative=True
        )
        self.sampler = _checks.choice(sampler, "sampler", _SAMPLERS)
        # the KL term is one number for the whole model: compute it once
        self.kl = kl_to_uniform(self.latent_dim, self.concentration).item()
        self.encoder = Encoder(
            in_dim, latent_dim, heads=1, hidden=hidden, layers=layers
        )
        self.decoder = Decoder(latent_dim, in_dim, hidden=hidden, layers=layers)

    def encode(self, x: Tensor) -> Tensor:
        """The mean directions ``mu(x)``: ``(..., in_dim)`` to unit vectors
        ``(..., latent_dim)``."""
        (h,) = self.encoder(x)
        return F.normalize(h, dim=-1)

    def posterior(self, x: Tensor) -> VonMisesFisher:
        return VonMisesFisher(self.encode(x), self.concentration, sampler=self.sampler)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction logits ``(..., in_dim)`` from one posterior sample, and
        ``mu(x)``."""
        q = self.posterior(x)
        return self.decoder(q.rsample()), q.loc

    def loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per example: the Bernoulli reconstruction NLL and the (constant) KL, nats,
        both ``(...)``."""
        logits, mu = self(x)
        kl = torch.full(mu.shape[:-1], self.kl, dtype=mu.dtype, device=mu.device)
        return bernoulli_nll(logits, x), kl

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` decoded draws from the prior (uniform on the sphere): ``(n, in_dim)``
        probabilities in [0, 1]."""
        n = _checks.nonnegative_int(n, "n")
        weight = next(self.decoder.parameters())  # the first layer's weight
        z = F.normalize(
            torch.randn(n, self.latent_dim, device=weight.device, dtype=weight.dtype),
            dim=-1,
        )
        return torch.sigmoid(self.decoder(z))
