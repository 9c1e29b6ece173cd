"""Which confidence ranks HDL's labels best?  Accuracy of HDL's labels at fixed coverages, and the area
under the accuracy-coverage curve, under each confidence the stage-2 selection offers, beside the
model's argmax, from a workflow's relabel.json files or from `hdl embed` outputs.

    .venv/bin/python studies/compare_confidences.py --runs results/runs [--coverages 0.1 0.3 0.5]
    .venv/bin/python studies/compare_confidences.py --embeddings results/runs/.../embed.npz ... [-- --k 10]

``--runs`` reads every relabel.json below the folder; ``--embeddings`` runs `hdl relabel` (its defaults,
plus any flags after ``--``) on each embed.npz into a temporary folder and reads the report it writes.
The labelers are HDL ordered by each confidence (relabel.json's ``selection.confidence_curves``:
consistency, agreement, rank, knn_margin and, with the model's probabilities, argmax_agreement) and
the argmax ordered by its max probability (``coverage_curve.argmax``).  Prints a Markdown table: per
setting and method, the mean over seeds (and rounds) of the accuracy of the top c fraction of the
unlabeled samples, and ``area``, the mean accuracy over the curve's coverages (10% to 100% in steps
of 10%, trapezoids, i.e. the area under the accuracy-coverage curve divided by its width); then the
same averaged over settings and methods, best area first.  Needs relabel reports written with the
true labels (`hdl embed` writes them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hdl.cli import main as hdl_main

CELL_KEYS = ("dataset", "labels", "imbalance", "method", "seed", "round")
SETTING_COLUMNS = ["dataset", "labels", "imbalance", "method"]


def cell_of(path: Path) -> dict[str, str]:
    cell = {key: value for key, _, value in (part.partition("~") for part in path.parts) if key in CELL_KEYS}
    return {key: cell.get(key, "?") for key in CELL_KEYS} | {"source": str(path)}


def curves(report: dict) -> dict[str, list[dict]]:
    found = {f"hdl ({kind})": curve for kind, curve in report.get("selection", {}).get("confidence_curves", {}).items()}
    if "argmax" in report.get("coverage_curve", {}):
        found["argmax"] = report["coverage_curve"]["argmax"]
    return found


def area(curve: list[dict]) -> float | None:
    """Mean accuracy over the curve's coverage range (trapezoids); None with fewer than two points."""
    points = sorted((point["coverage"], point["accuracy"]) for point in curve if point["accuracy"] is not None)
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    coverage, accuracy = np.array(points).T
    return float(np.trapezoid(accuracy, coverage) / (coverage[-1] - coverage[0]))


def rows_of(path: Path, report: dict, coverages: list[float]) -> list[dict]:
    rows = []
    for labeler, curve in curves(report).items():
        by_coverage = {round(point["coverage"], 1): point["accuracy"] for point in curve}
        values = {f"top {coverage:.0%}": by_coverage.get(round(coverage, 1)) for coverage in coverages}
        values["area"] = area(curve)
        rows.append(cell_of(path) | {"labeler": labeler} | {key: None if v is None else 100 * v for key, v in values.items()})
    return rows


def reports_from_embeddings(paths: list[Path], relabel_flags: list[str], folder: Path) -> list[tuple[Path, dict]]:
    reports = []
    for number, path in enumerate(paths):
        report_path = folder / f"relabel-{number}.json"
        code = hdl_main(["relabel", "--embeddings", str(path), "--out", str(folder / f"relabel-{number}.npz"),
                         "--report", str(report_path), *relabel_flags])
        if code != 0:
            raise SystemExit(f"hdl relabel failed on {path} (exit {code})")
        reports.append((path, json.loads(report_path.read_text())))
    return reports


def print_table(frame: pd.DataFrame, index: list[str], title: str) -> None:
    value_columns = [column for column in frame.columns if column.startswith("top ")] + ["area"]
    table = frame.groupby(index, sort=False)[value_columns].mean()
    print(f"\n{title}\n")
    print("| " + " | ".join(index + value_columns) + " |")
    print("| " + " | ".join("---" for _ in index + value_columns) + " |")
    for key, values in table.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        cells = ["—" if pd.isna(value) else f"{value:.1f}" for value in values]
        print("| " + " | ".join(map(str, key)) + " | " + " | ".join(cells) + " |")


def main() -> int:
    argv = sys.argv[1:]
    relabel_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--runs", default="results/runs", help="folder searched for relabel.json (default: %(default)s)")
    source.add_argument("--embeddings", type=Path, nargs="+", help="embed.npz files to run `hdl relabel` on")
    parser.add_argument("--coverages", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    with tempfile.TemporaryDirectory() as folder:
        if args.embeddings:
            reports = reports_from_embeddings(args.embeddings, relabel_flags, Path(folder))
        else:
            reports = [(path, json.loads(path.read_text())) for path in sorted(Path(args.runs).rglob("relabel.json"))]
    rows = [row for path, report in reports for row in rows_of(path, report, args.coverages)]
    if not rows:
        print(f"no relabel report with confidence curves in {args.embeddings or args.runs}", file=sys.stderr)
        return 2
    frame = pd.DataFrame(rows)
    seeds = frame.groupby(SETTING_COLUMNS)["source"].nunique()
    frame["setting"] = [f"{d} {n} labels, IF {i}, {m} (n={seeds[(d, n, i, m)]})"
                        for d, n, i, m in frame[SETTING_COLUMNS].itertuples(index=False)]
    print_table(frame, ["setting", "labeler"], "Per setting and method: mean over its relabel reports (n)")
    overall = frame.groupby(["setting", "labeler"], sort=False).mean(numeric_only=True).reset_index()
    overall = overall.groupby("labeler").mean(numeric_only=True).sort_values("area", ascending=False).reset_index()
    print_table(overall, ["labeler"], f"Mean over the {frame['setting'].nunique()} settings and methods, best area first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
