import numpy as np
import pytest

from hdl.labeling.baselines import Labeling, argmax_labels, knn_vote, label_propagation, skipped_at_size, thresholded_argmax
from hdl.labeling.evaluate import coverage_curve, score_labeler, selected_at_coverage
from hdl.labeling.knn import KnnGraph, build_knn_graph


def test_knn_vote_uses_only_the_original_labels():
    # A chain along the circle from sample 0 (class 0) to sample 5 (class 1), denser near 0:
    # propagation along the chain would carry class 0 far, but each sample takes the label of
    # the nearest originally labeled sample.
    angles = np.array([0.0, 0.1, 0.2, 0.4, 0.5, 0.65])
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labeling = knn_vote(points, np.array([0, -1, -1, -1, -1, 1]), n_classes=2, k=1)
    assert labeling.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert labeling.confidence[1] == 1.0


def test_knn_vote_weights_votes_by_similarity():
    angles = np.array([0.0, 0.05, 0.8, 0.85, 0.3])
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labeling = knn_vote(points, np.array([0, -1, 1, 1, -1]), n_classes=2, k=3)
    # sample 1: one class-0 voter at similarity ~1 vs two class-1 voters at ~cos(0.77) = 0.72
    assert labeling.labels[1] == 1
    assert labeling.confidence[1] == pytest.approx(2 * np.cos(0.775) / (1 + 2 * np.cos(0.775)), abs=0.01)


def test_label_propagation_matches_the_closed_form_and_abstains_off_the_seeds_component():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal([5, 0, 0], 0.3, (15, 3)), rng.normal([0, 5, 0], 0.3, (15, 3)), rng.normal([0, 0, 5], 0.3, (6, 3))])
    graph = build_knn_graph(points, k=4)
    labels = np.full(36, -1)
    labels[[0, 1, 15]] = [0, 0, 1]
    labeling = label_propagation(graph, labels, n_classes=2, iterations=200)
    assert labeling.labels[:30].tolist() == [0] * 15 + [1] * 15
    assert labeling.labels[30:].tolist() == [-1] * 6

    weights = np.zeros((36, 36))
    np.add.at(weights, (np.repeat(np.arange(36), 4), graph.neighbors.ravel()), np.maximum(graph.similarities.ravel(), 0) ** 3)
    weights = weights + weights.T
    degree = weights.sum(axis=1)
    normalized = weights / np.sqrt(np.outer(degree, degree))
    seeds = np.zeros((36, 2))
    seeds[[0, 1], 0], seeds[15, 1] = 0.5, 1.0
    scores = np.linalg.solve(np.eye(36) - 0.99 * normalized, seeds)
    unlabeled = labels < 0
    expected = scores.max(axis=1) / np.maximum(scores.sum(axis=1), 1e-300)
    assert np.allclose(labeling.confidence[unlabeled][:27], expected[unlabeled][:27], atol=1e-6)


def test_argmax_labelers_keep_given_labels_and_threshold_their_confidence():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.02, 0.98], [0.5, 0.5]])
    labels = np.array([1, -1, -1, -1])
    assert argmax_labels(probs, labels).labels.tolist() == [1, 1, 1, 0]
    thresholded = thresholded_argmax(probs, labels, threshold=0.95)
    assert thresholded.labels.tolist() == [1, -1, 1, -1]
    assert thresholded.confidence[1:].tolist() == pytest.approx([0.6, 0.98, 0.5])


def test_matched_coverage_keeps_each_labelers_most_confident_share():
    truth = np.array([0, 0, 1, 1, 0, 1])
    evaluated = np.array([False, True, True, True, True, True])
    labeling = Labeling(np.array([0, 0, 0, 1, 1, -1]), np.array([np.inf, 0.9, 0.8, 0.7, 0.6, 0.0]))
    assert selected_at_coverage(labeling, evaluated, 0.4).tolist() == [1, 2]
    score = score_labeler(labeling, truth, evaluated, coverage=0.6, level=np.array([0, 1, 1, 2, 2, 3]))
    assert score["accuracy"] == pytest.approx(2 / 3)
    assert score["coverage"] == pytest.approx(0.6)
    assert score["per_class"] == {"0": 1.0, "1": 0.5}
    assert score["per_level"] == [{"level": 1, "count": 2, "accuracy": 0.5}, {"level": 2, "count": 1, "accuracy": 1.0}]
    # it abstains on sample 5, so at full coverage it keeps 4 of 5
    curve = coverage_curve(labeling, truth, evaluated)
    assert [point["coverage"] for point in curve][-3:] == pytest.approx([0.8, 0.8, 0.8])
    assert curve[1] == {"coverage": pytest.approx(0.2), "accuracy": 1.0}


def test_knn_vote_handles_fewer_labeled_samples_than_k():
    points = np.eye(4) + 0.01
    labeling = knn_vote(points, np.array([0, 1, -1, -1]), n_classes=2, k=3)
    assert labeling.labels[:2].tolist() == [0, 1]
    assert np.all(labeling.labels >= 0)


def test_label_propagation_ignores_missing_neighbours():
    graph = KnnGraph(np.array([[1, -1], [0, -1], [1, 0]]), np.array([[0.9, -np.inf], [0.9, -np.inf], [0.8, 0.7]], dtype=np.float32))
    assert label_propagation(graph, np.array([0, -1, -1]), 1).labels.tolist() == [0, 0, 0]


def test_knn_vote_gives_the_dense_histograms_winner_and_share():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(400, 8)).astype(np.float32)
    labels = np.full(400, -1)
    labels[:60] = rng.integers(0, 7, 60)
    labeling = knn_vote(points, labels, n_classes=7, k=9)
    vectors = points / np.linalg.norm(points, axis=1, keepdims=True)
    similarities = vectors @ vectors[:60].T
    nearest = np.argsort(-similarities, axis=1, kind="stable")[:, :9]
    votes = np.zeros((400, 7))
    np.add.at(votes, (np.repeat(np.arange(400), 9), labels[nearest].ravel()), np.maximum(np.take_along_axis(similarities, nearest, 1), 1e-6).ravel())
    unlabeled = labels < 0
    assert np.array_equal(labeling.labels[unlabeled], votes.argmax(axis=1)[unlabeled])
    assert np.allclose(labeling.confidence[unlabeled], (votes.max(axis=1) / votes.sum(axis=1))[unlabeled], atol=1e-6)


def test_comparison_labelers_are_skipped_above_their_size_with_the_reason():
    assert skipped_at_size(50_000, 500, 10, 128) == {}
    skipped = skipped_at_size(1_281_167, 12_810, 1000, 256)
    assert set(skipped) == {"knn_vote", "label_propagation"}
    assert "multiply-adds" in skipped["knn_vote"] and "GiB" in skipped["label_propagation"]
    assert set(skipped_at_size(1_281_167, 12_810, 10, 256)) == {"knn_vote"}
