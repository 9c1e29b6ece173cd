"""The label refresh's plot of `hdl aggregate`: stage 2's HDL labels at each refresh, from the labels it started with."""

from pathlib import Path

import pandas as pd
import pytest

from hdl.report.collect import collect_runs
from hdl.report.refresh_plot import refresh_rows
from test_report import aggregate, metrics_record, seed_dir, write_json

SETTING = ("fashion_mnist", 100, 10)  # head classes 0-2, tail classes 7-9
SEEDS = (0, 1)
STAGE1_STEPS = 20
# per seed: (coverage, accuracy) of the relabel.json selection, then of the refreshes at stage-2 steps 5 and 10
SELECTIONS = {0: [(0.30, 0.90), (0.40, 0.88), (0.50, 0.86)], 1: [(0.20, 0.80), (0.30, 0.84), (0.40, 0.90)]}


def kept_per_class(head: int, tail: int) -> list[int]:
    return [head] * 3 + [10] * 4 + [tail] * 3


def refresh(step: int, coverage: float, accuracy: float, tail: int) -> dict:
    return {"step": step, "global_step": STAGE1_STEPS + step, "k": 10, "n_unlabeled": 700, "coverage": coverage,
            "accuracy": accuracy, "per_class": kept_per_class(40, tail), "per_class_disputed": [0] * 10, "seconds": 0.5}


def build_tree(tmp_path: Path, refreshing: bool = True) -> Path:
    for seed in SEEDS:
        base = seed_dir(tmp_path / "runs", SETTING, "fixmatch", seed)
        (started, *refreshed) = SELECTIONS[seed]
        write_json(base / "round~1" / "relabel.json", {
            "k": 10, "coverage": 1.0,
            "selection": {"coverage": started[0], "accuracy": started[1], "per_class": kept_per_class(40, 2)}})
        for variant in ("stage1", "hdl", "baseline"):
            record = metrics_record(0.8, "fixmatch")
            if variant == "hdl" and refreshing:
                record["refreshes"] = [refresh(step, *point, tail=4 * (n + 1) + seed)
                                       for n, (step, point) in enumerate(zip((5, 10), refreshed))]
            write_json((base / "stage1" if variant == "stage1" else base / "round~1" / f"variant~{variant}")
                       / "metrics.json", record)
    grid = pd.DataFrame([(*SETTING, "fixmatch", seed) for seed in SEEDS], columns=["dataset", "labels", "imbalance", "method", "seed"])
    grid.to_csv(tmp_path / "grid.csv", index=False)
    return tmp_path


def test_refresh_rows_start_from_the_relabel_selection_and_follow_each_refresh(tmp_path):
    metrics, relabels = collect_runs(build_tree(tmp_path) / "runs")
    rows = refresh_rows(metrics, relabels)
    mean = rows.groupby(["quantity", "global_step"])["value"].mean()
    assert list(mean["coverage"].index) == [20, 25, 30]  # the start of stage 2, then the refreshes
    assert list(mean["coverage"]) == pytest.approx([25.0, 35.0, 45.0])
    assert list(mean["accuracy"]) == pytest.approx([85.0, 86.0, 88.0])
    assert list(mean["tail"]) == pytest.approx([2.0, 4.5, 8.5]) and list(mean["head"]) == pytest.approx([40.0] * 3)
    assert set(rows["round"]) == {1} and set(rows["seed"]) == set(SEEDS)


@pytest.mark.parametrize("refreshing", [True, False])
def test_aggregate_draws_the_refresh_plot_with_or_without_refreshes(tmp_path, refreshing):
    results = build_tree(tmp_path, refreshing)
    assert aggregate(results) == 0
    png = results / "plots" / "refresh.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (png.stat().st_size > 40_000) == refreshing  # three panels of curves, or one line of text


def test_a_refresh_with_a_percent_instead_of_a_fraction_names_the_file(tmp_path, capsys):
    results = build_tree(tmp_path)
    path = seed_dir(results / "runs", SETTING, "fixmatch", 0) / "round~1" / "variant~hdl" / "metrics.json"
    record = metrics_record(0.8, "fixmatch") | {"refreshes": [refresh(5, 40.0, 0.9, 4)]}
    write_json(path, record)
    assert aggregate(results) == 2
    assert f"{path}: refreshes[0].coverage=40.0 is not a fraction" in capsys.readouterr().err
