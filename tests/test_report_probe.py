"""The probe plot of `hdl aggregate`: HDL against argmax through training, stage 2 after stage 1."""

from pathlib import Path

import pandas as pd
import pytest

from hdl.report import probe_plot
from hdl.report.collect import collect_runs
from hdl.report.probe_plot import probe_rows, seed_band
from hdl.report.probe_table import MOMENTS, probe_display, probe_seed_values, probe_statistics
from hdl.report.render import to_markdown
from hdl.report.stats import paired_t_interval
from test_report import aggregate, metrics_record, seed_dir, write_json

SETTING = ("fashion_mnist", 100, 10)
SEEDS = (0, 1)
# (variant, global step) -> {labeler: (full, top30) accuracy per seed}
PROBES = {
    ("stage1", 10): {"hdl": [(0.60, 0.90), (0.70, 1.00)], "argmax": [(0.40, 0.50), (0.50, 0.70)]},
    ("stage1", 20): {"hdl": [(0.70, 0.95), (0.80, 1.00)], "argmax": [(0.50, 0.60), (0.60, 0.80)]},
    ("hdl", 25): {"hdl": [(0.80, 1.00), (0.90, 1.00)], "argmax": [(0.70, 0.90), (0.80, 0.90)]},
    ("hdl", 30): {"hdl": [(0.85, 1.00), (0.95, 1.00)], "argmax": [(0.75, 0.90), (0.85, 0.95)]},
    ("baseline", 25): {"hdl": [(0.72, 0.96), (0.82, 1.00)], "argmax": [(0.52, 0.62), (0.62, 0.82)]},
    ("baseline", 30): {"hdl": [(0.74, 0.97), (0.84, 1.00)], "argmax": [(0.54, 0.64), (0.64, 0.84)]},
}
# The same course where the most confident 30% are as accurate as in the study (docs/results/study_lt_probe.csv:
# 98.9-99.9% for every labeler, moment and setting)
CONFIDENT = {
    ("stage1", 10): {"hdl": [(0.60, 0.994), (0.70, 1.00)], "argmax": [(0.40, 0.990), (0.50, 0.998)]},
    ("stage1", 20): {"hdl": [(0.70, 0.996), (0.80, 1.00)], "argmax": [(0.50, 0.994), (0.60, 0.998)]},
    ("hdl", 25): {"hdl": [(0.80, 0.998), (0.90, 1.00)], "argmax": [(0.70, 0.996), (0.80, 0.998)]},
    ("hdl", 30): {"hdl": [(0.85, 0.998), (0.95, 1.00)], "argmax": [(0.75, 0.996), (0.85, 1.00)]},
    ("baseline", 25): {"hdl": [(0.72, 0.996), (0.82, 1.00)], "argmax": [(0.52, 0.994), (0.62, 0.998)]},
    ("baseline", 30): {"hdl": [(0.74, 0.996), (0.84, 1.00)], "argmax": [(0.54, 0.988), (0.64, 0.996)]},
}


def probe(global_step: int, scores: dict, seed: int) -> dict:
    def score(accuracy: float, coverage: float) -> dict:
        return {"accuracy": accuracy, "coverage": coverage, "per_class": [accuracy] * 10}

    return {"step": global_step - 20 * (global_step > 20), "global_step": global_step, "k": 10, "n_unlabeled": 700,
            **{labeler: {"full": score(values[seed][0], 1.0), "top50": score(values[seed][1], 0.5),
                         "top30": score(values[seed][1], 0.3), "top10": score(1.0, 0.1)}
               for labeler, values in scores.items()}}


def build_tree(tmp_path: Path, probes: dict = PROBES) -> Path:
    for seed in SEEDS:
        base = seed_dir(tmp_path / "runs", SETTING, "fixmatch", seed)
        for variant in ("stage1", "hdl", "baseline"):
            record = metrics_record(0.8, "fixmatch")
            record["probes"] = [probe(step, scores, seed) for (v, step), scores in probes.items() if v == variant]
            write_json((base / "stage1" if variant == "stage1" else base / "round~1" / f"variant~{variant}")
                       / "metrics.json", record)
    return tmp_path


def test_probe_rows_put_stage_2_after_stage_1_and_clip_the_band(tmp_path):
    metrics, _ = collect_runs(build_tree(tmp_path) / "runs")
    rows = probe_rows(metrics)
    assert len(rows) == len(SEEDS) * len(PROBES) * 2 * 2  # seeds x probes x labelers x plotted coverages
    hdl_top30 = rows[(rows["labeler"] == "hdl") & (rows["coverage"] == "top30")]
    assert sorted(hdl_top30[hdl_top30["variant"] == "hdl"]["global_step"].unique()) == [25, 30]
    band = seed_band(hdl_top30[hdl_top30["variant"] == "stage1"])
    assert list(band.index) == [10, 20]
    assert band.loc[10, "mean"] == pytest.approx(95.0)
    assert band.loc[10, "high"] == 100.0 and band.loc[10, "low"] == pytest.approx(95.0 - 50**0.5)
    argmax_full = rows[(rows["labeler"] == "argmax") & (rows["coverage"] == "full") & (rows["variant"] == "baseline")]
    assert seed_band(argmax_full).loc[25, "mean"] == pytest.approx(57.0)


def test_aggregate_draws_the_probe_plot_and_writes_its_table(tmp_path):
    results = build_tree(tmp_path)
    grid = pd.DataFrame([(*SETTING, "fixmatch", seed) for seed in SEEDS],
                        columns=["dataset", "labels", "imbalance", "method", "seed"])
    grid.to_csv(results / "grid.csv", index=False)
    assert aggregate(results) == 0
    png = results / "plots" / "probe_accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "| stage 2 with HDL labels, last probe | 30 | 2 |" in (results / "tables" / "probe.md").read_text()


def drawn_panels(results: Path, monkeypatch) -> dict:
    """The probe figure's panels of ``results``' runs by their column (probe_plot.PANELS), as drawn."""
    figures = []
    monkeypatch.setattr(probe_plot, "save_figure", lambda fig, path: figures.append(fig))
    metrics, _ = collect_runs(results / "runs")
    grid = pd.DataFrame([(*SETTING, "fixmatch", seed) for seed in SEEDS], columns=["dataset", "labels", "imbalance", "method", "seed"])
    probe_plot.plot_probe_accuracy(metrics, grid, results / "probe_accuracy.png")
    return dict(zip(probe_plot.PANELS, [axis for axis in figures[0].axes if axis.get_visible()]))


def test_the_most_confident_30_percent_column_zooms_onto_its_curves(tmp_path, monkeypatch):
    panels = drawn_panels(build_tree(tmp_path, CONFIDENT), monkeypatch)
    # the lowest band: the stage-2 baseline's argmax at step 30, seeds 98.8 and 99.6% (mean 99.2, std 0.8 / √2);
    # the highest reaches 100. A span of 1.4 points: the margin is ZOOM_MARGIN, and the top stays at 100
    assert panels["top30"].get_ylim() == pytest.approx((99.2 - 0.8 / 2**0.5 - 0.5, 100.0))
    assert "zoomed" in panels["top30"].get_ylabel()
    assert panels["full"].get_ylim() == (0.0, 100.0) and "zoomed" not in panels["full"].get_ylabel()
    # curves spread over half the axis (the argmax's top 30% from 45.9% up): a tenth of the span on each side
    panels = drawn_panels(build_tree(tmp_path / "spread"), monkeypatch)
    low = 60.0 - 20.0 / 2**0.5
    assert panels["top30"].get_ylim() == pytest.approx((low - 0.1 * (100.0 - low), 100.0))


def test_probe_table_pairs_hdl_and_argmax_per_seed_at_four_moments(tmp_path):
    metrics, _ = collect_runs(build_tree(tmp_path) / "runs")
    stats = probe_statistics(probe_seed_values(metrics))
    assert list(dict.fromkeys(stats["moment"])) == list(MOMENTS.values())
    assert set(stats["quantity"]) == {"all labels", "most confident 30%"}  # no tail in the probes: no tail rows
    row = stats.set_index(["moment", "quantity"])
    first_top30 = row.loc[("stage 1, first probe", "most confident 30%")]
    assert first_top30["step"] == 10 and first_top30["n_seeds"] == 2
    assert first_top30["hdl"] == pytest.approx(95.0) and first_top30["argmax"] == pytest.approx(60.0)
    low, high, _ = paired_t_interval([90.0 - 50.0, 100.0 - 70.0])  # per seed, HDL − argmax
    assert (first_top30["delta"], first_top30["ci_low"], first_top30["ci_high"]) == pytest.approx((35.0, low, high))
    assert row.loc[("stage 2 with HDL labels, last probe", "all labels"), "step"] == 30
    assert row.loc[("stage 2 with HDL labels, last probe", "all labels"), "delta"] == pytest.approx(10.0)
    assert row.loc[("stage 2 baseline, last probe", "all labels"), "argmax"] == pytest.approx(59.0)
    markdown = to_markdown(probe_display(stats))
    assert "| Fashion-MNIST, N1=100, IF=10 | FixMatch | stage 1, first probe | 10 | 2 | 65.00 ± 7.07 | 45.00 ± 7.07 |" in markdown


def test_the_tail_panel_reads_the_tail_classes_accuracy_where_the_probe_has_one():
    with_tail = probe(10, PROBES[("stage1", 10)], 0)
    for labeler, tail in (("hdl", 0.55), ("argmax", 0.10)):
        with_tail[labeler]["full"]["tail"] = tail
    runs = pd.DataFrame([{"seed": 0, "variant": "stage1", "record": {"probes": [with_tail, probe(20, PROBES[("stage1", 20)], 0)]}}])
    tail = probe_rows(runs).query("coverage == 'tail'").set_index("labeler")
    assert tail["global_step"].tolist() == [10, 10]  # the probe without a tail gives no tail row
    assert tail.loc["hdl", "accuracy"] == pytest.approx(55.0) and tail.loc["argmax", "accuracy"] == pytest.approx(10.0)
