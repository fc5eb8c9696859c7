"""``python -m benchmarks``: run every suite and write ``benchmarks/results/<device>.json`` (``make bench``).

Options: ``--suites rope,attention,hippo`` (default all), ``--device cpu|cuda`` (default: CUDA when
present), ``--quick`` (tiny sizes, for a smoke test; written under ``_build/bench-quick/`` unless ``--out`` says
otherwise, never over a committed results file), ``--short`` (the real sizes trimmed to fit about two
minutes on a GPU: what ``make gpu-check`` runs on a borrowed GPU), ``--compile`` (also time the torch.compile'd RoPE
rotation on the CPU; always on with CUDA. On the CPU it perturbs the timings of the eager candidates run
after it, because inductor's kernels bring a second OpenMP thread pool), ``--threads N`` (torch's CPU
threads; on a machine shared with other work, 1 avoids timing the operating system's scheduler: a
parallel region waits for every thread, and a thread that lost its core waits a whole time slice),
``--out PATH``, ``--merge`` (keep the rows of the suites not run now from the existing file of the same
device, e.g. to run the suites one by one where a single command has a time limit; the file records
which suites came from which run).

Exits with status 1 if a candidate failed its correctness check (the file is written anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import attention, hippo, peers, rope
from benchmarks.harness import (
    RESULTS_DIR,
    Settings,
    load_average,
    new_results,
    write_results,
)

SUITES = ("rope", "attention", "hippo")
#: The row suites (``row["suite"]``) that each suite of the command line writes.
ROW_SUITES = {
    "rope": ("rope",),
    "attention": ("attention", "attention_causal", "approx_sweep"),
    "hippo": ("hippo_matvec", "hippo_online"),
}


QUICK_DIR = Path("_build") / "bench-quick"


def settings_for(device: torch.device, quick: bool, short: bool = False) -> Settings:
    if short:
        return Settings(
            rounds=7, min_rounds=5, block_seconds=0.005, group_seconds=2.0, warmup=2
        )
    if quick:
        return Settings(
            rounds=3, min_rounds=3, block_seconds=0.002, group_seconds=0.5, warmup=1
        )
    if device.type == "cuda":
        return Settings(
            rounds=15, min_rounds=5, block_seconds=0.01, group_seconds=6.0, warmup=3
        )
    return Settings(
        rounds=7, min_rounds=5, block_seconds=0.02, group_seconds=10.0, warmup=2
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suites {unknown}; choose from {SUITES}")
    if args.quick and args.short:
        parser.error("--quick and --short exclude each other")
    device = torch.device(args.device)
    settings = settings_for(device, args.quick, args.short)
    size = "quick" if args.quick else "short" if args.short else "full"
    results = new_results(device, settings, peers.versions())
    results["settings"]["quick"] = args.quick
    results["settings"]["short"] = args.short
    results["settings"]["suites"] = suites
    results["settings"]["argv"] = list(sys.argv[1:] if argv is None else argv)
    info = results["device"]
    print(
        f"kexue benchmarks on {info['name']} ({info['type']}, {info['threads']} threads)"
    )
    print(f"torch {torch.__version__}, peers {results['peers']}")
    start = time.perf_counter()
    for suite in suites:
        print(f"\n##### {suite}")
        if suite == "rope":
            compile_rotation = device.type == "cuda" or args.compile
            results["rows"] += rope.run(
                device, settings, size=size, compile_rotation=compile_rotation
            )
        elif suite == "attention":
            results["rows"] += attention.run(device, settings, size=size)
        else:
            results["rows"] += hippo.run(device, settings, size=size)
    for dist, version in results["peers"].items():
        if version is None:
            results["skipped"].append(
                {"what": dist, "reason": "not installed: its rows were skipped"}
            )
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["load_average"]["end"] = load_average()
    if args.merge:
        merge_previous(
            results,
            args.out or RESULTS_DIR / f"{results['device']['slug']}.json",
            suites,
        )
    out = args.out
    if out is None and args.quick:
        out = QUICK_DIR / f"{results['device']['slug']}.json"
    path = write_results(results, out)
    failed = [r for r in results["rows"] if r["status"] == "failed check"]
    print(f"\nwrote {path} ({len(results['rows'])} rows, {results['wall_seconds']} s)")
    for item in results["skipped"]:
        print(f"skipped: {item['what']}: {item['reason']}")
    for row in failed:
        print(
            f"FAILED CHECK: {row['suite']} {row['group']} {row['candidate']}: {row['check']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def merge_previous(results: dict, path: Path, suites: list[str]) -> None:
    """Prepend the rows of the suites not run now from the results file at ``path`` (same device only),
    and record in ``settings["runs"]`` the date and torch version each kept suite was measured with."""
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
    if previous.get("device", {}).get("slug") != results["device"]["slug"]:
        raise SystemExit(f"--merge: {path} holds results of another device")
    fresh = {row_suite for suite in suites for row_suite in ROW_SUITES[suite]}
    kept = [row for row in previous.get("rows", []) if row["suite"] not in fresh]
    kept_suites = [
        s
        for s, row_suites in ROW_SUITES.items()
        if any(r["suite"] in row_suites for r in kept)
    ]
    old_runs = previous.get("settings", {}).get("runs") or [
        {
            "date": previous.get("date"),
            "suites": SUITES,
            "torch": previous.get("torch_version"),
        }
    ]
    runs = [
        {**run, "suites": [s for s in run["suites"] if s in kept_suites]}
        for run in old_runs
    ]
    runs = [run for run in runs if run["suites"]]
    results["rows"] = kept + results["rows"]
    results["settings"]["runs"] = [
        *runs,
        {"date": results["date"], "suites": suites, "torch": results["torch_version"]},
    ]
    results["settings"]["suites"] = [
        s for s in SUITES if s in set(suites) | set(kept_suites)
    ]


if __name__ == "__main__":
    sys.exit(main())
