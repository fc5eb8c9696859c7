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
PEERS = (
    "rotary-embedding-torch",
    "performer-pytorch",
    "nystrom-attention",
    "transformers",
    "POT",
    "entropy-estimators",
    "infomap",
    "vector-quantize-pytorch",
)
SETTINGS = {
    "quick": Settings(
        rounds=3, min_rounds=3, block_seconds=0.002, group_seconds=0.5, warmup=1
    ),
    "short": Settings(
        rounds=7, min_rounds=5, block_seconds=0.005, group_seconds=1.0, warmup=2
    ),
    "cuda": Settings(
        rounds=15, min_rounds=5, block_seconds=0.01, group_seconds=6.0, warmup=3
    ),
    "cpu": Settings(
        rounds=7, min_rounds=5, block_seconds=0.02, group_seconds=6.0, warmup=2
    ),
}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in PEERS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def select(spec: str) -> list[str]:
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    names = [n for n in REGISTRY if any(n.startswith(w) for w in wanted)]
    unknown = [w for w in wanted if not any(n.startswith(w) for n in REGISTRY)]
    if unknown:
        raise SystemExit(f"unknown suites {unknown}; choose from {list(REGISTRY)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--suites", default="")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    for flag in ("--quick", "--short", "--compile", "--merge"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.quick and args.short:
        parser.error("--quick and --short exclude each other")
    names = select(args.suites) if args.suites else list(REGISTRY)
    device = torch.device(args.device)
    size = "quick" if args.quick else "short" if args.short else "full"
    settings = SETTINGS.get(size, SETTINGS["cuda" if device.type == "cuda" else "cpu"])
    rope.COMPILE["cpu"] = args.compile
    results = Results.new(device, settings, versions())
    results.settings.update(
        size=size, suites=names, argv=sys.argv[1:] if argv is None else argv
    )
    print(
        f"kexue benchmarks on {results.device['name']} ({device.type}, "
        f"{results.device['threads']} threads), torch {torch.__version__}"
    )
    start = time.perf_counter()
    for name in names:
        print(f"\n##### {name}")
        results.rows += run(REGISTRY[name], device, settings, size)
    results.skipped = [
        {"what": d, "reason": "not installed: its rows were skipped"}
        for d, v in results.peers.items()
        if v is None
    ]
    results.wall_seconds = round(time.perf_counter() - start, 1)
    results.load_average["end"] = load_average()
    out = args.out or (
        QUICK_DIR / f"{results.device['slug']}.json" if args.quick else None
    )
    if args.merge:
        merge_previous(results, out or RESULTS_DIR / f"{results.device['slug']}.json")
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
