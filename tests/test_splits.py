"""Balanced and long-tailed splits: counts, determinism, errors, and the `hdl split` command."""

import numpy as np
import pytest

from hdl.cell import Cell
from hdl.cli import main
from hdl.data import load_dataset, long_tailed_counts, make_split
from hdl.errors import UserError
from hdl.files import read_split

LT_LABELED = [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15]
LT_UNLABELED = [3000, 1798, 1078, 646, 387, 232, 139, 83, 50, 30]


def test_long_tailed_counts_follow_the_standard_profile():
    assert long_tailed_counts(1500, 100, 10) == LT_LABELED
    assert long_tailed_counts(3000, 100, 10) == LT_UNLABELED
    assert long_tailed_counts(1500, 50, 10)[-1] == 30
    assert long_tailed_counts(100, 1, 5) == [100] * 5


def balanced_labels(per_class: int, num_classes: int) -> np.ndarray:
    return np.random.default_rng(3).permutation(np.repeat(np.arange(num_classes), per_class))


def test_balanced_split_takes_budget_over_classes_and_leaves_the_rest_unlabeled():
    labels = balanced_labels(50, 10)
    split = make_split(labels, 10, 40, imbalance=1, seed=0)
    assert np.bincount(labels[split.labeled_idx]).tolist() == [4] * 10
    assert len(split.unlabeled_idx) == 500 - 40
    assert not set(split.labeled_idx) & set(split.unlabeled_idx)
    with_labeled = make_split(labels, 10, 40, imbalance=1, seed=0, include_labeled_in_unlabeled=True)
    assert len(with_labeled.unlabeled_idx) == 500
    np.testing.assert_array_equal(with_labeled.labeled_idx, split.labeled_idx)


def test_long_tailed_split_counts_and_disjointness():
    labels = balanced_labels(5000, 10)
    split = make_split(labels, 10, 1500, imbalance=100, seed=1)
    assert split.labeled_counts(labels, 10) == LT_LABELED
    assert split.unlabeled_counts(labels, 10) == LT_UNLABELED
    assert not set(split.labeled_idx) & set(split.unlabeled_idx)
    smaller_ratio = make_split(labels, 10, 1500, imbalance=100, seed=1, unlabeled_ratio=1.0)
    assert smaller_ratio.unlabeled_counts(labels, 10)[0] == 1500


def test_unlabeled_imbalance_gives_the_unlabeled_set_its_own_profile():
    labels = balanced_labels(5000, 10)
    matched = make_split(labels, 10, 300, imbalance=100, seed=1)
    balanced_unlabeled = make_split(labels, 10, 300, imbalance=100, seed=1, unlabeled_imbalance=1)
    np.testing.assert_array_equal(matched.labeled_idx, balanced_unlabeled.labeled_idx)
    assert balanced_unlabeled.unlabeled_counts(labels, 10) == [600] * 10
    assert matched.unlabeled_counts(labels, 10) == long_tailed_counts(600, 100, 10)
    reversed_steepness = make_split(labels, 10, 300, imbalance=100, seed=1, unlabeled_imbalance=10)
    assert reversed_steepness.unlabeled_counts(labels, 10) == long_tailed_counts(600, 10, 10)
    with pytest.raises(UserError, match="needs long-tailed labels"):
        make_split(labels, 10, 40, imbalance=1, unlabeled_imbalance=1)


def test_same_seed_same_indices_other_seed_other_indices():
    labels = balanced_labels(100, 10)
    first, again, other = (make_split(labels, 10, 40, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(first.labeled_idx, again.labeled_idx)
    np.testing.assert_array_equal(first.unlabeled_idx, again.unlabeled_idx)
    assert not np.array_equal(first.labeled_idx, other.labeled_idx)


def test_asking_more_than_a_class_has_names_the_class_and_counts():
    labels = np.concatenate([np.zeros(100, int), np.ones(10, int)])
    with pytest.raises(UserError, match=r"class 1 has 10 training samples.*20 labeled \+ 0 unlabeled"):
        make_split(labels, 2, 40, imbalance=1)
    with pytest.raises(UserError, match=r"class 0 has 100 training samples.*60 labeled \+ 120 unlabeled"):
        make_split(labels, 2, 60, imbalance=2)


def test_balanced_budget_must_divide_by_classes():
    with pytest.raises(UserError, match="not a multiple of the 10 classes"):
        make_split(balanced_labels(10, 10), 10, 45)


def test_split_command_on_digits_writes_a_loadable_deterministic_file(tmp_path, capsys):
    out = tmp_path / "split.npz"
    assert main(["split", "--dataset", "digits", "--labels", "40", "--seed", "2", "--out", str(out)]) == 0
    assert "labeled per class:   [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]" in capsys.readouterr().out
    split = read_split(out, cell=Cell("digits", 40, 1.0, 2, 10), num_train=1438)
    labels = load_dataset("digits").train_labels
    np.testing.assert_array_equal(split.labeled_idx, make_split(labels, 10, 40, seed=2).labeled_idx)
    with pytest.raises(UserError, match=r"made for dataset=digits, labels=40, imbalance=1, seed=2, num_classes=10, .*differ in seed"):
        read_split(out, cell=Cell("digits", 40, 1.0, 3, 10))
    assert not list(tmp_path.glob(".split*")), "no temporary file may be left behind"


def test_split_command_errors_exit_2_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "split.npz"
    assert main(["split", "--dataset", "digits", "--labels", "4000", "--out", str(out)]) == 2
    assert "class 0 has" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_split_command_on_real_fashion_mnist_long_tailed(tmp_path, capsys, fashion_mnist_available):
    out = tmp_path / "lt.npz"
    args = ["split", "--dataset", "fashion_mnist", "--labels", "1500", "--imbalance", "100", "--seed", "0"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"labeled per class:   {LT_LABELED}" in printed and f"unlabeled per class: {LT_UNLABELED}" in printed
    assert main(["split", "--dataset", "fashion_mnist", "--labels", "40", "--out", str(tmp_path / "b.npz")]) == 0
    assert "labeled per class:   [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]" in capsys.readouterr().out
