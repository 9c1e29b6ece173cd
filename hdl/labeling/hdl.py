"""Hierarchical dynamic labeling (docs/method.md, "HDL"): a priority-ordered label propagation.

Every unlabeled sample u holds ``count[u]``, the number of labeled samples among its k-NN,
and its vote: their class histogram weighted by similarity. Each wave takes unlabeled samples
with labeled neighbours (all of them, or with ``wave_rule="max_count"`` only those with the
highest count), labels them with their vote's winner, and adds them to the labeled set. Inside
a wave the samples are ranked by count (level 1), then agreement, then mean similarity to their
voters (level 2): all of a wave's labels come from the votes at the wave's start, so the ranking
orders the samples' confidence (``rank``) without changing any label.

Memory and time do not grow with the number of classes: a sample's vote is summarised from
its own k neighbour slots (``weighted_vote``), and only the samples that have a newly labeled
sample among their k-NN (found through the reverse-neighbour index) are summarised again, so
the whole run is O(N k log k) after the graph, for any number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl.labeling.knn import KnnGraph, reverse_index

VOTE_WEIGHTS = ("similarity", "uniform")
WAVE_RULES = ("max_count", "frontier")
# Voters with similarity <= 0 still count, with a negligible weight, so a vote never sums to 0.
MIN_VOTE_WEIGHT = 1e-6
# Distinct receivers of a wave's votes: sorting them costs about this many times a bitmap pass
# over all N samples per receiver, so fewer receivers than N / this are sorted, more are marked.
SORT_TO_SCAN_COST = 16


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


@dataclass(frozen=True)
class Votes:
    """Per row of ``weighted_vote``'s input: -1 / 0 where the row has no voter."""

    winner: np.ndarray  # int64: the class with the most weight, the lowest such class on ties
    winner_weight: np.ndarray  # float64: its weight
    total: np.ndarray  # float64: the weight of all voters
    count: np.ndarray  # int64: the number of voters


def vote_weights(similarities: np.ndarray, vote_weight: str) -> np.ndarray:
    """float32 weight of each voter: its similarity (at least MIN_VOTE_WEIGHT), or 1 ("uniform")."""
    if vote_weight not in VOTE_WEIGHTS:
        raise ValueError(f"vote_weight must be one of {VOTE_WEIGHTS}, not {vote_weight!r}")
    similarities = np.asarray(similarities, dtype=np.float32)
    return np.maximum(similarities, np.float32(MIN_VOTE_WEIGHT)) if vote_weight == "similarity" else np.ones_like(similarities)


def weighted_vote(classes: np.ndarray, weights: np.ndarray) -> Votes:
    """The weighted vote of each row's voters: ``classes`` (m, k) int, -1 where a slot does not
    vote, and their float32 ``weights`` (m, k).

    Only the voters' (class, weight) pairs are grouped, never an (m, n_classes) histogram. Sums
    are float64 of float32 weights in [MIN_VOTE_WEIGHT, 1], which are exact for any k up to
    about 1,000 whatever the order of addition, so winners and ties do not depend on it.
    """
    m = len(classes)
    voting = classes >= 0
    count = voting.sum(axis=1)
    rows = np.repeat(np.arange(m, dtype=np.int64), count)
    voter_classes = classes[voting].astype(np.int64)
    voter_weights = weights[voting].astype(np.float64)
    winner = np.full(m, -1, dtype=np.int64)
    winner_weight = np.zeros(m)
    total = np.zeros(m)
    if len(rows) == 0:
        return Votes(winner, winner_weight, total, count.astype(np.int64))
    # Group the voters by (row, class): rows are already in order, classes ascend within a row.
    keys = rows * (int(voter_classes.max()) + 1) + voter_classes
    order = np.argsort(keys)
    keys = keys[order]
    group_starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    group_weight = np.add.reduceat(voter_weights[order], group_starts)
    group_row = rows[order[group_starts]]
    group_class = voter_classes[order[group_starts]]
    row_starts = np.flatnonzero(np.r_[True, group_row[1:] != group_row[:-1]])
    voted_rows = group_row[row_starts]
    best = np.maximum.reduceat(group_weight, row_starts)
    groups_per_row = np.diff(np.r_[row_starts, len(group_row)])
    best_groups = np.flatnonzero(group_weight == np.repeat(best, groups_per_row))
    first_best = best_groups[np.r_[True, group_row[best_groups[1:]] != group_row[best_groups[:-1]]]]
    winner[voted_rows] = group_class[first_best]
    winner_weight[voted_rows] = best
    total[voted_rows] = np.add.reduceat(group_weight, row_starts)
    return Votes(winner, winner_weight, total, count.astype(np.int64))


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
    ``reverse_index(graph)``; pass it to reuse it across calls on one graph. ``n_classes``
    bounds the labels; no array has a column per class.
    """
    if vote_weight not in VOTE_WEIGHTS:
        raise ValueError(f"vote_weight must be one of {VOTE_WEIGHTS}, not {vote_weight!r}")
    if wave_rule not in WAVE_RULES:
        raise ValueError(f"wave_rule must be one of {WAVE_RULES}, not {wave_rule!r}")
    if len(labels) and labels.max() >= n_classes:
        raise ValueError(f"labels reach {labels.max()}, beyond n_classes={n_classes}")
    indptr, sources, _ = reverse if reverse is not None else reverse_index(graph)
    n = len(labels)
    result_labels = np.asarray(labels, dtype=np.int64).copy()
    labeled = result_labels >= 0
    level = np.where(labeled, 0, -1).astype(np.int64)
    agreement = np.where(labeled, 1.0, 0.0).astype(np.float32)
    rank = np.full(n, -1, dtype=np.int64)
    # The vote of each unlabeled sample with a labeled neighbour, kept up to date: a sample's
    # vote changes only when one of its neighbours is labeled.
    count = np.zeros(n, dtype=np.int64)
    winner = np.full(n, -1, dtype=np.int64)
    winner_weight = np.zeros(n)
    total = np.zeros(n)
    frontier = np.zeros(0, dtype=np.int64)  # sorted: the unlabeled samples with count > 0

    newly_labeled = np.flatnonzero(labeled)
    wave = 0
    next_rank = 0
    while True:
        receivers = _receivers(newly_labeled, indptr, sources, labeled)
        if len(receivers):
            neighbors = graph.neighbors[receivers]
            votes = weighted_vote(
                np.where(neighbors >= 0, result_labels[neighbors], -1),
                vote_weights(graph.similarities[receivers], vote_weight),
            )
            count[receivers], winner[receivers] = votes.count, votes.winner
            winner_weight[receivers], total[receivers] = votes.winner_weight, votes.total
            frontier = receivers if len(frontier) == 0 else np.union1d(frontier, receivers)
        if len(frontier) == 0:
            break
        wave += 1
        candidates = frontier
        if min_agreement > 0:
            confident = winner_weight[candidates] >= min_agreement * total[candidates]
            candidates = candidates[confident] if confident.any() else candidates
        if wave_rule == "max_count":
            candidates = candidates[count[candidates] == count[candidates].max()]
        top = candidates
        top_agreement = winner_weight[top] / total[top]
        mean_similarity = total[top] / count[top]
        order = np.lexsort((-mean_similarity, -top_agreement, -count[top]))
        rank[top[order]] = next_rank + np.arange(len(top))
        next_rank += len(top)
        result_labels[top] = winner[top]
        level[top] = wave
        agreement[top] = top_agreement
        labeled[top] = True
        frontier = frontier[~labeled[frontier]]
        newly_labeled = top
    return HdlResult(result_labels, level, agreement, rank, wave)


def _receivers(voters: np.ndarray, indptr: np.ndarray, sources: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """Sorted distinct unlabeled samples that have one of ``voters`` among their k-NN.

    ``sources[indptr[j]:indptr[j + 1]]`` are the samples having j as a neighbour.
    """
    starts = indptr[voters]
    lengths = indptr[voters + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # Concatenated ranges starts[i] : starts[i] + lengths[i] without a loop.
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    receivers = sources[offsets]
    receivers = receivers[~labeled[receivers]]
    if len(receivers) * SORT_TO_SCAN_COST < len(labeled):
        return np.unique(receivers).astype(np.int64)
    marked = np.zeros(len(labeled), dtype=bool)
    marked[receivers] = True
    return np.flatnonzero(marked)
