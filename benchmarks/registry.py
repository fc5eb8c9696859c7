"""The benchmark registry: one benchmark is one declaration, :class:`Benchmark`.

A declaration names the sizes (``quick``, a smoke test; ``cpu`` and ``cuda``, the real
runs; ``short``, the GPU check's, by default the first and last ``cuda`` sizes), an
``inputs`` builder from one size to a namespace, the candidates (kexue and each peer,
called as their users call them) and the correctness check that must pass before
anything is timed: by default every output against ``expected(inputs)`` within ``tol``.
The reference of the paired ratios is the first candidate that passes its check, unless
``reference`` names others first. A kexue candidate names the peer it is judged against
(``versus``). ``floor=True`` (memory-bound kernels) times ``x * 2`` (allocation
included) and a ``copy_`` into a preallocated tensor over the bytes of ``inputs.x``
beside the kernels, and records the input's size and the bandwidth each achieves.

:func:`run` measures a declaration with the method of :mod:`benchmarks.harness`
(interleaved rounds, paired ratios, peak memory) and returns its result rows.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

from benchmarks import harness
from benchmarks.harness import Row, Settings, Stats, compare

Inputs = SimpleNamespace
Check = Callable[[Inputs, Any], dict[str, Any] | None]
FLOOR_ELEMENTWISE = "x * 2 (floor)"
FLOOR_COPY = "copy_ into preallocated (floor)"


@dataclass(frozen=True)
class Candidate:
    """One implementation. ``call(i)`` is timed, or ``make(i)`` builds the timed call
    (a layer built once); ``peer``: the module it needs (absent: the row is skipped);
    ``check(i, out)`` replaces the benchmark's check (:func:`unchecked`: none);
    ``approx``: record the error against ``expected`` instead; ``view(i, out)``: what is
    compared; ``skip(i)``: a reason to skip; ``when(i)`` False: no row in this group;
    ``draws(i)``: errors over several random draws; ``versus``: the peer it is judged
    against."""

    name: str
    call: Callable[[Inputs], Any] | None = None
    note: str = ""
    make: Callable[[Inputs], Callable[[], Any]] | None = None
    peer: str | None = None
    check: Check | None = None
    approx: bool = False
    view: Callable[[Inputs, Any], torch.Tensor] | None = None
    skip: Callable[[Inputs], str | None] | None = None
    when: Callable[[Inputs], bool] | None = None
    draws: Callable[[Inputs], list[float]] | None = None
    versus: str | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    sizes: dict[str, list[dict[str, Any]]]
    inputs: Callable[[dict[str, Any], torch.device], Inputs]
    candidates: Sequence[Candidate]
    expected: Callable[[Inputs], torch.Tensor] | None = None
    tol: float | Callable[[Inputs], float] = 1e-5
    reference: Sequence[str] = ()  # tried first, in order; then the candidates
    group: Callable[[dict[str, Any]], str] | None = None
    params: Callable[[Inputs], dict[str, Any]] | None = None  # recorded in each row
    floor: bool = False

    def size_list(self, device: torch.device, size: str) -> list[dict[str, Any]]:
        if size == "short":  # the GPU check's: about two minutes for everything
            cuda = self.sizes.get("cuda")
            ends = cuda[:1] + cuda[1:][-1:] if cuda else self.sizes["cpu"][:1]
            return self.sizes.get("short", ends)
        return self.sizes.get(size, self.sizes.get(device.type, self.sizes["cpu"]))


REGISTRY: dict[str, Benchmark] = {}


def grid(**axes: Any) -> list[dict[str, Any]]:
    """Sizes: every combination of the axes given as tuples (other values fixed), the
    first axis varying slowest."""
    values = [v if isinstance(v, tuple) else (v,) for v in axes.values()]
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def register(bench: Benchmark) -> Benchmark:
    """Add a declaration, once, whose references and peers name its candidates."""
    names = {c.name for c in bench.candidates}
    named = {*bench.reference, *(c.versus for c in bench.candidates if c.versus)}
    if bench.name in REGISTRY or isinstance(bench.reference, str) or named - names:
        raise ValueError(
            f"benchmark {bench.name!r}: registered twice, or a reference "
            f"or peer that is no candidate: {sorted(named - names)}"
        )
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


def unchecked(i: Inputs, out: Any) -> None:
    """A candidate's check that checks nothing (its output is another computation)."""
    return None


def finite(i: Inputs, out: torch.Tensor) -> dict[str, Any]:
    """A candidate's check when nothing computes the same: a finite output."""
    return {"against": "finite output", "passed": bool(torch.isfinite(out).all())}


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
    if bench.floor:
        recorded["MB"] = i.x.numel() * i.x.element_size() / 1e6
    expected = bench.expected(i) if bench.expected else None
    tol = bench.tol(i) if callable(bench.tol) else bench.tol
    rows: dict[str, Row] = {}
    calls: dict[str, Callable[[], Any]] = {}
    for c in (*bench.candidates, *(_floors(i) if bench.floor else ())):
        if c.when and not c.when(i):
            continue
        row = rows[c.name] = Row(
            bench.name, group, recorded, c.name, "", note=c.note, against=c.versus
        )
        if reason := _absent(c) or (c.skip(i) if c.skip else None):
            row.note = reason
            continue
        try:
            fn = c.make(i) if c.make else (lambda c=c: c.call(i))  # type: ignore[misc]
            out = fn()
            seen = c.view(i, out) if c.view else out
            if c.approx and expected is not None:
                row.error_vs_exact = harness.relative_error(seen, expected)
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
    reference = next((r for r in (*bench.reference, *calls) if r in calls), "")
    if calls:
        moved = 2 * i.x.numel() * i.x.element_size() if bench.floor else None
        measure(rows, calls, reference, device, settings, moved)
    for row in rows.values():
        row.reference = reference
    if log:
        log(harness.format_rows(list(rows.values())))
    return list(rows.values())


def measure(
    rows: dict[str, Row],
    calls: dict[str, Callable[[], Any]],
    reference: str,
    device: torch.device,
    settings: Settings,
    bytes_moved: int | None = None,
) -> None:
    """Time ``calls`` interleaved and fill their rows: time, paired ratio, memory and,
    given the bytes moved, the bandwidth achieved (on a GPU as a fraction of its peak)."""
    times, numbers = harness.time_interleaved(calls, settings)
    ratios = harness.paired_ratios(times, reference)
    cuda = device.type == "cuda"
    peak = harness.peak_bandwidth(torch.cuda.get_device_name(device)) if cuda else None
    for name, fn in calls.items():
        row = rows[name]
        row.status = "ok"
        row.time_s = Stats.of(times[name], number=numbers[name], per_round=times[name])
        row.ratio_to_reference = Stats.of(ratios[name])
        row.peak_memory_bytes = harness.peak_memory(fn, device)
        if bytes_moved:
            achieved = bytes_moved / row.time_s.median
            row.bandwidth = {
                "bytes_moved": bytes_moved,
                "achieved_Bps": achieved,
                "peak_Bps": peak,
                "fraction_of_peak": achieved / peak if peak else None,
            }


def _group_name(size: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in size.items())


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
        Candidate(FLOOR_ELEMENTWISE, lambda i: i.x * 2, note, check=unchecked),
        Candidate(FLOOR_COPY, lambda i: out.copy_(i.x), note, check=unchecked),
    )
