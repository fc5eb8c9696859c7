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
        a: ``(..., m, n)``, floating. Products run in ``a``'s dtype.
        iterations: number of steps (0 returns ``Z_0``).

    Returns:
        ``(..., n, m)``.
    """
    if not isinstance(a, Tensor) or not a.is_floating_point() or a.dim() < 2:
        raise ValueError("a must be a floating tensor of shape (..., m, n)")
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, int)
        or iterations < 0
    ):
        raise ValueError(f"iterations must be a non-negative int, got {iterations!r}")
    magnitude = a.abs()
    norm_1 = magnitude.sum(-2).amax(-1)  # largest column sum
    norm_inf = magnitude.sum(-1).amax(-1)  # largest row sum
    scale = (norm_1 * norm_inf).clamp_min(torch.finfo(a.dtype).tiny)
    z = a.mT / scale[..., None, None]
    for _ in range(iterations):
        z = _hyperpower_update(a, z)
    return z


def _hyperpower_update(a: Tensor, z: Tensor) -> Tensor:
    identity = torch.eye(a.shape[-2], dtype=a.dtype, device=a.device)
    az = a @ z
    return 0.25 * z @ (13 * identity - az @ (15 * identity - az @ (7 * identity - az)))


def hyperpower_step(x: Tensor) -> Tensor:
    """One step of :func:`iterative_pinv` on an eigenvalue ``x`` of ``A Z_k``.

    Every iterate is a polynomial in ``A A^T``, so each singular direction of ``A``
    evolves on its own: ``x -> x (13 - x (15 - x (7 - x))) / 4``, which maps ``1 - e``
    to ``1 - (3 e^3 + e^4) / 4``.
    """
    return 0.25 * x * (13 - x * (15 - x * (7 - x)))


def filter_factors(ratios: Tensor, steps: int) -> Tensor:
    """The factors ``x_k`` by which ``k`` steps scale the inverse of a singular value.

    ``ratios`` holds ``sigma^2 / s`` (``s = ||A||_1 ||A||_inf``), the starting
    eigenvalues ``x_0``; the result is ``(steps + 1, *ratios.shape)``, row ``k`` holding
    ``x_k``: the iterate inverts ``sigma`` as ``x_k / sigma`` instead of ``1 / sigma``.
    """
    _check_steps(steps)
    values = [ratios]
    for _ in range(steps):
        values.append(hyperpower_step(values[-1]))
    return torch.stack(values)


def pinv_residuals(a: Tensor, steps: int) -> Tensor:
    """Measured ``||I - A Z_k||_2`` for ``k = 0 .. steps``, shape ``(steps + 1, ...)``.

    ``a``: ``(..., m, m)``; ``Z_k`` is :func:`iterative_pinv` after ``k`` steps.
    """
    _check_steps(steps)
    if not isinstance(a, Tensor) or a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError("a must be a tensor of square matrices (..., m, m)")
    identity = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    z = iterative_pinv(a, iterations=0)
    norms = [torch.linalg.matrix_norm(identity - a @ z, 2)]
    for _ in range(steps):
        z = _hyperpower_update(a, z)
        norms.append(torch.linalg.matrix_norm(identity - a @ z, 2))
    return torch.stack(norms)


def predicted_pinv_residuals(a: Tensor, steps: int) -> Tensor:
    """The law ``||I - A Z_k||_2 = f^(k)(e_0)`` for ``k = 0 .. steps``.

    ``f(e) = (3 e^3 + e^4) / 4`` and ``e_0 = 1 - sigma_min^2 / s`` with
    ``s = ||A||_1 ||A||_inf``; exact for an invertible square ``a`` (``(..., m, m)``),
    because ``f`` increases on ``[0, 1]`` and the residual's largest eigenvalue belongs
    to the smallest singular value.
    """
    _check_steps(steps)
    if not isinstance(a, Tensor) or a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError("a must be a tensor of square matrices (..., m, m)")
    magnitude = a.abs()
    s = magnitude.sum(-2).amax(-1) * magnitude.sum(-1).amax(-1)
    residual = 1 - torch.linalg.svdvals(a)[..., -1] ** 2 / s
    values = [residual]
    for _ in range(steps):
        values.append(0.75 * values[-1] ** 3 + 0.25 * values[-1] ** 4)
    return torch.stack(values)


def steps_to_tolerance(e0: float, tolerance: float = 1e-12) -> int:
    """Steps until ``e0^(3^k) <= tolerance``: ``ceil(log_3(ln tolerance / ln e0))``.

    The third-order bound ``||E_k|| <= ||E_0||^(3^k)``, for ``0 < e0 < 1`` and
    ``0 < tolerance < 1``.
    """
    if not (0 < e0 < 1 and 0 < tolerance < 1):
        raise ValueError(
            f"need 0 < e0 < 1 and 0 < tolerance < 1, got {e0}, {tolerance}"
        )
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
    where segment means make good landmarks.
    """
    if n < 2 or d < 1 or modes < 1:
        raise ValueError(f"need n >= 2, d >= 1, modes >= 1, got {n}, {d}, {modes}")
    t = torch.linspace(0, 1, n, dtype=dtype, device=device)
    coefficients = torch.randn(
        2 * modes, d, dtype=dtype, device=device, generator=generator
    )
    angles = 2 * math.pi * t[:, None] * torch.arange(1, modes + 1, device=device)
    return (torch.cat([angles.cos(), angles.sin()], -1) @ coefficients)[None, None]


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
    local, sharper for larger ``beta``.
    """
    if n < 2 or beta < 0 or frequencies < 1:
        raise ValueError(
            f"need n >= 2, beta >= 0, frequencies >= 1, got {n}, {beta}, {frequencies}"
        )
    t = torch.linspace(0, 1, n, dtype=dtype, device=device)
    angles = 2 * math.pi * t[:, None] * torch.arange(1, frequencies + 1, device=device)
    return (math.sqrt(beta) * torch.cat([angles.cos(), angles.sin()], -1))[None, None]


def _check_steps(steps: object) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")


def segment_landmarks(
    x: Tensor, num_landmarks: int, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Means of ``num_landmarks`` contiguous segments of the real tokens.

    The ``L`` real tokens of a sequence (``mask`` True; all of them when ``mask`` is
    None) are split, in order, into ``min(m, L)`` segments whose lengths differ by at
    most one: the real token of rank ``r`` goes to segment ``floor(r min(m, L) / L)``.
    When ``m`` divides ``L`` these are the paper's equal segments; when ``L <= m`` each
    token is its own landmark. Masked tokens belong to no segment, so landmarks do not
    depend on padding.

    Args:
        x: ``(batch, heads, seq, d)``.
        mask: ``(batch, seq)`` boolean, True for real tokens.

    Returns:
        landmarks ``(batch, heads, m, d)`` (zero for a landmark that does not exist)
        and ``exists`` ``(batch, m)`` boolean (False for the ``m - L`` landmarks of a
        sequence shorter than ``m``).
    """
    batch, heads, seq, dim = x.shape
    if (
        mask is None and seq % num_landmarks == 0
    ):  # the paper's case: equal segments, a reshape
        means = x.reshape(batch, heads, num_landmarks, seq // num_landmarks, dim).mean(
            -2
        )
        return means, torch.ones(
            batch, num_landmarks, dtype=torch.bool, device=x.device
        )
    if mask is None:
        mask = torch.ones(batch, seq, dtype=torch.bool, device=x.device)
    lengths = mask.sum(-1, keepdim=True)  # (batch, 1)
    ranks = mask.cumsum(-1) - 1
    segments = ranks * lengths.clamp(max=num_landmarks) // lengths.clamp(min=1)
    segments = torch.where(
        mask, segments, num_landmarks
    )  # masked tokens go to a dropped extra column
    membership = F.one_hot(segments, num_landmarks + 1)[..., :num_landmarks].to(
        x.dtype
    )  # (batch, seq, m)
    counts = membership.sum(1)  # (batch, m)
    sums = torch.einsum("bsm,bhsd->bhmd", membership, x)
    return sums / counts.clamp(min=1)[:, None, :, None], counts > 0


def kmeans_landmarks(
    x: Tensor,
    num_landmarks: int,
    *,
    iterations: int = 10,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Landmarks by k-means (Lloyd's algorithm), which segment means replace.

    Starts from ``num_landmarks`` distinct tokens drawn at random (the same positions
    for every batch and head), then alternates nearest-centre assignment and means; an
    empty cluster keeps its centre. No gradient flows through the assignment.

    Args:
        x: ``(batch, heads, seq, d)`` floating point, ``seq >= num_landmarks``.

    Returns:
        centres ``(batch, heads, m, d)``.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise TypeError("x must be a floating (batch, heads, seq, d) tensor")
    _check_landmarks(num_landmarks)
    _check_steps(iterations)
    if num_landmarks > x.shape[-2]:
        raise ValueError(f"num_landmarks must be <= seq, got {num_landmarks}")
    start = torch.randperm(x.shape[-2], generator=generator)[:num_landmarks]
    centres = x[..., start.to(x.device), :]
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(-1)
        members = F.one_hot(assign, num_landmarks).to(x.dtype)  # (b, h, seq, m)
        counts = members.sum(-2)[..., None]
        means = members.mT @ x / counts.clamp(min=1)
        centres = torch.where(counts > 0, means, centres)
    return centres


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
    landmarks get zero weight. Rows and columns of ``A`` that belong to a missing
    landmark are those of the identity, so ``A^+`` is block diagonal and the missing
    block never reaches a real token.
    """
    _check(q, k, k, mask, num_landmarks)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q_landmarks, exists = segment_landmarks(q, num_landmarks, mask)
    k_landmarks, _ = segment_landmarks(k, num_landmarks, mask)
    hide_landmarks = ~exists[:, None, None, :]  # (batch, 1, 1, m)
    kernel_f = _softmax(q @ k_landmarks.mT * scale, hide_landmarks)
    logits_a = q_landmarks @ k_landmarks.mT * scale
    kernel_a = _softmax(logits_a, hide_landmarks)
    identity = torch.eye(num_landmarks, dtype=q.dtype, device=q.device)
    kernel_a = torch.where(exists[:, None, :, None], kernel_a, identity)
    hide_keys = None if mask is None else ~mask[:, None, None, :]
    kernel_b = _softmax(q_landmarks @ k.mT * scale, hide_keys)
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
        q, k: ``(batch, heads, seq, d)``; v: ``(batch, heads, seq, dv)``.
        num_landmarks: ``m >= 1``. Any ``seq`` works, without padding (see
            :func:`segment_landmarks`).
        pinv_iterations: steps of :func:`iterative_pinv`; None uses
            ``torch.linalg.pinv`` instead.
        mask: ``(batch, seq)`` boolean, True for real tokens. Outputs at real tokens do
            not depend on the masked ones (nor on how many there are); outputs at
            masked positions are zero.
        scale: logit scale, default ``1/sqrt(d)``.
        conv_weight: optional ``(heads, kernel)`` weights (odd ``kernel``) of the
            paper's depthwise convolution of ``v`` along the sequence, added to the
            output (a learned local correction).

    A sequence with at most ``m`` real tokens has one landmark per token, so ``A`` is
    its full attention matrix and ``F A^+ B V = A A^+ A V = A V``: for it this returns
    exact softmax attention (computed as ``F V~``, which is ``A V``), not the
    iteration's approximation of it. Inputs in float16/bfloat16 are computed in
    float32, because the iteration multiplies numbers as large as the condition number
    of ``A``.

    Returns:
        ``(batch, heads, seq, dv)`` in the dtype of ``q``.
    """
    _check(q, k, v, mask, num_landmarks)
    out_dtype = q.dtype
    work = torch.promote_types(q.dtype, torch.float32)
    q, k, v = q.to(work), k.to(work), v.to(work)
    kernel_f, kernel_a, kernel_b = nystrom_factors(
        q, k, num_landmarks=num_landmarks, mask=mask, scale=scale
    )
    if mask is not None:
        v = v * mask[:, None, :, None].to(work)
    if pinv_iterations is None:
        pinv = torch.linalg.pinv(kernel_a)
    else:
        pinv = iterative_pinv(kernel_a, iterations=pinv_iterations)
    out = kernel_f @ (pinv @ (kernel_b @ v))
    seq = q.shape[-2]
    if mask is not None or seq <= num_landmarks:
        # Sequences with at most m real tokens: landmarks are the tokens, so F V~ is
        # exact attention.
        v_landmarks, _ = segment_landmarks(v, num_landmarks, mask)
        short = (seq if mask is None else mask.sum(-1)) <= num_landmarks
        short = torch.as_tensor(short, device=q.device).reshape(-1, 1, 1, 1)
        out = torch.where(short, kernel_f @ v_landmarks, out)
    if conv_weight is not None:
        out = out + _depthwise_conv(v, conv_weight)
    if mask is not None:
        out = out * mask[:, None, :, None].to(work)
    return out.to(out_dtype)


class NystromAttention(nn.Module):
    """Multi-head self-attention with :func:`nystrom_attention`, as a layer.

    ``(batch, seq, dim)`` in and out: projections to queries, keys and values, Nyström
    attention per head, the optional depthwise-convolution residual on values
    (``conv_kernel``, odd; None for none; the paper's LRA configurations use 35, which
    is rounded up to an odd size here to keep outputs centred) and an output
    projection.
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
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(
                "dim must be a positive multiple of heads, "
                f"got dim={dim}, heads={heads}"
            )
        if conv_kernel is not None and (conv_kernel < 1 or conv_kernel % 2 == 0):
            raise ValueError(
                f"conv_kernel must be a positive odd int or None, got {conv_kernel}"
            )
        _check_landmarks(num_landmarks)
        self.heads, self.num_landmarks, self.pinv_iterations = (
            heads,
            num_landmarks,
            pinv_iterations,
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.conv_weight = (
            None
            if conv_kernel is None
            else nn.Parameter(torch.zeros(heads, conv_kernel))
        )
        if self.conv_weight is not None:
            nn.init.normal_(self.conv_weight, std=conv_kernel**-0.5)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(batch, seq, dim)``; ``mask``: ``(batch, seq)``, True = real."""
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, seq, dim), got shape {tuple(x.shape)}")
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
        return self.out(out.transpose(1, 2).reshape(batch, seq, dim))


def _softmax(logits: Tensor, hide: Tensor | None) -> Tensor:
    if hide is not None:
        # the most negative finite number, not -inf: a row with nothing visible (an
        # all-padding sequence) then gives finite weights, which the caller zeroes,
        # instead of NaN
        logits = logits.masked_fill(hide, torch.finfo(logits.dtype).min)
    return logits.softmax(-1)


def _depthwise_conv(v: Tensor, weight: Tensor) -> Tensor:
    """Convolve each head's values along the sequence with that head's kernel.

    Zero padding, centred.
    """
    heads, size = weight.shape[-2:]
    if weight.dim() != 2 or heads != v.shape[1] or size % 2 == 0:
        raise ValueError(
            f"conv_weight must be (heads={v.shape[1]}, odd kernel), "
            f"got {tuple(weight.shape)}"
        )
    # (batch, heads, seq, dv) -> channels = heads, spatial = (seq, dv), with a
    # (kernel, 1) filter per head
    filters = weight.to(v.dtype)[:, None, :, None]
    return F.conv2d(v, filters, padding=(size // 2, 0), groups=heads)


def _check_landmarks(num_landmarks: object) -> None:
    if isinstance(num_landmarks, bool) or not isinstance(num_landmarks, int):
        raise TypeError(
            f"num_landmarks must be an int, got {type(num_landmarks).__name__}"
        )
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be at least 1, got {num_landmarks}")


def _check(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, num_landmarks: object
) -> None:
    _check_landmarks(num_landmarks)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(
                f"{name} must be a floating tensor of shape (batch, heads, seq, dim)"
            )
    if (
        q.shape[:3] != k.shape[:3]
        or k.shape[:3] != v.shape[:3]
        or q.shape[-1] != k.shape[-1]
    ):
        raise ValueError(
            "self-attention shapes do not fit "
            "(q, k, v share batch, heads, seq; q and k share dim): "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[2] < 1:
        raise ValueError("seq must be at least 1")
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a boolean tensor (True = real token)")
        if mask.shape != (q.shape[0], q.shape[2]):
            raise ValueError(
                f"mask must be (batch, seq) = {(q.shape[0], q.shape[2])}, "
                f"got {tuple(mask.shape)}"
            )
        if mask.device != q.device:
            raise ValueError(f"mask must be on {q.device}, got {mask.device}")
