"""studies/study_labelers.py: the ceiling's labels, the decisions on tables whose answer is known, and the report
end to end on a tiny workflow-shaped tree of digits cells."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "studies"))  # the study scripts import their neighbours by name, as when run
import study_labelers  # noqa: E402
from study_labelers import CEILING, ceiling_labels, decisions, variants_of  # noqa: E402
from study_trust import Setting, gains_against, run_all  # noqa: E402
from test_tune_selection import stage1_cell  # noqa: E402

from hdl.io import save_npz  # noqa: E402


def test_the_ceiling_keeps_the_hdl_variants_samples_with_their_true_labels_and_weight_one(tmp_path):
    embed, extra = tmp_path / "embed.npz", tmp_path / "extra.npz"
    save_npz(embed, index=np.array([3, 5, 8, 13, 21]), truth=np.array([2, 0, 1, 1, -1]), labels=np.array([2, -1, -1, -1, -1]))
    save_npz(extra, index=np.array([8, 13, 21]), label=np.array([0, 1, 0]), weight=np.array([0.3, 2.0, 1.0], dtype=np.float32),
             dataset=np.array("digits"))  # 21: a pool sample, with no true label
    labels = ceiling_labels(extra, embed)
    assert labels["index"].tolist() == [8, 13] and labels["label"].tolist() == [1, 1]
    assert labels["weight"].tolist() == [1.0, 1.0] and str(labels["dataset"]) == "digits"  # the cell it checks stays


def gains_table(rows: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Gains per cell: ``rows[setting][variant]`` over seeds (the same methods everywhere)."""
    frames = []
    for setting, by_variant in rows.items():
        seeds = range(len(next(iter(by_variant.values()))))
        index = pd.MultiIndex.from_tuples([(setting, "fashion_mnist", 250, 1, "fixmatch", s) for s in seeds],
                                          names=["setting", "dataset", "labels", "imbalance", "method", "seed"])
        frames.append(pd.DataFrame(by_variant, index=index))
    overall = pd.concat(frames)
    return pd.concat({"overall": overall, "tail": overall * np.nan}, axis=1)


def test_decisions_fire_only_where_the_protocol_says():
    gains = gains_table({"a": {"hdl": [-1.0, -1.2, -0.9, -1.1]}, "b": {"hdl": [2.0, 2.1, 1.9, 2.0]}})
    against_hdl = gains_table({"a": {"label_propagation": [1.0, 1.1, 0.9, 1.0]}, "b": {"label_propagation": [0.5, 0.6, 0.4, 0.5]}})
    said = decisions(gains, against_hdl, ["a", "b"])
    assert any("balanced settings must not train on HDL's labels" in line for line in said)
    assert any(line.startswith("label_propagation beats HDL") for line in said)
    against_hdl = gains_table({"a": {"label_propagation": [1.0, 1.1, 0.9, 1.0]}, "b": {"label_propagation": [0.5, -0.6, 0.4, -0.5]}})
    gains = gains_table({"a": {"hdl": [1.0, -1.2, 0.9, -1.1]}, "b": {"hdl": [2.0, 2.1, 1.9, 2.0]}})
    assert decisions(gains, against_hdl, ["a", "b"]) == ["no decision fires: report what was found, gain or no gain"]


def test_setting_b_drops_what_the_wall_time_estimate_dropped_in_its_order():
    assert variants_of("a") == ["hdl", "knn_vote", "label_propagation", "argmax", CEILING]
    assert variants_of("b") == ["hdl", "label_propagation", "argmax"]


@pytest.mark.slow
@pytest.mark.ci
def test_the_report_runs_every_labeler_and_the_ceiling_and_reads_finished_runs_back(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "labelers-a"
    for seed in (0, 1):
        stage1_cell(folder / "results", seed)
    config = yaml.safe_load((ROOT / "config" / "study_labelers.yaml").read_text())
    config["train"]["stage2_steps"] = 3
    config["hdl"]["refresh_every"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # run_all moves into the setting's folder
    setting = Setting("a", str(folder), tmp_path / "config.yaml", study="labelers")

    # the workflow's baseline and hdl variant, made here by the same stage-2 runs the workflow makes
    stand_ins = tmp_path / "stand-ins"
    monkeypatch.setattr(setting, "study_runs", stand_ins)
    run_all(setting, {"baseline": (None, 0), "hdl": (setting.hdl, 2)}, 2)
    for cell_dir in stand_ins.glob("*/*/*/*/seed~*"):
        workflow_cell = folder / "results" / "runs" / cell_dir.relative_to(stand_ins) / "round~1"
        for variant in ("baseline", "hdl"):
            (workflow_cell / f"variant~{variant}").mkdir(parents=True)
            shutil.copy(cell_dir / variant / "stage2" / "metrics.json", workflow_cell / f"variant~{variant}" / "metrics.json")
        shutil.copy(cell_dir / "hdl" / "relabel.json", workflow_cell / "relabel.json")
        shutil.copy(cell_dir / "hdl" / "extra_labels.npz", workflow_cell / "extra_labels.npz")
    monkeypatch.setattr(setting, "study_runs", folder / "results" / "labelers")

    assert study_labelers.report([setting], 2, figure=tmp_path / "gain.png", cells=tmp_path / "cells.csv") == 0
    printed = capsys.readouterr().out
    for name in variants_of("a"):
        assert f"| a | fixmatch | {name} | 2 |" in printed and f"| a | {name} | 2 |" in printed, name
    assert "| a | fixmatch | argmax | 2 |" in printed.split("HDL − each other labeler")[1]
    assert "Share of the ceiling's (oracle's) mean gain" in printed and "decision: " in printed
    runs = pd.read_csv(tmp_path / "cells.csv")
    assert len(runs) == 2 * 6 and set(runs["variant"]) == {"baseline", *variants_of("a")}
    cell = next((folder / "results" / "labelers").glob("*/*/*/*/seed~0"))
    lp = json.loads((cell / "label_propagation" / "relabel.json").read_text())["selection"]
    assert lp["labeler"] == "label_propagation"
    refreshed = json.loads((cell / "argmax" / "stage2" / "metrics.json").read_text())
    assert [each["step"] for each in refreshed["refreshes"]] == [2]
    ceiling = json.loads((cell / CEILING / "stage2" / "metrics.json").read_text())
    assert not ceiling.get("refreshes")
    assert runs[runs["variant"] == CEILING]["kept_accuracy"].eq(100).all()
    assert (tmp_path / "gain.png").stat().st_size > 0

    written = {path: path.stat().st_mtime_ns for path in (folder / "results" / "labelers").rglob("metrics.json")}
    assert study_labelers.report([setting], 2) == 0
    assert {path: path.stat().st_mtime_ns for path in written} == written  # every run read back
