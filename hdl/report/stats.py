"""Statistics over seeds: the numbers behind every table, with no formatting.

Each ``*_statistics`` function returns a tidy frame (one row per table cell, numbers in
percent, NaN and a count of 0 where no seed finished); ``tables`` turns it into text.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from hdl.errors import UserError
from hdl.report.collect import CELL, SETTING, STAGE1_VARIANT
from hdl.report.display import ARGMAX_AT_SELECTED, LABELER_ORDER, SELECTED
from hdl.report.render import MISSING

METRIC_DESCRIPTIONS = {
    "median_last20_top1": "median top-1 accuracy of the EMA model over the last 20 evaluations",
    "top1": "top-1 accuracy of the final EMA model",
    "best_top1": "best top-1 accuracy over all evaluations (optimistic: selected on the test set)",
    "balanced_acc": "balanced accuracy (mean per-class recall) of the final EMA model",
}
DEFAULT_METRIC = "median_last20_top1"
ACCURACY_ROWS = ("stage1", "baseline", "hdl", "delta")
CONFIDENCE = 0.95
PSEUDO_LABEL_QUANTITIES = ("accuracy", "coverage", "estimated_accuracy")


def as_percent(value: object, path: str, key: str) -> float:
    """A fraction from a run's JSON, in percent; runs store accuracies and coverages as fractions in [0, 1]."""
    if value is None:
        return math.nan
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{path}: {key}={value!r} is not a fraction in [0, 1], as hdl writes accuracies and coverages")
    return 100.0 * value


def last_round(metrics: pd.DataFrame) -> int:
    """The highest round any stage-2 run reached: the round the tables show (0 if none)."""
    stage2 = metrics[metrics["variant"] != STAGE1_VARIANT]
    return int(stage2["round"].max()) if not stage2.empty else 0


def stage1_and_last_round(metrics: pd.DataFrame) -> pd.DataFrame:
    """The runs the tables compare: every stage-1 run, and the last round's baseline and HDL variants."""
    return metrics[(metrics["variant"] == STAGE1_VARIANT)
                   | ((metrics["round"] == last_round(metrics)) & metrics["variant"].isin(["baseline", "hdl"]))]


def summarize(values: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, sample std and count of ``value`` over seeds, for every row of ``expected``.

    ``expected`` holds ``keys`` and ``n_expected``; a group without values keeps NaN and
    ``n_seeds`` 0, so it shows as missing, never as zero.
    """
    grouped = values.dropna(subset=["value"]).groupby(keys, sort=False)["value"]
    stats = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n_seeds="count").reset_index()
    table = expected.merge(stats, on=keys, how="left")
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    return table


def paired_t_interval(differences, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(ci_low, ci_high, p_value) for the mean of per-seed paired differences.

    Student's t with n - 1 degrees of freedom: mean ± t_{(1+confidence)/2, n-1} * s / sqrt(n),
    and the two-sided p-value of "mean difference = 0". NaN for all three with fewer than
    two differences (no spread to estimate). Identical differences give a zero-width
    interval and p = 0 (or NaN when they are all 0).
    """
    values = np.asarray(differences, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return math.nan, math.nan, math.nan
    mean, standard_error = values.mean(), values.std(ddof=1) / math.sqrt(n)
    half_width = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * standard_error
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2.0 * scipy_stats.t.sf(np.abs(mean) / standard_error, n - 1)
    return float(mean - half_width), float(mean + half_width), float(p_value)


def expected_seed_counts(grid: pd.DataFrame) -> pd.DataFrame:
    """SETTING + method + n_expected, in grid order."""
    return grid.groupby(SETTING + ["method"], sort=False).size().rename("n_expected").reset_index()


# ----------------------------------------------------------------------------- accuracy


def accuracy_seed_values(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """CELL + row + value (percent): stage 1, the last round's baseline and HDL, and their paired difference."""
    rows = []
    for run in stage1_and_last_round(metrics).itertuples(index=False):
        if metric not in run.record:
            raise UserError(
                f"{run.path}: no key {metric!r}; choose one it has with --metric ({', '.join(METRIC_DESCRIPTIONS)})"
            )
        value = as_percent(run.record[metric], run.path, metric)
        rows.append({**{key: getattr(run, key) for key in CELL}, "row": run.variant, "value": value})
    values = pd.DataFrame(rows, columns=CELL + ["row", "value"])
    # Paired: both variants start from the seed's stage-1 checkpoint, so the per-seed
    # difference removes the seed's luck from the comparison.
    paired = values.pivot_table(index=CELL, columns="row", values="value", aggfunc="first")
    if {"baseline", "hdl"} <= set(paired.columns):
        delta = (paired["hdl"] - paired["baseline"]).dropna().rename("value").reset_index()
        values = pd.concat([values, delta.assign(row="delta")], ignore_index=True)
    return values


def accuracy_statistics(values: pd.DataFrame, grid: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (setting, method, row kind), in grid order: the numbers of the accuracy table.

    ``values`` comes from ``accuracy_seed_values``. Delta rows also carry ``ci_low``,
    ``ci_high`` and ``p_value`` of a paired t-test over their ``n_seeds`` seeds
    (``paired_t_interval``); other rows leave them NaN.
    """
    keys = SETTING + ["method", "row"]
    expected = expected_seed_counts(grid).merge(pd.DataFrame({"row": ACCURACY_ROWS}), how="cross")
    stats = summarize(values, expected, keys)
    stats.insert(len(SETTING) + 2, "metric", metric)
    intervals = {
        key: paired_t_interval(group)
        for key, group in values[values["row"] == "delta"].groupby(keys, sort=False)["value"]
    }
    no_interval = (math.nan,) * 3
    rows = [intervals.get(key, no_interval) for key in stats[keys].itertuples(index=False, name=None)]
    interval_columns = ["ci_low", "ci_high", "p_value"]
    stats[interval_columns] = pd.DataFrame(rows, columns=interval_columns, index=stats.index, dtype=float)
    return stats


# ----------------------------------------------------------------------------- pseudo-labels


def labeler_results(record: dict) -> dict[str, dict]:
    """A relabel.json's labelers and their fractions: HDL (all it reached), the comparisons, and,
    where the record has a stage-2 ``selection``, the selected labels and the argmax at their coverage."""
    labelers = {"hdl": {"accuracy": record.get("accuracy"), "coverage": record.get("coverage")}}
    labelers.update(record.get("comparison", {}))
    selection = record.get("selection")
    if selection:
        labelers[SELECTED] = {key: selection.get(key) for key in PSEUDO_LABEL_QUANTITIES}
        labelers[ARGMAX_AT_SELECTED] = {"accuracy": selection.get("argmax_accuracy"),
                                        "coverage": selection.get("coverage")}
    return labelers


def pseudo_label_seed_values(relabels: pd.DataFrame) -> pd.DataFrame:
    """CELL + round + labeler + quantity (accuracy | coverage | estimated_accuracy) + value (percent)."""
    rows = []
    for run in relabels.itertuples(index=False):
        for labeler, result in labeler_results(run.record).items():
            for quantity in PSEUDO_LABEL_QUANTITIES:
                if quantity == "estimated_accuracy" and quantity not in result:
                    continue
                value = as_percent(result.get(quantity), run.path, f"{labeler}.{quantity}")
                rows.append({**{key: getattr(run, key) for key in CELL}, "round": run.round,
                             "labeler": labeler, "quantity": quantity, "value": value})
    return pd.DataFrame(rows, columns=CELL + ["round", "labeler", "quantity", "value"])


def pseudo_label_statistics(relabels: pd.DataFrame, grid: pd.DataFrame, rounds: list[int]) -> pd.DataFrame:
    """One row per (setting, method, round, labeler): each quantity's mean, std and count over seeds.

    Per (setting, method, round) also: ``k`` (the k HDL chose), ``selection`` and
    ``confidence`` and ``class_quota`` (the stage-2 selection's rule, confidence order and class
    quota), each seed's distinct values joined by "/"; and on the selected labels' row
    ``selected_per_class`` and ``selected_per_class_accuracy``, the mean count per class over seeds
    and the mean accuracy (%) of each class's kept labels over the seeds that kept some.
    """
    values = pseudo_label_seed_values(relabels)
    labelers = LABELER_ORDER + sorted(set(values["labeler"]) - set(LABELER_ORDER))
    expected = expected_seed_counts(grid).merge(pd.DataFrame({"round": rounds}), how="cross")
    expected = expected.merge(pd.DataFrame({"labeler": labelers}), how="cross")
    keys = SETTING + ["method", "round", "labeler"]
    stats = expected
    for quantity in PSEUDO_LABEL_QUANTITIES:
        summary = summarize(values[values["quantity"] == quantity], expected, keys).rename(
            columns={"mean": f"{quantity}_mean", "std": f"{quantity}_std", "n_seeds": f"{quantity}_n_seeds"})
        stats = stats.merge(summary.drop(columns="n_expected"), on=keys)
    group = SETTING + ["method", "round"]
    for name, extract in (("k", lambda record: record.get("k")),
                          ("selection", lambda record: (record.get("selection") or {}).get("rule")),
                          ("confidence", lambda record: (record.get("selection") or {}).get("confidence")),
                          ("class_quota", lambda record: (record.get("selection") or {}).get("class_quota"))):
        stats = stats.merge(_joined_per_group(relabels, group, name, extract), on=group, how="left")
    per_class = _mean_selected_per_class(relabels, group).assign(labeler=SELECTED)
    stats = stats.merge(per_class, on=keys, how="left")
    # Labelers no relabel.json reported at all (older writers) are dropped rather than shown empty.
    reported = set(values["labeler"]) | {"hdl"}
    return stats[stats["labeler"].isin(reported)].reset_index(drop=True)


def _joined_per_group(relabels: pd.DataFrame, group: list[str], name: str, extract) -> pd.DataFrame:
    """``group`` + ``name``: the distinct values ``extract`` finds in the group's records, joined by "/"."""
    frame = relabels.assign(**{name: [extract(record) for record in relabels["record"]]})
    joined = frame.groupby(group)[name].agg(lambda found: "/".join(str(v) for v in sorted(set(found.dropna()))))
    return joined.rename(name).reset_index()


def _mean_selected_per_class(relabels: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """``group`` + ``selected_per_class`` and ``selected_per_class_accuracy``: the selection's per-class
    counts and accuracies (in %, MISSING for a class no seed kept), mean over seeds, "/"-joined."""
    columns = ["selected_per_class", "selected_per_class_accuracy"]
    rows = []
    for key, runs in relabels.groupby(group):
        selections = [record.get("selection") or {} for record in runs["record"]]
        counts = [selection["per_class"] for selection in selections if selection.get("per_class")]
        if not counts or len({len(count) for count in counts}) != 1:
            continue
        row = {**dict(zip(group, key)), columns[0]: "/".join(f"{v:g}" for v in np.mean(np.array(counts, dtype=float), axis=0).round(1))}
        accuracies = [selection["per_class_accuracy"] for selection in selections if selection.get("per_class_accuracy")]
        if accuracies and len({len(accuracy) for accuracy in accuracies} | {len(counts[0])}) == 1:
            per_seed = np.array([[np.nan if value is None else 100.0 * value for value in accuracy] for accuracy in accuracies])
            seeds_with_value = (~np.isnan(per_seed)).sum(axis=0)
            mean = np.nansum(per_seed, axis=0) / np.maximum(seeds_with_value, 1)
            row[columns[1]] = "/".join(f"{v:.1f}" if n else MISSING for v, n in zip(mean, seeds_with_value))
        rows.append(row)
    return pd.DataFrame(rows, columns=group + columns)
