import numpy as np
import pytest

from hdl.labeling.hdl import MIN_VOTE_WEIGHT, hdl_labeling
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


def labeling_from_scratch(graph: KnnGraph, labels: np.ndarray, n_classes: int, wave_rule: str, min_agreement: float):
    """Reference: recompute every count and vote from the whole graph before each wave."""
    labels = labels.copy()
    level = np.where(labels >= 0, 0, -1)
    agreement = np.where(labels >= 0, 1.0, 0.0)
    weights = np.maximum(graph.similarities, MIN_VOTE_WEIGHT)
    rows = np.repeat(np.arange(len(labels)), graph.k)
    for wave in range(1, len(labels) + 1):
        neighbor_labels = labels[graph.neighbors]
        count = (neighbor_labels >= 0).sum(axis=1)
        votes = np.zeros((len(labels), n_classes))
        voted = (neighbor_labels >= 0).ravel()
        np.add.at(votes, (rows[voted], neighbor_labels.ravel()[voted]), weights.ravel()[voted])
        candidates = (labels < 0) & (count > 0)
        if not candidates.any():
            break
        confident = candidates & (votes.max(axis=1) >= min_agreement * votes.sum(axis=1))
        candidates = confident if confident.any() else candidates
        if wave_rule == "max_count":
            candidates &= count == count[candidates].max()
        labels[candidates] = votes[candidates].argmax(axis=1)
        agreement[candidates] = votes[candidates].max(axis=1) / votes[candidates].sum(axis=1)
        level[candidates] = wave
    return labels, level, agreement


@pytest.mark.parametrize("wave_rule", ["max_count", "frontier"])
@pytest.mark.parametrize("min_agreement", [0.0, 0.8])
def test_incremental_updates_equal_recomputing_from_scratch(wave_rule, min_agreement):
    rng = np.random.default_rng(0)
    n, k, n_classes = 400, 6, 4
    neighbors = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    similarities = np.sort(rng.uniform(-0.2, 1.0, size=(n, k)), axis=1)[:, ::-1]
    labels = np.full(n, -1)
    seeds = rng.choice(n, 20, replace=False)
    labels[seeds] = rng.integers(0, n_classes, 20)
    graph = graph_of(neighbors, similarities)
    result = hdl_labeling(graph, labels, n_classes, wave_rule=wave_rule, min_agreement=min_agreement)
    expected_labels, expected_level, expected_agreement = labeling_from_scratch(graph, labels, n_classes, wave_rule, min_agreement)
    assert np.array_equal(result.labels, expected_labels)
    assert np.array_equal(result.level, expected_level)
    assert np.allclose(result.agreement, expected_agreement, atol=1e-6)
    assert result.waves == expected_level.max() >= 3


def test_rejects_unknown_options():
    with pytest.raises(ValueError, match="wave_rule"):
        hdl_labeling(BRANCHING, BRANCHING_LABELS, 2, wave_rule="fastest")
    with pytest.raises(ValueError, match="vote_weight"):
        hdl_labeling(BRANCHING, BRANCHING_LABELS, 2, vote_weight="squared")
