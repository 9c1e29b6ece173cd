"""An unlabeled pool (training samples labeled NO_LABEL): always unlabeled, labeled by HDL for stage 2,
and never scored, neither in the logs nor in the evaluation."""

import numpy as np
import pytest
import torch

from hdl.cell import Cell
from hdl.data import make_split
from hdl.data.dataset import NO_LABEL
from hdl.files import read_embeddings, read_extra_labels
from hdl.io import save_npz
from hdl.labeling.baselines import Labeling
from hdl.labeling.evaluate import coverage_curve, score_labeler
from hdl.ssl.ops import label_accuracy, pseudo_label_accuracy

#: 30 samples of each of 2 classes, then a pool of 20
TRAIN_LABELS = np.concatenate([np.repeat([0, 1], 30), np.full(20, NO_LABEL)])
POOL = np.arange(60, 80)


@pytest.mark.parametrize("imbalance", [1.0, 3.0])
def test_a_split_never_labels_the_pool_and_puts_all_of_it_in_the_unlabeled_set(imbalance):
    split = make_split(TRAIN_LABELS, 2, 10, imbalance, seed=1, unlabeled_ratio=1.0)
    assert not np.isin(split.labeled_idx, POOL).any()
    assert np.isin(POOL, split.unlabeled_idx).all()
    assert split.pool_count(TRAIN_LABELS) == 20
    assert sum(split.unlabeled_counts(TRAIN_LABELS, 2)) == len(split.unlabeled_idx) - 20


def test_scores_leave_pool_samples_out_of_accuracy_and_coverage():
    truth = np.array([0, 1, 0, NO_LABEL, NO_LABEL, NO_LABEL])
    labels = np.array([0, 0, 0, 1, 1, 1])  # right, wrong, right on the labeled; anything on the pool
    labeling = Labeling(labels, np.array([0.9, 0.8, 0.1, 1.0, 1.0, 1.0]))
    evaluated = np.ones(6, dtype=bool)
    full = score_labeler(labeling, truth, evaluated, 1.0, n_classes=2)
    assert (full["accuracy"], full["coverage"], full["scored"]) == (pytest.approx(2 / 3), 1.0, 3)
    assert full["per_class"] == {"0": 1.0, "1": 0.0}
    # the most confident third of the scored samples: the pool's higher confidence takes no place
    assert score_labeler(labeling, truth, evaluated, 1 / 3, n_classes=2)["accuracy"] == 1.0
    assert coverage_curve(labeling, truth, evaluated, (1.0,)) == [{"coverage": 1.0, "accuracy": pytest.approx(2 / 3)}]


def test_logged_pseudo_label_accuracy_ignores_the_pool():
    truth = torch.tensor([0, 1, NO_LABEL, NO_LABEL])
    labels = torch.tensor([0, 0, 1, 0])
    assert pseudo_label_accuracy(labels, truth).item() == pytest.approx(0.5)
    mask = torch.tensor([True, False, True, True])
    assert pseudo_label_accuracy(labels, truth, mask).item() == 1.0
    assert label_accuracy(torch.eye(2)[labels], truth).item() == pytest.approx(0.5)


def test_embeddings_of_pool_samples_carry_truth_minus_one(tmp_path):
    path = tmp_path / "embed.npz"
    save_npz(path, embeddings=np.random.default_rng(0).normal(size=(4, 3)), labels=np.array([0, -1, -1, -1]),
             truth=np.array([0, 1, NO_LABEL, NO_LABEL]), index=np.arange(4))
    arrays, _ = read_embeddings(path)
    assert arrays["truth"].tolist() == [0, 1, NO_LABEL, NO_LABEL]


def test_stage_2_takes_hdl_labels_for_pool_samples(tmp_path):
    split = make_split(TRAIN_LABELS, 2, 10, seed=0)
    cell = Cell("image_folder", 10, 1.0, 0, 2, "fixmatch")
    path = tmp_path / "extra.npz"
    save_npz(path, index=POOL[:5], label=np.array([0, 1, 1, 0, 1]), **cell.arrays())
    index, label, _ = read_extra_labels(path, cell, len(TRAIN_LABELS), 2, split)
    assert index.tolist() == POOL[:5].tolist() and label.tolist() == [0, 1, 1, 0, 1]
