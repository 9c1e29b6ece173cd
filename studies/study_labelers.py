"""The pre-registered labeler study (docs/results.md, "Pre-registered: which labeler earns the gain"): stage 2
on the labels of HDL, a plain k-NN vote, label propagation and the classifier's argmax, all under the same
selection, weights and refresh, and on the true labels of the same samples (the ceiling, an oracle), each
against the paired baseline, in (a) balanced and (b) long-tailed Fashion-MNIST.

    python studies/study_labelers.py --setting a=runs/labelers-a --setting b=runs/labelers-b

Run it after each setting's workflow (stage 1, the embeddings, the baseline and the ``hdl`` variant, which
are the study's baseline and hdl): it runs the other variants from the same stage-1 checkpoints under
SETTING_DIR/results/labelers/<cell>/<variant>/ (a finished run is read back), then prints the tables and
the protocol's decisions. Nothing is tuned; every value is config/study_labelers.yaml's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hdl import workflow
from hdl.io import atomic_path, save_npz
from hdl.report.stats import paired_t_interval
from stage2_runs import cell_of, stage2_command
from study_trust import Setting, gains_against, print_accuracies, print_gains, print_kept, print_refreshes, run_all, run_planned
from tune_selection import tail_classes

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "study_labelers.yaml"
#: the labelers this script runs; HDL's runs are the workflow's own hdl variant
OTHER_LABELERS = ("knn_vote", "label_propagation", "argmax")
CEILING = "ceiling (oracle)"
#: what the protocol's wall-time estimate dropped, per setting, in its stated order
DROPPED = {"b": ("knn_vote", CEILING)}
WORKFLOW_VARIANTS = {"baseline": "baseline", "hdl": "hdl"}


def variants_of(setting: str) -> list[str]:
    """The variants a setting reports, HDL first; the ceiling last (it is not a labeler)."""
    return [name for name in ("hdl", *OTHER_LABELERS, CEILING) if name not in DROPPED.get(setting, ())]


def true_label_ceiling(setting: Setting) -> list[dict]:
    """Per cell, stage 2 on the unlabeled samples the hdl variant's labels start with, each with its true label
    and weight one, without refresh (true labels do not change): the headroom any labeler could reach."""
    jobs = []
    flags = shlex.split(workflow.relabel_flags({"hdl": setting.hdl}))
    for cell, cell_dir, stage1 in setting.cells:
        round_dir = cell_dir / "round~1"
        folder = setting.study_runs / cell / CEILING
        extra = folder / "extra_labels.npz"
        if not extra.exists():
            folder.mkdir(parents=True, exist_ok=True)
            save_npz(extra, **ceiling_labels(round_dir / "extra_labels.npz", round_dir / "embed.npz"))
        with np.load(extra) as labels:
            kept = len(labels["index"])
        row = cell_of(stage1) | {"setting": setting.name, "variant": CEILING, "tail": tail_classes(round_dir / "embed.npz"),
                                 "folder": str(folder), "kept": kept, "kept_accuracy": 100.0}
        command = stage2_command(stage1, cell_dir / "stage1" / "checkpoint.pt", setting.steps, folder / "stage2",
                                 extra_labels=extra, flags=flags)
        jobs.append((row, command, folder / "stage2"))
    return jobs


def ceiling_labels(hdl_extra_labels: Path, embed: Path) -> dict[str, np.ndarray]:
    """``hdl_extra_labels`` (an `hdl relabel --extra-labels-out` file) with every label replaced by the sample's true
    label (``truth`` of `hdl embed`'s ``embed``, matched by dataset index) and every weight by one; samples of an
    unlabeled pool, which have no true label, are left out."""
    with np.load(hdl_extra_labels) as kept, np.load(embed) as embedded:
        arrays = {key: kept[key] for key in kept.files}
        rows = np.searchsorted(embedded["index"], arrays["index"])
        if not np.array_equal(embedded["index"][rows], arrays["index"]):
            raise SystemExit(f"{hdl_extra_labels}: indices that {embed} does not hold")
        truth = embedded["truth"][rows].astype(np.int64)
    known = truth >= 0  # a pool sample has no true label to give it
    arrays |= {"index": arrays["index"][known], "label": truth[known], "weight": np.ones(int(known.sum()), dtype=np.float32)}
    return arrays


def labeler_rows(setting: Setting, jobs: int) -> list[dict]:
    """The workflow's baseline and hdl runs and this script's runs of the setting's other variants."""
    rows = setting.workflow_rows(WORKFLOW_VARIANTS)
    others = [name for name in OTHER_LABELERS if name in variants_of(setting.name)]
    every = setting.hdl["refresh_every"]
    rows += run_all(setting, {name: (setting.hdl | {"labeler": name}, every) for name in others}, jobs)
    if CEILING in variants_of(setting.name):
        rows += run_planned(setting, true_label_ceiling(setting), jobs)
    return rows


def ceiling_shares(gains: pd.DataFrame, labelers: list[str]) -> pd.DataFrame:
    """Per setting and method, each labeler's mean gain over the baseline as a share (%) of the ceiling's."""
    overall = gains["overall"]
    by_group = overall.groupby(level=["setting", "method"], sort=False).mean()
    shares = by_group[labelers].div(by_group[CEILING], axis=0) * 100
    return shares.round(1)


def decisions(gains: pd.DataFrame, against_hdl: pd.DataFrame, settings: list[str]) -> list[str]:
    """The protocol's decisions, as sentences: a balanced-setting override where HDL − baseline pooled over (a)
    lies below 0; a labeler named where it beats HDL with a pooled interval above 0 in every setting."""
    said = []
    if "a" in settings:
        low, high, _ = paired_t_interval(gains["overall"].xs("a", level="setting")["hdl"])
        if high < 0:
            said.append(f"HDL − baseline pooled over (a) is [{low:+.2f}, {high:+.2f}], below 0: the default grid's balanced "
                        "settings must not train on HDL's labels this way (per-setting hdl override)")
    for labeler in OTHER_LABELERS:
        if labeler not in against_hdl["overall"].columns:
            continue
        lows = [paired_t_interval(against_hdl["overall"].xs(name, level="setting")[labeler].dropna())[0] for name in settings]
        if len(lows) == len(settings) and all(low > 0 for low in lows):
            said.append(f"{labeler} beats HDL with a pooled interval above 0 in every setting: HDL's own design is not "
                        "what gains here")
    return said or ["no decision fires: report what was found, gain or no gain"]


def plot_gain_against_label_accuracy(frame: pd.DataFrame, gains: pd.DataFrame, path: Path) -> None:
    """Stage-2 gain over the baseline against the accuracy of the labels stage 2 started with, one point per cell
    and variant, the ceiling (an oracle, all labels true) marked apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = ["setting", "dataset", "labels", "imbalance", "method", "seed"]
    accuracy = frame.pivot_table(index=index, columns="variant", values="kept_accuracy", aggfunc="first")
    settings = sorted(frame["setting"].unique())
    figure, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4.2), squeeze=False)
    for axis, setting in zip(axes[0], settings):
        for variant in variants_of(setting):
            gain = gains["overall"][variant].xs(setting, level="setting")
            label_accuracy = accuracy[variant].xs(setting, level="setting").reindex(gain.index)
            oracle = variant == CEILING
            axis.scatter(label_accuracy, gain, label=variant, marker="*" if oracle else "o", s=120 if oracle else 30,
                         edgecolors="black" if oracle else "none")
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set(title=f"setting {setting}", xlabel="accuracy of the labels stage 2 starts with (%)",
                 ylabel="stage 2 − paired baseline (points)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def report(settings: list[Setting], jobs: int, figure: Path | None = None, cells: Path | None = None) -> int:
    frame = pd.concat([pd.DataFrame(labeler_rows(setting, jobs)) for setting in settings])
    names = [setting.name for setting in settings]
    everything = list(dict.fromkeys(variant for name in names for variant in variants_of(name)))
    gains = gains_against(frame, everything)
    title = "Variant − paired baseline (points, mean [95% paired-t interval]); the ceiling is an oracle (true labels)"
    print_gains(gains, everything, ["setting", "method"], title + ", per setting and method")
    print_gains(gains, everything, ["setting"], title + ", pooled per setting")
    others = [name for name in OTHER_LABELERS if name in everything]
    against_hdl = gains_against(frame, others, reference="hdl")
    print_gains(against_hdl, others, ["setting", "method"], "HDL − each other labeler, as variant − hdl "
                "(a negative value: HDL is ahead), per setting and method", reference="hdl")
    print_gains(against_hdl, others, ["setting"], "The same, pooled per setting", reference="hdl")
    if CEILING in everything:
        labelers = [name for name in everything if name != CEILING]
        print("\nShare of the ceiling's (oracle's) mean gain each labeler reaches (%), per setting and method\n")
        print(ceiling_shares(gains, labelers).to_string())
    print_accuracies(frame)
    labeled = frame[frame["variant"] != CEILING]
    print("\nCoverage of the unlabeled samples by the labels stage 2 starts with, their accuracy and the stage-1 argmax's "
          "at the same coverage (%), mean over seeds\n")
    print(labeled.groupby(["setting", "method", "variant"], sort=False)[["coverage", "kept_accuracy", "argmax_accuracy"]]
          .mean().round(1).to_string())
    print_kept(labeled)
    print_refreshes(frame)
    for line in decisions(gains, against_hdl, names):
        print(f"\ndecision: {line}")
    if figure is not None:
        plot_gain_against_label_accuracy(frame, gains, figure)
    if cells is not None:
        columns = [column for column in ("folder", "refreshes", "per_class_kept", "per_class_kept_accuracy") if column in frame]
        with atomic_path(cells) as tmp:
            frame.drop(columns=columns).to_csv(tmp, index=False)
        print(f"wrote {cells}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=FOLDER",
                        help="a setting (a or b) and the folder its workflow ran in (snakemake --directory)")
    parser.add_argument("--jobs", type=int, default=2, help="stage-2 runs at a time (one CPU thread each)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the settings' workflow config (its hdl block, stage2_steps)")
    parser.add_argument("--figure", type=Path, help="write the gain against label accuracy plot here (PNG)")
    parser.add_argument("--cells", type=Path, help="write every run's test accuracy and labels here (CSV)")
    args = parser.parse_args()
    settings = [Setting(*assignment.split("=", 1), config=args.config.resolve(), study="labelers") for assignment in args.setting]
    return report(settings, args.jobs, args.figure and args.figure.resolve(), args.cells and args.cells.resolve())


if __name__ == "__main__":
    sys.exit(main())
