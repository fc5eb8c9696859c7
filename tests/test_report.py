"""benchmarks/report.py: the appendix's tables, statistics and derived target verdicts, on the committed
results file and on small hand-made runs."""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from benchmarks import report

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return report.load_runs(RESULTS)


def test_find_results_from_a_subfolder() -> None:
    assert report.find_results(RESULTS.parents[1] / "chapters" / "appendix") == RESULTS
    with pytest.raises(FileNotFoundError):
        report.find_results(Path("/"))


def test_slope_recovers_a_power_law() -> None:
    n = np.array([256, 512, 1024, 2048, 4096])
    assert report.slope(list(zip(n, 3.0 * n**1.5, strict=True))) == pytest.approx(1.5)


def test_paired_is_the_median_of_round_by_round_ratios() -> None:
    a = {"time_s": {"per_round": [2.0, 4.0, 6.0]}}
    b = {"time_s": {"per_round": [1.0, 1.0, 2.0]}}
    assert list(report.paired(a, b)) == [3.0, 2.5, 3.5]


def test_md_table_escapes_pipes_and_checks_widths() -> None:
    text = report.md_table(["a", "b"], [["x|y", 1]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
    with pytest.raises(ValueError, match="one cell per column"):
        report.md_table(["a", "b"], [["only one"]])


def test_target_verdicts_are_derived_and_reasons_required() -> None:
    assert report.Target("t", "m", "1", True).verdict == "met"
    assert report.Target("t", "m", "1", np.bool_(False), "why").verdict == "missed"
    assert report.Target("t", "m", "-", None, "no file").verdict == "untested"
    with pytest.raises(ValueError, match="needs a reason"):
        report.Target("t", "m", "1", False)
    with pytest.raises(TypeError, match="bool or None"):
        report.Target("t", "m", "1", 1.0, "why")  # type: ignore[arg-type]


def test_targets_on_the_committed_cpu_file(runs) -> None:
    judged = report.targets(runs)
    verdicts = {t.target: t.verdict for t in judged}
    assert verdicts["`apply_rope` no slower than rotary-embedding-torch (CPU)"] == "met"
    assert (
        verdicts["Causal linear attention linear in $n$, in time and memory"] == "met"
    )
    assert all(verdicts[t] == "untested" for t in report.GPU_TARGETS)
    header, body = report.targets_table(judged)
    assert len(body) == len(judged) and len(header) == 4
    assert report.tally(judged).startswith(f"{len(judged)} targets:")


def test_a_slower_kernel_is_judged_missed(runs) -> None:
    """The verdict follows the data: make apply_rope 10x slower and the target flips."""
    run = copy.deepcopy(runs[0])
    for r in run["rows"]:
        if r["candidate"] == "kexue apply_rope":
            for k in ("median", "q25", "q75"):
                r["ratio_to_reference"][k] *= 10
    (target,) = [t for t in report.rope_targets(run) if "apply_rope" in t.target]
    assert target.verdict == "missed"


def test_crossover_and_at_equal(runs) -> None:
    n_star, ratios = report.crossover(
        runs[0], report.LINEAR_CAUSAL, report.FLASH_CAUSAL
    )
    assert [n for n, _ in ratios] == sorted(n for n, _ in ratios)
    assert n_star is None or all(q[0] < 1 for n, q in ratios if n >= n_star)
    err, time = report.at_equal(
        runs[0], "nystrom", "kexue nystrom_attention", "nystrom-attention"
    )
    assert np.isfinite(err) and time > 0
    assert report.at_equal(runs[0], "nystrom", "no such", "nystrom-attention") is None


def test_tables_and_lines_render(runs) -> None:
    for header, body in (
        report.machines_table(runs),
        report.rope_table(runs),
        report.slopes_table(runs),
        report.approx_table(runs),
        report.epsilon_table(runs),
    ):
        assert body and all(len(row) == len(header) for row in body)
    assert report.peers_line(runs).startswith("Peers measured against:")
    assert "faster" in report.hippo_line(runs[0])
    assert report.crossover_line(runs[0]).startswith(report.label(runs[0]))


def test_figures_draw_without_error(runs) -> None:
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(2, 2)
    report.draw_rope(axes[0, 0], runs[0])
    report.draw_error_cost(axes[0, 1], runs[0], "nystrom")
    report.draw_hippo(axes[1, 0], axes[1, 1], runs[0])
    _, (top, bottom) = plt.subplots(2, 1)
    report.draw_attention(top, bottom, runs[0], "attention")
    plt.close("all")
    assert report._plain(1e5) == "$10^{5}$" and report._plain(0.2) == "0.2"


def test_split_by_and_drop_uniform(runs) -> None:
    header, body = report.rope_table(runs)
    parts = report.split_by((header, body), ["Machine", "Input"])
    assert sum(len(rows) for _, (_, rows) in parts) == len(body)
    assert all(
        h == [c for c in header if c not in ("Machine", "Input")] for _, (h, _) in parts
    )
    table = (["a", "b"], [["1", "–"], ["2", "–"]])
    assert report.drop_uniform(table, ["b"], "–") == (["a"], [["1"], ["2"]])
    assert report.drop_uniform(table, ["a"], "–") == table


def test_targets_list_names_every_verdict(runs) -> None:
    judged = report.targets(runs)
    lines = report.targets_list(judged).splitlines()
    assert len(lines) == len(judged)
    assert all(
        line.startswith(f"- **{t.verdict}**")
        for line, t in zip(lines, judged, strict=True)
    )


def test_interval_verdict_uses_the_whole_quartile_interval() -> None:
    assert report.interval_verdict([1.10, 1.02, 1.20]) == "slower"  # entirely above 1
    assert report.interval_verdict([1.10, 0.95, 1.20]) == "no clear difference"
    assert report.interval_verdict([0.90, 0.85, 1.05]) == "no clear difference"
    assert report.interval_verdict([0.90, 0.85, 0.95]) == "faster"
    ratios = [[1.1, 1.02, 1.2], [1.0, 0.9, 1.1], [0.5, 0.4, 0.6], [0.6, 0.5, 0.7]]
    assert report.verdict_counts(ratios) == (
        "faster in 2, no clear difference in 1, slower in 1"
    )


def _set_ratio(run: dict, candidate: str, q: tuple[float, float, float]) -> None:
    for r in run["rows"]:
        if r["candidate"] == candidate:
            r["ratio_to_reference"].update(
                zip(("median", "q25", "q75"), q, strict=True)
            )


def test_rope_target_straddling_one_is_met_and_says_so(runs) -> None:
    run = copy.deepcopy(runs[0])
    _set_ratio(run, "kexue apply_rope", (1.05, 0.97, 1.12))  # median above 1
    (target,) = [t for t in report.rope_targets(run) if "apply_rope" in t.target]
    assert target.verdict == "met" and "no clear difference" in target.measured


def test_rope_target_entirely_above_one_is_missed(runs) -> None:
    run = copy.deepcopy(runs[0])
    _set_ratio(run, "kexue apply_rope", (1.05, 1.01, 1.12))
    (target,) = [t for t in report.rope_targets(run) if "apply_rope" in t.target]
    assert target.verdict == "missed" and "slower" in target.measured


def _scale_times(run: dict, candidate: str, factor: float) -> None:
    for r in run["rows"]:
        if r["candidate"] == candidate:
            r["time_s"]["per_round"] = [t * factor for t in r["time_s"]["per_round"]]


def test_causal_and_non_causal_performer_are_judged_apart(runs) -> None:
    judged = {t.target: t for t in report.approx_targets(runs[0])}
    causal = judged[
        "Performer no slower than performer-pytorch at equal budget (causal)"
    ]
    plain = "Performer no slower than performer-pytorch at equal budget (non-causal)"
    assert "every causal length" in causal.measured
    assert "the sweep and every length" in judged[plain].measured
    assert not any("(causal)" in t for t in judged if t.startswith("Nyström"))
    n_causal = len(report.by_group(runs[0], "attention_causal"))
    assert len(report._time_pairs(runs[0], "kexue performer", "performer", True)) == (
        n_causal
    )
    run = copy.deepcopy(
        runs[0]
    )  # kexue's causal Performer 100x slower: only that flips
    _scale_times(run, "kexue performer_attention, causal", 100.0)
    judged = {t.target: t.verdict for t in report.approx_targets(run)}
    before = {t.target: t.verdict for t in report.approx_targets(runs[0])}
    assert judged[causal.target] == "missed" and judged[plain] == before[plain]


def test_pooling_budgets_compare_errors_with_the_baseline(runs) -> None:
    run = copy.deepcopy(runs[0])
    for r in report.rows(run, "approx_sweep"):
        base = r["params"]["error_of_mean_pooling"]
        worse = r["params"]["budget"] == 32 and r["params"]["method"] == "nystrom"
        r["error_vs_exact"] = 2 * base if worse else 0.5 * base
        r.pop("error_draws", None)  # a single error per row
    assert report.pooling_budgets(run, "nystrom") == [32]
    assert report.pooling_budgets(run, "performer") == []
    assert "m$ = 32" in report.pooling_line(run, "nystrom")
    assert "one of the two beats" in report.pooling_line(run, "performer")
    judged = {t.target: t for t in report.approx_targets(run)}
    assert (
        "says little"
        in judged[
            "Nyström no less accurate than nystrom-attention at equal cost"
        ].measured
    )


def test_errors_over_projections_are_averaged_with_their_spread() -> None:
    one = {"error_vs_exact": 0.25}
    several = {"error_vs_exact": 0.1, "error_draws": [0.1, 0.3, 0.2]}
    assert report.error_of(one) == 0.25 and report.spread(one) == 0.0
    assert abs(report.error_of(several) - 0.2) < 1e-12  # the mean, not the timed draw
    assert abs(report.spread(several) - 0.1) < 1e-12  # sample standard deviation
    assert report.fmt_error(several) == "0.200 ± 0.100"
    assert report.fmt_error(one) == "0.250"


def test_draws_line_counts_projections(runs) -> None:
    run = copy.deepcopy(runs[0])
    for r in report.rows(run, "approx_sweep"):
        r.pop("error_draws", None)
    assert report.draws_line(run) is None
    r = next(r for r in report.rows(run, "approx_sweep"))
    r["error_draws"] = [0.1] * 5
    assert "over 5 independent" in report.draws_line(run)


def test_crossover_needs_the_whole_interval_below_one(runs) -> None:
    n_star, ratios = report.crossover(
        runs[0], report.LINEAR_CAUSAL, report.FLASH_CAUSAL
    )
    assert n_star is None or all(q[2] < 1 for n, q in ratios if n >= n_star)


def test_rope_per_mb_memory_and_settings_lines(runs) -> None:
    names = ("rotary-embedding-torch", "kexue apply_rope")
    header, body = report.rope_per_mb(runs[0], names)
    assert header[1:] == list(names) and len(body) == len(
        report.by_group(runs[0], "rope")
    )
    assert all(float(cell) > 0 for row in body for cell in row[1:])
    assert "times the input" in report.rope_memory_line(runs[0])
    assert "features" in report.attention_settings_line(runs[0])


def test_hippo_line_needs_the_whole_interval_below_one(runs) -> None:
    run = copy.deepcopy(runs[0])
    largest = max(r["params"]["N"] for r in report.rows(run, "hippo_matvec"))
    for r in report.rows(run, "hippo_matvec"):
        if r["candidate"] == "kexue legs_matvec":
            q = (0.5, 0.4, 0.6) if r["params"]["N"] < largest else (0.9, 0.8, 1.1)
            r["ratio_to_reference"].update(
                zip(("median", "q25", "q75"), q, strict=True)
            )
    assert "faster from" not in report.hippo_line(run)  # the largest N straddles 1
    for r in report.rows(run, "hippo_matvec"):
        if r["candidate"] == "kexue legs_matvec":
            r["ratio_to_reference"]["q75"] = 0.95
    assert "faster from" in report.hippo_line(run)


# ---------------------------------------------------------------- kexue against its peers
def _toy_run() -> dict:
    """Two groups of a kernel against its peer: slower in one, faster in the other."""

    def row(group: str, name: str, times: list[float], against=None) -> dict:
        return {
            "suite": "masked_softmax",
            "group": group,
            "params": {"MB": 1.0},
            "candidate": name,
            "status": "ok",
            "against": against,
            "time_s": {"median": float(np.median(times)), "per_round": times},
            "peak_memory_bytes": 2**20,
        }

    rows = [
        row("small", "torch.masked.softmax", [1.0, 1.0, 1.0]),
        row("small", "kexue masked_softmax", [1.5, 1.6, 1.4], "torch.masked.softmax"),
        row("large", "torch.masked.softmax", [2.0, 2.0, 2.0]),
        row("large", "kexue masked_softmax", [1.0, 1.2, 0.8], "torch.masked.softmax"),
        *[
            row(g, f, [0.5, 0.5, 0.5])
            for g in ("small", "large")
            for f in report.FLOORS
        ],
    ]
    return {"device": {"name": "toy", "type": "cpu", "threads": 1}, "rows": rows}


def test_versus_pairs_each_kexue_row_with_its_peer() -> None:
    run = _toy_run()
    pairs = report.versus(run)
    assert [(a["group"], b["candidate"]) for a, b, _ in pairs] == [
        ("small", "torch.masked.softmax"),
        ("large", "torch.masked.softmax"),
    ]
    header, body = report.versus_table([run])
    assert [row[header.index("verdict")] for row in body] == ["slower", "faster"]
    (line,) = report.slower([run])
    assert "small" in line and "1.50" in line
    (target,) = report.versus_targets(run)
    assert target.verdict == "missed" and "1 of 2" in target.why


def test_floor_table_and_rates() -> None:
    run = _toy_run()
    header, body = report.floor_table([run])
    assert (
        len(body) == 4
    )  # two candidates in two groups, the floors themselves left out
    kexue_small = next(r for r in body if r[2] == "small" and r[3].startswith("kexue"))
    assert kexue_small[header.index("/ x * 2")].startswith("3.00")
    rates = report.floor_rates(run, "masked_softmax")[1]
    assert rates[0][2] == f"{2 * 1.0 / 1e3 / 0.5:.1f}"


def test_committed_file_has_the_new_kernels(runs) -> None:
    suites = {r["suite"] for run in runs for r in run["rows"] if r["status"] == "ok"}
    assert suites >= set(report.KERNELS) - {"bert"} | {"rope", "hippo_matvec"}
    header, body = report.versus_table(runs)
    assert body and all(len(row) == len(header) for row in body)
    assert report.floor_table(runs)[1] and report.floor_rates(runs[0])[1]
    assert all(
        float(r[3].replace(",", "")) > 0 for r in report.throughput_table(runs)[1]
    )
