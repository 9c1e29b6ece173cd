"""Adaptive k (docs/method.md, "Adaptive k"): pick k by how well HDL recovers hidden given labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.hdl import HdlResult, hdl_labeling
from hdl.labeling.knn import KnnGraph, reverse_index
from hdl.stopwatch import Stopwatch

K_CANDIDATES = (5, 10, 20, 40)
FOLDS = 3
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class HoldoutRun:
    """HDL on one fold: ``hidden`` given labels hidden (positions), ``result`` labeling all samples."""

    hidden: np.ndarray
    result: HdlResult

    def accuracy(self, labels: np.ndarray) -> float:
        """Share of the hidden labels HDL recovers; an unreached one counts as wrong."""
        return float(np.mean(self.result.labels[self.hidden] == labels[self.hidden])) if len(self.hidden) else np.nan


@dataclass(frozen=True)
class AdaptiveHdl:
    k: int
    k_scores: dict[int, float]  # mean hold-out accuracy per candidate k; empty for a fixed k
    result: HdlResult
    holdout: list[HoldoutRun]  # the folds at the chosen k: they calibrate the stage-2 selection


def stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Positions of a stratified part of the labeled samples to hide.

    Each class hides round(fraction * n_c) of its n_c labels, at least one when it has two or
    more, and always keeps one, so every class still has a seed.
    """
    labeled = np.flatnonzero(labels >= 0)
    shuffled = labeled[rng.permutation(len(labeled))]
    classes = labels[shuffled]
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    class_sizes = np.bincount(sorted_classes)
    position_in_class = np.arange(len(order)) - np.repeat(np.cumsum(class_sizes) - class_sizes, class_sizes)
    hidden_per_class = np.minimum(class_sizes - 1, np.maximum(np.rint(fraction * class_sizes), 1)).astype(int)
    hide = position_in_class < hidden_per_class[sorted_classes]
    return np.sort(shuffled[order][hide])


def make_holdouts(labels: np.ndarray, folds: int, holdout_fraction: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [stratified_holdout(labels, holdout_fraction, rng) for _ in range(folds)]


def holdout_runs(graph: KnnGraph, labels: np.ndarray, n_classes: int, holdouts: list[np.ndarray], **hdl_options) -> list[HoldoutRun]:
    """HDL on ``graph`` once per hold-out, with that hold-out's given labels hidden."""
    reverse = reverse_index(graph)
    runs = []
    for hidden in holdouts:
        runs.append(HoldoutRun(hidden, hdl_labeling(graph, hide(labels, hidden), n_classes, reverse=reverse, **hdl_options)))
    return runs


def hide(labels: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``labels`` with the positions ``hidden`` set to -1 (unlabeled): what HDL sees in a hold-out."""
    visible = labels.copy()
    visible[hidden] = -1
    return visible


def holdout_scores(
    graph: KnnGraph,
    labels: np.ndarray,
    n_classes: int,
    k_candidates: tuple[int, ...] | list[int],
    folds: int = FOLDS,
    holdout_fraction: float = HOLDOUT_FRACTION,
    seed: int = 0,
    **hdl_options,
) -> dict[int, float]:
    """Mean accuracy, over ``folds`` random stratified hold-outs, of HDL on the hidden labels.

    A hidden sample HDL cannot reach counts as wrong. The same hold-outs serve every k.
    """
    holdouts = make_holdouts(labels, folds, holdout_fraction, seed)
    return {
        int(k): _mean_accuracy(holdout_runs(graph.truncate(k), labels, n_classes, holdouts, **hdl_options), labels)
        for k in sorted(k_candidates)
    }


def _mean_accuracy(runs: list[HoldoutRun], labels: np.ndarray) -> float:
    return float(np.mean([run.accuracy(labels) for run in runs]))


def best_k(k_scores: dict[int, float]) -> int:
    """The k with the highest score; ties (and all-NaN scores) go to the smaller k."""
    ks = sorted(k_scores)
    scores = np.array([k_scores[k] for k in ks])
    if np.all(np.isnan(scores)):
        return ks[0]
    return ks[int(np.nanargmax(scores))]


def adaptive_hdl(
    graph: KnnGraph,
    labels: np.ndarray,
    n_classes: int,
    k: int | None = None,
    k_candidates: tuple[int, ...] | list[int] = K_CANDIDATES,
    folds: int = FOLDS,
    holdout_fraction: float = HOLDOUT_FRACTION,
    seed: int = 0,
    stopwatch: Stopwatch | None = None,
    **hdl_options,
) -> AdaptiveHdl:
    """HDL with a fixed ``k``, or (``k=None``) the hold-out-best of ``k_candidates``.

    The hold-out folds run at the chosen k either way: they calibrate the stage-2 selection.
    ``graph`` must hold at least as many neighbours as the largest k used. ``stopwatch`` times
    each k's folds ("folds k=K") and the final run at the chosen k ("final hdl").
    """
    stopwatch = stopwatch or Stopwatch()
    holdouts = make_holdouts(labels, folds, holdout_fraction, seed)
    k_scores: dict[int, float] = {}
    if k is None:
        for candidate in sorted(k_candidates):
            with stopwatch.part(f"folds k={candidate}"):
                candidate_runs = holdout_runs(graph.truncate(candidate), labels, n_classes, holdouts, **hdl_options)
            k_scores[int(candidate)] = _mean_accuracy(candidate_runs, labels)
            if best_k(k_scores) == candidate:  # keep only the best k's folds so far
                runs = candidate_runs
        k = best_k(k_scores)
    else:
        with stopwatch.part(f"folds k={k}"):
            runs = holdout_runs(graph.truncate(k), labels, n_classes, holdouts, **hdl_options)
    with stopwatch.part("final hdl"):
        result = hdl_labeling(graph.truncate(k), labels, n_classes, **hdl_options)
    return AdaptiveHdl(k, k_scores, result, runs)
