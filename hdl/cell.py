"""The grid cell a file was made for: what splits, embeddings, labels and checkpoints record, and their readers compare."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


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
        return cls(**{name: typed_field(name, kind, values[name]) for name, kind in _CELL_TYPES.items() if values.get(name) is not None})

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


def typed_field(name: str, kind: type, value: Any) -> Any:
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

