"""Pre-registered tuning of the stage-2 selection on the tuning seeds: which confidence ranks HDL's
labels best, and which class quota gives stage 2 the most (docs/results.md, "Pre-registered: HDL on
long-tailed Fashion-MNIST").

    snakemake --snakefile workflow/Snakefile --configfile config/study_lt_tuning.yaml --cores 2 --until embed
    python studies/tune_selection.py --config config/study_lt_tuning.yaml --runs results/runs --out results/tuning

For every cell under ``--runs`` with a finished stage 1 and ``round~1/embed.npz``, with the config's
``hdl`` settings for everything but the confidence and the quota:

(a) `hdl relabel` once; its report's accuracy-coverage curve of HDL's labels under each confidence
    (``--confidences``) gives the accuracy at ``--coverages`` and the area (compare_confidences.py),
    per cell and as the mean over cells.
(b) With the confidence of (a)'s rule, `hdl relabel` under each quota (``--quotas``; crest with the
    config's ``crest_alpha``) writes stage-2 labels; stage 2 continues the stage-1 checkpoint with
    them for ``train.stage2_steps`` steps, and once without them (the paired baseline). Per quota:
    HDL − baseline test accuracy over the cells with its 95% paired-t interval, the same for the
    tail classes' mean test accuracy, and the selected labels' count and accuracy in the tail classes
    (the third with the fewest given labels, ``hdl.labeling.evaluate.head_and_tail``).
(c) The rules, fixed before any tuning run:
    confidence: the highest mean area over the cells (ties: the earlier in ``--confidences``);
    quota: ``--quotas``' first (``labeled``, the simplest) unless another quota's paired difference
    from it, HDL_q − HDL_first over the cells, has a 95% paired-t interval above 0; of those, the one
    with the highest mean HDL − baseline (ties: the earlier in ``--quotas``).

Writes OUT/<cell>/... (reports, labels, runs) and OUT/choice.json; reruns resume (finished relabels
and runs are read back). Stage-2 runs use whichever ``hdl`` the interpreter imports (stage2_runs.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from compare_confidences import print_table, rows_of
from hdl import workflow
from hdl.cli import main as hdl_main
from hdl.labeling.evaluate import head_and_tail
from hdl.report.stats import paired_t_interval
from stage2_runs import cell_of, run, stage1_runs, stage2_command

CONFIDENCES = ["consistency", "knn_margin", "argmax_agreement"]
QUOTAS = ["labeled", "uniform", "crest"]
BASELINE = "baseline"


def hdl_settings(config_path: str) -> dict:
    """The config's ``hdl`` block over the schema's defaults."""
    schema = workflow.load_yaml(workflow.SCHEMA_PATH)["properties"]["hdl"]["properties"]
    defaults = {key: spec["default"] for key, spec in schema.items() if "default" in spec}
    return defaults | (workflow.load_yaml(config_path).get("hdl") or {})


def relabel(embed: Path, folder: Path, hdl: dict, seed: int) -> dict:
    """relabel.json of `hdl relabel` on ``embed`` with ``hdl``'s settings into ``folder`` (read back if there)."""
    report = folder / "relabel.json"
    if not (report.exists() and (folder / "extra_labels.npz").exists()):
        folder.mkdir(parents=True, exist_ok=True)
        flags = shlex.split(workflow.relabel_flags({"hdl": hdl}))
        code = hdl_main(["relabel", "--embeddings", str(embed), "--out", str(folder / "relabel.npz"), "--report", str(report),
                         "--extra-labels-out", str(folder / "extra_labels.npz"), *flags, "--seed", str(seed), "--threads", "1"])
        if code != 0:
            raise SystemExit(f"hdl relabel failed on {embed} (exit {code})")
    return json.loads(report.read_text())


def tail_classes(embed: Path) -> np.ndarray:
    with np.load(embed) as arrays:
        given = arrays["labels"]
        num_classes = arrays["probs"].shape[1]
    return head_and_tail(np.bincount(given[given >= 0], minlength=num_classes)).get("tail", np.array([], dtype=int))


def tail_of_selection(selection: dict, tail: np.ndarray) -> dict:
    """Labels the selection kept in the tail classes and their accuracy (%; NaN if none)."""
    counts = np.array(selection["per_class"], dtype=float)[tail]
    accuracies = np.array([np.nan if value is None else value for value in selection["per_class_accuracy"]], dtype=float)[tail]
    kept = counts.sum()
    return {"tail_kept": kept, "tail_kept_accuracy": 100 * np.nansum(accuracies * counts) / kept if kept else np.nan}


def tail_test_accuracy(metrics: dict, tail: np.ndarray) -> float:
    return 100 * float(np.mean(np.array(metrics["per_class"])[tail])) if len(tail) else np.nan


def choose_confidence(areas: pd.Series, candidates: list[str]) -> str:
    """The candidate with the highest mean area; ties to the earlier candidate. One without an area
    (absent, or NaN: no cell's curve had two points) is never chosen over one with."""
    scores = areas.reindex([f"hdl ({kind})" for kind in candidates]).fillna(-np.inf)
    return candidates[int(np.argmax(scores.to_numpy()))]  # argmax: the first of equal maxima


def choose_quota(wide: pd.DataFrame, quotas: list[str]) -> tuple[str, dict]:
    """(quota, {quota: (low, high) of HDL_q − HDL_first}) by the rule in the module docstring; ``wide``
    holds per cell (rows) each quota's HDL − baseline accuracy (columns)."""
    reference = quotas[0]
    intervals = {quota: paired_t_interval(wide[quota] - wide[reference])[:2] for quota in quotas[1:]}
    better = [quota for quota in quotas[1:] if intervals[quota][0] > 0]
    if not better:
        return reference, intervals
    return max(better, key=lambda quota: (wide[quota].mean(), -quotas.index(quota))), intervals


def interval_text(values: pd.Series) -> str:
    low, high, _ = paired_t_interval(values)
    return f"{values.mean():+.2f} [{low:+.2f}, {high:+.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the tuning's config (config/study_lt_tuning.yaml)")
    parser.add_argument("--runs", default="results/runs", help="results/runs of the tuning workflow")
    parser.add_argument("--out", default="results/tuning", help="where relabels and stage-2 runs go")
    parser.add_argument("--cells", nargs="+", default=["*"], help="only cells whose path under --runs matches one of these globs")
    parser.add_argument("--steps", type=int, help="stage-2 steps (default: the config's train.stage2_steps)")
    parser.add_argument("--confidences", nargs="+", default=CONFIDENCES)
    parser.add_argument("--quotas", nargs="+", default=QUOTAS, help="class quotas; the first is the one kept unless another is better")
    parser.add_argument("--coverages", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--jobs", type=int, default=2, help="stage-2 runs at a time (one CPU thread each)")
    parser.add_argument("--metric", default="median_last20_top1")
    args = parser.parse_args()
    hdl = hdl_settings(args.config)
    steps = args.steps or workflow.load_yaml(args.config)["train"]["stage2_steps"]
    out = Path(args.out)

    cells = [(cell, cell_dir, stage1) for cell, cell_dir, stage1 in stage1_runs(args.runs, args.cells)
             if (cell_dir / "round~1" / "embed.npz").exists()]
    if not cells:
        print(f"no cell under {args.runs} with stage1/metrics.json and round~1/embed.npz", file=sys.stderr)
        return 2

    # (a) confidences
    rows = []
    for cell, cell_dir, stage1 in cells:
        report_folder = out / cell / "confidences"
        report = relabel(cell_dir / "round~1" / "embed.npz", report_folder, hdl, stage1["seed"])
        rows += rows_of(report_folder / "relabel.json", report, args.coverages)
    frame = pd.DataFrame(rows)
    labelers = [f"hdl ({kind})" for kind in args.confidences] + ["argmax"]
    frame = frame[frame["labeler"].isin(labelers)]
    print_table(frame, ["imbalance", "method", "seed", "labeler"], "(a) Accuracy (%) of HDL's labels ranked by each confidence, per cell")
    overall = frame.groupby("labeler").mean(numeric_only=True).reindex(labelers)
    print_table(overall.reset_index(), ["labeler"], f"(a) Mean over the {len(cells)} cells")
    confidence = choose_confidence(overall["area"], args.confidences)

    # (b) quotas with the chosen confidence, and the paired baseline
    jobs = []
    for cell, cell_dir, stage1 in cells:
        embed, checkpoint = cell_dir / "round~1" / "embed.npz", cell_dir / "stage1" / "checkpoint.pt"
        tail = tail_classes(embed)
        jobs.append((cell_of(stage1) | {"quota": BASELINE, "tail": tail},
                     stage2_command(stage1, checkpoint, steps, out / cell / BASELINE), out / cell / BASELINE))
        for quota in args.quotas:
            folder = out / cell / f"quota~{quota}" / f"confidence~{confidence}"
            selection = relabel(embed, folder, hdl | {"confidence": confidence, "class_quota": quota}, stage1["seed"])["selection"]
            command = stage2_command(stage1, checkpoint, steps, folder / "stage2", extra_labels=folder / "extra_labels.npz")
            jobs.append((cell_of(stage1) | {"quota": quota, "tail": tail, **tail_of_selection(selection, tail),
                                            "kept": selection["n_selected"], "kept_accuracy": 100 * (selection["accuracy"] or np.nan)},
                         command, folder / "stage2"))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(job[1], job[2]), jobs))
    runs = pd.DataFrame([{key: value for key, value in job[0].items() if key != "tail"}
                         | {"accuracy": 100 * metrics[args.metric], "tail_accuracy": tail_test_accuracy(metrics, job[0]["tail"])}
                         for job, metrics in zip(jobs, results)])
    index = ["dataset", "labels", "imbalance", "method", "seed"]
    accuracy = runs.pivot_table(index=index, columns="quota", values="accuracy")
    tail_accuracy = runs.pivot_table(index=index, columns="quota", values="tail_accuracy")
    gains = accuracy[args.quotas].sub(accuracy[BASELINE], axis=0)
    tail_gains = tail_accuracy[args.quotas].sub(tail_accuracy[BASELINE], axis=0)
    selected = runs[runs["quota"] != BASELINE].groupby("quota")[["kept", "kept_accuracy", "tail_kept", "tail_kept_accuracy"]].mean()
    print(f"\n(b) Stage 2 ({steps} steps, {args.metric}) with HDL labels ranked by {confidence}, per class quota: "
          f"HDL − baseline in points, mean [95% paired-t interval] over the {len(gains)} cells; tail: the tail classes' "
          f"mean test accuracy; kept: labels the selection kept (mean over cells), their accuracy (%)\n")
    print("| quota | HDL − baseline | tail: HDL − baseline | kept | kept accuracy | kept in the tail | their accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for quota in args.quotas:
        row = selected.loc[quota]
        print(f"| {quota} | {interval_text(gains[quota])} | {interval_text(tail_gains[quota].dropna())} | {row.kept:.0f} "
              f"| {row.kept_accuracy:.1f} | {row.tail_kept:.1f} | {row.tail_kept_accuracy:.1f} |")
    print(f"\nbaseline: {accuracy[BASELINE].mean():.2f}, tail {tail_accuracy[BASELINE].mean():.2f}; per cell, HDL − baseline:\n")
    print(gains.round(2).to_string())

    # (c) the pre-registered rules
    quota, intervals = choose_quota(gains, args.quotas)
    print(f"\n(c) confidence: {confidence} (highest mean area, {overall.loc[f'hdl ({confidence})', 'area']:.2f})")
    for other, (low, high) in intervals.items():
        print(f"    {other} − {args.quotas[0]}: {(gains[other] - gains[args.quotas[0]]).mean():+.2f} [{low:+.2f}, {high:+.2f}]")
    print(f"    class_quota: {quota}" + ("" if quota != args.quotas[0] else f" (no other quota's interval against {args.quotas[0]} lies above 0)"))
    choice = {"confidence": confidence, "class_quota": quota, "cells": len(gains), "steps": steps}
    (out / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print(f"\nconfig/study_lt.yaml, hdl block:\n  confidence: {confidence}\n  class_quota: {quota}\nwrote {out / 'choice.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
