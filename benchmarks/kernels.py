"""The chapters' kernels against the libraries people use, one declaration each.

* ``masked_softmax``: against ``torch.masked.softmax`` (the reference) and the
  ``masked_fill(-inf)`` + ``softmax`` people write, attention logits ``(batch, heads,
  n, n)`` with a key-padding mask ``(batch, 1, 1, n)``; with the floor rows.
* ``relu2`` and ``gau``: relu² attention and the gated attention unit against SDPA
  (softmax attention, which a GAU user would otherwise call); relu² also written out.
* ``globalpointer``: the span scores of ``GlobalPointer`` against the same computation
  written out (dense, cached RoPE tables, ``einsum``, lower triangle to ``-inf``).
* ``exact_w1``: against POT, ``ot.emd2(a, b, ot.dist(x, y, metric="euclidean"))``.
* ``knn_entropy``: against entropy-estimators' ``continuous.get_h`` (a KD-tree; its
  estimate is ours plus ``d log 2``, see tests/generative/test_eae.py), checked against
  each other; the error recorded is against the Gaussian's closed-form entropy.
* ``map_equation`` and ``find_modules``: against the ``infomap`` package (C++), on
  planted-partition graphs; code lengths must agree (1e-9 bits for a given partition,
  within 1% for the search).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F

from benchmarks.harness import compare
from benchmarks.registry import (
    Benchmark,
    Candidate,
    Inputs,
    finite,
    grid,
    peer,
    register,
)
from kexue.attention.gau import GatedAttentionUnit, relu2_attention
from kexue.foundations.masking import masked_softmax
from kexue.generative.eae import knn_entropy
from kexue.generative.wgan import exact_w1
from kexue.graphs.infomap import find_modules, map_equation
from kexue.positions.rope import rope_cos_sin
from kexue.representations.globalpointer import GlobalPointer


# --- masked softmax ----------------------------------------------------------------------
def logits(size: dict, device: torch.device) -> Inputs:
    b, h, n = size["batch"], size["heads"], size["n"]
    g = torch.Generator().manual_seed(n)
    x = torch.randn(b, h, n, n, generator=g).to(device)
    mask = torch.rand(b, 1, 1, n, generator=g).to(device) > 0.2
    mask[..., 0] = True  # every row keeps a key: all candidates agree on every entry
    return Inputs(x=x, mask=mask)


TORCH = "torch.masked.softmax"


def softmax_exact(i: Inputs) -> torch.Tensor:
    return torch.softmax(i.x.double().masked_fill(~i.mask, -math.inf), -1)


register(
    Benchmark(
        name="masked_softmax",
        sizes={
            "quick": grid(batch=1, heads=2, n=32),
            "cpu": grid(batch=2, heads=8, n=(256, 1024)),
            "cuda": grid(batch=8, heads=16, n=(1024, 4096)),
        },
        inputs=logits,
        expected=softmax_exact,
        tol=1e-6,
        floor=True,
        candidates=[
            Candidate(TORCH, lambda i: torch.masked.softmax(i.x, -1, mask=i.mask)),
            Candidate(
                "kexue masked_softmax",
                lambda i: masked_softmax(i.x, i.mask),
                versus=TORCH,
            ),
            Candidate(
                "masked_fill + softmax",
                lambda i: torch.softmax(i.x.masked_fill(~i.mask, -math.inf), -1),
                "NaN for a row with no key",
            ),
        ],
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


def relu2_written_out(i: Inputs) -> torch.Tensor:
    """relu² attention as one writes it: two matmuls and the elementwise steps."""
    scores = i.q @ i.k.mT / math.sqrt(i.q.shape[-1])
    return (F.relu(scores).square() / i.n) @ i.v


def softmax_check(i: Inputs, out: torch.Tensor) -> dict:
    exact = F.scaled_dot_product_attention(i.q.double(), i.k.double(), i.v.double())
    return compare(out, exact, tol=1e-4, against="float64 softmax attention")


register(
    Benchmark(
        name="relu2",
        sizes={
            "quick": grid(n=64, batch=1),
            "cpu": grid(n=(256, 1024, 2048), batch=4),
            "cuda": grid(n=(512, 2048, 8192), batch=16),
        },
        inputs=single_head,
        expected=lambda i: relu2_written_out(
            Inputs(q=i.q.double(), k=i.k.double(), v=i.v.double(), n=i.n)
        ),
        candidates=[
            Candidate(
                "SDPA (softmax)",
                lambda i: F.scaled_dot_product_attention(i.q, i.k, i.v),
                "the attention people call; softmax, not relu²",
                check=softmax_check,
            ),
            Candidate(
                "kexue relu2_attention",
                lambda i: relu2_attention(i.q, i.k, i.v),
                versus="SDPA (softmax)",
            ),
            Candidate(
                "relu² written out", relu2_written_out, "matmul, relu, square, matmul"
            ),
        ],
    )
)


def gau_inputs(size: dict, device: torch.device) -> Inputs:
    torch.manual_seed(0)
    unit = GatedAttentionUnit(384, key_dim=128).to(device).eval()
    soft = GatedAttentionUnit(384, key_dim=128, attention="softmax").to(device).eval()
    soft.load_state_dict(unit.state_dict())
    x = torch.randn(size["batch"], size["n"], 384, device=device)
    return Inputs(x=x, unit=unit, soft=soft)


@torch.no_grad()
def gau_sdpa(i: Inputs) -> torch.Tensor:
    """The GAU with its attention by SDPA: the same projections and output layer."""
    u, v, q, k = i.unit._project(i.x)
    return i.unit.dense_out(u * F.scaled_dot_product_attention(q, k, v))


GAU_SDPA = "GAU, attention by SDPA"
register(
    Benchmark(
        name="gau",
        sizes={
            "quick": grid(n=64, batch=1),
            "cpu": grid(n=(256, 1024), batch=4),
            "cuda": [{"n": 2048, "batch": 16}, {"n": 8192, "batch": 4}],
        },
        inputs=gau_inputs,
        expected=lambda i: i.soft(i.x),
        candidates=[
            Candidate(GAU_SDPA, gau_sdpa, "softmax"),
            Candidate(
                "kexue GatedAttentionUnit, softmax",
                torch.no_grad()(lambda i: i.soft(i.x)),
                versus=GAU_SDPA,
            ),
            Candidate(
                "kexue GatedAttentionUnit, relu²",
                torch.no_grad()(lambda i: i.unit(i.x)),
                "dim 384, e = 768, s = 128, RoPE",
                check=finite,
                versus=GAU_SDPA,
            ),
        ],
    )
)


# --- GlobalPointer ------------------------------------------------------------------------
def pointer(size: dict, device: torch.device) -> Inputs:
    torch.manual_seed(0)
    b, n, types = size["batch"], size["n"], size["types"]
    module = GlobalPointer(768, types, 64).to(device).eval()
    x = torch.randn(b, n, 768, device=device)
    cos, sin = rope_cos_sin(torch.arange(n, device=device), 64)
    return Inputs(x=x, module=module, cos=cos, sin=sin)


def spans_written_out(i: Inputs) -> torch.Tensor:
    """bert4keras's GlobalPointer spelled out: per type a query and a key, interleaved
    RoPE from cached tables, all span scores by one einsum, ``-inf`` below the diagonal."""
    b, n, _ = i.x.shape
    qk = i.module.dense(i.x).view(b, n, -1, 2, 64)
    q, k = qk[..., 0, :], qk[..., 1, :]  # (b, n, types, 64)
    cos, sin = i.cos[:, None], i.sin[:, None]

    def rope(t: torch.Tensor) -> torch.Tensor:
        t0, t1 = t[..., 0::2], t[..., 1::2]
        return torch.stack((t0 * cos - t1 * sin, t1 * cos + t0 * sin), -1).flatten(-2)

    scores = torch.einsum("bmhd,bnhd->bhmn", rope(q), rope(k)) / 8.0
    below = torch.ones(n, n, dtype=torch.bool, device=i.x.device).tril(-1)
    return scores.masked_fill(below, -math.inf)


def finite_part(i: Inputs, out: torch.Tensor) -> dict:
    """The finite scores against float64, and ``-inf`` exactly where it belongs."""
    module = copy.deepcopy(i.module).double()
    f64 = Inputs(x=i.x.double(), module=module, cos=i.cos.double(), sin=i.sin.double())
    exact = spans_written_out(f64)
    keep = torch.isfinite(exact)
    check = compare(out[keep], exact[keep], tol=1e-5, against="float64, written out")
    return check | {"passed": check["passed"] and bool((out.isfinite() == keep).all())}


register(
    Benchmark(
        name="globalpointer",
        sizes={
            "quick": grid(batch=1, n=16, types=2),
            "cpu": grid(batch=8, n=(128, 512), types=9),
            "cuda": grid(batch=32, n=512, types=9),
        },
        inputs=pointer,
        candidates=[
            Candidate(
                "einsum written out",
                torch.no_grad()(spans_written_out),
                "dense, cached RoPE tables, einsum, -inf below the diagonal",
                check=finite_part,
            ),
            Candidate(
                "kexue GlobalPointer",
                torch.no_grad()(lambda i: i.module(i.x)),
                "hidden 768, head_size 64; RoPE tables per call",
                check=finite_part,
                versus="einsum written out",
            ),
        ],
    )
)


# --- exact W1 against POT ----------------------------------------------------------------
def clouds(size: dict, device: torch.device) -> Inputs:
    g = torch.Generator().manual_seed(size["n"])
    x = torch.randn(size["n"], size["d"], generator=g, dtype=torch.float64)
    y = torch.randn(size["m"], size["d"], generator=g, dtype=torch.float64) + 0.5
    return Inputs(x=x.to(device), y=y.to(device))


def pot_w1(i: Inputs) -> torch.Tensor:
    import ot

    a = torch.full((len(i.x),), 1 / len(i.x), dtype=i.x.dtype, device=i.x.device)
    b = torch.full((len(i.y),), 1 / len(i.y), dtype=i.y.dtype, device=i.y.device)
    return ot.emd2(a, b, ot.dist(i.x, i.y, metric="euclidean"))


register(
    Benchmark(
        name="exact_w1",
        sizes={
            "quick": [{"n": 16, "m": 12, "d": 2}],
            "cpu": [
                {"n": 256, "m": 256, "d": 2},
                {"n": 300, "m": 200, "d": 16},
                {"n": 1024, "m": 1024, "d": 2},
            ],
        },
        inputs=clouds,
        expected=lambda i: pot_w1(i) if peer("ot") else exact_w1(i.x, i.y),
        tol=1e-9,
        candidates=[
            Candidate(
                "POT ot.emd2", pot_w1, "network simplex on the cost matrix", peer="ot"
            ),
            Candidate(
                "kexue exact_w1",
                lambda i: exact_w1(i.x, i.y),
                "scipy linear_sum_assignment on the lcm(n, m) repeated clouds",
                versus="POT ot.emd2",
            ),
        ],
    )
)


# --- k-NN entropy against entropy-estimators ------------------------------------------
def samples(size: dict, device: torch.device) -> Inputs:
    g = torch.Generator().manual_seed(size["n"])
    x = torch.randn(size["n"], size["d"], generator=g, dtype=torch.float64)
    return Inputs(x=x.to(device), numpy=x.numpy(), d=size["d"])


KEXUE_H = "kexue knn_entropy"


def get_h(i: Inputs) -> torch.Tensor:
    from entropy_estimators import continuous

    value = continuous.get_h(i.numpy, k=1, norm="euclidean") - i.d * math.log(2)
    return torch.tensor(value, dtype=torch.float64)


register(
    Benchmark(
        name="knn_entropy",
        sizes={
            "quick": [{"n": 100, "d": 2}],
            "cpu": [{"n": 1000, "d": 2}, {"n": 4000, "d": 8}],
            "cuda": [{"n": 16000, "d": 8}],
        },
        inputs=samples,
        expected=lambda i: torch.tensor(
            0.5 * i.d * math.log(2 * math.pi * math.e), dtype=torch.float64
        ),
        candidates=[
            Candidate(
                "entropy-estimators get_h",
                get_h,
                "scipy KD-tree on the CPU; minus d log 2 (its diameter convention)",
                peer="entropy_estimators",
                approx=True,
                check=lambda i, out: compare(
                    out.to(i.x.device), knn_entropy(i.x), tol=1e-9, against=KEXUE_H
                ),
            ),
            Candidate(
                KEXUE_H,
                lambda i: knn_entropy(i.x),
                "brute-force distances in blocks of 4096 rows",
                approx=True,
                versus="entropy-estimators get_h",
            ),
        ],
    )
)


# --- the map equation against infomap ---------------------------------------------------
def planted(size: dict, device: torch.device) -> Inputs:
    """A planted partition: ``groups`` of ``per`` nodes, mean degree 10, a share 0.3 of
    each node's edges leaving its group."""
    import networkx as nx

    k, per, mu, degree = size["groups"], size["per"], 0.3, 10
    inside, across = degree * (1 - mu) / (per - 1), degree * mu / (per * (k - 1))
    g = nx.planted_partition_graph(k, per, inside, across, seed=1)
    blocks = [int(g.nodes[v]["block"]) for v in g]  # the nodes are 0, 1, ... in order
    return Inputs(
        adj=torch.tensor(nx.to_numpy_array(g), device=device),
        truth=torch.tensor(blocks, device=device),
        links=[(int(a), int(b), 1.0) for a, b in g.edges],
        partition=dict(enumerate(blocks)),
    )


def infomap_run(i: Inputs, **options):
    import infomap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return infomap.run(i.links, two_level=True, silent=True, **options)


def codelength(i: Inputs, out) -> torch.Tensor:
    value = out[1] if isinstance(out, tuple) else getattr(out, "codelength", out)
    return torch.tensor(float(value), dtype=torch.float64)


def planted_length(i: Inputs) -> torch.Tensor:
    """The code length of the planted partition (teleportation 0: undirected flow)."""
    return codelength(i, map_equation(i.adj, i.truth, teleportation=0.0))


GRAPHS = {
    "quick": [{"groups": 3, "per": 20}],
    "cpu": [
        {"groups": 6, "per": 20},
        {"groups": 10, "per": 50},
        {"groups": 20, "per": 50},
    ],
}
register(
    Benchmark(
        name="map_equation",
        sizes=GRAPHS,
        inputs=planted,
        expected=planted_length,
        tol=1e-9,
        candidates=[
            Candidate(
                "infomap, no_infomap",
                lambda i: infomap_run(
                    i, no_infomap=True, initial_partition=i.partition
                ),
                "code length of the given partition",
                peer="infomap",
                view=codelength,
            ),
            Candidate(
                "kexue map_equation",
                lambda i: map_equation(i.adj, i.truth, teleportation=0.0),
                "undirected flow (teleportation 0)",
                view=codelength,
                versus="infomap, no_infomap",
            ),
        ],
    )
)
register(
    Benchmark(
        name="find_modules",
        sizes={**GRAPHS, "cpu": GRAPHS["cpu"][:2]},  # a Python search: seconds beyond
        inputs=planted,
        expected=planted_length,
        tol=0.01,
        candidates=[
            Candidate(
                "infomap",
                lambda i: infomap_run(i, seed=1),
                "C++ search, one trial (num_trials=1)",
                peer="infomap",
                view=codelength,
            ),
            Candidate(
                "kexue find_modules",
                lambda i: find_modules(
                    i.adj, teleportation=0.0, generator=torch.Generator().manual_seed(0)
                ),
                "Python search, one trial",
                view=codelength,
                versus="infomap",
            ),
        ],
    )
)
