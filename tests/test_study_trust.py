"""studies/study_trust.py: the pre-registered rules (T, the refresh, the decision) on tables whose answer is
known, and the tuning and the report end to end on a tiny workflow-shaped tree of long-tailed digits cells."""

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
import study_trust  # noqa: E402
from study_trust import choose_refresh, choose_temperature, decide, gains_against, refresh_name  # noqa: E402
from test_tune_selection import stage1_cell  # noqa: E402


def gain_table(overall: dict, tail: dict) -> pd.DataFrame:
    """Cells as rows; under "overall" and "tail", a column per candidate of its gains over the baseline."""
    return pd.concat({"overall": pd.DataFrame(overall), "tail": pd.DataFrame(tail)}, axis=1)


def test_choose_temperature_takes_the_higher_mean_gain():
    gains = gain_table({0.3: [1.0, 0.6], 1.5: [0.2, 0.4]}, {0.3: [-5.0, -5.0], 1.5: [9.0, 9.0]})
    assert choose_temperature(gains, "a") == 0.3  # the tail only decides a near tie
    gains = gain_table({0.3: [-1.0, -0.6], 1.5: [-0.2, -0.4]}, {0.3: [0.0, 0.0], 1.5: [0.0, 0.0]})
    assert choose_temperature(gains, "b") == 1.5  # the least loss is the higher mean
    gains = gain_table({0.3: [3.0, 0.0, 0.0], 1.5: [0.5, 0.5, 0.5]}, {0.3: [0.0] * 3, 1.5: [0.0] * 3})
    assert choose_temperature(gains, "a") == 0.3  # the mean, not the median


def test_choose_temperature_goes_to_the_tail_gain_within_a_tenth_of_a_point():
    gains = gain_table({0.3: [1.0, 1.1], 1.5: [1.0, 1.02]}, {0.3: [0.0, 0.5], 1.5: [2.0, 2.0]})
    assert choose_temperature(gains, "b") == 1.5  # overall 1.05 and 1.01: near; tail 0.25 against 2.0
    gains = gain_table({0.3: [1.0, 1.1], 1.5: [0.8, 0.9]}, {0.3: [0.0, 0.5], 1.5: [2.0, 2.0]})
    assert choose_temperature(gains, "b") == 0.3  # 0.2 points apart: the tail is not asked


def test_choose_temperature_falls_back_to_dasos_own_choice_on_a_tie_in_both():
    gains = gain_table({0.3: [0.5, 0.5], 1.5: [0.52, 0.5]}, {0.3: [1.0, 1.0], 1.5: [1.05, 1.0]})
    assert choose_temperature(gains, "a") == 1.5
    assert choose_temperature(gains, "b") == 0.3


NAMES = [refresh_name(trust, every) for trust in ("distribution_aware", "entropy_balanced") for every in (100, 250)]


def refresh_gains(overall: list[float], tail: list[float]) -> pd.DataFrame:
    """Two cells; each candidate's gain the same in both (``overall`` and ``tail`` in NAMES' order)."""
    return gain_table({name: [gain] * 2 for name, gain in zip(NAMES, overall)}, {name: [gain] * 2 for name, gain in zip(NAMES, tail)})


def test_choose_refresh_takes_the_highest_mean_gain_then_the_tail():
    assert choose_refresh(refresh_gains([0.1, 0.2, 0.9, 0.3], [5.0, 5.0, 0.0, 5.0])) == ("entropy_balanced", 100)
    assert choose_refresh(refresh_gains([0.9, 0.2, 0.85, 0.3], [0.0, 5.0, 1.0, 5.0])) == ("entropy_balanced", 100)


def test_choose_refresh_falls_back_to_distribution_aware_every_250_steps_on_a_tie():
    assert choose_refresh(refresh_gains([0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0])) == ("distribution_aware", 250)
    # without the fallback among the near ties, the first of them in candidate order
    assert choose_refresh(refresh_gains([0.5, 0.1, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0])) == ("distribution_aware", 100)


def cells(setting: str, method: str, gains: list[float]) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples([(setting, method, seed) for seed in range(len(gains))], names=["setting", "method", "seed"])
    return pd.DataFrame({"variant": gains}, index=index)


def decision_table(groups: dict[tuple[str, str], list[float]], other: float = 0.0) -> pd.DataFrame:
    """Gains of "variant" per (setting, method) group, and of "other" a constant ``other`` everywhere."""
    overall = pd.concat([cells(setting, method, gains) for (setting, method), gains in groups.items()])
    overall["other"] = other + np.linspace(-0.01, 0.01, len(overall))
    return pd.concat({"overall": overall, "tail": overall}, axis=1)


STEADY_GAIN = [0.9, 1.1, 1.0, 0.8, 1.2]


def test_decide_takes_a_variant_whose_pooled_interval_lies_above_0():
    groups = {(s, m): STEADY_GAIN for s in "ab" for m in ("fixmatch", "mixmatch")}
    assert decide(decision_table(groups), ["variant", "other"]) == "variant"
    assert decide(decision_table(groups, other=2.0), ["variant", "other"]) == "other"  # the higher pooled mean


def test_decide_refuses_a_variant_with_one_group_below_0_though_the_pool_lies_above():
    groups = {(s, m): STEADY_GAIN for s in "ab" for m in ("fixmatch", "mixmatch")}
    groups["b", "mixmatch"] = [-0.9, -1.1, -1.0, -0.8, -1.2]
    table = decision_table(groups)
    assert study_trust.paired_t_interval(table["overall"]["variant"])[0] > 0
    assert decide(table, ["variant", "other"]) is None


def test_decide_refuses_a_pooled_interval_that_contains_0():
    groups = {(s, m): [3.0, -2.0, 1.0, -1.5, 0.5] for s in "ab" for m in ("fixmatch", "mixmatch")}
    assert decide(decision_table(groups), ["variant"]) is None


def test_gains_against_pairs_each_variant_with_its_own_cells_baseline_or_another_variant():
    rows = [{"setting": "a", "dataset": "d", "labels": 1, "imbalance": 1, "method": "m", "seed": seed, "variant": variant,
             "accuracy": accuracy, "tail_accuracy": tail}
            for seed, variant, accuracy, tail in [(0, "baseline", 50.0, 10.0), (0, "x", 52.0, 16.0),
                                                  (1, "x", 60.0, 20.0), (1, "baseline", 61.0, 21.0)]]
    gains = gains_against(pd.DataFrame(rows), ["x"])
    assert gains["overall"]["x"].tolist() == [2.0, -1.0] and gains["tail"]["x"].tolist() == [6.0, -1.0]
    against_x = gains_against(pd.DataFrame(rows), ["baseline"], reference="x")
    assert against_x["overall"]["baseline"].tolist() == [-2.0, 1.0] and against_x["tail"]["baseline"].tolist() == [-6.0, 1.0]


SELECTION = {"n_selected": 6, "coverage": 0.25, "accuracy": 0.5, "argmax_accuracy": 0.0, "per_class": [3, 0, 1, 2],
             "per_class_accuracy": [1.0, None, 0.0, 0.0], "per_class_disputed": [0, 0, 1, 2]}


def test_kept_labels_reads_counts_and_accuracies_and_keeps_a_zero_accuracy_apart_from_no_labels():
    kept = study_trust.kept_labels(SELECTION, np.array([1, 2, 3]))
    assert (kept["kept"], kept["coverage"], kept["kept_accuracy"], kept["argmax_accuracy"], kept["disputed"]) == (6, 25.0, 50.0, 0.0, 3)
    assert (kept["tail_kept"], kept["tail_kept_accuracy"]) == (3, 0.0)
    assert kept["per_class_kept"] == [3, 0, 1, 2]
    assert kept["per_class_kept_accuracy"][0] == 100.0 and np.isnan(kept["per_class_kept_accuracy"][1])


def test_outcome_counts_each_refreshs_labels_in_the_tail_classes():
    metrics = {study_trust.METRIC: 0.5, "per_class": [0.9, 0.1, 0.2, 0.3],
               "refreshes": [{"step": 5, "per_class": [10, 1, 2, 3]}, {"step": 10, "per_class": [7, 0, 4, 0]}]}
    row = study_trust.outcome({"variant": "refresh", "tail": np.array([2, 3])}, metrics)
    assert [each["tail_kept"] for each in row["refreshes"]] == [5, 4] and "tail" not in row
    assert row["accuracy"] == 50.0 and row["tail_accuracy"] == pytest.approx(25.0)


def refresh_metrics_of(cell: Path) -> dict:
    return json.loads((cell / "refresh" / "stage2" / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.ci
def test_the_tuning_and_the_report_run_every_variant_write_the_choice_and_read_finished_runs_back(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "trust-a"
    for seed in (100, 101):
        stage1_cell(folder / "results", seed)
    config = yaml.safe_load((ROOT / "config" / "study_trust.yaml").read_text())
    config["train"]["stage2_steps"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    tuned = tmp_path / "tuned.yaml"
    shutil.copy(ROOT / "config" / "study_trust" / "tuned.yaml", tuned)
    # refreshes every 1 or 2 of the 3 stage-2 steps, so that they happen
    monkeypatch.setattr(study_trust, "REFRESHES", {refresh_name(t, e): (t, e) for t in study_trust.TRUSTS for e in (1, 2)})
    monkeypatch.chdir(tmp_path)  # run_all moves into the setting's folder

    setting = study_trust.Setting("a", str(folder), tmp_path / "config.yaml")
    assert study_trust.tune([setting], 2, tuned) == 0
    tuning = capsys.readouterr().out
    for name in ["distribution_aware T=0.3", "distribution_aware T=1.5", "entropy_balanced", *study_trust.REFRESHES]:
        assert f"| {name} | 2 |" in tuning, name
    choice = yaml.safe_load(tuned.read_text())
    assert choice["temperature"]["a"] in (0.3, 1.5) and choice["temperature"]["b"] is None
    assert (choice["refresh_trust"], choice["refresh_every"]) in study_trust.REFRESHES.values()
    assert tuned.read_text().startswith("# The trust study's tuned values")

    trust = folder / "results" / "trust"
    cell = next(trust.glob("*/*/*/*/seed~100"))
    refreshed = json.loads((cell / refresh_name("entropy_balanced", 1) / "stage2" / "metrics.json").read_text())
    assert [each["step"] for each in refreshed["refreshes"]] == [1, 2]
    disputed = json.loads((cell / "distribution_aware T=0.3" / "relabel.json").read_text())["selection"]
    assert disputed["confidence"] == "distribution_aware" and disputed["temperature"] == 0.3

    # the workflow's own baseline and hdl variant stand in here for the reported seeds' workflow runs
    for cell_dir in trust.glob("*/*/*/*/seed~*"):
        workflow_cell = folder / "results" / "runs" / cell_dir.relative_to(trust) / "round~1"
        for variant, source in (("baseline", "baseline"), ("hdl", "entropy_balanced")):
            (workflow_cell / f"variant~{variant}").mkdir(parents=True)
            shutil.copy(cell_dir / source / "stage2" / "metrics.json", workflow_cell / f"variant~{variant}" / "metrics.json")
        shutil.copy(cell_dir / "entropy_balanced" / "relabel.json", workflow_cell / "relabel.json")
    written = {path: path.stat().st_mtime_ns for path in trust.rglob("metrics.json")}
    assert study_trust.report([setting], 2, tuned, figures=tmp_path / "figures", cells=tmp_path / "cells.csv") == 0
    report = capsys.readouterr().out
    for name in ("defaults", "distribution_aware", "entropy_balanced", "refresh"):
        assert f"| a | fixmatch | {name} | 2 |" in report and f"| {name} | 2 |" in report, name
    assert f"refresh − {choice['refresh_trust']} (not part of the decision)" in report
    runs = pd.read_csv(tmp_path / "cells.csv")
    assert len(runs) == 2 * 5 and set(runs["variant"]) == {"baseline", "defaults", "distribution_aware", "entropy_balanced", "refresh"}
    refreshed_run = runs[(runs["variant"] == "refresh") & (runs["seed"] == 100)].iloc[0]
    assert refreshed_run["accuracy"] == pytest.approx(100 * refresh_metrics_of(cell)[study_trust.METRIC])
    accuracies = report.split("sample std over seeds\n")[1].split("Labels stage 2")[0]
    assert accuracies.count(" ± ") == 2 * 5
    assert "decision: " in report
    kept = report.split("Labels stage 2 started with")[1].split("Per class")[0]
    assert "argmax_accuracy" in kept and "defaults" in kept and "baseline" not in kept  # the workflow's labels too
    assert report.count("Per class, mean over seeds") == 2 and "tail_kept" in report.split("Refreshes")[1]
    assert (tmp_path / "figures" / "study_trust_refresh_a.png").stat().st_size > 0
    refresh = refresh_metrics_of(cell)
    assert [each["step"] for each in refresh["refreshes"]] == list(range(choice["refresh_every"], 3, choice["refresh_every"]))
    # the report ran only its three variants: every tuning run was read back
    assert {path: path.stat().st_mtime_ns for path in written} == written
