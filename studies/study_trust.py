"""The pre-registered trust study (docs/results.md, "Pre-registered: trusting the embeddings where the
classifier over-predicts"): stage-2 variants that let in the HDL labels the classifier disputes,
against the paired baseline, in two settings each run by the workflow in its own folder.

    python studies/study_trust.py tune --setting a=runs/trust-tuning-a --setting b=runs/trust-tuning-b
    python studies/study_trust.py report --setting a=runs/trust-a --setting b=runs/trust-b

``tune`` (after the workflow's ``--until embed`` on the tuning seeds): per cell, stage 2 as the
baseline, with ``distribution_aware`` at each T in ``TEMPERATURES`` and with ``entropy_balanced``;
T per setting by ``choose_temperature``; then the refreshed trusts (each trust at each E in
``REFRESH_EVERY``) and the pair by ``choose_refresh``; the choice goes to config/study_trust/tuned.yaml.
``report`` (after the whole workflow on the reported seeds, whose baseline and hdl variant are the
study's baseline and defaults): the other three variants with the tuned values, and the tables.
Every run goes under SETTING_DIR/results/trust/<cell>/<variant>/; reruns read finished runs back.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hdl import workflow
from hdl.io import atomic_path
from hdl.report.refresh_plot import plot_refreshes
from hdl.report.stats import paired_t_interval
from stage2_runs import CELL_KEYS, cell_of, run, stage1_runs, stage2_command
from tune_selection import hdl_settings, interval_text, relabel, tail_classes, tail_of_selection, tail_test_accuracy

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "study_trust.yaml"
TUNED = ROOT / "config" / "study_trust" / "tuned.yaml"
TEMPERATURES = (0.3, 1.5)
DASO_TEMPERATURE = {"a": 1.5, "b": 0.3}  # DASO's own T: matched (a) and mismatched (b) distributions
REFRESH_EVERY = (100, 250)
TRUSTS = ("distribution_aware", "entropy_balanced")
CLOSE = 0.1  # points: closer means go to the tail gain, then to the pre-registered fallback
METRIC = "median_last20_top1"
WORKFLOW_VARIANTS = {"baseline": "baseline", "defaults": "hdl"}  # study variant -> the workflow's stage-2 folder


def trust_settings(hdl: dict, trust: str, temperature: float | None) -> dict:
    """The ``hdl`` block of a trust: distribution_aware at ``temperature``, or entropy_balanced."""
    if trust == "distribution_aware":
        return hdl | {"confidence": "distribution_aware", "temperature": temperature}
    return hdl | {"selection": "all", "weight": "entropy_balanced"}


def choose_by_gain(gains: pd.DataFrame, candidates: list, fallback) -> tuple:
    """The candidate (a column of ``gains`` and of its tail twin ``gains["tail", c]``) with the highest
    mean overall gain; within ``CLOSE`` points of the best, the highest mean tail gain; within
    ``CLOSE`` again, ``fallback`` if it is among them, else the first of them in ``candidates``."""
    overall = gains["overall"][candidates].mean()
    near = [c for c in candidates if overall[c] >= overall.max() - CLOSE]
    tail = gains["tail"][near].mean()
    nearest = [c for c in near if tail[c] >= tail.max() - CLOSE]
    return fallback if fallback in nearest else nearest[0]


def choose_temperature(gains: pd.DataFrame, setting: str) -> float:
    """Step 1's rule: ``gains`` holds one cell of the setting per row and, under "overall" and "tail",
    a column per T of HDL − baseline (points); DASO's T for the setting on a near tie."""
    return choose_by_gain(gains, list(TEMPERATURES), DASO_TEMPERATURE[setting])


def refresh_name(trust: str, every: int) -> str:
    return f"refresh {trust} E={every}"


REFRESHES = {refresh_name(trust, every): (trust, every) for trust in TRUSTS for every in REFRESH_EVERY}


def choose_refresh(gains: pd.DataFrame) -> tuple[str, int]:
    """Step 2's rule over the ``REFRESHES`` columns; on a near tie E = 250 and distribution_aware."""
    return REFRESHES[choose_by_gain(gains, list(REFRESHES), refresh_name("distribution_aware", 250))]


class Setting:
    """One setting's workflow folder: its cells' stage-1 runs and embeddings, and the study's stage-2 runs."""

    def __init__(self, name: str, folder: str, config: Path = CONFIG, study: str = "trust"):
        self.name, self.folder = name, Path(folder).resolve()
        self.study_runs = self.folder / "results" / study  # the study's own stage-2 runs, beside the workflow's
        self.hdl = hdl_settings(str(config))
        self.steps = workflow.load_yaml(config)["train"]["stage2_steps"]
        runs = self.folder / "results" / "runs"
        self.cells = [(cell, cell_dir, stage1) for cell, cell_dir, stage1 in stage1_runs(runs, ["*"])
                      if (cell_dir / "round~1" / "embed.npz").exists()]
        if not self.cells:
            raise SystemExit(f"{runs}: no cell with stage1/metrics.json and round~1/embed.npz; run the workflow first")

    def jobs(self, variants: dict[str, tuple[dict | None, int]]) -> list[tuple[dict, list[str], Path]]:
        """(row, command, out) per cell and variant; ``variants``: name -> (hdl block or None for no
        labels, refresh every). The relabel of a variant with labels runs here, once."""
        jobs = []
        for cell, cell_dir, stage1 in self.cells:
            embed, checkpoint = cell_dir / "round~1" / "embed.npz", cell_dir / "stage1" / "checkpoint.pt"
            tail = tail_classes(embed)
            for name, (hdl, every) in variants.items():
                folder = self.study_runs / cell / name
                row = cell_of(stage1) | {"setting": self.name, "variant": name, "tail": tail, "folder": str(folder)}
                extra = None
                if hdl is not None:
                    row |= kept_labels(relabel(embed, folder, hdl, stage1["seed"])["selection"], tail)
                    extra = folder / "extra_labels.npz"
                flags = shlex.split(workflow.relabel_flags({"hdl": hdl or self.hdl}))
                flags += ["--refresh-every", str(every)] if every else []
                jobs.append((row, stage2_command(stage1, checkpoint, self.steps, folder / "stage2", extra_labels=extra, flags=flags),
                             folder / "stage2"))
        return jobs

    def workflow_rows(self, variants: dict[str, str] = WORKFLOW_VARIANTS) -> list[dict]:
        """The workflow's own stage-2 runs of every cell as the study's ``variants`` (study variant -> the
        workflow's stage-2 folder; with the labels of the round's relabel.json where it has labels)."""
        rows = []
        for _, cell_dir, stage1 in self.cells:
            round_dir = cell_dir / "round~1"
            tail = tail_classes(round_dir / "embed.npz")
            for name, variant in variants.items():
                row = cell_of(stage1) | {"setting": self.name, "variant": name, "tail": tail}
                if variant != "baseline":
                    row |= kept_labels(json.loads((round_dir / "relabel.json").read_text())["selection"], tail)
                rows.append(outcome(row, json.loads((round_dir / f"variant~{variant}" / "metrics.json").read_text())))
        return rows


def percent(fraction: float | None) -> float:
    return np.nan if fraction is None else 100 * fraction


def kept_labels(selection: dict, tail: np.ndarray) -> dict:
    """What a relabel.json ``selection`` kept for stage 2: count and accuracy (%), overall, in the tail and
    per class; how many of them the classifier disputes; the stage-1 argmax's accuracy at the same coverage."""
    return tail_of_selection(selection, tail) | {
        "kept": selection["n_selected"], "coverage": percent(selection["coverage"]), "kept_accuracy": percent(selection["accuracy"]),
        "argmax_accuracy": percent(selection["argmax_accuracy"]),
        "disputed": sum(selection["per_class_disputed"] or [0]),
        "per_class_kept": selection["per_class"],
        "per_class_kept_accuracy": [percent(value) for value in selection["per_class_accuracy"]]}


def outcome(row: dict, metrics: dict) -> dict:
    """``row`` with the stage-2 run's test accuracy (%), overall and in the tail, and its label refreshes,
    each with the labels it kept in the tail classes."""
    tail = row["tail"]
    refreshes = [each | {"tail_kept": int(np.sum(np.asarray(each["per_class"])[tail]))} for each in metrics.get("refreshes") or []]
    return ({key: value for key, value in row.items() if key != "tail"}
            | {"accuracy": 100 * metrics[METRIC], "tail_accuracy": tail_test_accuracy(metrics, tail), "refreshes": refreshes})


def run_all(setting: Setting, variants: dict, jobs: int) -> list[dict]:
    return run_planned(setting, setting.jobs(variants), jobs)


def run_planned(setting: Setting, planned: list[tuple[dict, list[str], Path]], jobs: int) -> list[dict]:
    """Every (row, command, out) of ``planned`` run, ``jobs`` at a time (finished runs read back), as outcome rows."""
    os.chdir(setting.folder)  # the stage-1 runs recorded their split relative to the workflow's folder
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda job: run(job[1], job[2]), planned))
    return [outcome(row, metrics) for (row, _, _), metrics in zip(planned, results)]


def gains_against(frame: pd.DataFrame, variants: list, reference: str = "baseline") -> pd.DataFrame:
    """Per cell (rows) and variant, variant − ``reference`` (a variant of the same cells), under "overall" and "tail"."""
    index = ["setting", "dataset", "labels", "imbalance", "method", "seed"]
    parts = {}
    for column, name in (("accuracy", "overall"), ("tail_accuracy", "tail")):
        wide = frame.pivot_table(index=index, columns="variant", values=column, aggfunc="first")
        parts[name] = wide[variants].sub(wide[reference], axis=0)
    return pd.concat(parts, axis=1)


def print_accuracies(frame: pd.DataFrame) -> None:
    by_variant = frame.groupby(["setting", "method", "variant"], sort=False)
    table = pd.concat({column: by_variant[column].agg(lambda values: f"{values.mean():.2f} ± {values.std():.2f}")
                       for column in ("accuracy", "tail_accuracy")}, axis=1)
    print("\nTest accuracy (%), overall and in the tail classes, mean ± sample std over seeds\n")
    print(table.to_string())


def print_gains(gains: pd.DataFrame, variants: list, by: list[str], title: str, reference: str = "baseline") -> None:
    print(f"\n{title}\n\n| {' | '.join(by)} | variant | n | variant − {reference} | tail: variant − {reference} |")
    print("| " + " | ".join("---" for _ in by + ["", "", "", ""]) + " |")
    for key, group in gains.groupby(level=by, sort=False) if by else [((), gains)]:
        key = key if isinstance(key, tuple) else (key,)
        for variant in variants:
            print(f"| {' | '.join(map(str, key))} | {variant} | {len(group)} | {interval_text(group['overall'][variant])} "
                  f"| {interval_text(group['tail'][variant].dropna())} |")


KEPT_COLUMNS = ["kept", "kept_accuracy", "argmax_accuracy", "tail_kept", "tail_kept_accuracy", "disputed"]


def print_kept(frame: pd.DataFrame) -> None:
    with_labels = frame.dropna(subset=["kept"])
    by_variant = with_labels.groupby(["setting", "method", "variant"], sort=False)
    print("\nLabels stage 2 started with, mean over seeds: kept, their accuracy (%), the stage-1 argmax's accuracy at "
          "the same coverage, kept in the tail, their accuracy, kept where the classifier disputes HDL\n")
    print(by_variant[KEPT_COLUMNS].mean().round(1).to_string())
    for column, what in (("per_class_kept", "kept"), ("per_class_kept_accuracy", "their accuracy (%; NaN where none kept)")):
        table = pd.DataFrame({key: pd.DataFrame(group[column].tolist(), dtype=float).mean() for key, group in by_variant}).T
        print(f"\nPer class, mean over seeds: {what}\n")
        print(table.rename_axis(index=["setting", "method", "variant"], columns="class").round(1).to_string())


def print_refreshes(frame: pd.DataFrame) -> None:
    rows = [{"setting": r["setting"], "method": r["method"], "variant": r["variant"], "step": each["step"],
             "coverage": 100 * each["coverage"], "accuracy": percent(each["accuracy"]), "tail_kept": each["tail_kept"]}
            for r in frame.to_dict("records") for each in r["refreshes"]]
    if rows:
        table = pd.DataFrame(rows).groupby(["setting", "method", "variant", "step"]).mean().round(1)
        print("\nRefreshes, mean over seeds: coverage of the kept labels and their accuracy (%), and the labels kept "
              "in the tail classes, at each refresh\n")
        print(table.to_string())


def tune(settings: list[Setting], jobs: int, tuned_path: Path) -> int:
    temperatures, frames = {}, []
    for setting in settings:
        variants = {"baseline": (None, 0), "entropy_balanced": (trust_settings(setting.hdl, "entropy_balanced", None), 0)}
        variants |= {f"distribution_aware T={t:g}": (trust_settings(setting.hdl, "distribution_aware", t), 0) for t in TEMPERATURES}
        frame = pd.DataFrame(run_all(setting, variants, jobs))
        names = [f"distribution_aware T={t:g}" for t in TEMPERATURES]
        gains = gains_against(frame, names + ["entropy_balanced"])
        print_gains(gains, names + ["entropy_balanced"], ["method"], f"Step 1, setting {setting.name}: stage 2 − baseline (points, mean [95% paired-t interval])")
        by_t = pd.concat({part: gains[part][names].set_axis(list(TEMPERATURES), axis=1) for part in ("overall", "tail")}, axis=1)
        temperatures[setting.name] = choose_temperature(by_t, setting.name)
        print(f"\nsetting {setting.name}: T = {temperatures[setting.name]:g}")
        frames.append(frame)
    refresh_frames = []
    for setting in settings:
        variants = {"baseline": (None, 0)} | {
            name: (trust_settings(setting.hdl, trust, temperatures[setting.name]), every) for name, (trust, every) in REFRESHES.items()}
        refresh_frames.append(pd.DataFrame(run_all(setting, variants, jobs)))
    frame = pd.concat(refresh_frames)
    gains = gains_against(frame, list(REFRESHES))
    print_gains(gains, list(REFRESHES), [], "Step 2, all tuning cells: refreshed stage 2 − baseline")
    trust, every = choose_refresh(gains)
    print_kept(pd.concat(frames + [frame]))
    print_refreshes(frame)
    tuned = {"temperature": {name: temperatures.get(name) for name in ("a", "b")}, "refresh_every": every, "refresh_trust": trust}
    tuned_path.write_text(tuned_path.read_text().split("\ntemperature:")[0] + "\n" + yaml.safe_dump(tuned, sort_keys=False))
    print(f"\nchoice: {json.dumps(tuned)}; wrote {tuned_path}")
    return 0


def report(settings: list[Setting], jobs: int, tuned_path: Path, figures: Path | None = None, cells: Path | None = None) -> int:
    tuned = workflow.load_yaml(tuned_path)
    if None in (tuned["refresh_every"], tuned["refresh_trust"], *(tuned["temperature"][s.name] for s in settings)):
        raise SystemExit(f"{tuned_path} still has null values: run `{Path(__file__).name} tune` first")
    frames = []
    for setting in settings:
        temperature = tuned["temperature"][setting.name]
        variants = {
            "distribution_aware": (trust_settings(setting.hdl, "distribution_aware", temperature), 0),
            "entropy_balanced": (trust_settings(setting.hdl, "entropy_balanced", None), 0),
            "refresh": (trust_settings(setting.hdl, tuned["refresh_trust"], temperature), tuned["refresh_every"]),
        }
        frames.append(pd.DataFrame(setting.workflow_rows() + run_all(setting, variants, jobs)))
    frame = pd.concat(frames)
    variants = ["defaults", "distribution_aware", "entropy_balanced", "refresh"]
    gains = gains_against(frame, variants)
    print_gains(gains, variants, ["setting", "method"], "Variant − baseline per setting and method (points, mean [95% paired-t interval])")
    print_gains(gains, variants, [], "Pooled over every reported cell (the decision's interval)")
    unrefreshed = tuned["refresh_trust"]
    refresh_gains = gains_against(frame, ["refresh"], reference=unrefreshed)
    for by in (["setting", "method"], []):
        print_gains(refresh_gains, ["refresh"], by, f"What the refresh adds: refresh − {unrefreshed} (not part of the decision)",
                    reference=unrefreshed)
    print_accuracies(frame)
    print_kept(frame)
    print_refreshes(frame)
    best = decide(gains, variants[1:])
    print(f"\ndecision: {best or 'no variant gains: the defaults stay'}")
    if figures is not None:
        for setting in settings:
            plot_refresh_runs(frame[(frame["setting"] == setting.name) & (frame["variant"] == "refresh")],
                              figures / f"study_trust_refresh_{setting.name}.png")
    if cells is not None:
        with atomic_path(cells) as tmp:
            frame.drop(columns=["folder", "refreshes", "per_class_kept", "per_class_kept_accuracy"]).to_csv(tmp, index=False)
        print(f"wrote {cells}")
    return 0


def plot_refresh_runs(rows: pd.DataFrame, path: Path) -> None:
    """The workflow's refresh figure (``hdl.report.refresh_plot``) of the study's runs ``rows``."""
    def records(name: str) -> pd.DataFrame:
        return pd.DataFrame([{**{key: row[key] for key in CELL_KEYS}, "round": 1,
                              "record": json.loads((Path(row["folder"]) / name).read_text())} for _, row in rows.iterrows()])
    metrics = records("stage2/metrics.json")
    plot_refreshes(metrics, records("relabel.json"), metrics[list(CELL_KEYS)], path)
    print(f"wrote {path}")


def decide(gains: pd.DataFrame, variants: list[str]) -> str | None:
    """The pre-registered decision: of the ``variants`` whose overall gain pooled over every cell has a 95%
    interval above 0 and none of whose (setting, method) groups has one below 0, the highest pooled mean."""
    groups = gains["overall"].groupby(level=["setting", "method"])
    winners = [variant for variant in variants if paired_t_interval(gains["overall"][variant])[0] > 0
               and all(paired_t_interval(group[variant])[1] >= 0 for _, group in groups)]
    return max(winners, key=lambda variant: gains["overall"][variant].mean()) if winners else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("tune", "report"))
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=FOLDER",
                        help="a setting (a or b) and the folder its workflow ran in (snakemake --directory)")
    parser.add_argument("--jobs", type=int, default=2, help="stage-2 runs at a time (one CPU thread each)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the workflow config of the settings (its hdl block and stage2_steps)")
    parser.add_argument("--tuned", type=Path, default=TUNED, help="the tuned values: tune writes them, report reads them")
    parser.add_argument("--figures", type=Path, help="report: write the refresh variant's figure of each setting here "
                        "(study_trust_refresh_SETTING.png)")
    parser.add_argument("--cells", type=Path, help="report: write every reported run's test accuracy and kept labels here (CSV)")
    args = parser.parse_args()
    settings = [Setting(*assignment.split("=", 1), config=args.config.resolve()) for assignment in args.setting]
    if args.step == "tune":
        return tune(settings, args.jobs, args.tuned.resolve())
    return report(settings, args.jobs, args.tuned.resolve(), args.figures and args.figures.resolve(), args.cells and args.cells.resolve())


if __name__ == "__main__":
    sys.exit(main())
