"""Per-class and tail test accuracy of stage 1 and both stage-2 variants (results/tables/per_class.*).

metrics.json's ``per_class`` is the final EMA model's test accuracy per true class. The tail is the
third of the classes with the fewest given labels (``hdl.labeling.evaluate.head_and_tail``, the
probe's definition), read from the split's definition: the long-tailed counts of its N1 and
imbalance factor (``hdl.data.splits.long_tailed_counts``); balanced settings have no tail.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hdl.data.splits import long_tailed_counts
from hdl.labeling.evaluate import head_and_tail
from hdl.report.collect import CELL, SETTING, STAGE1_VARIANT
from hdl.report.display import method_name, setting_name
from hdl.report.render import DisplayTable
from hdl.report.stats import CONFIDENCE, as_percent, paired_t_interval, stage1_and_last_round
from hdl.report.tables import cell_text, difference_text

ROWS = (STAGE1_VARIANT, "baseline", "hdl")
TAIL = "tail"
TAIL_DELTA = "tail_delta"
ROW_LABELS = {STAGE1_VARIANT: "stage 1 only", "baseline": "baseline", "hdl": "+ HDL", TAIL_DELTA: "Δ tail, HDL − baseline (paired)"}


def class_groups(labels: int, imbalance: float, num_classes: int) -> dict[str, list[int]]:
    """The head and tail classes of a setting's split (``head_and_tail``); {} on balanced settings."""
    if imbalance == 1:
        return {}
    groups = head_and_tail(long_tailed_counts(labels, imbalance, num_classes))
    return {group: sorted(int(c) for c in classes) for group, classes in groups.items()}


def tail_classes(labels: int, imbalance: float, num_classes: int) -> list[int]:
    return class_groups(labels, imbalance, num_classes).get("tail", [])


def per_class_seed_values(metrics: pd.DataFrame) -> pd.DataFrame:
    """CELL + row (stage1 | baseline | hdl) + column (class index as text, or "tail") + value (%),
    from the runs whose metrics.json records ``per_class`` (stage 1 and the last round's variants)."""
    rows = []
    for run in stage1_and_last_round(metrics).itertuples(index=False):
        per_class = run.record.get("per_class")
        if not per_class:
            continue
        values = [as_percent(value, run.path, f"per_class[{c}]") for c, value in enumerate(per_class)]
        tail = tail_classes(run.labels, run.imbalance, len(values))
        cell = {key: getattr(run, key) for key in CELL}
        rows += [cell | {"row": run.variant, "column": str(c), "value": value} for c, value in enumerate(values)]
        if tail:
            rows.append(cell | {"row": run.variant, "column": TAIL, "value": float(np.mean([values[c] for c in tail]))})
    return pd.DataFrame(rows, columns=CELL + ["row", "column", "value"])


def per_class_statistics(values: pd.DataFrame) -> pd.DataFrame:
    """One row per setting, method and row (stage1, baseline, hdl, tail_delta): per column the mean over
    seeds; ``n_seeds``; ``tail_std``; and on tail_delta rows the paired t interval of HDL − baseline's
    tail accuracy (``ci_low``, ``ci_high``, ``p_value``)."""
    keys = SETTING + ["method"]
    if values.empty:  # metrics.json written before per_class was recorded
        return pd.DataFrame(columns=keys + ["row", "n_seeds"])
    wide = values.pivot_table(index=keys + ["seed", "row"], columns="column", values="value", aggfunc="first")
    columns = sorted((c for c in wide.columns if c != TAIL), key=int) + ([TAIL] if TAIL in wide.columns else [])
    wide = wide[columns].reset_index()
    table = wide.groupby(keys + ["row"], sort=False)[columns].mean()
    table["n_seeds"] = wide.groupby(keys + ["row"], sort=False)["seed"].nunique()
    if TAIL in columns:
        table["tail_std"] = wide.groupby(keys + ["row"], sort=False)[TAIL].std(ddof=1)
    table = table.reset_index()
    if TAIL in columns:
        tails = wide.pivot_table(index=keys + ["seed"], columns="row", values=TAIL, aggfunc="first")
        if {"baseline", "hdl"} <= set(tails.columns):
            deltas = []
            for key, group in (tails["hdl"] - tails["baseline"]).dropna().groupby(level=keys, sort=False):
                low, high, p_value = paired_t_interval(group.to_numpy())
                deltas.append(dict(zip(keys, key)) | {"row": TAIL_DELTA, TAIL: group.mean(), "n_seeds": len(group),
                                                       "ci_low": low, "ci_high": high, "p_value": p_value})
            table = pd.concat([table, pd.DataFrame(deltas)], ignore_index=True)
    order = {row: position for position, row in enumerate((*ROWS, TAIL_DELTA))}
    table["order"] = table["row"].map(order)
    return table.sort_values(keys + ["order"], kind="stable").drop(columns="order").reset_index(drop=True)


def per_class_display(stats: pd.DataFrame) -> DisplayTable:
    classes = [column for column in stats.columns if column.isdigit()]
    with_tail = TAIL in stats.columns
    caption = (
        "Test accuracy (%) per true class of the final EMA model (metrics.json's per_class), mean over seeds, "
        "for stage 1 and the last round's stage-2 variants"
    )
    if with_tail:
        caption += (
            "; tail: mean over the third of the classes with the fewest given labels (long-tailed settings only), "
            f"± sample std; Δ tail: HDL − baseline per seed, mean and {CONFIDENCE:.0%} paired-t interval (n.s.: it contains 0)"
        )
    if stats.empty:
        caption += "; no metrics.json records per_class"
    table = DisplayTable(caption + ".", ["setting", "method", "model", "n"], [(c,) for c in classes] + ([(TAIL,)] if with_tail else []))
    previous = None
    for _, row in stats.iterrows():
        key = tuple(row[column] for column in SETTING + ["method"])
        if key != previous:
            table.group_starts.add(len(table.rows))
            previous = key
        index = [setting_name(*key[: len(SETTING)]), method_name(row["method"]), ROW_LABELS[row["row"]], str(int(row["n_seeds"]))]
        if row["row"] == TAIL_DELTA:
            cells = [None] * len(classes) + [difference_text(row[TAIL], row["ci_low"], row["ci_high"], row["n_seeds"], row["n_seeds"])]
        else:
            cells = [_number(row[c]) for c in classes]
            if with_tail:
                cells.append(None if math.isnan(row[TAIL]) else cell_text(row[TAIL], row["tail_std"], row["n_seeds"], row["n_seeds"]))
        table.rows.append((index, cells))
    return table


def _number(value: float) -> str | None:
    return None if value is None or math.isnan(value) else f"{value:.1f}"
