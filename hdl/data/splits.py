"""Labeled/unlabeled splits of a training set: balanced budgets and the long-tailed construction.

Balanced (imbalance 1): ``n_labels`` is the total budget, ``n_labels / C`` per
class, and every other training sample is unlabeled.  Long-tailed (imbalance
IF > 1), the construction of DARP, CReST, ABC, DASO and USB's imb_algorithms:
``n_labels`` is N_1, the head class's labeled count, class k gets
``int(N_1 * IF ** (-k / (C - 1)))`` and the unlabeled set follows the same
profile from M_1 = ratio * N_1, or with its own imbalance factor
``unlabeled_imbalance`` (gamma_u; 1 gives a balanced unlabeled set: DASO's and
USB's mismatched setting).  Class 0 is the head; the seed decides which
samples are drawn.  An unlabeled pool (training samples labeled ``NO_LABEL``)
is never drawn as labeled and always joins the unlabeled set whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdl.cell import Cell
from hdl.data.dataset import NO_LABEL
from hdl.errors import UserError
from hdl.io import save_npz


def long_tailed_counts(n_max: int, imbalance: float, num_classes: int) -> list[int]:
    """Per-class counts decaying exponentially from ``n_max`` (class 0) to ``int(n_max / imbalance)``."""
    if imbalance < 1:
        raise UserError(f"imbalance factor must be >= 1, got {imbalance}")
    if num_classes == 1:
        return [int(n_max)]
    decay = (1.0 / imbalance) ** (1.0 / (num_classes - 1))
    counts = [int(n_max * decay**k) for k in range(num_classes - 1)]
    return counts + [int(n_max / imbalance)]


@dataclass(frozen=True)
class Split:
    labeled_idx: np.ndarray  # int64 indices into the training set
    unlabeled_idx: np.ndarray

    def labeled_counts(self, train_labels: np.ndarray, num_classes: int) -> list[int]:
        return np.bincount(train_labels[self.labeled_idx], minlength=num_classes).tolist()

    def unlabeled_counts(self, train_labels: np.ndarray, num_classes: int) -> list[int]:
        """Unlabeled samples per true class; those of a pool, which have none, are ``pool_count``'s."""
        labels = train_labels[self.unlabeled_idx]
        return np.bincount(labels[labels != NO_LABEL], minlength=num_classes).tolist()

    def pool_count(self, train_labels: np.ndarray) -> int:
        return int((train_labels[self.unlabeled_idx] == NO_LABEL).sum())


def make_split(
    train_labels: np.ndarray,
    num_classes: int,
    n_labels: int,
    imbalance: float = 1.0,
    seed: int = 0,
    unlabeled_ratio: float = 2.0,
    include_labeled_in_unlabeled: bool = False,
    unlabeled_imbalance: float | None = None,
) -> Split:
    """Draw the labeled and unlabeled indices of one grid cell, deterministically from ``seed``."""
    train_labels = np.asarray(train_labels)
    if imbalance == 1 and unlabeled_imbalance is not None:
        raise UserError(
            f"--unlabeled-imbalance {unlabeled_imbalance:g} needs long-tailed labels (--imbalance above 1): "
            "a balanced split's unlabeled set is every sample left"
        )
    if imbalance == 1:
        if n_labels % num_classes:
            raise UserError(
                f"--labels {n_labels} is not a multiple of the {num_classes} classes; "
                f"a balanced budget is split evenly (e.g. {num_classes * max(1, n_labels // num_classes)})"
            )
        labeled_counts = [n_labels // num_classes] * num_classes
        unlabeled_counts = None  # everything that is left
    else:
        labeled_counts = long_tailed_counts(n_labels, imbalance, num_classes)
        unlabeled_counts = long_tailed_counts(int(unlabeled_ratio * n_labels), unlabeled_imbalance or imbalance, num_classes)

    rng = np.random.default_rng(seed)
    labeled, unlabeled = [], []
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(train_labels == label))
        wanted_unlabeled = 0 if unlabeled_counts is None else unlabeled_counts[label]
        if labeled_counts[label] + wanted_unlabeled > len(members):
            raise UserError(
                f"class {label} has {len(members)} training samples, but the split asks for "
                f"{labeled_counts[label]} labeled + {wanted_unlabeled} unlabeled; lower --labels "
                f"(or --unlabeled-ratio)"
            )
        chosen = members[: labeled_counts[label]]
        rest = members[labeled_counts[label] :]
        labeled.append(chosen)
        pool = rest if unlabeled_counts is None else rest[:wanted_unlabeled]
        unlabeled.append(np.concatenate([chosen, pool]) if include_labeled_in_unlabeled else pool)
    unlabeled.append(np.flatnonzero(train_labels == NO_LABEL))
    return Split(np.sort(np.concatenate(labeled)).astype(np.int64), np.sort(np.concatenate(unlabeled)).astype(np.int64))


def save_split(path: str | Path, split: Split, cell: Cell) -> None:
    """Write ``split`` with the cell it was made for (read it back with ``hdl.files.read_split``)."""
    save_npz(path, labeled_idx=split.labeled_idx, unlabeled_idx=split.unlabeled_idx, **cell.arrays())
