"""kexue.graphs.infomap against a naive float64 reference written here from the
article's formulas and against the ``infomap`` package (2.16), which scores a given
partition without optimising (``no_infomap=True``, ``initial_partition``,
``two_level=True``)."""

from __future__ import annotations

import math
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from kexue.graphs import find_modules, flow, map_equation

infomap = pytest.importorskip("infomap")

F64 = torch.float64


# ---------------------------------------------------------------- references
def flow64(adj: np.ndarray, tau: float) -> np.ndarray:
    """Visit rates by the article's fixed point, iterated with explicit loops."""
    n = len(adj)
    out = adj.sum(1)
    p = np.full(n, 1.0 / n)
    for _ in range(3000):
        new = np.zeros(n)
        jump = 0.0
        for a in range(n):
            if out[a] == 0:
                jump += p[a]
                continue
            jump += tau * p[a]
            for b in range(n):
                new[b] += (1 - tau) * p[a] * adj[a, b] / out[a]
        new += jump / n
        p = new / new.sum()
    return p


def entropy64(weights: list[float]) -> float:
    total = sum(weights)
    return -sum(w / total * math.log2(w / total) for w in weights if w > 0)


def mapeq64(adj: np.ndarray, part: np.ndarray, tau: float) -> float:
    """The article's L(M) = q H(Q) + sum_i p_i H(P^i), each entropy of its normalised
    codebook, with the teleportation exit term (recorded), from loops."""
    n, p = len(adj), flow64(adj, tau)
    out = adj.sum(1)
    q, visits = {}, {}
    for i in sorted(set(part.tolist())):
        inside = [a for a in range(n) if part[a] == i]
        q[i] = 0.0
        for a in inside:
            jump = p[a] if out[a] == 0 else tau * p[a]
            q[i] += jump * (n - len(inside)) / n
            for b in range(n):
                if part[b] != i and out[a] > 0:
                    q[i] += (1 - tau) * p[a] * adj[a, b] / out[a]
        visits[i] = [p[a] for a in inside]
    qt = sum(q.values())
    length = qt * entropy64(list(q.values())) if qt > 0 else 0.0
    for i in q:
        codebook = [q[i], *visits[i]]
        length += sum(codebook) * entropy64(codebook)
    return length


def package(links, part, **options) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = infomap.run(
            links,
            two_level=True,
            no_infomap=True,
            initial_partition={i: int(m) for i, m in enumerate(part)},
            **options,
        )
    return result.codelength


def random_digraph(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    adj = (rng.random((n, n)) < 0.15) * rng.integers(1, 4, (n, n)).astype(float)
    adj[0, :] = 0.0  # a dangling node
    adj[1, 1] = 2.0  # a self-loop
    return adj


def links_of(adj: np.ndarray) -> list[tuple[int, int, float]]:
    return [
        (int(a), int(b), float(adj[a, b]))
        for a, b in zip(*np.nonzero(adj), strict=True)
    ]


def karate() -> tuple[np.ndarray, np.ndarray]:
    g = nx.karate_club_graph()
    part = np.array([g.nodes[i]["club"] == "Mr. Hi" for i in g], dtype=int)
    return nx.to_numpy_array(g), part


def planted(mu: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    groups, size, degree = 6, 20, 10
    g = nx.planted_partition_graph(
        groups,
        size,
        degree * (1 - mu) / (size - 1),
        degree * mu / (size * (groups - 1)),
        seed=seed,
    )
    return nx.to_numpy_array(g), np.array([g.nodes[i]["block"] for i in g])


# ---------------------------------------------------------------- flow
@pytest.mark.parametrize("tau", [0.15, 0.4])
def test_flow_matches_the_fixed_point(device, tau):
    adj = random_digraph(12, 0)
    node, link = flow(torch.tensor(adj, device=device), teleportation=tau)
    ref = flow64(adj, tau)
    torch.testing.assert_close(node.cpu(), torch.tensor(ref), atol=1e-13, rtol=0)
    # Link flow is (1 - tau) p_a w_ab / w_a; what is left of p_a teleports.
    out = adj.sum(1, keepdims=True)
    ref_link = (
        (1 - tau)
        * ref[:, None]
        * np.divide(adj, out, out=np.zeros_like(adj), where=out > 0)
    )
    torch.testing.assert_close(link.cpu(), torch.tensor(ref_link), atol=1e-13, rtol=0)


def test_undirected_flow_is_degree_over_total(device):
    adj, _ = karate()
    node, link = flow(torch.tensor(adj, device=device), teleportation=0.0)
    total = adj.sum()
    torch.testing.assert_close(node.cpu(), torch.tensor(adj.sum(1) / total))
    torch.testing.assert_close(link.cpu(), torch.tensor(adj / total))


def test_sparse_input_gives_the_same_flow(device):
    adj = torch.tensor(random_digraph(15, 3), device=device)
    node, link = flow(adj)
    for sparse in (adj.to_sparse(), adj.to_sparse_csr()):
        node_s, link_s = flow(sparse)
        assert link_s.layout == torch.sparse_coo
        torch.testing.assert_close(node_s, node, atol=1e-15, rtol=0)
        torch.testing.assert_close(link_s.to_dense(), link, atol=1e-15, rtol=0)


def test_flow_dtypes(device):
    adj = torch.tensor(random_digraph(10, 1), device=device)
    assert flow(adj.float())[0].dtype == torch.float32
    assert flow(adj.half())[0].dtype == torch.float32
    assert flow(adj.long())[0].dtype == F64
    torch.testing.assert_close(
        flow(adj.float())[0].double(), flow(adj)[0], atol=1e-7, rtol=0
    )


# ---------------------------------------------------------------- map equation
def test_map_equation_matches_the_article_formula():
    adj = random_digraph(12, 2)
    part = np.random.default_rng(0).integers(0, 3, 12)
    ours = map_equation(torch.tensor(adj), torch.tensor(part))
    assert abs(ours - mapeq64(adj, part, 0.15)) < 1e-12


def test_one_module_is_the_entropy_and_labels_are_names(device):
    adj = torch.tensor(random_digraph(14, 4), device=device)
    node, _ = flow(adj)
    entropy = float(-(node * node.log2()).sum())
    one = torch.full((14,), 7, device=device)
    assert abs(map_equation(adj, one) - entropy) < 1e-13
    part = torch.randint(0, 4, (14,), device=device)
    renamed = 10 * part - 3
    assert abs(map_equation(adj, part) - map_equation(adj, renamed)) < 1e-13


@pytest.mark.parametrize("graph", ["karate", "les_miserables", "planted"])
def test_undirected_matches_the_package(graph):
    if graph == "karate":
        adj, part = karate()
    elif graph == "planted":
        adj, part = planted(0.3)
    else:
        g = nx.convert_node_labels_to_integers(nx.les_miserables_graph())
        adj = nx.to_numpy_array(g)
        part = np.random.default_rng(1).integers(0, 5, len(adj))
    links = [(a, b, w) for a, b, w in links_of(np.triu(adj))]
    ours = map_equation(torch.tensor(adj), torch.tensor(part), teleportation=0.0)
    assert abs(ours - package(links, part)) < 1e-12


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("seed", [0, 5])
def test_directed_matches_the_package(recorded, seed):
    adj = random_digraph(30, seed)
    part = np.random.default_rng(seed).integers(0, 4, 30)
    options = dict(directed=True, to_nodes=True, recorded_teleportation=recorded)
    ours = map_equation(torch.tensor(adj), torch.tensor(part), recorded=recorded)
    assert abs(ours - package(links_of(adj), part, **options)) < 1e-12


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 12), st.integers(0, 10_000), st.floats(0.05, 0.6))
def test_map_equation_property(n, seed, tau):
    adj = random_digraph(n, seed)
    part = np.random.default_rng(seed).integers(0, 3, n)
    ours = map_equation(torch.tensor(adj), torch.tensor(part), teleportation=tau)
    assert abs(ours - mapeq64(adj, part, tau)) < 1e-11


# ---------------------------------------------------------------- search
def test_find_modules_on_karate_matches_the_package(device):
    adj, _ = karate()
    links = links_of(np.triu(adj))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = infomap.run(links, two_level=True, seed=1)
    g = torch.Generator().manual_seed(0)
    part, length = find_modules(
        torch.tensor(adj, device=device), teleportation=0.0, generator=g
    )
    assert part.device.type == device.type and part.dtype == torch.long
    assert abs(length - ref.codelength) < 1e-9
    theirs = [ref.modules()[i] for i in range(len(adj))]
    assert normalized_mutual_info_score(theirs, part.cpu().numpy()) == pytest.approx(1)


@pytest.mark.parametrize("mu", [0.1, 0.3])
def test_find_modules_recovers_planted_groups(mu):
    adj, truth = planted(mu)
    g = torch.Generator().manual_seed(0)
    part, length = find_modules(torch.tensor(adj), teleportation=0.0, generator=g)
    assert normalized_mutual_info_score(truth, part.numpy()) == pytest.approx(1)
    ours = map_equation(torch.tensor(adj), part, teleportation=0.0)
    assert abs(length - ours) < 1e-12


def test_find_modules_numbers_modules_by_flow_and_is_reproducible():
    adj = torch.tensor(random_digraph(40, 7))
    a = find_modules(adj, trials=2, generator=torch.Generator().manual_seed(3))
    b = find_modules(adj, trials=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    node, _ = flow(adj)
    k = int(a[0].max()) + 1
    visits = torch.zeros(k, dtype=F64).index_add_(0, a[0], node)
    assert set(a[0].tolist()) == set(range(k))
    assert bool((visits[:-1] >= visits[1:]).all())


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 25), st.integers(0, 10_000))
def test_find_modules_never_loses_to_one_module(n, seed):
    adj = torch.tensor(random_digraph(n, seed))
    part, length = find_modules(adj, generator=torch.Generator().manual_seed(seed))
    one = map_equation(adj, torch.zeros(n, dtype=torch.long))
    assert length <= one + 1e-12
    assert abs(length - map_equation(adj, part)) < 1e-12


# ---------------------------------------------------------------- edges
def test_empty_graph(device):
    adj = torch.zeros(0, 0, device=device)
    node, link = flow(adj)
    assert node.shape == (0,) and link.shape == (0, 0)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    assert map_equation(adj, empty) == 0.0
    part, length = find_modules(adj)
    assert part.shape == (0,) and length == 0.0


def test_graph_without_links_teleports_uniformly(device):
    adj = torch.zeros(5, 5, device=device, dtype=F64)
    node, _ = flow(adj)
    torch.testing.assert_close(node.cpu(), torch.full((5,), 0.2, dtype=F64))
    assert (
        abs(
            map_equation(adj, torch.zeros(5, dtype=torch.long, device=device))
            - math.log2(5)
        )
        < 1e-12
    )


@pytest.mark.parametrize(
    ("call", "kind", "name"),
    [
        (lambda: flow([[0.0]]), TypeError, "adjacency"),
        (lambda: flow(torch.ones(2, 3)), ValueError, "adjacency"),
        (lambda: flow(-torch.ones(2, 2)), ValueError, "adjacency"),
        (
            lambda: flow(torch.ones(2, 2), teleportation=1.0),
            ValueError,
            "teleportation",
        ),
        (lambda: flow(torch.ones(2, 2), recorded=1), TypeError, "recorded"),
        (lambda: map_equation(torch.ones(2, 2), torch.ones(2)), TypeError, "partition"),
        (
            lambda: map_equation(torch.ones(2, 2), torch.ones(3, dtype=torch.long)),
            ValueError,
            "partition",
        ),
        (lambda: find_modules(torch.ones(2, 2), trials=0), ValueError, "trials"),
        (lambda: find_modules(torch.ones(2, 2), generator=1), TypeError, "generator"),
    ],
)
def test_errors_name_the_argument(call, kind, name):
    with pytest.raises(kind, match=name):
        call()
