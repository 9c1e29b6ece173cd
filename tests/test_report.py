"""`hdl aggregate` on a fake results tree: exact cells, paired deltas, missing never zero, files that parse."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hdl.cli import main
from hdl.report.collect import collect_runs, load_grid
from hdl.report.tables import (
    DEFAULT_METRIC,
    accuracy_caption,
    accuracy_display,
    accuracy_seed_values,
    accuracy_statistics,
    last_round,
    to_markdown,
)

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
    # A run killed while writing: unreadable, so it must count as missing, not as a number.
    (seed_dir(runs, SETTING_LONG_TAILED, "fixmatch", 0) / "round~1" / "variant~hdl" / "metrics.json").write_text("{")
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
    # Balanced: seed 2 missing; long-tailed: seed 0's file unreadable.
    assert rows["FixMatch + HDL"] == ["84.50 ± 2.12 (n=2)", "59.50 ± 0.71 (n=2)"]
    # Paired per seed: (3, 4) and (3, 0); not the difference of the means (84.50 - 82.00).
    assert rows["Δ HDL − FixMatch (paired)"] == ["+3.50 ± 0.71 (n=2)", "+1.50 ± 2.12 (n=2)"]
    assert rows["MixMatch"] == ["67.00 ± 2.65", "—"]
    assert rows["MixMatch + HDL"] == ["68.00 ± 2.00", "—"]
    assert rows["Δ HDL − MixMatch (paired)"] == ["+1.00 ± 1.00", "—"]
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
    assert len(body_rows) == 8
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


def test_plots_are_written(aggregated: Path) -> None:
    results = aggregated
    for name in ("accuracy", "hdl_gain", "pseudo_label_accuracy", "training_curves"):
        png = results / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000
    assert not list((results / "plots").glob(".*")), "temporary files left behind"


def test_last_round_is_shown(results: Path) -> None:
    for setting in (SETTING_BALANCED, SETTING_LONG_TAILED):
        for seed in SEEDS:
            for variant, value in (("baseline", 0.90), ("hdl", 0.95)):
                path = seed_dir(results / "runs", setting, "fixmatch", seed) / "round~2" / f"variant~{variant}"
                write_json(path / "metrics.json", metrics_record(value, "fixmatch"))
    rows = markdown_cells(accuracy_markdown(results))
    assert rows["FixMatch"] == ["90.00 ± 0.00", "90.00 ± 0.00"]
    assert rows["Δ HDL − FixMatch (paired)"] == ["+5.00 ± 0.00", "+5.00 ± 0.00"]
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
