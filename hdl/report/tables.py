"""What the tables say: cell texts, row labels and captions over the statistics frames.

``stats`` computes the numbers, this module words them into ``DisplayTable``s in the
paper's shape (and the text columns of the accuracy CSV), ``render`` writes those as
Markdown and LaTeX.
"""

from __future__ import annotations

import math

import pandas as pd

from hdl.report.collect import SETTING
from hdl.report.display import (
    ARGMAX_AT_SELECTED,
    NOT_SIGNIFICANT,
    SELECTED,
    labeler_name,
    method_name,
    setting_name,
    setting_parts,
)
from hdl.report.render import MISSING, DisplayTable
from hdl.report.stats import ACCURACY_ROWS, CONFIDENCE, METRIC_DESCRIPTIONS

PUBLISHED_ROW = "published"


def cell_text(mean: float, std: float, n_seeds: int, n_expected: int) -> str | None:
    """"mean ± std" with two decimals, "(n=m)" when fewer seeds finished than expected, None when none did."""
    if n_seeds == 0 or math.isnan(mean):
        return None
    text = f"{mean:.2f}" if n_seeds == 1 else f"{mean:.2f} ± {std:.2f}"
    return f"{text} (n={n_seeds})" if n_seeds < n_expected else text


def difference_text(mean: float, ci_low: float, ci_high: float, n_seeds: int, n_expected: int) -> str | None:
    """"+mean [low, high]" (signed, two decimals) with "n.s." when the interval contains 0;
    one seed gives no interval and says so; "(n=m)" and None as ``cell_text``."""
    if n_seeds == 0 or math.isnan(mean):
        return None
    if n_seeds == 1:
        return f"{mean:+.2f} (n=1, no CI)"
    text = f"{mean:+.2f} [{ci_low:+.2f}, {ci_high:+.2f}]"
    if ci_low <= 0.0 <= ci_high:
        text += f" {NOT_SIGNIFICANT}"
    return f"{text} (n={n_seeds})" if n_seeds < n_expected else text


# ----------------------------------------------------------------------------- accuracy


def accuracy_row_label(method: str, row: str) -> str:
    name = method_name(method)
    return {
        "stage1": f"{name} (stage 1 only)",
        PUBLISHED_ROW: f"{name}, published (USB)",
        "baseline": name,
        "hdl": f"{name} + HDL",
        "delta": f"Δ HDL − {name} (paired)",
    }[row]


def accuracy_cell(row) -> str | None:
    """The text of one accuracy-statistics row (a namedtuple of ``stats.accuracy_statistics``)."""
    if row.row == "delta":
        return difference_text(row.mean, row.ci_low, row.ci_high, row.n_seeds, row.n_expected)
    return cell_text(row.mean, row.std, row.n_seeds, row.n_expected)


def accuracy_csv(stats: pd.DataFrame) -> pd.DataFrame:
    """The accuracy statistics with each row's label and cell text, as accuracy.csv holds them."""
    return stats.assign(
        row_label=[accuracy_row_label(method, row) for method, row in zip(stats["method"], stats["row"])],
        cell=[accuracy_cell(row) for row in stats.itertuples(index=False)],
    )


def accuracy_caption(metric: str, final_round: int) -> str:
    return (
        f"Test accuracy (%): {METRIC_DESCRIPTIONS[metric]} (metrics.json key {metric!r}); "
        f"mean ± sample std over seeds. Rows per method: the stage-1 model HDL starts from; "
        f"the method trained on without HDL labels (baseline) and with them (+ HDL), round {final_round}; "
        "Δ: HDL − baseline per seed (both start from the seed's stage-1 checkpoint), mean over the n seeds "
        f"and its {CONFIDENCE:.0%} confidence interval [low, high] from a paired t-test (paired t, n seeds, "
        f"n − 1 degrees of freedom); {NOT_SIGNIFICANT}: the interval contains 0, so these seeds show no "
        "difference; with n=1 there is no interval. "
        f"(n=m): only m of the grid's seeds finished; {MISSING}: no seed finished."
    )


PUBLISHED_NOTE = (
    " Published (USB): the accuracy microsoft/Semi-supervised-learning reports for the method in this setting "
    "(100 − results/classic_cv.csv's error rate; results/classic_cv_imb.csv's accuracy for CIFAR-10-LT), "
    "mean ± std over USB's 3 seeds; USB reports the best value over training, so compare it with "
    f"--metric best_top1; the reproduction gap is stage 1 minus this row; {MISSING}: USB has no such cell."
)


def accuracy_display(stats: pd.DataFrame, caption: str) -> DisplayTable:
    """The accuracy table: settings as columns, four rows per method, plus the published row under
    stage 1 for methods with a published number in any of the table's settings (``attach_published``)."""
    settings = list(dict.fromkeys(zip(*(stats[column] for column in SETTING))))
    published = stats["published_mean"] if "published_mean" in stats else pd.Series(math.nan, index=stats.index)
    table = DisplayTable(caption, ["method"], [setting_parts(*setting) for setting in settings])
    by_cell = dict(zip(stats[SETTING + ["method", "row"]].itertuples(index=False, name=None),
                       stats.itertuples(index=False)))
    for method in dict.fromkeys(stats["method"]):
        table.group_starts.add(len(table.rows))
        show_published = published[(stats["method"] == method) & (stats["row"] == "stage1")].notna().any()
        for kind in ACCURACY_ROWS:
            rows = [by_cell.get((*setting, method, kind)) for setting in settings]
            table.rows.append(([accuracy_row_label(method, kind)],
                               [None if row is None else accuracy_cell(row) for row in rows]))
            if kind == "stage1" and show_published:
                table.rows.append(([accuracy_row_label(method, PUBLISHED_ROW)],
                                   [_published_text(row) for row in rows]))
    if published.notna().any():
        table.caption += PUBLISHED_NOTE
    return table


def _published_text(row) -> str | None:
    if row is None or math.isnan(row.published_mean):
        return None
    return f"{row.published_mean:.2f} ± {row.published_std:.2f}"


# ----------------------------------------------------------------------------- pseudo-labels

SELECTION_COLUMNS = (
    ("coverage", SELECTED, "coverage"),
    ("estimated accuracy", SELECTED, "estimated_accuracy"),
    ("accuracy", SELECTED, "accuracy"),
    ("argmax accuracy, same coverage", ARGMAX_AT_SELECTED, "accuracy"),
)

PSEUDO_LABEL_CAPTION = (
    "Pseudo-label accuracy (%) on the unlabeled training samples, mean ± sample std over seeds: "
    "HDL's labels (every sample it reached), and the comparison labelers restricted to the same coverage "
    "(their most confident samples), as relabel.json's 'comparison' reports; the thresholded argmax covers only "
    "the samples above its threshold (its own coverage is in pseudo_labels.csv). "
    "Coverage: share of unlabeled samples HDL reached. "
    f"k: the k HDL chose (per seed). (n=m): only m of the grid's seeds have a relabel.json; {MISSING}: none."
)
SELECTION_NOTE = (
    " Stage-2 selection (relabel.json's 'selection'; selection: its rule, confidence and class quota, per seed): "
    "the share of unlabeled samples whose HDL labels join stage 2 (coverage), the accuracy the hold-out folds "
    "estimated for them, their true accuracy, the stage-1 model's argmax accuracy on its own most confident "
    "samples at the same coverage, and per class of the kept label (class 0 first, '/'-separated) the labels "
    f"kept (mean over seeds) with their accuracy in % in parentheses ({MISSING}: no seed kept one)."
)
PER_CLASS_COLUMN = ("stage-2 selection", "kept per class (accuracy %)")


def pseudo_label_display(stats: pd.DataFrame) -> DisplayTable:
    """One row per setting, method and round: HDL's coverage and every labeler's accuracy, then,
    where relabel.json records a stage-2 selection, the selection's columns."""
    with_selection = SELECTED in set(stats["labeler"])
    labelers = [name for name in dict.fromkeys(stats["labeler"]) if name not in (SELECTED, ARGMAX_AT_SELECTED)]
    columns = [("coverage", "HDL")] + [("accuracy", labeler_name(labeler)) for labeler in labelers]
    index_header = ["setting", "method", "round", "k"]
    caption = PSEUDO_LABEL_CAPTION
    if with_selection:
        columns += [("stage-2 selection", title) for title, _, _ in SELECTION_COLUMNS] + [PER_CLASS_COLUMN]
        index_header.append("selection")
        caption += SELECTION_NOTE
    table = DisplayTable(caption, index_header, columns)
    previous_setting = None
    for key, group in stats.groupby(SETTING + ["method", "round"], sort=False):
        by_labeler = group.set_index("labeler")
        cells = [_quantity_text(by_labeler, "hdl", "coverage")]
        cells += [_quantity_text(by_labeler, labeler, "accuracy") for labeler in labelers]
        hdl = by_labeler.loc["hdl"]
        index = [setting_name(*key[: len(SETTING)]), method_name(key[3]), str(key[4]), _joined(hdl.k)]
        if with_selection:
            cells += [_quantity_text(by_labeler, labeler, quantity) for _, labeler, quantity in SELECTION_COLUMNS]
            cells.append(_per_class_text(by_labeler))
            index.append(_joined(", ".join(value for value in (hdl.selection, hdl.confidence, hdl.class_quota) if _present(value))))
        if key[: len(SETTING)] != previous_setting:
            table.group_starts.add(len(table.rows))
            previous_setting = key[: len(SETTING)]
        table.rows.append((index, cells))
    return table


def _quantity_text(by_labeler: pd.DataFrame, labeler: str, quantity: str) -> str | None:
    if labeler not in by_labeler.index:
        return None
    row = by_labeler.loc[labeler]
    return cell_text(row[f"{quantity}_mean"], row[f"{quantity}_std"], row[f"{quantity}_n_seeds"], row["n_expected"])


def _per_class_text(by_labeler: pd.DataFrame) -> str | None:
    """"count (accuracy)" per class, "/"-joined, from the selected labels' row; None without counts."""
    if SELECTED not in by_labeler.index or not _present(by_labeler.loc[SELECTED, "selected_per_class"]):
        return None
    counts = by_labeler.loc[SELECTED, "selected_per_class"].split("/")
    accuracies = by_labeler.loc[SELECTED, "selected_per_class_accuracy"]
    if not _present(accuracies):
        return "/".join(counts)
    return "/".join(f"{count} ({accuracy})" for count, accuracy in zip(counts, accuracies.split("/")))


def _present(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _joined(value: object) -> str:
    return value if isinstance(value, str) and value else MISSING
