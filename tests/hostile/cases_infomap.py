"""Hostile inputs for ``kexue.graphs`` (InfoMap: flow, map equation, module search),
against float64 references written here from the definitions."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, finite

import kexue.graphs as G

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error


def ring(n: int, device, dtype=F64) -> torch.Tensor:
    """A directed ring a -> a+1: the walk visits every node equally often."""
    adj = torch.zeros(n, n, dtype=dtype, device=device)
    adj[torch.arange(n), (torch.arange(n) + 1) % n] = 1
    return adj


def two_cliques(device, dtype=F64) -> torch.Tensor:
    """Two triangles joined by one edge (undirected)."""
    adj = torch.zeros(6, 6, dtype=dtype, device=device)
    for a, b in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)]:
        adj[a, b] = adj[b, a] = 1
    return adj


def plogp(x: float) -> float:
    return x * math.log2(x) if x > 0 else 0.0


def two_cliques_length64() -> float:
    """L of the two triangles, undirected flow: p = degree / 14, q_i = 1 / 14."""
    p = [2 / 14, 2 / 14, 3 / 14, 3 / 14, 2 / 14, 2 / 14]
    q, inside = 1 / 14, 7 / 14
    return (
        plogp(2 * q)
        - 2 * 2 * plogp(q)
        - sum(plogp(x) for x in p)
        + 2 * plogp(q + inside)
    )


# ------------------------------------------------------------------ flow
@case("graphs.flow", "directed ring: uniform rates, link flow (1 - tau)/n", "value")
def _(device):
    node, link = G.flow(ring(5, device))
    close(node, torch.full((5,), 0.2, dtype=F64), atol=1e-15)
    close(link, ring(5, device) * 0.85 / 5, atol=1e-15)


@case("graphs.flow", "undirected, no teleportation: degree / total", "value")
def _(device):
    adj = two_cliques(device)
    node, _ = G.flow(adj, teleportation=0.0)
    close(node, adj.sum(1) / adj.sum(), atol=1e-15)


@case("graphs.flow", "bipartite ring without teleportation converges", "finite")
def _(device):
    adj = ring(4, device)  # periodic: a plain power iteration would oscillate
    node, _ = G.flow(adj, teleportation=0.0)
    close(node, torch.full((4,), 0.25, dtype=F64), atol=1e-12)


@case("graphs.flow", "no links at all: uniform rates, zero link flow", "finite")
def _(device):
    node, link = G.flow(torch.zeros(4, 4, device=device))
    finite(node, link)
    close(node, torch.full((4,), 0.25), atol=1e-7)


@case("graphs.flow", "float16 weights: computed in float64, returned float32", "finite")
def _(device):
    node, _ = G.flow(two_cliques(device, torch.float16))
    assert node.dtype == torch.float32
    close(node, G.flow(two_cliques(device))[0], atol=1e-7)


@case("graphs.flow", "sparse COO in, sparse COO out, same values", "value")
def _(device):
    adj = two_cliques(device)
    _, link = G.flow(adj.to_sparse())
    assert link.layout == torch.sparse_coo
    close(link.to_dense(), G.flow(adj)[1], atol=1e-15)


@case("graphs.flow", "non-contiguous transposed view", "device")
def _(device):
    adj = ring(5, device).T  # the reversed ring, a view
    close(G.flow(adj)[0], torch.full((5,), 0.2, dtype=F64), atol=1e-15)


@case("graphs.flow", "empty graph (0, 0) gives (0,) and (0, 0)", "empty")
def _(device):
    node, link = G.flow(torch.zeros(0, 0, device=device))
    assert node.shape == (0,) and link.shape == (0, 0)


error("graphs.flow", "a list", TypeError, "adjacency", lambda d: G.flow([[0.0]]))
error(
    "graphs.flow",
    "bool adjacency",
    TypeError,
    "adjacency",
    lambda d: G.flow(torch.ones(2, 2, dtype=torch.bool, device=d)),
)
error(
    "graphs.flow",
    "not square",
    ValueError,
    "adjacency",
    lambda d: G.flow(torch.ones(2, 3, device=d)),
)
error(
    "graphs.flow",
    "3-d adjacency",
    ValueError,
    "adjacency",
    lambda d: G.flow(torch.ones(2, 2, 2, device=d)),
)
error(
    "graphs.flow",
    "negative weight",
    ValueError,
    "adjacency",
    lambda d: G.flow(-torch.ones(2, 2, device=d)),
)
error(
    "graphs.flow",
    "NaN weight",
    ValueError,
    "adjacency",
    lambda d: G.flow(torch.full((2, 2), math.nan, device=d)),
)
error(
    "graphs.flow",
    "meta adjacency",
    ValueError,
    "adjacency",
    lambda d: G.flow(torch.ones(2, 2, device=META)),
)
error(
    "graphs.flow",
    "teleportation = 1",
    ValueError,
    "teleportation",
    lambda d: G.flow(torch.ones(2, 2, device=d), teleportation=1.0),
)
error(
    "graphs.flow",
    "teleportation as a tensor",
    TypeError,
    "teleportation",
    lambda d: G.flow(torch.ones(2, 2, device=d), teleportation=torch.tensor(0.1)),
)
error(
    "graphs.flow",
    "recorded = 1",
    TypeError,
    "recorded",
    lambda d: G.flow(torch.ones(2, 2, device=d), recorded=1),
)


# ------------------------------------------------------------------ map equation
@case("graphs.map_equation", "two triangles against the hand-written L", "value")
def _(device):
    part = torch.tensor([0, 0, 0, 1, 1, 1], device=device)
    out = G.map_equation(two_cliques(device), part, teleportation=0.0)
    assert abs(out - two_cliques_length64()) < 1e-13


@case("graphs.map_equation", "one module gives H(p) = log2 n on a ring", "value")
def _(device):
    out = G.map_equation(
        ring(8, device), torch.zeros(8, dtype=torch.long, device=device)
    )
    assert abs(out - 3.0) < 1e-13


@case("graphs.map_equation", "int32 labels, negative and sparse values", "value")
def _(device):
    part = torch.tensor([-5, -5, -5, 9, 9, 9], dtype=torch.int32, device=device)
    out = G.map_equation(two_cliques(device), part, teleportation=0.0)
    assert abs(out - two_cliques_length64()) < 1e-13


@case("graphs.map_equation", "empty graph gives 0 bits", "empty")
def _(device):
    adj = torch.zeros(0, 0, device=device)
    assert G.map_equation(adj, torch.zeros(0, dtype=torch.long, device=device)) == 0


error(
    "graphs.map_equation",
    "float partition",
    TypeError,
    "partition",
    lambda d: G.map_equation(ring(3, d), torch.zeros(3, device=d)),
)
error(
    "graphs.map_equation",
    "partition of the wrong length",
    ValueError,
    "partition",
    lambda d: G.map_equation(ring(3, d), torch.zeros(4, dtype=torch.long, device=d)),
)
error(
    "graphs.map_equation",
    "partition on another device",
    ValueError,
    "partition",
    lambda d: G.map_equation(ring(3, d), torch.zeros(3, dtype=torch.long, device=META)),
)
error(
    "graphs.map_equation",
    "a list adjacency",
    TypeError,
    "adjacency",
    lambda d: G.map_equation([[1.0]], torch.zeros(1, dtype=torch.long)),
)


# ------------------------------------------------------------------ find_modules
@case("graphs.find_modules", "two triangles: found and scored exactly", "value")
def _(device):
    g = torch.Generator().manual_seed(0)
    part, length = G.find_modules(two_cliques(device), teleportation=0.0, generator=g)
    assert part.device.type == device.type and part.dtype == torch.long
    assert part.tolist() in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    assert abs(length - two_cliques_length64()) < 1e-12


@case("graphs.find_modules", "no links: one module, log2 n bits", "finite")
def _(device):
    part, length = G.find_modules(torch.zeros(4, 4, device=device))
    assert part.tolist() == [0, 0, 0, 0] and abs(length - 2.0) < 1e-12


@case("graphs.find_modules", "empty graph gives (0,) and 0 bits", "empty")
def _(device):
    part, length = G.find_modules(torch.zeros(0, 0, device=device))
    assert part.shape == (0,) and length == 0.0


error(
    "graphs.find_modules",
    "trials = 0",
    ValueError,
    "trials",
    lambda d: G.find_modules(ring(3, d), trials=0),
)
error(
    "graphs.find_modules",
    "trials = 1.5",
    TypeError,
    "trials",
    lambda d: G.find_modules(ring(3, d), trials=1.5),
)
error(
    "graphs.find_modules",
    "generator = 0",
    TypeError,
    "generator",
    lambda d: G.find_modules(ring(3, d), generator=0),
)
error(
    "graphs.find_modules",
    "negative teleportation",
    ValueError,
    "teleportation",
    lambda d: G.find_modules(ring(3, d), teleportation=-0.1),
)
