"""f-VAEs: a flow inside a VAE (Su, kexue.fm/archives/5977; arXiv 1809.05861).

The posterior of the latent code is the push-forward of a standard normal ``u`` through
a map ``F_x`` that is invertible in ``u``, ``z = F_x(u)``. By the change of variables,
one sample of ``u`` gives the loss::

    -log q(x | z) + log q(u) - log q(z) - log |det ∂F_x(u)/∂u|,

an upper bound on ``-log q(x)`` in expectation. ``F_x(u) = σ(x) ⊙ u + μ(x)`` is the
standard VAE; ``F_x(u) = F(σ(x) ⊙ u + μ(x))`` with a flow ``F`` (here a RealNVP of
affine couplings) is the f-VAE. The flow may be conditioned on a context computed from
``x`` (a third encoder head).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.generative.common import bernoulli_nll, gaussian_kl, mlp

__all__ = ["AffineCoupling", "RealNVP", "fvae_loss", "vae_loss"]

_DECODE = ("input", "output")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _flow_input(
    module: nn.Module, x: object, cond: object, dim: int, cond_dim: int, name: str
) -> tuple[Tensor, Tensor | None]:
    """Check ``x (..., dim)`` and ``cond (..., cond_dim)`` against the module's
    parameters: one device, one dtype, the same leading shape."""
    x = _checks.tensor(x, name, min_ndim=1)
    if x.shape[-1] != dim:
        raise ValueError(
            f"{name} must end in dim = {dim} features, got shape {tuple(x.shape)}"
        )
    weight = next(module.parameters())
    if x.device != weight.device:
        raise ValueError(
            f"{name} is on {x.device} but the flow is on {weight.device}: "
            "move them to one device"
        )
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the flow's parameters have "
            f"{weight.dtype}: cast one of them"
        )
    if cond_dim == 0:
        if cond is not None:
            raise ValueError("cond must be None: the flow was built with cond_dim = 0")
        return x, None
    if cond is None:
        raise ValueError(
            f"cond is required: the flow was built with cond_dim = {cond_dim}"
        )
    cond = _checks.tensor(cond, "cond", min_ndim=1)
    _checks.same_device((name, x), cond=cond)
    _checks.same_dtype((name, x), cond=cond)
    if cond.shape[:-1] != x.shape[:-1] or cond.shape[-1] != cond_dim:
        raise ValueError(
            f"cond must have shape {(*x.shape[:-1], cond_dim)} "
            f"(the leading shape of {name}, then cond_dim), got {tuple(cond.shape)}"
        )
    return x, cond


class AffineCoupling(nn.Module):
    """One affine coupling layer of RealNVP (Dinh et al. 2017), optionally conditional.

    The features are split by parity: ``keep`` (indices ``parity, parity + 2, …``)
    pass unchanged; the others become ``x_c · exp(s) + t``, where ``(s, t)`` is an MLP
    of ``x_keep`` (and of ``cond``). ``s = scale · tanh(raw)`` is bounded, so one
    layer changes a log-volume by at most ``|scale|`` per feature. The last linear map
    starts at zero, so a new layer is the identity.

    Args:
        dim: int ≥ 2, the number of features.
        hidden: positive int, the MLP's width. layers: positive int, its linear maps.
        parity: 0 or 1, which half is kept.
        cond_dim: non-negative int, the size of the context (0: unconditional).

    ``forward(x, cond=None)`` maps ``x (..., dim)`` to ``(y, logdet)``, ``logdet (...)``
    = ``log |det ∂y/∂x|``; ``inverse(y, cond=None)`` maps back exactly and returns
    ``(x, log |det ∂x/∂y|)``. Inputs must have the parameters' device and dtype;
    ``cond (..., cond_dim)`` the leading shape of ``x``.

    Raises:
        TypeError: a size not an int; a non-floating input, or one of another dtype.
        ValueError: ``dim < 2``, ``parity`` not 0 or 1, a wrong last dimension, a
            ``cond`` missing, unexpected or of the wrong shape, another device.
    """

    # Buffers (registered in __init__): the kept and the changed features' indices,
    # and the permutation that joins them back in order.
    keep: Tensor
    change: Tensor
    order: Tensor

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        *,
        parity: int = 0,
        cond_dim: int = 0,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.dim = _checks.positive_int(dim, "dim")
        if self.dim < 2:
            raise ValueError(f"dim must be at least 2 (a part to keep), got {dim}")
        parity = _checks.nonnegative_int(parity, "parity")
        if parity > 1:
            raise ValueError(f"parity must be 0 or 1, got {parity}")
        self.cond_dim = _checks.nonnegative_int(cond_dim, "cond_dim")
        keep = torch.arange(parity, self.dim, 2)
        change = torch.arange(1 - parity, self.dim, 2)
        # order[j] = position of feature j in cat(keep, change): undoes the split
        order = torch.argsort(torch.cat([keep, change]))
        self.register_buffer("keep", keep, persistent=False)
        self.register_buffer("change", change, persistent=False)
        self.register_buffer("order", order, persistent=False)
        self.net = mlp(
            len(keep) + self.cond_dim, 2 * len(change), hidden=hidden, layers=layers
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)  # mlp ends with a linear map
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.scale = nn.Parameter(torch.ones(len(change)))

    def _shift_and_log_scale(
        self, kept: Tensor, cond: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        inputs = kept if cond is None else torch.cat([kept, cond], dim=-1)
        raw_s, t = self.net(inputs).chunk(2, dim=-1)
        return t, self.scale * torch.tanh(raw_s)

    def _join(self, kept: Tensor, changed: Tensor) -> Tensor:
        return torch.cat([kept, changed], dim=-1)[..., self.order]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, cond = _flow_input(self, x, cond, self.dim, self.cond_dim, "x")
        kept, moved = x[..., self.keep], x[..., self.change]
        t, log_s = self._shift_and_log_scale(kept, cond)
        y = self._join(kept, moved * log_s.exp() + t)
        work = _checks.compute_dtype(x.dtype)  # a half sum of many terms loses digits
        return y, log_s.to(work).sum(-1).to(x.dtype)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, log |det ∂x/∂y|)`` with ``forward(x, cond)[0] == y``."""
        y, cond = _flow_input(self, y, cond, self.dim, self.cond_dim, "y")
        kept, moved = y[..., self.keep], y[..., self.change]
        t, log_s = self._shift_and_log_scale(kept, cond)
        x = self._join(kept, (moved - t) * (-log_s).exp())
        work = _checks.compute_dtype(y.dtype)
        return x, -log_s.to(work).sum(-1).to(y.dtype)


class RealNVP(nn.Module):
    """A stack of ``layers`` affine couplings of alternating parity (a RealNVP flow).

    Args:
        dim: int ≥ 2, the number of features.
        layers: positive int, the number of couplings.
        hidden: positive int, the width of each coupling's MLP.
        cond_dim: non-negative int, the context size every coupling reads (0: none).
        depth: positive int, the linear maps of each coupling's MLP.

    ``forward(x, cond=None)`` returns ``(z, logdet)`` with ``z (..., dim)`` and
    ``logdet (...) = log |det ∂z/∂x|`` (the layers' sum); ``inverse(z, cond=None)``
    returns ``(x, log |det ∂x/∂z|)``; ``log_prob(x, cond=None)`` is the log-density of
    ``x`` when ``z`` is standard normal; ``sample(count, …)`` draws from it. Errors as
    in :class:`AffineCoupling`.
    """

    def __init__(
        self,
        dim: int,
        layers: int,
        hidden: int = 64,
        *,
        cond_dim: int = 0,
        depth: int = 2,
    ) -> None:
        super().__init__()
        layers = _checks.positive_int(layers, "layers")
        couplings = [
            AffineCoupling(dim, hidden, parity=i % 2, cond_dim=cond_dim, layers=depth)
            for i in range(layers)
        ]
        self.couplings = nn.ModuleList(couplings)
        self.dim, self.cond_dim = couplings[0].dim, couplings[0].cond_dim

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, cond = _flow_input(self, x, cond, self.dim, self.cond_dim, "x")
        logdet = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for coupling in self.couplings:
            x, step = coupling(x, cond)
            logdet = logdet + step
        return x, logdet

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, log |det ∂x/∂z|)`` with ``forward(x, cond)[0] == z``."""
        z, cond = _flow_input(self, z, cond, self.dim, self.cond_dim, "z")
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for coupling in reversed(self.couplings):
            assert isinstance(coupling, AffineCoupling)  # nn.ModuleList is not generic
            z, step = coupling.inverse(z, cond)
            logdet = logdet + step
        return z, logdet

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """``log N(F(x); 0, I) + log |det ∂F/∂x|``, shape ``(...)``, in nats."""
        z, logdet = self(x, cond)
        return _standard_normal_log_prob(z) + logdet

    @torch.no_grad()
    def sample(
        self,
        count: int,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``F⁻¹(u)`` for ``count`` draws ``u ~ N(0, I)``: ``(count, dim)`` on the
        flow's device and dtype; ``cond``, if the flow has one, is ``(count,
        cond_dim)``; ``generator`` must live on the flow's device."""
        count = _checks.nonnegative_int(count, "count")
        weight = next(self.parameters())
        u = _normal((count, self.dim), weight, generator)
        return self.inverse(u, cond)[0]


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    work = _checks.compute_dtype(z.dtype)
    zw = z.to(work)
    out = -0.5 * zw.square().sum(-1) - z.shape[-1] * _HALF_LOG_2PI
    return out.to(z.dtype)


def _normal(
    shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Standard normal draws of ``like``'s device and dtype from ``generator``."""
    generator = _checks.generator(generator)
    if generator is not None and generator.device.type != like.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data are on {like.device}: "
            "use a generator of that device"
        )
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _sigma(sigma: object, dim: int, like: Tensor) -> Tensor | None:
    """None, a positive number, or a positive floating tensor of shape ``()`` or
    ``(dim,)`` on ``like``'s device (a trainable scale is allowed)."""
    if sigma is None:
        return None
    if not isinstance(sigma, Tensor):
        value = _checks.real(sigma, "sigma", positive=True)
        return torch.tensor(value, dtype=like.dtype, device=like.device)
    _checks.tensor(sigma, "sigma")
    _checks.same_device(("x", like), sigma=sigma)
    if sigma.shape not in ((), (dim,)):
        raise ValueError(
            f"sigma must be a number or of shape () or ({dim},), "
            f"got {tuple(sigma.shape)}"
        )
    if sigma.device.type != "meta" and not bool(
        (torch.isfinite(sigma) & (sigma > 0)).all()
    ):
        raise ValueError("sigma must be positive and finite")
    return sigma


def _reconstruction(decoded: object, x: Tensor, sigma: Tensor | None) -> Tensor:
    """``-log q(x | ·)`` in nats per example: Bernoulli logits when ``sigma`` is None,
    else ``N(x; decoded, sigma² I)`` with its normaliser."""
    if not isinstance(decoded, Tensor) or decoded.shape != x.shape:
        shape = tuple(decoded.shape) if isinstance(decoded, Tensor) else decoded
        raise ValueError(
            f"decoder must return a tensor of the shape of x {tuple(x.shape)}, "
            f"got {shape}"
        )
    if sigma is None:
        return bernoulli_nll(decoded, x)
    work = _checks.compute_dtype(x.dtype)
    s = sigma.to(work).expand(x.shape[-1:])
    error = ((x.to(work) - decoded.to(work)) / s).square()
    nll = 0.5 * error.sum(-1) + s.log().sum() + x.shape[-1] * _HALF_LOG_2PI
    return nll.to(x.dtype)


def _encode(
    encoder: Callable[[Tensor], tuple[Tensor, ...]], x: Tensor, heads: tuple[int, ...]
) -> tuple[Tensor, ...]:
    """Call ``encoder(x)`` and check it returned ``heads`` tensors ``(n, k)``."""
    if not callable(encoder):
        raise TypeError(f"encoder must be callable, got {type(encoder).__name__}")
    out = encoder(x)
    if not isinstance(out, tuple | list) or len(out) not in heads:
        raise ValueError(
            f"encoder must return a tuple of {' or '.join(map(str, heads))} tensors "
            "(mean, log_var[, context])"
        )
    for i, t in enumerate(out):
        if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"encoder output {i} must be a tensor (n, k) with n = {x.shape[0]}"
            )
    if out[0].shape != out[1].shape:
        raise ValueError(
            "encoder must return mean and log_var of one shape, got "
            f"{tuple(out[0].shape)} and {tuple(out[1].shape)}"
        )
    return tuple(out)


def _data(x: object) -> Tensor:
    return _checks.tensor(x, "x", ndim=2)


def vae_loss(
    x: Tensor,
    encoder: Callable[[Tensor], tuple[Tensor, Tensor]],
    decoder: Callable[[Tensor], Tensor],
    *,
    sigma: float | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The standard VAE's two terms for one reparameterised sample per example.

    ``(mean, log_var) = encoder(x)``, ``z = mean + exp(log_var / 2) ⊙ u`` with
    ``u ~ N(0, I)``; the reconstruction is ``-log q(x | z)`` and the KL term the
    closed form ``KL(N(mean, diag exp(log_var)) ‖ N(0, I))``.

    Args:
        x: floating ``(n, d)``, the data (in [0, 1] for the Bernoulli likelihood).
        encoder: callable, ``x ↦ (mean, log_var)``, each ``(n, k)``.
        decoder: callable, ``z (n, k) ↦ (n, d)``: logits, or means if ``sigma`` is
            given.
        sigma: None for a Bernoulli likelihood; else the standard deviation of a
            Gaussian likelihood: a positive number or a positive tensor of shape ``()``
            or ``(d,)`` (it may require gradient, to learn it).
        generator: for ``u``, on the device of ``x``.

    Returns:
        ``(reconstruction, kl)``, each ``(n,)`` in nats; their sum bounds
        ``-log q(x)`` in expectation. Half precision is summed in float32.

    Raises:
        TypeError: ``x`` not a floating tensor, ``encoder`` not callable, ``sigma``
            of the wrong type, ``generator`` not a ``torch.Generator``.
        ValueError: ``x`` not of rank 2, outputs of the wrong shape, ``sigma`` not
            positive, devices that differ.
    """
    x = _data(x)
    sigma_t = _sigma(sigma, x.shape[1], x)
    mean, log_var = _encode(encoder, x, (2,))
    u = _normal(tuple(mean.shape), mean, generator)
    z = mean + (0.5 * log_var).exp() * u
    return _reconstruction(decoder(z), x, sigma_t), gaussian_kl(mean, log_var)


def fvae_loss(
    x: Tensor,
    encoder: Callable[[Tensor], tuple[Tensor, ...]],
    flow: Callable[..., tuple[Tensor, Tensor]] | None,
    decoder: Callable[[Tensor], Tensor],
    *,
    sigma: float | Tensor | None = None,
    decode: str = "input",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The f-VAE's two terms for one sample ``u ~ N(0, I)`` per example.

    ``h = mean + exp(log_var / 2) ⊙ u`` and ``z = F(h)`` (``F(h, context)`` when the
    encoder returns a third head). The KL term is the one-sample estimate::

        log q(u) − log q(z) − log |det ∂z/∂u|
        = ½(‖z‖² − ‖u‖²) − Σ log_var / 2 − log |det ∂F/∂h|,

    whose mean is ``KL(p(z | x) ‖ N(0, I))``; ``flow=None`` (``F`` the identity) makes
    it the standard VAE's. With ``decode="input"`` the decoder reads ``h = F⁻¹(z)``,
    the article's model ``q(x | z) = N(x; G(F⁻¹(z)), σ²)``: samples are
    ``G(F⁻¹(u))``. With ``decode="output"`` it reads ``z``; a conditional flow
    needs this (``F_x⁻¹`` needs ``x``, unknown when sampling).

    Args:
        x: floating ``(n, d)``.
        encoder: callable, ``x ↦ (mean, log_var)`` or ``(mean, log_var, context)``,
            each ``(n, ·)``; ``mean`` and ``log_var`` of one shape ``(n, k)``.
        flow: None, or a callable ``h ↦ (z, logdet)`` (``(h, context) ↦ …`` with a
            context), e.g. :class:`RealNVP`, with ``z (n, k)`` and ``logdet (n,)``.
        decoder: callable, ``(n, k) ↦ (n, d)``, as in :func:`vae_loss`.
        sigma: as in :func:`vae_loss`.
        decode: ``"input"`` or ``"output"``, which side of the flow is decoded.
        generator: for ``u``, on the device of ``x``.

    Returns:
        ``(reconstruction, kl)``, each ``(n,)`` in nats.

    Raises:
        TypeError: as in :func:`vae_loss`; ``flow`` not callable.
        ValueError: as in :func:`vae_loss`; a context without a flow, or with
            ``decode="input"``; ``decode`` unknown; a flow output of the wrong shape.
    """
    x = _data(x)
    decode = _checks.choice(decode, "decode", _DECODE)
    if flow is not None and not callable(flow):
        raise TypeError(f"flow must be callable or None, got {type(flow).__name__}")
    sigma_t = _sigma(sigma, x.shape[1], x)
    heads = _encode(encoder, x, (2, 3))
    mean, log_var = heads[0], heads[1]
    context = heads[2] if len(heads) == 3 else None
    if context is not None and (flow is None or decode == "input"):
        raise ValueError(
            "encoder returned a context: it needs a conditional flow and "
            "decode='output' (decoding F_x^{-1}(z) would need x to sample)"
        )
    u = _normal(tuple(mean.shape), mean, generator)
    h = mean + (0.5 * log_var).exp() * u
    if flow is None:
        z, logdet = h, torch.zeros_like(h[:, 0])
    else:
        z, logdet = flow(h) if context is None else flow(h, context)
        if (
            not isinstance(z, Tensor)
            or z.shape != h.shape
            or logdet.shape != h.shape[:1]
        ):
            raise ValueError(
                f"flow must return (z, logdet) of shapes {tuple(h.shape)} and "
                f"({h.shape[0]},)"
            )
    work = _checks.compute_dtype(mean.dtype)
    kl = (
        0.5 * (z.to(work).square() - u.to(work).square()).sum(-1)
        - 0.5 * log_var.to(work).sum(-1)
        - logdet.to(work)
    )
    decoded = decoder(h if decode == "input" else z)
    return _reconstruction(decoded, x, sigma_t), kl.to(mean.dtype)
