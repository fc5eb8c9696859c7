"""The measuring machinery of ``make bench``: interleaved timing, paired ratios, peak
memory, result rows and files.

Every candidate of a group is warmed up (and compiled, where it is), then given a block
of ``number`` calls lasting about ``block_seconds``; the blocks run for ``rounds``
rounds in rotating order, timed by :class:`torch.utils.benchmark.Timer` (which
synchronises CUDA). Time and ratio to the reference are then medians and quartiles over
rounds (``TIMING_METHOD``): the ratio is taken round by round, so that load drifting
between rounds hits both, and the per-round times are kept so that any two candidates
can be paired later. Peak memory is :func:`kexue.measure.peak_memory`
(``MEMORY_METHODS``). Rows and files are dataclasses (:class:`Row`, :class:`Results`):
their fields are the schema, the JSON file their serialisation, and
:meth:`Results.from_dict` the check that a file is well formed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

from kexue.measure import peak_memory as peak_memory  # re-exported: the registry

SCHEMA_VERSION = 2
RESULTS_DIR = Path(__file__).resolve().parent / "results"
STATUSES = ("ok", "skipped", "failed check")
TIMING_METHOD = (
    "torch.utils.benchmark.Timer.timeit, candidates interleaved in rotating order for "
    "`rounds` rounds of one block of `number` calls each; time = median (and quartiles) "
    "over rounds of the per-call time; ratio = median (and quartiles) over rounds of "
    "candidate time / reference time in the same round"
)
MEMORY_METHODS = {
    "cuda": "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory "
    "allocated before the call (inputs excluded, output included)",
    "cpu": "torch.profiler (profile_memory=True): peak of the running sum of the CPU "
    "allocator's allocation and free events during one call (inputs excluded, output "
    "included)",
}
#: Peak memory bandwidth (bytes/s) from the data sheets, matched against the device name
#: in order (more specific names first), to state achieved bandwidth as a fraction.
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


# --- the machine ------------------------------------------------------------------------
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


def peak_bandwidth(device: str) -> float | None:
    return next((v for k, v in PEAK_BANDWIDTH if k.lower() in device.lower()), None)


def device_info(device: torch.device) -> dict[str, Any]:
    """Name, slug (the results file name), cores, threads; on CUDA memory and bandwidth."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count()
    info: dict[str, Any] = {
        "type": device.type,
        "cores": cores,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
    }
    if device.type != "cuda":
        slug = f"cpu-{slugify(info['cpu'])}-{cores}-cores"
        return {**info, "name": info["cpu"], "slug": slug, "peak_bandwidth_Bps": None}
    props = torch.cuda.get_device_properties(device)
    return {
        **info,
        "name": props.name,
        "slug": slugify(props.name),
        "memory_bytes": props.total_memory,
        "capability": f"{props.major}.{props.minor}",
        "cuda_version": torch.version.cuda,
        "peak_bandwidth_Bps": peak_bandwidth(props.name),
    }


def load_average() -> list[float] | None:
    loads = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [round(x, 2) for x in loads] if loads else None


# --- timing -----------------------------------------------------------------------------
@dataclass
class Settings:
    """How long to measure; ``rounds`` is lowered (down to ``min_rounds``) for slow
    groups so that a group's timing stays near ``group_seconds``."""

    rounds: int = 7
    min_rounds: int = 3
    block_seconds: float = 0.02
    group_seconds: float = 6.0
    warmup: int = 2


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), linear interpolation."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quartiles of an empty sequence")
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, statistics.median(xs), q3


@dataclass
class Stats:
    """Median and quartiles of per-round values (times, or ratios to the reference)."""

    median: float
    q25: float
    q75: float
    iqr: float
    n: int
    number: int | None = None  # calls per block (times only)
    per_round: list[float] | None = None  # the values themselves (times only)

    def __post_init__(self) -> None:
        if not self.q25 <= self.median <= self.q75:
            raise ValueError(f"quartiles out of order: {self}")

    @classmethod
    def of(cls, values: Sequence[float], **extra: Any) -> Stats:
        q1, median, q3 = quartiles(values)
        return cls(median, q1, q3, q3 - q1, len(values), **extra)


def _timer(fn: Callable[[], Any]) -> Timer:
    return Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def time_interleaved(
    calls: dict[str, Callable[[], Any]], settings: Settings
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-call times of every call, round by round, and the block sizes."""
    timers, numbers, single = {}, {}, {}
    for name, fn in calls.items():
        for _ in range(settings.warmup):
            fn()
        timers[name] = _timer(fn)
        single[name] = timers[name].timeit(1).mean
        per_block = math.ceil(settings.block_seconds / max(single[name], 1e-9))
        numbers[name] = max(1, min(10**6, per_block))
    per_round = sum(max(single[n] * numbers[n], settings.block_seconds) for n in calls)
    fit = int(settings.group_seconds / max(per_round, 1e-9))
    rounds = max(settings.min_rounds, min(settings.rounds, fit))
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timers[name].timeit(numbers[name]).mean)
    return times, numbers


def paired_ratios(
    times: dict[str, list[float]], reference: str
) -> dict[str, list[float]]:
    ref = times[reference]
    return {n: [t / r for t, r in zip(ts, ref, strict=True)] for n, ts in times.items()}


# --- checks before timing ---------------------------------------------------------------
def compare(
    actual: torch.Tensor, expected: torch.Tensor, *, tol: float, against: str
) -> dict[str, Any]:
    """Check record: the largest difference relative to the largest magnitude of
    ``expected``, against a tolerance."""
    if actual.shape != expected.shape:
        shapes = f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        return {"against": against, "passed": False, "reason": shapes}
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    value = diff / scale if scale else diff
    return {
        "against": against,
        "max_abs_diff": diff,
        "measure": "max |diff| / max |expected|",
        "value": value,
        "tol": tol,
        "passed": bool(value <= tol and math.isfinite(value)),
    }


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Relative Frobenius error ``||approx - exact|| / ||exact||`` (in float64)."""
    a, e = approx.double(), exact.double()
    return float(torch.linalg.vector_norm(a - e) / torch.linalg.vector_norm(e))


# --- rows and files ---------------------------------------------------------------------
@dataclass
class Row:
    """One candidate in one group: the unit of a results file."""

    suite: str
    group: str
    params: dict[str, Any]
    candidate: str
    reference: str
    status: str = "skipped"
    time_s: Stats | None = None
    ratio_to_reference: Stats | None = None
    peak_memory_bytes: int | None = None
    error_vs_exact: float | None = None
    check: dict[str, Any] | None = None
    note: str = ""
    bandwidth: dict[str, Any] | None = None
    error_draws: list[float] | None = None
    against: str | None = None  # the peer candidate a kexue row is judged against

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.candidate}: status {self.status!r}")
        if self.status == "ok" and not (self.time_s and self.ratio_to_reference):
            raise ValueError(f"{self.candidate}: an ok row needs time and ratio")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown row fields {sorted(unknown)}")
        stats = {k: Stats(**d[k]) for k in ("time_s", "ratio_to_reference") if d.get(k)}
        return cls(**{**d, **stats})


@dataclass
class Results:
    """A results file: the machine, the method, the peers' versions and the rows."""

    device: dict[str, Any]
    settings: dict[str, Any]
    peers: dict[str, str | None]
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    torch_version: str = torch.__version__
    python_version: str = platform.python_version()
    kexue_version: str = ""
    date: str = ""
    timing_method: str = TIMING_METHOD
    memory_method: str = ""
    load_average: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} != {SCHEMA_VERSION}"
            )
        missing = {"type", "name", "slug", "cores", "threads"} - set(self.device)
        if missing:
            raise ValueError(f"missing device fields {sorted(missing)}")
        try:
            _dt.datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise ValueError(f"date {self.date!r} is not ISO 8601") from None

    @classmethod
    def new(cls, device: torch.device, settings: Settings, peers: dict) -> Results:
        import kexue

        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(
            device=device_info(device),
            settings=asdict(settings),
            peers=peers,
            kexue_version=kexue.__version__,
            date=now,
            memory_method=MEMORY_METHODS.get(device.type, "not measured"),
            load_average={"start": load_average(), "end": None},
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Results:
        rows = [Row.from_dict(r) for r in d.get("rows", [])]
        return cls(**{**d, "rows": rows})

    def write(self, path: Path | None = None) -> Path:
        path = path or RESULTS_DIR / f"{self.device['slug']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=_json) + "\n")
        return path


def _json(value: object) -> object:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, torch.device | Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_rows(rows: Sequence[Row]) -> str:
    """A plain-text table of one group's rows, for the console."""
    lines = [f"== {r.suite}: {r.group} (reference: {r.reference})" for r in rows[:1]]
    for r in rows:
        if not (r.status == "ok" and r.time_s and r.ratio_to_reference):
            lines.append(f"   {r.candidate:<40} {r.status}: {r.note or r.check}")
            continue
        t, q, mem = r.time_s.median, r.ratio_to_reference, r.peak_memory_bytes
        err = "" if r.error_vs_exact is None else f"  err {r.error_vs_exact:.2e}"
        lines.append(
            f"   {r.candidate:<40} {t * 1e3:9.4g} ms  ratio {q.median:6.3f} "
            f"[{q.q25:.3f}, {q.q75:.3f}]  mem "
            + ("-" if mem is None else f"{mem / 2**20:8.2f} MiB")
            + err
        )
    return "\n".join(lines)
