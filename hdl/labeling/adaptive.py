"""Adaptive k (HDL_SPEC.md step 4): pick k by how well HDL recovers hidden given labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.hdl import HdlResult, hdl_labeling
from hdl.labeling.knn import KnnGraph, reverse_index

K_CANDIDATES = (5, 10, 20, 40)
FOLDS = 3
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class AdaptiveHdl:
    k: int
    k_scores: dict[int, float]  # mean hold-out accuracy per candidate k; empty for a fixed k
    result: HdlResult


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
    rng = np.random.default_rng(seed)
    holdouts = [stratified_holdout(labels, holdout_fraction, rng) for _ in range(folds)]
    scores = {}
    for k in sorted(k_candidates):
        graph_k = graph.truncate(k)
        reverse = reverse_index(graph_k)
        accuracies = []
        for hidden in holdouts:
            visible = labels.copy()
            visible[hidden] = -1
            result = hdl_labeling(graph_k, visible, n_classes, reverse=reverse, **hdl_options)
            accuracies.append(np.mean(result.labels[hidden] == labels[hidden]) if len(hidden) else np.nan)
        scores[int(k)] = float(np.mean(accuracies))
    return scores


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
    **hdl_options,
) -> AdaptiveHdl:
    """HDL with a fixed ``k``, or (``k=None``) the hold-out-best of ``k_candidates``.

    ``graph`` must hold at least as many neighbours as the largest k used.
    """
    k_scores = {}
    if k is None:
        k_scores = holdout_scores(graph, labels, n_classes, k_candidates, folds, holdout_fraction, seed, **hdl_options)
        k = best_k(k_scores)
    return AdaptiveHdl(k, k_scores, hdl_labeling(graph.truncate(k), labels, n_classes, **hdl_options))
