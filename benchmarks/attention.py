"""Attention as the sequence grows: exact SDPA against kexue's linear attention, Performer, Nyström and
Fastformer, and Performer and Nyström against their PyPI peers.

Inputs (:func:`structured_inputs`): iid Gaussian queries and keys make softmax attention almost uniform
and give segment-mean landmarks nothing to average, so they measure no approximation fairly. Here, as in a
transformer layer, ``q, k, v`` are random linear maps of layer-normalised hidden states, and the hidden
states vary smoothly along the sequence (a random walk plus token noise): neighbouring tokens are alike.
Queries and keys have unit variance per coordinate. Shape ``(batch, heads, n, 64)``, float32 on the CPU,
bfloat16 on CUDA (flash attention needs half precision). The approximations' error is the relative
Frobenius error against exact softmax attention of the same inputs (float32 SDPA); each group also
records the error of mean pooling (the output every approximation degenerates to), as a baseline.

Three suites:

* ``attention`` (non-causal) and ``attention_causal``, one group per ``n``; the reference is SDPA's flash
  kernel (torch has one for the CPU too). Performer uses ``m = 256`` random features (about
  performer-pytorch's default ``d log d``), Nyström 64 landmarks (the paper's), both peers the same budget;
  performer-pytorch gets kexue's projection matrix, so both compute the same features (checked: with their
  stabiliser ``eps`` set to 0 the two agree to rounding; at their defaults they differ, see the appendix).
* ``approx_sweep``: at one ``n``, Performer and Nyström with budgets 16 ... 256 (512 on CUDA), kexue
  against its peer in each group: time, memory and error at equal budget, from which the appendix reads
  off error at equal time.

Peers are called as their users call them: ``performer_pytorch.FastAttention(q, k, v)``; nystrom-attention's
``NystromAttention`` layer with its projections replaced by the identity (its ``to_qkv`` returns the packed
``q, k, v``, ``to_out`` is the identity and the convolution residual is off), so its timing includes the
layout changes its forward makes. Fastformer is a layer on ``x`` of shape ``(batch, n, heads * 64)``; its
time includes its projections, which the other rows do not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks import peers
from benchmarks.harness import (
    Candidate,
    Settings,
    compare,
    measure_group,
    relative_error,
)
from kexue.attention.fastformer import FastformerAttention
from kexue.attention.linear import (
    favor_features,
    linear_attention,
    orthogonal_gaussian,
    performer_attention,
)
from kexue.attention.nystrom import nystrom_attention

HEAD_DIM = 64
FEATURES = 256
LANDMARKS = 64
ERROR_DRAWS = 8  # projections per Performer budget whose errors are averaged
CHECK_UP_TO = (
    4096  # the quadratic reference of the causal linear check is formed up to this n
)


def sizes(device: torch.device, size: str) -> dict[str, Any]:
    """The suite's sizes: "quick" (a smoke test), "short" (fewer lengths and budgets)
    or "full"."""
    if size == "short":
        full = sizes(device, "full")
        return {
            **full,
            "lengths": full["lengths"][::2],
            "budgets": full["budgets"][1::2],
        }
    if size == "quick":
        return {
            "batch": 1,
            "heads": 2,
            "lengths": [64, 128],
            "sweep_n": 128,
            "budgets": [16, 32],
            "dtype": torch.float32,
        }
    if device.type == "cuda":
        return {
            "batch": 2,
            "heads": 8,
            "lengths": [256, 512, 1024, 2048, 4096, 8192, 16384],
            "sweep_n": 4096,
            "budgets": [16, 32, 64, 128, 256, 512],
            "dtype": torch.bfloat16,
        }
    return {
        "batch": 1,
        "heads": 4,
        "lengths": [256, 512, 1024, 2048, 4096],
        "sweep_n": 1024,
        "budgets": [16, 32, 64, 128, 256],
        "dtype": torch.float32,
    }


def sdpa(backend: SDPBackend, causal: bool) -> Callable[..., torch.Tensor]:
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


def exact_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> torch.Tensor:
    """Softmax attention in float32 (SDPA picks a kernel that never forms the n x n matrix)."""
    return F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=causal
    )


class _Constant(nn.Module):
    """Stands in for a projection: returns a fixed tensor whatever the input."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


def peer_nystrom(
    module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, landmarks: int
):
    """nystrom-attention's layer computing attention of the given q, k, v: a call returning (b, h, n, d)
    for the check, and the bare forward (output (b, n, h d), as the layer returns it) for timing."""
    b, h, n, d = q.shape
    if n % landmarks:
        raise ValueError(
            "the peer pads n to a multiple of the landmarks; keep n divisible"
        )
    layer = module.NystromAttention(
        dim=h * d,
        dim_head=d,
        heads=h,
        num_landmarks=landmarks,
        pinv_iterations=6,
        residual=False,
    )
    packed = torch.cat(
        [t.transpose(1, 2).reshape(b, n, h * d) for t in (q, k, v)], dim=-1
    )
    layer.to_qkv = _Constant(packed)
    layer.to_out = nn.Identity()
    layer = layer.to(q.device)

    def forward() -> torch.Tensor:
        return layer(packed)

    def heads_first() -> torch.Tensor:
        return forward().view(b, n, h, d).transpose(1, 2)

    return forward, heads_first


def peer_performer(module, projection: torch.Tensor, causal: bool):
    """performer-pytorch's ``FastAttention`` with the given projection matrix (as its buffer)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(
        io.StringIO()
    ):  # causal: it prints that its CUDA kernel is missing
        layer = module.FastAttention(
            dim_heads=projection.shape[1],
            nb_features=projection.shape[0],
            causal=causal,
        )
    layer.projection_matrix = projection.clone()
    return layer


def _guarded(
    name: str, build: Callable[[], Candidate], skipped: list[tuple[str, str]]
) -> list[Candidate]:
    """The candidate, or nothing (and a skip reason) when building or checking it raised."""
    try:
        return [build()]
    except Exception as err:
        skipped.append((name, f"raised {type(err).__name__}: {err}"[:300]))
        return []


def _math_fits(
    device: torch.device, batch: int, heads: int, n: int, dtype: torch.dtype
) -> str | None:
    need = 3 * batch * heads * n * n * max(4, torch.finfo(dtype).bits // 8)
    limit = (
        0.4 * torch.cuda.get_device_properties(device).total_memory
        if device.type == "cuda"
        else 2e9
    )
    return (
        None
        if need <= limit
        else f"would need about {need / 1e9:.1f} GB for the n x n scores"
    )


def run(device: torch.device, settings: Settings, *, size: str) -> list[dict[str, Any]]:
    cfg = sizes(device, size)
    performer_peer, nystrom_peer = peers.performer_pytorch(), peers.nystrom_attention()
    generator = torch.Generator().manual_seed(0)
    projection = orthogonal_gaussian(FEATURES, HEAD_DIM, generator=generator).to(device)
    rows: list[dict[str, Any]] = []
    for causal in (False, True):
        for n in cfg["lengths"]:
            rows += _length_group(
                device,
                settings,
                cfg,
                n,
                causal,
                projection,
                performer_peer,
                nystrom_peer,
            )
    rows += _sweep(device, settings, cfg, performer_peer, nystrom_peer)
    return rows


def structured_inputs(
    batch: int,
    heads: int,
    n: int,
    head_dim: int = HEAD_DIM,
    *,
    seed: int = 0,
    noise: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q, k, v`` of shape ``(batch, heads, n, head_dim)`` (float32, CPU): random projections of
    layer-normalised hidden states that drift along the sequence (a random walk of unit total variance
    plus ``noise`` per token). Queries and keys have about unit variance per coordinate."""
    generator = torch.Generator().manual_seed(seed)
    width = heads * head_dim
    walk = torch.randn(batch, n, width, generator=generator).cumsum(1) / math.sqrt(n)
    hidden = F.layer_norm(
        walk + noise * torch.randn(batch, n, width, generator=generator), (width,)
    )
    weights = torch.randn(3, width, width, generator=generator) / math.sqrt(width)
    return tuple(
        (hidden @ w).view(batch, n, heads, head_dim).transpose(1, 2).contiguous()
        for w in weights
    )


def mean_pooling_error(v: torch.Tensor, exact: torch.Tensor, causal: bool) -> float:
    """Error of the uniform-attention output (the mean of the values seen), the baseline of the errors."""
    v = v.float()
    if causal:
        counts = torch.arange(1, v.shape[-2] + 1, device=v.device, dtype=v.dtype)[
            :, None
        ]
        return relative_error(v.cumsum(-2) / counts, exact)
    return relative_error(v.mean(-2, keepdim=True).expand_as(v), exact)


def _inputs(
    device: torch.device, cfg: dict[str, Any], n: int
) -> tuple[torch.Tensor, ...]:
    q, k, v = structured_inputs(cfg["batch"], cfg["heads"], n, seed=n)
    return tuple(t.to(device=device, dtype=cfg["dtype"]) for t in (q, k, v))


def performer_same_features(
    module, q, k, v, projection, tol: float, exact: torch.Tensor
) -> dict[str, Any]:
    """Check that kexue and performer-pytorch compute the same FAVOR+ features: with the stabilising
    ``eps`` set to 0 (each adds its eps after a different per-row shift), the non-causal outputs must agree
    to rounding. Also records how far apart their default-``eps`` outputs are, and the error against
    exact (non-causal) attention that both have with ``eps = 0``."""
    kernel = module.performer_pytorch.softmax_kernel
    phi_q = favor_features(q, projection, is_query=True, eps=0.0)
    phi_k = favor_features(k, projection, is_query=False, eps=0.0)
    ours = (phi_q @ (phi_k.mT @ v)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1))
    theirs = module.performer_pytorch.linear_attention(
        kernel(q, projection_matrix=projection, is_query=True, eps=0.0),
        kernel(k, projection_matrix=projection, is_query=False, eps=0.0),
        v,
    )
    check = compare(
        theirs, ours, tol=tol, against="kexue FAVOR+ features, both with eps = 0"
    )
    defaults = module.FastAttention(
        dim_heads=q.shape[-1], nb_features=projection.shape[0]
    )
    defaults.projection_matrix = projection.clone()
    check["difference_at_default_eps"] = relative_error(
        defaults(q, k, v), performer_attention(q, k, v, projection)
    )
    check["error_with_eps_0"] = relative_error(ours, exact)
    return check


def _tol(dtype: torch.dtype) -> float:
    return 1e-4 if dtype == torch.float32 else 2e-2


def _length_group(
    device, settings, cfg, n, causal, projection, performer_peer, nystrom_peer
) -> list[dict[str, Any]]:
    q, k, v = _inputs(device, cfg, n)
    dtype, tol = cfg["dtype"], _tol(cfg["dtype"])
    exact = exact_attention(q, k, v, causal)
    suffix = ", causal" if causal else ""
    candidates: list[Candidate] = []
    skipped: list[tuple[str, str]] = []

    def approx(
        name: str,
        fn: Callable[[], torch.Tensor],
        note: str = "",
        check: dict | None = None,
    ) -> Candidate:
        return Candidate(
            name, fn, note=note, error_vs_exact=relative_error(fn(), exact), check=check
        )

    flash = sdpa(SDPBackend.FLASH_ATTENTION, causal)
    reference = f"SDPA flash{suffix}"
    candidates += _guarded(
        reference,
        lambda: Candidate(
            reference,
            lambda: flash(q, k, v),
            check=compare(flash(q, k, v), exact, tol=tol * 10, against="float32 SDPA"),
        ),
        skipped,
    )
    if not candidates:
        reference = f"SDPA math{suffix}"
    math_fn = sdpa(SDPBackend.MATH, causal)
    too_big = _math_fits(device, cfg["batch"], cfg["heads"], n, dtype)
    if too_big:
        skipped.append((f"SDPA math{suffix}", too_big))
    else:
        candidates.append(Candidate(f"SDPA math{suffix}", lambda: math_fn(q, k, v)))

    def linear_check() -> dict | None:
        if not causal or n > CHECK_UP_TO:
            return None
        phi_q, phi_k = F.elu(q.float()) + 1, F.elu(k.float()) + 1
        weights = (phi_q @ phi_k.mT).tril()
        quadratic = (weights @ v.float()) / (weights.sum(-1, keepdim=True) + 1e-6)
        return compare(
            linear_attention(q, k, v, causal=True),
            quadratic,
            tol=tol * 10,
            against="quadratic masked form",
        )

    candidates.append(
        Candidate(
            f"kexue linear_attention{suffix}",
            lambda: linear_attention(q, k, v, causal=causal),
            note="elu + 1 features; not an approximation of softmax (no error reported)"
            + ("; chunks of 64 with a running state" if causal else ""),
            check=linear_check(),
        )
    )
    proj = projection.to(dtype)
    kexue_performer = f"kexue performer_attention{suffix}"
    candidates.append(
        approx(
            kexue_performer,
            lambda: performer_attention(q, k, v, proj, causal=causal),
            note=f"m = {FEATURES}",
        )
    )
    if performer_peer is not None:
        layer = peer_performer(performer_peer, proj, causal)
        candidates += _guarded(
            "performer-pytorch",
            lambda: approx(
                f"performer-pytorch{suffix}",
                lambda: layer(q, k, v),
                note=f"m = {FEATURES}, kexue's projection"
                + (
                    "; no fast_transformers CUDA kernel: its non-CUDA causal form"
                    if causal
                    else ""
                ),
                check=performer_same_features(
                    performer_peer,
                    q,
                    k,
                    v,
                    proj,
                    tol * 10,
                    exact if not causal else exact_attention(q, k, v, False),
                ),
            ),
            skipped,
        )
    else:
        skipped.append(
            (
                f"performer-pytorch{suffix}",
                "not installed (make bench installs requirements-bench.txt)",
            )
        )
    if not causal:
        candidates.append(
            approx(
                "kexue nystrom_attention",
                lambda: nystrom_attention(q, k, v, num_landmarks=LANDMARKS),
                note=f"{LANDMARKS} landmarks, 6 pinv iterations",
            )
        )
        if nystrom_peer is None:
            skipped.append(
                (
                    "nystrom-attention",
                    "not installed (make bench installs requirements-bench.txt)",
                )
            )
        else:
            candidates += _guarded(
                "nystrom-attention",
                lambda: _nystrom_peer_candidate(
                    nystrom_peer, q, k, v, LANDMARKS, exact
                ),
                skipped,
            )
        candidates += _guarded(
            "kexue FastformerAttention", lambda: _fastformer_candidate(q), skipped
        )
    params = {
        "n": n,
        "batch": cfg["batch"],
        "heads": cfg["heads"],
        "head_dim": HEAD_DIM,
        "dtype": str(dtype).removeprefix("torch."),
        "causal": causal,
        "features": FEATURES,
        "landmarks": LANDMARKS,
        "inputs": "structured_inputs (smooth hidden states, random projections)",
        "error_of_mean_pooling": mean_pooling_error(v, exact, causal),
    }
    group = f"n = {n}{suffix}"
    suite = "attention_causal" if causal else "attention"
    rows = measure_group(
        suite,
        group,
        params,
        candidates,
        reference,
        device=device,
        settings=settings,
        skipped=skipped,
    )
    if device.type == "cuda":
        del q, k, v, exact
        torch.cuda.empty_cache()
    return rows


def _nystrom_peer_candidate(module, q, k, v, landmarks, exact) -> Candidate:
    note = (
        f"{landmarks} landmarks, 6 pinv iterations; its forward includes the head merge"
    )
    ours = nystrom_attention(q, k, v, num_landmarks=landmarks)
    if q.dtype in (torch.float16, torch.bfloat16):
        # its pseudo-inverse multiplies by a float32 identity and fails in half precision; kexue computes in
        # float32 internally for half inputs, so float32 inputs give the peer the same arithmetic
        q, k, v = q.float(), k.float(), v.float()
        note += "; given float32 inputs (it raises in half precision)"
    forward, heads_first = peer_nystrom(module, q, k, v, landmarks)
    out = heads_first()
    check = compare(out, ours, tol=0.05, against="kexue nystrom_attention")
    check["note"] = (
        "both approximate the same softmax attention; the pseudo-inverse starts differ"
    )
    return Candidate(
        "nystrom-attention",
        forward,
        note=note,
        error_vs_exact=relative_error(out, exact),
        check=check,
    )


def _fastformer_candidate(q: torch.Tensor) -> Candidate:
    batch, heads, n, d = q.shape
    layer = FastformerAttention(heads * d, heads).to(device=q.device, dtype=q.dtype)
    x = q.transpose(1, 2).reshape(batch, n, heads * d).contiguous()

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return layer(x)

    out = forward()
    check = {
        "against": "finite output of the right shape",
        "passed": bool(out.shape == x.shape and torch.isfinite(out).all()),
    }
    return Candidate(
        "kexue FastformerAttention",
        forward,
        note="a layer: includes its projections",
        check=check,
    )


def _sweep(device, settings, cfg, performer_peer, nystrom_peer) -> list[dict[str, Any]]:
    n = cfg["sweep_n"]
    q, k, v = _inputs(device, cfg, n)
    exact = exact_attention(q, k, v, False)
    dtype = cfg["dtype"]
    base = {
        "n": n,
        "batch": cfg["batch"],
        "heads": cfg["heads"],
        "head_dim": HEAD_DIM,
        "dtype": str(dtype).removeprefix("torch."),
        "inputs": "structured_inputs (smooth hidden states, random projections)",
        "error_of_mean_pooling": mean_pooling_error(v, exact, False),
    }
    rows: list[dict[str, Any]] = []
    for budget in cfg["budgets"]:
        methods = [
            (
                "performer",
                "Performer",
                _performer_budget(performer_peer, q, k, v, exact, budget),
            )
        ]
        if budget <= n:
            methods.append(
                (
                    "nystrom",
                    "Nyström",
                    _nystrom_budget(nystrom_peer, q, k, v, exact, budget),
                )
            )
        for method, title, (candidates, skipped, reference) in methods:
            rows += measure_group(
                "approx_sweep",
                f"{title}, m = {budget}, n = {n}",
                {**base, "method": method, "budget": budget},
                candidates,
                reference,
                device=device,
                settings=settings,
                skipped=skipped,
            )
    return rows


def _budget_pair(
    ours: str,
    run: Callable[[], torch.Tensor],
    exact: torch.Tensor,
    peer: str,
    build_peer,
) -> tuple[list[Candidate], list[tuple[str, str]], str]:
    """kexue's candidate and its peer's at one budget; the peer is the reference when it passed its check
    (``build_peer`` is None when the peer is not installed)."""
    candidates = [Candidate(ours, run, error_vs_exact=relative_error(run(), exact))]
    skipped: list[tuple[str, str]] = []
    if build_peer is None:
        skipped.append((peer, "not installed"))
        return candidates, skipped, ours
    built = _guarded(peer, build_peer, skipped)
    passed = bool(built) and (built[0].check or {}).get("passed", True)
    return candidates + built, skipped, peer if passed else ours


def _projections(budget: int, like: torch.Tensor) -> list[torch.Tensor]:
    """``ERROR_DRAWS`` independent orthogonal projections at one budget; the first is the one timed."""
    generators = (
        torch.Generator().manual_seed(budget * 1000 + i) for i in range(ERROR_DRAWS)
    )
    return [
        orthogonal_gaussian(budget, HEAD_DIM, generator=g).to(like.device, like.dtype)
        for g in generators
    ]


def _error_draws(attend, projections, exact: torch.Tensor) -> dict[str, Any]:
    """The error against exact attention for each projection: Performer's error is random."""
    errors = [relative_error(attend(p), exact) for p in projections]
    return {"error_draws": errors}


def _performer_budget(performer_peer, q, k, v, exact, budget: int):
    projections = _projections(budget, q)
    proj = projections[0]

    def build() -> Candidate:
        layer = peer_performer(performer_peer, proj, False)
        return Candidate(
            "performer-pytorch",
            lambda: layer(q, k, v),
            error_vs_exact=relative_error(layer(q, k, v), exact),
            check=performer_same_features(
                performer_peer, q, k, v, proj, _tol(q.dtype) * 10, exact
            ),
            extra=_error_draws(
                lambda p: peer_performer(performer_peer, p, False)(q, k, v),
                projections,
                exact,
            ),
        )

    candidates, skipped, reference = _budget_pair(
        "kexue performer_attention",
        lambda: performer_attention(q, k, v, proj),
        exact,
        "performer-pytorch",
        None if performer_peer is None else build,
    )
    candidates[0].extra = _error_draws(
        lambda p: performer_attention(q, k, v, p), projections, exact
    )
    return candidates, skipped, reference


def _nystrom_budget(nystrom_peer, q, k, v, exact, budget: int):
    def build() -> Candidate:
        return _nystrom_peer_candidate(nystrom_peer, q, k, v, budget, exact)

    return _budget_pair(
        "kexue nystrom_attention",
        lambda: nystrom_attention(q, k, v, num_landmarks=budget),
        exact,
        "nystrom-attention",
        None if nystrom_peer is None else build,
    )
