"""Readers of the files that say which samples a run learns from: `hdl split`'s split and `hdl relabel`'s extra labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdl.cell import Cell
from hdl.data.splits import Split
from hdl.files.checks import check_cell, integers, numbers, preview, recorded_cell
from hdl.files.opening import Source, open_npz


def read_split(
    path: str | Path,
    flag: str | None = "--split",
    cell: Cell | None = None,
    num_train: int | None = None,
    wanted_by: str = "this command",
) -> Split:
    """A split from `hdl split`; with ``cell``, refused if made for another; with ``num_train``, indices checked against it."""
    command = "hdl split" + ("" if cell is None else "".join(
        f" --{name} {value:g}" if isinstance(value, float) else f" --{name} {value}"
        for name, value in cell.known().items() if name in ("dataset", "labels", "imbalance", "seed")
    ))
    source = Source.of(path, flag, f"make {'it' if cell is None else 'the split of this cell'} with `{command} --out SPLIT.npz`")
    arrays = open_npz(source, ("labeled_idx", "unlabeled_idx"))
    check_cell(source, recorded_cell(source, arrays, legacy=True), cell, wanted_by)
    bound = "" if num_train is None else f" (the training set has {num_train} samples)"
    labeled = integers(source, "labeled_idx", arrays["labeled_idx"], low=0, high=num_train, bound=bound, unique=True)
    unlabeled = integers(source, "unlabeled_idx", arrays["unlabeled_idx"], low=0, high=num_train, bound=bound, unique=True)
    if not len(labeled):
        raise source.error("labeled_idx is empty; a split needs labeled samples")
    return Split(labeled, unlabeled)


def read_extra_labels(
    path: str | Path, cell: Cell, num_train: int, num_classes: int, split: Split, flag: str = "--extra-labels"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, label, weight) of pseudo-labels for ``split``'s unlabeled samples, made for ``cell``."""
    source = Source.of(path, flag, "write this cell's with `hdl relabel --embeddings ITS_EMBED.npz ... --extra-labels-out EXTRA.npz`")
    arrays = open_npz(source, ("index", "label"))
    check_cell(source, recorded_cell(source, arrays), cell)
    index = integers(source, "index", arrays["index"], low=0, high=num_train, bound=f" (the training set has {num_train} samples)", unique=True)
    label = integers(source, "label", arrays["label"], length=len(index), low=0, high=num_classes, bound=f" for {num_classes} classes")
    weight = (
        numbers(source, "weight", arrays["weight"], shape=(len(index),), low=0.0)
        if "weight" in arrays
        else np.ones(len(index), dtype=np.float32)
    )
    unlabeled = np.setdiff1d(split.unlabeled_idx, split.labeled_idx)
    foreign = index[~np.isin(index, unlabeled)]
    if len(foreign):
        raise source.error(f"{len(foreign)} of its {len(index)} indices are not among the split's unlabeled samples {preview(foreign)}")
    return index, label, weight

