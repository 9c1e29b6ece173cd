"""`hdl aggregate` on a fake results tree: exact cells, paired deltas, missing never zero, files that parse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from hdl.cli import main
from hdl.report import plots
from hdl.report.collect import collect_runs, load_grid
from hdl.report.render import to_markdown
from hdl.report.stats import DEFAULT_METRIC, accuracy_seed_values, accuracy_statistics, last_round
from hdl.report.tables import accuracy_caption, accuracy_display

SETTING_BALANCED = ("cifar10", 250, 1)
SETTING_LONG_TAILED = ("cifar10", 1500, 50)
METHODS = ("fixmatch", "mixmatch")
SEEDS = (0, 1, 2)

# median_last20_top1 per (setting, method, variant): one value per seed. top1 and best_top1
# are written off by constants so a table that shows the wrong key fails.
ACCURACY = {
    (SETTING_BALANCED, "fixmatch", "stage1"): [0.70, 0.72, 0.74],
    (SETTING_BALANCED, "fixmatch", "baseline"): [0.80, 0.82, 0.84],
    (SETTING_BALANCED, "fixmatch", "hdl"): [0.83, 0.86, None],  # seed 2's HDL run never finished
    (SETTING_BALANCED, "mixmatch", "stage1"): [0.60, 0.60, 0.63],
    (SETTING_BALANCED, "mixmatch", "baseline"): [0.65, 0.66, 0.70],
    (SETTING_BALANCED, "mixmatch", "hdl"): [0.66, 0.68, 0.70],
    (SETTING_LONG_TAILED, "fixmatch", "stage1"): [0.50, 0.52, 0.54],
    (SETTING_LONG_TAILED, "fixmatch", "baseline"): [0.55, 0.56, 0.60],
    (SETTING_LONG_TAILED, "fixmatch", "hdl"): [0.57, 0.59, 0.60],
    # (SETTING_LONG_TAILED, "mixmatch", *): no run at all
}


def metrics_record(value: float, method: str, start_step: int = 0) -> dict:
    history = [{"step": start_step + step, "top1": value * step / 40, "balanced_acc": value * step / 41}
               for step in range(10, 41, 10)]
    return {
        "top1": value - 0.01, "balanced_acc": value - 0.02, "per_class": [value] * 10,
        "best_top1": value + 0.01, "median_last20_top1": value, "steps": 40, "seconds": 3.0,
        "history": history, "method": method, "arch": "wrn-28-2",
    }


def relabel_record(seed: int, threshold_passed: bool) -> dict:
    """relabel.json as `hdl relabel` writes it; without ``threshold_passed`` no sample passes the
    argmax threshold, so that labeler reports accuracy None at coverage 0 (as real runs do)."""
    curve = [{"coverage": c, "accuracy": a} for c, a in [(0.25, 0.97), (0.5, 0.94), (0.75, 0.9), (0.95, 0.86)]]
    logits_curve = [{"coverage": p["coverage"], "accuracy": p["accuracy"] - 0.05} for p in curve]
    empty_curve = [{"coverage": 0.0, "accuracy": None} for _ in curve]
    threshold = {"accuracy": 0.82, "coverage": 0.95} if threshold_passed else {"accuracy": None, "coverage": 0.0}
    return {
        "k": 10 + 10 * (seed == 2), "k_scores": {"10": 0.9, "20": 0.88}, "waves": 7, "coverage": 0.95,
        "seconds": 1.0, "accuracy": 0.86 + 0.01 * seed, "per_class": [0.86] * 10,
        "per_level": [{"level": 1, "count": 100, "accuracy": 0.95}],
        "comparison": {
            "knn_vote": {"accuracy": 0.84, "coverage": 0.95},
            "label_propagation": {"accuracy": 0.85, "coverage": 0.95},
            "argmax": {"accuracy": 0.80 + 0.01 * seed, "coverage": 0.95},
            "argmax_threshold": threshold,
        },
        "coverage_curve": {"hdl": curve, "knn_vote": curve[1:], "argmax": logits_curve, "label_propagation": curve,
                           "argmax_threshold": logits_curve if threshold_passed else empty_curve},
    }


def seed_dir(runs: Path, setting: tuple, method: str, seed: int) -> Path:
    dataset, labels, imbalance = setting
    return runs / f"dataset~{dataset}" / f"labels~{labels}" / f"imbalance~{imbalance}" / f"method~{method}" / f"seed~{seed}"


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def build_results(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for (setting, method, variant), per_seed in ACCURACY.items():
        for seed, value in zip(SEEDS, per_seed):
            if value is None:
                continue
            base = seed_dir(runs, setting, method, seed)
            run_dir = base / "stage1" if variant == "stage1" else base / "round~1" / f"variant~{variant}"
            write_json(run_dir / "metrics.json", metrics_record(value, method))
            if variant == "stage1":
                write_json(base / "round~1" / "relabel.json", relabel_record(seed, setting == SETTING_BALANCED))
    # A run that never finished has no metrics.json: it must count as missing, not as a number.
    (seed_dir(runs, SETTING_LONG_TAILED, "fixmatch", 0) / "round~1" / "variant~hdl" / "metrics.json").unlink()
    grid = pd.DataFrame(
        [(*setting, method, seed) for setting in (SETTING_BALANCED, SETTING_LONG_TAILED)
         for method in METHODS for seed in SEEDS],
        columns=["dataset", "labels", "imbalance", "method", "seed"],
    )
    grid.to_csv(tmp_path / "grid.csv", index=False)
    return tmp_path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return build_results(tmp_path)


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One default aggregation shared by the read-only tests (plots take most of a run's time)."""
    results = build_results(tmp_path_factory.mktemp("aggregated"))
    assert aggregate(results) == 0
    return results


def aggregate(results: Path, *extra: str) -> int:
    return main(["aggregate", "--runs-dir", str(results / "runs"), "--grid", str(results / "grid.csv"),
                 "--out-dir", str(results), *extra])


def markdown_cells(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell."""
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def test_accuracy_table_cells(aggregated: Path) -> None:
    results = aggregated
    rows = markdown_cells((results / "tables" / "accuracy.md").read_text())
    assert rows["method"] == ["CIFAR-10, 250 labels, balanced", "CIFAR-10, N1=1500, IF=50"]
    assert rows["FixMatch (stage 1 only)"] == ["72.00 ± 2.00", "52.00 ± 2.00"]
    assert rows["FixMatch"] == ["82.00 ± 2.00", "57.00 ± 2.65"]
    # Balanced: seed 2 missing; long-tailed: seed 0's run unfinished.
    assert rows["FixMatch + HDL"] == ["84.50 ± 2.12 (n=2)", "59.50 ± 0.71 (n=2)"]
    # Paired per seed: (3, 4) and (3, 0); not the difference of the means (84.50 - 82.00). 95% paired-t
    # interval, 1 degree of freedom: t = tan(0.475 pi) = 12.706; s/sqrt(2) = 0.5 and 1.5.
    assert rows["Δ HDL − FixMatch (paired)"] == [
        "+3.50 [-2.85, +9.85] n.s. (n=2)", "+1.50 [-17.56, +20.56] n.s. (n=2)"]
    # USB's CIFAR-10 250-label error rates, 4.97 and 37.28, as accuracies; no published IF=50 cell.
    assert rows["FixMatch, published (USB)"] == ["95.03 ± 0.05", "—"]
    assert rows["MixMatch, published (USB)"] == ["62.72 ± 0.61", "—"]
    assert rows["MixMatch"] == ["67.00 ± 2.65", "—"]
    assert rows["MixMatch + HDL"] == ["68.00 ± 2.00", "—"]
    # Differences (1, 2, 0): s/sqrt(3) = 0.577, t(0.975, 2 dof) = 4.303.
    assert rows["Δ HDL − MixMatch (paired)"] == ["+1.00 [-1.48, +3.48] n.s.", "—"]
    assert rows["MixMatch (stage 1 only)"] == ["61.00 ± 1.73", "—"]
    assert "median_last20_top1" in (results / "tables" / "accuracy.md").read_text()


def test_accuracy_csv_keeps_missing_as_nan(aggregated: Path) -> None:
    results = aggregated
    table = pd.read_csv(results / "tables" / "accuracy.csv")
    assert len(table) == 2 * 2 * 4
    missing = table[(table["labels"] == 1500) & (table["method"] == "mixmatch")]
    assert len(missing) == 4
    assert missing["mean"].isna().all() and missing["cell"].isna().all()
    assert (missing["n_seeds"] == 0).all() and (missing["n_expected"] == 3).all()
    assert not (table["mean"] == 0).any()
    delta = table[(table["labels"] == 250) & (table["method"] == "fixmatch") & (table["row"] == "delta")].iloc[0]
    assert delta["mean"] == pytest.approx(3.5) and delta["std"] == pytest.approx(0.5**0.5 * 1.0)
    assert delta["n_seeds"] == 2


def accuracy_markdown(results: Path, metric: str = DEFAULT_METRIC) -> str:
    """The accuracy table without the plots: the CLI's path minus the slow part."""
    metrics, _ = collect_runs(results / "runs")
    grid = load_grid(results / "grid.csv", metrics)
    stats = accuracy_statistics(accuracy_seed_values(metrics, metric), grid, metric)
    return to_markdown(accuracy_display(stats, accuracy_caption(metric, last_round(metrics))))


def test_runs_of_cells_the_grid_does_not_list_stay_out_of_the_tables(results: Path) -> None:
    setting = SETTING_BALANCED
    for seed in (100, 101):  # a tuning's seeds, left under the same runs folder
        base = seed_dir(results / "runs", setting, "fixmatch", seed)
        for run_dir in (base / "stage1", base / "round~1" / "variant~baseline", base / "round~1" / "variant~hdl"):
            write_json(run_dir / "metrics.json", metrics_record(0.11, "fixmatch"))
        write_json(base / "round~1" / "relabel.json", relabel_record(0, True))
    assert aggregate(results) == 0
    rows = markdown_cells((results / "tables" / "accuracy.md").read_text())
    assert rows["FixMatch (stage 1 only)"][0] == "72.00 ± 2.00" and rows["FixMatch"][0] == "82.00 ± 2.00"
    pseudo = pd.read_csv(results / "tables" / "pseudo_labels.csv")
    hdl = pseudo[(pseudo["labels"] == 250) & (pseudo["method"] == "fixmatch") & (pseudo["labeler"] == "hdl")].iloc[0]
    assert hdl["accuracy_mean"] == pytest.approx(87.0) and hdl["accuracy_n_seeds"] == 3


def test_metric_option_changes_the_cells(results: Path) -> None:
    markdown = accuracy_markdown(results, "best_top1")
    assert markdown_cells(markdown)["FixMatch"][0] == "83.00 ± 2.00"
    assert "'best_top1'" in markdown


def test_latex_is_booktabs_and_escaped(aggregated: Path) -> None:
    results = aggregated
    tex = (results / "tables" / "accuracy.tex").read_text()
    assert tex.count("\\begin{tabular}") == 1 and tex.count("\\end{tabular}") == 1
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\midrule" in tex
    assert "median\\_last20\\_top1" in tex
    assert "$\\pm$" in tex and "±" not in tex and "—" not in tex and "Δ" not in tex
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    body_rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(body_rows) == 10  # per method: four rows and USB's published row
    assert all(line.count("&") == 2 for line in body_rows)
    assert "MixMatch + HDL & 68.00 $\\pm$ 2.00 & --- \\\\" in body_rows


def test_pseudo_label_table(aggregated: Path) -> None:
    results = aggregated
    table = pd.read_csv(results / "tables" / "pseudo_labels.csv")
    hdl = table[(table["labels"] == 250) & (table["method"] == "fixmatch") & (table["labeler"] == "hdl")].iloc[0]
    assert hdl["accuracy_mean"] == pytest.approx(87.0) and hdl["accuracy_std"] == pytest.approx(1.0)
    assert hdl["coverage_mean"] == pytest.approx(95.0) and hdl["k"] == "10/20"
    missing = table[(table["labels"] == 1500) & (table["method"] == "mixmatch")]
    assert missing["accuracy_mean"].isna().all() and (missing["accuracy_n_seeds"] == 0).all()
    rows = (results / "tables" / "pseudo_labels.md").read_text().splitlines()
    fixmatch = next(row for row in rows if row.startswith("| CIFAR-10, 250 labels, balanced | FixMatch"))
    assert "| 95.00 ± 0.00 | 87.00 ± 1.00 | 84.00 ± 0.00 | 85.00 ± 0.00 | 81.00 ± 1.00 | 82.00 ± 0.00 |" in fixmatch
    long_tailed = next(row for row in rows if row.startswith("| CIFAR-10, N1=1500, IF=50 | FixMatch"))
    assert long_tailed.endswith("| 81.00 ± 1.00 | — |")
    assert sum("| — |" in row for row in rows) == 2


def test_accuracy_csv_has_the_paired_interval_and_the_published_reference(aggregated: Path) -> None:
    table = pd.read_csv(aggregated / "tables" / "accuracy.csv")
    fixmatch = table[(table["labels"] == 250) & (table["method"] == "fixmatch")].set_index("row")
    # Differences (3, 4): 3.5 ± tan(0.475 pi) * 0.5; p = 1 - (2 / pi) atan(7).
    assert fixmatch.loc["delta", ["ci_low", "ci_high"]].tolist() == pytest.approx([-2.8531, 9.8531], abs=1e-4)
    assert fixmatch.loc["delta", "p_value"] == pytest.approx(0.0903, abs=1e-4)
    assert fixmatch.loc["delta", "n_seeds"] == 2
    assert fixmatch.drop(index="delta")[["ci_low", "ci_high", "p_value"]].isna().all().all()
    assert fixmatch.loc["stage1", "published_mean"] == pytest.approx(95.03)
    assert fixmatch.loc["stage1", "published_source"].startswith("results/classic_cv.csv [fixmatch; cifar10_250]")
    assert fixmatch.drop(index="stage1")["published_mean"].isna().all()
    assert table.loc[table["labels"] == 1500, "published_mean"].isna().all()  # USB has no IF=50 cell


def test_single_seed_without_a_published_reference(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    base = seed_dir(runs, ("fashion_mnist", 40, 1), "fixmatch", 0)
    for variant, value in (("stage1", 0.70), ("baseline", 0.75), ("hdl", 0.78)):
        run_dir = base / "stage1" if variant == "stage1" else base / "round~1" / f"variant~{variant}"
        write_json(run_dir / "metrics.json", metrics_record(value, "fixmatch"))
    assert main(["aggregate", "--runs-dir", str(runs), "--out-dir", str(tmp_path)]) == 0
    markdown = (tmp_path / "tables" / "accuracy.md").read_text()
    rows = markdown_cells(markdown)
    assert rows["Δ HDL − FixMatch (paired)"] == ["+3.00 (n=1, no CI)"]
    assert list(rows)[2:] == ["FixMatch (stage 1 only)", "FixMatch", "FixMatch + HDL", "Δ HDL − FixMatch (paired)"]
    assert "Published (USB)" not in markdown


def selection_record(seed: int) -> dict:
    """relabel.json's "selection" as `hdl relabel` writes it; seed 2's run knew no argmax accuracy."""
    return {
        "rule": "confident", "confidence": "consistency", "class_quota": "crest", "n_unlabeled": 1000, "n_reached": 950,
        "n_selected": 500 + 100 * seed, "coverage": 0.5 + 0.1 * seed, "per_class": [10 * (seed + 1), 10 * (seed + 2)],
        "per_class_accuracy": [[0.9, None], [0.8, None], [1.0, 0.5]][seed],
        "estimated_accuracy": 0.95, "accuracy": 0.93 + 0.01 * seed, "argmax_accuracy": [0.90, 0.91, None][seed],
    }


def test_pseudo_label_table_shows_the_stage2_selection(results: Path) -> None:
    # Only the balanced FixMatch runs record a selection; the others are older relabel.json files.
    for seed in SEEDS:
        path = seed_dir(results / "runs", SETTING_BALANCED, "fixmatch", seed) / "round~1" / "relabel.json"
        write_json(path, {**json.loads(path.read_text()), "selection": selection_record(seed)})
    assert aggregate(results) == 0
    table = pd.read_csv(results / "tables" / "pseudo_labels.csv")
    in_cell = (table["labels"] == 250) & (table["method"] == "fixmatch")
    by_labeler = table[in_cell].set_index("labeler")
    selected, argmax = by_labeler.loc["hdl_selected"], by_labeler.loc["argmax_selected"]
    assert (selected["coverage_mean"], selected["coverage_std"]) == pytest.approx((60.0, 10.0))
    assert (selected["estimated_accuracy_mean"], selected["estimated_accuracy_std"]) == pytest.approx((95.0, 0.0))
    assert (selected["accuracy_mean"], selected["accuracy_std"]) == pytest.approx((94.0, 1.0))
    assert argmax["accuracy_mean"] == pytest.approx(90.5) and argmax["accuracy_n_seeds"] == 2
    assert argmax["coverage_mean"] == pytest.approx(60.0)
    assert (selected["selection"], selected["confidence"], selected["class_quota"]) == ("confident", "consistency", "crest")
    # per class: mean count over seeds; mean accuracy over the seeds that kept some of the class
    assert (selected["selected_per_class"], selected["selected_per_class_accuracy"]) == ("20/30", "90.0/50.0")
    others = table[~in_cell & (table["labeler"] == "hdl_selected")]
    assert len(others) == 3 and others["coverage_mean"].isna().all() and (others["coverage_n_seeds"] == 0).all()
    rows = (results / "tables" / "pseudo_labels.md").read_text().splitlines()
    assert rows[0].startswith("| setting | method | round | k | selection | coverage, HDL | accuracy, HDL (embeddings) |")
    assert rows[0].endswith(
        "| accuracy, thresholded argmax (logits) | stage-2 selection, coverage | stage-2 selection, estimated accuracy "
        "| stage-2 selection, accuracy | stage-2 selection, argmax accuracy, same coverage "
        "| stage-2 selection, kept per class (accuracy %) |")
    fixmatch = next(row for row in rows if row.startswith("| CIFAR-10, 250 labels, balanced | FixMatch"))
    assert fixmatch.startswith(
        "| CIFAR-10, 250 labels, balanced | FixMatch | 1 | 10/20 | confident, consistency, crest | 95.00 ± 0.00 |")
    assert fixmatch.endswith(
        "| 82.00 ± 0.00 | 60.00 ± 10.00 | 95.00 ± 0.00 | 94.00 ± 1.00 | 90.50 ± 0.71 (n=2) | 20 (90.0)/30 (50.0) |")
    mixmatch = next(row for row in rows if row.startswith("| CIFAR-10, 250 labels, balanced | MixMatch"))
    assert mixmatch.endswith("| 82.00 ± 0.00 | — | — | — | — | — |") and "| 10/20 | — |" in mixmatch


def test_plots_are_written(aggregated: Path) -> None:
    results = aggregated
    for name in ("accuracy", "hdl_gain", "pseudo_label_accuracy", "training_curves", "probe_accuracy"):
        png = results / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000
    assert not list((results / "plots").glob(".*")), "temporary files left behind"


def test_bands_stay_within_what_an_accuracy_can_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two seeds at 99% and 65%: mean ± std reaches 106%, but every band and whisker stops at 100%."""
    runs = tmp_path / "runs"
    for seed, value in ((0, 0.99), (1, 0.65)):
        base = seed_dir(runs, SETTING_BALANCED, "fixmatch", seed)
        write_json(base / "stage1" / "metrics.json", metrics_record(value, "fixmatch"))
        for variant in ("baseline", "hdl"):
            write_json(base / "round~1" / f"variant~{variant}" / "metrics.json", metrics_record(value, "fixmatch"))
        curve = [{"coverage": 0.5, "accuracy": value}, {"coverage": 0.9, "accuracy": value - 0.1 * seed}]
        write_json(base / "round~1" / "relabel.json", {**relabel_record(seed, True), "coverage_curve": {"hdl": curve}})
    pd.DataFrame([(*SETTING_BALANCED, "fixmatch", seed) for seed in (0, 1)],
                 columns=["dataset", "labels", "imbalance", "method", "seed"]).to_csv(tmp_path / "grid.csv", index=False)
    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.setdefault(path.stem, fig))
    assert aggregate(tmp_path) == 0

    def drawn_heights(name: str, kind: type) -> np.ndarray:
        collections = [c for axis in figures[name].axes for c in axis.collections if isinstance(c, kind)]
        assert collections, f"{name} draws no {kind.__name__}"
        return np.concatenate([path.vertices[:, 1] for c in collections for path in c.get_paths()])

    for name, kind in (("pseudo_label_accuracy", PolyCollection), ("training_curves", PolyCollection),
                       ("accuracy", LineCollection)):
        heights = drawn_heights(name, kind)
        assert heights.min() >= 0.0 and heights.max() == pytest.approx(100.0), name  # reached 100 and was cut there


def test_last_round_is_shown(results: Path) -> None:
    for setting in (SETTING_BALANCED, SETTING_LONG_TAILED):
        for seed in SEEDS:
            for variant, value in (("baseline", 0.90), ("hdl", 0.95)):
                path = seed_dir(results / "runs", setting, "fixmatch", seed) / "round~2" / f"variant~{variant}"
                write_json(path / "metrics.json", metrics_record(value, "fixmatch"))
    rows = markdown_cells(accuracy_markdown(results))
    assert rows["FixMatch"] == ["90.00 ± 0.00", "90.00 ± 0.00"]
    assert rows["Δ HDL − FixMatch (paired)"] == ["+5.00 [+5.00, +5.00]", "+5.00 [+5.00, +5.00]"]
    assert rows["MixMatch"] == ["—", "—"]  # mixmatch never reached round 2


def test_empty_runs_dir_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "runs").mkdir()
    assert main(["aggregate", "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path)]) == 2
    assert "no metrics.json or relabel.json found" in capsys.readouterr().err


def test_percent_instead_of_fraction_is_a_user_error(results: Path, capsys: pytest.CaptureFixture) -> None:
    path = seed_dir(results / "runs", SETTING_BALANCED, "fixmatch", 0) / "stage1" / "metrics.json"
    write_json(path, metrics_record(70.0, "fixmatch"))
    assert aggregate(results) == 2
    assert "not a fraction" in capsys.readouterr().err


def test_per_class_table_is_written(aggregated: Path) -> None:
    rows = [line for line in (aggregated / "tables" / "per_class.md").read_text().splitlines()
            if line.startswith("| CIFAR-10, 250 labels, balanced | FixMatch | stage 1 only |")]
    assert rows and rows[0].count("| 72.0 ") == 10  # per_class is the seed's accuracy in every class
    assert "tail" in (aggregated / "tables" / "per_class.csv").read_text().splitlines()[0]
