"""Wasserstein GANs and the distance they are named after.

Stanczuk et al. (arXiv 2103.01678) argue that WGANs work although (or because) their
critics do not estimate the Wasserstein-1 distance ``W₁``. This module holds what it
takes to check that on small data: the exact ``W₁`` between two minibatches (an optimal
assignment), the gradient penalty of WGAN-GP, the c-transform of Mallasto et al.
(arXiv 1910.03875), a small MLP critic, the critic's estimate of ``W₁`` in both forms,
and a GAN module whose ``loss`` alternates critic and generator steps under
:func:`kexue.training.train`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from kexue import _checks
from kexue.generative.common import mlp

__all__ = [
    "MLPCritic",
    "WassersteinGAN",
    "c_transform",
    "exact_w1",
    "gradient_penalty",
    "wasserstein_critic_estimate",
]

METHODS = ("gradient-penalty", "c-transform", "exact")


def _points(x: object, name: str) -> Tensor:
    """``x`` a floating ``(..., n, d)`` point cloud."""
    return _checks.tensor(x, name, min_ndim=2)


def _pair(x: object, y: object) -> tuple[Tensor, Tensor]:
    """Two point clouds ``(..., n, d)`` and ``(..., m, d)`` that belong together."""
    x, y = _points(x, "x"), _points(y, "y")
    _checks.same_device(("x", x), y=y)
    _checks.same_dtype(("x", x), y=y)
    if x.shape[:-2] != y.shape[:-2] or x.shape[-1] != y.shape[-1]:
        raise ValueError(
            "x (..., n, d) and y (..., m, d) must share their leading dimensions and "
            f"d, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def _matching(cost: Tensor) -> np.ndarray:
    """For each ``(L, L)`` cost matrix of a ``(B, L, L)`` stack, the optimal column of
    every row, ``(B, L)`` (scipy's Jonker-Volgenant solver, on the CPU)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as err:  # scipy is optional: only the exact W1 needs it
        raise ImportError("exact_w1 needs scipy: pip install scipy") from err

    stack = cost.detach().to("cpu", torch.float64).numpy()
    return np.stack([linear_sum_assignment(c)[1] for c in stack]).reshape(
        cost.shape[:-1]
    )


def exact_w1(x: Tensor, y: Tensor, *, max_size: int = 4096) -> Tensor:
    """The exact ``W₁`` between the uniform measures on two point clouds.

    ``W₁ = min over couplings γ of Σ γ_ij ‖x_i − y_j‖``, with mass ``1/n`` on each
    ``x_i`` and ``1/m`` on each ``y_j``. For ``n = m`` an optimal coupling is a
    permutation (Birkhoff), found as a linear assignment; otherwise both clouds are
    repeated to ``L = lcm(n, m)`` points, which leaves the measures unchanged and makes
    the assignment exact again. The assignment runs on the CPU (scipy's
    ``linear_sum_assignment`` on a float64 ``(L, L)`` cost matrix, one batch entry at a
    time); the distances of the matched pairs are then computed on the input's device,
    so the result is differentiable in ``x`` and ``y`` (the matching is held fixed:
    by the envelope theorem that is the gradient wherever it is unique).

    Args:
        x: floating ``(..., n, d)``, ``n ≥ 1``.
        y: floating ``(..., m, d)``, ``m ≥ 1``, the same leading dims, ``d``, dtype
            and device.
        max_size: positive int, the largest ``lcm(n, m)`` allowed (the cost matrix
            has ``L²`` entries).

    Returns:
        ``(...)`` in the dtype of ``x`` (half precision is computed in float32);
        an empty batch gives an empty result.

    Raises:
        TypeError: not floating tensors, different dtypes, ``max_size`` not an int.
        ValueError: rank below 2, shapes that do not fit, ``n`` or ``m`` zero,
            ``lcm(n, m) > max_size``, different devices, non-finite points.
        ImportError: scipy is not installed.
    """
    x, y = _pair(x, y)
    max_size = _checks.positive_int(max_size, "max_size")
    n, m = x.shape[-2], y.shape[-2]
    if n == 0 or m == 0:
        raise ValueError(f"x and y need at least one point each, got n={n}, m={m}")
    size = math.lcm(n, m)
    if size > max_size:
        raise ValueError(
            f"lcm(n, m) = {size} exceeds max_size = {max_size}: use sizes with a "
            "smaller common multiple (or raise max_size)"
        )
    batch = x.shape[:-2]
    if batch.numel() == 0:
        return x.new_zeros(batch)
    work = _checks.compute_dtype(x.dtype)
    xs = x.to(work).repeat_interleave(size // n, dim=-2).reshape(-1, size, x.shape[-1])
    ys = y.to(work).repeat_interleave(size // m, dim=-2).reshape(-1, size, x.shape[-1])
    if not bool(torch.isfinite(xs).all() & torch.isfinite(ys).all()):
        raise ValueError("x and y must be finite")
    # The matching sees float64 costs (MPS has no float64: float32 there); the value
    # is then recomputed exactly from the matched pairs, in the compute dtype.
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    cost = torch.cdist(xs.detach().to(wide), ys.detach().to(wide))
    cols = torch.as_tensor(_matching(cost), device=x.device)
    matched = ys.gather(-2, cols.unsqueeze(-1).expand_as(ys))
    distance = _norm(xs - matched).mean(-1)
    return distance.reshape(batch).to(x.dtype)


def _norm(v: Tensor) -> Tensor:
    """``‖v‖`` over the last dim with gradient 0 (not NaN) at ``v = 0``."""
    squared = v.square().sum(-1)
    safe = torch.where(squared > 0, squared, torch.ones_like(squared))
    return torch.where(squared > 0, safe.sqrt(), torch.zeros_like(squared))


def c_transform(values: Tensor, cost: Tensor) -> Tensor:
    """The c-transform ``φᶜ(y_j) = min_i [c(x_i, y_j) − φ(x_i)]`` of ``φ`` on a batch.

    For any ``φ``, the pair ``(φ, φᶜ)`` is dual-feasible, ``φ(x_i) + φᶜ(y_j) ≤
    c(x_i, y_j)``, so ``mean φ(x) + mean φᶜ(y)`` never exceeds the optimal-transport
    cost between the two batches; the minimum is differentiable almost everywhere
    (its gradient flows to the minimising ``i``).

    Args:
        values: floating ``(..., n)``, ``φ`` at the points ``x_i``, ``n ≥ 1``.
        cost: floating ``(..., n, m)``, ``c(x_i, y_j)``, the same leading dims,
            dtype and device.

    Returns:
        ``(..., m)`` in the dtype of ``values`` (half precision is computed in
        float32); ``m = 0`` gives an empty result.

    Raises:
        TypeError: not floating tensors, different dtypes.
        ValueError: ``values`` of rank 0, ``cost`` of rank below 2, shapes that do not
            fit, ``n = 0`` (the minimum over no point), different devices.
    """
    values = _checks.tensor(values, "values", min_ndim=1)
    cost = _checks.tensor(cost, "cost", min_ndim=2)
    _checks.same_device(("values", values), cost=cost)
    _checks.same_dtype(("values", values), cost=cost)
    if cost.shape[:-1] != values.shape:
        raise ValueError(
            f"cost must have shape values.shape + (m,) = {tuple(values.shape)} + (m,), "
            f"got {tuple(cost.shape)}"
        )
    if values.shape[-1] == 0:
        raise ValueError("values needs at least one point (n = 0 has no minimum)")
    work = _checks.compute_dtype(values.dtype)
    gap = cost.to(work) - values.to(work).unsqueeze(-1)
    return gap.amin(dim=-2).to(values.dtype)


def _scores(critic: Callable[[Tensor], Tensor], x: Tensor, name: str) -> Tensor:
    """``critic(x)`` as ``(n,)``: the critic may return ``(n,)`` or ``(n, 1)``."""
    out = critic(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"critic must return a tensor, got {type(out).__name__}")
    if out.shape == (x.shape[0], 1):
        out = out.squeeze(-1)
    if out.shape != (x.shape[0],):
        raise ValueError(
            f"critic must map {name} of shape {tuple(x.shape)} to ({x.shape[0]},) or "
            f"({x.shape[0]}, 1), got {tuple(out.shape)}"
        )
    return out


def _critic_batches(critic: object, real: object, fake: object) -> tuple[Tensor, ...]:
    if not isinstance(critic, nn.Module) and not callable(critic):
        raise TypeError(f"critic must be callable, got {type(critic).__name__}")
    real = _checks.tensor(real, "real", min_ndim=2)
    fake = _checks.tensor(fake, "fake", min_ndim=2)
    _checks.same_device(("real", real), fake=fake)
    _checks.same_dtype(("real", real), fake=fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            "real and fake must hold samples of one shape, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    return real, fake


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    center: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The WGAN-GP penalty ``E (‖∇f(x̂)‖ − center)²`` at random interpolates.

    ``x̂ = ε x_real + (1 − ε) x_fake`` with one ``ε ~ U(0, 1)`` per pair (Gulrajani et
    al., arXiv 1704.00028); ``center = 1`` is WGAN-GP's two-sided penalty and
    ``center = 0`` the zero-centred one. The gradient is taken with
    ``create_graph=True``, so the penalty can be minimised over the critic's weights.

    Args:
        critic: maps ``(n, ...)`` to ``(n,)`` or ``(n, 1)``.
        real, fake: floating ``(n, ...)`` of one shape, dtype and device.
        center: a non-negative number, the target gradient norm.
        generator: a ``torch.Generator`` on ``real``'s device for ``ε``, or None.

    Returns:
        A scalar of the critic's output dtype; 0 (still attached to the graph) for
        ``n = 0``.

    Raises:
        TypeError: ``critic`` not callable or returning a non-tensor; not floating
            tensors, different dtypes; ``center`` not a number.
        ValueError: ``real`` and ``fake`` of different shapes or devices, rank below
            2, a negative ``center``, a critic output of the wrong shape.
    """
    real, fake = _critic_batches(critic, real, fake)
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have one shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    center = _checks.real(center, "center", nonnegative=True)
    generator = _checks.generator(generator)
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        scores = _scores(critic, mixed, "the interpolates")
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    if real.shape[0] == 0:
        return scores.sum()
    work = _checks.compute_dtype(grad.dtype)
    norm = _norm(grad.reshape(real.shape[0], -1).to(work))
    return (norm - center).square().mean().to(scores.dtype)


def wasserstein_critic_estimate(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    method: str = "difference",
) -> Tensor:
    """A critic's estimate of ``W₁(real, fake)`` from the Kantorovich dual.

    ``method="difference"``: ``mean f(real) − mean f(fake)``, the
    Kantorovich-Rubinstein value; it equals ``W₁`` only for the optimal 1-Lipschitz
    ``f`` and is not a bound otherwise. ``method="c-transform"``:
    ``mean f(real) + mean fᶜ(fake)`` with the Euclidean cost between the two batches
    (Mallasto et al.); for every ``f`` it is at most the exact ``W₁`` between the
    batches (:func:`exact_w1`), with equality for the optimal values of ``f`` on
    ``real``. Both are differentiable in the critic's weights and in ``fake``.

    Args:
        critic: maps ``(n, ...)`` to ``(n,)`` or ``(n, 1)``.
        real: floating ``(n, ...)``, ``n ≥ 1``; fake: floating ``(m, ...)``, the same
            sample shape, dtype and device (``m = n`` not required).
        method: ``"difference"`` or ``"c-transform"``.

    Returns:
        A scalar of the critic's output dtype.

    Raises:
        TypeError: ``critic`` not callable or returning a non-tensor; not floating
            tensors; different dtypes.
        ValueError: an unknown ``method``; rank below 2; sample shapes or devices
            that differ; an empty batch; a critic output of the wrong shape.
    """
    real, fake = _critic_batches(critic, real, fake)
    method = _checks.choice(method, "method", ("difference", "c-transform"))
    if real.shape[0] == 0 or fake.shape[0] == 0:
        raise ValueError(
            f"real and fake need at least one sample, got {real.shape[0]} and "
            f"{fake.shape[0]}"
        )
    on_real = _scores(critic, real, "real")
    if method == "difference":
        return on_real.mean() - _scores(critic, fake, "fake").mean()
    work = _checks.compute_dtype(real.dtype)
    flat_real = real.reshape(real.shape[0], -1).to(work)
    flat_fake = fake.reshape(fake.shape[0], -1).to(work)
    cost = _norm(flat_real.unsqueeze(1) - flat_fake.unsqueeze(0))
    transformed = c_transform(on_real.to(work), cost)
    return (on_real.to(work).mean() + transformed.mean()).to(on_real.dtype)


class MLPCritic(nn.Module):
    """A critic ``f: (..., in_dim) → (...)``, an MLP with SiLU (smooth, so that the
    gradient penalty's second derivatives exist everywhere).

    Args:
        in_dim: positive int, the sample size (2 for the plane, 784 for MNIST).
        hidden, layers: as in :func:`kexue.generative.mlp`.
    """

    def __init__(self, in_dim: int, *, hidden: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.in_dim = _checks.positive_int(in_dim, "in_dim")
        self.net = mlp(self.in_dim, 1, hidden=hidden, layers=layers)

    def forward(self, x: Tensor) -> Tensor:
        x = _checks.tensor(x, "x", min_ndim=1)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"x must end in {self.in_dim} features, got {x.shape}")
        return self.net(x).squeeze(-1)


class WassersteinGAN(nn.Module):
    """A generator and a critic trained by one optimiser, alternating under
    :func:`kexue.training.train` (``train(gan, lambda g: g.loss(batch()), steps)``).

    Each call of :meth:`loss` is one step. With ``critic_steps = k``, calls
    ``1..k`` are critic steps (maximise the estimate; the fake batch is detached, so the
    generator gets no gradient and Adam leaves it alone) and call ``k + 1`` is a
    generator step (minimise the estimate through a frozen copy of the critic's
    weights), and so on. ``method``:

    - ``"gradient-penalty"``: WGAN-GP; critic loss ``−(mean f(real) − mean f(fake))
      + penalty · gradient_penalty(center)``.
    - ``"c-transform"``: the critic maximises the c-transform estimate, which needs
      no Lipschitz penalty (Mallasto et al.); the generator minimises it.
    - ``"exact"``: no critic steps; the generator minimises :func:`exact_w1` between
      the batches (the limit of a perfect minibatch critic).

    Args:
        generator: maps noise ``(n, noise_dim)`` to samples ``(n, ...)``.
        critic: maps samples to ``(n,)`` or ``(n, 1)``; ignored (may be None) for
            ``"exact"``.
        noise_dim: positive int. method: one of the three above.
        critic_steps: positive int. penalty, center: non-negative numbers (the
            penalty's weight and target norm).

    Raises:
        TypeError: ``generator`` or ``critic`` not an ``nn.Module``; a size or number
            of the wrong type.
        ValueError: an unknown ``method``, a size below 1, a negative ``penalty`` or
            ``center``.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module | None,
        noise_dim: int,
        *,
        method: str = "gradient-penalty",
        critic_steps: int = 5,
        penalty: float = 10.0,
        center: float = 1.0,
    ) -> None:
        super().__init__()
        self.method = _checks.choice(method, "method", METHODS)
        if not isinstance(generator, nn.Module):
            raise TypeError(
                f"generator must be an nn.Module, got {type(generator).__name__}"
            )
        if method != "exact" and not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
        self.generator = generator
        self.critic = critic if method != "exact" else None
        self.noise_dim = _checks.positive_int(noise_dim, "noise_dim")
        self.critic_steps = _checks.positive_int(critic_steps, "critic_steps")
        self.penalty = _checks.real(penalty, "penalty", nonnegative=True)
        self.center = _checks.real(center, "center", nonnegative=True)
        self.calls = 0

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples from the generator (noise from ``generator`` or the global
        random state, on the device of the generator's first parameter)."""
        n = _checks.nonnegative_int(n, "n")
        generator = _checks.generator(generator)
        where = next(self.generator.parameters()).device
        noise = torch.randn(n, self.noise_dim, generator=generator, device=where)
        return self.generator(noise)

    def loss(self, real: Tensor) -> Tensor:
        """The loss of the next step on the batch ``real`` ``(n, ...)``, ``n ≥ 1``."""
        real = _checks.tensor(real, "real", min_ndim=2)
        self.calls += 1
        fake = self.sample(real.shape[0])
        if self.method == "exact":
            return exact_w1(real, fake)
        critic_turn = self.calls % (self.critic_steps + 1) != 0
        if critic_turn:
            return self._critic_loss(real, fake.detach())
        critic = self.critic
        assert critic is not None  # None only with method="exact"
        frozen = {k: v.detach() for k, v in critic.named_parameters()}
        frozen |= dict(critic.named_buffers())

        def fixed(x: Tensor) -> Tensor:
            return functional_call(critic, frozen, (x,))

        return self._estimate(fixed, real, fake)

    def _estimate(
        self, critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor
    ) -> Tensor:
        kind = "c-transform" if self.method == "c-transform" else "difference"
        return wasserstein_critic_estimate(critic, real, fake, method=kind)

    def _critic_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        assert self.critic is not None  # None only with method="exact"
        loss = -self._estimate(self.critic, real, fake)
        if self.method == "gradient-penalty" and self.penalty > 0:
            gp = gradient_penalty(self.critic, real, fake, center=self.center)
            loss = loss + self.penalty * gp
        return loss
