"""The report's figures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hdl.io import atomic_path  # noqa: E402
from hdl.report.collect import SETTING  # noqa: E402
from hdl.report.curves import (  # noqa: E402
    ACCURACY_RANGE,
    GAIN_RANGE,
    band,
    histories_on_one_axis,
    mean_curve,
    mean_selection,
)
from hdl.report.display import (  # noqa: E402
    LABELER_ORDER,
    NOT_SIGNIFICANT,
    SELECTED,
    labeler_name,
    method_name,
    setting_name,
)
from hdl.report.stats import CONFIDENCE  # noqa: E402

VARIANT_STYLE = {
    "stage1": {"label": "stage 1 only", "color": "0.55"},
    "baseline": {"label": "method (baseline)", "color": "tab:blue"},
    "hdl": {"label": "method + HDL", "color": "tab:orange"},
}
LABELER_STYLE = {
    "hdl": {"color": "tab:orange", "linestyle": "-", "linewidth": 2.2},
    "knn_vote": {"color": "tab:green", "linestyle": "-"},
    "label_propagation": {"color": "tab:purple", "linestyle": "-"},
    "argmax": {"color": "tab:blue", "linestyle": "--"},
    "argmax_threshold": {"color": "tab:cyan", "linestyle": ":"},
    SELECTED: {"color": "tab:orange", "marker": "*", "markersize": 13, "markeredgecolor": "black", "linestyle": ""},
}
# USB's published accuracy, drawn across the stage-1 marker it compares with.
PUBLISHED_STYLE = {"color": "black", "marker": "_", "markersize": 16, "markeredgewidth": 2, "linestyle": ""}
MISSING_NOTE = "missing"
LEGEND_COLUMNS = 3
SEED_DOT_SHIFT = 0.06


def plot_accuracy(stats: pd.DataFrame, values: pd.DataFrame, metric: str, path: Path) -> None:
    """One panel per setting: mean ± std per method and variant, seeds as dots, and USB's published
    accuracy across the stage-1 marker where the statistics carry one (``attach_published``)."""
    settings = settings_of(stats)
    fig, axes = panel_grid(len(settings), columns=min(3, len(settings)), width=4.6, height=3.6)
    variants = ["stage1", "baseline", "hdl"]
    offsets = dict(zip(variants, np.linspace(-0.25, 0.25, len(variants))))
    published_shown = False
    for axis, setting in zip(axes, settings):
        in_setting = setting_rows(stats, setting)
        methods = list(dict.fromkeys(in_setting["method"]))
        for position, method in enumerate(methods):
            for variant in variants:
                row = in_setting[(in_setting["method"] == method) & (in_setting["row"] == variant)].iloc[0]
                x = position + offsets[variant]
                if row["n_seeds"] == 0:
                    axis.text(x, 0.02, MISSING_NOTE, rotation=90, ha="center", va="bottom", fontsize=7,
                              color=VARIANT_STYLE[variant]["color"], transform=axis.get_xaxis_transform())
                    continue
                seeds = setting_rows(values, setting)
                seeds = seeds[(seeds["method"] == method) & (seeds["row"] == variant)]["value"]
                axis.scatter(np.full(len(seeds), x + SEED_DOT_SHIFT), seeds, s=10, alpha=0.45,
                             color=VARIANT_STYLE[variant]["color"])
                lower, upper = band(row["mean"], 0.0 if math.isnan(row["std"]) else row["std"], ACCURACY_RANGE)
                axis.errorbar(x, row["mean"], yerr=[[row["mean"] - lower], [upper - row["mean"]]], fmt="o", markersize=6,
                              capsize=4, color=VARIANT_STYLE[variant]["color"])
            stage1 = in_setting[(in_setting["method"] == method) & (in_setting["row"] == "stage1")].iloc[0]
            if not math.isnan(stage1.get("published_mean", math.nan)):
                axis.plot(position + offsets["stage1"], stage1["published_mean"], **PUBLISHED_STYLE)
                published_shown = True
        axis.set_xticks(range(len(methods)), [method_name(method) for method in methods])
        axis.set_xlim(-0.6, len(methods) - 0.4)
        axis.set_title(setting_name(*setting), fontsize=10)
        axis.set_ylabel("test accuracy (%)")
        axis.grid(axis="y", alpha=0.3)
    entries = [(VARIANT_STYLE[v]["label"], {"color": VARIANT_STYLE[v]["color"], "marker": "o", "linestyle": ""})
               for v in variants]
    figure_legend(fig, entries + [("published (USB)", PUBLISHED_STYLE)] * published_shown)
    fig.suptitle(f"Test accuracy per setting\n({metric}; mean ± std over seeds, dots: seeds)", fontsize=11)
    save_figure(fig, path)


def plot_hdl_gain(stats: pd.DataFrame, values: pd.DataFrame, path: Path) -> None:
    """Paired gain HDL − baseline per method, grouped by setting: bars = mean, whiskers = the paired-t
    confidence interval (none with one seed), dots = seeds, each bar labeled with its n."""
    deltas = stats[stats["row"] == "delta"]
    settings = settings_of(deltas)
    methods = list(dict.fromkeys(deltas["method"]))
    width = 0.8 / max(len(methods), 1)
    fig, axis = plt.subplots(figsize=(max(6.0, 2.0 + 0.45 * len(settings) * max(len(methods), 2)), 4.5),
                             layout="constrained")
    colors = plt.get_cmap("tab10").colors
    for index, method in enumerate(methods):
        color = colors[index % len(colors)]
        for position, setting in enumerate(settings):
            x = position - 0.4 + width * (index + 0.5)
            row = setting_rows(deltas, setting)
            row = row[row["method"] == method]
            if row.empty or row.iloc[0]["n_seeds"] == 0:
                axis.text(x, 0.0, MISSING_NOTE, rotation=90, ha="center", va="bottom", fontsize=7, color=color)
                continue
            row = row.iloc[0]
            axis.bar(x, row["mean"], width=width * 0.9, color=color, alpha=0.75,
                     label=method_name(method) if position == 0 else None)
            seeds = setting_rows(values, setting)
            seeds = seeds[(seeds["method"] == method) & (seeds["row"] == "delta")]["value"]
            axis.scatter(np.full(len(seeds), x), seeds, s=10, color="black", alpha=0.6, zorder=3)
            note = f"n={row['n_seeds']}"
            top = max(row["mean"], seeds.max())
            if not math.isnan(row["ci_low"]):
                lower, upper = np.clip([row["ci_low"], row["ci_high"]], *GAIN_RANGE)
                axis.errorbar(x, row["mean"], yerr=[[row["mean"] - lower], [upper - row["mean"]]],
                              color="black", capsize=3, linewidth=1)
                top = max(top, upper)
                if row["ci_low"] <= 0.0 <= row["ci_high"]:
                    note += f"\n{NOT_SIGNIFICANT}"
            axis.annotate(note, (x, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                          fontsize=7)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xlim(-0.5, len(settings) - 0.5)
    axis.set_xticks(range(len(settings)), [setting_name(*setting, separator="\n") for setting in settings])
    axis.set_ylabel("accuracy gain, HDL − baseline (points)")
    axis.set_title(f"HDL gain per method and setting, paired per seed\nbar: mean; whisker: {CONFIDENCE:.0%} CI, "
                   f"paired t over the n seeds\ndots: seeds; {NOT_SIGNIFICANT}: the interval contains 0", fontsize=10)
    low, high = axis.get_ylim()
    axis.set_ylim(low, high + 0.12 * (high - low))  # room for the n labels above the whiskers
    axis.grid(axis="y", alpha=0.3)
    # Labels even for methods whose every cell is missing, so the legend names them all.
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i % len(colors)], alpha=0.75) for i in range(len(methods))]
    axis.legend(handles, [method_name(method) for method in methods], fontsize=9, loc="upper left",
                bbox_to_anchor=(1.0, 1.0), frameon=False)
    save_figure(fig, path)


def plot_pseudo_label_accuracy(relabels: pd.DataFrame, grid: pd.DataFrame, round_: int, path: Path) -> None:
    """Accuracy vs coverage of each labeler (``coverage_curve``; HDL's ranked by the selection's confidence, by
    labeling order in older relabel.json files), mean over seeds, and a star at the stage-2 selection's mean
    coverage and true accuracy where relabel.json records one; rows: settings, columns: methods."""
    settings, methods = settings_of(grid), list(dict.fromkeys(grid["method"]))
    fig, axes = panel_grid(len(settings) * len(methods), columns=len(methods), width=3.8, height=3.2)
    chosen = relabels[relabels["round"] == round_] if not relabels.empty else relabels
    labelers_seen, ranked_by = [], set()
    for axis, (setting, method) in zip(axes, [(s, m) for s in settings for m in methods]):
        runs = setting_rows(chosen, setting) if not chosen.empty else chosen
        runs = runs[runs["method"] == method] if not runs.empty else runs
        axis.set_title(f"{setting_name(*setting)}\n{method_name(method)} (n={len(runs)})", fontsize=9)
        axis.set_xlabel("coverage (% of unlabeled)")
        axis.set_ylabel("pseudo-label accuracy (%)")
        axis.grid(alpha=0.3)
        curves = [run.get("coverage_curve", {}) for run in runs["record"]] if not runs.empty else []
        if not any(curves):
            mark_empty(axis, "no relabel.json")
            continue
        ranked_by |= {(record.get("selection") or {}).get("confidence", "rank") for record in runs["record"]}
        labelers = [name for name in LABELER_ORDER if any(name in curve for curve in curves)]
        labelers += sorted({name for curve in curves for name in curve} - set(labelers))
        for labeler in labelers:
            averaged = mean_curve([curve[labeler] for curve in curves if labeler in curve])
            if averaged is None:
                continue
            coverage, mean, std = averaged
            style = LABELER_STYLE.get(labeler, {})
            axis.plot(coverage, mean, marker="o" if len(coverage) == 1 else None, **style)
            axis.fill_between(coverage, *band(mean, std, ACCURACY_RANGE), color=style.get("color"), alpha=0.15, linewidth=0)
            if labeler not in labelers_seen:
                labelers_seen.append(labeler)
        selected = mean_selection(runs["record"])
        if selected is not None:
            axis.plot(*selected, **LABELER_STYLE[SELECTED])
            if SELECTED not in labelers_seen:
                labelers_seen.append(SELECTED)
    figure_legend(fig, [(labeler_name(name) + f", ranked by {'/'.join(sorted(ranked_by))}" * (name == "hdl"),
                   LABELER_STYLE.get(name, {})) for name in labelers_seen])
    fig.suptitle(f"Pseudo-label accuracy vs coverage, round {round_}\n"
                 "(each labeler's most confident samples first; mean ± std over seeds)", fontsize=11)
    save_figure(fig, path)


def plot_training_curves(metrics: pd.DataFrame, grid: pd.DataFrame, path: Path) -> None:
    """Top-1 vs step: stage 1, then each stage-2 variant over its rounds; mean ± std over seeds."""
    settings, methods = settings_of(grid), list(dict.fromkeys(grid["method"]))
    fig, axes = panel_grid(len(settings) * len(methods), columns=len(methods), width=3.8, height=3.2)
    for axis, (setting, method) in zip(axes, [(s, m) for s in settings for m in methods]):
        runs = setting_rows(metrics, setting)
        runs = runs[runs["method"] == method]
        axis.set_title(f"{setting_name(*setting)}\n{method_name(method)} (n={runs['seed'].nunique()})", fontsize=9)
        axis.set_xlabel("training step")
        axis.set_ylabel("test top-1 (%)")
        axis.grid(alpha=0.3)
        if runs.empty:
            mark_empty(axis, "no metrics.json")
            continue
        histories = histories_on_one_axis(runs)
        for variant, style in VARIANT_STYLE.items():
            curve = histories[histories["variant"] == variant]
            if curve.empty:
                continue
            by_step = curve.groupby("step")["top1"].agg(["mean", "std"]).fillna({"std": 0.0})
            axis.plot(by_step.index, by_step["mean"], color=style["color"], linewidth=1.6)
            axis.fill_between(by_step.index, *band(by_step["mean"], by_step["std"], ACCURACY_RANGE),
                              color=style["color"], alpha=0.2, linewidth=0)
    figure_legend(fig, [(style["label"], {"color": style["color"]}) for style in VARIANT_STYLE.values()])
    fig.suptitle("Training curves: stage 1, then stage 2 with and without HDL labels\n(mean ± std over seeds)",
                 fontsize=11)
    save_figure(fig, path)


def settings_of(frame: pd.DataFrame) -> list[tuple]:
    return list(dict.fromkeys(zip(*(frame[column] for column in SETTING))))


def setting_rows(frame: pd.DataFrame, setting: tuple) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in zip(SETTING, setting):
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def panel_grid(count: int, columns: int, width: float, height: float):
    columns = max(columns, 1)
    rows = max(math.ceil(count / columns), 1)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.9),
                             layout="constrained", squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return fig, list(axes.flat[:count])


def figure_legend(fig, entries: list[tuple[str, dict]]) -> None:
    handles = [plt.Line2D([], [], **style) for _, style in entries]
    fig.legend(handles, [label for label, _ in entries], loc="outside lower center",
               ncols=min(len(entries), LEGEND_COLUMNS), fontsize=9, frameon=False)


def mark_empty(axis, note: str) -> None:
    axis.text(0.5, 0.5, note, ha="center", va="center", transform=axis.transAxes, color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
