"""`hdl aggregate`: results/runs -> results/tables/* and results/plots/*."""

from __future__ import annotations

import argparse
from pathlib import Path

from hdl.io import atomic_path
from hdl.report import plots
from hdl.report.probe_plot import plot_probe_accuracy
from hdl.report.probe_table import probe_display, probe_seed_values, probe_statistics
from hdl.report.refresh_plot import plot_refreshes
from hdl.report.collect import collect_runs, load_grid, within_grid
from hdl.report.per_class import per_class_display, per_class_seed_values, per_class_statistics
from hdl.report.published import attach_published, load_published
from hdl.report.render import to_latex, to_markdown
from hdl.report.stats import (
    DEFAULT_METRIC,
    METRIC_DESCRIPTIONS,
    accuracy_seed_values,
    accuracy_statistics,
    last_round,
    pseudo_label_statistics,
)
from hdl.report.tables import accuracy_caption, accuracy_csv, accuracy_display, pseudo_label_display


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="results/runs", help="the pipeline's run tree (key~value directories)")
    parser.add_argument("--grid", default=None,
                        help="CSV of expected cells (dataset, labels, imbalance, method, seed); cells without "
                             "runs show as missing, and runs of cells it does not list are left out. Default: the cells found "
                             "under --runs-dir")
    parser.add_argument("--out-dir", default="results", help="writes OUT/tables/* and OUT/plots/*")
    parser.add_argument("--metric", default=DEFAULT_METRIC, choices=list(METRIC_DESCRIPTIONS),
                        help="metrics.json key the accuracy table shows (default: %(default)s, FixMatch's "
                             "protocol: no checkpoint is selected on the test set)")


def run(args: argparse.Namespace) -> int:
    metrics, relabels = collect_runs(args.runs_dir)
    grid = load_grid(args.grid, metrics, relabels)
    metrics, relabels = within_grid(metrics, grid), within_grid(relabels, grid)
    tables_dir, plots_dir = Path(args.out_dir) / "tables", Path(args.out_dir) / "plots"
    final_round = last_round(metrics)
    rounds = list(range(1, max([final_round, 1, *relabels["round"]]) + 1))

    seed_values = accuracy_seed_values(metrics, args.metric)
    accuracy = attach_published(accuracy_statistics(seed_values, grid, args.metric), load_published())
    accuracy_table = accuracy_display(accuracy, accuracy_caption(args.metric, final_round))
    _write_csv(accuracy_csv(accuracy), tables_dir / "accuracy.csv")
    _write_text(to_markdown(accuracy_table), tables_dir / "accuracy.md")
    _write_text(to_latex(accuracy_table, label="tab:hdl-accuracy"), tables_dir / "accuracy.tex")

    pseudo_labels = pseudo_label_statistics(relabels, grid, rounds)
    _write_csv(pseudo_labels, tables_dir / "pseudo_labels.csv")
    _write_text(to_markdown(pseudo_label_display(pseudo_labels)), tables_dir / "pseudo_labels.md")

    per_class = per_class_statistics(per_class_seed_values(metrics))
    _write_csv(per_class, tables_dir / "per_class.csv")
    _write_text(to_markdown(per_class_display(per_class)), tables_dir / "per_class.md")

    probes = probe_statistics(probe_seed_values(metrics))
    _write_csv(probes, tables_dir / "probe.csv")
    _write_text(to_markdown(probe_display(probes)), tables_dir / "probe.md")

    plots.plot_accuracy(accuracy, seed_values, args.metric, plots_dir / "accuracy.png")
    plots.plot_hdl_gain(accuracy, seed_values, plots_dir / "hdl_gain.png")
    plots.plot_pseudo_label_accuracy(relabels, grid, rounds[0], plots_dir / "pseudo_label_accuracy.png")
    plots.plot_training_curves(metrics, grid, plots_dir / "training_curves.png")
    plot_probe_accuracy(metrics, grid, plots_dir / "probe_accuracy.png")
    plot_refreshes(metrics, relabels, grid, plots_dir / "refresh.png")

    finished = int((accuracy["n_seeds"] > 0).sum())
    print(f"hdl aggregate: {len(metrics)} metrics.json, {len(relabels)} relabel.json; "
          f"{finished}/{len(accuracy)} accuracy cells filled; wrote {tables_dir} and {plots_dir}")
    return 0


def _write_csv(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
