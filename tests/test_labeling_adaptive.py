import numpy as np
import pytest

from hdl.labeling.adaptive import adaptive_hdl, best_k, holdout_scores, stratified_holdout
from hdl.labeling.knn import build_knn_graph


def test_holdout_is_stratified_and_leaves_every_class_a_seed():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1 + [-1] * 5)
    hidden = stratified_holdout(labels, 0.2, np.random.default_rng(0))
    assert np.bincount(labels[hidden], minlength=3).tolist() == [2, 1, 0]
    assert np.all(labels[hidden] >= 0)


def test_best_k_takes_the_highest_score_and_the_smaller_k_on_ties():
    assert best_k({5: 0.8, 10: 0.9, 20: 0.9}) == 10
    assert best_k({5: np.nan, 10: np.nan}) == 5


def twin_points(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes, each 20 tight pairs of near-identical points scattered around its centre."""
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pair_centres = np.repeat(centres, 20, axis=0) + 0.1 * rng.normal(size=(40, 3))
    points = np.repeat(pair_centres, 2, axis=0) + 1e-4 * rng.normal(size=(80, 3))
    return points, np.repeat([0, 1], 40)


def test_adaptive_k_avoids_a_k_too_small_to_reach_the_hidden_labels():
    # With k=1 every point sees only its twin, and one point of each labeled pair is labeled,
    # so a hidden label is unreachable; k=9 reaches neighbouring pairs of the same class.
    rng = np.random.default_rng(0)
    points, truth = twin_points(rng)
    labels = np.full(80, -1)
    labeled = np.arange(0, 80, 2)[rng.permutation(40)[:16]]
    labels[labeled] = truth[labeled]
    graph = build_knn_graph(points, k=9)
    scores = holdout_scores(graph, labels, 2, [1, 9], folds=3)
    assert scores[1] == 0.0 and scores[9] == 1.0
    assert adaptive_hdl(graph, labels, 2, k_candidates=[1, 9]).k == 9


def test_adaptive_k_avoids_a_k_large_enough_to_flood_a_small_class():
    # A class of 40 points next to one of 8: with k=30 the small class's neighbourhoods are
    # mostly the big class, so its hidden labels are lost; k=4 keeps to the small class.
    rng = np.random.default_rng(1)
    big = np.array([1.0, 0.0]) + 0.05 * rng.normal(size=(40, 2))
    small = np.array([np.cos(0.6), np.sin(0.6)]) + 0.05 * rng.normal(size=(8, 2))
    points, truth = np.vstack([big, small]), np.repeat([0, 1], [40, 8])
    labels = truth.copy()
    labels[rng.permutation(48)[:12]] = -1
    labels[[40, 41]] = 1  # the small class keeps enough labels to hide some
    graph = build_knn_graph(points, k=30)
    result = adaptive_hdl(graph, labels, 2, k_candidates=[4, 30], folds=4, holdout_fraction=0.5)
    assert result.k == 4
    assert result.k_scores[4] > result.k_scores[30]
    assert np.all(result.result.labels[truth == 1] == 1)


def test_a_fixed_k_skips_the_holdout():
    points, truth = twin_points(np.random.default_rng(2))
    labels = np.where(np.arange(80) % 4 == 0, truth, -1)
    result = adaptive_hdl(build_knn_graph(points, k=5), labels, 2, k=5)
    assert result.k == 5 and result.k_scores == {}
    assert np.array_equal(result.result.labels, truth)


def test_candidates_above_the_graphs_k_are_refused():
    points, truth = twin_points(np.random.default_rng(3))
    with pytest.raises(ValueError, match="graph's k"):
        adaptive_hdl(build_knn_graph(points, k=5), np.where(truth == truth, truth, -1), 2, k_candidates=[5, 10])
