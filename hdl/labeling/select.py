"""Stage-2 selection: which HDL labels join the labeled stream, and with what weight.

HDL labels every sample it can reach, wrong labels included, so stage 2 takes only the
labels it can trust (``rule="confident"``, the default):

1. A confidence per HDL label (``CONFIDENCES``): ``consistency``, the share of the sample's
   k nearest neighbours whose final HDL label equals its own (how settled the label is in
   its neighbourhood once labeling is over); ``agreement``, the winner's share of the vote
   that labeled it; ``rank``, HDL's own labeling order.
2. A threshold calibrated on the hold-out folds that choose k: HDL relabels each fold with
   part of the given labels hidden, and the threshold is the ``quantile`` of the confidences
   it gives the hidden samples (``calibrate_threshold``).  An unlabeled sample is kept when
   HDL is at least as sure of it as of all but that share of the hidden given labels.  The
   stage-1 model has trained on those given labels, so they sit deeper in their classes than
   unlabeled samples do: the threshold errs on the strict side, and the hold-out accuracy
   above it (``estimated_accuracy``) overstates the accuracy of what is kept.
3. Class quotas (``class_quota="prior"``): of the B samples above the threshold, class c
   keeps at most round(B p_c), where p is the class distribution of the given labels (the
   split's, so on long-tailed data the estimated class prior), taking its most confident
   first; head classes cannot flood stage 2.

``rule="all"`` keeps every label HDL reached, with weight one: the behaviour before selection.
``max_level`` and ``min_agreement`` filter further under either rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.hdl import HdlResult
from hdl.labeling.knn import KnnGraph

RULES = ("confident", "all")
CONFIDENCES = ("consistency", "agreement", "rank")
CLASS_QUOTAS = ("prior", "none")
WEIGHTS = ("one", "agreement", "confidence")
QUANTILE = 0.1


@dataclass(frozen=True)
class Selection:
    positions: np.ndarray  # int64: positions (rows of the embeddings) of the kept pseudo-labels
    labels: np.ndarray  # int64: their HDL labels
    weights: np.ndarray  # float32: their stage-2 loss weights
    threshold: float | None  # the confidence threshold (None under rule "all")
    n_candidates: int  # labels that passed the filters and the threshold, before class quotas


def neighbour_consistency(graph: KnnGraph, labels: np.ndarray) -> np.ndarray:
    """Share of each sample's k nearest neighbours carrying its label (0 where it has none)."""
    present = graph.neighbors >= 0
    neighbour_labels = labels[np.where(present, graph.neighbors, 0)]
    same = (neighbour_labels == labels[:, None]) & present
    share = same.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    return np.where(labels >= 0, share, 0.0)


def hdl_confidence(kind: str, graph: KnnGraph, result: HdlResult) -> np.ndarray:
    """Confidence of every HDL label (see the module docstring); higher = more trusted."""
    if kind == "consistency":
        return neighbour_consistency(graph, result.labels)
    if kind == "agreement":
        return result.agreement.astype(np.float64)
    if kind == "rank":
        return result.confidence
    raise ValueError(f"confidence must be one of {CONFIDENCES}, not {kind!r}")


def calibrate_threshold(hidden_confidences: list[np.ndarray], quantile: float = QUANTILE) -> float:
    """The largest threshold that at least 1 - ``quantile`` of the hidden given labels (all folds) reach."""
    pooled = np.sort(np.concatenate(hidden_confidences)) if hidden_confidences else np.empty(0)
    if len(pooled) == 0:
        raise ValueError("no hidden labels to calibrate on: the hold-out hid nothing (too few labels per class?)")
    return float(pooled[min(int(np.floor(quantile * len(pooled))), len(pooled) - 1)])


def class_quotas(total: int, prior: np.ndarray) -> np.ndarray:
    """round(total * p_c) per class."""
    return np.rint(total * prior / prior.sum()).astype(np.int64)


def select_pseudo_labels(
    result: HdlResult,
    confidence: np.ndarray,
    rule: str = "confident",
    threshold: float | None = None,
    prior: np.ndarray | None = None,
    max_level: int | None = None,
    min_agreement: float = 0.0,
    weight: str = "one",
) -> Selection:
    """The HDL labels (level >= 1) stage 2 trains with.

    ``rule="confident"`` needs ``threshold`` (see ``calibrate_threshold``); ``prior`` (one
    value per class) caps each class's share; None leaves classes uncapped.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
    keep = (result.level >= 1) & (result.agreement >= min_agreement)
    if max_level is not None:
        keep &= result.level <= max_level
    if rule == "confident":
        if threshold is None:
            raise ValueError('rule "confident" needs a threshold')
        keep &= confidence >= threshold
    positions = np.flatnonzero(keep)
    n_candidates = len(positions)
    if rule == "confident" and prior is not None:
        positions = _within_quotas(positions, result, confidence, class_quotas(len(positions), prior))
    weights = {
        "one": np.ones(len(positions)),
        "agreement": result.agreement[positions],
        "confidence": confidence[positions],
    }[weight]
    return Selection(positions, result.labels[positions].astype(np.int64), weights.astype(np.float32), threshold, n_candidates)


def _within_quotas(positions: np.ndarray, result: HdlResult, confidence: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    """The first ``quotas[c]`` of each class by confidence, earlier HDL rank breaking ties."""
    labels = result.labels[positions]
    order = np.lexsort((result.rank[positions], -confidence[positions], labels))
    sorted_labels = labels[order]
    class_starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    place_in_class = np.arange(len(order)) - class_starts
    kept = order[place_in_class < quotas[sorted_labels]]
    return np.sort(positions[kept])
