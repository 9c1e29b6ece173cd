"""Every kind of file the `hdl` commands read, opened and checked in one place.

A file that is missing, empty, truncated or foreign (random bytes, a pickle), that lacks a
key or has the wrong dtype or shape, that holds NaN, out-of-range or repeated indices, or
that was made for another grid cell becomes a :class:`~hdl.errors.UserError`: one line that
names the file, says what is wrong and what to do.  The commands read their files here
before they write anything, so a bad file leaves no output behind.

====================  ===================================  ==================================
kind                  reader                               written by
====================  ===================================  ==================================
split .npz            :func:`read_split`                   ``hdl split``
extra labels .npz     :func:`read_extra_labels`            ``hdl relabel --extra-labels-out``
embeddings .npz/.npy  :func:`read_embeddings`,             ``hdl embed`` (or any (N, d) array
                      :func:`read_array`                   and (N,) labels)
relabel output .npz   :func:`read_relabel_output`          ``hdl relabel --out``
checkpoint .pt        :func:`read_checkpoint`              ``hdl train``
metrics.json          :func:`read_metrics`                 ``hdl train``
relabel.json          :func:`read_relabel_report`          ``hdl relabel --report``
table .csv            :func:`read_csv`                     the workflow (its grid.csv)
====================  ===================================  ==================================

Identity: splits, embeddings, HDL's labels and extra labels record the :class:`Cell` they
were made for (data set, labels, imbalance, seed, class count; from a trained model also its
method) as the JSON string ``cell``; checkpoints and metrics.json carry the same fields in
their config.  Given the cell a command is for, a reader refuses a file of another cell and
prints both.  A file without a recorded cell (written before cells were recorded) is of an
unknown cell: it is read, not compared.  Split files holding ``dataset``, ``labels``, ... as
separate arrays, as `hdl split` used to write them, are read with that identity.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from hdl.data.splits import Split
from hdl.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

#: how many ids a message lists before "..."
PREVIEW = 8
#: what `hdl train` saves in a checkpoint: what resuming and continuing (--init) read back
CHECKPOINT_KEYS = (
    "config", "step", "schedule", "last_lr", "model", "ema_model", "optimizer", "algorithm", "rng",
    "history", "last_eval", "seconds", "sizes", "tracker_id",
)
#: what `hdl embed` reads from a checkpoint
EMBED_CHECKPOINT_KEYS = ("config", "ema_model")
#: config fields a checkpoint must have, and their types
CHECKPOINT_CONFIG = {"dataset": str, "labels": int, "imbalance": float, "seed": int, "method": str, "arch": str}
#: accuracies metrics.json holds, as fractions; top1 is always there
METRICS_ACCURACIES = ("top1", "balanced_acc", "best_top1", "median_last20_top1")
#: the arrays of `hdl embed`'s .npz that `hdl relabel` reads, and what each must be
RELABEL_ARRAYS = {
    "embeddings": "(N, d) numbers",
    "labels": "(N,) integers, -1 for unlabeled",
    "probs": "(N, C) probabilities",
    "truth": "(N,) integer true labels",
    "index": "(N,) distinct training-set indices",
}
RELABEL_OUTPUT_ARRAYS = ("labels", "level", "agreement", "rank", "index")

EMBEDDINGS_REMEDY = "write it with `hdl embed --checkpoint ... --split ... --out FILE`, or pass an (N, d) .npy"
RELABEL_REMEDY = "write it again with `hdl relabel`"
METRICS_REMEDY = "delete it and rerun its `hdl train` command, which rewrites metrics.json from the run's checkpoint.pt"
RELABEL_REPORT_REMEDY = "delete it and rerun its `hdl relabel` job"
CHECKPOINT_REMEDY = "pass a checkpoint.pt written by `hdl train`"


def preview(values: Iterable) -> str:
    """``[3, 7, 9, ...]``: the first :data:`PREVIEW` of a list of ids, short enough for one line."""
    values = list(values)
    shown = ", ".join(str(value) for value in values[:PREVIEW])
    return f"[{shown}{', ...' if len(values) > PREVIEW else ''}]"


# ---------------------------------------------------------------- identity

_CELL_TYPES = {"dataset": str, "labels": int, "imbalance": float, "seed": int, "num_classes": int, "method": str}


@dataclass(frozen=True)
class Cell:
    """What a file was made for; None where the file does not say (or does not depend on it)."""

    dataset: str | None = None
    labels: int | None = None
    imbalance: float | None = None
    seed: int | None = None
    num_classes: int | None = None
    method: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Cell:
        """The cell fields of ``values`` (other keys are ignored), typed; ValueError names a field of the wrong type."""
        return cls(**{name: _typed(name, kind, values[name]) for name, kind in _CELL_TYPES.items() if values.get(name) is not None})

    def known(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    def conflicts(self, other: Cell) -> list[str]:
        """The fields both cells know and disagree on."""
        theirs = other.known()
        return [name for name, value in self.known().items() if name in theirs and theirs[name] != value]

    def arrays(self) -> dict[str, np.ndarray]:
        """``cell`` for ``np.savez``: the known fields as one JSON string, which loads without pickle."""
        return {"cell": np.array(json.dumps(self.known()))}

    def __str__(self) -> str:
        fields = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in self.known().items()]
        return ", ".join(fields) or "an unknown cell"


def cell_arrays(cell: Cell | None) -> dict[str, np.ndarray]:
    """What a writer adds to an .npz so that its readers know the cell: nothing where the cell is unknown."""
    return {} if cell is None else cell.arrays()


def _typed(name: str, kind: type, value: Any) -> Any:
    if kind is str:
        if isinstance(value, (str, np.str_)) or (isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 0):
            return str(value)
        raise ValueError(f"{name}={value!r} is not a string")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise ValueError(f"{name}={value!r} is not {'an integer' if kind is int else 'a finite number'}")
    return kind(number)


# ---------------------------------------------------------------- opening


@dataclass(frozen=True)
class _Source:
    """A file as messages name it (``--split PATH``), and what to do when it is bad."""

    path: Path
    flag: str | None
    remedy: str

    def __str__(self) -> str:
        return f"{self.flag} {self.path}" if self.flag else str(self.path)

    def error(self, problem: str) -> UserError:
        return UserError(f"{self}: {problem}; {self.remedy}")


def _source(path: str | Path, flag: str | None, remedy: str) -> _Source:
    return _Source(Path(path), flag, remedy)


def short_reason(error: BaseException, first_sentence: bool = False) -> str:
    """An exception as a short phrase on one line (library messages can span paragraphs)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if first_sentence:
        text = text.split(". ")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _require_file(source: _Source) -> None:
    if not source.path.exists():
        raise source.error("no such file")
    if not source.path.is_file():
        raise source.error("not a file")
    if source.path.stat().st_size == 0:
        raise source.error("the file is empty")


ZIP_MAGIC = b"PK\x03\x04"  # .npz files and torch checkpoints are zip archives
NPY_MAGIC = b"\x93NUMPY"
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and above


def _what_it_is(path: Path) -> str:
    """What a file that is not of the expected format looks like, from its first bytes."""
    with open(path, "rb") as handle:
        start = handle.read(8)
    if start.startswith(PICKLE_MAGIC):
        return "a Python pickle, which hdl never loads"
    if start.startswith(ZIP_MAGIC):
        return "a zip archive"
    if start.startswith(NPY_MAGIC):
        return "a single .npy array"
    return f"of an unknown format (it starts with {start!r})"


def _load_numpy(source: _Source) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy's array or an .npz's arrays, never unpickling anything."""
    _require_file(source)
    with open(source.path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if not start.startswith((ZIP_MAGIC, NPY_MAGIC)):
        raise source.error(f"not an .npy or .npz file: {_what_it_is(source.path)}")
    try:
        loaded = np.load(source.path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        return loaded
    except Exception as error:  # numpy, zipfile and zlib raise many kinds on a torn or foreign file
        if "allow_pickle" in str(error):
            raise source.error("it holds pickled Python objects (dtype object), which hdl never loads") from None
        raise source.error(f"a torn or foreign .npy/.npz file ({short_reason(error)})") from None


def _open_npz(source: _Source, keys: Iterable[str]) -> dict[str, np.ndarray]:
    loaded = _load_numpy(source)
    keys = list(keys)
    if not isinstance(loaded, dict):
        raise source.error(f"a single .npy array, not an .npz with {', '.join(keys)}")
    missing = [key for key in keys if key not in loaded]
    if missing:
        raise source.error(f"no {', '.join(missing)} array (it has {', '.join(loaded) or 'none'})")
    return loaded


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _RepeatedKey(", ".join(repeated))
    return dict(pairs)


def _open_json(source: _Source) -> dict[str, Any]:
    _require_file(source)
    try:
        record = json.loads(source.path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise source.error("not a UTF-8 text file, so not JSON") from None
    except _RepeatedKey as error:
        raise source.error(f"repeats the key(s) {error}, so one value would silently win") from None
    except (OSError, ValueError) as error:
        raise source.error(f"not valid JSON ({short_reason(error)})") from None
    if not isinstance(record, dict):
        raise source.error(f"holds a JSON {type(record).__name__}, not an object")
    return record


def _recorded_cell(source: _Source, arrays: Mapping[str, np.ndarray], legacy: bool = False) -> Cell | None:
    """The cell an .npz records (None if it records none); ``legacy``: also the separate arrays old splits hold."""
    try:
        if "cell" in arrays:
            recorded = json.loads(str(arrays["cell"]))
            if not isinstance(recorded, dict):
                raise ValueError("not a JSON object")
            return Cell.of(recorded)
        if legacy and all(name in arrays and arrays[name].ndim == 0 for name in ("dataset", "labels", "imbalance", "seed")):
            return Cell.of({name: values for name, values in arrays.items() if values.ndim == 0})
    except ValueError as error:
        raise source.error(f"its recorded cell is unreadable ({short_reason(error)})") from None
    return None


def _check_cell(source: _Source, recorded: Cell | None, wanted: Cell | None, wanted_by: str = "this command") -> None:
    if recorded is None or wanted is None:
        return
    differ = recorded.conflicts(wanted)
    if differ:
        raise source.error(f"made for {recorded}, but {wanted_by} is for {wanted} (they differ in {', '.join(differ)})")


# ---------------------------------------------------------------- arrays


def _integers(
    source: _Source,
    name: str,
    values: np.ndarray,
    *,
    length: int | None = None,
    low: int | None = None,
    high: int | None = None,
    bound: str = "",
    unique: bool = False,
) -> np.ndarray:
    """``values`` as int64, checked: 1-D (of ``length``), integers in [low, high), distinct if ``unique``."""
    values = np.asarray(values)
    if values.ndim != 1 or (length is not None and len(values) != length):
        raise source.error(f"{name} has shape {values.shape}, expected ({'N' if length is None else length},)")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise source.error(f"{name} holds NaN or infinite values")
    if values.dtype.kind not in "iu" and not (values.dtype.kind == "f" and np.array_equal(values, np.round(values))):
        raise source.error(f"{name} must hold integers, not {values.dtype} values")
    values = values.astype(np.int64)
    if len(values):
        lowest, highest = int(values.min()), int(values.max())
        if (low is not None and lowest < low) or (high is not None and highest >= high):
            allowed = f"lie in [{low}, {high - 1}]" if high is not None else f"be >= {low}"
            raise source.error(f"{name} ranges over [{lowest}, {highest}], but must {allowed}{bound}")
    if unique:
        ordered = np.sort(values)
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        if len(repeated):
            raise source.error(f"{name} repeats {len(repeated)} values {preview(repeated)}; each sample may appear once")
    return values


def _numbers(
    source: _Source,
    name: str,
    values: np.ndarray,
    *,
    shape: tuple[int | None, ...],
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """``values`` as float32, checked: numeric, of ``shape`` (None: any size), finite, within [low, high]."""
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise source.error(f"{name} must hold numbers, not {values.dtype} values")
    if values.ndim != len(shape) or any(want is not None and have != want for have, want in zip(values.shape, shape)):
        expected = ", ".join("?" if want is None else str(want) for want in shape)
        raise source.error(f"{name} has shape {values.shape}, expected ({expected}{',' if len(shape) == 1 else ''})")
    finite = np.isfinite(values).reshape(len(values), -1).all(axis=1) if values.size else np.ones(len(values), bool)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise source.error(f"{name} holds NaN or infinite values in {len(bad)} rows {preview(bad)}")
    if values.size and ((low is not None and values.min() < low) or (high is not None and values.max() > high)):
        allowed = f"lie in [{low:g}, {high:g}]" if high is not None else f"be >= {low:g}"
        raise source.error(f"{name} ranges over [{values.min():g}, {values.max():g}], but must {allowed}")
    return values.astype(np.float32, copy=False)


def _relabel_array(source: _Source, name: str, values: np.ndarray, n: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """One of :data:`RELABEL_ARRAYS`, checked on its own (``n`` rows and ``num_classes`` where known)."""
    if name == "embeddings":
        embeddings = _numbers(source, name, values, shape=(None, None))
        if len(embeddings) < 2:
            raise source.error(f"embeddings has {len(embeddings)} rows; HDL needs at least 2 samples")
        zero_rows = np.flatnonzero(~embeddings.any(axis=1))
        if len(zero_rows):
            raise source.error(f"embeddings has {len(zero_rows)} all-zero rows {preview(zero_rows)}; cosine similarity is undefined there")
        return embeddings
    if name == "probs":
        return _numbers(source, name, values, shape=(n, num_classes), low=0.0, high=1.0)
    classes = f" for {num_classes} classes" if num_classes is not None else ""
    if name == "labels":
        return _integers(source, name, values, length=n, low=-1, high=num_classes, bound=classes)
    if name == "truth":
        return _integers(source, name, values, length=n, low=0, high=num_classes, bound=classes)
    return _integers(source, name, values, length=n, low=0, unique=True)


# ---------------------------------------------------------------- the kinds


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
    source = _source(path, flag, f"make {'it' if cell is None else 'the split of this cell'} with `{command} --out SPLIT.npz`")
    arrays = _open_npz(source, ("labeled_idx", "unlabeled_idx"))
    _check_cell(source, _recorded_cell(source, arrays, legacy=True), cell, wanted_by)
    bound = "" if num_train is None else f" (the training set has {num_train} samples)"
    labeled = _integers(source, "labeled_idx", arrays["labeled_idx"], low=0, high=num_train, bound=bound, unique=True)
    unlabeled = _integers(source, "unlabeled_idx", arrays["unlabeled_idx"], low=0, high=num_train, bound=bound, unique=True)
    if not len(labeled):
        raise source.error("labeled_idx is empty; a split needs labeled samples")
    return Split(labeled, unlabeled)


def read_extra_labels(
    path: str | Path, cell: Cell, num_train: int, num_classes: int, split: Split, flag: str = "--extra-labels"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, label, weight) of pseudo-labels for ``split``'s unlabeled samples, made for ``cell``."""
    source = _source(path, flag, "write this cell's with `hdl relabel --embeddings ITS_EMBED.npz ... --extra-labels-out EXTRA.npz`")
    arrays = _open_npz(source, ("index", "label"))
    _check_cell(source, _recorded_cell(source, arrays), cell)
    index = _integers(source, "index", arrays["index"], low=0, high=num_train, bound=f" (the training set has {num_train} samples)", unique=True)
    label = _integers(source, "label", arrays["label"], length=len(index), low=0, high=num_classes, bound=f" for {num_classes} classes")
    weight = (
        _numbers(source, "weight", arrays["weight"], shape=(len(index),), low=0.0)
        if "weight" in arrays
        else np.ones(len(index), dtype=np.float32)
    )
    unlabeled = np.setdiff1d(split.unlabeled_idx, split.labeled_idx)
    foreign = index[~np.isin(index, unlabeled)]
    if len(foreign):
        raise source.error(f"{len(foreign)} of its {len(index)} indices are not among the split's unlabeled samples {preview(foreign)}")
    return index, label, weight


def read_embeddings(path: str | Path, flag: str = "--embeddings") -> tuple[dict[str, np.ndarray], Cell | None]:
    """The arrays of `hdl embed`'s .npz (those of :data:`RELABEL_ARRAYS` it has) or an .npy of embeddings, each checked, and the recorded cell."""
    source = _source(path, flag, EMBEDDINGS_REMEDY)
    loaded = _load_numpy(source)
    if not isinstance(loaded, dict):
        return {"embeddings": _relabel_array(source, "embeddings", loaded)}, None
    if "embeddings" not in loaded:
        raise source.error(f"no embeddings array (it has {', '.join(loaded) or 'none'})")
    cell = _recorded_cell(source, loaded)
    num_classes = None if cell is None else cell.num_classes
    embeddings = _relabel_array(source, "embeddings", loaded["embeddings"])
    arrays = {"embeddings": embeddings}
    for name in RELABEL_ARRAYS:
        if name in loaded and name != "embeddings":
            arrays[name] = _relabel_array(source, name, loaded[name], len(embeddings), num_classes)
    return arrays, cell


def read_array(path: str | Path, flag: str, name: str) -> np.ndarray:
    """One of :data:`RELABEL_ARRAYS` from its own .npy (``hdl relabel --labels/--probs/--truth``)."""
    source = _source(path, flag, f"pass an .npy of {RELABEL_ARRAYS[name]}")
    loaded = _load_numpy(source)
    if isinstance(loaded, dict):
        raise source.error(f"an .npz (with {', '.join(loaded)}), not a single .npy array")
    return _relabel_array(source, name, loaded)


def read_relabel_output(path: str | Path, flag: str | None = None) -> tuple[dict[str, np.ndarray], Cell | None]:
    """`hdl relabel --out`'s arrays (labels, level, agreement, rank, index) and the recorded cell."""
    source = _source(path, flag, RELABEL_REMEDY)
    arrays = _open_npz(source, RELABEL_OUTPUT_ARRAYS)
    cell = _recorded_cell(source, arrays)
    index = _integers(source, "index", arrays["index"], low=0, unique=True)
    n, num_classes = len(index), None if cell is None else cell.num_classes
    return {
        "labels": _integers(source, "labels", arrays["labels"], length=n, low=-1, high=num_classes),
        "level": _integers(source, "level", arrays["level"], length=n, low=-1),
        "agreement": _numbers(source, "agreement", arrays["agreement"], shape=(n,), low=0.0, high=1.0),
        "rank": _integers(source, "rank", arrays["rank"], length=n, low=-1),
        "index": index,
    }, cell


def read_checkpoint(
    path: str | Path,
    flag: str | None = "--checkpoint",
    keys: Iterable[str] = EMBED_CHECKPOINT_KEYS,
    remedy: str = CHECKPOINT_REMEDY,
    cell: Cell | None = None,
) -> dict[str, Any]:
    """A checkpoint of `hdl train` with ``keys``, its config typed and its weights finite, loaded with
    ``weights_only=True`` (tensors, numbers, strings and containers only); with ``cell``, refused if
    trained on another cell or with another method."""
    import torch

    source = _source(path, flag, remedy)
    _require_file(source)
    with open(source.path, "rb") as handle:
        if not handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
            raise source.error(f"cannot read checkpoint: torch saves zip archives, and this file is {_what_it_is(source.path)}")
    try:
        with warnings.catch_warnings():  # torch warns about what it then refuses anyway; the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(source.path, map_location="cpu", weights_only=True)
    except Exception as error:  # torn, or pickling other objects than tensors: torch raises many kinds
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = f"it pickles {unsupported.group(1)}, which hdl never loads" if unsupported else short_reason(error, True)
        raise source.error(f"cannot read checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise source.error(f"holds a {type(state).__name__}, not the dict `hdl train` saves")
    missing = [key for key in keys if key not in state]
    if missing:
        raise source.error(f"no {', '.join(missing)} in it: not a checkpoint of this version of `hdl train`")
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise source.error("its config is not a dict with a train dict")
    for name, kind in CHECKPOINT_CONFIG.items():
        try:
            _typed(name, kind, config.get(name))
        except ValueError as error:
            raise source.error(f"config {error}") from None
    for name in ("model", "ema_model"):
        if name not in state:
            continue
        weights = state[name]
        if not isinstance(weights, dict) or not all(torch.is_tensor(value) for value in weights.values()):
            raise source.error(f"{name} is not a state dict of tensors")
        broken = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:
            raise source.error(f"{name} has NaN or infinite weights in {len(broken)} tensors {preview(broken)}")
    _check_cell(source, checkpoint_cell(state), cell)
    return state


def checkpoint_cell(state: Mapping[str, Any]) -> Cell:
    """The cell (and method) a checkpoint from :func:`read_checkpoint` was trained on."""
    return Cell.of(state["config"])


def _fraction(source: _Source, key: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise source.error(f"{key}={value!r} is not a fraction in [0, 1], as hdl writes accuracies and coverages")


def _record_cell(source: _Source, values: Mapping[str, Any]) -> Cell:
    try:
        return Cell.of(values)
    except ValueError as error:
        raise source.error(f"its cell is unreadable ({error})") from None


def _expected_cell(expected: Mapping[str, Any] | None) -> Cell | None:
    """The cell ``expected`` names (a run folder's ``key~value`` segments, a run's config); None where
    it does not parse (the caller reports that)."""
    try:
        return None if expected is None else Cell.of(expected)
    except ValueError:
        return None


def read_metrics(
    path: str | Path, expected: Mapping[str, Any] | None = None, expected_by: str = "its folder", remedy: str = METRICS_REMEDY
) -> dict[str, Any]:
    """A run's metrics.json; refused if it records another cell or method than ``expected`` (its folder's coordinates, its run's config)."""
    source = _source(path, None, remedy)
    record = _open_json(source)
    if "top1" not in record:
        raise source.error(f"no top1 key (it has {preview(record)}), so no run wrote it")
    for key in METRICS_ACCURACIES:
        if key in record:
            _fraction(source, key, record[key])
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) and isinstance(row.get("step"), int) for row in history):
        raise source.error("history is not a list of evaluations with an integer step each")
    for number, row in enumerate(history):
        if "top1" in row:
            _fraction(source, f"history[{number}].top1", row["top1"])
    _check_cell(source, _record_cell(source, record), _expected_cell(expected), expected_by)
    return record


def read_relabel_report(path: str | Path, expected: Mapping[str, Any] | None = None, remedy: str = RELABEL_REPORT_REMEDY) -> dict[str, Any]:
    """`hdl relabel --report`'s relabel.json; refused if it records another cell than ``expected`` (its folder's coordinates)."""
    source = _source(path, None, remedy)
    record = _open_json(source)
    missing = [key for key in ("k", "coverage") if key not in record]
    if missing:
        raise source.error(f"no {', '.join(missing)} key (it has {preview(record)}), so `hdl relabel` did not write it")
    if isinstance(record["k"], bool) or not isinstance(record["k"], int) or record["k"] < 1:
        raise source.error(f"k={record['k']!r} is not a positive integer")
    _fraction(source, "coverage", record["coverage"])
    _fraction(source, "accuracy", record.get("accuracy"), optional=True)
    comparison = record.get("comparison", {})
    selection = record.get("selection") or {}
    if not isinstance(comparison, dict) or not all(isinstance(result, dict) for result in comparison.values()) or not isinstance(selection, dict):
        raise source.error("comparison or selection is not an object of labeler results")
    for labeler, result in comparison.items():
        for key in ("accuracy", "coverage"):
            _fraction(source, f"comparison.{labeler}.{key}", result.get(key), optional=True)
    for key in ("coverage", "accuracy", "estimated_accuracy", "argmax_accuracy"):
        _fraction(source, f"selection.{key}", selection.get(key), optional=True)
    cell = record.get("cell")
    if cell is not None and not isinstance(cell, dict):
        raise source.error(f"cell={cell!r} is not an object")
    _check_cell(source, None if cell is None else _record_cell(source, cell), _expected_cell(expected), "its folder")
    return record


def read_csv(path: str | Path, flag: str | None, remedy: str) -> pd.DataFrame:
    """A CSV table (the workflow's grid); its columns are the caller's to check."""
    import pandas as pd

    source = _source(path, flag, remedy)
    _require_file(source)
    try:
        return pd.read_csv(source.path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise source.error(f"not a readable CSV table ({short_reason(error)})") from None
