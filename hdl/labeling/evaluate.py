"""Score labelers against true labels on the unlabeled samples, at matched coverage.

A labeler at coverage c keeps its top c fraction of the unlabeled samples by its own
confidence (fewer where it abstains on more); accuracy is measured on what it keeps.

Only samples with a true label are scored: those whose truth is ``NO_LABEL`` (an unlabeled pool's)
are left out of the evaluated samples, coverage included, so none counts right or wrong.
"""

from __future__ import annotations

import numpy as np

from hdl.data.dataset import NO_LABEL
from hdl.labeling.baselines import Labeling

CURVE_COVERAGES = tuple(round(0.1 * step, 1) for step in range(1, 11))


def head_and_tail(counts) -> dict[str, np.ndarray]:
    """The head and tail classes of long-tailed given labels (``counts`` per class): the third of the
    classes (C // 3, at least one) with the most given labels and the third with the fewest, ties
    going to the lower class index; {} where every class has as many (balanced data has no tail)."""
    counts = np.asarray(counts)
    if counts.min() == counts.max():
        return {}
    third = max(len(counts) // 3, 1)
    by_count = np.argsort(-counts, kind="stable")
    return {"head": by_count[:third], "tail": by_count[-third:]}


def scored(evaluated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The samples of ``evaluated`` (a boolean mask) that have a true label to be scored against."""
    return evaluated & (truth != NO_LABEL)


def selected_at_coverage(labeling: Labeling, evaluated: np.ndarray, coverage: float) -> np.ndarray:
    """Positions among ``evaluated`` (a boolean mask) that the labeler keeps at ``coverage``."""
    candidates = np.flatnonzero(evaluated & (labeling.labels >= 0))
    by_confidence = candidates[np.argsort(-labeling.confidence[candidates], kind="stable")]
    return by_confidence[: int(round(coverage * evaluated.sum()))]


def score_labeler(
    labeling: Labeling,
    truth: np.ndarray,
    evaluated: np.ndarray,
    coverage: float = 1.0,
    level: np.ndarray | None = None,
    n_classes: int | None = None,
) -> dict:
    """Accuracy and actual coverage of ``labeling`` at ``coverage``, overall, per true class and,
    given HDL's ``level`` per sample, per HDL level of the kept samples; ``scored`` counts the
    evaluated samples with a true label, the only ones scored."""
    evaluated = scored(evaluated, truth)
    kept = selected_at_coverage(labeling, evaluated, coverage)
    correct = labeling.labels[kept] == truth[kept]
    n_classes = n_classes or int(truth.max()) + 1
    per_class_total = np.bincount(truth[kept], minlength=n_classes)
    per_class_correct = np.bincount(truth[kept], weights=correct, minlength=n_classes)
    score = {
        "accuracy": _mean(correct),
        "coverage": len(kept) / max(int(evaluated.sum()), 1),
        "scored": int(evaluated.sum()),
        "per_class": {
            str(c): (per_class_correct[c] / per_class_total[c] if per_class_total[c] else None) for c in range(n_classes)
        },
    }
    if level is not None:
        score["per_level"] = per_level_accuracy(level[kept], correct)
    return score


def per_level_accuracy(levels: np.ndarray, correct: np.ndarray) -> list[dict]:
    values, inverse, counts = np.unique(levels, return_inverse=True, return_counts=True)
    hits = np.bincount(inverse, weights=correct, minlength=len(values))
    return [
        {"level": int(value), "count": int(count), "accuracy": float(hit / count)}
        for value, count, hit in zip(values, counts, hits)
    ]


def coverage_curve(
    labeling: Labeling, truth: np.ndarray, evaluated: np.ndarray, coverages: tuple[float, ...] = CURVE_COVERAGES
) -> list[dict]:
    """Accuracy at each coverage; past the labeler's own coverage the point repeats its maximum."""
    evaluated = scored(evaluated, truth)
    points = []
    for coverage in coverages:
        kept = selected_at_coverage(labeling, evaluated, coverage)
        points.append(
            {
                "coverage": len(kept) / max(int(evaluated.sum()), 1),
                "accuracy": _mean(labeling.labels[kept] == truth[kept]),
            }
        )
    return points


def _mean(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if len(correct) else None
