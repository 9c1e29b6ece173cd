"""The label refresh's figure: what stage 2's HDL labels were at each refresh, against training step.

metrics.json's ``refreshes`` (``hdl.training.refresh``) hold, every ``hdl.refresh_every`` steps of
stage 2 with HDL labels, the coverage of the labels it then trained with (kept / unlabeled), their
accuracy against the true labels and how many each class kept.  Each curve starts at the
selection stage 2 started from (its round's relabel.json), placed at the step stage 2 started
(the global step of a refresh less its step), so a refresh's change shows against the labels
it replaced.  Stage 2 counts the method's global step, which continues stage 1's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hdl.report.collect import CELL
from hdl.report.curves import ACCURACY_RANGE, band
from hdl.report.display import method_name, setting_name
from hdl.report.per_class import class_groups
from hdl.report.plots import figure_legend, mark_empty, panel_grid, save_figure, setting_rows, settings_of

#: the quantities drawn, one column each: (the lines it draws, y label)
PANELS = {
    "coverage": (("coverage",), "coverage of the kept labels (% of unlabeled)"),
    "accuracy": (("accuracy",), "accuracy of the kept labels (%)"),
    "per_class": (("head", "tail"), "kept labels per class (mean over the group)"),
}
LINES = {
    "coverage": {"color": "tab:orange", "linestyle": "-", "label": "coverage, accuracy: all kept labels"},
    "accuracy": {"color": "tab:orange", "linestyle": "-"},
    "head": {"color": "tab:blue", "linestyle": "-", "label": "head classes (the third with the most given labels)"},
    "tail": {"color": "tab:red", "linestyle": "--", "label": "tail classes (the third with the fewest)"},
}
COLUMNS = CELL + ["round", "global_step", "quantity", "value"]


def refresh_rows(metrics: pd.DataFrame, relabels: pd.DataFrame) -> pd.DataFrame:
    """COLUMNS rows of every refresh of ``metrics``' runs, and of the selection each refreshing run started
    from (its relabel.json, where there is one): coverage and accuracy in percent, the head and tail
    classes' mean kept labels per class on long-tailed settings."""
    starts = {} if relabels.empty else {
        (*(getattr(run, key) for key in CELL), run.round): run.record.get("selection") for run in relabels.itertuples(index=False)
    }
    rows = []
    for run in metrics.itertuples(index=False):
        refreshes = run.record.get("refreshes") or []
        if not refreshes:
            continue
        cell = {key: getattr(run, key) for key in CELL}
        start = starts.get((*cell.values(), run.round))
        points = ([(refreshes[0]["global_step"] - refreshes[0]["step"], start)] if start else []) + [
            (record["global_step"], record) for record in refreshes
        ]
        groups = class_groups(run.labels, run.imbalance, len(refreshes[0]["per_class"]))
        for global_step, point in points:
            values = {key: 100.0 * point[key] for key in ("coverage", "accuracy") if point.get(key) is not None}
            values |= {group: float(np.mean([point["per_class"][c] for c in classes])) for group, classes in groups.items()}
            rows += [cell | {"round": run.round, "global_step": global_step, "quantity": quantity, "value": value}
                     for quantity, value in values.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_refreshes(metrics: pd.DataFrame, relabels: pd.DataFrame, grid: pd.DataFrame, path: Path) -> None:
    """Rows: setting and method; columns: PANELS; lines: mean over seeds per global step, band ± std."""
    rows = refresh_rows(metrics, relabels) if not metrics.empty else pd.DataFrame(columns=COLUMNS)
    if rows.empty:
        fig, (axis,) = panel_grid(1, columns=1, width=5.0, height=2.4)
        mark_empty(axis, "no label refreshes in metrics.json\n(hdl.refresh_every: 0)")
        save_figure(fig, path)
        return
    settings, methods = settings_of(grid), list(dict.fromkeys(grid["method"]))
    panels = [(setting, method, panel) for setting in settings for method in methods for panel in PANELS]
    fig, axes = panel_grid(len(panels), columns=len(PANELS), width=4.4, height=3.2)
    for axis, (setting, method, panel) in zip(axes, panels):
        cell_rows = setting_rows(rows, setting)
        cell_rows = cell_rows[cell_rows["method"] == method]
        quantities, ylabel = PANELS[panel]
        axis.set_title(f"{setting_name(*setting)}\n{method_name(method)} (n={cell_rows['seed'].nunique()})", fontsize=9)
        axis.set_xlabel("training step (stage 2 continues stage 1)")
        axis.set_ylabel(ylabel, fontsize=8)
        axis.grid(alpha=0.3)
        drawn = cell_rows[cell_rows["quantity"].isin(quantities)]
        if drawn.empty:
            mark_empty(axis, "balanced: no tail" if panel == "per_class" and setting[-1] == 1 else "no refreshes")
            continue
        for quantity in quantities:
            by_step = drawn[drawn["quantity"] == quantity].groupby("global_step")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            style = {key: value for key, value in LINES[quantity].items() if key != "label"}
            axis.plot(by_step.index, by_step["mean"], marker="o", markersize=3, linewidth=1.6, **style)
            low, high = band(by_step["mean"], by_step["std"], ACCURACY_RANGE if panel != "per_class" else (0.0, np.inf))
            axis.fill_between(by_step.index, low, high, color=style["color"], alpha=0.15, linewidth=0)
        axis.set_ylim(0, 100 if panel != "per_class" else None)
    figure_legend(fig, [(line["label"], {key: value for key, value in line.items() if key != "label"})
                        for line in LINES.values() if "label" in line])
    fig.suptitle("Stage 2's HDL labels at each label refresh (hdl.refresh_every), first point: the labels stage 2 started with\n"
                 "(mean over seeds, band ± std)", fontsize=11)
    save_figure(fig, path)
