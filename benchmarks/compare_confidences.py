"""Which confidence ranks HDL's labels best?  Accuracy of HDL's labels at fixed coverages under each
confidence the stage-2 selection offers, beside the model's argmax, from a workflow's relabel.json files.

    .venv/bin/python benchmarks/compare_confidences.py --runs results/runs [--coverages 0.1 0.3 0.5]

Prints a Markdown table: per setting and method, the mean over seeds (and rounds) of the accuracy of
the top c fraction of the unlabeled samples, for HDL ordered by ``consistency``, ``agreement`` and
``rank`` (relabel.json's ``selection.confidence_curves``) and for the argmax ordered by its max
probability (``coverage_curve.argmax``).  Needs relabel reports written with the true labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

CELL_KEYS = ("dataset", "labels", "imbalance", "method", "seed")


def cell_of(path: Path) -> dict[str, str]:
    return {key: value for key, _, value in (part.partition("~") for part in path.parts) if key in CELL_KEYS}


def curves(report: dict) -> dict[str, list[dict]]:
    found = {f"hdl ({kind})": curve for kind, curve in report.get("selection", {}).get("confidence_curves", {}).items()}
    if "argmax" in report.get("coverage_curve", {}):
        found["argmax"] = report["coverage_curve"]["argmax"]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/runs")
    parser.add_argument("--coverages", type=float, nargs="+", default=[0.1, 0.3, 0.5, 1.0])
    args = parser.parse_args()
    rows = []
    for path in sorted(Path(args.runs).rglob("relabel.json")):
        report = json.loads(path.read_text())
        for labeler, curve in curves(report).items():
            by_coverage = {round(point["coverage"], 1): point["accuracy"] for point in curve}
            for coverage in args.coverages:
                accuracy = by_coverage.get(round(coverage, 1))
                if accuracy is not None:
                    rows.append(cell_of(path) | {"labeler": labeler, "coverage": coverage, "accuracy": 100 * accuracy})
    if not rows:
        print(f"no relabel.json with confidence curves under {args.runs}", file=sys.stderr)
        return 2
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["dataset", "labels", "imbalance", "method", "labeler"], columns="coverage",
                              values="accuracy", aggfunc="mean")
    seeds = frame.groupby(["dataset", "labels", "imbalance", "method"])["seed"].nunique()
    print("| setting | method | labeler | " + " | ".join(f"top {c:.0%}" for c in table.columns) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in table.columns) + " |")
    for (dataset, labels, imbalance, method, labeler), values in table.iterrows():
        n = seeds[(dataset, labels, imbalance, method)]
        cells = " | ".join(f"{value:.1f}" for value in values)
        print(f"| {dataset} {labels} labels, IF {imbalance} | {method} (n={n}) | {labeler} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
