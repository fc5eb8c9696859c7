"""What the generative chapters share: small MLP encoders and decoders and two losses.

The chapters of this part train small autoencoders on MNIST-5k (``kexue.data.mnist_5k``,
flattened to 784 grey levels in [0, 1]) or on 2-D data, with the book's training helper
(``kexue.training.train``). Each chapter changes one thing (the latent distribution, a
flow, an entropy term) and keeps these pieces the same, so that differences between
chapters come from that one thing.
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks

__all__ = ["Decoder", "Encoder", "bernoulli_nll", "gaussian_kl", "mlp"]


def mlp(
    in_dim: int, out_dim: int, *, hidden: int = 256, layers: int = 2
) -> nn.Sequential:
    """``layers`` linear maps with SiLU between them: ``in_dim → hidden → … → out_dim``.

    Args:
        in_dim, out_dim: positive ints, the feature sizes of input and output.
        hidden: positive int, the width of every hidden layer.
        layers: positive int, the number of linear maps (1 gives one ``nn.Linear``).

    Returns:
        An ``nn.Sequential`` mapping ``(..., in_dim)`` to ``(..., out_dim)``; the last
        layer has no activation.

    Raises:
        TypeError: a size not an int.
        ValueError: a size below 1.
    """
    in_dim = _checks.positive_int(in_dim, "in_dim")
    out_dim = _checks.positive_int(out_dim, "out_dim")
    hidden = _checks.positive_int(hidden, "hidden")
    layers = _checks.positive_int(layers, "layers")
    sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        modules.append(nn.Linear(a, b))
        if i < layers - 1:
            modules.append(nn.SiLU())
    return nn.Sequential(*modules)


class Encoder(nn.Module):
    """An MLP from data to ``heads`` latent tensors (e.g. a mean and a log-variance).

    Args:
        in_dim: the data size (784 for flattened MNIST).
        latent_dim: the size of each head's output.
        heads: how many tensors ``forward`` returns (1 for a deterministic code).
        hidden, layers: as in :func:`mlp` (``layers`` counts the trunk's linear maps
            plus the heads).

    ``forward(x)`` takes ``(..., in_dim)`` and returns a tuple of ``heads`` tensors of
    shape ``(..., latent_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int,
        *,
        heads: int = 2,
        hidden: int = 256,
        layers: int = 2,
    ) -> None:
        super().__init__()
        self.latent_dim = _checks.positive_int(latent_dim, "latent_dim")
        self.heads = _checks.positive_int(heads, "heads")
        # One MLP whose output is split: the heads share every hidden layer.
        width = self.heads * self.latent_dim
        self.net = mlp(in_dim, width, hidden=hidden, layers=layers)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = _checks.tensor(x, "x", min_ndim=1)
        if x.shape[-1] != (n := self.net[0].in_features):
            raise ValueError(f"x must end in {n} features, got {tuple(x.shape)}")
        return tuple(self.net(x).split(self.latent_dim, dim=-1))


class Decoder(nn.Module):
    """An MLP from a latent code ``(..., latent_dim)`` to ``(..., out_dim)`` logits (or
    means: the caller picks the likelihood). Arguments as in :func:`mlp`."""

    def __init__(
        self, latent_dim: int, out_dim: int, *, hidden: int = 256, layers: int = 2
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, out_dim, hidden=hidden, layers=layers)

    def forward(self, z: Tensor) -> Tensor:
        z = _checks.tensor(z, "z", min_ndim=1)
        if z.shape[-1] != (n := self.net[0].in_features):
            raise ValueError(f"z must end in {n} features, got {tuple(z.shape)}")
        return self.net(z)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-log p(x | logits)`` in nats per example, summed over the last dimension.

    Grey levels in [0, 1] are allowed (the continuous relaxation that MNIST VAEs use);
    computed from logits with ``binary_cross_entropy_with_logits``, so extreme logits
    stay finite. Half precision is computed in float32.

    Args:
        logits: floating ``(..., d)``. x: floating ``(..., d)`` in [0, 1], same shape.

    Returns:
        ``(...)`` in the dtype of ``logits``.

    Raises:
        TypeError: not floating tensors.
        ValueError: shapes differ, rank 0, ``x`` outside [0, 1] or not finite,
            different devices.
    """
    logits = _checks.tensor(logits, "logits", min_ndim=1)
    x = _checks.tensor(x, "x", min_ndim=1)
    _checks.same_device(("logits", logits), x=x)
    if x.shape != logits.shape:
        raise ValueError(
            f"x and logits must have one shape, got {tuple(x.shape)} and "
            f"{tuple(logits.shape)}"
        )
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("x must lie in [0, 1] (and be finite)")
    work = _checks.compute_dtype(logits.dtype)
    nll = F.binary_cross_entropy_with_logits(
        logits.to(work), x.to(work), reduction="none"
    )
    return nll.sum(-1).to(logits.dtype)


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """``KL(N(mean, diag(exp log_var)) ‖ N(0, I))`` in nats per example.

    ``½ Σ (mean² + exp(log_var) − 1 − log_var)`` over the last dimension; zero exactly
    at ``mean = 0, log_var = 0``. Half precision is computed in float32.

    Args:
        mean, log_var: floating ``(..., k)`` of one shape.

    Returns:
        ``(...)`` in the dtype of ``mean``.

    Raises:
        TypeError: not floating tensors.
        ValueError: shapes differ, rank 0, different devices.
    """
    mean = _checks.tensor(mean, "mean", min_ndim=1)
    log_var = _checks.tensor(log_var, "log_var", min_ndim=1)
    _checks.same_device(("mean", mean), log_var=log_var)
    if mean.shape != log_var.shape:
        raise ValueError(
            f"mean and log_var must have one shape, got {tuple(mean.shape)} and "
            f"{tuple(log_var.shape)}"
        )
    work = _checks.compute_dtype(mean.dtype)
    m, lv = mean.to(work), log_var.to(work)
    kl = 0.5 * (m.square() + lv.exp() - 1 - lv).sum(-1)
    return kl.to(mean.dtype)
