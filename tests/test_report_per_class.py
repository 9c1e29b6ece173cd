"""results/tables/per_class.*: per-class and tail test accuracy of stage 1 and both stage-2 variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdl.report.collect import collect_runs
from hdl.report.per_class import per_class_display, per_class_seed_values, per_class_statistics, tail_classes
from hdl.report.render import to_markdown
from hdl.report.stats import paired_t_interval

LONG_TAILED = ("fashion_mnist", 300, 50)
BALANCED = ("fashion_mnist", 100, 1)
HEAD = [0.9] * 7


def per_class(variant: str, seed: int) -> list[float]:
    """Head classes at 90%; the three tail classes lower, HDL's tail 2-4 points above the baseline's."""
    tail = {"stage1": [0.20, 0.30, 0.40], "baseline": [0.30, 0.40, 0.50], "hdl": [0.32, 0.42, 0.52]}[variant]
    return HEAD + [value + 0.01 * seed * (variant == "hdl") for value in tail]


def write_runs(root: Path, setting: tuple, seeds=(0, 1, 2)) -> None:
    dataset, labels, imbalance = setting
    for seed in seeds:
        cell = root / f"dataset~{dataset}" / f"labels~{labels}" / f"imbalance~{imbalance}" / "method~fixmatch" / f"seed~{seed}"
        for variant, folder in (("stage1", cell / "stage1"), ("baseline", cell / "round~1" / "variant~baseline"),
                                ("hdl", cell / "round~1" / "variant~hdl")):
            folder.mkdir(parents=True)
            values = per_class(variant, seed)
            (folder / "metrics.json").write_text(json.dumps({"top1": float(np.mean(values)), "per_class": values,
                                                             "median_last20_top1": 0.5, "history": []}))


def test_tail_is_the_third_of_the_classes_with_the_fewest_labels():
    assert tail_classes(300, 50, 10) == [7, 8, 9]
    assert tail_classes(300, 100, 3) == [2]
    assert tail_classes(100, 1, 10) == []


@pytest.fixture
def statistics(tmp_path: Path) -> pd.DataFrame:
    write_runs(tmp_path, LONG_TAILED)
    write_runs(tmp_path, BALANCED, seeds=(0, 1))
    metrics, _ = collect_runs(tmp_path)
    return per_class_statistics(per_class_seed_values(metrics))


def test_per_class_and_tail_means_and_the_paired_tail_difference(statistics):
    long_tailed = statistics[statistics["imbalance"] == 50].set_index("row")
    assert list(long_tailed.index) == ["stage1", "baseline", "hdl", "tail_delta"]
    assert long_tailed.loc["stage1", "9"] == pytest.approx(40.0)
    assert long_tailed.loc["baseline", "tail"] == pytest.approx(40.0)
    assert long_tailed.loc["hdl", "tail"] == pytest.approx(43.0)  # 42 + 1 point on average over seeds 0-2
    differences = [2.0, 3.0, 4.0]
    low, high, _ = paired_t_interval(differences)
    assert long_tailed.loc["tail_delta", ["tail", "ci_low", "ci_high"]].tolist() == pytest.approx([3.0, low, high])
    balanced = statistics[statistics["imbalance"] == 1]
    assert list(balanced["row"]) == ["stage1", "baseline", "hdl"]  # no tail, so no tail difference
    assert balanced["tail"].isna().all() and (balanced["n_seeds"] == 2).all()


def test_markdown_shows_classes_tail_and_interval(statistics):
    markdown = to_markdown(per_class_display(statistics))
    rows = {tuple(cell.strip() for cell in line.strip("|").split(" | ")[:3]): line for line in markdown.splitlines() if line.startswith("| F")}
    low, high, _ = paired_t_interval([2.0, 3.0, 4.0])
    assert f"+3.00 [{low:+.2f}, {high:+.2f}] |" in rows[("Fashion-MNIST, N1=300, IF=50", "FixMatch", "Δ tail, HDL − baseline (paired)")]
    assert "| 90.0 |" in rows[("Fashion-MNIST, N1=300, IF=50", "FixMatch", "stage 1 only")]
    assert rows[("Fashion-MNIST, 100 labels, balanced", "FixMatch", "+ HDL")].rstrip().endswith("| 52.5 | — |")  # seeds 0 and 1
