"""`hdl split`: write one grid cell's labeled and unlabeled indices."""

from __future__ import annotations

import argparse

from hdl.cell import Cell
from hdl.cli_options import add_data_arguments, load_data
from hdl.data.datasets import DATASET_NAMES
from hdl.data.splits import make_split, save_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_NAMES)}")
    parser.add_argument("--labels", type=int, required=True,
                        help="balanced: total labeled budget (N/C per class); long-tailed: N_1, the head class's count")
    parser.add_argument("--imbalance", type=float, default=1.0, help="imbalance factor IF (1 = balanced)")
    parser.add_argument("--seed", type=int, default=0, help="which samples are drawn")
    parser.add_argument("--out", required=True, help="output .npz with labeled_idx, unlabeled_idx and the cell it was made for")
    parser.add_argument("--unlabeled-ratio", type=float, default=2.0,
                        help="long-tailed only: M_1 = ratio * N_1 unlabeled samples in the head class")
    parser.add_argument("--unlabeled-imbalance", type=float,
                        help="long-tailed only: the unlabeled set's own imbalance factor (1: balanced); default: --imbalance")
    parser.add_argument("--include-labeled", action="store_true",
                        help="also put the labeled samples into the unlabeled set (as FixMatch does)")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    dataset = load_data(args)
    split = make_split(
        dataset.train_labels,
        dataset.num_classes,
        args.labels,
        args.imbalance,
        args.seed,
        args.unlabeled_ratio,
        args.include_labeled,
        args.unlabeled_imbalance,
    )
    save_split(args.out, split, Cell(args.dataset, args.labels, args.imbalance, args.seed, dataset.num_classes))
    print(f"labeled per class:   {split.labeled_counts(dataset.train_labels, dataset.num_classes)}")
    pool = split.pool_count(dataset.train_labels)
    print(f"unlabeled per class: {split.unlabeled_counts(dataset.train_labels, dataset.num_classes)}"
          + (f", and {pool} of the unlabeled pool (no class)" if pool else ""))
    print(f"wrote {args.out}: {len(split.labeled_idx)} labeled, {len(split.unlabeled_idx)} unlabeled")
    return 0
