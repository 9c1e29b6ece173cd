"""The label probe's figure: pseudo-label accuracy against training step, embeddings (HDL) against logits (argmax).

metrics.json's ``probes`` (``hdl.training.probe``) hold, every ``probe_every`` steps of a
run, the accuracy of the EMA model's argmax and of HDL on its embeddings on the run's
unlabeled training samples.  Stage 2 probes at the method's global step, which continues
stage 1's, so stage 1 and both stage-2 variants share one time axis.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hdl.report.collect import STAGE1_VARIANT
from hdl.report.curves import ACCURACY_RANGE, band
from hdl.report.display import labeler_name, method_name, setting_name
from hdl.report.plots import LABELER_STYLE, figure_legend, mark_empty, panel_grid, save_figure, setting_rows, settings_of

#: the probe's quantities drawn, one column each, as (coverage, key of its score, title): all of a labeler's
#: labels, its most confident 30%, and all its labels in the tail classes (long-tailed settings only)
PANELS = {
    "full": ("full", "accuracy", "all labels"),
    "top30": ("top30", "accuracy", "most confident 30%"),
    "tail": ("full", "tail", "tail classes, all labels"),
}
#: columns whose curves lie near 100% (each labeler's most confident labels are nearly all right): their
#: y-axis spans the bands drawn (zoomed_limits), where 0-100% would draw every curve on the frame
ZOOMED_PANELS = ("top30",)
#: the least margin (points) a zoomed axis leaves around the bands
ZOOM_MARGIN = 0.5
LABELERS = ("hdl", "argmax")
VARIANT_LINES = {
    STAGE1_VARIANT: {"linestyle": "-", "label": "stage 1"},
    "hdl": {"linestyle": "--", "label": "stage 2 with HDL labels"},
    "baseline": {"linestyle": ":", "label": "stage 2 baseline (no HDL labels)"},
}
COLUMNS = ["seed", "variant", "global_step", "labeler", "coverage", "accuracy"]


def probe_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Every probe of ``runs`` (metrics frame rows) as rows of COLUMNS, accuracy in percent."""
    rows = [
        {"seed": run.seed, "variant": run.variant, "global_step": probe["global_step"], "labeler": labeler,
         "coverage": panel, "accuracy": 100.0 * probe[labeler][coverage][key]}
        for run in runs.itertuples(index=False)
        for probe in run.record.get("probes", [])
        for labeler in LABELERS
        for panel, (coverage, key, _) in PANELS.items()
        if probe[labeler][coverage].get(key) is not None
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def seed_band(rows: pd.DataFrame) -> pd.DataFrame:
    """Per global step: mean over seeds, and the band mean ± sample std (0 with one seed) clipped to [0, 100]."""
    by_step = rows.groupby("global_step")["accuracy"].agg(["mean", "std"]).fillna({"std": 0.0})
    by_step["low"], by_step["high"] = band(by_step["mean"], by_step["std"], ACCURACY_RANGE)
    return by_step


def zoomed_limits(bands: list[pd.DataFrame]) -> tuple[float, float]:
    """y-limits around the bands' lows and highs, with a tenth of their span or ZOOM_MARGIN, whichever
    is larger, on each side, within ACCURACY_RANGE."""
    low = min(float(band["low"].min()) for band in bands)
    high = max(float(band["high"].max()) for band in bands)
    margin = max(0.1 * (high - low), ZOOM_MARGIN)
    return max(low - margin, ACCURACY_RANGE[0]), min(high + margin, ACCURACY_RANGE[1])


def plot_probe_accuracy(metrics: pd.DataFrame, grid: pd.DataFrame, path: Path) -> None:
    """Rows: setting and method; columns: PANELS. Lines: HDL and argmax per stage and variant."""
    settings, methods = settings_of(grid), list(dict.fromkeys(grid["method"]))
    panels = [(setting, method, coverage) for setting in settings for method in methods for coverage in PANELS]
    fig, axes = panel_grid(len(panels), columns=len(PANELS), width=4.6, height=3.3)
    for axis, (setting, method, coverage) in zip(axes, panels):
        runs = setting_rows(metrics, setting) if not metrics.empty else metrics
        runs = runs[runs["method"] == method] if not runs.empty else runs
        rows = probe_rows(runs) if not runs.empty else pd.DataFrame(columns=COLUMNS)
        axis.set_title(f"{setting_name(*setting)}\n{method_name(method)}, {PANELS[coverage][2]} "
                       f"(n={rows['seed'].nunique()})", fontsize=9)
        axis.set_xlabel("training step (stage 2 continues stage 1)")
        axis.set_ylabel("pseudo-label accuracy (%" + (", zoomed)" if coverage in ZOOMED_PANELS else ")"))
        axis.grid(alpha=0.3)
        rows = rows[rows["coverage"] == coverage]
        if rows.empty:
            mark_empty(axis, "balanced: no tail" if coverage == "tail" and setting[-1] == 1 else "no probes in metrics.json")
            continue
        stage1 = rows[rows["variant"] == STAGE1_VARIANT]
        stage1_end = stage1[stage1["global_step"] == stage1["global_step"].max()]
        bands = []
        for variant, line in VARIANT_LINES.items():
            for labeler in LABELERS:
                curve = rows[(rows["variant"] == variant) & (rows["labeler"] == labeler)]
                if curve.empty:
                    continue
                if variant != STAGE1_VARIANT:  # stage 2 starts from stage 1's last model
                    curve = pd.concat([stage1_end[stage1_end["labeler"] == labeler], curve])
                band, color = seed_band(curve), LABELER_STYLE[labeler]["color"]
                bands.append(band)
                axis.plot(band.index, band["mean"], color=color, linestyle=line["linestyle"], linewidth=1.6)
                axis.fill_between(band.index, band["low"], band["high"], color=color, alpha=0.15, linewidth=0)
        if not stage1.empty and len(rows) > len(stage1):
            axis.axvline(stage1["global_step"].max(), color="0.5", linewidth=0.8)
        axis.set_ylim(*(zoomed_limits(bands) if coverage in ZOOMED_PANELS and bands else ACCURACY_RANGE))
    entries = [(labeler_name(labeler), {"color": LABELER_STYLE[labeler]["color"]}) for labeler in LABELERS]
    entries += [(line["label"], {"color": "black", "linestyle": line["linestyle"]}) for line in VARIANT_LINES.values()]
    figure_legend(fig, entries)
    fig.suptitle("Pseudo-label accuracy on the unlabeled training samples through training:\n"
                 "HDL on the embeddings against the argmax of the logits\n"
                 "(mean over seeds, band ± std; grey line: end of stage 1)", fontsize=11)
    save_figure(fig, path)
