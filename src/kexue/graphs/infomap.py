"""InfoMap: communities as the partition that compresses a random walk best, after Su
Jianlin's kexue.fm/archives/7006 and Rosvall and Bergstrom (PNAS 2008).

A random walker on a graph visits node ``a`` at the stationary rate ``p_a`` (PageRank
with teleportation ``tau``). A two-level code names a module when the walker enters it
and then the nodes inside it, with an exit word when it leaves; the average number of
bits per step is the map equation

    L(M) = q H(Q) + sum_i p_i H(P^i),

and the best partition is the one with the shortest description. :func:`flow` computes
the node and link flows (power iteration on sparse edge lists), :func:`map_equation`
scores a given partition, :func:`find_modules` searches for a short one.

Conventions (those of the ``infomap`` package, which the tests match to 1e-12 bits):
teleportation lands uniformly on the nodes; a node without out-links (dangling)
always teleports; with ``recorded=True`` teleportation steps are part of the walk
being coded (the article's and the paper's formula), with ``recorded=False`` only the
steps along links are (the package's default for directed graphs). With
``teleportation=0`` and a symmetric adjacency the flow is the undirected one of the
paper, ``p_a`` proportional to the weighted degree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from kexue import _checks

__all__ = ["find_modules", "flow", "map_equation"]

# Power iteration stops when the L1 change of the visit rates falls below this (the
# package's own tolerance); MAX_ITERATIONS caps it (0.85^250 ~ 2e-18, so with the
# default teleportation it converges in ~220 steps; without teleportation a slowly
# mixing directed graph may need the cap).
TOLERANCE = 1e-15
MAX_ITERATIONS = 10_000
# A move must lower the code length by more than this (bits) to be taken: smaller
# "gains" are rounding of the running sums and would make the search cycle.
MIN_GAIN = 1e-10
# Rounds of refinement (re-moving single nodes between the modules found, then merging
# again) after the first greedy pass; each round stops early when nothing improves.
REFINEMENT_ROUNDS = 5


@dataclass(frozen=True)
class _Flow:
    """Flows of one graph in float64: ``link[e]`` on the edge ``rows[e] -> cols[e]``,
    ``node[a]`` the visit rate, ``tele[a]`` the rate of recorded teleportation out of
    ``a`` (zero when unrecorded); edges exclude zero weights."""

    n: int
    rows: Tensor
    cols: Tensor
    link: Tensor
    node: Tensor
    tele: Tensor


# ------------------------------------------------------------------ validation
def _edges(adjacency: object, name: str = "adjacency") -> tuple[Tensor, Tensor, Tensor]:
    """The nonzero entries ``(rows, cols, weights)`` of a square adjacency, dense or
    sparse, weights in float64 (checked finite and non-negative)."""
    a = _checks.tensor(adjacency, name, ndim=2, kind="real")
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be square (n, n), got shape {tuple(a.shape)}")
    if a.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: the flow needs its values")
    if a.layout == torch.strided:
        rows, cols = torch.nonzero(a, as_tuple=True)
        w = a[rows, cols]
    else:
        coo = a.to_sparse_coo().coalesce()
        rows, cols = coo.indices()
        w = coo.values()
    w = w.to(_float64(a.device))
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must have finite weights")
    if bool((w < 0).any()):
        raise ValueError(f"{name} must have non-negative weights")
    keep = w > 0  # explicit zeros of a sparse tensor are not links
    return rows[keep], cols[keep], w[keep]


def _float64(device: torch.device) -> torch.dtype:
    # MPS has no float64; everywhere else the global sums of the flow are kept exact.
    return torch.float32 if device.type == "mps" else torch.float64


def _teleportation(value: object) -> float:
    tau = _checks.real(value, "teleportation", nonnegative=True)
    if tau >= 1:
        raise ValueError(f"teleportation must be in [0, 1), got {tau}")
    return tau


def _labels(partition: object, n: int, like: Tensor) -> Tensor:
    """Module indices ``0..k-1`` of an integer partition of ``n`` nodes."""
    part = _checks.tensor(partition, "partition", ndim=1, kind="integer")
    _checks.same_device(("adjacency", like), partition=part)
    if part.shape[0] != n:
        raise ValueError(
            f"partition must have one label per node ({n}), got shape "
            f"{tuple(part.shape)}"
        )
    return torch.unique(part, return_inverse=True)[1]


# ------------------------------------------------------------------ flow
def _symmetric(n: int, rows: Tensor, cols: Tensor, w: Tensor) -> bool:
    key = rows * n + cols
    order, back = torch.argsort(key), torch.argsort(cols * n + rows)
    return bool(
        torch.equal(key[order], (cols * n + rows)[back])
        and torch.equal(w[order], w[back])
    )


def _stationary(n: int, rows: Tensor, cols: Tensor, w: Tensor, tau: float) -> Tensor:
    """Visit rates of the walk that follows a link with probability ``1 - tau`` (always
    teleports from a dangling node) and otherwise jumps to a uniform node."""
    dtype = w.dtype
    out = torch.zeros(n, dtype=dtype, device=w.device).index_add_(0, rows, w)
    total = out.sum()
    if tau == 0 and total > 0 and _symmetric(n, rows, cols, w):
        return out / total  # undirected: p_a = s_a / sum s, exactly
    step = w / out[rows]  # transition probability of each edge
    dangling = out == 0
    p = torch.full((n,), 1.0 / n, dtype=dtype, device=w.device)
    lazy = tau == 0  # without teleportation a periodic chain would oscillate
    for _ in range(MAX_ITERATIONS):
        jump = tau * p[~dangling].sum() + p[dangling].sum()
        new = torch.zeros_like(p).index_add_(0, cols, (1 - tau) * p[rows] * step)
        new = new + jump / n
        new = 0.5 * (p + new) if lazy else new
        new = new / new.sum()
        change = (new - p).abs().sum()
        p = new
        if change <= TOLERANCE:
            break
    return p


def _flow(adjacency: object, teleportation: object, recorded: object) -> _Flow:
    rows, cols, w = _edges(adjacency)
    tau = _teleportation(teleportation)
    recorded = _checks.flag(recorded, "recorded")
    assert isinstance(adjacency, Tensor)  # checked by _edges
    n = adjacency.shape[0]
    if n == 0:
        empty = w.new_zeros(0)
        return _Flow(0, rows, cols, empty, empty, empty)
    p = _stationary(n, rows, cols, w, tau)
    out = torch.zeros_like(p).index_add_(0, rows, w)
    step = w / out[rows]
    if recorded:
        link = (1 - tau) * p[rows] * step
        left = torch.zeros_like(p).index_add_(0, rows, link)
        return _Flow(n, rows, cols, link, p, (p - left).clamp_min(0))
    # Unrecorded: only the steps along links are coded; their flow is renormalised
    # and a node's rate is the link flow into it (the package's convention).
    along = p[out > 0].sum()
    link = p[rows] * step / along if along > 0 else p[rows] * 0
    node = torch.zeros_like(p).index_add_(0, cols, link)
    return _Flow(n, rows, cols, link, node, torch.zeros_like(p))


def flow(
    adjacency: Tensor, *, teleportation: float = 0.15, recorded: bool = True
) -> tuple[Tensor, Tensor]:
    """Node visit rates and link flows of the random walk on a weighted graph.

    ``adjacency[a, b]`` is the weight of the link ``a -> b`` (a symmetric matrix is an
    undirected graph). The walker follows a link with probability ``1 - teleportation``
    (in proportion to the weights) and otherwise jumps to a uniform random node; a node
    without out-links always jumps. The visit rates solve
    ``p_b = (1 - tau) sum_a p_a w_ab / w_a + (jumps) / n`` by power iteration on the
    edge list (sparse: memory and time grow with the number of links). With
    ``teleportation=0`` and a symmetric adjacency the rates are the weighted degrees
    over their sum, exactly; with ``recorded=False`` the link flows are those of the
    steps along links only, renormalised to sum to one, and a node's rate is its
    inflow (the ``infomap`` package's unrecorded teleportation).

    Computed in float64 (float32 on MPS) on the adjacency's device; returned in the
    adjacency's dtype (float32 for half precision, float64 for an integer adjacency).

    Args:
        adjacency: ``(n, n)`` real tensor of non-negative finite weights, dense or
            sparse (COO, CSR, CSC).
        teleportation: probability ``tau`` in ``[0, 1)`` of a uniform jump.
        recorded: whether teleportation steps belong to the coded walk.

    Returns:
        ``(node, link)``: ``node`` of shape ``(n,)`` summing to one; ``link`` of shape
        ``(n, n)``, the flow along each link per step (sparse COO if ``adjacency`` is
        sparse, else dense). With ``recorded=True``, ``node - link.sum(1)`` is the
        teleportation leaving each node.

    Raises:
        TypeError: ``adjacency`` not a real tensor (bool, complex); ``teleportation``
            not a number; ``recorded`` not a bool.
        ValueError: ``adjacency`` not square or 2-d, on the meta device, with negative
            or non-finite weights; ``teleportation`` outside ``[0, 1)``.
    """
    f = _flow(adjacency, teleportation, recorded)
    a: Tensor = adjacency
    dtype = a.dtype if a.is_floating_point() else torch.float64
    dtype = _checks.compute_dtype(dtype)
    # the indices come from the edge list of a checked adjacency: no check needed
    link = torch.sparse_coo_tensor(
        torch.stack([f.rows, f.cols]),
        f.link.to(dtype),
        (f.n, f.n),
        check_invariants=False,
    ).coalesce()
    if a.layout == torch.strided:
        link = link.to_dense()
    return f.node.to(dtype), link


# ------------------------------------------------------------------ map equation
def _plogp(x: Tensor) -> Tensor:
    return torch.where(x > 0, x * torch.log2(x.clamp_min(1e-300)), x * 0)


def _codelength(f: _Flow, labels: Tensor) -> float:
    """The map equation of the partition ``labels`` (indices ``0..k-1``) in bits."""
    if f.n == 0:
        return 0.0
    k = int(labels.max()) + 1
    zeros = f.node.new_zeros(k)
    a, b = labels[f.rows], labels[f.cols]
    cut = a != b
    size = zeros.index_add(0, labels, torch.ones_like(f.node))
    tele = zeros.index_add(0, labels, f.tele)
    # Teleportation lands uniformly: a fraction (n - n_i)/n of module i's jumps leave
    # it, a fraction n_i/n of the others' jumps enter it.
    exit_ = zeros.index_add(0, a[cut], f.link[cut]) + tele * (f.n - size) / f.n
    enter = zeros.index_add(0, b[cut], f.link[cut]) + (tele.sum() - tele) * size / f.n
    inside = zeros.index_add(0, labels, f.node)
    length = (
        _plogp(enter.sum())
        - _plogp(enter).sum()
        - _plogp(exit_).sum()
        + _plogp(exit_ + inside).sum()
        - _plogp(f.node).sum()
    )
    return float(length)


def map_equation(
    adjacency: Tensor,
    partition: Tensor,
    *,
    teleportation: float = 0.15,
    recorded: bool = True,
) -> float:
    """The two-level code length ``L(M) = q H(Q) + sum_i p_i H(P^i)`` of a partition,
    in bits per step of the walk.

    ``q_i`` is the rate at which the walk leaves module ``i`` (links out of it plus the
    fraction ``(n - n_i)/n`` of its teleportation), ``p_i = q_i + sum_{a in i} p_a``.
    The index codebook codes module entries at their rates, which equal the exit rates
    for a stationary walk (``recorded=True``); with unrecorded teleportation they
    differ and the entry rates are used, as the ``infomap`` package does. One module
    gives the entropy ``H(p)`` of the visit rates.

    Args:
        adjacency: ``(n, n)`` weights, as in :func:`flow`.
        partition: ``(n,)`` integer module labels (any values; equal labels are one
            module), on the adjacency's device.
        teleportation, recorded: as in :func:`flow`.

    Returns:
        The code length in bits (a Python float; 0.0 for an empty graph).

    Raises:
        TypeError, ValueError: as in :func:`flow`; ``partition`` not an integer
            tensor (TypeError), not of shape ``(n,)`` or on another device
            (ValueError).
    """
    f = _flow(adjacency, teleportation, recorded)
    return _codelength(f, _labels(partition, f.n, adjacency))


# ------------------------------------------------------------------ search
@dataclass
class _Level:
    """A graph of (super)nodes for the greedy search, in Python floats on the CPU:
    link flows between distinct nodes both ways, each node's internal link flow,
    total out/in link flow, visit rate, size in original nodes and teleportation."""

    out: list[dict[int, float]]
    into: list[dict[int, float]]
    self_flow: list[float]
    out_tot: list[float]
    in_tot: list[float]
    node: list[float]
    size: list[int]
    tele: list[float]


def _base_level(f: _Flow) -> _Level:
    n = f.n
    lv = _Level(
        [{} for _ in range(n)],
        [{} for _ in range(n)],
        [0.0] * n,
        [0.0] * n,
        [0.0] * n,
        f.node.tolist(),
        [1] * n,
        f.tele.tolist(),
    )
    for a, b, x in zip(f.rows.tolist(), f.cols.tolist(), f.link.tolist(), strict=True):
        _add_link(lv, a, b, x)
    return lv


def _add_link(lv: _Level, a: int, b: int, x: float) -> None:
    lv.out_tot[a] += x
    lv.in_tot[b] += x
    if a == b:
        lv.self_flow[a] += x
    else:
        lv.out[a][b] = lv.out[a].get(b, 0.0) + x
        lv.into[b][a] = lv.into[b].get(a, 0.0) + x


def _aggregate(lv: _Level, module: list[int], k: int) -> _Level:
    """The graph whose nodes are the ``k`` modules (labels ``0..k-1``) of ``lv``."""
    new = _Level(
        [{} for _ in range(k)],
        [{} for _ in range(k)],
        [0.0] * k,
        [0.0] * k,
        [0.0] * k,
        [0.0] * k,
        [0] * k,
        [0.0] * k,
    )
    for a, m in enumerate(module):
        new.node[m] += lv.node[a]
        new.size[m] += lv.size[a]
        new.tele[m] += lv.tele[a]
        _add_link(new, m, m, lv.self_flow[a])
        for b, x in lv.out[a].items():
            _add_link(new, m, module[b], x)
    return new


# Changes to a module's (out, in, inner, node, size, tele); size counts original nodes.
_Delta = tuple[float, float, float, float, int, float]


class _Modules:
    """Running sums of each module (out, in, internal link flow, visit rate, size,
    teleportation) and the terms of the code length that depend on them."""

    def __init__(self, lv: _Level, module: list[int], n: int) -> None:
        m = len(module)
        self.n, self.total_tele = n, sum(lv.tele)
        self.out, self.into, self.inner = [0.0] * m, [0.0] * m, [0.0] * m
        self.node, self.size, self.tele = [0.0] * m, [0] * m, [0.0] * m
        for a, i in enumerate(module):
            self._shift(
                i,
                lv,
                a,
                +1,
                lv.self_flow[a]
                + sum(x for b, x in lv.out[a].items() if module[b] == i),
            )
        self.enter_total = sum(self.rates(i)[0] for i in range(m))

    def _shift(self, i: int, lv: _Level, a: int, sign: int, inner: float) -> None:
        self.out[i] += sign * lv.out_tot[a]
        self.into[i] += sign * lv.in_tot[a]
        self.inner[i] += sign * inner
        self.node[i] += sign * lv.node[a]
        self.size[i] += sign * lv.size[a]
        self.tele[i] += sign * lv.tele[a]

    def rates(
        self, i: int, d: _Delta = (0.0, 0.0, 0.0, 0.0, 0, 0.0)
    ) -> tuple[float, float, float]:
        """(enter, exit, visit) of module ``i`` after adding the changes ``d`` to
        (out, in, inner, node, size, tele)."""
        out, into, inner = self.out[i] + d[0], self.into[i] + d[1], self.inner[i] + d[2]
        node, size, tele = self.node[i] + d[3], self.size[i] + d[4], self.tele[i] + d[5]
        if size == 0:
            return 0.0, 0.0, 0.0
        exit_ = max(out - inner, 0.0) + tele * (self.n - size) / self.n
        enter = max(into - inner, 0.0) + (self.total_tele - tele) * size / self.n
        return enter, exit_, node


def _terms(rates: tuple[float, float, float]) -> float:
    enter, exit_, node = rates
    return -_xlog(enter) - _xlog(exit_) + _xlog(exit_ + node)


def _xlog(x: float) -> float:
    return x * math.log2(x) if x > 0 else 0.0


def _move_gain(
    s: _Modules, lv: _Level, a: int, src: int, dst: int, w_src: float, w_dst: float
) -> tuple[float, _Delta, _Delta]:
    """Change of the code length when node ``a`` moves from ``src`` to ``dst``, given
    its link flow to and from the rest of each (``w_src``, ``w_dst``)."""
    inner = lv.self_flow[a]
    node = (lv.out_tot[a], lv.in_tot[a], lv.node[a], lv.size[a], lv.tele[a])
    out, into, visit, size, tele = node
    d_src = (-out, -into, -(w_src + inner), -visit, -size, -tele)
    d_dst = (out, into, w_dst + inner, visit, size, tele)
    old_s, old_d = s.rates(src), s.rates(dst)
    new_s, new_d = s.rates(src, d_src), s.rates(dst, d_dst)
    enter_total = s.enter_total - old_s[0] - old_d[0] + new_s[0] + new_d[0]
    delta = _xlog(enter_total) - _xlog(s.enter_total)
    delta += _terms(new_s) + _terms(new_d) - _terms(old_s) - _terms(old_d)
    return delta, d_src, d_dst


def _apply(s: _Modules, i: int, d: _Delta) -> None:
    before = s.rates(i)[0]
    s.out[i] += d[0]
    s.into[i] += d[1]
    s.inner[i] += d[2]
    s.node[i] += d[3]
    s.size[i] += d[4]
    s.tele[i] += d[5]
    s.enter_total += s.rates(i)[0] - before


def _neighbour_flow(lv: _Level, a: int, module: list[int]) -> dict[int, float]:
    """Link flow between node ``a`` and each module it touches, both directions."""
    w: dict[int, float] = {}
    for b, x in lv.out[a].items():
        w[module[b]] = w.get(module[b], 0.0) + x
    for b, x in lv.into[a].items():
        w[module[b]] = w.get(module[b], 0.0) + x
    return w


def _move_nodes(lv: _Level, module: list[int], n: int, order: list[int]) -> bool:
    """Greedy local moves: each node in ``order`` goes to the neighbouring (or an
    empty) module that shortens the code most, sweeping until nothing moves."""
    s = _Modules(lv, module, n)
    empty = [i for i in range(len(module)) if s.size[i] == 0]
    moved_any = False
    for _ in range(100):
        moved = False
        for a in order:
            src = module[a]
            w = _neighbour_flow(lv, a, module)
            options = [m for m in w if m != src]
            if s.size[src] > lv.size[a] and empty:
                options.append(empty[-1])
            best: tuple[float, int, _Delta, _Delta] | None = None
            for dst in options:
                gain = _move_gain(s, lv, a, src, dst, w.get(src, 0.0), w.get(dst, 0.0))
                if gain[0] < (-MIN_GAIN if best is None else best[0]):
                    best = (gain[0], dst, gain[1], gain[2])
            if best is None:
                continue
            _, dst, d_src, d_dst = best
            _apply(s, src, d_src)
            _apply(s, dst, d_dst)
            if empty and dst == empty[-1]:
                empty.pop()
            if s.size[src] == 0:
                empty.append(src)
            module[a] = dst
            moved = moved_any = True
        if not moved:
            break
    return moved_any


def _compact(labels: list[int]) -> tuple[list[int], int]:
    index: dict[int, int] = {}
    return [index.setdefault(m, len(index)) for m in labels], len(index)


def _search(
    base: _Level, start: list[int], n: int, g: torch.Generator | None
) -> list[int]:
    """Local moves from ``start`` at the node level, then on the graph of modules,
    merging until a level changes nothing; returns each node's module."""
    lv, module, assign = base, list(start), list(range(n))
    while True:
        order = torch.randperm(len(module), generator=g).tolist()
        _move_nodes(lv, module, n, order)
        labels, k = _compact(module)
        assign = [labels[assign[a]] for a in range(n)]
        if k == len(module):
            return assign
        lv, module = _aggregate(lv, labels, k), list(range(k))


def _trial(
    f: _Flow, base: _Level, g: torch.Generator | None
) -> tuple[list[int], float]:
    best = _search(base, list(range(f.n)), f.n, g)
    best_len = _codelength(f, torch.tensor(best, device=f.node.device))
    for _ in range(REFINEMENT_ROUNDS):
        cand = _search(base, best, f.n, g)  # re-move single nodes, then merge again
        cand_len = _codelength(f, torch.tensor(cand, device=f.node.device))
        if cand_len >= best_len - MIN_GAIN:
            break
        best, best_len = cand, cand_len
    return best, best_len


def find_modules(
    adjacency: Tensor,
    *,
    trials: int = 1,
    teleportation: float = 0.15,
    recorded: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """A partition of the graph's nodes with a short two-level code length.

    Greedy search on the map equation: every node starts alone; nodes move, one at a
    time in random order, to the neighbouring module that shortens the code most
    (gains computed in O(degree) from running sums per module); the modules are then
    merged into the nodes of a smaller graph and moved again, until a level changes
    nothing. Refinement re-moves single nodes between the modules found and merges
    again while the code length falls. The best of ``trials`` random orders is kept,
    and the single module (code length ``H(p)``) when no search beats it.

    The flow (power iteration) runs on the adjacency's device; the search itself is
    sequential and runs in Python on the CPU, about ``10 us`` per link and sweep:
    graphs of thousands of nodes, not millions (the ``infomap`` package is C++).

    Args:
        adjacency: ``(n, n)`` weights, as in :func:`flow`.
        trials: positive int, independent searches.
        teleportation, recorded: as in :func:`flow`.
        generator: a CPU ``torch.Generator`` for the node orders (None: torch's global
            one).

    Returns:
        ``(partition, length)``: ``partition`` an int64 tensor ``(n,)`` on the
        adjacency's device, modules numbered ``0..k-1`` by decreasing visit rate;
        ``length`` its code length in bits, as :func:`map_equation` gives it.

    Raises:
        TypeError, ValueError: as in :func:`flow`; ``trials`` not a positive int;
            ``generator`` not a ``torch.Generator``.
    """
    trials = _checks.positive_int(trials, "trials")
    g = _checks.generator(generator)
    f = _flow(adjacency, teleportation, recorded)
    device = adjacency.device
    if f.n == 0:
        return torch.zeros(0, dtype=torch.long, device=device), 0.0
    base = _base_level(f)
    # The one-module code, H(p), is the baseline a search must beat (as in the
    # package): at strong mixing greedy moves can stop above it.
    one = torch.zeros(f.n, dtype=torch.long, device=f.node.device)
    best, best_len = [0] * f.n, _codelength(f, one)
    for _ in range(trials):
        cand, cand_len = _trial(f, base, g)
        if cand_len < best_len:
            best, best_len = cand, cand_len
    labels = torch.tensor(best, device=f.node.device)
    visits = torch.zeros(int(labels.max()) + 1, dtype=f.node.dtype, device=device)
    visits.index_add_(0, labels, f.node)
    rank = torch.empty_like(labels)
    rank[torch.argsort(visits, descending=True, stable=True)] = torch.arange(
        len(visits), device=device
    )
    return rank[labels].to(device), best_len
