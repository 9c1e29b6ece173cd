"""studies/tune_selection.py end to end on a tiny workflow-shaped tree: two long-tailed digits cells,
a few stage-1 steps each, then the tuning's relabels, stage-2 runs, tables and choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdl.cli import main as hdl_main

ROOT = Path(__file__).resolve().parent.parent
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
