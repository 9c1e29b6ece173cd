"""What the curve plots draw, as numbers: training histories on one step axis, seeds' mean curves, bands.

Accuracies and coverages are in percent here, as in the report's tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdl.report.collect import STAGE1_VARIANT

CURVE_POINTS = 60
#: what an accuracy (or coverage) in percent can be
ACCURACY_RANGE = (0.0, 100.0)
#: what a difference of two accuracies in points can be
GAIN_RANGE = (-100.0, 100.0)


def band(mean, spread, bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of mean ± spread, clipped to ``bounds``, what the quantity can be: two seeds
    at 98% and 100% have a std band reaching past 100%, which no accuracy can."""
    mean, spread = np.asarray(mean, dtype=float), np.asarray(spread, dtype=float)
    return np.clip(mean - spread, *bounds), np.clip(mean + spread, *bounds)


def histories_on_one_axis(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's history as rows (seed, variant, step, top1 in %), stage 2 placed after stage 1.

    A run that restarted its step counter at 0 (its first step is not beyond the end of the
    run it continued from) is shifted by that end, so round r follows round r-1 on the axis.
    """
    rows = []
    for seed, seed_runs in runs.groupby("seed"):
        stage1 = seed_runs[seed_runs["variant"] == STAGE1_VARIANT]
        stage1_end = history_end(stage1.iloc[0].record) if not stage1.empty else 0
        for variant in dict.fromkeys(seed_runs["variant"]):
            end = 0 if variant == STAGE1_VARIANT else stage1_end
            for run in seed_runs[seed_runs["variant"] == variant].sort_values("round").itertuples(index=False):
                history = run.record.get("history", [])
                offset = end if history and history[0]["step"] <= end else 0
                for entry in history:
                    rows.append({"seed": seed, "variant": variant, "step": entry["step"] + offset,
                                 "top1": 100.0 * entry["top1"]})
                end = history_end(run.record) + offset
    return pd.DataFrame(rows, columns=["seed", "variant", "step", "top1"])


def history_end(record: dict) -> int:
    history = record.get("history", [])
    return int(history[-1]["step"]) if history else int(record.get("steps", 0))


def mean_selection(records) -> tuple[float, float] | None:
    """Mean (coverage, true accuracy) in percent of the stage-2 selections the records hold; None without any."""
    points = [(selection["coverage"], selection["accuracy"]) for selection in (r.get("selection") for r in records)
              if selection and selection.get("coverage") is not None and selection.get("accuracy") is not None]
    return tuple(100.0 * np.mean(points, axis=0)) if points else None


def mean_curve(curves: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Seeds' accuracy-vs-coverage curves interpolated onto their common coverage range, in percent.

    Points without an accuracy (the labeler selected nothing, e.g. a confidence threshold
    no sample passes) are dropped; None when no point is left.
    """
    points = [sorted((p["coverage"], p["accuracy"]) for p in curve if p["accuracy"] is not None) for curve in curves]
    points = [curve for curve in points if curve]
    if not points:
        return None
    low, high = max(p[0][0] for p in points), min(p[-1][0] for p in points)
    grid = np.linspace(low, high, CURVE_POINTS) if high > low else np.array([high])
    stacked = np.array([np.interp(grid, *zip(*curve)) for curve in points])
    std = stacked.std(axis=0, ddof=1) if len(stacked) > 1 else np.zeros_like(grid)
    return 100.0 * grid, 100.0 * stacked.mean(axis=0), 100.0 * std
