"""Load and check the arrays `hdl relabel` works on; every problem is a UserError naming its fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdl.errors import UserError


@dataclass(frozen=True)
class RelabelInputs:
    embeddings: np.ndarray  # float32 (N, d)
    labels: np.ndarray  # int64 (N,), -1 for unlabeled
    n_classes: int
    index: np.ndarray  # int64 (N,), the samples' indices in the train set
    probs: np.ndarray | None  # float32 (N, C)
    truth: np.ndarray | None  # int64 (N,)


def load_inputs(
    embeddings_path: str,
    labels_path: str | None = None,
    probs_path: str | None = None,
    truth_path: str | None = None,
    n_classes: int | None = None,
) -> RelabelInputs:
    """Arrays from ``.npy`` files, or from the ``.npz`` of `hdl embed` (explicit paths override its keys)."""
    bundle = _load(embeddings_path)
    if isinstance(bundle, dict):
        if "embeddings" not in bundle:
            raise UserError(f"{embeddings_path} has no 'embeddings' array; pass the .npz written by `hdl embed` or an .npy")
        embeddings = bundle["embeddings"]
    else:
        bundle, embeddings = {}, bundle
    labels = _load(labels_path) if labels_path else bundle.get("labels")
    if labels is None:
        raise UserError(f"no labels: pass --labels y.npy (int labels, -1 for unlabeled); {embeddings_path} has none")
    probs = _load(probs_path) if probs_path else bundle.get("probs")
    truth = _load(truth_path) if truth_path else bundle.get("truth")
    index = bundle.get("index")
    return check_inputs(embeddings, labels, probs, truth, index, n_classes)


def check_inputs(
    embeddings: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    index: np.ndarray | None = None,
    n_classes: int | None = None,
) -> RelabelInputs:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or not np.issubdtype(embeddings.dtype, np.number):
        raise UserError(f"embeddings must be a numeric (N, d) array with N >= 2, got shape {embeddings.shape}")
    n = embeddings.shape[0]
    bad_rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(bad_rows):
        raise UserError(f"embeddings have NaN or infinite values in {len(bad_rows)} rows (first: row {bad_rows[0]}); fix or drop them")
    zero_rows = np.flatnonzero(~embeddings.any(axis=1))
    if len(zero_rows):
        raise UserError(f"embeddings have {len(zero_rows)} all-zero rows (first: row {zero_rows[0]}); cosine similarity is undefined there")
    labels = _integer_vector(labels, "labels", n)
    truth = None if truth is None else _integer_vector(truth, "truth", n)
    index = np.arange(n, dtype=np.int64) if index is None else _integer_vector(index, "index", n)
    if probs is not None:
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[0] != n:
            raise UserError(f"probs must have shape (N={n}, C), got {probs.shape}; pass probabilities for the same samples")
        if not np.isfinite(probs).all():
            raise UserError("probs have NaN or infinite values; pass softmax probabilities")
        if n_classes is not None and probs.shape[1] != n_classes:
            raise UserError(f"probs have {probs.shape[1]} columns but --num-classes is {n_classes}")
        probs = probs.astype(np.float32)
    if n_classes is None:
        n_classes = probs.shape[1] if probs is not None else int(max(labels.max(), -1 if truth is None else truth.max())) + 1
    for name, values, low in (("labels", labels, -1), ("truth", truth, 0)):
        if values is not None and ((values < low).any() or (values >= n_classes).any()):
            raise UserError(f"{name} must lie in [{low}, {n_classes - 1}] for {n_classes} classes; got range [{values.min()}, {values.max()}]")
    if not (labels >= 0).any():
        raise UserError("labels has no labeled sample (all -1); HDL needs at least one label per class")
    missing = np.flatnonzero(np.bincount(labels[labels >= 0], minlength=n_classes) == 0)
    if len(missing):
        raise UserError(f"classes {missing.tolist()} have no labeled sample; label at least one sample of each class (or set --num-classes)")
    return RelabelInputs(embeddings.astype(np.float32), labels, n_classes, index, probs, truth)


def check_k(k_values: list[int], n: int) -> None:
    bad = [k for k in k_values if not 1 <= k < n]
    if bad:
        raise UserError(f"k must be at least 1 and below the number of samples N={n}; got {bad}")


def _integer_vector(values: np.ndarray, name: str, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise UserError(f"{name} must have shape ({n},) to match the embeddings' {n} rows, got {values.shape}")
    if not (np.issubdtype(values.dtype, np.integer) or (np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)))):
        raise UserError(f"{name} must hold integers, got dtype {values.dtype} with non-integer values")
    return values.astype(np.int64)


def _load(path: str) -> np.ndarray | dict:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: not a readable .npy/.npz file ({error})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    return loaded
