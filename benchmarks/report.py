"""What the book's benchmarks appendix shows: tables, figures and target verdicts from
results files.

The appendix (chapters/appendix/benchmarks.md) reads every ``benchmarks/results/*.json``
with :func:`load_runs`, one :class:`Run` a file (the dataclass
:class:`~benchmarks.harness.Results`, its rows typed, and the file's name), and calls
these functions; its cells stay short. Nothing here times anything. A time ratio is a
:class:`~benchmarks.harness.Stats` (median and quartiles over rounds), judged by its
interval (:func:`interval_verdict`). Tables are ``(header, rows)``, built from one
dictionary a row (column: cell) by :func:`tabulate` and rendered by :func:`md_table`;
targets are :class:`Target` rows whose verdict is derived from the measured boolean
``met`` (``True`` met, ``False`` missed, ``None`` untested), never written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Results, Row, Stats
from benchmarks.registry import FLOOR_COPY, FLOOR_ELEMENTWISE

Table = tuple[list[str], list[list[Any]]]

LINEAR_CAUSAL = "kexue linear_attention, causal"
FLASH_CAUSAL = "SDPA flash, causal"
#: method of the sweep: (title, kexue candidate, peer candidate)
APPROX = {
    "performer": ("Performer", "kexue performer_attention", "performer-pytorch"),
    "nystrom": ("Nyström", "kexue nystrom_attention", "nystrom-attention"),
}
FLOORS = (FLOOR_ELEMENTWISE, FLOOR_COPY)
#: The benchmarks of the chapters' kernels against their peers, with a title each.
KERNELS = {
    "masked_softmax": "masked softmax",
    "relu2": "relu² attention",
    "gau": "gated attention unit",
    "globalpointer": "GlobalPointer span scores",
    "exact_w1": "exact W₁",
    "knn_entropy": "k-NN entropy",
    "map_equation": "map equation",
    "find_modules": "InfoMap search",
    "nearest_code": "nearest code",
    "vq": "vector quantiser",
    "bert": "BERT encoder",
}
GPU_TARGETS = (
    "`apply_rope` no slower than rotary-embedding-torch (GPU)",
    "RoPE above 70% of the card's peak memory bandwidth",
    "Causal linear attention beats SDPA flash beyond some $n$ (GPU)",
)


# --- loading and selecting ------------------------------------------------------------
@dataclass
class Run(Results):
    """One results file as read: its :class:`Results` and the file's name."""

    file: str = ""

    @property
    def name(self) -> str:
        return self.device["name"]

    @property
    def gpu(self) -> bool:
        return self.device["type"] == "cuda"

    @property
    def label(self) -> str:
        n = self.device["threads"]
        kind = self.device["type"].upper()
        return f"{self.name} ({kind}, {n} thread{'s' if n > 1 else ''})"

    def select(self, suite: str, candidate: str = "", status: str = "ok") -> list[Row]:
        """The rows of a suite (of one candidate if named) with that status."""
        return [
            r
            for r in self.rows
            if (r.suite, r.status) == (suite, status) and candidate in ("", r.candidate)
        ]

    def groups(self, suite: str) -> dict[str, dict[str, Row]]:
        """The timed rows of a suite by group, then by candidate."""
        groups: dict[str, dict[str, Row]] = {}
        for r in self.select(suite):
            groups.setdefault(r.group, {})[r.candidate] = r
        return groups


def load_runs(folder: Path) -> list[Run]:
    """Every results file in ``folder``, sorted by name."""
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no results files in {folder}")
    return [Run.from_dict(json.loads(p.read_text()) | {"file": p.name}) for p in paths]


def versus(
    run: Run, suites: Iterable[str] | None = None
) -> list[tuple[Row, Row, Stats]]:
    """(kexue row, peer row, paired time ratio) of every timed row that names its peer
    (``against``) in the same group, both timed, in the suites given (else all)."""
    return [
        (r, c[r.against], paired(r, c[r.against]))
        for suite in suites or sorted({r.suite for r in run.rows})
        for c in run.groups(suite).values()
        for r in c.values()
        if r.against in c
    ]


def _sweep(run: Run, method: str = "") -> list[tuple[Row, Row, Stats]]:
    """:func:`versus` over the budgets of the error-cost sweep (of one method)."""
    pairs = versus(run, ["approx_sweep"])
    return [p for p in pairs if method in ("", p[0].params["method"])]


# --- statistics -----------------------------------------------------------------------
def paired(a: Row, b: Row) -> Stats:
    """Median and quartiles of the round-by-round ratio time(a) / time(b), one group."""
    rounds = zip(a.time_s.per_round, b.time_s.per_round, strict=True)
    return Stats.of([x / y for x, y in rounds])


def fmt_ratio(q: Stats) -> str:
    """The ratio as "median [q25, q75]"."""
    return f"{q.median:.2f} [{q.q25:.2f}, {q.q75:.2f}]"


def interval_verdict(q: Stats) -> str:
    """ "slower" when the whole quartile interval is above 1, "faster" when below."""
    if q.q25 > 1:
        return "slower"
    return "faster" if q.q75 < 1 else "no clear difference"


def verdict_counts(ratios: Iterable[Stats]) -> str:
    """How many ratios are faster, show no clear difference and are slower, in words."""
    kinds = [interval_verdict(q) for q in ratios]
    verdicts = ("faster", "no clear difference", "slower")
    return ", ".join(f"{v} in {kinds.count(v)}" for v in verdicts)


def faster_from(ratios: dict[int, Stats]) -> int | None:
    """The smallest size from which the ratio is faster, there and at every larger."""
    not_faster = [n for n, q in ratios.items() if interval_verdict(q) != "faster"]
    after = max(not_faster, default=float("-inf"))
    return min((n for n in ratios if n > after), default=None)


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x over the upper half of the x."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    keep = lx >= np.median(lx)
    return float(np.polyfit(lx[keep], ly[keep], 1)[0])


def slopes(run: Run, suite: str, candidate: str) -> tuple[float, float] | None:
    """Log-log slopes of a candidate's time and peak memory against n (None under 3)."""
    points = sorted(
        (r.params["n"], r.time_s.median, r.peak_memory_bytes)
        for r in run.select(suite, candidate)
    )
    if len(points) < 3:
        return None
    n, time, memory = np.array(points, dtype=float).T
    return slope(n, time), slope(n, memory)


def crossover(run: Run) -> tuple[int | None, list[tuple[int, Stats]]]:
    """The n from which causal linear attention beats SDPA flash (:func:`faster_from`),
    and the paired ratios ``[(n, ratio)]`` by n."""
    ratios = {
        c[LINEAR_CAUSAL].params["n"]: paired(c[LINEAR_CAUSAL], c[FLASH_CAUSAL])
        for c in run.groups("attention_causal").values()
        if LINEAR_CAUSAL in c and FLASH_CAUSAL in c
    }
    return faster_from(ratios), sorted(ratios.items())


def error_of(row: Row) -> float:
    """A row's error against exact attention: the mean over its projections where it
    has several (Performer's error is random), else its one error."""
    return float(np.mean(row.error_draws)) if row.error_draws else row.error_vs_exact


def spread(row: Row) -> float:
    """Sample standard deviation of a row's errors over projections (0 with one)."""
    draws = row.error_draws or []
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0


def fmt_error(row: Row) -> str:
    """The error with its spread over projections, if it has several."""
    if len(row.error_draws or []) < 2:
        return f"{row.error_vs_exact:.3f}"
    return f"{error_of(row):.3f} ± {spread(row):.3f}"


def at_equal(run: Run, method: str) -> tuple[float, float] | None:
    """The worst ratios of kexue's error to the peer's at the peer's times (kexue's
    interpolated log-log; NaN if none is within its range) and of kexue's time to reach
    the peer's error to the peer's time (inf if never), over the sweep of ``method``;
    None when either curve is missing."""
    rows = [r for r in run.select("approx_sweep") if r.params["method"] == method]
    a, b = (  # (median time, error) of kexue, then of the peer, by time
        np.array(
            sorted((r.time_s.median, error_of(r)) for r in rows if r.candidate == c)
        )
        for c in APPROX[method][1:]
    )
    if len(a) < 2 or len(b) == 0:
        return None
    log_t, log_e = np.log(a[:, 0]), np.log(a[:, 1])
    inside = (np.log(b[:, 0]) >= log_t.min()) & (np.log(b[:, 0]) <= log_t.max())
    err_ratio = [np.nan]
    if inside.any():
        err_ratio = np.exp(np.interp(np.log(b[inside, 0]), log_t, log_e)) / b[inside, 1]
    time_ratio = []
    for t_peer, e_peer in b:
        reached = a[a[:, 1] <= e_peer]
        time_ratio.append(reached[:, 0].min() / t_peer if len(reached) else np.inf)
    return float(np.nanmax(err_ratio)), float(np.max(time_ratio))


# --- tables and lines -----------------------------------------------------------------
def tabulate(records: Iterable[dict[str, Any]]) -> Table:
    """A table from one dictionary a row, column to cell, in the first row's order."""
    records = list(records)
    header = list(records[0]) if records else []
    return header, [[r[c] for c in header] for r in records]


def md_table(header: list[str], body: list[list[Any]]) -> str:
    """A markdown table (``|`` in a cell escaped); empty without rows."""
    if any(len(row) != len(header) for row in body):
        raise ValueError("every row needs one cell per column of the header")
    if not body:
        return ""

    def line(cells: Iterable[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, body)])


def md_tables(table: Table, columns: list[str]) -> str:
    """Markdown tables, one per distinct value of ``columns`` (under it in bold): a wide
    table whose first columns repeat reads better as a few narrow ones."""
    header, body = table
    keys = [header.index(c) for c in columns]
    kept = [i for i in range(len(header)) if i not in keys]
    parts: dict[str, list[list[Any]]] = {}
    for row in body:
        title = ", ".join(str(row[i]) for i in keys)
        parts.setdefault(title, []).append([row[i] for i in kept])
    narrow = [header[i] for i in kept]
    return "\n\n".join(f"**{t}**\n\n" + md_table(narrow, b) for t, b in parts.items())


def machines_table(runs: list[Run]) -> Table:
    """One row a results file: the machine, torch, when, the load and the wall time."""

    def load(run: Run, when: str) -> str:
        return str((run.load_average.get(when) or ["?"])[0])

    def measured(run: Run) -> str:  # a file merged from runs: each date, its suites
        if not (merged := run.settings.get("runs")):
            return run.date[:16].replace("T", " ")
        return "; ".join(
            f"{r['date'][:16].replace('T', ' ')} ({', '.join(r['suites'])})"
            for r in merged
        )

    return tabulate(
        {
            "Results file": f"`{run.file}`",
            "Device": f"{run.name} ({run.device['type']})",
            "Cores, threads": f"{run.device['cores']}, {run.device['threads']}",
            "torch": run.torch_version,
            "Measured (UTC)": measured(run),
            "Load average": f"{load(run, 'start')} → {load(run, 'end')}",
            "Wall time": f"{run.wall_seconds or float('nan'):.0f} s",
        }
        for run in runs
    )


def peers_line(runs: list[Run]) -> str:
    """The peers measured against, with their versions."""
    peers = {f"{name} {v}" for run in runs for name, v in run.peers.items() if v}
    return "Peers measured against: " + ", ".join(sorted(peers)) + "."


def _ms(row: Row) -> str:
    return f"{1e3 * row.time_s.median:.3g} ms"


def _mib(row: Row) -> str:
    mem = row.peak_memory_bytes
    return "–" if mem is None else f"{mem / 2**20:.3g} MiB"


def _mb(group: dict[str, Row]) -> float:
    return next(iter(group.values())).params["MB"]


def _bandwidth(run: Run, row: Row) -> str:
    """On a GPU, the achieved bandwidth and its fraction of the card's peak if known."""
    bw = row.bandwidth or {}
    if not (run.gpu and bw.get("achieved_Bps")):
        return "–"
    frac = bw.get("fraction_of_peak")
    peak = f" ({100 * frac:.0f}% of peak)" if frac else ""
    return f"{bw['achieved_Bps'] / 1e9:.0f} GB/s{peak}"


def rope_table(runs: list[Run]) -> Table:
    """The RoPE rows; on a GPU with their achieved bandwidth."""
    gpu = any(run.gpu for run in runs)
    return tabulate(
        {
            "Machine": run.name,
            "Input": r.group,
            "Candidate": r.candidate,
            "Time": _ms(r),
            "Ratio [quartiles]": fmt_ratio(r.ratio_to_reference),
            "Peak memory": f"{r.peak_memory_bytes / 2**20:.1f} MiB",
            **({"Bandwidth": _bandwidth(run, r)} if gpu else {}),
        }
        for run in runs
        for r in run.select("rope")
    )


def rope_per_mb(run: Run, candidates: Sequence[str]) -> Table:
    """Median time per MB of input (ms/MB) of some RoPE candidates, by input size: the
    two per-byte costs whose quotient is the ratio, to see which moves with the size."""
    return tabulate(
        {
            "Input (ms per MB)": group.split(" float")[0],
            **{c: f"{1e3 * g[c].time_s.median / _mb(g):.3f}" for c in candidates},
        }
        for group, g in run.groups("rope").items()
        if all(c in g for c in candidates)
    )


def rope_memory_line(run: Run, candidate: str = "rotary-embedding-torch") -> str:
    """The range over sizes of a RoPE candidate's peak extra memory over the input."""
    rows = run.select("rope", candidate)
    per_input = [r.peak_memory_bytes / (1e6 * r.params["MB"]) for r in rows]
    return (
        f"{run.label}: {candidate}'s peak extra memory is {min(per_input):.1f} to "
        f"{max(per_input):.1f} times the input."
    )


def attention_settings_line(run: Run) -> str:
    """The budgets and shapes of the attention suite, read from its rows."""
    p = run.select("attention")[0].params
    return (
        f"{run.label}: Performer with {p['features']} features, Nyström with "
        f"{p['landmarks']} landmarks; batch {p['batch']}, {p['heads']} "
        f"heads of dimension {p['head_dim']}, {p['dtype']}."
    )


def slopes_table(runs: list[Run]) -> Table:
    """Log-log slopes of time and memory against n of every attention candidate."""
    return tabulate(
        {
            "Machine": run.name,
            "Candidate": name,
            "slope of time": f"{fit[0]:.2f}",
            "slope of memory": f"{fit[1]:.2f}",
        }
        for run in runs
        for suite in ("attention", "attention_causal")
        for name in sorted({r.candidate for r in run.select(suite)})
        if (fit := slopes(run, suite, name))
    )


def crossover_line(run: Run) -> str:
    """Causal linear attention over SDPA flash by n, and from which n it is faster."""
    n_star, ratios = crossover(run)
    shown = ", ".join(f"{n}: {fmt_ratio(q)}" for n, q in ratios)
    verdict = "It is never faster here."
    if n_star:
        verdict = f"Linear attention is faster from $n = {n_star}$ on."
    return (
        f"{run.label}: causal linear attention / SDPA flash (causal), by $n$: "
        f"{shown}. {verdict}"
    )


def approx_table(runs: list[Run]) -> Table:
    """kexue against its peer at each budget of the sweep: time ratio and errors."""
    return tabulate(
        {
            "Machine": run.name,
            "Method": ours.params["method"],
            "m": ours.params["budget"],
            "kexue / peer time, same m": fmt_ratio(q),
            "kexue error": fmt_error(ours),
            "peer error": fmt_error(peer),
            "mean pooling": f"{ours.params['error_of_mean_pooling']:.3f}",
        }
        for run in runs
        for ours, peer, q in _sweep(run)
    )


def draws_line(run: Run) -> str | None:
    """How many projections each Performer error of the sweep averages, if several."""
    draws = [r.error_draws or [] for r in run.select("approx_sweep")]
    if not (counts := sorted({len(d) for d in draws if len(d) > 1})):
        return None
    return (
        f"{run.label}: each Performer error is the mean ± standard deviation over "
        f"{' or '.join(map(str, counts))} independent orthogonal projections (the "
        "first of them is the one timed); the Nyström errors are deterministic."
    )


def _epsilon_pairs(run: Run) -> list[tuple[Row, Row]]:
    """(kexue, performer-pytorch) rows of the sweep whose peer has the ε = 0 check."""
    pairs = _sweep(run, "performer")
    return [(a, b) for a, b, _ in pairs if "error_with_eps_0" in (b.check or {})]


def epsilon_table(runs: list[Run]) -> Table:
    """The two Performers' errors on the same projection, and both with ε = 0."""
    return tabulate(
        {
            "Machine": run.name,
            "m": ours.params["budget"],
            "kexue error, timed projection": f"{ours.error_vs_exact:.3f}",
            "peer error, same projection": f"{peer.error_vs_exact:.3f}",
            "both with ε = 0": f"{peer.check['error_with_eps_0']:.3f}",
            "mean pooling": f"{ours.params['error_of_mean_pooling']:.3f}",
            "kexue vs peer output": f"{peer.check['difference_at_default_eps']:.3f}",
        }
        for run in runs
        for ours, peer in _epsilon_pairs(run)
    )


def epsilon_line(run: Run) -> str | None:
    """How near the peer's error is to mean pooling's, and kexue's to the ε = 0 one."""
    if not (pairs := _epsilon_pairs(run)):
        return None
    base = pairs[0][0].params["error_of_mean_pooling"]
    peer_gap = max(abs(b.error_vs_exact - base) for _, b in pairs) / base
    ours_vs_raw = [a.error_vs_exact / b.check["error_with_eps_0"] for a, b in pairs]
    return (
        f"{run.label}: over the budgets, performer-pytorch's error is within "
        f"{100 * peer_gap:.0f}% of mean pooling's ({base:.3f}); kexue's error is "
        f"{min(ours_vs_raw):.2f} to {max(ours_vs_raw):.2f} times that of the estimator "
        "with ε = 0."
    )


def pooling_budgets(run: Run, method: str, within: float = 0.1) -> list[int]:
    """Budgets of the sweep at which kexue's and the peer's errors are both no better
    than mean pooling's: each at least ``(1 - within)`` times its error."""
    return sorted(
        ours.params["budget"]
        for ours, peer, _ in _sweep(run, method)
        if min(error_of(ours), error_of(peer))
        >= (1 - within) * ours.params["error_of_mean_pooling"]
    )


def pooling_line(run: Run, method: str, within: float = 0.1) -> str:
    """Where comparing the accuracy of ``method`` says little: both no better than
    mean pooling."""
    title = APPROX[method][0]
    if not (budgets := ", ".join(map(str, pooling_budgets(run, method, within)))):
        return (
            f"{run.label}: {title}: at every budget one of the two beats mean pooling."
        )
    return (
        f"{run.label}: {title} at $m$ = {budgets}: kexue and its peer are both no "
        f"better than mean pooling (error at least {1 - within:.0%} of its), so "
        "comparing their errors says little there."
    )


def hippo_line(run: Run) -> str:
    """legs_matvec / dense by N, from which N it is faster, and legs_memory's memory."""
    ratios = {
        r.params["N"]: r.ratio_to_reference
        for r in run.select("hippo_matvec", "kexue legs_matvec")
    }
    faster = faster_from(ratios)
    per_entry = [
        r.peak_memory_bytes / (r.params["length"] * r.params["N"] ** 2 * 4)
        for r in run.select("hippo_online")
    ]
    skipped = [r.note for r in run.select("hippo_online", status="skipped")]
    text = f"{run.label}: `legs_matvec` / dense by $N$: "
    text += ", ".join(f"{N}: {q.median:.3f}" for N, q in sorted(ratios.items()))
    text += f"; faster from $N = {faster}$ on." if faster else "."
    text += (
        f" The online recurrence's peak memory is {min(per_entry):.2f} to "
        f"{max(per_entry):.2f} times the size of `length` float32 N × N matrices: it "
        "precomputes one transition per step"
    )
    return text + (f" (left out: {'; '.join(skipped)})." if skipped else ".")


def versus_table(runs: list[Run], suites: Iterable[str] | None = None) -> Table:
    """kexue against its peer, group by group: time, ratio, verdict, peak memory."""
    return tabulate(
        {
            "Machine": run.name,
            "Benchmark": ours.suite,
            "Input": ours.group,
            "kexue": ours.candidate,
            "peer": peer.candidate,
            "kexue time": _ms(ours),
            "kexue / peer [quartiles]": fmt_ratio(q),
            "verdict": interval_verdict(q),
            "memory, kexue / peer": f"{_mib(ours)} / {_mib(peer)}",
        }
        for run in runs
        for ours, peer, q in versus(run, suites)
    )


def slower(runs: list[Run]) -> list[str]:
    """Every comparison where kexue is slower than its peer (whole interval above 1)."""
    return [
        f"{run.label}: {a.suite}, {a.group}: {a.candidate} / {b.candidate} = "
        + fmt_ratio(q)
        for run in runs
        for a, b, q in versus(run)
        if interval_verdict(q) == "slower"
    ]


def floor_table(
    runs: list[Run], suites: Sequence[str] = ("rope", "masked_softmax", "hippo_matvec")
) -> Table:
    """Each memory-bound kernel's time over the floors', paired round by round (``x *
    2`` allocates its output, ``copy_`` does not); on a GPU, its bandwidth."""
    return tabulate(
        {
            "Machine": run.name,
            "Benchmark": suite,
            "Input": group,
            "Candidate": name,
            "time": _ms(r),
            "/ x * 2": fmt_ratio(paired(r, c[FLOOR_ELEMENTWISE])),
            "/ copy_": fmt_ratio(paired(r, c[FLOOR_COPY])),
            "bandwidth": _bandwidth(run, r),
        }
        for run in runs
        for suite in suites
        for group, c in run.groups(suite).items()
        if all(f in c for f in FLOORS)
        for name, r in c.items()
        if name not in FLOORS
    )


def floor_span(
    run: Run, suite: str, candidates: Sequence[str], inputs: slice = slice(None)
) -> str:
    """The range "a to b" (or "a") of the candidates' median time over ``x * 2``'s,
    paired, over the suite's ``inputs`` (a slice of its groups, in the order measured)."""
    groups = [c for c in run.groups(suite).values() if FLOOR_ELEMENTWISE in c][inputs]
    ratios = [
        paired(c[name], c[FLOOR_ELEMENTWISE]).median
        for c in groups
        for name in candidates
        if name in c
    ]
    low, high = f"{min(ratios):.1f}", f"{max(ratios):.1f}"
    return low if low == high else f"{low} to {high}"


def floor_rates(run: Run, suite: str = "rope") -> Table:
    """GB/s of the floor's two rows by input (bytes read plus written over the time)."""

    def rate(c: dict[str, Row], floor: str) -> str:
        return f"{2 * _mb(c) / 1e3 / c[floor].time_s.median:.1f}"

    return tabulate(
        {
            "Input": group,
            "MB": f"{_mb(c):.0f}",
            "x * 2 (GB/s)": rate(c, FLOOR_ELEMENTWISE),
            "copy_ (GB/s)": rate(c, FLOOR_COPY),
        }
        for group, c in run.groups(suite).items()
        if all(f in c for f in FLOORS)
    )


def throughput_table(runs: list[Run], suite: str = "bert") -> Table:
    """Real tokens per second and peak memory of each BERT candidate."""
    return tabulate(
        {
            "Machine": run.name,
            "Input": r.group,
            "Candidate": r.candidate,
            "tokens/s": f"{r.params['tokens'] / r.time_s.median:,.0f}",
            "peak memory": _mib(r),
        }
        for run in runs
        for r in run.select(suite)
    )


# --- targets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One target judged from a results file: its verdict follows from ``met`` (None: no
    file of the kind of machine it concerns); ``why``, the reason for a verdict other
    than met, is required then and dropped when the target is met."""

    target: str
    machine: str
    measured: str
    met: bool | None
    why: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.met, bool | np.bool_ | None):
            raise TypeError(f"met must be a bool or None, not {self.met!r}")
        object.__setattr__(self, "met", None if self.met is None else bool(self.met))
        object.__setattr__(self, "why", "" if self.met else self.why.strip())
        if not (self.met or self.why):
            raise ValueError(f"a target judged {self.verdict} needs a reason in `why`")

    @property
    def verdict(self) -> str:
        return "untested" if self.met is None else ("met" if self.met else "missed")


def no_slower(
    target: str, run: Run, measured: str, ratios: Sequence[Stats], why: str
) -> Target:
    """Met unless some ratio is slower; ``why`` may name their count, ``{slow}``."""
    slow = sum(interval_verdict(q) == "slower" for q in ratios)
    return Target(target, run.name, measured, not slow, why.format(slow=slow))


def rope_targets(run: Run) -> list[Target]:
    """``apply_rope`` no slower than rotary-embedding-torch; on a GPU, the bandwidth."""
    ratios = [
        g["kexue apply_rope"].ratio_to_reference
        for g in run.groups("rope").values()
        if "kexue apply_rope" in g and "rotary-embedding-torch" in g
    ]
    kind = run.device["type"].upper()
    shown = "; ".join(f"{fmt_ratio(q)} ({interval_verdict(q)})" for q in ratios)
    target = f"`apply_rope` no slower than rotary-embedding-torch ({kind})"
    measured = "ratio (median [quartiles]) by size: " + shown
    why = "slower at some size: see the RoPE section"
    out = [no_slower(target, run, measured, ratios, why)] if ratios else []
    return out + ([_bandwidth_target(run)] if run.gpu else [])


def _bandwidth_target(run: Run) -> Target:
    """RoPE's best kexue candidate at the largest input of each dtype, over the peak."""
    by_dtype: dict[str, list[dict[str, Row]]] = {}
    for g in run.groups("rope").values():
        by_dtype.setdefault(next(iter(g.values())).params["dtype"], []).append(g)
    shown, fractions = [], []
    for dtype, gs in sorted(by_dtype.items()):
        g = max(gs, key=_mb)  # the first of the largest
        ours = [
            r for r in g.values() if r.candidate.startswith("kexue") and r.bandwidth
        ]
        best = max(ours, key=lambda r: r.bandwidth["achieved_Bps"])
        frac = best.bandwidth["fraction_of_peak"]
        eager = g.get("kexue apply_rope", best).bandwidth["fraction_of_peak"]
        fractions.append(frac)
        if frac is not None:
            shown.append(
                f"{dtype}, {_mb(g):.0f} MB: {100 * frac:.0f}% ({best.candidate}; "
                f"eager apply_rope {100 * eager:.0f}%)"
            )
    if not fractions or None in fractions:
        why = "add the card to PEAK_BANDWIDTH in benchmarks/harness.py"
        measured, met = "peak bandwidth of this card unknown", None
    else:
        why = "below 70% at the largest input"
        measured = "best kexue candidate at the largest input: " + "; ".join(shown)
        met = min(fractions) > 0.7
    return Target(GPU_TARGETS[1], run.name, measured, met, why)


def linear_targets(run: Run) -> list[Target]:
    """Causal linear attention linear in n; on a GPU, beating flash from some n on."""
    out = []
    if fit := slopes(run, "attention_causal", LINEAR_CAUSAL):
        target = "Causal linear attention linear in $n$, in time and memory"
        measured = (
            "log-log slopes over the longer half of the lengths (linear if below "
            f"1.5, midway to quadratic): time {fit[0]:.2f}, memory {fit[1]:.2f}"
        )
        why = "a slope of 1.5 or more"
        out.append(Target(target, run.name, measured, max(fit) < 1.5, why))
    if run.gpu:
        n_star, _ = crossover(run)
        measured = f"from n = {n_star}" if n_star else "not within the lengths measured"
        why = "slower than flash attention at every length measured"
        out.append(Target(GPU_TARGETS[2], run.name, measured, n_star is not None, why))
    return out


def _time_pairs(run: Run, ours: str, causal: bool = False) -> list[Stats]:
    """Time ratios of a kexue candidate to its peer: non-causal (the sweep and every
    length of the attention suite) or causal (every length of the causal suite)."""
    suites = ["attention_causal"] if causal else ["approx_sweep", "attention"]
    return [q for a, _, q in versus(run, suites) if a.candidate.startswith(ours)]


def approx_targets(run: Run) -> list[Target]:
    """Performer and Nyström no slower than their peers at equal budget (non-causal and
    causal apart) and at equal accuracy, and no less accurate at equal cost."""
    out = []
    for method, (title, ours, peer) in APPROX.items():
        # never mixed: without its CUDA kernel, performer-pytorch's causal mode is a
        # Python loop, a different comparison
        for causal, kind, where in (
            (False, "non-causal", "the sweep and every length"),
            (True, "causal", "every causal length"),
        ):
            if not (pairs := _time_pairs(run, ours, causal)):
                continue
            medians = np.array([p.median for p in pairs])
            measured = (
                f"kexue / peer time over {len(pairs)} comparisons ({where}): median "
                f"{np.median(medians):.2f}, range {medians.min():.2f} to "
                f"{medians.max():.2f}; " + verdict_counts(pairs)
            )
            why = "slower (whole quartile interval above 1) in some"
            target = f"{title} no slower than {peer} at equal budget ({kind})"
            out.append(no_slower(target, run, measured, pairs, why))
        if not _time_pairs(run, ours):
            continue
        budgets = ", ".join(map(str, pooling_budgets(run, method)))
        little = budgets and (
            f"; at m = {budgets} both are no better than mean pooling, where this "
            "says little"
        )
        err, time = at_equal(run, method) or (np.nan, np.nan)
        worst = f"{time:.2f}" if np.isfinite(time) else "never reached"
        slow = "kexue needs more time than the peer to reach the peer's error"
        if not np.isfinite(time):
            slow = "the peer's error is below every error kexue reaches"
        worse = "kexue's error at the peer's time is above the peer's"
        if method == "performer":  # measured apart: the ε tables and lines
            slow += ": see the ε discussion"
            worse = "the peer's larger effective ε shrinks it to mean pooling, the "
            worse += "better estimate here"
        out += [
            Target(
                f"{title} no slower than {peer} at equal accuracy",
                run.name,
                "kexue's time to reach the peer's error, / the peer's time: worst "
                f"{worst}{little}",
                bool(np.isfinite(time) and time <= 1.05),
                slow,
            ),
            Target(
                f"{title} no less accurate than {peer} at equal cost",
                run.name,
                "kexue's error at the peer's time, / the peer's error: worst "
                f"{err:.2f}{little}",
                bool(err <= 1.05),
                worse,
            ),
        ]
    return out


def versus_targets(run: Run) -> list[Target]:
    """ "No slower than its peer" for every kexue candidate of the chapters' kernels."""
    found: dict[tuple[str, str, str], list[Stats]] = {}
    for a, b, q in versus(run, KERNELS):
        found.setdefault((a.suite, a.candidate, b.candidate), []).append(q)
    return [
        no_slower(
            f"{KERNELS[suite]}: `{ours}` no slower than {peer}",
            run,
            "kexue / peer by size: " + "; ".join(map(fmt_ratio, qs)),
            qs,
            f"slower at {{slow}} of {len(qs)} sizes: see below",
        )
        for (suite, ours, peer), qs in found.items()
    ]


def targets(runs: list[Run]) -> list[Target]:
    """Every target judged from every file; the GPU ones untested without a GPU file."""
    out = [
        t
        for run in runs
        for judge in (rope_targets, linear_targets, approx_targets, versus_targets)
        for t in judge(run)
    ]
    if not any(run.gpu for run in runs):
        why = "needs `make bench` on a CUDA machine"
        out += [Target(t, "—", "no GPU results file", None, why) for t in GPU_TARGETS]
    return out


def targets_list(judged: list[Target]) -> str:
    """The judged targets as a markdown list (which wraps where a wide table would
    scroll): verdict, machine, target, what was measured and why."""
    items = []
    for t in judged:
        where = f" on {t.machine}" if t.machine != "—" else ""
        item = f"- **{t.verdict}**{where}: {t.target}. *Measured:* {t.measured}"
        items.append(item + (f". *Why:* {t.why}." if t.why else "."))
    return "\n".join(items)


def tally(judged: list[Target]) -> str:
    """How many targets are met, missed and untested, in words."""
    counts = {
        v: sum(t.verdict == v for t in judged) for v in ("met", "missed", "untested")
    }
    shown = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"{len(judged)} targets: {shown}."


# --- figures (matplotlib is imported only here) ---------------------------------------
def _plain(value: float, _pos: object = None) -> str:
    """A tick label: plain digits from 0.001 to 10^4, a power of ten beyond."""
    if value <= 0:
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = np.log10(value)
    return f"$10^{{{exponent:.0f}}}$" if float(exponent).is_integer() else ""


def tidy(ax: Any, xticks: Sequence[float] | None = None) -> None:
    """Log axes labelled with plain numbers, minor labels only on an axis under two
    decades; ``xticks``, the measured x values, labelled as they are."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_major_formatter(FuncFormatter(_plain))
        narrow = low > 0 and high / low < 100
        if narrow:  # 2, 3, 5 within a decade; 2 and 5 over up to two decades
            subs = (2.0, 3.0, 5.0) if high / low < 10 else (2.0, 5.0)
            axis.set_minor_locator(LogLocator(subs=subs))
        axis.set_minor_formatter(FuncFormatter(_plain) if narrow else NullFormatter())
    if xticks is not None:
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(list(xticks), [_plain(x) for x in xticks])


def _guides(ax: Any, x: np.ndarray, y0: float = 1.0) -> None:
    """Dotted lines of slopes 1 and 2 through ``(x[0], y0)``, log-log."""
    ax.loglog(x, y0 * x / x[0], "k:", lw=0.8)
    ax.loglog(x, y0 * (x / x[0]) ** 2, "k:", lw=0.8)


def draw_rope(ax: Any, run: Run) -> None:
    """Bars of time / rotary-embedding-torch by candidate and input, with quartiles."""
    groups = run.groups("rope")
    first = next(iter(groups.values()))
    names = [c for c in first if c != "rotary-embedding-torch" and c not in FLOORS]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        x = np.arange(len(groups)) + (j - (len(names) - 1) / 2) * width
        qs = [g[name].ratio_to_reference for g in groups.values()]
        median = np.array([q.median for q in qs])
        whiskers = [median - [q.q25 for q in qs], [q.q75 for q in qs] - median]
        ax.bar(x, median, width, yerr=whiskers, label=name, capsize=2)
    ax.axhline(1, color="k", lw=0.8)
    inputs = [g.split(" float")[0] for g in groups]
    ax.set_xticks(np.arange(len(groups)), inputs, fontsize="small")
    ax.set(ylabel="time / rotary-embedding-torch", title=run.label)
    ax.legend(ncols=2)


def draw_attention(ax_time: Any, ax_memory: Any, run: Run, suite: str) -> None:
    """Median time and peak memory against n, log-log, with dotted slopes 1 and 2."""
    markers = "os^vDP*X"
    points: dict[str, list[tuple[int, float, int]]] = {}
    for r in run.select(suite):
        point = (r.params["n"], r.time_s.median, r.peak_memory_bytes)
        points.setdefault(r.candidate, []).append(point)
    for i, (name, pts) in enumerate(points.items()):
        n, t, mem = np.array(sorted(pts)).T
        style = {"marker": markers[i % len(markers)], "ms": 3, "label": name}
        ax_time.loglog(n, t * 1e3, **style)
        ax_memory.loglog(n, mem / 2**20, **style)
    lengths = sorted({p[0] for pts in points.values() for p in pts})
    for ax in (ax_time, ax_memory):
        _guides(ax, np.array([lengths[0], 16 * lengths[0]]))
        tidy(ax, lengths)
    kind = "causal" if "causal" in suite else "non-causal"
    ax_time.set(ylabel="time (ms)", title=f"{kind}, {run.name}")
    ax_memory.set(ylabel="peak memory (MiB)", xlabel="sequence length $n$")
    ax_memory.legend(loc="upper left", bbox_to_anchor=(0.0, -0.3), fontsize="small")


def draw_error_cost(ax: Any, run: Run, method: str) -> None:
    """Error against time over the sweep's budgets, labelled on the kexue curve."""
    title, ours, _ = APPROX[method]
    sweep = [r for r in run.select("approx_sweep") if r.params["method"] == method]
    points: dict[str, list[tuple[float, float, int, float]]] = {}
    for r in sweep:
        point = (r.time_s.median, error_of(r), r.params["budget"], spread(r))
        points.setdefault(r.candidate, []).append(point)
    for name, pts in points.items():
        t, e, m, sd = np.array(sorted(pts)).T
        fmt = "o-" if name == ours else "s--"
        ax.errorbar(t * 1e3, e, yerr=sd, fmt=fmt, ms=3, label=name)
        ax.set(xscale="log", yscale="log")
        if name == ours:
            for ti, ei, mi in zip(t, e, m, strict=True):
                at = {"xytext": (-4, 5), "textcoords": "offset points"}
                ax.annotate(f"{mi:.0f}", (ti * 1e3, ei), fontsize="x-small", **at)
    if sweep:
        pooling = sweep[0].params["error_of_mean_pooling"]
        ax.axhline(pooling, ls=":", color="gray", lw=1, label="mean pooling")
    n = sweep[0].params["n"] if sweep else "?"
    ax.set(xlabel="time (ms)", ylabel="relative error", title=f"{title}, n = {n}")
    tidy(ax)
    ax.legend(fontsize="small")


def draw_hippo(ax_matvec: Any, ax_online: Any, run: Run) -> None:
    """Left: A v, dense and by legs_matvec, against N. Right: legs_memory by length."""
    for name, style in (("dense v @ A.T", "s--"), ("kexue legs_matvec", "o-")):
        rows = run.select("hippo_matvec", name)
        N, t = np.array(sorted((r.params["N"], r.time_s.median) for r in rows)).T
        ax_matvec.loglog(N, t * 1e6, style, ms=3, label=name)
    _guides(ax_matvec, N, t[0] * 1e6)
    ax_matvec.set(xlabel="order $N$", ylabel="time (µs)", title=f"$A v$, {run.name}")
    tidy(ax_matvec, N)
    ax_matvec.legend(fontsize="small")
    online = run.select("hippo_online")
    for order in sorted({r.params["N"] for r in online}):
        rows = [r for r in online if r.params["N"] == order]
        L, t = np.array(sorted((r.params["length"], r.time_s.median) for r in rows)).T
        ax_online.loglog(L, t * 1e3, "o-", ms=3, label=f"N = {order}")
    title = f"legs_memory, {run.name}"
    ax_online.set(xlabel="length", ylabel="time (ms)", title=title)
    tidy(ax_online, sorted({r.params["length"] for r in online}))
    ax_online.legend(fontsize="small")
