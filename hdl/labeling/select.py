"""Stage-2 selection (HDL_SPEC.md step 5): which HDL labels join the labeled stream, and their weight."""

from __future__ import annotations

import numpy as np

WEIGHTS = ("one", "agreement")


def select_pseudo_labels(
    labels: np.ndarray,
    level: np.ndarray,
    agreement: np.ndarray,
    max_level: int | None = None,
    min_agreement: float = 0.0,
    weight: str = "one",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, labels and float32 weights of the newly labeled samples (level >= 1) kept:
    those in the first ``max_level`` waves (all when None) with agreement >= ``min_agreement``;
    weight 1 each, or (``weight="agreement"``) their vote agreement."""
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
    keep = (level >= 1) & (agreement >= min_agreement)
    if max_level is not None:
        keep &= level <= max_level
    positions = np.flatnonzero(keep)
    weights = agreement[positions] if weight == "agreement" else np.ones(len(positions))
    return positions, labels[positions].astype(np.int64), weights.astype(np.float32)
