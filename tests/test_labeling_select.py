import numpy as np
import pytest

from hdl.labeling.hdl import HdlResult
from hdl.labeling.knn import KnnGraph
from hdl.labeling.weights import entropy_balanced_weights
from hdl.labeling.select import (
    argmax_agreement,
    calibrate_threshold,
    class_quotas,
    crest_rates,
    distribution_aware,
    hdl_confidence,
    label_kinds,
    predicted_class_trust,
    knn_margin,
    neighbour_consistency,
    select_pseudo_labels,
)

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
    selection = select_pseudo_labels(RESULT, confidence, rule="confident", thresholds={"all": 0.8}, weight="confidence")
    assert selection.positions.tolist() == [2, 4, 6] and selection.thresholds == {"all": 0.8}
    assert selection.weights.tolist() == pytest.approx([0.9, 0.8, 0.95])
    with pytest.raises(ValueError, match="needs thresholds"):
        select_pseudo_labels(RESULT, confidence, rule="confident")


def test_labeled_quotas_follow_the_given_labels_and_keep_each_class_most_confident():
    confidence = np.array([1, 1, 0.9, 0.95, 0.9, 0.85, 0.97, 0])
    # four pass the threshold, three of class 0; 1:1 given labels allow two per class
    selection = select_pseudo_labels(RESULT, confidence, "confident", thresholds={"all": 0.85}, class_quota="labeled", labeled=np.array([5, 5]))
    assert selection.positions.tolist() == [3, 4, 5, 6] and selection.quotas.tolist() == [2, 2]
    # 3:1 given labels let class 0 keep three of the four places
    head_heavy = select_pseudo_labels(RESULT, confidence, "confident", thresholds={"all": 0.85}, class_quota="labeled", labeled=np.array([30, 10]))
    assert head_heavy.positions.tolist() == [2, 3, 4, 6]
    assert class_quotas("labeled", np.array([6, 4]), np.array([1, 3])).tolist() == [2, 8]
    assert class_quotas("uniform", np.array([6, 4]), np.array([1, 3])).tolist() == [5, 5]
    assert class_quotas("none", np.array([6, 4]), np.array([1, 3])).tolist() == [6, 4]
    with pytest.raises(ValueError, match="needs the given labels"):
        select_pseudo_labels(RESULT, confidence, "confident", thresholds={"all": 0.85}, class_quota="uniform")


def test_crest_keeps_the_share_of_the_mirrored_labeled_count_to_the_power_one_over_alpha():
    # google-research/crest data/cifar.py: the class of the r-th largest count keeps (N_(C+1-r) / N_1)^(1/alpha)
    assert crest_rates(np.array([100, 10, 1]), alpha=3) == pytest.approx([0.01 ** (1 / 3), 0.1 ** (1 / 3), 1.0])
    assert crest_rates(np.array([1, 100, 10]), alpha=1) == pytest.approx([1.0, 0.01, 0.1])  # ranked by count, not index
    assert crest_rates(np.array([7, 7, 7]), alpha=3).tolist() == [1.0, 1.0, 1.0]  # balanced: CReST keeps all
    # of its own candidates, rounded down as CReST's int()
    assert class_quotas("crest", np.array([50, 50, 50]), np.array([100, 10, 1]), crest_alpha=3).tolist() == [10, 23, 50]


def test_on_long_tailed_labels_only_uniform_and_crest_quotas_keep_tail_labels():
    """Ten classes, given labels at imbalance 100 (100 down to 1), and 100 confident HDL labels per
    class: quotas that follow the labels leave the tail classes almost nothing."""
    n_classes, per_class = 10, 100
    labeled = np.rint(100 * 0.01 ** (np.arange(n_classes) / (n_classes - 1))).astype(int)
    labels = np.repeat(np.arange(n_classes), per_class)
    n = len(labels)
    result = HdlResult(labels, np.ones(n, dtype=np.int64), np.ones(n, dtype=np.float32), np.arange(n), waves=1)
    confidence = np.random.default_rng(0).uniform(0.5, 1.0, n)
    kept = {}
    for quota in ("labeled", "uniform", "crest"):
        selection = select_pseudo_labels(result, confidence, "confident", thresholds={"all": 0.5}, class_quota=quota, labeled=labeled)
        kept[quota] = np.bincount(selection.labels, minlength=n_classes)
        for c in range(n_classes):  # each class keeps its most confident labels
            mine = confidence[labels == c]
            assert np.sort(confidence[selection.positions][selection.labels == c]).tolist() == np.sort(mine)[::-1][: kept[quota][c]][::-1].tolist()
    tail = slice(7, 10)  # the three smallest classes: 3, 2 and 1 given labels
    # the labels' share of the 1,000 candidates: 4 per given label, 12, 8 and 4 of the tail's 100 each
    assert kept["labeled"][tail].tolist() == [12, 8, 4] and kept["labeled"][0] == per_class
    assert kept["uniform"][tail].tolist() == [per_class] * 3
    assert kept["crest"][tail].tolist() == [int(per_class * (labeled[9 - c] / 100) ** (1 / 3)) for c in (7, 8, 9)]
    assert kept["crest"][9] == per_class and kept["crest"][0] == int(per_class * 0.01 ** (1 / 3))


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


def test_knn_margin_is_the_labels_share_against_the_strongest_other_class_among_the_nearest_given_labels():
    # one dimension, cosine: [1, 0] points are class 0's side, [0, 1] class 1's
    embeddings = np.array([[1, 0], [1, 0.1], [0.1, 1], [1, 0.05], [0.05, 1], [1, 0.2]], dtype=np.float32)
    given = np.array([0, 0, 1, -1, -1, -1])
    labels = np.array([0, 0, 1, 0, 0, -1])
    margin = knn_margin(embeddings, given, labels, k=2)
    assert margin[3] == pytest.approx(1.0)  # both nearest given labels are 0: full margin
    assert margin[4] < 0.5  # labeled 0, but its nearest given label is 1
    assert margin[5] == 0.0  # no label
    three = knn_margin(embeddings, given, labels, k=3)
    assert 0.5 < three[3] < 1.0  # the third voter, class 1, lowers the margin


def test_argmax_agreement_ranks_every_label_the_classifier_agrees_with_first():
    probs = np.array([[0.6, 0.4], [0.45, 0.55], [0.9, 0.1], [0.5, 0.5]])
    labels = np.array([0, 0, 0, -1])
    assert argmax_agreement(probs, labels).tolist() == pytest.approx([0.8, 0.225, 0.95, 0.0])
    graph = KnnGraph(np.zeros((4, 1), dtype=np.int64), np.zeros((4, 1), dtype=np.float32))
    result = HdlResult(labels, np.ones(4, dtype=np.int64), np.ones(4, dtype=np.float32), np.arange(4), waves=1)
    with pytest.raises(ValueError, match="probabilities"):
        hdl_confidence("argmax_agreement", graph, result)


def test_predicted_class_trust_is_dasos_upsilon_of_the_unlabeled_predictions():
    # the classifier predicts class 0 for 8 unlabeled samples, class 1 for 2, class 2 never
    probs = np.eye(3)[[0] * 8 + [1] * 2 + [2] * 5]
    unlabeled = np.arange(15) < 10  # the last five (all class 2) are given labels: not counted
    assert predicted_class_trust(probs, unlabeled, temperature=1.0).tolist() == pytest.approx([1.0, 0.25, 0.0])
    assert predicted_class_trust(probs, unlabeled, temperature=0.5).tolist() == pytest.approx([1.0, 0.0625, 0.0])
    assert predicted_class_trust(probs, unlabeled, temperature=2.0).tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_distribution_aware_scales_the_embeddings_support_of_a_disputed_label_by_the_trust_of_the_classifiers_class():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    labels = np.array([0, 1, 1, -1])  # agreed, disputed (the classifier says 0), agreed, no label
    support, trust = np.array([0.3, 0.6, 0.9, 1.0]), np.array([0.5, 1.0])
    assert distribution_aware(probs, labels, support, trust).tolist() == pytest.approx([0.95, 0.5 * 0.6, 0.9, 0.0])
    kinds = label_kinds("distribution_aware", probs, labels)
    assert kinds["agreeing"].tolist() == [True, False, True, False] and kinds["disputed"].tolist() == [False, True, False, False]
    assert list(label_kinds("consistency", probs, labels)) == ["all"]


def test_each_kind_of_label_is_kept_against_its_own_threshold():
    confidence = np.array([1, 1, 0.9, 0.4, 0.8, 0.5, 0.95, 0])
    disputed = np.array([False, False, False, True, False, True, False, False])
    kinds = {"agreeing": (LABELS >= 0) & ~disputed, "disputed": disputed}
    selection = select_pseudo_labels(RESULT, confidence, "confident", thresholds={"agreeing": 0.85, "disputed": 0.45}, kinds=kinds)
    assert selection.positions.tolist() == [2, 5, 6]  # 0.5 passes as a disputed label, 0.8 fails as an agreeing one
    with pytest.raises(ValueError, match="kinds"):
        select_pseudo_labels(RESULT, confidence, "confident", thresholds={"all": 0.5}, kinds=kinds)


def test_entropy_balanced_weight_is_neighbour_certainty_times_inverse_class_frequency():
    #  0, 1: given (class 0, 1); 2, 3, 4: kept HDL labels 0, 0, 1
    labels = np.array([0, 1, 0, 0, 1])
    neighbors = np.array([[2, 3], [4, 0], [0, 3], [1, 2], [1, 3]])
    graph = KnnGraph(neighbors, np.ones((5, 2), dtype=np.float32))
    weights = entropy_balanced_weights(graph, labels, np.array([2, 3, 4]), labeled=np.array([1, 1]))
    # sample 2's neighbours agree (entropy 0), 3's and 4's are split (entropy log 2): omega 1, 0, 0
    # class 0 holds 3 labels, class 1 two: zeta = (5 / 2) / n_c = 5/6 and 5/4
    assert weights.tolist() == pytest.approx([5 / 6, 0.0, 0.0])
    uneven = KnnGraph(neighbors, np.array([[1, 1], [1, 1], [1, 1], [0.75, 0.25], [1, 1]], dtype=np.float32))
    p = 0.75  # sample 3: three quarters of its neighbours' similarity for class 1
    omega_3 = 1 + (p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)
    assert entropy_balanced_weights(uneven, labels, np.array([2, 3, 4]), np.array([1, 1])).tolist() == pytest.approx([5 / 6, omega_3 * 5 / 6, 0.0])
    # scaled so that the most certain kept label has omega 1 (Iscen et al. divide by the largest)
    assert entropy_balanced_weights(uneven, labels, np.array([3, 4]), np.array([1, 1])).tolist() == pytest.approx([1.0, 0.0])
