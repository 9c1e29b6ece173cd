"""Hierarchical dynamic labeling (docs/method.md, "HDL"): a priority-ordered label propagation.

Every unlabeled sample u holds ``count[u]``, the number of labeled samples among its k-NN,
and ``votes[u]``, their class histogram weighted by similarity. Each wave takes unlabeled
samples with labeled neighbours (all of them, or with ``wave_rule="max_count"`` only those
with the highest count), labels them with their vote's winner, and adds them to the labeled
set; the reverse-neighbour index then updates only the samples that have a newly labeled
sample among their k-NN, so the whole run is O(N k) after the graph. Inside a wave the
samples are ranked by count (level 1), then agreement, then mean similarity to their voters
(level 2): all of a wave's labels come from the votes at the wave's start, so the ranking
orders the samples' confidence (``rank``) without changing any label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.knn import KnnGraph, reverse_index

VOTE_WEIGHTS = ("similarity", "uniform")
WAVE_RULES = ("max_count", "frontier")
# Voters with similarity <= 0 still count, with a negligible weight, so a vote never sums to 0.
MIN_VOTE_WEIGHT = 1e-6


@dataclass(frozen=True)
class HdlResult:
    labels: np.ndarray  # int64 (N,): given label, HDL label, or -1 where unreachable
    level: np.ndarray  # int64 (N,): 0 for given labels, wave number >= 1, -1 where unreachable
    agreement: np.ndarray  # float32 (N,): winner's share of the vote; 1 for given, 0 unreachable
    rank: np.ndarray  # int64 (N,): labeling order of HDL-labeled samples (0 first), else -1
    waves: int

    @property
    def confidence(self) -> np.ndarray:
        """Higher for earlier-labeled samples: given labels first, unreachable samples last."""
        n = len(self.labels)
        return np.where(self.level == 0, 1.0, np.where(self.rank >= 0, 1.0 - (self.rank + 1) / (n + 1), 0.0))


def hdl_labeling(
    graph: KnnGraph,
    labels: np.ndarray,
    n_classes: int,
    vote_weight: str = "similarity",
    wave_rule: str = "frontier",
    min_agreement: float = 0.0,
    reverse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> HdlResult:
    """Label every unlabeled sample (``labels == -1``) reachable from a labeled one in ``graph``.

    ``wave_rule``: "max_count" (the paper, literally) labels, in each wave, the unlabeled samples
    with the most labeled neighbours; "frontier" (the default) labels all with at least one,
    ranked by that count, so every seed's region grows at the same pace instead of the first
    dense region flooding the graph. ``min_agreement`` > 0
    defers candidates whose vote agreement is below it to later waves, where more of their
    neighbours vote; they are labeled only when no candidate reaches it. ``reverse`` is
    ``reverse_index(graph)``; pass it to reuse it across calls on one graph.
    """
    if vote_weight not in VOTE_WEIGHTS:
        raise ValueError(f"vote_weight must be one of {VOTE_WEIGHTS}, not {vote_weight!r}")
    if wave_rule not in WAVE_RULES:
        raise ValueError(f"wave_rule must be one of {WAVE_RULES}, not {wave_rule!r}")
    indptr, sources, slots = reverse if reverse is not None else reverse_index(graph)
    n = len(labels)
    weights = (
        np.maximum(graph.similarities, MIN_VOTE_WEIGHT)
        if vote_weight == "similarity"
        else np.ones_like(graph.similarities)
    )
    edge_weights = weights[sources, slots].astype(np.float64)
    result_labels = np.asarray(labels, dtype=np.int64).copy()
    labeled = result_labels >= 0
    level = np.where(labeled, 0, -1).astype(np.int64)
    agreement = np.where(labeled, 1.0, 0.0).astype(np.float32)
    rank = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    votes = np.zeros((n, n_classes), dtype=np.float64)

    newly_labeled = np.flatnonzero(labeled)
    wave = 0
    next_rank = 0
    while True:
        _cast_votes(newly_labeled, result_labels, labeled, indptr, sources, edge_weights, count, votes)
        candidates = np.flatnonzero(~labeled & (count > 0))
        if len(candidates) == 0:
            break
        wave += 1
        if min_agreement > 0:
            candidate_votes = votes[candidates]
            confident = candidate_votes.max(axis=1) >= min_agreement * candidate_votes.sum(axis=1)
            candidates = candidates[confident] if confident.any() else candidates
        top = candidates[count[candidates] == count[candidates].max()] if wave_rule == "max_count" else candidates
        top_votes = votes[top]
        winners = top_votes.argmax(axis=1)
        totals = top_votes.sum(axis=1)
        top_agreement = top_votes[np.arange(len(top)), winners] / totals
        mean_similarity = totals / count[top]
        order = np.lexsort((-mean_similarity, -top_agreement, -count[top]))
        rank[top[order]] = next_rank + np.arange(len(top))
        next_rank += len(top)
        result_labels[top] = winners
        level[top] = wave
        agreement[top] = top_agreement
        labeled[top] = True
        newly_labeled = top
    return HdlResult(result_labels, level, agreement, rank, wave)


def _cast_votes(
    voters: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    indptr: np.ndarray,
    sources: np.ndarray,
    edge_weights: np.ndarray,
    count: np.ndarray,
    votes: np.ndarray,
) -> None:
    """Add the votes of newly labeled ``voters`` to every unlabeled sample that has them as a k-NN.

    ``sources`` and ``edge_weights`` are in reverse-index order: the samples having j as a
    neighbour, and their weight for j, are at ``indptr[j]:indptr[j + 1]``.
    """
    starts = indptr[voters]
    lengths = indptr[voters + 1] - starts
    total = lengths.sum()
    if total == 0:
        return
    # Concatenated ranges starts[i] : starts[i] + lengths[i] without a loop.
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    receivers = sources[offsets]
    open_receivers = ~labeled[receivers]
    receivers = receivers[open_receivers]
    voter_labels = np.repeat(labels[voters], lengths)[open_receivers]
    np.add.at(count, receivers, 1)
    np.add.at(votes.reshape(-1), receivers * votes.shape[1] + voter_labels, edge_weights[offsets[open_receivers]])
