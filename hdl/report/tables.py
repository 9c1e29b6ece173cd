"""Statistics over seeds and the tables built from them.

One statistics frame per table (tidy: one row per table cell, numbers in percent, NaN
where no seed finished) is written as CSV; the same frame, pivoted into a ``DisplayTable``
in the paper's shape, is rendered as Markdown and LaTeX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from hdl.errors import UserError
from hdl.report.collect import CELL, SETTING, STAGE1_VARIANT
from hdl.report.display import LABELER_ORDER, labeler_name, method_name, setting_name, setting_parts

METRIC_DESCRIPTIONS = {
    "median_last20_top1": "median top-1 accuracy of the EMA model over the last 20 evaluations",
    "top1": "top-1 accuracy of the final EMA model",
    "best_top1": "best top-1 accuracy over all evaluations (optimistic: selected on the test set)",
    "balanced_acc": "balanced accuracy (mean per-class recall) of the final EMA model",
}
DEFAULT_METRIC = "median_last20_top1"
ACCURACY_ROWS = ("stage1", "baseline", "hdl", "delta")
MISSING = "—"


@dataclass
class DisplayTable:
    """A table in the paper's shape, independent of the output format.

    ``columns`` holds one tuple of header lines per data column; a ``None`` cell is missing.
    ``group_starts`` are the row positions that open a new group (a rule is drawn above).
    """

    caption: str
    index_header: list[str]
    columns: list[tuple[str, ...]]
    rows: list[tuple[list[str], list[str | None]]] = field(default_factory=list)
    group_starts: set[int] = field(default_factory=set)


def cell_text(mean: float, std: float, n_seeds: int, n_expected: int, signed: bool = False) -> str | None:
    """"mean ± std" with two decimals, "(n=m)" when fewer seeds finished than expected, None when none did."""
    if n_seeds == 0 or math.isnan(mean):
        return None
    number = "{:+.2f}" if signed else "{:.2f}"
    text = number.format(mean) if n_seeds == 1 else f"{number.format(mean)} ± {std:.2f}"
    return f"{text} (n={n_seeds})" if n_seeds < n_expected else text


def as_percent(value: object, path: str, key: str) -> float:
    """A fraction from a run's JSON, in percent; the contract says fractions in [0, 1]."""
    if value is None:
        return math.nan
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{path}: {key}={value!r} is not a fraction in [0, 1] as CONTRACTS.md specifies")
    return 100.0 * value


def last_round(metrics: pd.DataFrame) -> int:
    """The highest round any stage-2 run reached: the round the tables show (0 if none)."""
    stage2 = metrics[metrics["variant"] != STAGE1_VARIANT]
    return int(stage2["round"].max()) if not stage2.empty else 0


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


def expected_seed_counts(grid: pd.DataFrame) -> pd.DataFrame:
    """SETTING + method + n_expected, in grid order."""
    return grid.groupby(SETTING + ["method"], sort=False).size().rename("n_expected").reset_index()


# ----------------------------------------------------------------------------- accuracy


def accuracy_seed_values(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """CELL + row + value (percent): stage 1, the last round's baseline and HDL, and their paired difference."""
    final_round = last_round(metrics)
    chosen = metrics[
        (metrics["variant"] == STAGE1_VARIANT)
        | ((metrics["round"] == final_round) & metrics["variant"].isin(["baseline", "hdl"]))
    ]
    rows = []
    for run in chosen.itertuples(index=False):
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
    """One row per (setting, method, row kind), in grid order; the CSV of the accuracy table.

    ``values`` comes from ``accuracy_seed_values``.
    """
    expected = expected_seed_counts(grid)
    expected = expected.merge(pd.DataFrame({"row": ACCURACY_ROWS}), how="cross")
    stats = summarize(values, expected, SETTING + ["method", "row"])
    stats["row_label"] = [accuracy_row_label(method, row) for method, row in zip(stats["method"], stats["row"])]
    stats["cell"] = [
        cell_text(row.mean, row.std, row.n_seeds, row.n_expected, signed=row.row == "delta")
        for row in stats.itertuples(index=False)
    ]
    stats.insert(len(SETTING) + 2, "metric", metric)
    return stats


def accuracy_row_label(method: str, row: str) -> str:
    name = method_name(method)
    return {
        "stage1": f"{name} (stage 1 only)",
        "baseline": name,
        "hdl": f"{name} + HDL",
        "delta": f"Δ HDL − {name} (paired)",
    }[row]


def accuracy_caption(metric: str, final_round: int) -> str:
    return (
        f"Test accuracy (%): {METRIC_DESCRIPTIONS[metric]} (metrics.json key {metric!r}); "
        f"mean ± sample std over seeds. Rows per method: the stage-1 model HDL starts from; "
        f"the method trained on without HDL labels (baseline) and with them (+ HDL), round {final_round}; "
        "Δ: per-seed paired difference HDL − baseline (both start from the same stage-1 checkpoint). "
        f"(n=m): only m of the grid's seeds finished; {MISSING}: no seed finished."
    )


def accuracy_display(stats: pd.DataFrame, caption: str) -> DisplayTable:
    settings = list(dict.fromkeys(zip(*(stats[column] for column in SETTING))))
    table = DisplayTable(caption, ["method"], [setting_parts(*setting) for setting in settings])
    cells = stats.set_index(SETTING + ["row_label"])["cell"]
    for method in dict.fromkeys(stats["method"]):
        table.group_starts.add(len(table.rows))
        for row in ACCURACY_ROWS:
            label = accuracy_row_label(method, row)
            table.rows.append(([label], [_lookup(cells, (*setting, label)) for setting in settings]))
    return table


# ----------------------------------------------------------------------------- pseudo-labels


def pseudo_label_seed_values(relabels: pd.DataFrame) -> pd.DataFrame:
    """CELL + round + labeler + quantity (accuracy | coverage) + value (percent)."""
    rows = []
    for run in relabels.itertuples(index=False):
        record = run.record
        labelers = {"hdl": {"accuracy": record.get("accuracy"), "coverage": record.get("coverage")}}
        labelers.update(record.get("comparison", {}))
        for labeler, result in labelers.items():
            for quantity in ("accuracy", "coverage"):
                value = as_percent(result.get(quantity), run.path, f"{labeler}.{quantity}")
                rows.append({**{key: getattr(run, key) for key in CELL}, "round": run.round,
                             "labeler": labeler, "quantity": quantity, "value": value})
    return pd.DataFrame(rows, columns=CELL + ["round", "labeler", "quantity", "value"])


def pseudo_label_statistics(relabels: pd.DataFrame, grid: pd.DataFrame, rounds: list[int]) -> pd.DataFrame:
    """One row per (setting, method, round, labeler): accuracy and coverage, mean and std over seeds."""
    values = pseudo_label_seed_values(relabels)
    labelers = LABELER_ORDER + sorted(set(values["labeler"]) - set(LABELER_ORDER))
    expected = expected_seed_counts(grid).merge(pd.DataFrame({"round": rounds}), how="cross")
    expected = expected.merge(pd.DataFrame({"labeler": labelers}), how="cross")
    keys = SETTING + ["method", "round", "labeler"]
    per_quantity = [
        summarize(values[values["quantity"] == quantity], expected, keys)
        .rename(columns={"mean": f"{quantity}_mean", "std": f"{quantity}_std", "n_seeds": f"{quantity}_n_seeds"})
        for quantity in ("accuracy", "coverage")
    ]
    stats = per_quantity[0].merge(per_quantity[1].drop(columns="n_expected"), on=keys)
    chosen_k = relabels.assign(k=[record.get("k") for record in relabels["record"]])
    chosen_k = chosen_k.groupby(SETTING + ["method", "round"])["k"].agg(
        lambda ks: "/".join(str(k) for k in sorted(set(ks.dropna())))
    ).rename("k").reset_index()
    stats = stats.merge(chosen_k, on=SETTING + ["method", "round"], how="left")
    # Labelers no relabel.json reported at all (older writers) are dropped rather than shown empty.
    reported = set(values["labeler"]) | {"hdl"}
    return stats[stats["labeler"].isin(reported)].reset_index(drop=True)


PSEUDO_LABEL_CAPTION = (
    "Pseudo-label accuracy (%) on the unlabeled training samples, mean ± sample std over seeds: "
    "HDL's labels, and the comparison labelers restricted to the same coverage (their most confident "
    "samples), as relabel.json's 'comparison' reports; the thresholded argmax covers only the samples above "
    "its threshold (its own coverage is in pseudo_labels.csv). Coverage: share of unlabeled samples HDL labeled. "
    f"k: the k HDL chose (per seed). (n=m): only m of the grid's seeds have a relabel.json; {MISSING}: none."
)


def pseudo_label_display(stats: pd.DataFrame) -> DisplayTable:
    labelers = list(dict.fromkeys(stats["labeler"]))
    columns = [("coverage", "HDL")] + [("accuracy", labeler_name(labeler)) for labeler in labelers]
    table = DisplayTable(PSEUDO_LABEL_CAPTION, ["setting", "method", "round", "k"], columns)
    group_keys = SETTING + ["method", "round"]
    previous_setting = None
    for key, group in stats.groupby(group_keys, sort=False):
        by_labeler = group.set_index("labeler")
        hdl = by_labeler.loc["hdl"]
        cells = [cell_text(hdl.coverage_mean, hdl.coverage_std, hdl.coverage_n_seeds, hdl.n_expected)]
        for labeler in labelers:
            row = by_labeler.loc[labeler]
            cells.append(cell_text(row.accuracy_mean, row.accuracy_std, row.accuracy_n_seeds, row.n_expected))
        setting = key[: len(SETTING)]
        if setting != previous_setting:
            table.group_starts.add(len(table.rows))
            previous_setting = setting
        k = hdl.k if isinstance(hdl.k, str) and hdl.k else MISSING
        table.rows.append(([setting_name(*setting), method_name(key[3]), str(key[4]), k], cells))
    return table


def _lookup(cells: pd.Series, key: tuple) -> str | None:
    value = cells.get(key)
    return value if isinstance(value, str) else None


# ----------------------------------------------------------------------------- rendering


def to_markdown(table: DisplayTable) -> str:
    header = table.index_header + [", ".join(lines) for lines in table.columns]
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for index, cells in table.rows:
        lines.append(_markdown_row(index + [MISSING if cell is None else cell for cell in cells]))
    return "\n".join(lines) + f"\n\n{table.caption}\n"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_latex(table: DisplayTable, label: str) -> str:
    """A booktabs ``table`` environment, ready to ``\\input`` (needs ``\\usepackage{booktabs}``)."""
    n_index = len(table.index_header)
    lines = [
        "% Generated by `hdl aggregate`; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{latex_escape(table.caption)}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{'l' * n_index}{'c' * len(table.columns)}}}",
        "\\toprule",
    ]
    depth = max(len(column) for column in table.columns)
    for level in range(depth):
        first = [latex_escape(name) if level == depth - 1 else "" for name in table.index_header]
        spans = _header_spans(table.columns, level)
        cells = [
            latex_escape(text) if width == 1 else f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(text)}}}"
            for text, width in spans
        ]
        lines.append(" & ".join(first + cells) + " \\\\")
        if level < depth - 1:
            rules, start = [], n_index + 1
            for text, width in spans:
                if text and width > 1:
                    rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
                start += width
            if rules:
                lines.append(" ".join(rules))
    for position, (index, cells) in enumerate(table.rows):
        if position in table.group_starts:
            lines.append("\\midrule")
        texts = [latex_escape(MISSING if cell is None else cell) for cell in index + cells]
        lines.append(" & ".join(texts) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _header_spans(columns: list[tuple[str, ...]], level: int) -> list[tuple[str, int]]:
    """The header line ``level`` as (text, width) spans for \\multicolumn.

    Adjacent columns merge when they agree on this line and every line above it, so
    "250 labels" under CIFAR-10 never merges with "250 labels" under CIFAR-100.
    """
    spans: list[tuple[tuple[str, ...], int]] = []
    for column in columns:
        prefix = column[: level + 1]
        if spans and spans[-1][0] == prefix:
            spans[-1] = (prefix, spans[-1][1] + 1)
        else:
            spans.append((prefix, 1))
    return [(prefix[level] if level < len(prefix) else "", width) for prefix, width in spans]


LATEX_REPLACEMENTS = {
    "\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
    "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
    "±": "$\\pm$", "—": "---", "−": "$-$", "Δ": "$\\Delta$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_REPLACEMENTS.get(character, character) for character in text)
