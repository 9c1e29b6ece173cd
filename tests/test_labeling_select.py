import numpy as np
import pytest

from hdl.labeling.hdl import HdlResult
from hdl.labeling.knn import KnnGraph
from hdl.labeling.select import calibrate_threshold, class_quotas, hdl_confidence, neighbour_consistency, select_pseudo_labels

#                   given given HDL  HDL  HDL  HDL  HDL  unreached
LABELS = np.array([0, 1, 0, 0, 1, 1, 0, -1])
LEVEL = np.array([0, 0, 1, 1, 1, 2, 3, -1])
AGREEMENT = np.array([1.0, 1.0, 0.9, 0.6, 0.8, 0.7, 0.5, 0.0], dtype=np.float32)
RANK = np.array([-1, -1, 0, 1, 2, 3, 4, -1])
RESULT = HdlResult(LABELS, LEVEL, AGREEMENT, RANK, waves=3)


def test_neighbour_consistency_is_the_share_of_neighbours_with_the_same_label():
    graph = KnnGraph(np.array([[1, 2], [0, 2], [0, -1], [2, 1]]), np.zeros((4, 2), dtype=np.float32))
    labels = np.array([0, 1, 0, -1])
    assert neighbour_consistency(graph, labels).tolist() == [0.5, 0.0, 1.0, 0.0]  # missing neighbours do not count


def test_rule_all_keeps_every_new_label_filtered_by_level_and_agreement():
    selection = select_pseudo_labels(RESULT, AGREEMENT.astype(float), rule="all")
    assert selection.positions.tolist() == [2, 3, 4, 5, 6] and selection.labels.tolist() == [0, 0, 1, 1, 0]
    assert selection.weights.tolist() == [1] * 5 and selection.weights.dtype == np.float32
    filtered = select_pseudo_labels(RESULT, AGREEMENT, rule="all", max_level=2, min_agreement=0.7, weight="agreement")
    assert filtered.positions.tolist() == [2, 4, 5] and filtered.weights.tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_confident_rule_keeps_labels_at_or_above_the_threshold():
    confidence = np.array([1, 1, 0.9, 0.4, 0.8, 0.5, 0.95, 0])
    selection = select_pseudo_labels(RESULT, confidence, rule="confident", threshold=0.8, weight="confidence")
    assert selection.positions.tolist() == [2, 4, 6] and selection.threshold == 0.8
    assert selection.weights.tolist() == pytest.approx([0.9, 0.8, 0.95])
    with pytest.raises(ValueError, match="needs a threshold"):
        select_pseudo_labels(RESULT, confidence, rule="confident")


def test_class_quotas_follow_the_prior_and_keep_each_class_most_confident():
    confidence = np.array([1, 1, 0.9, 0.95, 0.9, 0.85, 0.97, 0])
    # four pass the threshold, three of class 0; a 1:1 prior allows two per class
    selection = select_pseudo_labels(RESULT, confidence, "confident", threshold=0.85, prior=np.array([5.0, 5.0]))
    assert selection.positions.tolist() == [3, 4, 5, 6]
    # a 3:1 prior lets class 0 keep three of the four places
    head_heavy = select_pseudo_labels(RESULT, confidence, "confident", threshold=0.85, prior=np.array([30.0, 10.0]))
    assert head_heavy.positions.tolist() == [2, 3, 6, 4] or sorted(head_heavy.positions.tolist()) == [2, 3, 4, 6]
    assert class_quotas(10, np.array([1.0, 3.0])).tolist() == [2, 8]


def test_ties_in_confidence_go_to_the_earlier_hdl_rank():
    confidence = np.full(8, 1.0)
    selection = select_pseudo_labels(RESULT, confidence, "confident", threshold=1.0, prior=np.array([1.0, 0.0]))
    assert selection.positions.tolist() == [2, 3, 6][: len(selection.positions)]


def test_threshold_is_the_quantile_of_the_hidden_labels_confidences():
    folds = [np.array([0.2, 0.9, 1.0, 1.0, 0.5]), np.array([0.8, 1.0, 0.7, 0.6, 0.95])]
    assert calibrate_threshold(folds, 0.1) == 0.5  # nine of the ten values reach it
    assert calibrate_threshold(folds, 0.0) == 0.2
    assert calibrate_threshold(folds, 0.5) == 0.9 and calibrate_threshold(folds, 1.0) == 1.0
    with pytest.raises(ValueError, match="no hidden labels"):
        calibrate_threshold([np.empty(0)])


def test_confidence_kinds():
    graph = KnnGraph(np.tile(np.arange(8), (8, 1))[:, :2], np.zeros((8, 2), dtype=np.float32))
    assert np.array_equal(hdl_confidence("agreement", graph, RESULT), AGREEMENT.astype(np.float64))
    assert np.array_equal(hdl_confidence("rank", graph, RESULT), RESULT.confidence)
    with pytest.raises(ValueError):
        hdl_confidence("entropy", graph, RESULT)
