"""Readers of per-sample arrays: `hdl embed`'s embeddings (or a bare .npy of them) and `hdl relabel`'s output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdl.cell import Cell
from hdl.data.dataset import NO_LABEL
from hdl.files.checks import integers, numbers, preview, recorded_cell
from hdl.files.opening import Source, load_numpy, open_npz


#: the arrays of `hdl embed`'s .npz that `hdl relabel` reads, and what each must be
RELABEL_ARRAYS = {
    "embeddings": "(N, d) numbers",
    "labels": "(N,) integers, -1 for unlabeled",
    "probs": "(N, C) probabilities",
    "truth": "(N,) integer true labels, -1 for a pool sample without one",
    "index": "(N,) distinct training-set indices",
}
RELABEL_OUTPUT_ARRAYS = ("labels", "level", "agreement", "rank", "index")

EMBEDDINGS_REMEDY = "write it with `hdl embed --checkpoint ... --split ... --out FILE`, or pass an (N, d) .npy"
RELABEL_REMEDY = "write it again with `hdl relabel`"


def _relabel_array(source: Source, name: str, values: np.ndarray, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """One of :data:`RELABEL_ARRAYS`, checked on its own (``n`` rows and ``num_classes`` where known)."""
    if name == "embeddings":
        embeddings = numbers(source, name, values, shape=(None, None))
        if len(embeddings) < 2:
            raise source.error(f"embeddings has {len(embeddings)} rows; HDL needs at least 2 samples")
        zero_rows = np.flatnonzero(~embeddings.any(axis=1))
        if len(zero_rows):
            raise source.error(f"embeddings has {len(zero_rows)} all-zero rows {preview(zero_rows)}; cosine similarity is undefined there")
        return embeddings
    if name == "probs":
        return numbers(source, name, values, shape=(n, num_classes), low=0.0, high=1.0)
    classes = f" for {num_classes} classes" if num_classes is not None else ""
    if name == "labels":
        return integers(source, name, values, length=n, low=-1, high=num_classes, bound=classes)
    if name == "truth":
        return integers(source, name, values, length=n, low=NO_LABEL, high=num_classes, bound=classes)
    return integers(source, name, values, length=n, low=0, unique=True)


def read_embeddings(path: str | Path, flag: str = "--embeddings") -> tuple[dict[str, np.ndarray], Cell | None]:
    """The arrays of `hdl embed`'s .npz (those of :data:`RELABEL_ARRAYS` it has) or an .npy of embeddings, each checked, and the recorded cell."""
    source = Source.of(path, flag, EMBEDDINGS_REMEDY)
    loaded = load_numpy(source)
    if not isinstance(loaded, dict):
        return {"embeddings": _relabel_array(source, "embeddings", loaded)}, None
    if "embeddings" not in loaded:
        raise source.error(f"no embeddings array (it has {', '.join(loaded) or 'none'})")
    cell = recorded_cell(source, loaded)
    num_classes = None if cell is None else cell.num_classes
    embeddings = _relabel_array(source, "embeddings", loaded["embeddings"])
    arrays = {"embeddings": embeddings}
    for name in RELABEL_ARRAYS:
        if name in loaded and name != "embeddings":
            arrays[name] = _relabel_array(source, name, loaded[name], len(embeddings), num_classes)
    return arrays, cell


def read_array(path: str | Path, flag: str, name: str) -> np.ndarray:
    """One of :data:`RELABEL_ARRAYS` from its own .npy (``hdl relabel --labels/--probs/--truth``)."""
    source = Source.of(path, flag, f"pass an .npy of {RELABEL_ARRAYS[name]}")
    loaded = load_numpy(source)
    if isinstance(loaded, dict):
        raise source.error(f"an .npz (with {', '.join(loaded)}), not a single .npy array")
    return _relabel_array(source, name, loaded)


def read_relabel_output(path: str | Path, flag: str | None = None) -> tuple[dict[str, np.ndarray], Cell | None]:
    """`hdl relabel --out`'s arrays (labels, level, agreement, rank, index) and the recorded cell."""
    source = Source.of(path, flag, RELABEL_REMEDY)
    arrays = open_npz(source, RELABEL_OUTPUT_ARRAYS)
    cell = recorded_cell(source, arrays)
    index = integers(source, "index", arrays["index"], low=0, unique=True)
    n, num_classes = len(index), None if cell is None else cell.num_classes
    return {
        "labels": integers(source, "labels", arrays["labels"], length=n, low=-1, high=num_classes),
        "level": integers(source, "level", arrays["level"], length=n, low=-1),
        "agreement": numbers(source, "agreement", arrays["agreement"], shape=(n,), low=0.0, high=1.0),
        "rank": integers(source, "rank", arrays["rank"], length=n, low=-1),
        "index": index,
    }, cell

