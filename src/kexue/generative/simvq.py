"""Vector quantisation with a learned linear map on the codebook (SimVQ).

A vector quantiser replaces each input vector ``z`` by its nearest code ``e_k`` of a
codebook ``E`` (``K × d``). SimVQ writes the codebook as ``E = Q W`` with ``Q`` frozen
at its random start and only ``W`` (``d × d``) trained: the set of reachable codebooks
is the same, but a gradient step on ``W`` moves every code, selected or not. The module
also offers the diagonal ``W`` variant and the rotation trick, a replacement of the
straight-through estimator that rotates the gradient by the angle between ``z`` and
its code.

Conventions: vectors are rows, a code is ``e_k = q_k W``; the loss is
``mean ‖q − sg(z)‖² + β · mean ‖z − sg(q)‖²`` (means over every element), the form of
the official SimVQ code with ``β = 0.25``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.attention.entropy_scale import attention_entropy

__all__ = [
    "VectorQuantizer",
    "codebook_usage",
    "nearest_code",
    "rotation_trick",
]

TRANSFORMS = ("none", "diagonal", "linear")
ESTIMATORS = ("straight_through", "rotation")
INITS = ("default", "identity")


# Codes re-ranked by exact distances in a row whose best code by the matrix-product
# expansion is not certain: its few best, enough unless more sit within the rounding.
CANDIDATES = 4


@torch.no_grad()
def nearest_code(z: Tensor, codebook: Tensor, *, chunk: int = 4096) -> Tensor:
    """The index of the nearest code (Euclidean distance) for every vector of ``z``.

    Exact: the index minimises ``‖z − e_k‖²`` computed in float64 (float32 on MPS) by
    direct differences, ties to the lowest index. Fast: ``chunk`` rows at a time, the
    expansion ``‖e‖² − 2 z·e`` (one matrix product, after centring on the mean code)
    ranks the codes, and a rounding bound of the expansion certifies its ranking.
    A row whose best code leads the next by more than twice the bound takes it; a
    row whose ``CANDIDATES`` best lead the next by that much re-ranks them by exact
    distances; any other row (several codes within the rounding, as where ``z``
    sits far from the codes' mean, overflow, NaN) is searched over every code by
    direct differences. One host read per call finds the rows that need more than
    the expansion (a second, only when some do, those that need every code).
    Memory is ``O(chunk · K)``. Half precision is computed in float32. No gradient
    flows (an index has none).

    Args:
        z: floating ``(..., d)``. codebook: floating ``(K, d)``, ``K ≥ 1``, of the
            dtype and device of ``z``.
        chunk: positive int, rows of ``z`` per block of distances.

    Returns:
        int64 ``(...)``, values in ``[0, K)`` (empty for an empty ``z``; ``meta``
        inputs give a ``meta`` result of that shape).

    Raises:
        TypeError: not floating tensors, different dtypes, ``chunk`` not an int.
        ValueError: ``z`` of rank 0, ``codebook`` not of rank 2 or with no code, last
            dimensions that differ, different devices, ``chunk < 1``.
    """
    z = _checks.tensor(z, "z", min_ndim=1)
    codebook = _checks.tensor(codebook, "codebook", ndim=2)
    chunk = _checks.positive_int(chunk, "chunk")
    _checks.same_device(("z", z), codebook=codebook)
    _checks.same_dtype(("z", z), codebook=codebook)
    if codebook.shape[0] == 0:
        raise ValueError("codebook must hold at least one code, got shape (0, d)")
    if codebook.shape[1] != z.shape[-1]:
        raise ValueError(
            f"codebook must have the last dimension of z ({z.shape[-1]}), "
            f"got shape {tuple(codebook.shape)}"
        )
    lead = z.shape[:-1]
    if z.device.type == "meta" or math.prod(lead) == 0:
        return torch.empty(lead, dtype=torch.long, device=z.device)
    exact = torch.float32 if z.device.type == "mps" else torch.float64
    rows, codes = z.reshape(-1, z.shape[-1]), codebook.to(exact)
    block = max(1, chunk // codebook.shape[1])  # rows whose differences fill a chunk
    if codebook.shape[0] <= CANDIDATES:
        return _search_all(rows, codes, block).reshape(lead)
    search = _Expansion(codebook)
    parts = [
        search(rows[start : start + chunk]) for start in range(0, len(rows), chunk)
    ]
    best, single = (torch.cat(part) for part in zip(*parts, strict=True))
    unsure = (~single).nonzero().squeeze(-1)  # the one host read
    if len(unsure):
        best[unsure] = _resolve(rows[unsure], codes, search, chunk, block)
    return best.reshape(lead)


def _resolve(
    rows: Tensor, codes: Tensor, search: _Expansion, chunk: int, block: int
) -> Tensor:
    """The nearest code of rows whose best code by the expansion is uncertain: the
    exact best of its ``CANDIDATES`` best where the next is certainly farther, else
    the best of every code."""
    parts = [
        search.candidates(rows[start : start + chunk])
        for start in range(0, len(rows), chunk)
    ]
    candidates, sure = (torch.cat(part) for part in zip(*parts, strict=True))
    best = _rerank(rows, codes, candidates)
    far = (~sure).nonzero().squeeze(-1)
    if len(far):
        best[far] = _search_all(rows[far], codes, block)
    return best


def _rerank(rows: Tensor, codes: Tensor, candidates: Tensor) -> Tensor:
    """The candidate ``(n, m)`` of least ``‖x − e‖²`` by direct differences in the
    dtype of ``codes`` (ties: lowest index)."""
    candidates = candidates.sort(-1).values
    exact = (rows[:, None].to(codes.dtype) - codes[candidates]).square().sum(-1)
    return candidates.gather(-1, exact.argmin(-1, keepdim=True)).squeeze(-1)


def _search_all(rows: Tensor, codes: Tensor, block: int) -> Tensor:
    """Argmin over every code of ``‖x − e‖²`` by direct differences in the dtype of
    ``codes``, ``block`` rows at a time (ties: first index)."""
    found = [
        (rows[start : start + block, None].to(codes.dtype) - codes)
        .square()
        .sum(-1)
        .argmin(-1)
        for start in range(0, len(rows), block)
    ]
    return torch.cat(found) if found else rows.new_empty(0, dtype=torch.long)


def _roundoff(work: torch.dtype) -> float:
    """Twice the unit roundoff of ``work``, or of the reduced precision (TF32,
    bfloat16) that torch's float32 matrix products may use on request."""
    eps = torch.finfo(work).eps
    if work == torch.float32:
        reduced = {"high": 2.0**-10, "medium": 2.0**-7}
        eps = max(eps, reduced.get(torch.get_float32_matmul_precision(), eps))
    return eps


# Codes per lane of the search for the least two entries of a row: a multiple of the
# SIMD width, so that the first minimum runs across lanes, vectorised.
LANES = 32


def _least_two(approx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each row of ``approx`` ``(n, K)``, ``K`` a multiple of ``LANES``: an index
    of its least entry, that entry, and the least of the others (a row's argmin on
    a CPU is scalar code; ``amin`` over lanes is not)."""
    n = approx.shape[0]
    lanes = approx.view(n, -1, LANES)  # entry g·LANES + w sits in lane w
    lane_min = lanes.amin(1)
    lane = lane_min.argmin(-1, keepdim=True)
    along = lanes.gather(2, lane[:, None].expand(n, lanes.shape[1], 1)).squeeze(2)
    step = along.argmin(-1, keepdim=True)
    others = torch.minimum(
        lane_min.scatter(-1, lane, math.inf).amin(-1),
        along.scatter(-1, step, math.inf).amin(-1),
    )
    first = lane_min.gather(-1, lane).squeeze(-1)
    return (step * LANES + lane).squeeze(-1), first, others


class _Expansion:
    """The codes ranked by ``‖e − c‖² − 2 (z − c)·(e − c)`` (``c`` the mean code, so
    that a common offset cancels before the product), and how far the ranking is
    certain.

    The error of the expansion of ``‖z − e‖²`` minus the row's constant ``‖z − c‖²``,
    centring included, is at most ``(d + 4) u S²`` with ``S = ‖z − c‖ + max ‖e − c‖``
    (``d u`` from the dot product, ``4 u`` from the centring and the sums; Higham,
    Accuracy and Stability of Numerical Algorithms, §3.1); ``d + 8`` times twice
    ``u`` leaves a margin. A code ranked below another by more than two such errors
    is truly farther.
    """

    def __init__(self, codebook: Tensor) -> None:
        work = _checks.compute_dtype(codebook.dtype)
        codes = codebook.to(work)
        self.work, self.centre = work, codes.mean(0)
        self.centred = codes - self.centre
        self.square = self.centred.square().sum(-1)
        self.radius = self.square.max().sqrt()
        self.bound = 2 * (codes.shape[1] + 8) * _roundoff(work)
        pad = -codes.shape[0] % LANES  # codes at infinity fill the last lane group
        self.padded = nn.functional.pad(self.centred, (0, 0, 0, pad))
        self.padded_square = nn.functional.pad(self.square, (0, pad), value=math.inf)

    def _approx(
        self, z: Tensor, codes: Tensor, square: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The expansion ``(n, K)`` for the rows ``z``, and twice its error bound."""
        x = z.to(self.work) - self.centre
        approx = torch.addmm(square, x, codes.T, alpha=-2)
        return approx, self.bound * (x.norm(dim=-1) + self.radius).square()

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """For the rows ``z``: the best code by the expansion, and whether it is
        certainly the nearest (every other code ranked behind by more than the
        margin; not so where a padding code, NaN, came first)."""
        approx, margin = self._approx(z, self.padded, self.padded_square)
        best, first, others = _least_two(approx)
        return best, others - first > margin

    def candidates(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """For the rows ``z``: their ``CANDIDATES`` best codes by the expansion, and
        whether the nearest code is certainly among them."""
        approx, margin = self._approx(z, self.centred, self.square)
        gap, candidates = approx.topk(CANDIDATES + 1, largest=False)
        return candidates[:, :CANDIDATES], gap[:, -1] - gap[:, 0] > margin


def _unit(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x / ‖x‖`` (0 where ``‖x‖ = 0``) and ``‖x‖ (..., 1)``."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / torch.where(norm > 0, norm, 1.0), norm


def rotation_trick(z: Tensor, z_q: Tensor) -> Tensor:
    """``z_q`` in the forward pass; in the backward pass ``∂L/∂z = Gᵀ ∂L/∂out``.

    ``G = (‖z_q‖/‖z‖) R`` with ``R = I + 2 q̂ ẑᵀ − 2 w wᵀ``, ``w = (ẑ + q̂)/‖ẑ + q̂‖``,
    the rotation in the plane of ``z`` and ``z_q`` that takes ``ẑ = z/‖z‖`` to
    ``q̂ = z_q/‖z_q‖`` (Fifty et al., arXiv 2410.06424). ``G`` carries no gradient
    and none flows to ``z_q`` through this path (the codebook learns from the loss).
    ``R z`` is applied as two dot products, never as a ``d × d`` matrix. Limits: where
    ``z_q = −z`` direction-wise, ``w = 0`` and ``R`` is the reflection
    ``I − 2 ẑ ẑᵀ``; where ``z_q = 0`` the output and the gradient are 0; where
    ``z = 0`` (no direction to rotate) the straight-through estimator is used. Half
    precision is computed in float32.

    Args:
        z: floating ``(..., d)``, the encoder output. z_q: its quantised value, same
            shape, dtype and device.

    Returns:
        ``(..., d)`` in the dtype of ``z``, equal to ``z_q`` up to rounding.

    Raises:
        TypeError: not floating tensors, different dtypes.
        ValueError: rank 0, shapes that differ, different devices.
    """
    z = _checks.tensor(z, "z", min_ndim=1)
    z_q = _checks.tensor(z_q, "z_q", min_ndim=1)
    _checks.same_device(("z", z), z_q=z_q)
    _checks.same_dtype(("z", z), z_q=z_q)
    if z_q.shape != z.shape:
        raise ValueError(
            f"z_q must have the shape of z {tuple(z.shape)}, got {tuple(z_q.shape)}"
        )
    work = _checks.compute_dtype(z.dtype)
    x, q = z.to(work), z_q.detach().to(work)
    with torch.no_grad():
        z_hat, z_norm = _unit(x)
        q_hat, q_norm = _unit(q)
        w, _ = _unit(z_hat + q_hat)  # 0 for opposite directions: a reflection
        scale = q_norm / torch.where(z_norm > 0, z_norm, 1.0)
    rotated = x - 2 * (x * w).sum(-1, keepdim=True) * w
    rotated = rotated + 2 * (x * z_hat).sum(-1, keepdim=True) * q_hat
    straight = x + (q - x).detach()
    out = torch.where(z_norm > 0, scale * rotated, straight)
    return out.to(z.dtype)


def codebook_usage(indices: Tensor, num_codes: int) -> tuple[float, float]:
    """How much of a codebook a batch of indices uses.

    Args:
        indices: integer tensor of any shape, values in ``[0, num_codes)``, at least
            one element.
        num_codes: positive int ``K``.

    Returns:
        ``(fraction, perplexity)`` as Python floats: the fraction of the ``K`` codes
        chosen at least once, and ``exp`` of the entropy (nats) of the empirical code
        frequencies, between 1 (one code) and ``min(K, n)`` (all equally often).

    Raises:
        TypeError: ``indices`` not an integer tensor, ``num_codes`` not an int.
        ValueError: no indices, an index outside ``[0, num_codes)``, ``num_codes < 1``.
    """
    indices = _checks.tensor(indices, "indices", kind="integer")
    num_codes = _checks.positive_int(num_codes, "num_codes")
    if indices.numel() == 0:
        raise ValueError("indices must hold at least one index, got an empty tensor")
    flat = indices.reshape(-1)
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= num_codes:
        raise ValueError(
            f"indices must lie in [0, num_codes = {num_codes}), got values in "
            f"[{low}, {high}]"
        )
    counts = torch.bincount(flat, minlength=num_codes).to(torch.float64)
    entropy = attention_entropy(counts / counts.sum())  # nats, 0 log 0 = 0
    return float((counts > 0).double().mean()), float(entropy.exp())


class VectorQuantizer(nn.Module):
    """A vector quantiser with an optional learned map on the codebook.

    The codebook is ``E = Q`` (``transform="none"``), ``Q diag(s)`` (``"diagonal"``,
    ``s`` starts at ones, as in the article) or ``Q W`` (``"linear"``). ``Q``
    (``num_codes × dim``) is drawn from ``N(0, 1/dim)`` with torch's global generator,
    then ``W``: with ``init="default"`` from ``nn.Linear``'s default initialisation,
    ``U(−1/√dim, 1/√dim)`` entrywise, as the official SimVQ code and
    ``vector-quantize-pytorch`` do (the official code also adds a bias, omitted here);
    with ``init="identity"``, ``W = I``, so that the linear variant starts from the
    codebook of a plain quantiser drawn from the same generator state.
    ``freeze_codes=None`` freezes ``Q`` exactly when a transform is learned (the SimVQ
    default); a frozen ``Q`` without a transform could never learn and is an error.
    Frozen codes are a buffer.

    ``forward(z)`` with ``z`` floating ``(..., dim)`` of the module's dtype returns
    ``(quantized, indices, loss)``: ``quantized`` ``(..., dim)`` equals the nearest
    code in value and passes the gradient to ``z`` by the straight-through estimator
    (``z + sg(e − z)``) or the rotation trick; ``indices`` int64 ``(...)``; ``loss``
    the scalar ``mean ‖e − sg(z)‖² + beta · mean ‖z − sg(e)‖²`` (the codebook term
    trains ``Q`` or the map, the commitment term the encoder), computed in float32
    for half precision. An empty ``z`` gives empty outputs and a zero loss with zero
    gradient.

    Args:
        num_codes: positive int ``K``. dim: positive int ``d``.
        transform: ``"none"``, ``"diagonal"`` or ``"linear"``.
        freeze_codes: bool or None (see above).
        estimator: ``"straight_through"`` or ``"rotation"``.
        beta: non-negative number, the commitment weight.
        init: ``"default"`` or ``"identity"``, the start of ``W`` (only used by
            ``transform="linear"``).

    Raises:
        TypeError: a size not an int, ``freeze_codes`` not a bool or None, ``beta`` not
            a number; in ``forward``, ``z`` not floating or of another dtype.
        ValueError: a size below 1, an unknown ``transform``, ``estimator`` or ``init``,
            ``freeze_codes=True`` with ``transform="none"``, a negative ``beta``; in
            ``forward``, ``z`` of rank 0, a last dimension other than ``dim``, ``z`` on
            another device.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        transform: str = "none",
        freeze_codes: bool | None = None,
        estimator: str = "straight_through",
        beta: float = 0.25,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.num_codes = _checks.positive_int(num_codes, "num_codes")
        self.dim = _checks.positive_int(dim, "dim")
        self.transform = _checks.choice(transform, "transform", TRANSFORMS)
        self.estimator = _checks.choice(estimator, "estimator", ESTIMATORS)
        self.beta = _checks.real(beta, "beta", nonnegative=True)
        self.init = _checks.choice(init, "init", INITS)
        if freeze_codes is None:
            freeze_codes = transform != "none"
        self.freeze_codes = _checks.flag(freeze_codes, "freeze_codes")
        if self.freeze_codes and transform == "none":
            raise ValueError(
                "freeze_codes=True with transform='none' leaves nothing to learn: "
                "freeze the codes only with a 'diagonal' or 'linear' transform"
            )
        codes = torch.randn(num_codes, dim) / math.sqrt(dim)
        if self.freeze_codes:
            self.register_buffer("codes", codes)
        else:
            self.codes = nn.Parameter(codes)
        if transform == "diagonal":
            self.scale = nn.Parameter(torch.ones(dim))
        elif transform == "linear":
            if self.init == "identity":
                weight = torch.eye(dim)
            else:  # nn.Linear's kaiming_uniform_(a=√5): bound 1/√fan_in
                bound = 1 / math.sqrt(dim)
                weight = torch.empty(dim, dim).uniform_(-bound, bound)
            self.weight = nn.Parameter(weight)

    @property
    def codebook(self) -> Tensor:
        """The effective codebook ``E`` ``(num_codes, dim)``, differentiable."""
        if self.transform == "diagonal":
            return self.codes * self.scale
        if self.transform == "linear":
            return self.codes @ self.weight
        return self.codes

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = _checks.tensor(z, "z", min_ndim=1)
        codebook = self.codebook
        _checks.same_device(("codebook", codebook), z=z)
        _checks.same_dtype(("codebook", codebook), z=z)
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"z must end in dim = {self.dim} features, got {tuple(z.shape)}"
            )
        indices = nearest_code(z.detach(), codebook.detach())
        chosen = codebook[indices]
        if z.numel() == 0:  # a zero loss that still belongs to the graph
            loss = (codebook.sum() + z.sum()) * 0
            return z + (chosen - z).detach(), indices, loss
        work = _checks.compute_dtype(z.dtype)
        x, e = z.to(work), chosen.to(work)
        loss = (e - x.detach()).square().mean()
        loss = loss + self.beta * (x - e.detach()).square().mean()
        if self.estimator == "rotation":
            quantized = rotation_trick(z, chosen)
        else:
            quantized = z + (chosen - z).detach()
        return quantized, indices, loss.to(z.dtype)

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, "
            f"transform={self.transform!r}, "
            f"freeze_codes={self.freeze_codes}, estimator={self.estimator!r}, "
            f"beta={self.beta}, init={self.init!r}"
        )
