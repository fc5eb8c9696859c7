"""What the book's benchmarks appendix shows: tables, figures and target verdicts from results files.

The appendix (chapters/appendix/benchmarks.md) reads every ``benchmarks/results/*.json`` that ``make bench``
wrote and calls these functions; its cells stay short. Nothing here times anything. Tables are returned as
``(header, rows)`` and rendered by :func:`md_table`; targets as :class:`Target` rows whose verdict is derived
from the measured boolean ``met`` (``True`` met, ``False`` missed, ``None`` untested), never written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Run = dict[str, Any]
Row = dict[str, Any]
Table = tuple[list[str], list[list[str]]]

LINEAR_CAUSAL = "kexue linear_attention, causal"
FLASH_CAUSAL = "SDPA flash, causal"
APPROX_PAIRS = (
    ("performer", "Performer", "kexue performer_attention", "performer-pytorch"),
    ("nystrom", "Nyström", "kexue nystrom_attention", "nystrom-attention"),
)
FLOORS = ("x * 2 (floor)", "copy_ into preallocated (floor)")  # benchmarks.registry
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


# --- loading and selecting -------------------------------------------------------------------------


def find_results(start: Path) -> Path:
    """The repository's ``benchmarks/results`` folder, from ``start`` or any folder above it."""
    for folder in (start, *start.parents):
        if (folder / "benchmarks" / "results").is_dir():
            return folder / "benchmarks" / "results"
    raise FileNotFoundError(f"no benchmarks/results above {start}")


def load_runs(folder: Path) -> list[Run]:
    """Every results file in ``folder``, sorted by name, each with its file name under ``"file"``."""
    runs = [
        json.loads(p.read_text()) | {"file": p.name}
        for p in sorted(folder.glob("*.json"))
    ]
    if not runs:
        raise FileNotFoundError(f"no results files in {folder}")
    return runs


def rows(run: Run, suite: str, status: str = "ok") -> list[Row]:
    return [r for r in run["rows"] if r["suite"] == suite and r["status"] == status]


def by_group(run: Run, suite: str) -> dict[str, dict[str, Row]]:
    """The rows of a suite by group, then by candidate."""
    groups: dict[str, dict[str, Row]] = {}
    for r in rows(run, suite):
        groups.setdefault(r["group"], {})[r["candidate"]] = r
    return groups


def label(run: Run) -> str:
    d = run["device"]
    threads = f"{d['threads']} thread{'s' if d['threads'] > 1 else ''}"
    return f"{d['name']} ({d['type'].upper()}, {threads})"


# --- statistics ------------------------------------------------------------------------------------


def paired(a: Row, b: Row) -> np.ndarray:
    """Median and quartiles of the round-by-round ratio time(a) / time(b) of two rows of one group."""
    ratios = np.array(a["time_s"]["per_round"]) / np.array(b["time_s"]["per_round"])
    return np.percentile(ratios, [50, 25, 75])


def fmt_ratio(q) -> str:
    return f"{q[0]:.2f} [{q[1]:.2f}, {q[2]:.2f}]"


def interval_verdict(q) -> str:
    """A time ratio (median, q25, q75) judged by its interval, the quartiles: "slower" when
    the whole interval is above 1, "faster" when it is below 1, else "no clear difference"."""
    if q[1] > 1:
        return "slower"
    if q[2] < 1:
        return "faster"
    return "no clear difference"


def verdict_counts(ratios) -> str:
    """How many ratios are faster, show no clear difference and are slower, in words."""
    kinds = [interval_verdict(q) for q in ratios]
    return ", ".join(
        f"{v} in {kinds.count(v)}" for v in ("faster", "no clear difference", "slower")
    )


def slope(points) -> float:
    """Least-squares slope of log y against log x over the upper half of the x values."""
    x, y = np.log(np.array(points, dtype=float)).T
    keep = x >= np.median(x)
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def series(run: Run, suite: str, candidate: str, key: str) -> list[tuple[int, float]]:
    """(n, median time) or (n, peak memory) points of one candidate, ``key`` "time" or "memory"."""
    if key not in ("time", "memory"):
        raise ValueError(f"key must be 'time' or 'memory', got {key!r}")
    out = []
    for r in rows(run, suite):
        if r["candidate"] == candidate:
            value = r["time_s"]["median"] if key == "time" else r["peak_memory_bytes"]
            out.append((r["params"]["n"], value))
    return sorted(out)


def crossover(run: Run, fast: str, slow: str, suite: str = "attention_causal"):
    """Smallest n from which ``fast`` beats ``slow`` (whole quartile interval of the paired ratio
    below 1) at every larger n.

    Returns ``(n_star or None, [(n, quartiles of the ratio)] sorted by n)``.
    """
    ratios = [
        (cands[fast]["params"]["n"], paired(cands[fast], cands[slow]))
        for cands in by_group(run, suite).values()
        if fast in cands and slow in cands
    ]
    ratios.sort(key=lambda item: item[0])
    tail = [
        n
        for i, (n, _) in enumerate(ratios)
        if all(interval_verdict(q) == "faster" for _, q in ratios[i:])
    ]
    return (tail[0] if tail else None), ratios


def error_of(row: Row) -> float:
    """A row's error against exact attention: the mean over its projections where it has
    several (Performer's error is random), else its one error."""
    draws = row.get("error_draws")
    return float(np.mean(draws)) if draws else row["error_vs_exact"]


def fmt_error(row: Row) -> str:
    """The error with its spread over projections (sample standard deviation), if any."""
    draws = row.get("error_draws")
    if not draws or len(draws) < 2:
        return f"{row['error_vs_exact']:.3f}"
    return f"{np.mean(draws):.3f} ± {np.std(draws, ddof=1):.3f}"


def curve(run: Run, method: str, candidate: str) -> np.ndarray:
    """(median time, error) of one candidate of the error-cost sweep, sorted by time."""
    pts = sorted(
        (r["time_s"]["median"], error_of(r))
        for r in rows(run, "approx_sweep")
        if r["params"]["method"] == method and r["candidate"] == candidate
    )
    return np.array(pts).reshape(-1, 2)


def at_equal(
    run: Run, method: str, ours: str, theirs: str
) -> tuple[float, float] | None:
    """kexue against the peer at equal cost and at equal accuracy, from the sweep.

    Returns the worst ratio of kexue's error (interpolated log-log along its curve) to the peer's,
    at the peer's times within kexue's range (NaN if none is); and the worst ratio of the time kexue
    needs to reach the peer's error (its fastest measured budget that does) to the peer's time, inf
    where no budget does. None when either curve is missing.
    """
    a, b = curve(run, method, ours), curve(run, method, theirs)
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


# --- tables ----------------------------------------------------------------------------------------


def md_table(header: list[str], body: list[list[Any]]) -> str:
    """A markdown table from a header and rows of cells (``|`` in a cell is escaped)."""
    if any(len(row) != len(header) for row in body):
        raise ValueError("every row needs one cell per column of the header")

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, body)])


def split_by(table: Table, columns: list[str]) -> list[tuple[str, Table]]:
    """One smaller table per distinct value of ``columns``, titled by those values.

    A wide table whose first columns repeat (the machine, the input shape) reads better as a
    few narrow tables, each under a line that names what its rows share.
    """
    header, body = table
    keys = [header.index(c) for c in columns]
    kept = [i for i in range(len(header)) if i not in keys]
    groups: dict[str, list[list[str]]] = {}
    for row in body:
        title = ", ".join(str(row[i]) for i in keys)
        groups.setdefault(title, []).append([row[i] for i in kept])
    return [
        (title, ([header[i] for i in kept], rows)) for title, rows in groups.items()
    ]


def drop_uniform(table: Table, columns: list[str], value: str) -> Table:
    """``table`` without those of ``columns`` whose every cell is ``value`` (say, "–")."""
    header, body = table
    gone = {
        header.index(c)
        for c in columns
        if c in header and all(row[header.index(c)] == value for row in body)
    }
    keep = [i for i in range(len(header)) if i not in gone]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in body]


def _measured_when(run: Run) -> str:
    merged = run["settings"].get(
        "runs"
    )  # a file merged from runs of separate suites (--merge)
    if not merged:
        return run["date"][:16].replace("T", " ")
    return "; ".join(
        f"{r['date'][:16].replace('T', ' ')} ({', '.join(r['suites'])})" for r in merged
    )


def machines_table(runs: list[Run]) -> Table:
    header = [
        "Results file",
        "Device",
        "Cores, threads",
        "torch",
        "Measured (UTC)",
        "Load average",
        "Wall time",
    ]
    body = []
    for run in runs:
        d, load = run["device"], run.get("load_average") or {}
        body.append(
            [
                f"`{run['file']}`",
                f"{d['name']} ({d['type']})",
                f"{d['cores']}, {d['threads']}",
                run["torch_version"],
                _measured_when(run),
                f"{(load.get('start') or ['?'])[0]} → {(load.get('end') or ['?'])[0]}",
                f"{run.get('wall_seconds', float('nan')):.0f} s",
            ]
        )
    return header, body


def peers_line(runs: list[Run]) -> str:
    peers = sorted(
        {f"{name} {v}" for run in runs for name, v in run["peers"].items() if v}
    )
    return "Peers measured against: " + ", ".join(peers) + "."


def rope_table(runs: list[Run]) -> Table:
    header = [
        "Machine",
        "Input",
        "Candidate",
        "Time",
        "Ratio [quartiles]",
        "Peak memory",
        "Bandwidth",
    ]
    body = []
    for run in runs:
        for group, cands in by_group(run, "rope").items():
            for name, r in cands.items():
                bw = r.get("bandwidth") or {}
                shown = "–"
                if run["device"]["type"] == "cuda" and bw.get("achieved_Bps"):
                    frac = bw.get("fraction_of_peak")
                    shown = f"{bw['achieved_Bps'] / 1e9:.0f} GB/s"
                    shown += f" ({100 * frac:.0f}% of peak)" if frac else ""
                q = r["ratio_to_reference"]
                body.append(
                    [
                        run["device"]["name"],
                        group,
                        name,
                        f"{1e3 * r['time_s']['median']:.3g} ms",
                        fmt_ratio([q["median"], q["q25"], q["q75"]]),
                        f"{r['peak_memory_bytes'] / 2**20:.1f} MiB",
                        shown,
                    ]
                )
    return header, body


def rope_per_mb(run: Run, candidates: tuple[str, ...]) -> Table:
    """Median time per MB of input (ms/MB) of some RoPE candidates, by input size: the two
    per-byte costs whose quotient is the ratio, to see which of them moves with the size."""
    header = ["Input (ms per MB)", *candidates]
    body = []
    for group, cands in by_group(run, "rope").items():
        if all(c in cands for c in candidates):
            mb = next(iter(cands.values()))["params"]["MB"]
            cells = [
                f"{1e3 * cands[c]['time_s']['median'] / mb:.3f}" for c in candidates
            ]
            body.append([group.split(" float")[0], *cells])
    return header, body


def rope_memory_line(run: Run, candidate: str = "rotary-embedding-torch") -> str:
    """The range over sizes of a RoPE candidate's peak extra memory divided by the input."""
    per_input = [
        r["peak_memory_bytes"] / (1e6 * r["params"]["MB"])
        for r in rows(run, "rope")
        if r["candidate"] == candidate
    ]
    return (
        f"{label(run)}: {candidate}'s peak extra memory is {min(per_input):.1f} to "
        f"{max(per_input):.1f} times the input."
    )


def attention_settings_line(run: Run) -> str:
    """The budgets and shapes of the attention suite, read from its rows."""
    params = rows(run, "attention")[0]["params"]
    return (
        f"{label(run)}: Performer with {params['features']} features, Nyström with "
        f"{params['landmarks']} landmarks; batch {params['batch']}, {params['heads']} "
        f"heads of dimension {params['head_dim']}, {params['dtype']}."
    )


def slopes_table(runs: list[Run]) -> Table:
    body = []
    for run in runs:
        for suite in ("attention", "attention_causal"):
            for name in sorted({r["candidate"] for r in rows(run, suite)}):
                t, m = (
                    series(run, suite, name, "time"),
                    series(run, suite, name, "memory"),
                )
                if len(t) >= 3:
                    body.append(
                        [
                            run["device"]["name"],
                            name,
                            f"{slope(t):.2f}",
                            f"{slope(m):.2f}",
                        ]
                    )
    return ["Machine", "Candidate", "slope of time", "slope of memory"], body


def crossover_line(run: Run) -> str:
    n_star, ratios = crossover(run, LINEAR_CAUSAL, FLASH_CAUSAL)
    shown = ", ".join(f"{n}: {fmt_ratio(q)}" for n, q in ratios)
    verdict = (
        f"Linear attention is faster from $n = {n_star}$ on."
        if n_star
        else "It is never faster here."
    )
    return f"{label(run)}: causal linear attention / SDPA flash (causal), by $n$: {shown}. {verdict}"


def approx_table(runs: list[Run]) -> Table:
    header = [
        "Machine",
        "Method",
        "m",
        "kexue / peer time, same m",
        "kexue error",
        "peer error",
        "mean pooling",
    ]
    body = []
    for run in runs:
        for cands in by_group(run, "approx_sweep").values():
            method = next(iter(cands.values()))["params"]["method"]
            _, _, ours, peer = next(p for p in APPROX_PAIRS if p[0] == method)
            if ours in cands and peer in cands:
                r = cands[ours]
                body.append(
                    [
                        run["device"]["name"],
                        method,
                        r["params"]["budget"],
                        fmt_ratio(paired(r, cands[peer])),
                        fmt_error(r),
                        fmt_error(cands[peer]),
                        f"{r['params']['error_of_mean_pooling']:.3f}",
                    ]
                )
    return header, body


def draws_line(run: Run) -> str | None:
    """How many projections each Performer error of the sweep averages, if more than one."""
    counts = {
        len(r["error_draws"])
        for r in rows(run, "approx_sweep")
        if len(r.get("error_draws") or []) > 1
    }
    if not counts:
        return None
    shown = " or ".join(map(str, sorted(counts)))
    return (
        f"{label(run)}: each Performer error is the mean ± standard deviation over {shown} "
        "independent orthogonal projections (the first of them is the one timed); the "
        "Nyström errors are deterministic."
    )


def _performer_pairs(run: Run) -> list[tuple[Row, Row]]:
    """(kexue, performer-pytorch) rows of the sweep whose peer row records the ε = 0 check."""
    return [
        (cands["kexue performer_attention"], cands["performer-pytorch"])
        for cands in by_group(run, "approx_sweep").values()
        if "performer-pytorch" in cands
        and "kexue performer_attention" in cands
        and "error_with_eps_0" in (cands["performer-pytorch"].get("check") or {})
    ]


def epsilon_table(runs: list[Run]) -> Table:
    header = [
        "Machine",
        "m",
        "kexue error, timed projection",
        "peer error, same projection",
        "both with ε = 0",
        "mean pooling",
        "kexue vs peer output",
    ]
    body = []
    for run in runs:
        for ours, peer in _performer_pairs(run):
            body.append(
                [
                    run["device"]["name"],
                    ours["params"]["budget"],
                    f"{ours['error_vs_exact']:.3f}",
                    f"{peer['error_vs_exact']:.3f}",
                    f"{peer['check']['error_with_eps_0']:.3f}",
                    f"{ours['params']['error_of_mean_pooling']:.3f}",
                    f"{peer['check']['difference_at_default_eps']:.3f}",
                ]
            )
    return header, body


def epsilon_line(run: Run) -> str | None:
    pairs = _performer_pairs(run)
    if not pairs:
        return None
    baseline = pairs[0][0]["params"]["error_of_mean_pooling"]
    peer_gap = max(abs(b["error_vs_exact"] - baseline) for _, b in pairs) / baseline
    ours_vs_raw = [
        a["error_vs_exact"] / b["check"]["error_with_eps_0"] for a, b in pairs
    ]
    return (
        f"{label(run)}: over the budgets, performer-pytorch's error is within {100 * peer_gap:.0f}% "
        f"of mean pooling's ({baseline:.3f}); kexue's error is {min(ours_vs_raw):.2f} to "
        f"{max(ours_vs_raw):.2f} times that of the estimator with ε = 0."
    )


def hippo_line(run: Run) -> str:
    quartiles = {
        r["params"]["N"]: [r["ratio_to_reference"][k] for k in ("median", "q25", "q75")]
        for r in rows(run, "hippo_matvec")
        if r["candidate"] == "kexue legs_matvec"
    }
    ratios = {N: q[0] for N, q in quartiles.items()}
    faster = [  # the whole quartile interval below 1, at this N and every larger one
        N
        for N in sorted(quartiles)
        if all(interval_verdict(q) == "faster" for M, q in quartiles.items() if M >= N)
    ]
    online = [
        (r["params"]["N"], r["params"]["length"], r["peak_memory_bytes"])
        for r in rows(run, "hippo_online")
    ]
    per_entry = [mem / (L * N * N * 4) for N, L, mem in online]
    skipped = [r["note"] for r in rows(run, "hippo_online", status="skipped")]
    text = f"{label(run)}: `legs_matvec` / dense by $N$: "
    text += ", ".join(f"{N}: {q:.3f}" for N, q in sorted(ratios.items()))
    text += f"; faster from $N = {faster[0]}$ on." if faster else "."
    text += (
        f" The online recurrence's peak memory is {min(per_entry):.2f} to {max(per_entry):.2f} times "
        "the size of `length` float32 N × N matrices: it precomputes one transition per step"
    )
    return text + (f" (left out: {'; '.join(skipped)})." if skipped else ".")


# --- targets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One target of the benchmarks, judged from a results file.

    ``met`` is the boolean computed from the measurement (None: no file of the kind of machine the
    target concerns); the verdict follows from it. ``why`` is required unless the target is met.
    """

    target: str
    machine: str
    measured: str
    met: bool | None
    why: str = ""

    def __post_init__(self) -> None:
        if self.met is not None and not isinstance(self.met, bool | np.bool_):
            raise TypeError(
                f"met must be a bool or None, got {type(self.met).__name__}"
            )
        object.__setattr__(self, "met", None if self.met is None else bool(self.met))
        if self.met is not True and not self.why.strip():
            raise ValueError(
                f"a target judged {self.verdict!r} needs a reason in `why`"
            )

    @property
    def verdict(self) -> str:
        return "untested" if self.met is None else ("met" if self.met else "missed")


def rope_targets(run: Run) -> list[Target]:
    name, kind = run["device"]["name"], run["device"]["type"]
    groups = by_group(run, "rope")
    ratios = [
        g["kexue apply_rope"]["ratio_to_reference"]
        for g in groups.values()
        if "kexue apply_rope" in g and "rotary-embedding-torch" in g
    ]
    out = []
    if ratios:
        qs = [(q["median"], q["q25"], q["q75"]) for q in ratios]
        slower = [q for q in qs if interval_verdict(q) == "slower"]
        shown = "; ".join(f"{fmt_ratio(q)} ({interval_verdict(q)})" for q in qs)
        out.append(
            Target(
                f"`apply_rope` no slower than rotary-embedding-torch ({kind.upper()})",
                name,
                "ratio (median [quartiles]) by size: " + shown,
                not slower,
                "" if not slower else "slower at some size: see the RoPE section",
            )
        )
    if kind == "cuda":
        out.append(_bandwidth_target(run, groups))
    return out


def _bandwidth_target(run: Run, groups: dict[str, dict[str, Row]]) -> Target:
    """RoPE's best kexue candidate at the largest input of each dtype, against the card's peak."""
    largest: dict[str, tuple[dict[str, Row], float]] = {}
    for g in groups.values():
        params = next(iter(g.values()))["params"]
        if params["MB"] > largest.get(params["dtype"], ({}, 0))[1]:
            largest[params["dtype"]] = (g, params["MB"])
    target = "RoPE above 70% of the card's peak memory bandwidth"
    shown, fractions = [], []
    for dtype, (g, mb) in sorted(largest.items()):
        ours = [
            r
            for r in g.values()
            if r["candidate"].startswith("kexue") and r.get("bandwidth")
        ]
        best = max(ours, key=lambda r: r["bandwidth"]["achieved_Bps"])
        eager = g.get("kexue apply_rope", best)
        frac, eager_frac = (
            best["bandwidth"]["fraction_of_peak"],
            eager["bandwidth"]["fraction_of_peak"],
        )
        fractions.append(frac)
        if frac is not None:
            shown.append(
                f"{dtype}, {mb:.0f} MB: {100 * frac:.0f}% ({best['candidate']}; "
                f"eager apply_rope {100 * eager_frac:.0f}%)"
            )
    name = run["device"]["name"]
    if not fractions or any(f is None for f in fractions):
        why = "add the card to PEAK_BANDWIDTH in benchmarks/harness.py"
        return Target(target, name, "peak bandwidth of this card unknown", None, why)
    met = min(fractions) > 0.7
    measured = "best kexue candidate at the largest input: " + "; ".join(shown)
    return Target(
        target, name, measured, met, "" if met else "below 70% at the largest input"
    )


def linear_targets(run: Run) -> list[Target]:
    name, out = run["device"]["name"], []
    t = series(run, "attention_causal", LINEAR_CAUSAL, "time")
    m = series(run, "attention_causal", LINEAR_CAUSAL, "memory")
    if len(t) >= 3:
        met = slope(t) < 1.5 and slope(m) < 1.5  # nearer 1 (linear) than 2 (quadratic)
        out.append(
            Target(
                "Causal linear attention linear in $n$, in time and memory",
                name,
                "log-log slopes over the longer half of the lengths (linear if below 1.5, midway "
                f"to quadratic): time {slope(t):.2f}, memory {slope(m):.2f}",
                met,
                "" if met else "a slope of 1.5 or more",
            )
        )
    if run["device"]["type"] == "cuda":
        n_star, _ = crossover(run, LINEAR_CAUSAL, FLASH_CAUSAL)
        out.append(
            Target(
                GPU_TARGETS[2],
                name,
                f"from n = {n_star}" if n_star else "not within the lengths measured",
                n_star is not None,
                ""
                if n_star
                else "slower than flash attention at every length measured",
            )
        )
    return out


def _time_pairs(
    run: Run, ours: str, peer: str, causal: bool = False
) -> list[np.ndarray]:
    """Paired time ratios kexue / peer: non-causal (the sweep and every length of the attention
    suite) or causal (every length of the causal suite), never mixed, since performer-pytorch's
    causal mode without its CUDA kernel is a Python loop, a different comparison."""
    pairs = []
    if not causal:
        pairs = [
            paired(c[ours], c[peer])
            for c in by_group(run, "approx_sweep").values()
            if ours in c and peer in c
        ]
    for c in by_group(run, "attention_causal" if causal else "attention").values():
        a = next((c[k] for k in c if k.startswith(ours)), None)
        b = next((c[k] for k in c if k.startswith(peer)), None)
        if a and b:
            pairs.append(paired(a, b))
    return pairs


def pooling_budgets(run: Run, method: str, within: float = 0.1) -> list[int]:
    """Budgets of the sweep at which kexue's and the peer's errors are both no better than
    mean pooling's: each at least ``(1 - within)`` times its error."""
    _, _, ours, peer = next(p for p in APPROX_PAIRS if p[0] == method)
    out = []
    for c in by_group(run, "approx_sweep").values():
        if ours in c and peer in c and c[ours]["params"]["method"] == method:
            floor = (1 - within) * c[ours]["params"]["error_of_mean_pooling"]
            if min(error_of(c[ours]), error_of(c[peer])) >= floor:
                out.append(c[ours]["params"]["budget"])
    return sorted(out)


def pooling_line(run: Run, method: str, within: float = 0.1) -> str:
    """Where the accuracy comparison of ``method`` says little: both no better than pooling."""
    title = next(p[1] for p in APPROX_PAIRS if p[0] == method)
    budgets = pooling_budgets(run, method, within)
    if not budgets:
        return (
            f"{label(run)}: {title}: at every budget one of the two beats mean pooling."
        )
    return (
        f"{label(run)}: {title} at $m$ = {', '.join(map(str, budgets))}: kexue and its "
        f"peer are both no better than mean pooling (error at least {1 - within:.0%} "
        "of its), so comparing their errors says little there."
    )


def _budget_target(run: Run, title: str, peer: str, pairs, causal: bool) -> Target:
    medians = np.array([p[0] for p in pairs])
    slower = [p for p in pairs if interval_verdict(p) == "slower"]
    where = "every causal length" if causal else "the sweep and every length"
    return Target(
        f"{title} no slower than {peer} at equal budget"
        + (" (causal)" if causal else " (non-causal)"),
        run["device"]["name"],
        f"kexue / peer time over {len(pairs)} comparisons ({where}): median "
        f"{np.median(medians):.2f}, range {medians.min():.2f} to {medians.max():.2f}; "
        + verdict_counts(pairs),
        not slower,
        "" if not slower else "slower (whole quartile interval above 1) in some",
    )


def approx_targets(run: Run) -> list[Target]:
    name, out = run["device"]["name"], []
    for method, title, ours, peer in APPROX_PAIRS:
        for causal in (False, True):
            pairs = _time_pairs(run, ours, peer, causal)
            if pairs:
                out.append(_budget_target(run, title, peer, pairs, causal))
        if not _time_pairs(run, ours, peer):
            continue
        budgets = pooling_budgets(run, method)
        little = (
            f"; at m = {', '.join(map(str, budgets))} both are no better than "
            "mean pooling, where this says little"
            if budgets
            else ""
        )
        err_ratio, time_ratio = at_equal(run, method, ours, peer) or (np.nan, np.nan)
        reached = np.isfinite(time_ratio) and time_ratio <= 1.05
        out.append(
            Target(
                f"{title} no slower than {peer} at equal accuracy",
                name,
                "kexue's time to reach the peer's error, / the peer's time: worst "
                + (f"{time_ratio:.2f}" if np.isfinite(time_ratio) else "never reached")
                + little,
                bool(reached),
                ""
                if reached
                else "the peer's error is below every error kexue reaches: see the ε discussion",
            )
        )
        as_good = bool(err_ratio <= 1.05)
        out.append(
            Target(
                f"{title} no less accurate than {peer} at equal cost",
                name,
                f"kexue's error at the peer's time, / the peer's error: worst {err_ratio:.2f}"
                + little,
                as_good,
                ""
                if as_good
                else "the peer's larger effective ε shrinks it to mean pooling, the better estimate here",
            )
        )
    return out


def targets(runs: list[Run]) -> list[Target]:
    """Every target judged from every file, and the GPU targets as untested when no file is from a GPU."""
    out = [
        t
        for run in runs
        for t in (
            *rope_targets(run),
            *linear_targets(run),
            *approx_targets(run),
            *versus_targets(run),
        )
    ]
    if not any(run["device"]["type"] == "cuda" for run in runs):
        why = "needs `make bench` on a CUDA machine"
        out += [
            Target(target, "—", "no GPU results file", None, why)
            for target in GPU_TARGETS
        ]
    return out


def targets_table(judged: list[Target]) -> Table:
    body = [
        [
            t.target,
            t.machine,
            t.measured,
            f"**{t.verdict}**" + (f": {t.why}" if t.why else ""),
        ]
        for t in judged
    ]
    return ["Target (claim)", "Machine", "Measured", "Verdict"], body


def targets_list(judged: list[Target]) -> str:
    """The judged targets as a markdown list: each target, its verdict first, then the
    machine, what was measured and the reason (a list wraps where a wide table would scroll)."""
    items = []
    for t in judged:
        where = f" on {t.machine}" if t.machine != "—" else ""
        item = f"- **{t.verdict}**{where}: {t.target}. *Measured:* {t.measured}"
        items.append(item + (f". *Why:* {t.why}." if t.why else "."))
    return "\n".join(items)


def tally(judged: list[Target]) -> str:
    counts = {
        v: sum(t.verdict == v for t in judged) for v in ("met", "missed", "untested")
    }
    return (
        f"{len(judged)} targets: "
        + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        + "."
    )


# --- kexue against its peers, the floor, throughput -----------------------------------


def versus(run: Run, suites=None) -> list[tuple[Row, Row, np.ndarray]]:
    """(kexue row, peer row, paired ratio quartiles) of every row that names the peer
    it is judged against (``against``) in the same group, both timed."""
    out = []
    for suite in suites or sorted({r["suite"] for r in run["rows"]}):
        for cands in by_group(run, suite).values():
            for r in cands.values():
                if r.get("against") in cands:
                    out.append((r, cands[r["against"]], paired(r, cands[r["against"]])))
    return out


def versus_table(runs: list[Run], suites=None) -> Table:
    """kexue against its peer, group by group: time, ratio with its interval, verdict
    and peak memory of each."""
    header = [
        "Machine",
        "Benchmark",
        "Input",
        "kexue",
        "peer",
        "kexue time",
        "kexue / peer [quartiles]",
        "verdict",
        "memory, kexue / peer",
    ]
    body = []
    for run in runs:
        for ours, peer, q in versus(run, suites):
            mem = f"{_mib(ours)} / {_mib(peer)}"
            body.append(
                [
                    run["device"]["name"],
                    ours["suite"],
                    ours["group"],
                    ours["candidate"],
                    peer["candidate"],
                    f"{1e3 * ours['time_s']['median']:.3g} ms",
                    fmt_ratio(q),
                    interval_verdict(q),
                    mem,
                ]
            )
    return header, body


def _mib(row: Row) -> str:
    mem = row.get("peak_memory_bytes")
    return "–" if mem is None else f"{mem / 2**20:.3g} MiB"


def slower(runs: list[Run]) -> list[str]:
    """Every comparison where kexue is slower than its peer (whole interval above 1)."""
    return [
        f"{label(run)}: {a['suite']}, {a['group']}: {a['candidate']} / "
        f"{b['candidate']} = {fmt_ratio(q)}"
        for run in runs
        for a, b, q in versus(run)
        if interval_verdict(q) == "slower"
    ]


def versus_targets(run: Run) -> list[Target]:
    """ "No slower than its peer" for every kexue candidate of the chapters' kernels."""
    found: dict[tuple[str, str, str], list] = {}
    for a, b, q in versus(run, list(KERNELS)):
        found.setdefault((a["suite"], a["candidate"], b["candidate"]), []).append(q)
    out = []
    for (suite, ours, peer), qs in found.items():
        slow = [q for q in qs if interval_verdict(q) == "slower"]
        out.append(
            Target(
                f"{KERNELS[suite]}: `{ours}` no slower than {peer}",
                run["device"]["name"],
                "kexue / peer by size: " + "; ".join(fmt_ratio(q) for q in qs),
                not slow,
                ""
                if not slow
                else f"slower at {len(slow)} of {len(qs)} sizes: see below",
            )
        )
    return out


def floor_table(
    runs: list[Run], suites=("rope", "masked_softmax", "hippo_matvec")
) -> Table:
    """Each memory-bound kernel's time over the floor's, paired round by round: an
    elementwise op over the same bytes (allocation included) and a copy into a
    preallocated tensor; on a GPU also the fraction of the card's peak bandwidth."""
    header = [
        "Machine",
        "Benchmark",
        "Input",
        "Candidate",
        "time",
        "/ x * 2",
        "/ copy_",
        "bandwidth",
    ]
    body = []
    for run in runs:
        for suite in suites:
            for group, cands in by_group(run, suite).items():
                if not all(f in cands for f in FLOORS):
                    continue
                for name, r in cands.items():
                    if name in FLOORS:
                        continue
                    ratios = [fmt_ratio(paired(r, cands[f])) for f in FLOORS]
                    bw = r.get("bandwidth") or {}
                    frac = bw.get("fraction_of_peak")
                    shown = "–" if not frac else f"{100 * frac:.0f}% of peak"
                    body.append(
                        [
                            run["device"]["name"],
                            suite,
                            group,
                            name,
                            f"{1e3 * r['time_s']['median']:.3g} ms",
                            *ratios,
                            shown,
                        ]
                    )
    return header, body


def floor_rates(run: Run, suite: str = "rope") -> Table:
    """GB/s of the floor's two rows by input (bytes read plus written over the time)."""
    header = ["Input", "MB", "x * 2 (GB/s)", "copy_ (GB/s)"]
    body = []
    for group, cands in by_group(run, suite).items():
        if all(f in cands for f in FLOORS):
            mb = cands[FLOORS[0]]["params"]["MB"]
            rates = [
                f"{2 * mb / 1e3 / cands[f]['time_s']['median']:.1f}" for f in FLOORS
            ]
            body.append([group, f"{mb:.0f}", *rates])
    return header, body


def throughput_table(runs: list[Run], suite: str = "bert") -> Table:
    """Real tokens per second and peak memory of each BERT candidate."""
    header = ["Machine", "Input", "Candidate", "tokens/s", "peak memory"]
    body = [
        [
            run["device"]["name"],
            r["group"],
            r["candidate"],
            f"{r['params']['tokens'] / r['time_s']['median']:,.0f}",
            _mib(r),
        ]
        for run in runs
        for r in rows(run, suite)
    ]
    return header, body


# --- figures (matplotlib is imported only here) -----------------------------------------------------


def _plain(value: float, _pos=None) -> str:
    """A tick label: plain digits from 0.001 to 10^4, a power of ten beyond."""
    if value <= 0:
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = np.log10(value)
    return f"$10^{{{exponent:.0f}}}$" if float(exponent).is_integer() else ""


def tidy(ax, xticks=None) -> None:
    """Log axes labelled with plain numbers; minor labels only on an axis under two decades.

    ``xticks``: the measured x values, labelled as they are (and no minor labels on x).
    """
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


def draw_rope(ax, run: Run) -> None:
    """Bars of time / rotary-embedding-torch per candidate and input size, with quartile whiskers."""
    groups = by_group(run, "rope")
    first = next(iter(groups.values()))
    names = [c for c in first if c != "rotary-embedding-torch" and c not in FLOORS]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        x = np.arange(len(groups)) + (j - (len(names) - 1) / 2) * width
        q = np.array(
            [
                [g[name]["ratio_to_reference"][k] for k in ("median", "q25", "q75")]
                for g in groups.values()
            ]
        )
        ax.bar(
            x,
            q[:, 0],
            width,
            yerr=[q[:, 0] - q[:, 1], q[:, 2] - q[:, 0]],
            label=name,
            capsize=2,
        )
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(
        np.arange(len(groups)), [g.split(" float")[0] for g in groups], fontsize="small"
    )
    ax.set(ylabel="time / rotary-embedding-torch", title=label(run))
    ax.legend(ncols=2)


def draw_attention(ax_time, ax_memory, run: Run, suite: str) -> None:
    """Median time and peak memory against n, log-log, with dotted slopes 1 and 2."""
    markers = "os^vDP*X"
    points: dict[str, list[tuple[int, float, int]]] = {}
    for r in rows(run, suite):
        points.setdefault(r["candidate"], []).append(
            (r["params"]["n"], r["time_s"]["median"], r["peak_memory_bytes"])
        )
    for i, (name, pts) in enumerate(points.items()):
        n, t, mem = np.array(sorted(pts)).T
        style = {"marker": markers[i % len(markers)], "ms": 3, "label": name}
        ax_time.loglog(n, t * 1e3, **style)
        ax_memory.loglog(n, mem / 2**20, **style)
    lengths = sorted({p[0] for pts in points.values() for p in pts})
    grid = np.array([lengths[0], 16 * lengths[0]])
    for ax in (ax_time, ax_memory):
        ax.loglog(grid, grid / grid[0], "k:", lw=0.8)
        ax.loglog(grid, (grid / grid[0]) ** 2, "k:", lw=0.8)
        tidy(ax, lengths)
    ax_time.set(
        ylabel="time (ms)",
        title=f"{'causal' if 'causal' in suite else 'non-causal'}, {run['device']['name']}",
    )
    ax_memory.set(ylabel="peak memory (MiB)", xlabel="sequence length $n$")
    ax_memory.legend(loc="upper left", bbox_to_anchor=(0.0, -0.3), fontsize="small")


def spread(row: Row) -> float:
    """Sample standard deviation of a row's errors over projections (0 with one error)."""
    draws = row.get("error_draws") or []
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0


def draw_error_cost(ax, run: Run, method: str) -> None:
    """Error against time over the sweep's budgets; budgets labelled on the kexue curve only."""
    title, ours = next((p[1], p[2]) for p in APPROX_PAIRS if p[0] == method)
    sweep = [r for r in rows(run, "approx_sweep") if r["params"]["method"] == method]
    points: dict[str, list[tuple[float, float, int, float]]] = {}
    for r in sweep:
        points.setdefault(r["candidate"], []).append(
            (r["time_s"]["median"], error_of(r), r["params"]["budget"], spread(r))
        )
    for name, pts in points.items():
        t, e, m, sd = np.array(sorted(pts)).T
        ax.errorbar(
            t * 1e3, e, yerr=sd, fmt="o-" if name == ours else "s--", ms=3, label=name
        )
        ax.set(xscale="log", yscale="log")
        if name == ours:
            for ti, ei, mi in zip(t, e, m, strict=True):
                ax.annotate(
                    f"{mi:.0f}",
                    (ti * 1e3, ei),
                    fontsize="x-small",
                    xytext=(-4, 5),
                    textcoords="offset points",
                )
    if sweep:
        ax.axhline(
            sweep[0]["params"]["error_of_mean_pooling"],
            ls=":",
            color="gray",
            lw=1,
            label="mean pooling",
        )
    n = sweep[0]["params"]["n"] if sweep else "?"
    ax.set(xlabel="time (ms)", ylabel="relative error", title=f"{title}, n = {n}")
    tidy(ax)
    ax.legend(fontsize="small")


def draw_hippo(ax_matvec, ax_online, run: Run) -> None:
    """Left: A v by dense product and legs_matvec against N. Right: legs_memory against length."""
    for name, style in (("dense v @ A.T", "s--"), ("kexue legs_matvec", "o-")):
        pts = sorted(
            (r["params"]["N"], r["time_s"]["median"])
            for r in rows(run, "hippo_matvec")
            if r["candidate"] == name
        )
        N, t = np.array(pts).T
        ax_matvec.loglog(N, t * 1e6, style, ms=3, label=name)
    ax_matvec.loglog(N, t[0] * 1e6 * N / N[0], "k:", lw=0.8)
    ax_matvec.loglog(N, t[0] * 1e6 * (N / N[0]) ** 2, "k:", lw=0.8)
    ax_matvec.set(
        xlabel="order $N$", ylabel="time (µs)", title=f"$A v$, {run['device']['name']}"
    )
    tidy(ax_matvec, N)
    ax_matvec.legend(fontsize="small")
    online = rows(run, "hippo_online")
    for order in sorted({r["params"]["N"] for r in online}):
        pts = sorted(
            (r["params"]["length"], r["time_s"]["median"])
            for r in online
            if r["params"]["N"] == order
        )
        L, t = np.array(pts).T
        ax_online.loglog(L, t * 1e3, "o-", ms=3, label=f"N = {order}")
    ax_online.set(
        xlabel="length",
        ylabel="time (ms)",
        title=f"legs_memory, {run['device']['name']}",
    )
    tidy(ax_online, sorted({r["params"]["length"] for r in online}))
    ax_online.legend(fontsize="small")
