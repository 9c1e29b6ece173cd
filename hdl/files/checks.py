"""Checks of what a file holds: integers, numbers, fractions, and the cell it records against the one wanted."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import numpy as np

from hdl.cell import Cell
from hdl.files.opening import Source, short_reason


#: how many ids a message lists before "..."
PREVIEW = 8


def preview(values: Iterable) -> str:
    """``[3, 7, 9, ...]``: the first :data:`PREVIEW` of a list of ids, short enough for one line."""
    values = list(values)
    shown = ", ".join(str(value) for value in values[:PREVIEW])
    return f"[{shown}{', ...' if len(values) > PREVIEW else ''}]"


def recorded_cell(source: Source, arrays: Mapping[str, np.ndarray], legacy: bool = False) -> Cell | None:
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


def check_cell(source: Source, recorded: Cell | None, wanted: Cell | None, wanted_by: str = "this command") -> None:
    if recorded is None or wanted is None:
        return
    differ = recorded.conflicts(wanted)
    if differ:
        raise source.error(f"made for {recorded}, but {wanted_by} is for {wanted} (they differ in {', '.join(differ)})")


def integers(
    source: Source,
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


def numbers(
    source: Source,
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


def fraction(source: Source, key: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise source.error(f"{key}={value!r} is not a fraction in [0, 1], as hdl writes accuracies and coverages")


def record_cell(source: Source, values: Mapping[str, Any]) -> Cell:
    try:
        return Cell.of(values)
    except ValueError as error:
        raise source.error(f"its cell is unreadable ({error})") from None


def expected_cell(expected: Mapping[str, Any] | None) -> Cell | None:
    """The cell ``expected`` names (a run folder's ``key~value`` segments, a run's config); None where
    it does not parse (the caller reports that)."""
    try:
        return None if expected is None else Cell.of(expected)
    except ValueError:
        return None
