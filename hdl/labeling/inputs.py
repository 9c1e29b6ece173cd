"""The arrays `hdl relabel` works on: each file read and checked by ``hdl.files``, then checked together here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.cell import Cell
from hdl.data.dataset import NO_LABEL
from hdl.errors import UserError
from hdl.files import preview, read_array, read_embeddings


@dataclass(frozen=True)
class RelabelInputs:
    embeddings: np.ndarray  # float32 (N, d)
    labels: np.ndarray  # int64 (N,), -1 for unlabeled
    n_classes: int
    index: np.ndarray  # int64 (N,), the samples' indices in the train set
    probs: np.ndarray | None  # float32 (N, C)
    truth: np.ndarray | None  # int64 (N,)
    cell: Cell | None = None  # what the embeddings were made for, where their .npz records it


def load_inputs(
    embeddings_path: str,
    labels_path: str | None = None,
    probs_path: str | None = None,
    truth_path: str | None = None,
    n_classes: int | None = None,
) -> RelabelInputs:
    """Arrays from ``.npy`` files, or from the ``.npz`` of `hdl embed` (explicit paths override its keys)."""
    arrays, cell = read_embeddings(embeddings_path)
    sources = dict.fromkeys(arrays, f"--embeddings {embeddings_path}")
    for name, path in (("labels", labels_path), ("probs", probs_path), ("truth", truth_path)):
        if path:
            arrays[name] = read_array(path, f"--{name}", name)
            sources[name] = f"--{name} {path}"
    if "labels" not in arrays:
        raise UserError(f"no labels: pass --labels y.npy (int labels, -1 for unlabeled); {embeddings_path} has none")
    n = len(arrays["embeddings"])
    for name, values in arrays.items():
        if len(values) != n:
            raise UserError(
                f"{sources[name]}: {name} has {len(values)} rows, but {sources['embeddings']} has {n} embeddings "
                f"(it must have shape ({n},{'' if values.ndim == 1 else ' C'})); pass {name} for the same samples"
            )
    recorded = None if cell is None else cell.num_classes
    if n_classes is not None and recorded is not None and n_classes != recorded:
        raise UserError(
            f"--embeddings {embeddings_path}: made for {cell}, but --num-classes is {n_classes}; leave --num-classes out"
        )
    probs, labels, truth = arrays.get("probs"), arrays["labels"], arrays.get("truth")
    if n_classes is None:
        n_classes = recorded or (probs.shape[1] if probs is not None else int(max(labels.max(), -1 if truth is None else truth.max())) + 1)
    if probs is not None and probs.shape[1] != n_classes:
        raise UserError(f"{sources['probs']}: probs have {probs.shape[1]} columns but there are {n_classes} classes; pass probabilities of every class")
    for name, values, low in (("labels", labels, -1), ("truth", truth, NO_LABEL)):
        if values is not None and ((values < low).any() or (values >= n_classes).any()):
            raise UserError(
                f"{sources[name]}: {name} must lie in [{low}, {n_classes - 1}] for {n_classes} classes; "
                f"got range [{values.min()}, {values.max()}]"
            )
    if not (labels >= 0).any():
        raise UserError(f"{sources['labels']}: labels has no labeled sample (all -1); HDL needs at least one label per class")
    missing = np.flatnonzero(np.bincount(labels[labels >= 0], minlength=n_classes) == 0)
    if len(missing):
        raise UserError(
            f"{sources['labels']}: {len(missing)} of {n_classes} classes have no labeled sample {preview(missing)}; "
            "label at least one sample of each class (or set --num-classes)"
        )
    index = arrays.get("index", np.arange(n, dtype=np.int64))
    return RelabelInputs(arrays["embeddings"], labels, n_classes, index, probs, truth, cell)


def check_k(k_values: list[int], n: int) -> None:
    bad = [k for k in k_values if not 1 <= k < n]
    if bad:
        raise UserError(f"k must be at least 1 and below the number of samples N={n}; got {bad}")
