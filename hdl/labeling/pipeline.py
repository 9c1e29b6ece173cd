"""HDL from embeddings to stage 2's labels, the one path `hdl relabel`, the label probe and the
trainer's label refresh all take: the k-NN graph, HDL with k fixed or chosen by hold-out, the
labels stage 2 draws from (HDL's, or with ``labeler`` another labeler's on the same graph), the
confidence of every label, the thresholds calibrated on the hold-out folds, and the selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hdl.data.dataset import NO_LABEL
from hdl.labeling import adaptive, baselines, hdl, knn, select
from hdl.stopwatch import Stopwatch


class NothingToCalibrate(ValueError):
    """The selection's thresholds need hidden given labels, and no class has two labels to hide one of."""


@dataclass(frozen=True)
class LabelingOptions:
    """How HDL labels (``hdl relabel``'s "HDL" and "k-NN graph" options)."""

    k: int | None = None  # None: chosen from k_candidates by hold-out
    k_candidates: tuple[int, ...] = adaptive.K_CANDIDATES
    folds: int = adaptive.FOLDS
    holdout: float = adaptive.HOLDOUT_FRACTION
    wave_rule: str = "frontier"
    wave_min_agreement: float = 0.0
    vote_weight: str = "similarity"
    seed: int = 0
    exact_max_size: int = knn.EXACT_MAX_SIZE
    nlist: int | None = None
    nprobe: int = knn.IVF_NPROBE
    labeler: str = "hdl"  # whose labels stage 2 draws from (baselines.STAGE2_LABELERS); HDL still chooses k


@dataclass(frozen=True)
class SelectionOptions:
    """Which labels stage 2 gets (``hdl relabel``'s "stage-2 selection" options; ``hdl.labeling.select``)."""

    rule: str = "confident"
    confidence: str = "argmax_agreement"
    quantile: float = select.QUANTILE
    class_quota: str = "uniform"
    crest_alpha: float = select.CREST_ALPHA
    temperature: float = select.DISTRIBUTION_TEMPERATURE
    max_level: int | None = None
    min_agreement: float = 0.0
    weight: str = "one"


@dataclass(frozen=True)
class Relabeling:
    """What one pass produced: HDL at the chosen k, its graph, every HDL label's confidence, the labels
    stage 2 draws from (``stage2``: HDL's own unless another ``labeler`` was asked for) and their
    confidence, and stage 2's selection of them."""

    chosen: adaptive.AdaptiveHdl
    graph: knn.KnnGraph  # truncated to the chosen k
    confidence: np.ndarray  # of HDL's labels
    labeler: str  # whose labels ``stage2`` holds (baselines.STAGE2_LABELERS)
    stage2: adaptive.AdaptiveHdl  # ``chosen``, or the labeler's labels (with its hold-out folds where calibrated)
    stage2_confidence: np.ndarray
    kinds: dict[str, np.ndarray]  # which labels each threshold applies to (select.label_kinds)
    selection: select.Selection
    estimated_accuracy: float | None  # hold-out accuracy above the thresholds (an overestimate: select.py)
    plan: knn.SearchPlan
    graph_steps: Stopwatch = field(default_factory=Stopwatch)


def relabel(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    probs: np.ndarray | None,
    labeling: LabelingOptions,
    selection: SelectionOptions,
    stopwatch: Stopwatch | None = None,
) -> Relabeling:
    """HDL on L2-normalised ``embeddings`` from the given ``labels`` (-1 elsewhere), and the labels
    stage 2 trains with. ``stopwatch`` times "graph", each k's folds, "final hdl" and "selection".

    ``NothingToCalibrate`` where the selection needs thresholds and no class has two given labels.
    """
    stopwatch = stopwatch or Stopwatch()
    n = len(labels)
    plan = knn.search_plan(n, labeling.exact_max_size, labeling.nlist, labeling.nprobe)
    graph_steps = Stopwatch()
    with stopwatch.part("graph"):
        graph = knn.build_knn_graph(
            embeddings, labeling.k or max(labeling.k_candidates), labeling.exact_max_size, labeling.nlist,
            labeling.nprobe, labeling.seed, graph_steps,
        )
    chosen = adaptive.adaptive_hdl(
        graph, labels, n_classes, k=labeling.k, k_candidates=labeling.k_candidates, folds=labeling.folds,
        holdout_fraction=labeling.holdout, seed=labeling.seed, stopwatch=stopwatch, wave_rule=labeling.wave_rule,
        vote_weight=labeling.vote_weight, min_agreement=labeling.wave_min_agreement,
    )
    graph_k = graph.truncate(chosen.k)
    stage2 = chosen
    if labeling.labeler != "hdl":
        with stopwatch.part(labeling.labeler):
            stage2 = _other_labeler(labeling.labeler, chosen, graph_k, embeddings, labels, n_classes, probs,
                                    with_folds=selection.rule == "confident")
    with stopwatch.part("selection"):
        confidence = _confidence(selection.confidence, selection, graph_k, chosen.result, labels, embeddings, probs)
        stage2_confidence = confidence if stage2 is chosen else _confidence(
            selection.confidence, selection, graph_k, stage2.result, labels, embeddings, probs)
        kinds = select.label_kinds(selection.confidence, probs, stage2.result.labels)
        thresholds = estimated_accuracy = None
        if selection.rule == "confident":
            thresholds, estimated_accuracy = _calibrate(selection, graph_k, stage2, labels, embeddings, probs)
        labeled = np.bincount(labels[labels >= 0], minlength=n_classes)
        chosen_labels = select.select_pseudo_labels(
            stage2.result, stage2_confidence, selection.rule, thresholds, selection.class_quota, labeled, selection.crest_alpha,
            selection.max_level, selection.min_agreement, selection.weight, kinds, graph_k,
        )
    return Relabeling(chosen, graph_k, confidence, labeling.labeler, stage2, stage2_confidence, kinds, chosen_labels, estimated_accuracy,
                      plan, graph_steps)


def _other_labeler(
    name: str, chosen: adaptive.AdaptiveHdl, graph: knn.KnnGraph, embeddings: np.ndarray, labels: np.ndarray,
    n_classes: int, probs: np.ndarray | None, with_folds: bool,
) -> adaptive.AdaptiveHdl:
    """Labeler ``name``'s labels at HDL's chosen k, as one wave (``baselines.as_one_wave``); ``with_folds``
    runs it on each of HDL's hold-out folds too, with the same labels hidden, for the thresholds."""

    def labels_from(given: np.ndarray) -> hdl.HdlResult:
        return baselines.as_one_wave(baselines.stage2_labeling(name, graph, embeddings, given, n_classes, probs), given)

    holdout = [adaptive.HoldoutRun(run.hidden, labels_from(adaptive.hide(labels, run.hidden)))
               for run in chosen.holdout] if with_folds else []
    return adaptive.AdaptiveHdl(chosen.k, chosen.k_scores, labels_from(labels), holdout)


def selection_summary(
    relabeling: Relabeling, labels: np.ndarray, n_classes: int, probs: np.ndarray | None, truth: np.ndarray | None
) -> dict:
    """What stage 2's selection kept of the unlabeled samples (``labels`` < 0), as plain numbers: how many
    its labeler (HDL unless another was asked for) reached, passed the thresholds and were kept (``coverage``: kept / unlabeled), per class of the
    kept label, per class how many of them the classifier disputes (its argmax differs; with ``probs``),
    the estimated accuracy and, with ``truth``, the true accuracy overall and per class of the kept labels
    whose sample has a true label (``n_scored`` of them; a pool sample's truth is NO_LABEL)."""
    selection, result = relabeling.selection, relabeling.stage2.result
    unlabeled = labels < 0
    n_unlabeled = int(unlabeled.sum())
    kept = selection.labels
    per_class = np.bincount(kept, minlength=n_classes)
    per_class_disputed = per_class_accuracy = accuracy = n_scored = None
    if probs is not None:
        disputed = select.disputed(probs[selection.positions], kept)
        per_class_disputed = np.bincount(kept[disputed], minlength=n_classes).tolist()
    if truth is not None:
        kept_truth = truth[selection.positions]
        has_truth = kept_truth != NO_LABEL
        correct = kept[has_truth] == kept_truth[has_truth]
        n_scored = int(has_truth.sum())
        accuracy = float(correct.mean()) if n_scored else None
        hits = np.bincount(kept[has_truth], weights=correct, minlength=n_classes)
        scored_per_class = np.bincount(kept[has_truth], minlength=n_classes)
        per_class_accuracy = [float(hit / count) if count else None for hit, count in zip(hits, scored_per_class)]
    return {
        "n_unlabeled": n_unlabeled,
        "n_reached": int((unlabeled & (result.labels >= 0)).sum()),
        "n_above_threshold": selection.n_candidates,
        "n_selected": len(selection.positions),
        "coverage": len(selection.positions) / max(n_unlabeled, 1),
        "per_class": per_class.tolist(),
        "per_class_disputed": per_class_disputed,
        "per_class_accuracy": per_class_accuracy,
        "estimated_accuracy": relabeling.estimated_accuracy,
        "accuracy": accuracy,
        "n_scored": n_scored,
    }


def confidence_of(
    kind: str, options: SelectionOptions, relabeling: Relabeling, labels: np.ndarray, embeddings: np.ndarray, probs: np.ndarray | None
) -> np.ndarray:
    """Confidence ``kind`` of HDL's labels in ``relabeling`` (HDL from the given ``labels``): the chosen one is kept."""
    if kind == options.confidence:
        return relabeling.confidence
    return _confidence(kind, options, relabeling.graph, relabeling.chosen.result, labels, embeddings, probs)


def _confidence(
    kind: str, options: SelectionOptions, graph: knn.KnnGraph, result: hdl.HdlResult, given: np.ndarray,
    embeddings: np.ndarray, probs: np.ndarray | None,
) -> np.ndarray:
    return select.hdl_confidence(kind, graph, result, given, embeddings, probs, options.temperature)


def _calibrate(
    options: SelectionOptions, graph: knn.KnnGraph, chosen: adaptive.AdaptiveHdl, labels: np.ndarray,
    embeddings: np.ndarray, probs: np.ndarray | None,
) -> tuple[dict[str, float], float]:
    """A threshold per kind of label, each the ``quantile`` of the confidence that calibrates it
    (``select.calibration_confidences``) over the hidden given labels of every fold; and the share
    of the hidden labels HDL recovered among those whose own confidence reaches their threshold."""
    visible = [adaptive.hide(labels, run.hidden) for run in chosen.holdout]
    fold_confidences: dict[str, list[np.ndarray]] = {}

    def of_folds(kind: str) -> list[np.ndarray]:
        if kind not in fold_confidences:
            fold_confidences[kind] = [
                _confidence(kind, options, graph, run.result, given, embeddings, probs)
                for run, given in zip(chosen.holdout, visible)
            ]
        return fold_confidences[kind]

    thresholds = {}
    for name, kind in select.calibration_confidences(options.confidence).items():
        hidden_confidences = [confidence[run.hidden] for run, confidence in zip(chosen.holdout, of_folds(kind))]
        if not any(len(confidences) for confidences in hidden_confidences):
            raise NothingToCalibrate("no hidden given labels to calibrate on: no class has two labels")
        thresholds[name] = select.calibrate_threshold(hidden_confidences, options.quantile)
    recovered, reached = [], []
    for run, confidence in zip(chosen.holdout, of_folds(options.confidence)):
        above = np.zeros(len(labels), dtype=bool)
        for name, members in select.label_kinds(options.confidence, probs, run.result.labels).items():
            above |= members & (confidence >= thresholds[name])
        recovered.append(run.result.labels[run.hidden] == labels[run.hidden])
        reached.append(above[run.hidden])
    recovered_all, reached_all = np.concatenate(recovered), np.concatenate(reached)
    return thresholds, float(recovered_all[reached_all].mean()) if reached_all.any() else float("nan")
