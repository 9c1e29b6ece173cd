"""`hdl train`: train one method on one grid cell; rerunning the same command resumes it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hdl.cell import Cell
from hdl.cli_options import add_data_arguments, add_device_arguments, load_data, setup_device
from hdl.errors import UserError
from hdl.files import CHECKPOINT_KEYS, read_checkpoint, read_extra_labels, read_split

if TYPE_CHECKING:
    from hdl.training.loop import Trainer
    from hdl.training.settings import RunConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hdl.data import DATASET_NAMES
    from hdl.labeling.cli import add_labeling_arguments, add_selection_arguments
    from hdl.ssl import REGISTRY
    from hdl.track import MODES

    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_NAMES)}")
    parser.add_argument("--labels", type=int, required=True, help="labeled budget, as for `hdl split`")
    parser.add_argument("--imbalance", type=float, default=1.0, help="imbalance factor IF (1 = balanced)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split (unless --split), the weights and every stream")
    parser.add_argument("--method", required=True, help=f"one of {', '.join(sorted(REGISTRY))}")
    parser.add_argument("--steps", type=int, required=True, help="optimiser steps T (the cosine schedule spans them)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt and metrics.json go here")
    parser.add_argument("--split", help="split .npz from `hdl split` of this cell (its recorded dataset, labels, imbalance and seed must match); default: made from them")
    parser.add_argument("--arch", default="wrn-28-2", help="wrn-DEPTH-WIDTH: wrn-28-2 (CIFAR-10), wrn-28-8 (CIFAR-100), wrn-10-1 (CPU)")
    parser.add_argument("--init", help="continue this run of the same method (HDL stage 2): weights, EMA, optimiser, method state, clock, LR")
    parser.add_argument("--extra-labels", help=".npz with index, label[, weight] (from `hdl relabel --extra-labels-out` of this cell and method): pseudo-labels of unlabeled samples joining the labeled stream")
    parser.add_argument("--refresh-every", type=int, default=0, metavar="E",
                        help="every E steps label the split's samples afresh with HDL on the EMA model's embeddings and probabilities, "
                             "as `hdl embed` and `hdl relabel` with the HDL and selection options below would, and train on that "
                             "selection instead of the extra labels (needs --extra-labels; default: 0, never)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override a trainer or method hyperparameter (repeatable); a wrong key lists the valid ones")
    add_data_arguments(parser)
    add_device_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    # HDL as `hdl relabel` runs it, for the label probe and --refresh-every; its seed is --seed
    add_labeling_arguments(parser)
    add_selection_arguments(parser)
    parser.add_argument("--wandb-mode", default="disabled", choices=MODES)
    parser.add_argument("--wandb-project", default="hdl")
    parser.add_argument("--wandb-group")
    parser.add_argument("--wandb-name")


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run the arguments describe, its ``--set`` values typed and checked."""
    from hdl.labeling.cli import labeling_options, selection_options
    from hdl.training.settings import RunConfig, resolve_settings

    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be at least 1")
    if args.refresh_every < 0:
        raise UserError(f"--refresh-every {args.refresh_every}: must be at least 0 (0: never)")
    if args.refresh_every and not args.extra_labels:
        raise UserError("--refresh-every replaces the extra labels during training, and this run has none: pass --extra-labels too")
    train, method_config = resolve_settings(args.method, args.assignments)
    if args.refresh_every and train.extra_labels_leave_unlabeled:
        raise UserError("--refresh-every relabels the split's unlabeled samples while they stay in the unlabeled stream: "
                        "leave --set extra_labels_leave_unlabeled at false")
    return RunConfig(
        dataset=args.dataset,
        labels=args.labels,
        imbalance=args.imbalance,
        seed=args.seed,
        method=args.method,
        arch=args.arch,
        steps=args.steps,
        split=args.split,
        init=args.init,
        extra_labels=args.extra_labels,
        train=train,
        method_config=method_config,
        labeling=labeling_options(args),
        selection=selection_options(args, has_probs=True),  # the EMA model's probabilities
        refresh_every=args.refresh_every,
    )


def build_trainer(args: argparse.Namespace) -> Trainer:
    """The Trainer the arguments describe, with its data on the chosen device (nothing trained yet)."""
    from hdl.data import make_split
    from hdl.data.augment import Augmenter
    from hdl.training.loop import Trainer
    from hdl.training.streams import TrainingData

    config = run_config(args)
    device = setup_device(args)
    dataset = load_data(args)
    cell = Cell(config.dataset, config.labels, config.imbalance, config.seed, dataset.num_classes, config.method)
    num_train = len(dataset.train_labels)
    split = (
        read_split(config.split, cell=cell, num_train=num_train)
        if config.split
        else make_split(dataset.train_labels, dataset.num_classes, config.labels, config.imbalance, config.seed)
    )
    extra = (
        read_extra_labels(config.extra_labels, cell, num_train, dataset.num_classes, split) if config.extra_labels else None
    )
    if config.init:  # the loop reads it again; this refuses a bad one before anything runs
        remedy = "stage 2 continues the same method on the same cell: pass that run's checkpoint.pt (stage 1's, or the last round's)"
        read_checkpoint(config.init, "--init", CHECKPOINT_KEYS, remedy, cell)
    mean, std = dataset.channel_stats()
    views = Augmenter(mean, std, hflip=dataset.hflip)
    data = TrainingData.build(
        dataset, split.labeled_idx, split.unlabeled_idx, views, device, extra, config.train.extra_labels_leave_unlabeled
    )
    return Trainer(config, data, device)


def run(args: argparse.Namespace) -> int:
    from hdl.track import TrackingOptions
    from hdl.training.stop_signal import EXIT_STATUS, TrainingStopped, stop_on_signal

    # from the start: a time-limit warning while the data loads stops the run after its first step
    with stop_on_signal() as stop:
        trainer = build_trainer(args)
        tracking = TrackingOptions(args.wandb_mode, args.wandb_project, args.wandb_group, args.wandb_name)
        try:
            metrics = trainer.fit(args.out, tracking, progress=not args.no_progress, stop=stop)
        except TrainingStopped as stopped:
            print(f"hdl train: {stopped}", file=sys.stderr)
            return EXIT_STATUS
    print(
        f"{args.method} {args.arch} {args.dataset}: top1 {metrics['top1']:.4f}, balanced_acc {metrics['balanced_acc']:.4f}, "
        f"median_last20_top1 {metrics['median_last20_top1']:.4f} after {metrics['steps']} steps "
        f"({metrics['seconds']:.0f} s); wrote {Path(args.out) / 'metrics.json'}"
    )
    return 0
