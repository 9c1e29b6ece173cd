import numpy as np
import pytest

from hdl.labeling.hdl import MIN_VOTE_WEIGHT, VOTE_WEIGHTS, WAVE_RULES, HdlResult, hdl_labeling, weighted_vote
from hdl.labeling.knn import KnnGraph


def graph_of(neighbors, similarities) -> KnnGraph:
    return KnnGraph(np.array(neighbors, dtype=np.int64), np.array(similarities, dtype=np.float32))


# Samples 0 and 1 are class 0, sample 5 is class 1. At the start sample 2 has two labeled
# neighbours, sample 3 one (sample 5), sample 4 none.
BRANCHING = graph_of(
    neighbors=[[1, 2], [0, 2], [0, 1], [2, 5], [3, 2], [4, 3]],
    similarities=[[0.9, 0.8], [0.9, 0.8], [0.9, 0.9], [0.9, 0.5], [0.7, 0.6], [0.9, 0.5]],
)
BRANCHING_LABELS = np.array([0, 0, -1, -1, -1, 1])


def test_max_count_waves_label_the_most_supported_sample_first():
    result = hdl_labeling(BRANCHING, BRANCHING_LABELS, n_classes=2, wave_rule="max_count")
    # wave 1: sample 2 (count 2); wave 2: sample 3, now count 2, votes 0.9 for class 0 vs 0.5;
    # wave 3: sample 4 from two class-0 neighbours.
    assert result.labels.tolist() == [0, 0, 0, 0, 0, 1]
    assert result.level.tolist() == [0, 0, 1, 2, 3, 0]
    assert result.agreement[3] == pytest.approx(0.9 / 1.4)
    assert result.agreement[[2, 4]].tolist() == [1.0, 1.0]
    assert result.rank.tolist() == [-1, -1, 0, 1, 2, -1]
    assert result.waves == 3


def test_frontier_waves_label_every_sample_with_a_labeled_neighbour_at_once():
    result = hdl_labeling(BRANCHING, BRANCHING_LABELS, n_classes=2, wave_rule="frontier")
    # wave 1: samples 2 (class 0) and 3 (only sample 5 votes: class 1); wave 2: sample 4,
    # whose nearer neighbour 3 (0.7) outvotes 2 (0.6).
    assert result.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert result.level.tolist() == [0, 0, 1, 1, 2, 0]
    assert result.agreement[4] == pytest.approx(0.7 / 1.3)
    # inside wave 1, sample 2 (two labeled neighbours) ranks before sample 3 (one)
    assert result.rank.tolist() == [-1, -1, 0, 1, 2, -1]


def test_within_a_wave_higher_agreement_ranks_first_then_higher_similarity():
    # Samples 3 to 6 all have two labeled neighbours, so they form one wave.
    graph = graph_of(
        neighbors=[[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 2], [1, 2]],
        similarities=[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.6, 0.6], [0.8, 0.8], [0.9, 0.3], [0.9, 0.9]],
    )
    result = hdl_labeling(graph, np.array([0, 0, 1, -1, -1, -1, -1]), n_classes=2)
    assert result.level[3:].tolist() == [1, 1, 1, 1]
    assert result.agreement[3:].tolist() == pytest.approx([1.0, 1.0, 0.75, 0.5])
    assert result.rank[3:].tolist() == [1, 0, 2, 3]


def test_similarity_weights_can_overrule_the_majority_and_uniform_weights_cannot():
    graph = graph_of(
        neighbors=[[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]],
        similarities=[[0.9, 0.1, 0.1], [0.9, 0.5, 0.5], [0.9, 0.5, 0.5], [0.9, 0.5, 0.5]],
    )
    labels = np.array([-1, 0, 1, 1])
    assert hdl_labeling(graph, labels, 2).labels[0] == 0
    assert hdl_labeling(graph, labels, 2, vote_weight="uniform").labels[0] == 1


def test_negative_similarities_still_vote_with_a_negligible_weight():
    graph = graph_of(neighbors=[[1], [0]], similarities=[[-0.5], [-0.5]])
    result = hdl_labeling(graph, np.array([-1, 1]), n_classes=2)
    assert result.labels[0] == 1
    assert result.agreement[0] == 1.0
    assert MIN_VOTE_WEIGHT > 0


def test_a_minimum_agreement_defers_split_votes_until_more_neighbours_vote():
    # Sample 2's first vote is split 0.6 (class 0) to 0.5 (class 1); sample 3 is clearly class 1
    # and, once labeled, tips sample 2 to class 1.
    graph = graph_of(
        neighbors=[[2, 3, 1], [3, 2, 0], [0, 1, 3], [1, 2, 0]],
        similarities=[[0.5, 0.5, 0.1], [0.5, 0.5, 0.1], [0.6, 0.5, 0.4], [0.9, 0.1, 0.05]],
    )
    labels = np.array([0, 1, -1, -1])
    eager = hdl_labeling(graph, labels, 2, wave_rule="frontier")
    assert eager.labels.tolist() == [0, 1, 0, 1] and eager.level.tolist() == [0, 0, 1, 1]
    patient = hdl_labeling(graph, labels, 2, wave_rule="frontier", min_agreement=0.7)
    assert patient.labels.tolist() == [0, 1, 1, 1] and patient.level.tolist() == [0, 0, 2, 1]
    # below the minimum but nothing else is left: labeled anyway, with its real agreement
    assert patient.agreement[2] == pytest.approx(0.9 / 1.5)


def test_samples_no_labeled_sample_can_reach_stay_unlabeled():
    # 2 and 3 only point at each other; 0 points at 1 (labeled).
    graph = graph_of(neighbors=[[1], [0], [3], [2]], similarities=np.ones((4, 1)))
    result = hdl_labeling(graph, np.array([-1, 1, -1, -1]), n_classes=2)
    assert result.labels.tolist() == [1, 1, -1, -1]
    assert result.level.tolist() == [1, 0, -1, -1]
    assert result.rank.tolist() == [0, -1, -1, -1]
    assert np.all(result.confidence[2:] < result.confidence[0])


def test_missing_neighbours_of_an_approximate_graph_are_ignored():
    graph = graph_of(neighbors=[[1, -1], [0, -1], [1, 0]], similarities=[[1, -np.inf], [1, -np.inf], [1, 1]])
    result = hdl_labeling(graph, np.array([-1, 0, -1]), n_classes=1)
    assert result.labels.tolist() == [0, 0, 0]
    assert result.level.tolist() == [1, 0, 1]


def dense_hdl(graph: KnnGraph, labels: np.ndarray, n_classes: int, vote_weight: str, wave_rule: str, min_agreement: float):
    """Reference: the dense (N, n_classes) vote histogram, recomputed from the whole graph before each wave."""
    labels = labels.copy()
    n = len(labels)
    level = np.where(labels >= 0, 0, -1)
    agreement = np.where(labels >= 0, 1.0, 0.0).astype(np.float32)
    rank = np.full(n, -1)
    similarities = graph.similarities.astype(np.float32)
    weights = (np.maximum(similarities, np.float32(MIN_VOTE_WEIGHT)) if vote_weight == "similarity" else np.ones_like(similarities)).astype(np.float64)
    rows = np.repeat(np.arange(n), graph.k)
    next_rank, wave = 0, 0
    while True:
        neighbor_labels = np.where(graph.neighbors >= 0, labels[graph.neighbors], -1)
        voted = neighbor_labels >= 0
        count = voted.sum(axis=1)
        votes = np.zeros((n, n_classes))
        np.add.at(votes, (rows[voted.ravel()], neighbor_labels[voted]), weights[voted])
        candidates = np.flatnonzero((labels < 0) & (count > 0))
        if len(candidates) == 0:
            break
        wave += 1
        if min_agreement > 0:
            confident = votes[candidates].max(axis=1) >= min_agreement * votes[candidates].sum(axis=1)
            candidates = candidates[confident] if confident.any() else candidates
        if wave_rule == "max_count":
            candidates = candidates[count[candidates] == count[candidates].max()]
        winners = votes[candidates].argmax(axis=1)
        totals = votes[candidates].sum(axis=1)
        candidate_agreement = votes[candidates, winners] / totals
        order = np.lexsort((-totals / count[candidates], -candidate_agreement, -count[candidates]))
        rank[candidates[order]] = next_rank + np.arange(len(candidates))
        next_rank += len(candidates)
        labels[candidates], level[candidates], agreement[candidates] = winners, wave, candidate_agreement
    return HdlResult(labels, level, agreement, rank, wave)


def random_graph(rng: np.random.Generator, n: int, k: int, tied: bool) -> KnnGraph:
    """k distinct random neighbours per sample, some missing (-1); similarities nearest first,
    some negative, and with ``tied`` drawn from a few values so that votes and ranks tie exactly."""
    neighbors = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    similarities = rng.choice([-0.25, 0.25, 0.5, 0.75, 1.0], size=(n, k)) if tied else rng.uniform(-0.2, 1.0, size=(n, k))
    similarities = np.sort(similarities, axis=1)[:, ::-1].astype(np.float32)
    missing = np.arange(k) >= k - rng.integers(0, 3, size=(n, 1))
    return graph_of(np.where(missing, -1, neighbors), np.where(missing, -np.inf, similarities))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("wave_rule", WAVE_RULES)
@pytest.mark.parametrize("vote_weight", VOTE_WEIGHTS)
@pytest.mark.parametrize("min_agreement", [0.0, 0.7])
def test_sparse_votes_give_exactly_the_dense_histograms_labels(seed, wave_rule, vote_weight, min_agreement):
    rng = np.random.default_rng(seed)
    n, k = 300, [3, 6, 12][seed % 3]
    n_classes = [2, 5, 40][seed // 2]
    graph = random_graph(rng, n, k, tied=seed % 2 == 0)
    labels = np.full(n, -1)
    seeds = rng.choice(n, 15, replace=False)
    labels[seeds] = rng.integers(0, n_classes, 15)
    result = hdl_labeling(graph, labels, n_classes, vote_weight=vote_weight, wave_rule=wave_rule, min_agreement=min_agreement)
    expected = dense_hdl(graph, labels, n_classes, vote_weight, wave_rule, min_agreement)
    assert np.array_equal(result.labels, expected.labels)
    assert np.array_equal(result.level, expected.level)
    assert np.array_equal(result.agreement, expected.agreement)
    assert np.array_equal(result.rank, expected.rank)
    assert result.waves == expected.waves >= 2


def test_weighted_vote_matches_a_class_histogram_and_breaks_ties_towards_the_lower_class():
    rng = np.random.default_rng(0)
    classes = rng.integers(-1, 6, size=(500, 8))
    weights = rng.choice([0.25, 0.5, 1.0], size=(500, 8)).astype(np.float32)
    votes = weighted_vote(classes, weights)
    histogram = np.zeros((500, 6))
    voting = classes >= 0
    np.add.at(histogram, (np.nonzero(voting)[0], classes[voting]), weights[voting])
    some = voting.any(axis=1)
    assert np.array_equal(votes.winner, np.where(some, histogram.argmax(axis=1), -1))
    assert np.array_equal(votes.winner_weight, histogram.max(axis=1))
    assert np.array_equal(votes.total, histogram.sum(axis=1))
    assert np.array_equal(votes.count, voting.sum(axis=1))
    tie = weighted_vote(np.array([[4, 1, 4, 1, -1]]), np.full((1, 5), 0.5, dtype=np.float32))
    assert tie.winner.tolist() == [1] and tie.total.tolist() == [2.0]


def test_rejects_unknown_options():
    with pytest.raises(ValueError, match="wave_rule"):
        hdl_labeling(BRANCHING, BRANCHING_LABELS, 2, wave_rule="fastest")
    with pytest.raises(ValueError, match="vote_weight"):
        hdl_labeling(BRANCHING, BRANCHING_LABELS, 2, vote_weight="squared")
