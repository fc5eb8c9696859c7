"""benchmarks/report.py: the appendix's tables, statistics and derived target verdicts,
on the committed results file (read into typed rows) and on small hand-made runs."""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from benchmarks import report
from benchmarks.harness import Row, Stats

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def runs() -> list[report.Run]:
    return report.load_runs(RESULTS)


def q(median: float, q25: float, q75: float) -> Stats:
    """A ratio with its interval."""
    return Stats(median, q25, q75, q75 - q25, 3)


def _row(group: str, name: str, times: list[float], **fields) -> Row:
    """A timed row (of the masked softmax suite unless ``suite`` is given)."""
    fields = {"suite": "masked_softmax", "params": {"MB": 1.0}} | fields
    return Row(
        group=group,
        candidate=name,
        reference="torch.masked.softmax",
        status="ok",
        time_s=Stats.of(times, per_round=times),
        ratio_to_reference=Stats.of([1.0]),
        peak_memory_bytes=2**20,
        **fields,
    )


def _run(rows: list[Row], kind: str = "cpu") -> report.Run:
    device = {"name": "toy", "type": kind, "threads": 1, "cores": 1, "slug": "toy"}
    return report.Run(device, {}, {}, rows, date="2026-01-01T00:00:00")


def _toy_run() -> report.Run:
    """Two groups of a kernel against its peer: slower in one, faster in the other."""
    peer = "torch.masked.softmax"
    return _run(
        [
            _row("small", peer, [1.0, 1.0, 1.0]),
            _row("small", "kexue masked_softmax", [1.5, 1.6, 1.4], against=peer),
            _row("large", peer, [2.0, 2.0, 2.0]),
            _row("large", "kexue masked_softmax", [1.0, 1.2, 0.8], against=peer),
            *[
                _row(g, f, [0.5, 0.5, 0.5])
                for g in ("small", "large")
                for f in report.FLOORS
            ],
        ]
    )


def test_load_runs_reads_typed_rows(runs, tmp_path: Path) -> None:
    (run,) = runs
    assert run.file == "cpu-amd-epyc-2-cores.json" and not run.gpu
    assert run.label.startswith(f"{run.name} (CPU, 1 thread")
    assert all(isinstance(r, Row) for r in run.rows)
    assert all(isinstance(r.time_s, Stats) for r in run.select("rope"))
    rope = run.groups("rope")
    assert {r.group for r in run.select("rope")} == set(rope)
    assert len(run.select("rope", "kexue apply_rope")) == len(rope)
    assert all(r.status == "skipped" for r in run.select("rope", status="skipped"))
    with pytest.raises(FileNotFoundError):
        report.load_runs(tmp_path)


def test_paired_ratios_and_their_verdicts() -> None:
    ratio = report.paired(_row("g", "a", [2.0, 4.0, 6.0]), _row("g", "b", [1, 1, 2]))
    assert (ratio.median, ratio.q25, ratio.q75) == (3.0, 2.5, 3.5)
    assert report.fmt_ratio(ratio) == "3.00 [2.50, 3.50]"
    assert report.interval_verdict(q(1.10, 1.02, 1.20)) == "slower"  # all above 1
    assert report.interval_verdict(q(1.10, 0.95, 1.20)) == "no clear difference"
    assert report.interval_verdict(q(0.90, 0.85, 1.05)) == "no clear difference"
    assert report.interval_verdict(q(0.90, 0.85, 0.95)) == "faster"
    ratios = [q(1.1, 1.02, 1.2), q(1.0, 0.9, 1.1), q(0.5, 0.4, 0.6), q(0.6, 0.5, 0.7)]
    assert report.verdict_counts(ratios) == (
        "faster in 2, no clear difference in 1, slower in 1"
    )
    # faster from 8 on: 4 straddles 1, and 2 (faster) lies below it
    by_size = {2: q(0.5, 0.4, 0.6), 4: q(0.9, 0.8, 1.1), 8: q(0.5, 0.4, 0.6)}
    assert report.faster_from(by_size | {16: q(0.3, 0.2, 0.4)}) == 8
    assert report.faster_from(by_size | {16: q(0.9, 0.8, 1.1)}) is None


def test_slopes_recover_power_laws() -> None:
    n = np.array([256, 512, 1024, 2048, 4096])
    assert report.slope(n, 3.0 * n**1.5) == pytest.approx(1.5)
    rows = [_row(str(k), "c", [k**2 * 1e-9] * 3, suite="s", params={"n": k}) for k in n]
    for r in rows:
        r.peak_memory_bytes = int(r.params["n"]) * 64
    assert report.slopes(_run(rows), "s", "c") == pytest.approx((2.0, 1.0))
    assert report.slopes(_run(rows[:2]), "s", "c") is None


def test_md_table_escapes_pipes_and_checks_widths() -> None:
    text = report.md_table(["a", "b"], [["x|y", 1]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
    with pytest.raises(ValueError, match="one cell per column"):
        report.md_table(["a", "b"], [["only one"]])
    assert report.md_table(*report.tabulate([])) == ""
    assert report.tabulate([{"a": 1, "b": 2}, {"b": 3, "a": 4}]) == (
        ["a", "b"],
        [[1, 2], [4, 3]],
    )


def test_md_tables_split_a_wide_table(runs) -> None:
    header, body = report.rope_table(runs)
    assert "Bandwidth" not in header  # a CPU file: no bandwidth column
    text = report.md_tables((header, body), ["Machine", "Input"])
    titles = [line for line in text.splitlines() if line.startswith("**")]
    assert len(titles) == len(runs[0].groups("rope"))
    narrow = [c for c in header if c not in ("Machine", "Input")]
    assert text.count("| " + " | ".join(narrow) + " |") == len(titles)
    rows = sum(line.startswith("| ") for line in text.splitlines())
    assert rows == len(titles) + len(body)


def test_target_verdicts_are_derived_and_reasons_required() -> None:
    assert report.Target("t", "m", "1", True).verdict == "met"
    assert report.Target("t", "m", "1", np.bool_(False), "why").verdict == "missed"
    assert report.Target("t", "m", "-", None, "no file").verdict == "untested"
    with pytest.raises(ValueError, match="needs a reason"):
        report.Target("t", "m", "1", False)
    with pytest.raises(TypeError, match="bool or None"):
        report.Target("t", "m", "1", 1.0, "why")  # type: ignore[arg-type]
    assert report.Target("t", "m", "1", True, "kept only when not met").why == ""
    assert report.tally([report.Target("t", "m", "1", True)]) == "1 targets: 1 met."


def test_targets_on_the_committed_cpu_file(runs) -> None:
    judged = report.targets(runs)
    verdicts = {t.target: t.verdict for t in judged}
    assert verdicts["`apply_rope` no slower than rotary-embedding-torch (CPU)"] == "met"
    assert (
        verdicts["Causal linear attention linear in $n$, in time and memory"] == "met"
    )
    assert all(verdicts[t] == "untested" for t in report.GPU_TARGETS)
    assert all(t.why for t in judged if t.verdict != "met")
    counts = {v: list(verdicts.values()).count(v) for v in ("met", "missed")}
    assert report.tally(judged) == (
        f"{len(judged)} targets: {counts['met']} met, {counts['missed']} missed, 3 "
        "untested."
    )
    lines = report.targets_list(judged).splitlines()
    assert len(lines) == len(judged)
    for line, t in zip(lines, judged, strict=True):
        assert line.startswith(f"- **{t.verdict}**") and t.target in line


@pytest.mark.parametrize(
    ("ratio", "verdict", "said"),
    [
        ((1.05, 0.97, 1.12), "met", "no clear difference"),  # median above 1
        ((1.05, 1.01, 1.12), "missed", "slower"),
        ((10.0, 9.0, 11.0), "missed", "slower"),
    ],
)
def test_rope_target_follows_the_interval(runs, ratio, verdict, said) -> None:
    run = copy.deepcopy(runs[0])
    for r in run.select("rope", "kexue apply_rope"):
        r.ratio_to_reference = q(*ratio)
    (target,) = [t for t in report.rope_targets(run) if "apply_rope" in t.target]
    assert target.verdict == verdict and said in target.measured


def test_gpu_targets_bandwidth_and_crossover(runs) -> None:
    """A CPU file relabelled as a CUDA one: the GPU columns and targets appear."""
    run = copy.deepcopy(runs[0])
    run.device = {**run.device, "type": "cuda"}
    for r in run.select("rope"):
        r.bandwidth = {**r.bandwidth, "fraction_of_peak": 0.8}
    header, body = report.rope_table([run])
    assert "% of peak)" in body[0][header.index("Bandwidth")]
    judged = {t.target: t for t in report.targets([run])}
    assert judged[report.GPU_TARGETS[1]].verdict == "met"
    assert "80%" in judged[report.GPU_TARGETS[1]].measured
    n_star, _ = report.crossover(run)
    assert judged[report.GPU_TARGETS[2]].met == (n_star is not None)
    for r in run.select("rope"):
        r.bandwidth["fraction_of_peak"] = None
    assert report.rope_targets(run)[-1].verdict == "untested"


def test_crossover_and_at_equal(runs) -> None:
    n_star, ratios = report.crossover(runs[0])
    assert [n for n, _ in ratios] == sorted(n for n, _ in ratios)
    assert n_star is None or all(q.q75 < 1 for n, q in ratios if n >= n_star)
    line = report.crossover_line(runs[0])
    assert line.startswith(runs[0].label) and report.fmt_ratio(ratios[0][1]) in line
    assert (f"from $n = {n_star}$" if n_star else "never faster") in line
    err, time = report.at_equal(runs[0], "nystrom")
    assert np.isfinite(err) and time > 0
    run = copy.deepcopy(runs[0])
    run.rows = [r for r in run.rows if r.candidate != "kexue nystrom_attention"]
    assert report.at_equal(run, "nystrom") is None


def test_tables_and_lines_render(runs) -> None:
    run = runs[0]
    tables = [report.machines_table(runs), report.slopes_table(runs)]
    tables += [report.approx_table(runs), report.epsilon_table(runs)]
    for header, body in tables:
        assert body and all(len(row) == len(header) for row in body)
    header, body = tables[0]
    machine = dict(zip(header, body[0], strict=True))
    assert machine["Measured (UTC)"] == run.date[:16].replace("T", " ")
    assert machine["Load average"] == (
        f"{run.load_average['start'][0]} → {run.load_average['end'][0]}"
    )
    assert len(tables[2][1]) == len(run.groups("approx_sweep"))
    assert "rotary-embedding-torch 0.9.1" in report.peers_line(runs)
    assert "faster" in report.hippo_line(run)
    assert "features" in report.attention_settings_line(run)
    assert "of mean pooling's" in report.epsilon_line(run)


def test_figures_draw_their_data(runs) -> None:
    import matplotlib.pyplot as plt

    run = runs[0]
    _, axes = plt.subplots(2, 2)
    report.draw_rope(axes[0, 0], run)
    bars = len(axes[0, 0].patches)
    assert bars == 4 * len(run.groups("rope"))  # kexue ×3, rotate-half; not floors
    report.draw_error_cost(axes[0, 1], run, "nystrom")
    assert len(axes[0, 1].texts) == 5  # a budget label on each kexue point
    report.draw_hippo(axes[1, 0], axes[1, 1], run)
    assert len(axes[1, 0].lines) == 4  # dense, legs_matvec, slopes 1 and 2
    _, (top, bottom) = plt.subplots(2, 1)
    report.draw_attention(top, bottom, run, "attention")
    candidates = {r.candidate for r in run.select("attention")}
    assert len(top.lines) == len(bottom.lines) == len(candidates) + 2
    plt.close("all")
    assert report._plain(1e5) == "$10^{5}$" and report._plain(0.2) == "0.2"


def test_causal_and_non_causal_performer_are_judged_apart(runs) -> None:
    judged = {t.target: t for t in report.approx_targets(runs[0])}
    causal = "Performer no slower than performer-pytorch at equal budget (causal)"
    plain = "Performer no slower than performer-pytorch at equal budget (non-causal)"
    assert "every causal length" in judged[causal].measured
    assert "the sweep and every length" in judged[plain].measured
    assert not any("(causal)" in t for t in judged if t.startswith("Nyström"))
    n_causal = len(runs[0].groups("attention_causal"))
    assert len(report._time_pairs(runs[0], "kexue performer", True)) == n_causal
    run = copy.deepcopy(runs[0])  # kexue's causal Performer 100x slower: only it flips
    for r in run.select("attention_causal", "kexue performer_attention, causal"):
        r.time_s.per_round = [t * 100 for t in r.time_s.per_round]
    flipped = {t.target: t.verdict for t in report.approx_targets(run)}
    assert flipped[causal] == "missed" and flipped[plain] == judged[plain].verdict


def test_a_missed_equal_accuracy_target_says_why_from_its_measurement(runs) -> None:
    run = copy.deepcopy(runs[0])  # kexue's Nyström 10x slower and 10x less accurate
    for r in run.select("approx_sweep", "kexue nystrom_attention"):
        r.time_s.median *= 10
        r.error_vs_exact *= 10
    judged = {t.target: t for t in report.approx_targets(run)}
    accuracy = judged["Nyström no slower than nystrom-attention at equal accuracy"]
    cost = judged["Nyström no less accurate than nystrom-attention at equal cost"]
    assert accuracy.verdict == cost.verdict == "missed"
    assert "ε" not in accuracy.why + cost.why  # the ε explanation is Performer's
    assert "every error kexue reaches" in accuracy.why
    assert "above the peer's" in cost.why


def test_pooling_budgets_compare_errors_with_the_baseline(runs) -> None:
    run = copy.deepcopy(runs[0])
    for r in run.select("approx_sweep"):
        base = r.params["error_of_mean_pooling"]
        worse = r.params["budget"] == 32 and r.params["method"] == "nystrom"
        r.error_vs_exact = 2 * base if worse else 0.5 * base
        r.error_draws = None  # a single error per row
    assert report.pooling_budgets(run, "nystrom") == [32]
    assert report.pooling_budgets(run, "performer") == []
    assert "m$ = 32" in report.pooling_line(run, "nystrom")
    assert "one of the two beats" in report.pooling_line(run, "performer")
    judged = {t.target: t for t in report.approx_targets(run)}
    target = "Nyström no less accurate than nystrom-attention at equal cost"
    assert "says little" in judged[target].measured


def test_errors_over_projections_are_averaged_with_their_spread(runs) -> None:
    one = _row("g", "one", [1.0], error_vs_exact=0.25)
    several = _row("g", "two", [1.0], error_vs_exact=0.1, error_draws=[0.1, 0.3, 0.2])
    assert report.error_of(one) == 0.25 and report.spread(one) == 0.0
    assert abs(report.error_of(several) - 0.2) < 1e-12  # the mean, not the timed draw
    assert abs(report.spread(several) - 0.1) < 1e-12  # sample standard deviation
    assert report.fmt_error(several) == "0.200 ± 0.100"
    assert report.fmt_error(one) == "0.250"
    run = copy.deepcopy(runs[0])
    for r in run.select("approx_sweep"):
        r.error_draws = None
    assert report.draws_line(run) is None
    run.select("approx_sweep")[0].error_draws = [0.1] * 5
    assert "over 5 independent" in report.draws_line(run)


def test_rope_per_mb_and_memory_line(runs) -> None:
    names = ("rotary-embedding-torch", "kexue apply_rope")
    header, body = report.rope_per_mb(runs[0], names)
    assert header[1:] == list(names) and len(body) == len(runs[0].groups("rope"))
    assert all(float(cell) > 0 for row in body for cell in row[1:])
    assert "times the input" in report.rope_memory_line(runs[0])


def test_hippo_line_needs_the_whole_interval_below_one(runs) -> None:
    run = copy.deepcopy(runs[0])
    ours = run.select("hippo_matvec", "kexue legs_matvec")
    largest = max(r.params["N"] for r in ours)
    for r in ours:
        small = r.params["N"] < largest
        r.ratio_to_reference = q(0.5, 0.4, 0.6) if small else q(0.9, 0.8, 1.1)
    assert "faster from" not in report.hippo_line(run)  # the largest N straddles 1
    for r in ours:
        r.ratio_to_reference.q75 = 0.95
    assert "faster from" in report.hippo_line(run)


# --- kexue against its peers ---------------------------------------------------------
def test_versus_pairs_each_kexue_row_with_its_peer() -> None:
    run = _toy_run()
    pairs = report.versus(run)
    assert [(a.group, b.candidate) for a, b, _ in pairs] == [
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
    assert len(body) == 4  # two candidates in two groups, not the floors themselves
    kexue_small = next(r for r in body if r[2] == "small" and r[3].startswith("kexue"))
    assert kexue_small[header.index("/ x * 2")].startswith("3.00")
    rates = report.floor_rates(run, "masked_softmax")[1]
    assert rates[0][2] == f"{2 * 1.0 / 1e3 / 0.5:.1f}"
    ours = ["kexue masked_softmax"]
    assert report.floor_span(run, "masked_softmax", ours) == "2.0 to 3.0"
    assert report.floor_span(run, "masked_softmax", ours, slice(1)) == "3.0"


def test_committed_file_has_the_new_kernels(runs) -> None:
    suites = {r.suite for run in runs for r in run.rows if r.status == "ok"}
    assert suites >= set(report.KERNELS) - {"bert"} | {"rope", "hippo_matvec"}
    header, body = report.versus_table(runs)
    assert body and all(len(row) == len(header) for row in body)
    assert report.floor_table(runs)[1] and report.floor_rates(runs[0])[1]
    assert all(
        float(r[3].replace(",", "")) > 0 for r in report.throughput_table(runs)[1]
    )
