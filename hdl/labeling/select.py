"""Stage-2 selection: which HDL labels join the labeled stream, and with what weight.

HDL labels every sample it can reach, wrong labels included, so stage 2 takes only the
labels it can trust (``rule="confident"``, the default):

1. A confidence in [0, 1] per HDL label (``CONFIDENCES``): ``consistency``, the share of the
   sample's k nearest neighbours whose final HDL label equals its own (how settled the label is
   in its neighbourhood once labeling is over); ``agreement``, the winner's share of the vote
   that labeled it; ``rank``, HDL's own labeling order; ``knn_margin``, the margin of HDL's label
   in a plain vote of the k nearest given labels (``knn_margin``); ``argmax_agreement``, the
   classifier's agreement with HDL's label, a co-training filter (``argmax_agreement``);
   ``distribution_aware``, after DASO's blend (Oh et al., CVPR 2022): ``argmax_agreement`` where
   the classifier agrees with HDL, and where it disagrees the embeddings' support for HDL's
   label (``consistency``) scaled by how much the classifier over-predicts the class it chose
   instead (``predicted_class_trust``), so a label the classifier disputes from a class it
   puts too many samples in can still be kept (``distribution_aware``).  The support is
   ``consistency`` rather than ``knn_margin``: a vote of the k nearest given labels cannot
   favour a class with fewer than k/2 given labels, which a long tail's classes have.
2. A threshold calibrated on the hold-out folds that choose k: HDL relabels each fold with
   part of the given labels hidden, and the threshold is the ``quantile`` of the confidences
   it gives the hidden samples (``calibrate_threshold``).  An unlabeled sample is kept when
   HDL is at least as sure of it as of all but that share of the hidden given labels.  The
   stage-1 model has trained on those given labels, so they sit deeper in their classes than
   unlabeled samples do: the threshold errs on the strict side, and the hold-out accuracy
   above it (``estimated_accuracy``) overstates the accuracy of what is kept.
   ``distribution_aware`` calibrates each kind of label against its own kind of confidence
   (``CALIBRATION``): labels the classifier agrees with against the hidden labels'
   ``argmax_agreement``, labels it disputes against the hidden labels' ``consistency``.  One
   threshold for both would sit above every disputed label, since the classifier has trained
   on the given labels and agrees with nearly all of them.
3. Class quotas (``class_quota``, docs/method.md "Which HDL labels stage 2 gets"): of the B
   samples above the threshold, class c keeps at most its quota, its most confident first.
   ``labeled``: round(B p_c), p the class distribution of the given labels (on long-tailed
   splits the estimated class prior), so head classes cannot flood stage 2, but a tail class
   keeps almost nothing; ``uniform``: round(B / C) each; ``crest`` (CReST, Wei et al. CVPR 2021):
   the class of the r-th largest labeled count keeps the top (N_(C+1-r) / N_1)^(1/alpha) of its
   own candidates, so the tail keeps all of its candidates and the head the fewest; ``none``: no cap.
``rule="all"`` keeps every label HDL reached, with no threshold and no quota (with weight ``one``, the
behaviour before selection existed).
``max_level`` and ``min_agreement`` filter further under either rule.

Stage-2 loss weights (``WEIGHTS``): ``one``; the vote ``agreement``; the ``confidence``; or
``entropy_balanced``, Iscen et al.'s (CVPR 2019) certainty times inverse class frequency
(``hdl.labeling.weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.baselines import nearest_given_labels
from hdl.labeling.hdl import HdlResult, weighted_vote
from hdl.labeling.knn import KnnGraph
from hdl.labeling.weights import entropy_balanced_weights

RULES = ("confident", "all")
CONFIDENCES = ("consistency", "agreement", "rank", "knn_margin", "argmax_agreement", "distribution_aware")
#: the confidences that read the classifier's probabilities
NEEDS_PROBS = ("argmax_agreement", "distribution_aware")
#: the confidence that calibrates the threshold of each kind of label (``label_kinds``): one kind
#: for every confidence but ``distribution_aware``, which calibrates labels the classifier
#: disputes against the embeddings' support alone
AGREEING, DISPUTED = "agreeing", "disputed"
CALIBRATION = {"distribution_aware": {AGREEING: "argmax_agreement", DISPUTED: "consistency"}}
#: DASO's temperature: 1.5 where the labeled and unlabeled class distributions match, 0.3 where not
DISTRIBUTION_TEMPERATURE = 1.5
CLASS_QUOTAS = ("labeled", "uniform", "crest", "none")
CREST_ALPHA = 3.0  # CReST's alpha (google-research/crest, USB's crest_alpha)
WEIGHTS = ("one", "agreement", "confidence", "entropy_balanced")
QUANTILE = 0.1


@dataclass(frozen=True)
class Selection:
    positions: np.ndarray  # int64: positions (rows of the embeddings) of the kept pseudo-labels
    labels: np.ndarray  # int64: their HDL labels
    weights: np.ndarray  # float32: their stage-2 loss weights
    thresholds: dict[str, float] | None  # the confidence threshold per kind of label (``label_kinds``; None under rule "all")
    n_candidates: int  # labels that passed the filters and the threshold, before class quotas
    quotas: np.ndarray | None = None  # int64 per class: the most it could keep (None: uncapped)


def neighbour_consistency(graph: KnnGraph, labels: np.ndarray) -> np.ndarray:
    """Share of each sample's k nearest neighbours carrying its label (0 where it has none)."""
    present = graph.neighbors >= 0
    neighbour_labels = labels[np.where(present, graph.neighbors, 0)]
    same = (neighbour_labels == labels[:, None]) & present
    share = same.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    return np.where(labels >= 0, share, 0.0)


def knn_margin(embeddings: np.ndarray, given: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(1 + margin) / 2, the margin being the vote weight for ``labels`` minus that of the strongest
    other class, over the total, in a similarity-weighted vote of the k nearest ``given`` labels
    (``baselines.knn_vote``'s vote): 1 when all k vote for the label, 0.5 on a tie, 0 where none
    does or the sample has no label."""
    classes, weights = nearest_given_labels(embeddings, given, k)
    voting = classes >= 0
    for_label = (classes == labels[:, None]) & voting
    own = np.where(for_label, weights, 0.0).sum(axis=1, dtype=np.float64)
    strongest_other = weighted_vote(np.where(for_label, -1, classes), weights).winner_weight
    total = np.where(voting, weights, 0.0).sum(axis=1, dtype=np.float64)
    margin = (own - strongest_other) / np.maximum(total, np.finfo(float).tiny)
    return np.where(labels >= 0, (1.0 + margin) / 2.0, 0.0)


def argmax_agreement(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(agrees + p) / 2: ``agrees`` is 1 where the classifier's argmax is the label, p its probability
    of the label, so every label the classifier agrees with ranks above every one it does not; 0 unlabeled."""
    rows = np.arange(len(labels))
    probability = probs[rows, np.maximum(labels, 0)].astype(np.float64)
    agrees = probs.argmax(axis=1) == labels
    return np.where(labels >= 0, (agrees + probability) / 2.0, 0.0)


def predicted_class_trust(probs: np.ndarray, unlabeled: np.ndarray, temperature: float = DISTRIBUTION_TEMPERATURE) -> np.ndarray:
    """DASO's upsilon per class: (m_c / max_j m_j)^(1 / T), m the classifier's count of argmax
    predictions of each class over the ``unlabeled`` samples: 1 for the class it predicts most,
    towards 0 for classes it rarely predicts (faster with a lower ``temperature``)."""
    predicted = np.bincount(probs[unlabeled].argmax(axis=1), minlength=probs.shape[1]).astype(np.float64)
    return (predicted / max(predicted.max(), 1.0)) ** (1.0 / temperature)


def disputed(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where the classifier's argmax differs from a label (never where there is no label)."""
    return (labels >= 0) & (probs.argmax(axis=1) != labels)


def distribution_aware(probs: np.ndarray, labels: np.ndarray, support: np.ndarray, trust: np.ndarray) -> np.ndarray:
    """``argmax_agreement`` where the classifier agrees with the label; where it disputes it, the
    embeddings' ``support`` for the label (``neighbour_consistency``) times ``trust``
    (``predicted_class_trust``) of the class the classifier chose.  0 where there is no label."""
    against = disputed(probs, labels)
    return np.where(against, trust[probs.argmax(axis=1)] * support, argmax_agreement(probs, labels))


def label_kinds(kind: str, probs: np.ndarray | None, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Which labels each threshold of confidence ``kind`` applies to (``CALIBRATION``): a mask per kind of label."""
    if kind not in CALIBRATION:
        return {"all": labels >= 0}
    against = disputed(probs, labels)
    return {AGREEING: (labels >= 0) & ~against, DISPUTED: against}


def calibration_confidences(kind: str) -> dict[str, str]:
    """The confidence each kind of label's threshold is calibrated with (``label_kinds``' keys)."""
    return CALIBRATION.get(kind, {"all": kind})


def hdl_confidence(
    kind: str,
    graph: KnnGraph,
    result: HdlResult,
    given: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    temperature: float = DISTRIBUTION_TEMPERATURE,
) -> np.ndarray:
    """Confidence of every HDL label (see the module docstring); higher = more trusted.

    ``knn_margin`` needs the ``embeddings`` and the ``given`` labels HDL started from (-1 elsewhere),
    and votes with the graph's k; ``argmax_agreement`` needs the model's ``probs``;
    ``distribution_aware`` the ``probs`` and the ``given`` labels, the classifier's class counts
    taken where ``given`` is -1.
    """
    if kind == "consistency":
        return neighbour_consistency(graph, result.labels)
    if kind == "agreement":
        return result.agreement.astype(np.float64)
    if kind == "rank":
        return result.confidence
    if kind == "knn_margin":
        if embeddings is None or given is None:
            raise ValueError('confidence "knn_margin" needs the embeddings and the given labels')
        return knn_margin(embeddings, given, result.labels, graph.k)
    if kind == "argmax_agreement":
        if probs is None:
            raise ValueError('confidence "argmax_agreement" needs the model\'s probabilities')
        return argmax_agreement(probs, result.labels)
    if kind == "distribution_aware":
        if probs is None or given is None:
            raise ValueError('confidence "distribution_aware" needs the model\'s probabilities and the given labels')
        support = neighbour_consistency(graph, result.labels)
        return distribution_aware(probs, result.labels, support, predicted_class_trust(probs, given < 0, temperature))
    raise ValueError(f"confidence must be one of {CONFIDENCES}, not {kind!r}")


def calibrate_threshold(hidden_confidences: list[np.ndarray], quantile: float = QUANTILE) -> float:
    """The largest threshold that at least 1 - ``quantile`` of the hidden given labels (all folds) reach."""
    pooled = np.sort(np.concatenate(hidden_confidences)) if hidden_confidences else np.empty(0)
    if len(pooled) == 0:
        raise ValueError("no hidden labels to calibrate on: the hold-out hid nothing (too few labels per class?)")
    return float(pooled[min(int(np.floor(quantile * len(pooled))), len(pooled) - 1)])


def class_quotas(kind: str, candidates: np.ndarray, labeled: np.ndarray, crest_alpha: float = CREST_ALPHA) -> np.ndarray:
    """The most labels each class keeps (``kind``: see the module docstring), given ``candidates``,
    each class's count of labels above the threshold, and ``labeled``, its count of given labels."""
    total = int(candidates.sum())
    if kind == "labeled":
        return np.rint(total * labeled / labeled.sum()).astype(np.int64)
    if kind == "uniform":
        return np.full(len(candidates), int(np.rint(total / len(candidates))), dtype=np.int64)
    if kind == "crest":
        return np.floor(candidates * crest_rates(labeled, crest_alpha)).astype(np.int64)
    if kind == "none":
        return candidates.astype(np.int64)
    raise ValueError(f"class_quota must be one of {CLASS_QUOTAS}, not {kind!r}")


def crest_rates(labeled: np.ndarray, alpha: float = CREST_ALPHA) -> np.ndarray:
    """CReST's share of its pseudo-labels each class keeps: (N_(C+1-r) / N_1)^(1/alpha) for the class
    of the r-th largest labeled count N_r (ties in class order), as google-research/crest
    ``data/cifar.py`` (``update_mode="distribution"``) samples them."""
    order = np.argsort(-labeled, kind="stable")
    by_size = labeled[order].astype(np.float64)
    rates = np.empty(len(labeled))
    rates[order] = (by_size[::-1] / by_size[0]) ** (1.0 / alpha)
    return rates


def select_pseudo_labels(
    result: HdlResult,
    confidence: np.ndarray,
    rule: str = "confident",
    thresholds: dict[str, float] | None = None,
    class_quota: str = "none",
    labeled: np.ndarray | None = None,
    crest_alpha: float = CREST_ALPHA,
    max_level: int | None = None,
    min_agreement: float = 0.0,
    weight: str = "one",
    kinds: dict[str, np.ndarray] | None = None,
    graph: KnnGraph | None = None,
) -> Selection:
    """The HDL labels (level >= 1) stage 2 trains with.

    ``rule="confident"`` needs ``thresholds``, one per kind of label (``label_kinds``; ``kinds``
    masks them, all labels one kind "all" when left out; see ``calibrate_threshold``), and caps
    each class by ``class_quota`` (see ``class_quotas``; all but "none" need ``labeled``, the given
    labels per class).  ``weight="entropy_balanced"`` needs the ``graph`` HDL labeled on and ``labeled``.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
    keep = (result.level >= 1) & (result.agreement >= min_agreement)
    if max_level is not None:
        keep &= result.level <= max_level
    if rule == "confident":
        if thresholds is None:
            raise ValueError('rule "confident" needs thresholds')
        kinds = kinds if kinds is not None else {"all": result.labels >= 0}
        if set(kinds) != set(thresholds):
            raise ValueError(f"thresholds for {sorted(thresholds)} but labels of the kinds {sorted(kinds)}")
        above = np.zeros(len(confidence), dtype=bool)
        for name, members in kinds.items():
            above |= members & (confidence >= thresholds[name])
        keep &= above
    positions = np.flatnonzero(keep)
    n_candidates = len(positions)
    quotas = None
    if rule == "confident" and class_quota != "none":
        if labeled is None:
            raise ValueError(f"class_quota {class_quota!r} needs the given labels per class")
        candidates = np.bincount(result.labels[positions], minlength=len(labeled))
        quotas = class_quotas(class_quota, candidates, labeled, crest_alpha)
        positions = _within_quotas(positions, result, confidence, quotas)
    if weight == "entropy_balanced":
        if graph is None or labeled is None:
            raise ValueError('weight "entropy_balanced" needs the k-NN graph and the given labels per class')
        weights = entropy_balanced_weights(graph, result.labels, positions, labeled)
    else:
        weights = {
            "one": np.ones(len(positions)),
            "agreement": result.agreement[positions],
            "confidence": confidence[positions],
        }[weight]
    return Selection(positions, result.labels[positions].astype(np.int64), weights.astype(np.float32), thresholds, n_candidates, quotas)


def _within_quotas(positions: np.ndarray, result: HdlResult, confidence: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    """The first ``quotas[c]`` of each class by confidence, earlier HDL rank breaking ties."""
    labels = result.labels[positions]
    order = np.lexsort((result.rank[positions], -confidence[positions], labels))
    sorted_labels = labels[order]
    class_starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    place_in_class = np.arange(len(order)) - class_starts
    kept = order[place_in_class < quotas[sorted_labels]]
    return np.sort(positions[kept])
