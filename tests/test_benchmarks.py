"""The benchmark harness and registry (benchmarks/, ``make bench``): statistics, checks
before timing, result rows and files, on trivial functions and the quick sizes. Runs on
the CPU without the peer libraries; times nothing that matters."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from benchmarks import harness
from benchmarks.__main__ import main, select
from benchmarks.attention import mean_pooling_error, structured_inputs
from benchmarks.harness import Results, Row, Settings, Stats
from benchmarks.registry import (
    FLOOR_COPY,
    FLOOR_ELEMENTWISE,
    REGISTRY,
    Benchmark,
    Candidate,
    Inputs,
    grid,
    register,
    run_size,
)
from benchmarks.rope import exact_rotation, rotate_half_eager, rotate_interleaved_real
from kexue.positions.rope import apply_rope, rope_cos_sin

TINY = Settings(
    rounds=3, min_rounds=3, block_seconds=0.001, group_seconds=0.2, warmup=1
)
CPU = torch.device("cpu")


def toy(**kw) -> Benchmark:
    """A benchmark of sums and sorts over one vector ``x``."""
    fields = {
        "name": "toy",
        "sizes": {"quick": [{"n": 64}], "cpu": [{"n": 64}]},
        "inputs": lambda s, d: Inputs(x=torch.arange(float(s["n"]))),
        "expected": lambda i: i.x.sum(),
        "candidates": [
            Candidate("sum", lambda i: i.x.sum()),
            Candidate("sorted sum", lambda i: i.x.sort().values.sum(), versus="sum"),
            Candidate("wrong", lambda i: i.x.sum() + 1),
            Candidate("absent", lambda i: 0, peer="no_such_module_kexue"),
        ],
    }
    return Benchmark(**{**fields, **kw})


def test_quartiles_and_stats() -> None:
    assert harness.quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert harness.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    s = Stats.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.iqr, s.n) == (3.0, 2.0, 5)
    with pytest.raises(ValueError):
        harness.quartiles([])
    with pytest.raises(ValueError, match="out of order"):
        Stats(median=1.0, q25=2.0, q75=3.0, iqr=1.0, n=3)


def test_grid_combines_the_tuple_axes_in_order() -> None:
    assert grid(n=(1, 2), batch=4, kind=("a", "b")) == [
        {"n": 1, "batch": 4, "kind": "a"},
        {"n": 1, "batch": 4, "kind": "b"},
        {"n": 2, "batch": 4, "kind": "a"},
        {"n": 2, "batch": 4, "kind": "b"},
    ]
    assert grid(n=3) == [{"n": 3}]


def test_paired_ratios_are_taken_round_by_round() -> None:
    ratios = harness.paired_ratios(
        {"ref": [1.0, 2.0, 4.0], "b": [2.0, 4.0, 8.0]}, "ref"
    )
    assert ratios == {"ref": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_a_declaration_checks_times_and_skips() -> None:
    rows = {r.candidate: r for r in run_size(toy(), {"n": 64}, CPU, TINY, log=None)}
    assert rows["sum"].status == "ok" and rows["sum"].ratio_to_reference.median == 1.0
    assert rows["sorted sum"].time_s.n >= TINY.min_rounds
    assert rows["sorted sum"].against == "sum" and rows["sum"].against is None
    assert rows["wrong"].status == "failed check" and rows["wrong"].time_s is None
    assert not rows["wrong"].check["passed"]
    assert rows["absent"].status == "skipped" and "not installed" in rows["absent"].note
    assert {r.reference for r in rows.values()} == {"sum"}


def test_the_reference_falls_back_and_floors_are_added() -> None:
    bench = toy(reference=("absent", "sum"), floor=True)
    rows = {r.candidate: r for r in run_size(bench, {"n": 64}, CPU, TINY, log=None)}
    assert rows["sorted sum"].reference == "sum"
    assert rows[FLOOR_ELEMENTWISE].status == rows[FLOOR_COPY].status == "ok"


def test_approximations_record_their_error_and_when_leaves_rows_out() -> None:
    bench = toy(
        candidates=[
            Candidate("sum", lambda i: i.x.sum()),
            Candidate("half", lambda i: i.x.sum() / 2, approx=True),
            Candidate("other group", lambda i: 0, when=lambda i: False),
        ]
    )
    rows = {r.candidate: r for r in run_size(bench, {"n": 64}, CPU, TINY, log=None)}
    assert rows["half"].error_vs_exact == pytest.approx(0.5)
    assert rows["half"].status == "ok" and "other group" not in rows


def test_a_peer_that_raises_or_missing_inputs_are_skipped() -> None:
    def boom(i: Inputs) -> None:
        raise RuntimeError("no kernel")

    bench = toy(
        candidates=[Candidate("sum", lambda i: i.x.sum()), Candidate("b", boom)]
    )
    rows = {r.candidate: r for r in run_size(bench, {"n": 64}, CPU, TINY, log=None)}
    assert rows["b"].status == "skipped" and "no kernel" in rows["b"].note

    def no_data(size: dict, device: torch.device) -> Inputs:
        raise ImportError("no data", name="some_data_package")

    rows = run_size(toy(inputs=no_data), {"n": 64}, CPU, TINY, log=None)
    assert all(r.status == "skipped" and "some_data_package" in r.note for r in rows)


def test_cpu_peak_memory_counts_temporaries_and_output() -> None:
    def temporary() -> torch.Tensor:
        return torch.ones(1 << 20).sum()  # 4 MiB, freed before returning

    assert harness.peak_memory(temporary, CPU) >= 4 * 2**20
    assert (
        2 * 2**20 <= harness.peak_memory(lambda: torch.ones(1 << 19), CPU) < 3 * 2**20
    )


def test_relative_error_and_compare() -> None:
    exact = torch.tensor([3.0, 4.0])
    assert harness.relative_error(torch.zeros(2), exact) == pytest.approx(1.0)
    assert harness.compare(exact + 1e-6, exact, tol=1e-5, against="x")["passed"]
    assert not harness.compare(torch.zeros(3), exact, tol=1.0, against="x")["passed"]


def test_device_info_and_bandwidth() -> None:
    info = harness.device_info(CPU)
    assert info["type"] == "cpu" and info["slug"].startswith("cpu-")
    assert harness.slugify("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert harness.peak_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert harness.peak_bandwidth("NVIDIA H200") == 4.8e12
    assert harness.peak_bandwidth("a CPU") is None


def test_results_round_trip_and_schema(tmp_path: Path) -> None:
    results = Results.new(CPU, TINY, {"peer": None})
    results.rows = run_size(toy(), {"n": 64}, CPU, TINY, log=None)
    loaded = json.loads(results.write(tmp_path / "r.json").read_text())
    assert Results.from_dict(loaded).rows == results.rows
    for damage, expected in (
        (lambda d: d.pop("date"), "date"),
        (lambda d: d["rows"][0]["time_s"].update(q25=1e9), "out of order"),
        (lambda d: d["rows"][0].update(status="fine"), "status"),
        (lambda d: d["rows"][0].update(colour="red"), "unknown row fields"),
        (lambda d: d.update(schema_version=1), "schema_version"),
    ):
        broken = copy.deepcopy(loaded)
        damage(broken)
        with pytest.raises((TypeError, ValueError), match=expected):
            Results.from_dict(broken)


def test_committed_results_files_are_well_formed() -> None:
    files = sorted(harness.RESULTS_DIR.glob("*.json"))
    assert files, "no results file in benchmarks/results/ (run make bench)"
    for path in files:
        results = Results.from_dict(json.loads(path.read_text()))
        assert path.stem == results.device["slug"], path.name
        assert results.settings.get("size") != "quick", f"{path.name}: a --quick run"
        ok = {r.suite for r in results.rows if r.status == "ok"}
        assert ok >= {"rope", "attention", "attention_causal", "hippo_matvec"}
        assert not [r for r in results.rows if r.status == "failed check"], path.name


def test_every_declaration_has_quick_and_cpu_sizes_and_known_names() -> None:
    for name, bench in REGISTRY.items():
        assert bench.sizes["quick"] and bench.sizes["cpu"], name
        assert bench.size_list(torch.device("cuda"), "short"), name
    for wrong in ({"reference": ("nobody",)}, {"reference": "sum"}, {"name": "rope"}):
        with pytest.raises(ValueError):
            register(toy(**wrong))
    peerless = [Candidate("a", lambda i: 0, versus="nobody")]
    with pytest.raises(ValueError, match="nobody"):
        register(toy(candidates=peerless))
    assert select("hippo") == ["hippo_matvec", "hippo_online"]
    with pytest.raises(SystemExit):
        select("nonsense")


def test_the_rope_candidates_compute_the_same_rotation() -> None:
    x = torch.randn(2, 3, 40, 16, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x), exact_rotation(x, "interleaved"))
    torch.testing.assert_close(apply_rope(x, layout="half"), exact_rotation(x, "half"))
    cos, sin = rope_cos_sin(torch.arange(40), 16, dtype=torch.float64)
    torch.testing.assert_close(
        rotate_interleaved_real(x, cos, sin), exact_rotation(x, "interleaved")
    )
    full = (torch.cat((cos, cos), -1), torch.cat((sin, sin), -1))
    torch.testing.assert_close(rotate_half_eager(x, *full), exact_rotation(x, "half"))


def test_structured_inputs() -> None:
    q, k, v = structured_inputs(1, 2, 256, 16, seed=1)
    assert q.shape == k.shape == v.shape == (1, 2, 256, 16)
    assert 0.5 < q.var().item() < 2.0  # about unit variance per coordinate
    similar = torch.nn.functional.cosine_similarity(q[..., 1:, :], q[..., :-1, :], -1)
    assert similar.mean() > 0.5  # smooth along the sequence, unlike iid inputs
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert 0 < mean_pooling_error(v, exact, False) < 1


def test_the_entry_point_writes_a_valid_file_and_merges(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    assert main(["--quick", "--suites", "hippo", "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert Results.from_dict(first).rows
    assert {r["suite"] for r in first["rows"]} == {"hippo_matvec", "hippo_online"}
    previous = copy.deepcopy(first)
    for row in previous["rows"]:
        row["suite"] = "rope"  # rows of a benchmark that the next run does not repeat
    out.write_text(json.dumps(previous))
    assert main(["--quick", "--suites", "hippo", "--merge", "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert {r["suite"] for r in merged["rows"]} == {
        "rope",
        "hippo_matvec",
        "hippo_online",
    }
    assert len(merged["rows"]) == 2 * len(first["rows"])
    assert [r["suites"] for r in merged["settings"]["runs"]][-1] == sorted(
        ["hippo_matvec", "hippo_online"]
    )
    previous["device"]["slug"] = "another-machine"
    out.write_text(json.dumps(previous))
    with pytest.raises(SystemExit, match="another device"):
        main(["--quick", "--suites", "hippo", "--merge", "--out", str(out)])


def test_rows_serialise_to_their_fields() -> None:
    row = Row("s", "g", {"n": 1}, "c", "c")
    assert set(asdict(row)) == {f for f in Row.__dataclass_fields__}
    assert Row.from_dict(asdict(row)) == row
