"""studies/tune_selection.py: its pre-registered decision rules on tables whose answer is known, and the
whole tuning end to end on a tiny workflow-shaped tree: two long-tailed digits cells, a few stage-1 steps
each, then the tuning's relabels, stage-2 runs, tables and choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdl.cli import main as hdl_main
from hdl.report.stats import paired_t_interval

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "studies"))  # the study scripts import their neighbours by name, as when run
from tune_selection import choose_confidence, choose_quota  # noqa: E402

CONFIDENCES = ["consistency", "knn_margin", "argmax_agreement"]
QUOTAS = ["labeled", "uniform", "crest"]


def mean_areas(**areas: float) -> pd.Series:
    """The (a) table's mean area per labeler, as tune_selection.py builds it (the argmax's row included)."""
    return pd.Series({f"hdl ({kind})": area for kind, area in areas.items()} | {"argmax": 97.0})


def test_choose_confidence_takes_the_highest_mean_area_never_the_argmax_row():
    areas = mean_areas(consistency=84.0, knn_margin=88.5, argmax_agreement=86.0)
    assert choose_confidence(areas, CONFIDENCES) == "knn_margin"
    assert choose_confidence(areas, ["consistency", "argmax_agreement"]) == "argmax_agreement"


def test_choose_confidence_gives_a_tie_to_the_earlier_candidate():
    areas = mean_areas(consistency=84.0, knn_margin=88.5, argmax_agreement=88.5)
    assert choose_confidence(areas, CONFIDENCES) == "knn_margin"
    assert choose_confidence(areas, ["argmax_agreement", "knn_margin", "consistency"]) == "argmax_agreement"


def test_choose_confidence_never_prefers_a_candidate_without_an_area():
    areas = mean_areas(consistency=np.nan, knn_margin=80.0)  # no argmax_agreement row: no probabilities
    assert choose_confidence(areas, CONFIDENCES) == "knn_margin"


# Per cell (4 cells): HDL − baseline test accuracy (points) of the first quota, and a quota's paired
# difference from it, HDL_q − HDL_first, whose 95% interval contains 0 or lies above 0.
FIRST_GAIN = np.array([0.2, -0.3, 0.5, 0.1])
CONTAINS_0 = np.array([2.0, -1.0, 1.5, -0.5])  # mean +0.50, interval about [−1.84, +2.84]
ABOVE_0 = np.array([1.0, 1.2, 0.8, 1.1])  # mean +1.025, interval about [+0.75, +1.30]


def gains(**differences: np.ndarray) -> pd.DataFrame:
    """choose_quota's ``wide``: cells as rows, each quota's HDL − baseline as columns, the first quota's
    FIRST_GAIN and each other's FIRST_GAIN + its difference."""
    return pd.DataFrame({"labeled": FIRST_GAIN} | {quota: FIRST_GAIN + d for quota, d in differences.items()})


def test_choose_quota_keeps_the_first_when_the_other_interval_contains_0():
    quota, intervals = choose_quota(gains(uniform=CONTAINS_0, crest=CONTAINS_0 - 0.4), QUOTAS)
    assert quota == "labeled"  # though uniform's mean gain is 0.5 points higher
    assert intervals["uniform"] == pytest.approx(paired_t_interval(CONTAINS_0)[:2])
    assert intervals["uniform"][0] < 0 < intervals["uniform"][1]
    assert intervals["crest"] == pytest.approx(paired_t_interval(CONTAINS_0 - 0.4)[:2])
    assert set(intervals) == {"uniform", "crest"}


def test_choose_quota_takes_a_quota_whose_interval_against_the_first_lies_above_0():
    quota, intervals = choose_quota(gains(uniform=ABOVE_0, crest=CONTAINS_0), QUOTAS)
    assert quota == "uniform" and intervals["uniform"][0] > 0
    # crest's mean gain (+1.5 over labeled) beats uniform's, but its interval contains 0: it is not a candidate
    assert choose_quota(gains(uniform=ABOVE_0, crest=CONTAINS_0 + 1.0), QUOTAS)[0] == "uniform"


def test_choose_quota_takes_the_highest_mean_gain_among_those_above_0_ties_to_the_earlier():
    assert choose_quota(gains(uniform=ABOVE_0, crest=ABOVE_0 + 0.5), QUOTAS)[0] == "crest"
    assert choose_quota(gains(uniform=ABOVE_0 + 0.5, crest=ABOVE_0), QUOTAS)[0] == "uniform"
    tied = gains(uniform=ABOVE_0, crest=ABOVE_0)
    assert choose_quota(tied, QUOTAS)[0] == "uniform"
    assert choose_quota(tied, ["labeled", "crest", "uniform"])[0] == "crest"


def test_choose_quota_measures_against_the_first_quota_given():
    table = gains(uniform=ABOVE_0)  # uniform lies above labeled, so labeled lies below uniform
    assert choose_quota(table, ["uniform", "labeled"]) == ("uniform", {"labeled": pytest.approx(paired_t_interval(-ABOVE_0)[:2])})
    assert choose_quota(table, ["labeled", "uniform"])[0] == "uniform"
TRAIN = ["--arch", "wrn-10-1", "--steps", "6", "--threads", "1", "--no-progress", "--set", "batch_size=8",
         "--set", "uratio=1", "--set", "eval_every=6", "--set", "probe_every=0"]


def stage1_cell(results: Path, seed: int) -> None:
    """split -> stage 1 -> embed, at the paths the workflow uses."""
    cell = results / "runs" / "dataset~digits" / "labels~40" / "imbalance~10" / "method~fixmatch" / f"seed~{seed}"
    split = results / "splits" / f"seed~{seed}.npz"
    common = ["--dataset", "digits", "--data-dir", str(results / "data")]
    cell_flags = ["--labels", "40", "--imbalance", "10", "--seed", str(seed)]
    assert hdl_main(["split", *common, *cell_flags, "--out", str(split), "--include-labeled"]) == 0
    assert hdl_main(["train", *common, *cell_flags, "--method", "fixmatch", "--split", str(split),
                     "--out", str(cell / "stage1"), *TRAIN]) == 0
    assert hdl_main(["embed", *common, "--checkpoint", str(cell / "stage1" / "checkpoint.pt"), "--split", str(split),
                     "--out", str(cell / "round~1" / "embed.npz"), "--threads", "1"]) == 0


def tune(results: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "studies" / "tune_selection.py"), "--config", str(ROOT / "config" / "study_lt_tuning.yaml"),
               "--runs", str(results / "runs"), "--out", str(results / "tuning"), "--steps", "3", "--quotas", "labeled", "uniform"]
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=results, check=False)


@pytest.mark.slow
@pytest.mark.ci
def test_tune_selection_reports_confidences_quotas_and_a_choice_and_resumes(tmp_path):
    for seed in (100, 101):
        stage1_cell(tmp_path, seed)
    first = tune(tmp_path)
    assert first.returncode == 0, first.stderr
    output = first.stdout
    for confidence in ("consistency", "knn_margin", "argmax_agreement"):
        assert f"hdl ({confidence})" in output
    assert "| labeled |" in output and "| uniform |" in output
    choice = json.loads((tmp_path / "tuning" / "choice.json").read_text())
    assert choice["confidence"] in ("consistency", "knn_margin", "argmax_agreement")
    assert choice["class_quota"] in ("labeled", "uniform") and choice["cells"] == 2 and choice["steps"] == 3

    cell = tmp_path / "tuning" / "dataset~digits" / "labels~40" / "imbalance~10" / "method~fixmatch" / "seed~100"
    stage2 = json.loads((cell / "quota~uniform" / f"confidence~{choice['confidence']}" / "stage2" / "metrics.json").read_text())
    baseline = json.loads((cell / "baseline" / "metrics.json").read_text())
    assert stage2["steps"] == baseline["steps"] == 3
    assert stage2["num_extra"] > 0 and baseline["num_extra"] == 0
    relabel = json.loads((cell / "quota~uniform" / f"confidence~{choice['confidence']}" / "relabel.json").read_text())
    assert relabel["selection"]["class_quota"] == "uniform" and relabel["selection"]["confidence"] == choice["confidence"]

    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "tuning").rglob("metrics.json")}
    second = tune(tmp_path)
    assert second.returncode == 0, second.stderr
    assert {path: path.stat().st_mtime_ns for path in written} == written  # finished runs are read back
    assert "hdl relabel:" not in second.stdout  # nothing relabeled either, and the same tables
    assert second.stdout.splitlines() == [line for line in output.splitlines() if not line.startswith("hdl relabel:")]
