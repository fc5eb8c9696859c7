"""The benchmark registry: one benchmark is one declaration, :class:`Benchmark`.

A declaration names the suite, the sizes (``quick`` for a smoke test, ``cpu`` and
``cuda`` for the real runs; ``short``, the GPU check's, is the first and the last
``cuda`` size, or the first ``cpu`` size of a benchmark without ``cuda`` sizes, unless
given), an ``inputs`` builder from one size to a namespace of inputs, the
candidates (kexue and each peer, called as their users call them), the reference, and
the correctness check that must pass before anything is timed: by default every
candidate's output against ``expected(inputs)`` within ``tol``. A candidate may bring
its own check, or be an approximation whose error against ``expected`` is recorded
instead. Memory-bound kernels set ``floor``: an elementwise op over the same bytes
(``x * 2``, allocation included) and a ``copy_`` into a preallocated tensor are timed
beside them. ``versus`` names the peer each kexue candidate is judged against (the
appendix's verdicts: slower, faster or no clear difference).

:func:`run` turns a declaration into result rows with :func:`measure`, the timing method
of :mod:`benchmarks.harness` (interleaved rounds, paired ratios, peak memory).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

from benchmarks.harness import (
    Row,
    Settings,
    Stats,
    compare,
    format_rows,
    paired_ratios,
    peak_bandwidth,
    peak_memory,
    relative_error,
    time_interleaved,
)

Inputs = SimpleNamespace
FLOOR_ELEMENTWISE = "x * 2 (floor)"
FLOOR_COPY = "copy_ into preallocated (floor)"


@dataclass(frozen=True)
class Candidate:
    """One implementation: ``call(i)`` is timed, or ``make(i)`` builds the timed call
    (for a peer whose layer is built once). ``peer``: the module it imports; without
    it the row is skipped. ``check(i, out)`` replaces the benchmark's check (None: no
    check); ``approx``: record the error against ``expected`` instead of checking;
    ``view(i, out)`` is what is compared; ``skip(i)`` gives a reason to skip, and
    ``when(i)`` False leaves the candidate out of the group; ``draws(i)``: errors over
    several random draws (Performer's projections)."""

    name: str
    call: Callable[[Inputs], Any] | None = None
    make: Callable[[Inputs], Callable[[], Any]] | None = None
    peer: str | None = None
    note: str = ""
    check: Callable[[Inputs, Any], dict[str, Any] | None] | None = None
    approx: bool = False
    view: Callable[[Inputs, Any], torch.Tensor] | None = None
    skip: Callable[[Inputs], str | None] | None = None
    when: Callable[[Inputs], bool] | None = None  # False: no row in this group
    draws: Callable[[Inputs], list[float]] | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    sizes: dict[str, list[dict[str, Any]]]
    inputs: Callable[[dict[str, Any], torch.device], Inputs]
    candidates: Sequence[Candidate]
    reference: str | Sequence[str]  # the first of these that passes its check
    expected: Callable[[Inputs], torch.Tensor] | None = None
    tol: float | Callable[[Inputs], float] = 1e-5
    group: Callable[[dict[str, Any]], str] | None = None
    params: Callable[[Inputs], dict[str, Any]] | None = None
    floor: bool = False  # time x * 2 and a copy over i.x beside the kernels
    bytes_moved: Callable[[Inputs], int] | None = None  # for achieved bandwidth
    memory: bool = True
    versus: dict[str, str] = field(default_factory=dict)  # kexue candidate: its peer

    def size_list(self, device: torch.device, size: str) -> list[dict[str, Any]]:
        if size == "quick":
            return self.sizes["quick"]
        if size == "short":  # the GPU check's: about two minutes for everything
            cuda = self.sizes.get("cuda")
            ends = cuda[:1] + cuda[1:][-1:] if cuda else self.sizes["cpu"][:1]
            return self.sizes.get("short", ends)
        return self.sizes.get(device.type, self.sizes["cpu"])


REGISTRY: dict[str, Benchmark] = {}


def register(bench: Benchmark) -> Benchmark:
    if bench.name in REGISTRY:
        raise ValueError(f"benchmark {bench.name!r} registered twice")
    REGISTRY[bench.name] = bench
    return bench


def peer(name: str) -> ModuleType | None:
    """The peer module, or None when it is not installed (its rows are skipped)."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # performer-pytorch warns and prints
            return importlib.import_module(name)
    except ImportError:
        return None


def _group_name(size: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in size.items())


def run(
    bench: Benchmark, device: torch.device, settings: Settings, size: str, log=print
) -> list[Row]:
    rows: list[Row] = []
    for params in bench.size_list(device, size):
        rows += run_size(bench, params, device, settings, log)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def run_size(
    bench: Benchmark,
    params: dict[str, Any],
    device: torch.device,
    settings: Settings,
    log=print,
) -> list[Row]:
    """Build the inputs of one size, check every candidate, time those that pass."""
    group = (bench.group or _group_name)(params)
    try:
        i = bench.inputs(params, device)
    except ImportError as err:  # data or a module missing on this machine
        why = f"inputs need {err.name or err}: not installed"
        return [
            Row(bench.name, group, params, c.name, "", note=why)
            for c in bench.candidates
        ]
    recorded = {**params, **(bench.params(i) if bench.params else {})}
    expected = bench.expected(i) if bench.expected else None
    tol = bench.tol(i) if callable(bench.tol) else bench.tol
    calls: dict[str, Callable[[], Any]] = {}
    rows: dict[str, Row] = {}
    for c in (*bench.candidates, *(_floors(i) if bench.floor else ())):
        if c.when and not c.when(i):
            continue
        row = Row(
            bench.name,
            group,
            recorded,
            c.name,
            "",
            note=c.note,
            against=bench.versus.get(c.name),
        )
        rows[c.name] = row
        reason = _absent(c) or (c.skip(i) if c.skip else None)
        if reason:
            row.note = reason
            continue
        try:
            fn = c.make(i) if c.make else (lambda c=c: c.call(i))  # type: ignore[misc]
            out = fn()
            seen = c.view(i, out) if c.view else out
            if c.approx and expected is not None:
                row.error_vs_exact = relative_error(seen, expected)
                row.error_draws = c.draws(i) if c.draws else None
            if c.check is not None:
                row.check = c.check(i, out)
            elif expected is not None and not c.approx:
                row.check = compare(seen, expected, tol=tol, against="expected")
        except Exception as err:  # a peer that raises is a result, not a crash
            row.note = f"raised {type(err).__name__}: {err}"[:300]
            continue
        if row.check and not row.check.get("passed", True):
            row.status = "failed check"
            continue
        calls[c.name] = fn
    refs = [bench.reference] if isinstance(bench.reference, str) else bench.reference
    reference = next((r for r in refs if r in calls), next(iter(calls), ""))
    if calls:
        moved = bench.bytes_moved(i) if bench.bytes_moved else None
        measure(rows, calls, reference, device, settings, bench.memory, moved)
    for row in rows.values():
        row.reference = reference
    if log:
        log(format_rows(list(rows.values())))
    return list(rows.values())


def measure(
    rows: dict[str, Row],
    calls: dict[str, Callable[[], Any]],
    reference: str,
    device: torch.device,
    settings: Settings,
    memory: bool = True,
    bytes_moved: int | None = None,
) -> None:
    """Time ``calls`` interleaved and fill their rows: time, paired ratio, memory."""
    times, numbers = time_interleaved(calls, settings)
    ratios = paired_ratios(times, reference)
    peak = (
        peak_bandwidth(torch.cuda.get_device_name(device))
        if device.type == "cuda"
        else None
    )
    for name, fn in calls.items():
        row = rows[name]
        row.status = "ok"
        row.time_s = Stats.of(times[name], number=numbers[name], per_round=times[name])
        row.ratio_to_reference = Stats.of(ratios[name])
        row.peak_memory_bytes = peak_memory(fn, device) if memory else None
        if bytes_moved:
            achieved = bytes_moved / row.time_s.median
            row.bandwidth = {
                "bytes_moved": bytes_moved,
                "achieved_Bps": achieved,
                "peak_Bps": peak,
                "fraction_of_peak": achieved / peak if peak else None,
            }


def _absent(c: Candidate) -> str | None:
    if c.peer and peer(c.peer) is None:
        return f"{c.peer} not installed (make bench installs the peers)"
    return None


def _floors(i: Inputs) -> tuple[Candidate, Candidate]:
    """The physical floor over the bytes of ``i.x``: an elementwise op that allocates
    its output, and a copy into a tensor allocated once."""
    out = torch.empty_like(i.x)
    note = "the same bytes as the input: read once, written once"
    return (
        Candidate(FLOOR_ELEMENTWISE, call=lambda i: i.x * 2, note=note, check=_none),
        Candidate(FLOOR_COPY, call=lambda i: out.copy_(i.x), note=note, check=_none),
    )


def _none(i: Inputs, out: Any) -> None:
    return None
