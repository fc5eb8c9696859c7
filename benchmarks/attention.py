"""Attention: exact SDPA against kexue's linear attention, Performer, Nyström and
Fastformer as the sequence grows (``attention``, ``attention_causal``); Performer and
Nyström against their PyPI peers at equal budget (``approx_sweep``).

Inputs (:func:`structured_inputs`): ``q, k, v`` are random linear maps of
layer-normalised hidden states that drift smoothly along the sequence, as in a
transformer layer (iid Gaussian queries make softmax attention almost uniform and
measure no approximation fairly); ``(batch, heads, n, 64)``, float32 on the CPU,
bfloat16 on CUDA. An approximation's error is the relative Frobenius error against
float32 SDPA; each group records mean pooling's error as the baseline. Performer uses
``m = 256`` features, Nyström 64 landmarks, the peers the same budget; performer-pytorch
gets kexue's projection (with ``eps = 0`` both agree to rounding); nystrom-attention's
layer runs with the identity for its projections. Fastformer is a whole layer.
"""

from __future__ import annotations

import contextlib
import io
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.harness import compare, relative_error
from benchmarks.registry import (
    Benchmark,
    Candidate,
    Inputs,
    finite,
    grid,
    register,
    unchecked,
)
from kexue.attention.fastformer import FastformerAttention
from kexue.attention.linear import (
    favor_features,
    linear_attention,
    orthogonal_gaussian,
    performer_attention,
)
from kexue.attention.nystrom import nystrom_attention

HEAD_DIM, FEATURES, LANDMARKS = 64, 256, 64
ERROR_DRAWS = 8  # projections per Performer budget whose errors are averaged
CHECK_UP_TO = 4096  # the causal linear check forms the quadratic form up to this n
INPUTS = "structured_inputs (smooth hidden states, random projections)"


def structured_inputs(batch, heads, n, head_dim=HEAD_DIM, *, seed=0, noise=0.3):
    """``q, k, v`` ``(batch, heads, n, head_dim)`` float32: random projections of
    layer-normalised hidden states drifting along the sequence (a random walk of unit
    total variance plus ``noise`` per token); about unit variance per coordinate."""
    g = torch.Generator().manual_seed(seed)
    width = heads * head_dim
    walk = torch.randn(batch, n, width, generator=g).cumsum(1) / math.sqrt(n)
    hidden = F.layer_norm(
        walk + noise * torch.randn(batch, n, width, generator=g), (width,)
    )
    weights = torch.randn(3, width, width, generator=g) / math.sqrt(width)
    return tuple(
        (hidden @ w).view(batch, n, heads, head_dim).transpose(1, 2).contiguous()
        for w in weights
    )


def mean_pooling_error(v: torch.Tensor, exact: torch.Tensor, causal: bool) -> float:
    """Error of uniform attention (the mean of the values seen), the errors' baseline."""
    v = v.float()
    if causal:
        counts = torch.arange(1, v.shape[-2] + 1, device=v.device, dtype=v.dtype)
        return relative_error(v.cumsum(-2) / counts[:, None], exact)
    return relative_error(v.mean(-2, keepdim=True).expand_as(v), exact)


def inputs(size: dict, device: torch.device) -> Inputs:
    """The inputs, float32 SDPA, and the Performer projections: one for the lengths,
    ``ERROR_DRAWS`` for a budget ``m`` of the sweep (the first of them is timed)."""
    n, causal, budget = size["n"], size.get("causal", False), size.get("budget")
    dtype = getattr(torch, size["dtype"])
    q, k, v = structured_inputs(size["batch"], size["heads"], n, seed=n)
    q, k, v = (t.to(device=device, dtype=dtype) for t in (q, k, v))
    exact = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=causal
    )
    seeds = [budget * 1000 + j for j in range(ERROR_DRAWS)] if budget else [0]
    projections = [
        orthogonal_gaussian(
            budget or FEATURES, HEAD_DIM, generator=torch.Generator().manual_seed(s)
        ).to(device, dtype)
        for s in seeds
    ]
    return Inputs(
        q=q,
        k=k,
        v=v,
        exact=exact,
        causal=causal,
        n=n,
        m=budget or LANDMARKS,
        method=size.get("method"),
        proj=projections[0],
        projections=projections,
        tol=1e-4 if dtype == torch.float32 else 2e-2,
    )


def record(i: Inputs) -> dict:
    return {
        "head_dim": HEAD_DIM,
        "inputs": INPUTS,
        "error_of_mean_pooling": mean_pooling_error(i.v, i.exact, i.causal),
    }


def sdpa(backend: SDPBackend):
    def call(i: Inputs) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(i.q, i.k, i.v, is_causal=i.causal)

    return call


def math_too_big(i: Inputs) -> str | None:
    """Why the math backend is skipped: its ``n x n`` scores would not fit."""
    need = 3 * i.q[..., 0].numel() * i.n * max(4, i.q.element_size())
    gpu = i.q.device.type == "cuda"
    limit = (
        0.4 * torch.cuda.get_device_properties(i.q.device).total_memory if gpu else 2e9
    )
    if need > limit:
        return f"would need about {need / 1e9:.1f} GB for the n x n scores"
    return None


def linear_check(i: Inputs, out: torch.Tensor) -> dict | None:
    """Causal linear attention against its quadratic masked form (up to CHECK_UP_TO)."""
    if not i.causal or i.n > CHECK_UP_TO:
        return None
    phi_q, phi_k = F.elu(i.q.float()) + 1, F.elu(i.k.float()) + 1
    weights = (phi_q @ phi_k.mT).tril()
    quadratic = (weights @ i.v.float()) / (weights.sum(-1, keepdim=True) + 1e-6)
    return compare(out, quadratic, tol=i.tol * 10, against="quadratic masked form")


def performer_layer(projection: torch.Tensor, causal: bool):
    import performer_pytorch

    with contextlib.redirect_stdout(io.StringIO()):  # it prints about its CUDA kernel
        layer = performer_pytorch.FastAttention(
            dim_heads=projection.shape[1], nb_features=len(projection), causal=causal
        )
    layer.projection_matrix = projection.clone()
    return layer


def performer_same_features(i: Inputs, out: torch.Tensor) -> dict:
    """With the stabilising ``eps`` at 0, kexue's and performer-pytorch's FAVOR+
    features give the same non-causal output to rounding. Also records their difference
    at the default ``eps`` and the error both have with ``eps = 0``."""
    import performer_pytorch.performer_pytorch as pp

    q, k, v, proj = i.q, i.k, i.v, i.proj
    phi_q = favor_features(q, proj, is_query=True, eps=0.0)
    phi_k = favor_features(k, proj, is_query=False, eps=0.0)
    ours = (phi_q @ (phi_k.mT @ v)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1))
    theirs = pp.linear_attention(
        pp.softmax_kernel(q, projection_matrix=proj, is_query=True, eps=0.0),
        pp.softmax_kernel(k, projection_matrix=proj, is_query=False, eps=0.0),
        v,
    )
    check = compare(theirs, ours, tol=i.tol * 10, against="kexue FAVOR+, both eps = 0")
    default = performer_layer(proj, False)(q, k, v)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return check | {
        "difference_at_default_eps": relative_error(
            default, performer_attention(q, k, v, proj)
        ),
        "error_with_eps_0": relative_error(ours, exact),
    }


def performer_peer(i: Inputs):
    layer = performer_layer(i.proj, i.causal)
    return lambda: layer(i.q, i.k, i.v)


def performer_draws(peer: bool):
    """Errors against exact attention over the projections (Performer's is random)."""

    def attend(i: Inputs, p: torch.Tensor) -> torch.Tensor:
        if peer:
            return performer_layer(p, i.causal)(i.q, i.k, i.v)
        return performer_attention(i.q, i.k, i.v, p, causal=i.causal)

    return lambda i: [relative_error(attend(i, p), i.exact) for p in i.projections]


def nystrom_peer(i: Inputs):
    """nystrom-attention's layer on the given q, k, v (float32: it raises in half),
    heads packed into its input with the identity for its projections."""
    import nystrom_attention as na

    h, d = i.q.shape[1], i.q.shape[3]
    layer = na.NystromAttention(
        h * d, d, h, num_landmarks=i.m, pinv_iterations=6, residual=False
    )
    layer.to_qkv, layer.to_out = nn.Identity(), nn.Identity()  # no parameters left
    packed = torch.cat(
        [t.float().transpose(1, 2).flatten(2) for t in (i.q, i.k, i.v)], -1
    )
    return lambda: layer(packed)


def heads_first(i: Inputs, out: torch.Tensor) -> torch.Tensor:
    return out.unflatten(-1, (i.q.shape[1], -1)).transpose(1, 2)


def nystrom_check(i: Inputs, out: torch.Tensor) -> dict:
    ours = nystrom_attention(i.q, i.k, i.v, num_landmarks=i.m)
    return compare(
        heads_first(i, out), ours, tol=0.05, against="kexue nystrom_attention"
    )


def fastformer(i: Inputs):
    b, h, n, d = i.q.shape
    layer = FastformerAttention(h * d, h).to(device=i.q.device, dtype=i.q.dtype)
    x = i.q.transpose(1, 2).reshape(b, n, h * d).contiguous()
    return torch.no_grad()(lambda: layer(x))


def kexue_performer(i: Inputs) -> torch.Tensor:
    return performer_attention(i.q, i.k, i.v, i.proj, causal=i.causal)


def kexue_nystrom(i: Inputs) -> torch.Tensor:
    return nystrom_attention(i.q, i.k, i.v, num_landmarks=i.m)


NYSTROM_PEER = dict(
    make=nystrom_peer, peer="nystrom_attention", approx=True, view=heads_first
)
PERFORMER_PEER = dict(make=performer_peer, peer="performer_pytorch", approx=True)
LENGTHS = {
    "quick": ((64, 128), (1, 2, "float32")),
    "cpu": ((256, 512, 1024, 2048, 4096), (1, 4, "float32")),
    "cuda": ((256, 512, 1024, 2048, 4096, 8192, 16384), (2, 8, "bfloat16")),
    "short": ((1024, 8192), (2, 8, "bfloat16")),
}


def length_suite(causal: bool) -> Benchmark:
    s = ", causal" if causal else ""
    performer = f"performer-pytorch{s}"
    candidates = [
        Candidate(
            f"SDPA flash{s}",
            sdpa(SDPBackend.FLASH_ATTENTION),
            check=lambda i, out: compare(
                out, i.exact, tol=i.tol * 10, against="float32 SDPA"
            ),
        ),
        Candidate(
            f"SDPA math{s}", sdpa(SDPBackend.MATH), skip=math_too_big, check=unchecked
        ),
        Candidate(
            f"kexue linear_attention{s}",
            lambda i: linear_attention(i.q, i.k, i.v, causal=i.causal),
            "elu + 1 features; not an approximation of softmax",
            check=linear_check,
        ),
        Candidate(
            f"kexue performer_attention{s}",
            kexue_performer,
            f"m = {FEATURES}",
            approx=True,
            versus=performer,
        ),
        Candidate(
            performer,
            note=f"m = {FEATURES}, kexue's projection"
            + ("; its non-CUDA causal loop" if causal else ""),
            check=performer_same_features,
            **PERFORMER_PEER,
        ),
    ]
    if not causal:
        candidates += [
            Candidate(
                "kexue nystrom_attention",
                kexue_nystrom,
                f"{LANDMARKS} landmarks, 6 pinv iterations",
                approx=True,
                versus="nystrom-attention",
            ),
            Candidate(
                "nystrom-attention",
                note="its forward includes the head merge; float32 inputs",
                check=nystrom_check,
                **NYSTROM_PEER,
            ),
            Candidate(
                "kexue FastformerAttention",
                note="a layer: includes its projections",
                make=fastformer,
                check=finite,
            ),
        ]
    return Benchmark(
        name="attention_causal" if causal else "attention",
        sizes={
            kind: grid(n=ns, batch=b, heads=h, dtype=dtype, causal=causal)
            for kind, (ns, (b, h, dtype)) in LENGTHS.items()
        },
        inputs=inputs,
        expected=lambda i: i.exact,  # float32 SDPA: the approximations' errors
        group=lambda size: f"n = {size['n']}{s}",
        params=lambda i: record(i) | {"features": FEATURES, "landmarks": LANDMARKS},
        candidates=candidates,
    )


register(length_suite(False))
register(length_suite(True))


def sweep(n: int, budgets, batch: int, heads: int, dtype: str) -> list[dict]:
    return [
        dict(n=n, batch=batch, heads=heads, dtype=dtype, method=x, budget=m)
        for m in budgets
        for x in ("performer", "nystrom")
        if x == "performer" or m <= n
    ]


def method(name: str):
    return lambda i: i.method == name


register(
    Benchmark(
        name="approx_sweep",
        sizes={
            "quick": sweep(128, (16, 32), 1, 2, "float32"),
            "cpu": sweep(1024, (16, 32, 64, 128, 256), 1, 4, "float32"),
            "cuda": sweep(4096, (16, 32, 64, 128, 256, 512), 2, 8, "bfloat16"),
            "short": sweep(4096, (32, 256), 2, 8, "bfloat16"),
        },
        inputs=inputs,
        expected=lambda i: i.exact,
        group=lambda s: (
            f"{'Performer' if s['method'] == 'performer' else 'Nyström'}, "
            f"m = {s['budget']}, n = {s['n']}"
        ),
        params=record,
        reference=("performer-pytorch", "nystrom-attention"),
        candidates=[
            Candidate(
                "kexue performer_attention",
                kexue_performer,
                approx=True,
                draws=performer_draws(peer=False),
                when=method("performer"),
                versus="performer-pytorch",
            ),
            Candidate(
                "performer-pytorch",
                check=performer_same_features,
                draws=performer_draws(peer=True),
                when=method("performer"),
                **PERFORMER_PEER,
            ),
            Candidate(
                "kexue nystrom_attention",
                kexue_nystrom,
                approx=True,
                when=method("nystrom"),
                versus="nystrom-attention",
            ),
            Candidate(
                "nystrom-attention",
                check=nystrom_check,
                when=method("nystrom"),
                **NYSTROM_PEER,
            ),
        ],
    )
)
