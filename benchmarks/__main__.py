"""``python -m benchmarks``: run the registered benchmarks and write
``benchmarks/results/<device>.json`` (``make bench``).

Options: ``--suites a,b`` (benchmark names, or prefixes of them: ``hippo`` runs
``hippo_matvec`` and ``hippo_online``; default all), ``--device cpu|cuda`` (default:
CUDA when present), ``--quick`` (tiny sizes, a smoke test, written under
``_build/bench-quick/`` unless ``--out`` says otherwise), ``--short`` (the GPU check's
sizes, about two minutes on a GPU), ``--compile`` (also the torch.compile'd RoPE
rotation on the CPU; always on with CUDA), ``--threads N`` (torch's CPU threads; 1 on a
shared machine avoids timing the scheduler), ``--out PATH``, ``--merge`` (keep the rows
of the benchmarks not run now from the existing file of the same device).

Exits with status 1 if a candidate failed its correctness check (the file is written).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import rope
from benchmarks.harness import RESULTS_DIR, Results, Row, Settings, load_average
from benchmarks.registry import REGISTRY, run

MODULES = ("rope", "attention", "hippo", "kernels", "vq", "bert")  # registered in order
for module in MODULES:
    importlib.import_module(f"benchmarks.{module}")
QUICK_DIR = Path("_build") / "bench-quick"
PEERS = """rotary-embedding-torch performer-pytorch nystrom-attention transformers POT
entropy-estimators infomap vector-quantize-pytorch""".split()  # distributions
SETTINGS = {  # rounds, min_rounds, block_seconds, group_seconds, warmup
    "quick": Settings(3, 3, 0.002, 0.5, 1),
    "short": Settings(7, 5, 0.005, 1.0, 2),
    "cuda": Settings(15, 5, 0.01, 6.0, 3),
    "cpu": Settings(7, 5, 0.02, 6.0, 2),
}


def versions() -> dict[str, str | None]:
    """The installed version of each peer (None: not installed, its rows skipped)."""
    found: dict[str, str | None] = dict.fromkeys(PEERS)
    for dist in PEERS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


def select(spec: str) -> list[str]:
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    names = [n for n in REGISTRY if any(n.startswith(w) for w in wanted)]
    unknown = [w for w in wanted if not any(n.startswith(w) for n in REGISTRY)]
    if unknown:
        raise SystemExit(f"unknown suites {unknown}; choose from {list(REGISTRY)}")
    return names


def threads(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number, at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--suites", default="")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    sizes = parser.add_mutually_exclusive_group()
    for group, flag in ((sizes, "--quick"), (sizes, "--short"), (parser, "--compile")):
        group.add_argument(flag, action="store_true")
    parser.add_argument("--merge", action="store_true")
    parser.add_argument("--threads", type=threads, metavar="N")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = select(args.suites) if args.suites else list(REGISTRY)
    device = torch.device(args.device)
    size = "quick" if args.quick else "short" if args.short else "full"
    settings = SETTINGS.get(size, SETTINGS["cuda" if device.type == "cuda" else "cpu"])
    rope.COMPILE["cpu"] = args.compile
    results = Results.new(device, settings, versions())
    argv = sys.argv[1:] if argv is None else argv
    results.settings.update(size=size, suites=names, argv=argv)
    info = results.device
    print(
        f"kexue benchmarks on {info['name']} ({device.type}, {info['threads']} threads)"
    )
    start = time.perf_counter()
    for name in names:
        print(f"\n##### {name}")
        results.rows += run(REGISTRY[name], device, settings, size)
    why = "not installed: its rows were skipped"
    results.skipped = [
        {"what": d, "reason": why} for d, v in results.peers.items() if not v
    ]
    results.wall_seconds = round(time.perf_counter() - start, 1)
    results.load_average["end"] = load_average()
    out = args.out or (QUICK_DIR / f"{info['slug']}.json" if args.quick else None)
    if args.merge:
        merge_previous(results, out or RESULTS_DIR / f"{info['slug']}.json")
    path = results.write(out)
    print(f"\nwrote {path} ({len(results.rows)} rows, {results.wall_seconds} s)")
    failed = [r for r in results.rows if r.status == "failed check"]
    for r in failed:
        print(
            f"FAILED CHECK: {r.suite} {r.group} {r.candidate}: {r.check}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def merge_previous(results: Results, path: Path) -> None:
    """Prepend the rows of the benchmarks not run now from the file at ``path`` (same
    device only); ``settings["runs"]`` records when each kept benchmark was measured."""
    if not path.is_file():
        return
    previous = Results.from_dict(json.loads(path.read_text()))
    if previous.device["slug"] != results.device["slug"]:
        raise SystemExit(f"--merge: {path} holds results of another device")
    fresh = set(results.settings["suites"])
    kept: list[Row] = [r for r in previous.rows if r.suite not in fresh]
    old_runs = previous.settings.get("runs") or [
        {"date": previous.date, "suites": previous.settings.get("suites", [])}
    ]
    kept_suites = {r.suite for r in kept}
    runs = [
        {**r, "suites": [s for s in r["suites"] if s in kept_suites]} for r in old_runs
    ]
    results.rows = kept + results.rows
    results.settings["runs"] = [r for r in runs if r["suites"]] + [
        {"date": results.date, "suites": sorted(fresh)}
    ]
    results.settings["suites"] = sorted(fresh | kept_suites)


if __name__ == "__main__":
    sys.exit(main())
