"""Attention: exact SDPA against kexue's linear attention, Performer, Nyström and
Fastformer as the sequence grows (``attention``, ``attention_causal``); Performer and
Nyström against their PyPI peers at equal budget (``approx_sweep``); relu² attention
and the gated attention unit against SDPA (``relu2``, ``gau``).

Inputs (:func:`structured_inputs`): as in a transformer layer, ``q, k, v`` are random
linear maps of layer-normalised hidden states that drift smoothly along the sequence
(iid Gaussian queries make softmax attention almost uniform and measure no
approximation fairly). Shape ``(batch, heads, n, 64)``, float32 on the CPU, bfloat16
on CUDA. An approximation's error is the relative Frobenius error against float32
SDPA of the same inputs; each group records mean pooling's error as the baseline.
Performer uses ``m = 256`` features, Nyström 64 landmarks, the peers the same budget;
performer-pytorch gets kexue's projection (checked: with ``eps = 0`` both agree to
rounding). nystrom-attention's layer runs with its projections replaced by the
identity. Fastformer is a whole layer (its projections included).
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
from benchmarks.registry import Benchmark, Candidate, Inputs, register
from kexue.attention.fastformer import FastformerAttention
from kexue.attention.gau import GatedAttentionUnit, relu2_attention
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
    n, causal = size["n"], size.get("causal", False)
    q, k, v = structured_inputs(size["batch"], size["heads"], n, seed=n)
    dtype = getattr(torch, size["dtype"])
    q, k, v = (t.to(device=device, dtype=dtype) for t in (q, k, v))
    exact = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=causal
    )
    features = size.get("budget", FEATURES)  # Performer's m; Nyström's is i.m
    seeds = (
        [features * 1000 + j for j in range(ERROR_DRAWS)] if "budget" in size else [0]
    )
    projections = [
        orthogonal_gaussian(
            features, HEAD_DIM, generator=torch.Generator().manual_seed(x)
        ).to(device, dtype)
        for x in seeds
    ]
    m = size.get("budget", LANDMARKS)
    return Inputs(
        q=q,
        k=k,
        v=v,
        exact=exact,
        causal=causal,
        n=n,
        m=m,
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
    b, h, n, _ = i.q.shape
    need = 3 * b * h * n * n * max(4, i.q.element_size())
    dev = i.q.device
    limit = (
        0.4 * torch.cuda.get_device_properties(dev).total_memory
        if dev.type == "cuda"
        else 2e9
    )
    return (
        f"would need about {need / 1e9:.1f} GB for the n x n scores"
        if need > limit
        else None
    )


def linear_check(i: Inputs, out: torch.Tensor) -> dict | None:
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
            dim_heads=projection.shape[1],
            nb_features=projection.shape[0],
            causal=causal,
        )
    layer.projection_matrix = projection.clone()
    return layer


def performer_same_features(i: Inputs, out: torch.Tensor) -> dict:
    """kexue and performer-pytorch compute the same FAVOR+ features: with the
    stabilising ``eps`` at 0 their non-causal outputs agree to rounding. Also records
    their difference at the default ``eps`` and the error both have with ``eps = 0``."""
    import performer_pytorch.performer_pytorch as pp

    q, k, v, proj = i.q, i.k, i.v, i.proj
    phi_q = favor_features(q, proj, is_query=True, eps=0.0)
    phi_k = favor_features(k, proj, is_query=False, eps=0.0)
    ours = (phi_q @ (phi_k.mT @ v)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1))
    kernel = pp.softmax_kernel
    theirs = pp.linear_attention(
        kernel(q, projection_matrix=proj, is_query=True, eps=0.0),
        kernel(k, projection_matrix=proj, is_query=False, eps=0.0),
        v,
    )
    check = compare(theirs, ours, tol=i.tol * 10, against="kexue FAVOR+, both eps = 0")
    default = performer_layer(proj, False)(q, k, v)
    check["difference_at_default_eps"] = relative_error(
        default, performer_attention(q, k, v, proj)
    )
    exact = (
        i.exact
        if not i.causal
        else F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    )
    check["error_with_eps_0"] = relative_error(ours, exact)
    return check


def nystrom_peer(i: Inputs):
    """nystrom-attention's layer on the given q, k, v (float32: it raises in half)."""
    import nystrom_attention as na

    b, h, n, d = i.q.shape
    layer = na.NystromAttention(
        dim=h * d,
        dim_head=d,
        heads=h,
        num_landmarks=i.m,
        pinv_iterations=6,
        residual=False,
    )
    packed = torch.cat(
        [t.float().transpose(1, 2).reshape(b, n, h * d) for t in (i.q, i.k, i.v)], -1
    )
    layer.to_qkv = _Constant(packed)
    layer.to_out = nn.Identity()
    layer = layer.to(i.q.device)
    return lambda: layer(packed)


def nystrom_check(i: Inputs, out: torch.Tensor) -> dict:
    ours = nystrom_attention(i.q, i.k, i.v, num_landmarks=i.m)
    return compare(
        _heads_first(i, out), ours, tol=0.05, against="kexue nystrom_attention"
    )


def _heads_first(i: Inputs, out: torch.Tensor) -> torch.Tensor:
    b, h, n, d = i.q.shape
    return out.view(b, n, h, d).transpose(1, 2)


class _Constant(nn.Module):
    """Stands in for a projection: returns a fixed tensor whatever the input."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


def fastformer(i: Inputs):
    b, h, n, d = i.q.shape
    layer = FastformerAttention(h * d, h).to(device=i.q.device, dtype=i.q.dtype)
    x = i.q.transpose(1, 2).reshape(b, n, h * d).contiguous()
    return torch.no_grad()(lambda: layer(x))


def finite(i: Inputs, out: torch.Tensor) -> dict:
    return {"against": "finite output", "passed": bool(torch.isfinite(out).all())}


def none(i: Inputs, out: object) -> None:
    return None


def draws(attend):
    """Errors against exact attention over the projections (Performer's is random)."""
    return lambda i: [relative_error(attend(i, p), i.exact) for p in i.projections]


def kexue_performer(i: Inputs, p: torch.Tensor) -> torch.Tensor:
    return performer_attention(i.q, i.k, i.v, p, causal=i.causal)


def peer_performer(i: Inputs, p: torch.Tensor) -> torch.Tensor:
    return performer_layer(p, i.causal)(i.q, i.k, i.v)


def lengths(causal: bool, kind: str) -> list[dict]:
    ns, shape = {
        "quick": ((64, 128), (1, 2, "float32")),
        "cpu": ((256, 512, 1024, 2048, 4096), (1, 4, "float32")),
        "cuda": ((256, 512, 1024, 2048, 4096, 8192, 16384), (2, 8, "bfloat16")),
        "short": ((1024, 8192), (2, 8, "bfloat16")),
    }[kind]
    return [
        dict(
            zip(("n", "batch", "heads", "dtype"), (n, *shape), strict=True),
            causal=causal,
        )
        for n in ns
    ]


def _suffix(causal: bool) -> str:
    return ", causal" if causal else ""


def performer_peer(i: Inputs):
    layer = performer_layer(i.proj, i.causal)
    return lambda: layer(i.q, i.k, i.v)


def length_suite(causal: bool) -> Benchmark:
    s = _suffix(causal)
    candidates = [
        Candidate(
            f"SDPA flash{s}",
            sdpa(SDPBackend.FLASH_ATTENTION),
            check=lambda i, out: compare(
                out, i.exact, tol=i.tol * 10, against="float32 SDPA"
            ),
        ),
        Candidate(
            f"SDPA math{s}", sdpa(SDPBackend.MATH), skip=math_too_big, check=none
        ),
        Candidate(
            f"kexue linear_attention{s}",
            lambda i: linear_attention(i.q, i.k, i.v, causal=i.causal),
            check=linear_check,
            note="elu + 1 features; not an approximation of softmax",
        ),
        Candidate(
            f"kexue performer_attention{s}",
            lambda i: kexue_performer(i, i.proj),
            approx=True,
            note=f"m = {FEATURES}",
        ),
        Candidate(
            f"performer-pytorch{s}",
            make=performer_peer,
            peer="performer_pytorch",
            approx=True,
            check=performer_same_features,
            note=f"m = {FEATURES}, kexue's projection"
            + ("; its non-CUDA causal loop" if causal else ""),
        ),
    ]
    if not causal:
        candidates += [
            Candidate(
                "kexue nystrom_attention",
                lambda i: nystrom_attention(i.q, i.k, i.v, num_landmarks=LANDMARKS),
                approx=True,
                note=f"{LANDMARKS} landmarks, 6 pinv iterations",
            ),
            Candidate(
                "nystrom-attention",
                make=nystrom_peer,
                peer="nystrom_attention",
                approx=True,
                view=_heads_first,
                check=nystrom_check,
                note="its forward includes the head merge; float32 inputs",
            ),
            Candidate(
                "kexue FastformerAttention",
                make=fastformer,
                check=finite,
                note="a layer: includes its projections",
            ),
        ]
    return Benchmark(
        name="attention_causal" if causal else "attention",
        sizes={k: lengths(causal, k) for k in ("quick", "cpu", "cuda", "short")},
        inputs=inputs,
        expected=lambda i: i.exact,  # float32 SDPA: the approximations' errors
        group=lambda size: f"n = {size['n']}{s}",
        params=lambda i: {**record(i), "features": FEATURES, "landmarks": LANDMARKS},
        candidates=candidates,
        reference=(f"SDPA flash{s}", f"SDPA math{s}"),
        versus={
            f"kexue performer_attention{s}": f"performer-pytorch{s}",
            **({} if causal else {"kexue nystrom_attention": "nystrom-attention"}),
        },
    )


register(length_suite(False))
register(length_suite(True))


def sweep_sizes(n: int, budgets, batch: int, heads: int, dtype: str) -> list[dict]:
    base = {"n": n, "batch": batch, "heads": heads, "dtype": dtype}
    return [
        {**base, "method": method, "budget": m}
        for m in budgets
        for method in ("performer", "nystrom")
        if method == "performer" or m <= n
    ]


def _is(method: str):
    return lambda i: i.method == method


register(
    Benchmark(
        name="approx_sweep",
        sizes={
            "quick": sweep_sizes(128, (16, 32), 1, 2, "float32"),
            "cpu": sweep_sizes(1024, (16, 32, 64, 128, 256), 1, 4, "float32"),
            "cuda": sweep_sizes(4096, (16, 32, 64, 128, 256, 512), 2, 8, "bfloat16"),
            "short": sweep_sizes(4096, (32, 256), 2, 8, "bfloat16"),
        },
        expected=lambda i: i.exact,
        inputs=lambda size, device: Inputs(
            **vars(inputs(size, device)), method=size["method"]
        ),
        group=lambda s: (
            f"{'Performer' if s['method'] == 'performer' else 'Nyström'}, m = {s['budget']}, n = {s['n']}"
        ),
        params=record,
        candidates=[
            Candidate(
                "kexue performer_attention",
                lambda i: kexue_performer(i, i.proj),
                approx=True,
                draws=draws(kexue_performer),
                when=_is("performer"),
            ),
            Candidate(
                "performer-pytorch",
                make=performer_peer,
                peer="performer_pytorch",
                approx=True,
                check=performer_same_features,
                draws=draws(peer_performer),
                when=_is("performer"),
            ),
            Candidate(
                "kexue nystrom_attention",
                lambda i: nystrom_attention(i.q, i.k, i.v, num_landmarks=i.m),
                approx=True,
                when=_is("nystrom"),
            ),
            Candidate(
                "nystrom-attention",
                make=nystrom_peer,
                peer="nystrom_attention",
                approx=True,
                view=_heads_first,
                check=nystrom_check,
                when=_is("nystrom"),
            ),
        ],
        reference=(
            "performer-pytorch",
            "nystrom-attention",
            "kexue performer_attention",
            "kexue nystrom_attention",
        ),
        versus={
            "kexue performer_attention": "performer-pytorch",
            "kexue nystrom_attention": "nystrom-attention",
        },
    )
)


# --- relu² attention and the gated attention unit against SDPA --------------------------
def single_head(size: dict, device: torch.device) -> Inputs:
    """GAU's shapes: one head, keys of width s = 128, values of width e (here 2 s)."""
    g = torch.Generator().manual_seed(size["n"])
    b, n, s = size["batch"], size["n"], 128
    q, k = (torch.randn(b, n, s, generator=g).to(device) for _ in range(2))
    v = torch.randn(b, n, 2 * s, generator=g).to(device)
    return Inputs(q=q, k=k, v=v, n=n)


def relu2_exact(i: Inputs) -> torch.Tensor:
    q, k, v = (t.double() for t in (i.q, i.k, i.v))
    return (F.relu(q @ k.mT / math.sqrt(q.shape[-1])).square() / i.n) @ v


def relu2_explicit(i: Inputs) -> torch.Tensor:
    """relu² attention as one writes it: two matmuls and the elementwise steps."""
    scores = i.q @ i.k.mT / math.sqrt(i.q.shape[-1])
    return (F.relu(scores).square() / i.n) @ i.v


def softmax_check(i: Inputs, out: torch.Tensor) -> dict:
    exact = F.scaled_dot_product_attention(i.q.double(), i.k.double(), i.v.double())
    return compare(out, exact, tol=1e-4, against="float64 softmax attention")


SEQ = {
    "quick": [{"n": 64, "batch": 1}],
    "cpu": [{"n": n, "batch": 4} for n in (256, 1024, 2048)],
    "cuda": [{"n": n, "batch": 16} for n in (512, 2048, 8192)],
}
register(
    Benchmark(
        name="relu2",
        sizes=SEQ,
        inputs=single_head,
        expected=relu2_exact,
        tol=1e-5,
        candidates=[
            Candidate(
                "SDPA (softmax)",
                lambda i: F.scaled_dot_product_attention(i.q, i.k, i.v),
                check=softmax_check,
                note="the attention people call; softmax, not relu²",
            ),
            Candidate(
                "kexue relu2_attention", lambda i: relu2_attention(i.q, i.k, i.v)
            ),
            Candidate(
                "relu² written out", relu2_explicit, note="matmul, relu, square, matmul"
            ),
        ],
        reference="SDPA (softmax)",
        versus={"kexue relu2_attention": "SDPA (softmax)"},
    )
)


def gau_inputs(size: dict, device: torch.device) -> Inputs:
    torch.manual_seed(0)
    unit = GatedAttentionUnit(384, key_dim=128).to(device).eval()
    soft = GatedAttentionUnit(384, key_dim=128, attention="softmax").to(device).eval()
    soft.load_state_dict(unit.state_dict())
    x = torch.randn(size["batch"], size["n"], 384, device=device)
    return Inputs(x=x, unit=unit, soft=soft)


def gau_sdpa(i: Inputs) -> torch.Tensor:
    """The GAU with its attention by SDPA: the same projections and output layer."""
    u, v, q, k = i.unit._project(i.x)
    return i.unit.dense_out(u * F.scaled_dot_product_attention(q, k, v))


register(
    Benchmark(
        name="gau",
        sizes={
            "quick": [{"n": 64, "batch": 1}],
            "cpu": [{"n": 256, "batch": 4}, {"n": 1024, "batch": 4}],
            "cuda": [{"n": 2048, "batch": 16}, {"n": 8192, "batch": 4}],
        },
        inputs=gau_inputs,
        expected=lambda i: i.soft(i.x),
        tol=1e-5,
        candidates=[
            Candidate(
                "GAU, attention by SDPA", torch.no_grad()(gau_sdpa), note="softmax"
            ),
            Candidate(
                "kexue GatedAttentionUnit, softmax",
                torch.no_grad()(lambda i: i.soft(i.x)),
            ),
            Candidate(
                "kexue GatedAttentionUnit, relu²",
                torch.no_grad()(lambda i: i.unit(i.x)),
                check=finite,
                note="dim 384, e = 768, s = 128, RoPE",
            ),
        ],
        reference="GAU, attention by SDPA",
        versus={
            "kexue GatedAttentionUnit, relu²": "GAU, attention by SDPA",
            "kexue GatedAttentionUnit, softmax": "GAU, attention by SDPA",
        },
    )
)
