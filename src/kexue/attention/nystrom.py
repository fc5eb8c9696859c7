"""Nyströmformer: softmax attention through m landmarks (kexue.fm/archives/8180).

``softmax(Q K~^T) softmax(Q~ K~^T)^+ softmax(Q~ K^T) V`` with landmark queries and keys
``Q~, K~`` (means of contiguous segments) costs O(n m) instead of O(n^2). The
pseudo-inverse comes from a cubically convergent iteration that uses only matrix
products. Shapes follow torch's SDPA: ``(batch, heads, seq, head_dim)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.foundations.masking import masked_softmax

__all__ = [
    "NystromAttention",
    "filter_factors",
    "hyperpower_step",
    "iterative_pinv",
    "kmeans_landmarks",
    "local_sequence",
    "nystrom_attention",
    "nystrom_factors",
    "pinv_residuals",
    "predicted_pinv_residuals",
    "segment_landmarks",
    "smooth_sequence",
    "steps_to_tolerance",
]


def iterative_pinv(a: Tensor, *, iterations: int = 6) -> Tensor:
    """Moore–Penrose pseudo-inverse of ``a`` by Nyströmformer's hyperpower iteration.

    ``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4``; with ``E = I - A Z`` each
    step maps ``E`` to ``(3 E^3 + E^4) / 4`` (third-order convergence).

    Initial scaling: ``Z_0 = A^T / (||A||_1 ||A||_inf)`` (largest absolute column sum
    times largest absolute row sum), computed for each matrix of the batch on its own,
    so one head's result does not depend on the others (the official code and
    nystrom-attention take one maximum over the whole batch). Because
    ``||A||_2^2 <= ||A||_1 ||A||_inf``, the nonzero eigenvalues of ``A Z_0`` lie in
    ``(0, 1]`` and the iteration converges; the number of steps it needs grows like
    ``log_3`` of the squared condition number times ``log(1/tolerance)`` (see the
    chapter). For a singular ``a``, run no more steps than convergence needs: rounding
    errors along ``ker(a^T)`` are multiplied by 13/4 at every step.

    Args:
        a: ``(..., m, n)``, floating. Products run in ``a``'s dtype, except that
            float16/bfloat16 run in float32 (the norms and products overflow them).
        iterations: number of steps (0 returns ``Z_0``), an int >= 0.

    Returns:
        ``(..., n, m)`` in ``a``'s dtype; zeros when ``m`` or ``n`` is 0.

    Raises:
        TypeError: ``a`` not a floating tensor, ``iterations`` not an int.
        ValueError: ``a`` of rank < 2, ``iterations`` < 0.
    """
    _checks.tensor(a, "a", min_ndim=2)
    iterations = _checks.nonnegative_int(iterations, "iterations")
    work = a.to(_checks.compute_dtype(a.dtype))
    if 0 in a.shape[-2:]:  # no entries to invert: amax over them would fail
        return a.new_zeros(*a.shape[:-2], a.shape[-1], a.shape[-2])
    z = _initial_inverse(work)
    for _ in range(iterations):
        z = _hyperpower_update(work, z)
    return z.to(a.dtype)


def _initial_inverse(a: Tensor) -> Tensor:
    """``Z_0 = A^T / (||A||_1 ||A||_inf)``, each matrix scaled on its own."""
    magnitude = a.abs()
    norm_1 = magnitude.sum(-2).amax(-1)  # largest column sum
    norm_inf = magnitude.sum(-1).amax(-1)  # largest row sum
    scale = (norm_1 * norm_inf).clamp_min(torch.finfo(a.dtype).tiny)
    return a.mT / scale[..., None, None]


def _hyperpower_update(a: Tensor, z: Tensor) -> Tensor:
    identity = torch.eye(a.shape[-2], dtype=a.dtype, device=a.device)
    az = a @ z
    return 0.25 * z @ (13 * identity - az @ (15 * identity - az @ (7 * identity - az)))


def hyperpower_step(x: Tensor) -> Tensor:
    """One step of :func:`iterative_pinv` on an eigenvalue ``x`` of ``A Z_k``.

    Every iterate is a polynomial in ``A A^T``, so each singular direction of ``A``
    evolves on its own: ``x -> x (13 - x (15 - x (7 - x))) / 4``, which maps ``1 - e``
    to ``1 - (3 e^3 + e^4) / 4``.

    ``x``: a floating tensor of any shape; the result has its shape and dtype
    (float16/bfloat16 computed in float32). Raises TypeError for anything else.
    """
    _checks.tensor(x, "x")
    t = x.to(_checks.compute_dtype(x.dtype))
    return (0.25 * t * (13 - t * (15 - t * (7 - t)))).to(x.dtype)


def filter_factors(ratios: Tensor, steps: int) -> Tensor:
    """The factors ``x_k`` by which ``k`` steps scale the inverse of a singular value.

    ``ratios`` (floating, any shape) holds ``sigma^2 / s`` (``s = ||A||_1 ||A||_inf``),
    the starting eigenvalues ``x_0``; the result is ``(steps + 1, *ratios.shape)`` in
    ``ratios``' dtype, row ``k`` holding ``x_k``: the iterate inverts ``sigma`` as
    ``x_k / sigma`` instead of ``1 / sigma``. Raises TypeError for a non-floating
    ``ratios`` or a non-int ``steps``, ValueError for ``steps < 0``.
    """
    _checks.tensor(ratios, "ratios")
    steps = _checks.nonnegative_int(steps, "steps")
    values = [ratios.to(_checks.compute_dtype(ratios.dtype))]
    for _ in range(steps):
        values.append(hyperpower_step(values[-1]))
    return torch.stack(values).to(ratios.dtype)


def pinv_residuals(a: Tensor, steps: int) -> Tensor:
    """Measured ``||I - A Z_k||_2`` for ``k = 0 .. steps``, shape ``(steps + 1, ...)``.

    ``a``: ``(..., m, m)`` floating; ``Z_k`` is :func:`iterative_pinv` after ``k``
    steps. Half precision is computed in float32 (torch has no half SVD) and returned
    in ``a``'s dtype. Raises TypeError for a non-floating ``a`` or non-int ``steps``,
    ValueError for non-square ``a`` or ``steps < 0``.
    """
    a = _square(a)
    steps = _checks.nonnegative_int(steps, "steps")
    work = a.to(_checks.compute_dtype(a.dtype))
    identity = torch.eye(a.shape[-1], dtype=work.dtype, device=a.device)
    z = iterative_pinv(work, iterations=0)
    norms = [torch.linalg.matrix_norm(identity - work @ z, 2)]
    for _ in range(steps):
        z = _hyperpower_update(work, z)
        norms.append(torch.linalg.matrix_norm(identity - work @ z, 2))
    return torch.stack(norms).to(a.dtype)


def predicted_pinv_residuals(a: Tensor, steps: int) -> Tensor:
    """The law ``||I - A Z_k||_2 = f^(k)(e_0)`` for ``k = 0 .. steps``.

    ``f(e) = (3 e^3 + e^4) / 4`` and ``e_0 = 1 - sigma_min^2 / s`` with
    ``s = ||A||_1 ||A||_inf``; exact for an invertible square ``a`` (``(..., m, m)``,
    floating), because ``f`` increases on ``[0, 1]`` and the residual's largest
    eigenvalue belongs to the smallest singular value. Returns ``(steps + 1, ...)`` in
    ``a``'s dtype (half computed in float32); 1 at every step for a singular ``a``
    (the zero matrix included). Raises as :func:`pinv_residuals`.
    """
    a = _square(a)
    steps = _checks.nonnegative_int(steps, "steps")
    work = a.to(_checks.compute_dtype(a.dtype))
    magnitude = work.abs()
    s = magnitude.sum(-2).amax(-1) * magnitude.sum(-1).amax(-1)
    smallest = torch.linalg.svdvals(work)[..., -1]
    values = [1 - smallest**2 / s.clamp_min(torch.finfo(work.dtype).tiny)]
    for _ in range(steps):
        values.append(0.75 * values[-1] ** 3 + 0.25 * values[-1] ** 4)
    return torch.stack(values).to(a.dtype)


def _square(a: object) -> Tensor:
    a = _checks.tensor(a, "a", min_ndim=2)
    if a.shape[-1] != a.shape[-2] or a.shape[-1] == 0:
        raise ValueError(
            f"a must be square matrices (..., m, m) with m >= 1, got {tuple(a.shape)}"
        )
    return a


def steps_to_tolerance(e0: float, tolerance: float = 1e-12) -> int:
    """Steps until ``e0^(3^k) <= tolerance``: ``ceil(log_3(ln tolerance / ln e0))``.

    The third-order bound ``||E_k|| <= ||E_0||^(3^k)``, for numbers
    ``0 < e0 < 1`` and ``0 < tolerance < 1``. Raises TypeError for non-numbers,
    ValueError outside those ranges (NaN included).
    """
    e0 = _checks.real(e0, "e0")
    tolerance = _checks.real(tolerance, "tolerance")
    if not 0 < e0 < 1:
        raise ValueError(f"e0 must lie in (0, 1), got {e0}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    return max(0, math.ceil(math.log(math.log(tolerance) / math.log(e0), 3)))


def smooth_sequence(
    n: int,
    d: int,
    *,
    modes: int = 3,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(1, 1, n, d)`` tokens on a random smooth closed curve (``modes`` harmonics).

    Token ``i`` sits at ``t_i = i / (n - 1)``; neighbouring tokens are alike, the case
    where segment means make good landmarks. ``n >= 2``, ``d >= 1``, ``modes >= 1``
    ints; ``dtype`` floating (half precision is drawn and computed in float32, then
    rounded). The coefficients are drawn on ``generator``'s device and moved to
    ``device``. Raises TypeError / ValueError naming the argument.
    """
    n = _at_least_two(n, "n")
    d = _checks.positive_int(d, "d")
    modes = _checks.positive_int(modes, "modes")
    work = _checks.compute_dtype(_checks.float_dtype(dtype))
    generator = _checks.generator(generator)
    t = torch.linspace(0, 1, n, dtype=work, device=device)
    draw_on = t.device if generator is None else generator.device
    coefficients = torch.randn(
        2 * modes, d, dtype=work, device=draw_on, generator=generator
    ).to(t.device)
    angles = 2 * math.pi * t[:, None] * torch.arange(1, modes + 1, device=t.device)
    curve = torch.cat([angles.cos(), angles.sin()], -1) @ coefficients
    return curve[None, None].to(dtype)


def local_sequence(
    n: int,
    beta: float,
    *,
    frequencies: int = 16,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(1, 1, n, 2 F)`` features, ``q_i . q_j = beta sum_w cos w (t_i - t_j)``.

    ``F = frequencies``; the sum runs over ``w = 2 pi, 4 pi, ..., 2 pi F``: a
    kernel peaked at ``t_i = t_j``, so self-attention with these as queries and keys is
    local, sharper for larger ``beta``. ``n >= 2`` and ``frequencies >= 1`` ints,
    ``beta >= 0`` a finite number, ``dtype`` floating (half computed in float32).
    Raises TypeError / ValueError naming the argument.
    """
    n = _at_least_two(n, "n")
    beta = _checks.real(beta, "beta", nonnegative=True)
    frequencies = _checks.positive_int(frequencies, "frequencies")
    work = _checks.compute_dtype(_checks.float_dtype(dtype))
    t = torch.linspace(0, 1, n, dtype=work, device=device)
    angles = (
        2 * math.pi * t[:, None] * torch.arange(1, frequencies + 1, device=t.device)
    )
    features = math.sqrt(beta) * torch.cat([angles.cos(), angles.sin()], -1)
    return features[None, None].to(dtype)


def _at_least_two(value: object, name: str) -> int:
    value = _checks.positive_int(value, name)
    if value < 2:
        raise ValueError(f"{name} must be at least 2, got {value}")
    return value


def segment_landmarks(
    x: Tensor, num_landmarks: int, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Means of ``num_landmarks`` contiguous segments of the real tokens.

    The ``L`` real tokens of a sequence (``mask`` True; all of them when ``mask`` is
    None) are split, in order, into ``min(m, L)`` segments whose lengths differ by at
    most one: the real token of rank ``r`` goes to segment ``floor(r min(m, L) / L)``.
    When ``m`` divides ``L`` these are the paper's equal segments; when ``L <= m`` each
    token is its own landmark. Masked tokens belong to no segment, so landmarks do not
    depend on padding (not even on a NaN stored there).

    Args:
        x: ``(batch, heads, seq, d)`` floating.
        num_landmarks: ``m``, an int >= 1.
        mask: ``(batch, seq)`` boolean, True for real tokens, on ``x``'s device.

    Returns:
        landmarks ``(batch, heads, m, d)`` in ``x``'s dtype (means in float32 for half
        precision; zero for a landmark that does not exist) and ``exists``
        ``(batch, m)`` boolean (False for the ``m - L`` landmarks of a sequence shorter
        than ``m``, all of them for an empty or fully masked one).

    Raises:
        TypeError: non-floating ``x``, non-int ``num_landmarks``, non-boolean ``mask``.
        ValueError: ``x`` not of rank 4, ``num_landmarks < 1``, ``mask`` of the wrong
            shape or device.
    """
    _checks.tensor(x, "x", ndim=4)
    m = _checks.positive_int(num_landmarks, "num_landmarks")
    mask = _padding_mask(mask, x, "x")
    batch, heads, seq, dim = x.shape
    work = x.to(_checks.compute_dtype(x.dtype))
    if mask is None and seq % m == 0 and seq > 0:
        # the paper's case: equal segments, a reshape
        means = work.reshape(batch, heads, m, seq // m, dim).mean(-2)
        exists = torch.ones(batch, m, dtype=torch.bool, device=x.device)
        return means.to(x.dtype), exists
    if mask is None:
        mask = torch.ones(batch, seq, dtype=torch.bool, device=x.device)
    lengths = mask.sum(-1, keepdim=True)  # (batch, 1)
    ranks = mask.cumsum(-1) - 1
    segments = ranks * lengths.clamp(max=m) // lengths.clamp(min=1)
    segments = torch.where(mask, segments, m)  # masked tokens: in no segment
    landmark = torch.arange(m, device=x.device)
    membership = (segments[..., None] == landmark).to(work.dtype)  # (batch, seq, m)
    counts = membership.sum(1)  # (batch, m)
    sums = torch.einsum("bsm,bhsd->bhmd", membership, _zero_padding(work, mask))
    means = sums / counts.clamp(min=1)[:, None, :, None]
    return means.to(x.dtype), counts > 0


def kmeans_landmarks(
    x: Tensor,
    num_landmarks: int,
    *,
    iterations: int = 10,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Landmarks by k-means (Lloyd's algorithm), which segment means replace.

    Starts from ``num_landmarks`` distinct tokens drawn at random (the same positions
    for every batch and head, drawn on ``generator``'s device), then alternates
    nearest-centre assignment and means; an empty cluster keeps its centre. No gradient
    flows through the assignment.

    Args:
        x: ``(batch, heads, seq, d)`` floating point, ``seq >= num_landmarks``.
            Half precision is computed in float32 (distances overflow it).
        num_landmarks: an int >= 1; iterations: an int >= 0.

    Returns:
        centres ``(batch, heads, m, d)`` in ``x``'s dtype.

    Raises:
        TypeError: non-floating ``x``, non-int sizes, a ``generator`` that is not one.
        ValueError: ``x`` not of rank 4, ``num_landmarks`` not in ``[1, seq]``,
            ``iterations < 0``.
    """
    _checks.tensor(x, "x", ndim=4)
    m = _checks.positive_int(num_landmarks, "num_landmarks")
    iterations = _checks.nonnegative_int(iterations, "iterations")
    generator = _checks.generator(generator)
    if m > x.shape[-2]:
        raise ValueError(f"num_landmarks must be <= seq = {x.shape[-2]}, got {m}")
    work = x.to(_checks.compute_dtype(x.dtype))
    draw_on = "cpu" if generator is None else generator.device
    start = torch.randperm(x.shape[-2], generator=generator, device=draw_on)[:m]
    centres = work[..., start.to(x.device), :]
    for _ in range(iterations):
        assign = torch.cdist(work, centres).argmin(-1)
        members = F.one_hot(assign, m).to(work.dtype)  # (b, h, seq, m)
        counts = members.sum(-2)[..., None]
        means = members.mT @ work / counts.clamp(min=1)
        centres = torch.where(counts > 0, means, centres)
    return centres.to(x.dtype)


def nystrom_factors(
    q: Tensor,
    k: Tensor,
    *,
    num_landmarks: int,
    mask: Tensor | None = None,
    scale: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The three softmax kernels of Nyströmformer, each normalised over its last axis.

    ``F = softmax(Q K~^T)`` ``(batch, heads, seq, m)``, ``A = softmax(Q~ K~^T)``
    ``(batch, heads, m, m)`` and ``B = softmax(Q~ K^T)`` ``(batch, heads, m, seq)``,
    all with logits times ``scale`` (default ``1/sqrt(d)``, as SDPA; the official
    code's ``d^(-1/4)`` on each of Q and K is the same). Padded keys and missing
    landmarks get zero weight; a row with nothing to weigh (a fully padded sequence)
    is zero. Rows and columns of ``A`` that belong to a missing landmark are those of
    the identity, so ``A^+`` is block diagonal and the missing block never reaches a
    real token.

    ``q, k``: ``(batch, heads, seq, d)``, one floating dtype and device; ``mask``:
    ``(batch, seq)`` boolean, True for real tokens (what padded tokens hold, NaN
    included, reaches no real row). Kernels come back in ``q``'s dtype, computed in
    float32 for half precision. Raises TypeError / ValueError naming the argument.
    """
    _check_inputs(q, k, k, mask, num_landmarks, scale)
    out_dtype, work = q.dtype, _checks.compute_dtype(q.dtype)
    q, k = (_zero_padding(t.to(work), mask) for t in (q, k))
    kernel_f, kernel_a, kernel_b = _factors(q, k, num_landmarks, mask, _scale(scale, q))
    return kernel_f.to(out_dtype), kernel_a.to(out_dtype), kernel_b.to(out_dtype)


def _factors(
    q: Tensor, k: Tensor, m: int, mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    q_landmarks, exists = segment_landmarks(q, m, mask)
    k_landmarks, _ = segment_landmarks(k, m, mask)
    # Without padding and with seq >= m every segment has a token, every landmark
    # exists (known from the shapes, no host read): no masking passes at all.
    every = mask is None and q.shape[-2] >= m
    landmark_keys = None if every else exists[:, None, None, :]  # True = attend
    kernel_f = masked_softmax(q @ k_landmarks.mT * scale, landmark_keys)
    kernel_a = masked_softmax(q_landmarks @ k_landmarks.mT * scale, landmark_keys)
    if not every:  # an empty landmark's row and column of A: the identity's
        identity = torch.eye(m, dtype=q.dtype, device=q.device)
        kernel_a = torch.where(exists[:, None, :, None], kernel_a, identity)
    real_keys = None if mask is None else mask[:, None, None, :]
    kernel_b = masked_softmax(q_landmarks @ k.mT * scale, real_keys)
    return kernel_f, kernel_a, kernel_b


def nystrom_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    num_landmarks: int,
    pinv_iterations: int | None = 6,
    mask: Tensor | None = None,
    scale: float | None = None,
    conv_weight: Tensor | None = None,
) -> Tensor:
    """Nyström approximation of ``softmax(q k^T * scale) v`` with segment means.

    ``F (A^+ (B V))``, evaluated right to left so nothing of size ``seq x seq`` is
    formed: O(seq m (d + dv)).

    Args:
        q, k: ``(batch, heads, seq, d)``; v: ``(batch, heads, seq, dv)``; one floating
            dtype and one device.
        num_landmarks: ``m >= 1``, an int. Any ``seq`` works, without padding (see
            :func:`segment_landmarks`).
        pinv_iterations: steps of :func:`iterative_pinv` (an int >= 0); None uses
            ``torch.linalg.pinv`` instead.
        mask: ``(batch, seq)`` boolean, True for real tokens. Outputs at real tokens do
            not depend on the masked ones (nor on how many there are, nor on a NaN
            stored there); outputs at masked positions, and whole fully masked
            sequences, are zero.
        scale: logit scale, a finite number, default ``1/sqrt(d)``.
        conv_weight: optional ``(heads, kernel)`` floating weights (odd ``kernel``) of
            the paper's depthwise convolution of ``v`` along the sequence, added to the
            output (a learned local correction).

    A sequence with at most ``m`` real tokens has one landmark per token, so ``A`` is
    its full attention matrix and ``F A^+ B V = A A^+ A V = A V``: for it this returns
    exact softmax attention (computed as ``F V~``, which is ``A V``), not the
    iteration's approximation of it. Inputs in float16/bfloat16 are computed in
    float32, because the iteration multiplies numbers as large as the condition number
    of ``A``.

    Returns:
        ``(batch, heads, seq, dv)`` in the dtype of ``q``; empty when any of batch,
        heads, seq or dv is 0.

    Raises:
        TypeError: non-floating or mismatched dtypes, non-int sizes, a non-boolean
            ``mask``.
        ValueError: wrong ranks or shapes, sizes out of range, arguments on different
            devices.
    """
    _check_inputs(q, k, v, mask, num_landmarks, scale, conv_weight)
    if pinv_iterations is not None:
        pinv_iterations = _checks.nonnegative_int(pinv_iterations, "pinv_iterations")
    batch, heads, seq, _ = q.shape
    if 0 in (batch, heads, seq, v.shape[-1]):
        return q.new_zeros(batch, heads, seq, v.shape[-1])
    out_dtype, work = q.dtype, _checks.compute_dtype(q.dtype)
    # padded tokens zeroed before any arithmetic: a NaN stored there cannot leak
    q, k, v = (_zero_padding(t.to(work), mask) for t in (q, k, v))
    kernel_f, kernel_a, kernel_b = _factors(q, k, num_landmarks, mask, _scale(scale, q))
    if pinv_iterations is None:
        pinv = torch.linalg.pinv(kernel_a)
    else:
        pinv = iterative_pinv(kernel_a, iterations=pinv_iterations)
    out = kernel_f @ (pinv @ (kernel_b @ v))
    if mask is not None or seq <= num_landmarks:
        # Sequences with at most m real tokens: landmarks are the tokens, so F V~ is
        # exact attention.
        v_landmarks, _ = segment_landmarks(v, num_landmarks, mask)
        short = (seq if mask is None else mask.sum(-1)) <= num_landmarks
        short = torch.as_tensor(short, device=q.device).reshape(-1, 1, 1, 1)
        out = torch.where(short, kernel_f @ v_landmarks, out)
    if conv_weight is not None:
        out = out + _depthwise_conv(v, conv_weight.to(work))
    return _zero_padding(out, mask).to(out_dtype)


class NystromAttention(nn.Module):
    """Multi-head self-attention with :func:`nystrom_attention`, as a layer.

    ``(batch, seq, dim)`` in and out: projections to queries, keys and values, Nyström
    attention per head, the optional depthwise-convolution residual on values
    (``conv_kernel``, odd; None for none; the paper's LRA configurations use 35, which
    is rounded up to an odd size here to keep outputs centred) and an output
    projection. ``dim`` and ``heads`` are positive ints, ``dim`` a multiple of
    ``heads``; the other sizes as in :func:`nystrom_attention`. Bad sizes raise a
    TypeError (not an int) or ValueError (out of range) naming the argument.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        num_landmarks: int = 64,
        pinv_iterations: int | None = 6,
        conv_kernel: int | None = 33,
    ) -> None:
        super().__init__()
        dim = _checks.positive_int(dim, "dim")
        heads = _checks.positive_int(heads, "heads")
        if dim % heads:
            raise ValueError(
                "dim must be a positive multiple of heads, "
                f"got dim={dim}, heads={heads}"
            )
        if conv_kernel is not None and (
            _checks.positive_int(conv_kernel, "conv_kernel") % 2 == 0
        ):
            raise ValueError(f"conv_kernel must be odd or None, got {conv_kernel}")
        if pinv_iterations is not None:
            _checks.nonnegative_int(pinv_iterations, "pinv_iterations")
        self.dim, self.heads = dim, heads
        self.num_landmarks = _checks.positive_int(num_landmarks, "num_landmarks")
        self.pinv_iterations = pinv_iterations
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.conv_weight: nn.Parameter | None = None
        if conv_kernel is not None:
            self.conv_weight = nn.Parameter(torch.zeros(heads, conv_kernel))
            nn.init.normal_(self.conv_weight, std=conv_kernel**-0.5)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, seq, dim)`` in the layer's dtype and on its device;
        ``mask``: ``(batch, seq)`` boolean, True = real. Output ``(batch, seq, dim)``,
        zero at masked positions."""
        _checks.tensor(x, "x", ndim=3)
        weight = self.qkv.weight
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be (batch, seq, {self.dim}), got {tuple(x.shape)}"
            )
        _checks.same_device(("the layer's weights", weight), x=x)
        _checks.same_dtype(("the layer's weights", weight), x=x)
        batch, seq, dim = x.shape
        q, k, v = (
            self.qkv(x)
            .view(batch, seq, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        out = nystrom_attention(
            q,
            k,
            v,
            num_landmarks=self.num_landmarks,
            pinv_iterations=self.pinv_iterations,
            mask=mask,
            conv_weight=self.conv_weight,
        )
        out = self.out(out.transpose(1, 2).reshape(batch, seq, dim))
        return _zero_padding(out, mask)


def _zero_padding(t: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded tokens of ``(batch, heads, seq, ...)`` or ``(batch, seq, ...)``.

    ``where``, not a product: a NaN stored there cannot leak (nor its gradient)."""
    if mask is None:
        return t
    seq_dim = 2 if t.dim() == 4 else 1
    keep = mask.view(mask.shape[0], *([1] * (seq_dim - 1)), mask.shape[1])
    keep = keep.view(*keep.shape, *([1] * (t.dim() - seq_dim - 1)))
    return torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))


def _depthwise_conv(v: Tensor, weight: Tensor) -> Tensor:
    """Convolve each head's values along the sequence with that head's kernel.

    Zero padding, centred; ``weight`` ``(heads, odd kernel)``, checked by the caller.
    """
    heads, size = weight.shape
    # (batch, heads, seq, dv) -> channels = heads, spatial = (seq, dv), with a
    # (kernel, 1) filter per head
    filters = weight[:, None, :, None]
    return F.conv2d(v, filters, padding=(size // 2, 0), groups=heads)


def _scale(scale: float | None, q: Tensor) -> float:
    return q.shape[-1] ** -0.5 if scale is None else scale


def _padding_mask(mask: object, x: Tensor, x_name: str) -> Tensor | None:
    """A key-padding mask ``(batch, seq)`` for ``x`` ``(batch, heads, seq, ...)``:
    boolean (True = real token), on ``x``'s device."""
    if mask is None:
        return None
    mask = _checks.tensor(mask, "mask", kind="any")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a boolean tensor (True = real token), got {mask.dtype}"
        )
    want = (x.shape[0], x.shape[2])
    if tuple(mask.shape) != want:
        raise ValueError(f"mask must be (batch, seq) = {want}, got {tuple(mask.shape)}")
    _checks.same_device((x_name, x), mask=mask)
    return mask


def _check_inputs(
    q: object,
    k: object,
    v: object,
    mask: object,
    num_landmarks: object,
    scale: object,
    conv_weight: object = None,
) -> None:
    """Self-attention inputs: q, k ``(batch, heads, seq, d)``, v ``(..., seq, dv)``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.tensor(t, name, ndim=4)
    _checks.qkv(q, k, v)
    assert isinstance(q, Tensor) and isinstance(k, Tensor)
    if q.shape[2] != k.shape[2]:
        raise ValueError(
            f"k must have q's length (self-attention), got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}"
        )
    if q.shape[-1] == 0 and scale is None:
        raise ValueError("q must have a head dimension d >= 1 for the scale 1/sqrt(d)")
    _checks.positive_int(num_landmarks, "num_landmarks")
    if scale is not None:
        _checks.real(scale, "scale")
    _padding_mask(mask, q, "q")
    if conv_weight is not None:
        conv_weight = _checks.tensor(conv_weight, "conv_weight", ndim=2)
        _checks.same_device(("q", q), conv_weight=conv_weight)
        if conv_weight.shape[0] != q.shape[1] or conv_weight.shape[1] % 2 == 0:
            raise ValueError(
                f"conv_weight must be (heads={q.shape[1]}, odd kernel), "
                f"got {tuple(conv_weight.shape)}"
            )
