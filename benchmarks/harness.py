"""The measuring machinery of ``make bench``: interleaved timing, paired ratios, peak memory, result files.

Timing. Every candidate of a group is first run (warm-up, and compilation where there is any), then given a
block size ``number`` so that one block of calls lasts about ``block_seconds``. Then, for ``rounds`` rounds,
each candidate runs one block with :class:`torch.utils.benchmark.Timer` (which synchronises CUDA), the
order of the candidates rotating from round to round. A candidate's time is the median over rounds of its
per-call time, with the quartiles; its ratio to the group's reference is taken *round by round* (both were
measured within the same few hundred milliseconds, so load that drifts in between hits both) and reported
as the median and quartiles of those ratios. The per-round times are kept in the results (``per_round``),
so that any two candidates of a group can be compared the same way later.

Peak memory. On CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
allocated before the call. On the CPU, torch's profiler with ``profile_memory=True`` records every
allocation and free of torch's CPU allocator during one call; the peak of their running sum is reported.
Either way it is the extra memory one call needs (inputs excluded, its output included), measured, not
estimated.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

from kexue.measure import peak_memory as kexue_peak_memory

SCHEMA_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"

TIMING_METHOD = (
    "torch.utils.benchmark.Timer.timeit, candidates interleaved in rotating order for `rounds` rounds of "
    "one block of `number` calls each; time = median (and quartiles) over rounds of the per-call time; "
    "ratio = median (and quartiles) over rounds of candidate time / reference time in the same round"
)
MEMORY_METHODS = {
    "cuda": "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory allocated before "
    "the call (inputs excluded, output included)",
    "cpu": "torch.profiler (profile_memory=True): peak of the running sum of the CPU allocator's allocation "
    "and free events during one call (inputs excluded, output included)",
}

#: Peak memory bandwidth (bytes/s) from the vendors' data sheets, matched against the device name in order
#: (more specific names first). Used only to state achieved bandwidth as a fraction of the card's peak.
PEAK_BANDWIDTH: tuple[tuple[str, float], ...] = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM5, HBM3 ("NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),  # 40 GB
    ("L40S", 0.864e12),
    ("A10G", 0.6e12),
    ("L4", 0.3e12),
    ("T4", 0.32e12),
    ("V100", 0.9e12),
)

#: Fields every result file and every row must have (checked by :func:`validate`).
REQUIRED_TOP = (
    "schema_version",
    "device",
    "torch_version",
    "python_version",
    "date",
    "timing_method",
    "memory_method",
    "settings",
    "peers",
    "skipped",
    "rows",
)
REQUIRED_DEVICE = ("type", "name", "slug", "cores", "threads")
REQUIRED_ROW = (
    "suite",
    "group",
    "params",
    "candidate",
    "reference",
    "status",
    "time_s",
    "ratio_to_reference",
    "peak_memory_bytes",
    "error_vs_exact",
    "check",
    "note",
)
STATUSES = ("ok", "skipped", "failed check")


# --- the machine ---------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def peak_bandwidth(device_name: str) -> float | None:
    for key, value in PEAK_BANDWIDTH:
        if key.lower() in device_name.lower():
            return value
    return None


def device_info(device: torch.device) -> dict[str, Any]:
    """Name, slug (the results file name), cores, threads and, on CUDA, memory and peak bandwidth."""
    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    info: dict[str, Any] = {
        "type": device.type,
        "cores": cores,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            slug=slugify(props.name),
            memory_bytes=props.total_memory,
            capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            peak_bandwidth_Bps=peak_bandwidth(props.name),
        )
    else:
        info.update(
            name=info["cpu"],
            slug=f"cpu-{slugify(info['cpu'])}-{cores}-cores",
            peak_bandwidth_Bps=None,
        )
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- timing ----------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """How long to measure. ``rounds`` is lowered (down to ``min_rounds``) for slow groups so that a
    group's timing stays near ``group_seconds``."""

    rounds: int = 7
    min_rounds: int = 3
    block_seconds: float = 0.02
    group_seconds: float = 6.0
    warmup: int = 2

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Candidate:
    """One implementation to time: ``fn()`` does the whole call (its inputs are bound already)."""

    name: str
    fn: Callable[[], Any]
    note: str = ""
    bytes_moved: int | None = (
        None  # for an achieved-bandwidth figure (memory-bound kernels)
    )
    error_vs_exact: float | None = None
    check: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), linear interpolation; one value gives it thrice."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quartiles of an empty sequence")
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, statistics.median(xs), q3


def summary(values: Sequence[float]) -> dict[str, float]:
    q1, median, q3 = quartiles(values)
    return {"median": median, "q25": q1, "q75": q3, "iqr": q3 - q1, "n": len(values)}


def _timer(fn: Callable[[], Any]) -> Timer:
    return Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def time_interleaved(
    candidates: Sequence[Candidate], settings: Settings
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-call times of every candidate, round by round (see the module docstring); and block sizes."""
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    timers, numbers, single = {}, {}, {}
    for c in candidates:
        for _ in range(settings.warmup):
            c.fn()
        timers[c.name] = _timer(c.fn)
        single[c.name] = timers[c.name].timeit(1).mean
        numbers[c.name] = max(
            1, min(10**6, math.ceil(settings.block_seconds / max(single[c.name], 1e-9)))
        )
    per_round = sum(max(single[n] * numbers[n], settings.block_seconds) for n in names)
    rounds = max(
        settings.min_rounds,
        min(settings.rounds, int(settings.group_seconds / max(per_round, 1e-9))),
    )
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(candidates)
        for c in list(candidates[shift:]) + list(candidates[:shift]):
            times[c.name].append(timers[c.name].timeit(numbers[c.name]).mean)
    return times, numbers


def paired_ratios(
    times: dict[str, list[float]], reference: str
) -> dict[str, list[float]]:
    ref = times[reference]
    return {
        name: [t / r for t, r in zip(ts, ref, strict=True)]
        for name, ts in times.items()
    }


# --- memory ----------------------------------------------------------------------------------------------


# The measurement itself lives in the library, so that chapters and benchmarks count memory the same way.
peak_memory = kexue_peak_memory


# --- a group of candidates -------------------------------------------------------------------------------


def measure_group(
    suite: str,
    group: str,
    params: dict[str, Any],
    candidates: Sequence[Candidate],
    reference: str,
    *,
    device: torch.device,
    settings: Settings,
    memory: bool = True,
    skipped: Iterable[tuple[str, str]] = (),
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Time the candidates interleaved, measure their peak memory, and return one result row each.

    Candidates whose ``check`` failed are not timed (their row says so), and neither are those listed in
    ``skipped`` as ``(name, reason)``. The reference must pass its check."""
    timed = [c for c in candidates if not (c.check and not c.check.get("passed", True))]
    if reference not in {c.name for c in timed}:
        raise ValueError(
            f"the reference {reference!r} is not among the timed candidates of {group!r}"
        )
    times, numbers = time_interleaved(timed, settings)
    ratios = paired_ratios(times, reference)
    peak_bw = None
    if device.type == "cuda":
        peak_bw = peak_bandwidth(torch.cuda.get_device_name(device))
    rows = []
    for c in candidates:
        row = _row(suite, group, params, c, reference)
        if c.name in times:
            t = summary(times[c.name])
            row.update(
                status="ok",
                time_s={**t, "number": numbers[c.name], "per_round": times[c.name]},
                ratio_to_reference=summary(ratios[c.name]),
                peak_memory_bytes=peak_memory(c.fn, device) if memory else None,
            )
            if c.bytes_moved:
                bandwidth = c.bytes_moved / t["median"]
                row["bandwidth"] = {
                    "bytes_moved": c.bytes_moved,
                    "achieved_Bps": bandwidth,
                    "peak_Bps": peak_bw,
                    "fraction_of_peak": bandwidth / peak_bw if peak_bw else None,
                }
        else:
            row["status"] = "failed check"
        rows.append(row)
    for name, reason in skipped:
        row = _row(
            suite, group, params, Candidate(name, lambda: None, note=reason), reference
        )
        row["status"] = "skipped"
        rows.append(row)
    if log:
        log(format_rows(rows))
    return rows


def _row(
    suite: str, group: str, params: dict[str, Any], c: Candidate, reference: str
) -> dict[str, Any]:
    return {
        "suite": suite,
        "group": group,
        "params": params,
        "candidate": c.name,
        "reference": reference,
        "status": "skipped",
        "time_s": None,
        "ratio_to_reference": None,
        "peak_memory_bytes": None,
        "error_vs_exact": c.error_vs_exact,
        "check": c.check,
        "note": c.note,
        **c.extra,
    }


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of one group's rows, for the console."""
    if not rows:
        return ""
    lines = [
        f"== {rows[0]['suite']}: {rows[0]['group']} (reference: {rows[0]['reference']})"
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"   {r['candidate']:<44} {r['status']}: {r['note'] or (r['check'] or {})}"
            )
            continue
        t, q = r["time_s"], r["ratio_to_reference"]
        mem = r["peak_memory_bytes"]
        text = (
            f"   {r['candidate']:<44} {format_seconds(t['median']):>10} ±{format_seconds(t['iqr'] / 2):>9}"
            f"  ratio {q['median']:6.3f} [{q['q25']:.3f}, {q['q75']:.3f}]"
            f"  mem {'-' if mem is None else f'{mem / 2**20:9.2f} MiB'}"
        )
        if r.get("error_vs_exact") is not None:
            text += f"  err {r['error_vs_exact']:.2e}"
        if r.get("bandwidth") and r["bandwidth"]["fraction_of_peak"] is not None:
            text += f"  bw {100 * r['bandwidth']['fraction_of_peak']:.0f}% of peak"
        lines.append(text)
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


# --- correctness before timing ---------------------------------------------------------------------------


def compare(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    tol: float,
    against: str,
    relative: bool = True,
) -> dict[str, Any]:
    """Check record: the largest difference, relative to the largest magnitude of ``expected`` (or
    absolute), against a tolerance. The harness times only candidates whose check passed."""
    if actual.shape != expected.shape:
        return {
            "against": against,
            "passed": False,
            "reason": f"shape {tuple(actual.shape)} != {tuple(expected.shape)}",
        }
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item() if relative else 1.0
    value = diff / scale if scale else diff
    return {
        "against": against,
        "max_abs_diff": diff,
        "measure": "max |diff| / max |expected|" if relative else "max |diff|",
        "value": value,
        "tol": tol,
        "passed": bool(value <= tol and math.isfinite(value)),
    }


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Relative Frobenius error ``||approx - exact|| / ||exact||`` (computed in float64)."""
    a, e = approx.double(), exact.double()
    return float(torch.linalg.vector_norm(a - e) / torch.linalg.vector_norm(e))


# --- result files ----------------------------------------------------------------------------------------


def new_results(
    device: torch.device, settings: Settings, peers: dict[str, str | None]
) -> dict[str, Any]:
    import kexue

    return {
        "schema_version": SCHEMA_VERSION,
        "device": device_info(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "kexue_version": kexue.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "timing_method": TIMING_METHOD,
        "memory_method": MEMORY_METHODS.get(
            device.type, "not measured on this device type"
        ),
        "settings": settings.as_dict(),
        "peers": peers,
        "load_average": {"start": load_average(), "end": None},
        "skipped": [],
        "rows": [],
    }


def validate(results: dict[str, Any]) -> list[str]:
    """Problems with a results dictionary (empty when it is well formed)."""
    problems = [
        f"missing top-level field {k!r}" for k in REQUIRED_TOP if k not in results
    ]
    if problems:
        return problems
    if results["schema_version"] != SCHEMA_VERSION:
        problems.append(
            f"schema_version {results['schema_version']!r} != {SCHEMA_VERSION}"
        )
    problems += [
        f"missing device field {k!r}"
        for k in REQUIRED_DEVICE
        if k not in results["device"]
    ]
    try:
        _dt.datetime.fromisoformat(results["date"])
    except (TypeError, ValueError):
        problems.append(f"date {results['date']!r} is not ISO 8601")
    if not isinstance(results["rows"], list):
        return [*problems, "rows is not a list"]
    for i, row in enumerate(results["rows"]):
        missing = [k for k in REQUIRED_ROW if k not in row]
        if missing:
            problems.append(f"row {i} lacks {missing}")
            continue
        if row["status"] not in STATUSES:
            problems.append(f"row {i} has status {row['status']!r}")
        if row["status"] == "ok":
            for key in ("time_s", "ratio_to_reference"):
                stats = row[key]
                if not isinstance(stats, dict) or not all(
                    k in stats for k in ("median", "q25", "q75")
                ):
                    problems.append(
                        f"row {i} ({row['candidate']}) has no {key} median and quartiles"
                    )
                elif not stats["q25"] <= stats["median"] <= stats["q75"]:
                    problems.append(
                        f"row {i} ({row['candidate']}) {key} quartiles out of order"
                    )
    return problems


def write_results(results: dict[str, Any], path: Path | None = None) -> Path:
    problems = validate(results)
    if problems:
        raise ValueError("malformed results: " + "; ".join(problems[:5]))
    path = path or RESULTS_DIR / f"{results['device']['slug']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(results, indent=1, sort_keys=False, default=_json_default) + "\n"
    )
    return path


def _json_default(value: object) -> object:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.device | Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_results(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
