"""The benchmark harness (benchmarks/, ``make bench``): its statistics, memory measurement, checks and result
files, on trivial functions. Runs on the CPU without the peer libraries; times nothing that matters."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from benchmarks import harness
from benchmarks.__main__ import main
from benchmarks.attention import mean_pooling_error, structured_inputs
from benchmarks.harness import Candidate, Settings
from benchmarks.rope import exact_rotation, rotate_half_eager, rotate_interleaved_real
from kexue.positions.rope import apply_rope, rope_cos_sin

TINY = Settings(
    rounds=3, min_rounds=3, block_seconds=0.001, group_seconds=0.2, warmup=1
)


def test_quartiles_and_summary() -> None:
    assert harness.quartiles([3.0]) == (3.0, 3.0, 3.0)
    q1, median, q3 = harness.quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (q1, median, q3) == (2.0, 3.0, 4.0)
    s = harness.summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median"] == 3.0 and s["iqr"] == 2.0 and s["n"] == 5
    with pytest.raises(ValueError):
        harness.quartiles([])


def test_paired_ratios_are_taken_round_by_round() -> None:
    ratios = harness.paired_ratios(
        {"ref": [1.0, 2.0, 4.0], "b": [2.0, 4.0, 8.0]}, "ref"
    )
    assert ratios == {"ref": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_interleaved_timing_orders_a_slow_and_a_fast_function() -> None:
    small, large = torch.randn(64), torch.randn(1 << 18)
    rows = harness.measure_group(
        "unit",
        "trivial",
        {"size": 1},
        [
            Candidate("fast", lambda: small.sum()),
            Candidate("slow", lambda: large.sort()),
        ],
        "fast",
        device=torch.device("cpu"),
        settings=TINY,
        skipped=[("absent", "not installed")],
        log=None,
    )
    by_name = {r["candidate"]: r for r in rows}
    assert by_name["fast"]["ratio_to_reference"]["median"] == 1.0
    assert by_name["slow"]["ratio_to_reference"]["median"] > 2
    assert by_name["slow"]["time_s"]["n"] >= TINY.min_rounds
    assert (
        by_name["absent"]["status"] == "skipped"
        and by_name["absent"]["note"] == "not installed"
    )
    assert (
        by_name["slow"]["peak_memory_bytes"] >= large.numel() * 4
    )  # sort returns values and indices


def test_a_candidate_that_fails_its_check_is_not_timed() -> None:
    wrong = harness.compare(torch.ones(3), torch.zeros(3) + 2, tol=1e-3, against="two")
    assert not wrong["passed"] and wrong["value"] == pytest.approx(0.5)
    rows = harness.measure_group(
        "unit",
        "check",
        {},
        [Candidate("ref", lambda: 1), Candidate("bad", lambda: 2, check=wrong)],
        "ref",
        device=torch.device("cpu"),
        settings=TINY,
        memory=False,
        log=None,
    )
    assert [r["status"] for r in rows] == ["ok", "failed check"]
    assert rows[1]["time_s"] is None
    with pytest.raises(ValueError, match="reference"):
        harness.measure_group(
            "unit", "g", {}, [Candidate("bad", lambda: 2, check=wrong)], "bad", device=torch.device("cpu"),
            settings=TINY, log=None,
        )  # fmt: skip


def test_cpu_peak_memory_counts_temporaries_and_output() -> None:
    def temporary() -> torch.Tensor:
        big = torch.ones(1 << 20)  # 4 MiB, freed before returning
        return big.sum()

    def output() -> torch.Tensor:
        return torch.ones(1 << 19)  # 2 MiB, returned

    assert harness.peak_memory(temporary, torch.device("cpu")) >= 4 * 2**20
    assert 2 * 2**20 <= harness.peak_memory(output, torch.device("cpu")) < 3 * 2**20


def test_relative_error_and_compare() -> None:
    exact = torch.tensor([3.0, 4.0])
    assert harness.relative_error(exact, exact) == 0.0
    assert harness.relative_error(torch.zeros(2), exact) == pytest.approx(1.0)
    assert harness.compare(exact + 1e-6, exact, tol=1e-5, against="x")["passed"]
    assert not harness.compare(torch.zeros(3), exact, tol=1.0, against="x")[
        "passed"
    ]  # shape


def test_device_info_and_slug() -> None:
    info = harness.device_info(torch.device("cpu"))
    assert (
        info["type"] == "cpu" and info["slug"].startswith("cpu-") and info["cores"] >= 1
    )
    assert harness.slugify("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert harness.peak_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert harness.peak_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert harness.peak_bandwidth("NVIDIA H200") == 4.8e12
    assert harness.peak_bandwidth("a CPU") is None


def _minimal_results() -> dict:
    results = harness.new_results(torch.device("cpu"), TINY, {"peer": None})
    results["rows"] = harness.measure_group(
        "unit", "g", {}, [Candidate("a", lambda: 1)], "a", device=torch.device("cpu"), settings=TINY,
        memory=False, log=None,
    )  # fmt: skip
    return results


def test_results_round_trip_and_validation(tmp_path: Path) -> None:
    results = _minimal_results()
    path = harness.write_results(results, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    assert harness.validate(loaded) == []
    assert (
        loaded["device"]["type"] == "cpu"
        and loaded["torch_version"] == torch.__version__
    )
    broken = copy.deepcopy(loaded)
    del broken["date"]
    assert "missing top-level field 'date'" in harness.validate(broken)
    broken = copy.deepcopy(loaded)
    broken["rows"][0]["time_s"]["q25"] = 1e9
    assert any("out of order" in p for p in harness.validate(broken))
    broken = copy.deepcopy(loaded)
    broken["rows"][0]["status"] = "fine"
    assert any("status" in p for p in harness.validate(broken))
    with pytest.raises(ValueError, match="malformed"):
        harness.write_results(broken, tmp_path / "bad.json")


def test_committed_results_files_are_well_formed() -> None:
    files = sorted(harness.RESULTS_DIR.glob("*.json"))
    assert files, "no results file in benchmarks/results/ (run make bench)"
    for path in files:
        results = json.loads(path.read_text())
        assert harness.validate(results) == [], path.name
        assert path.stem == results["device"]["slug"], (
            f"{path.name} is not named after its device"
        )
        assert not results["settings"].get("quick"), (
            f"{path.name} holds a --quick smoke run"
        )
        ok = [r for r in results["rows"] if r["status"] == "ok"]
        assert ok and {r["suite"] for r in ok} >= {
            "rope",
            "attention",
            "attention_causal",
            "hippo_matvec",
        }
        assert not [r for r in results["rows"] if r["status"] == "failed check"], (
            path.name
        )


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
    neighbours = torch.nn.functional.cosine_similarity(
        q[..., 1:, :], q[..., :-1, :], dim=-1
    ).mean()
    assert neighbours > 0.5  # smooth along the sequence, unlike iid inputs
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert 0 < mean_pooling_error(v, exact, False) < 1
    assert 0 < mean_pooling_error(
        v,
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
        True,
    )


def test_the_entry_point_writes_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke.json"
    assert main(["--quick", "--suites", "hippo", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert harness.validate(results) == []
    assert {r["suite"] for r in results["rows"]} == {"hippo_matvec", "hippo_online"}
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--suites", "nonsense"])


def test_merge_keeps_the_suites_not_run_again(tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    assert main(["--quick", "--suites", "hippo", "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert main(["--quick", "--suites", "hippo", "--merge", "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert len(again["rows"]) == len(
        first["rows"]
    )  # the hippo rows are replaced, not doubled
    previous = copy.deepcopy(first)
    for row in previous["rows"]:
        row["suite"] = (
            "rope"  # stands for rows of a suite that the next run does not repeat
        )
    out.write_text(json.dumps(previous))
    assert main(["--quick", "--suites", "hippo", "--merge", "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert harness.validate(merged) == []
    assert {r["suite"] for r in merged["rows"]} == {
        "rope",
        "hippo_matvec",
        "hippo_online",
    }
    assert [run["suites"] for run in merged["settings"]["runs"]] == [
        ["rope"],
        ["hippo"],
    ]
    previous["device"]["slug"] = "another-machine"
    out.write_text(json.dumps(previous))
    with pytest.raises(SystemExit, match="another device"):
        main(["--quick", "--suites", "hippo", "--merge", "--out", str(out)])
