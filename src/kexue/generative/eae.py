"""The entropic autoencoder: batch norm plus a k-nearest-neighbour entropy term.

A deterministic autoencoder becomes a generative model once its code follows a law that
is easy to sample. The entropic autoencoder (EAE) standardises the code with a batch
norm that has no trainable scale or shift, so each batch has mean 0 and variance 1, and
maximises the code's differential entropy, estimated from nearest-neighbour distances
(Kozachenko and Leonenko). Under the two moment constraints the entropy is largest for
the standard normal, so decoding ``N(0, I)`` samples generates data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.generative.common import Decoder, Encoder

__all__ = [
    "EntropicAutoencoder",
    "eae_loss",
    "knn_entropy",
    "log_unit_ball_volume",
]


def log_unit_ball_volume(dim: int) -> float:
    """``log B_d``, the log-volume of the unit ball of ``R^d``, ``π^{d/2}/Γ(d/2 + 1)``.

    Computed as ``(d/2) log π − lgamma(d/2 + 1)`` in float64, so it stays finite for any
    ``d`` (the volume itself underflows past ``d ≈ 1100``).

    Args:
        dim: positive int, the dimension ``d``.

    Returns:
        A Python float (``log 2`` for ``d = 1``, ``log π`` for ``d = 2``).

    Raises:
        TypeError: ``dim`` is not an int.
        ValueError: ``dim < 1``.
    """
    dim = _checks.positive_int(dim, "dim")
    return 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1)


def _digamma_gap(n: int, k: int) -> float:
    """``ψ(n) − ψ(k) = Σ_{m=k}^{n−1} 1/m`` in float64, on the CPU (no device sync)."""
    both = torch.special.digamma(torch.tensor([n, k], dtype=torch.float64))
    return float(both[0] - both[1])


@torch.no_grad()
def _neighbour_index(x: Tensor, k: int, chunk: int) -> Tensor:
    """Indices ``(B, n)`` of the ``k``-th nearest other point in ``x (B, n, d)``.

    Distances are computed block by block (``chunk`` query rows against all ``n``
    points), so memory is ``O(B · chunk · n)``. The direct difference formula (not the
    ``|a|² + |b|² − 2ab`` expansion, which cancels for close points) keeps near
    neighbours in the right order; a point is excluded by its index, not by a zero
    distance, so duplicates count as neighbours.
    """
    n = x.shape[1]
    blocks = []
    for start in range(0, n, chunk):
        rows = x[:, start : start + chunk]
        dist = torch.cdist(rows, x, compute_mode="donot_use_mm_for_euclid_dist")
        local = torch.arange(rows.shape[1], device=x.device)
        dist[:, local, local + start] = math.inf  # in place: O(chunk), not O(chunk · n)
        if k == 1:
            blocks.append(dist.argmin(-1))
        else:
            blocks.append(dist.topk(k, dim=-1, largest=False).indices[..., -1])
    return torch.cat(blocks, dim=1)


def knn_entropy(x: Tensor, k: int = 1, *, chunk: int = 4096) -> Tensor:
    """The Kozachenko–Leonenko estimate of the differential entropy of ``x``, in nats.

    ``H ≈ (d/n) Σ_i log ε_k(i) + log B_d + ψ(n) − ψ(k)``, where ``ε_k(i)`` is the
    Euclidean distance from point ``i`` to its ``k``-th nearest other point, ``B_d`` the
    volume of the unit ball in ``R^d`` and ``ψ`` the digamma function.

    The neighbours are found without gradient in blocks of ``chunk`` rows on the
    device of ``x``; the chosen distances are then recomputed from the points, so the
    estimate is differentiable in ``x`` (almost everywhere: the neighbour choice is
    piecewise constant). Coincident points (``ε = 0``) give ``−inf``, with zero
    gradient at those points. Half precision is computed in float32.

    Args:
        x: floating ``(..., n, d)``: ``n`` samples of ``R^d`` per leading index.
        k: positive int, the neighbour rank; needs ``n > k``.
        chunk: positive int, query rows per block of distances.

    Returns:
        ``(...)``, one estimate per leading index, in the dtype of ``x`` (empty for an
        empty batch).

    Raises:
        TypeError: ``x`` not a floating tensor; ``k`` or ``chunk`` not an int.
        ValueError: ``x`` of rank below 2, ``d = 0``, ``n ≤ k``; ``k`` or ``chunk``
            below 1.
    """
    x = _checks.tensor(x, "x", min_ndim=2)
    k = _checks.positive_int(k, "k")
    chunk = _checks.positive_int(chunk, "chunk")
    *lead, n, d = x.shape
    if d < 1:
        raise ValueError(
            f"x must have at least one feature, got shape {tuple(x.shape)}"
        )
    if n <= k:
        raise ValueError(
            f"x must have more than k = {k} samples (dimension -2), "
            f"got shape {tuple(x.shape)}"
        )
    if math.prod(lead) == 0:
        return x.new_zeros(lead)
    work = x.to(_checks.compute_dtype(x.dtype)).reshape(-1, n, d)
    index = _neighbour_index(work, k, chunk)
    neighbour = work.gather(1, index[..., None].expand(-1, -1, d))
    square = (work - neighbour).square().sum(-1)
    apart = square > 0
    # The double where keeps the gradient of a coincident pair at 0, not 0 · inf.
    log_eps = 0.5 * torch.where(apart, square, 1.0).log()
    log_eps = log_eps.masked_fill(~apart, -math.inf)
    constant = log_unit_ball_volume(d) + _digamma_gap(n, k)
    estimate = d * log_eps.mean(-1) + constant
    return estimate.reshape(lead).to(x.dtype)


class EntropicAutoencoder(nn.Module):
    """An autoencoder whose code is batch-normalised without scale or shift.

    ``code = BN(E(x))`` with ``nn.BatchNorm1d(latent_dim, affine=False)``: in training
    mode every batch of codes has mean 0 and (biased) variance 1 in each dimension; in
    eval mode the running averages are used. ``reconstruction = D(code)``, passed
    through a sigmoid when ``bounded`` (data in [0, 1], such as MNIST grey levels).

    Args:
        in_dim: the data size (784 for flattened MNIST).
        latent_dim: the code size ``d``.
        hidden, layers: the encoder's and decoder's MLP sizes
            (:class:`kexue.generative.Encoder`, :class:`kexue.generative.Decoder`).
        bounded: squash the reconstruction into (0, 1).
        momentum: the batch norm's running-average momentum, in (0, 1].

    ``forward(x)`` takes ``(..., in_dim)`` and returns ``(reconstruction, code)`` of
    shapes ``(..., in_dim)`` and ``(..., latent_dim)``. In training mode it needs at
    least two rows (the batch variance of one row is undefined); an empty batch gives
    empty outputs and leaves the running averages alone.

    Raises (``forward``, ``encode``, ``decode``, ``sample``):
        TypeError: a non-floating input, a size not an int, a generator of the wrong
        type. ValueError: a wrong last dimension, one row in training mode, a size
        below 1.
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        bounded: bool = False,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.bounded = _checks.flag(bounded, "bounded")
        momentum = _checks.real(momentum, "momentum", positive=True)
        if momentum > 1:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.encoder = Encoder(
            in_dim, latent_dim, heads=1, hidden=hidden, layers=layers
        )
        self.norm = nn.BatchNorm1d(latent_dim, affine=False, momentum=momentum)
        self.decoder = Decoder(latent_dim, in_dim, hidden=hidden, layers=layers)
        self.latent_dim = self.encoder.latent_dim

    def encode(self, x: Tensor) -> Tensor:
        """``BN(E(x))``: ``(..., in_dim)`` to codes ``(..., latent_dim)``."""
        (h,) = self.encoder(x)
        rows = h.reshape(-1, self.latent_dim)
        if rows.shape[0] == 0:
            return h  # nothing to normalise; the running averages stay as they are
        if self.training and rows.shape[0] < 2:
            raise ValueError(
                "x must hold at least 2 rows in training mode (batch norm needs a "
                f"batch variance), got shape {tuple(x.shape)}"
            )
        return self.norm(rows).reshape(h.shape)

    def decode(self, code: Tensor) -> Tensor:
        """``D(code)``: ``(..., latent_dim)`` to ``(..., in_dim)`` (sigmoid if
        ``bounded``)."""
        code = _checks.tensor(code, "code", min_ndim=1)
        if code.shape[-1] != self.latent_dim:
            raise ValueError(
                f"code must end in latent_dim = {self.latent_dim} features, "
                f"got shape {tuple(code.shape)}"
            )
        out = self.decoder(code)
        return torch.sigmoid(out) if self.bounded else out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encode(x)
        return self.decode(code), code

    @torch.no_grad()
    def sample(self, count: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``count`` draws of ``N(0, I)``: ``(count, in_dim)`` on the model's
        device, in its parameters' dtype. ``generator`` must live on that device."""
        count = _checks.nonnegative_int(count, "count")
        generator = _checks.generator(generator)
        weight = next(self.decoder.parameters())  # the first layer's weight
        if generator is not None and generator.device.type != weight.device.type:
            raise ValueError(
                f"generator is on {generator.device} but the model is on "
                f"{weight.device}: use a generator of the model's device"
            )
        z = torch.randn(
            count,
            self.latent_dim,
            generator=generator,
            device=weight.device,
            dtype=weight.dtype,
        )
        return self.decode(z)


def eae_loss(
    x: Tensor, reconstruction: Tensor, code: Tensor, *, weight: float, k: int = 1
) -> Tensor:
    """The EAE loss ``mean_i ‖x_i − x̂_i‖² − weight · Ĥ(code)`` of one batch.

    The squared error is summed over every dimension but the first (the batch) and
    averaged over the batch; ``Ĥ`` is :func:`knn_entropy` of the batch of codes.

    Args:
        x: floating ``(n, ...)``, the data. reconstruction: the same shape and dtype.
        code: floating ``(n, d)``, the codes of the same ``n`` examples.
        weight: non-negative number ``λ``, the entropy weight.
        k: the neighbour rank of the entropy estimate (needs ``n > k``).

    Returns:
        A scalar in the dtype of ``x`` (float32 inside for half precision).

    Raises:
        TypeError: non-floating tensors, mixed dtypes of ``x`` and ``reconstruction``,
            ``weight`` not a number, ``k`` not an int.
        ValueError: shapes that differ, ``code`` not of rank 2 or with another batch
            size, ``n = 0``, ``n ≤ k`` with a positive ``weight``, a negative or
            non-finite ``weight``, different devices.
    """
    x = _checks.tensor(x, "x", min_ndim=1)
    reconstruction = _checks.tensor(reconstruction, "reconstruction", min_ndim=1)
    code = _checks.tensor(code, "code", ndim=2)
    weight = _checks.real(weight, "weight", nonnegative=True)
    k = _checks.positive_int(k, "k")
    _checks.same_device(("x", x), reconstruction=reconstruction, code=code)
    _checks.same_dtype(("x", x), reconstruction=reconstruction)
    if reconstruction.shape != x.shape:
        raise ValueError(
            f"reconstruction must have the shape of x {tuple(x.shape)}, "
            f"got {tuple(reconstruction.shape)}"
        )
    if code.shape[0] != x.shape[0]:
        raise ValueError(
            f"code must hold one row per example of x ({x.shape[0]}), "
            f"got shape {tuple(code.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(
            "x must hold at least one example: the loss of none is undefined"
        )
    if weight > 0 and code.shape[0] <= k:
        raise ValueError(
            f"code must have more than k = {k} rows for the entropy term, "
            f"got shape {tuple(code.shape)}"
        )
    work = _checks.compute_dtype(x.dtype)
    error = F.mse_loss(reconstruction.to(work), x.to(work), reduction="sum")
    loss = error / x.shape[0]
    if weight > 0:  # with weight 0 the estimate (and its neighbour search) is skipped
        loss = loss - weight * knn_entropy(code, k).to(work)
    return loss.to(x.dtype)
