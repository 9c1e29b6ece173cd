"""SVHN (.mat) and STL-10 (raw binaries) on small files written in each on-disk format, read as torchvision does."""

import numpy as np
import pytest
import torchvision.datasets
from scipy.io import savemat

from hdl.data import load_dataset
from hdl.data.dataset import NO_LABEL
from hdl.errors import UserError

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def write_svhn(folder, split, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    labels = rng.integers(1, 11, size=(n, 1))
    labels[0] = 10  # SVHN's digit 0
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})


def write_stl10(data_dir, n_train=6, n_test=4, n_unlabeled=5):
    rng = np.random.default_rng(0)
    folder = data_dir / "stl10_binary"
    folder.mkdir(parents=True)
    for part, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        rng.integers(0, 256, size=n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{part}_X.bin")
        if part != "unlabeled":
            rng.integers(1, 11, size=n, dtype=np.uint8).tofile(folder / f"{part}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    (folder / "fold_indices.txt").write_text("\n".join(" ".join(map(str, range(n_train))) for _ in range(10)) + "\n")
    return folder


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks every file's md5 when it opens it; these small files have other sums."""
    for cls in (torchvision.datasets.SVHN, torchvision.datasets.STL10):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)


def test_svhn_reads_the_mat_files_as_torchvision_does(tmp_path, no_md5):
    for seed, split in enumerate(("train", "test")):
        write_svhn(tmp_path / "svhn", split, 7 + seed, seed)
    dataset = load_dataset("svhn", tmp_path)
    assert dataset.train_images.shape == (7, 32, 32, 3) and dataset.test_images.shape == (8, 32, 32, 3)
    assert dataset.class_names == tuple("0123456789") and not dataset.hflip
    for split, images, labels in (("train", dataset.train_images, dataset.train_labels),
                                  ("test", dataset.test_images, dataset.test_labels)):
        reference = torchvision.datasets.SVHN(str(tmp_path / "svhn"), split=split)
        np.testing.assert_array_equal(images, reference.data.transpose(0, 2, 3, 1))  # theirs is NCHW
        np.testing.assert_array_equal(labels, reference.labels)
    assert dataset.train_labels[0] == 0 and dataset.test_labels[0] == 0  # label 10 became digit 0


def test_stl10_reads_the_binaries_as_torchvision_does_with_the_unlabeled_split_as_a_pool(tmp_path, no_md5):
    write_stl10(tmp_path)
    dataset = load_dataset("stl10", tmp_path)
    assert dataset.class_names == tuple(STL10_CLASSES)
    assert dataset.train_images.shape == (11, 96, 96, 3) and dataset.test_images.shape == (4, 96, 96, 3)
    train = torchvision.datasets.STL10(str(tmp_path), split="train")
    unlabeled = torchvision.datasets.STL10(str(tmp_path), split="unlabeled")
    test = torchvision.datasets.STL10(str(tmp_path), split="test")
    np.testing.assert_array_equal(dataset.train_images[:6], train.data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(dataset.train_images[6:], unlabeled.data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(dataset.test_images, test.data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(dataset.train_labels, np.concatenate([train.labels, np.full(5, NO_LABEL)]))
    np.testing.assert_array_equal(dataset.test_labels, test.labels)


def test_download_goes_through_torchvision_then_the_same_reader(tmp_path, monkeypatch):
    fetched = []

    def fake_svhn(root, split, download):
        fetched.append(split)
        write_svhn(tmp_path / "svhn", split, 3, 0)

    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    assert len(load_dataset("svhn", tmp_path, download=True).train_labels) == 3
    assert fetched == ["train", "test"]


def test_missing_files_name_the_path_and_the_remedies(tmp_path):
    with pytest.raises(UserError, match=r"svhn/train_32x32.mat is missing.*--download"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(UserError, match=r"stl10_binary/train_X.bin is missing.*--download"):
        load_dataset("stl10", tmp_path)


def test_torn_files_are_named(tmp_path):
    folder = write_stl10(tmp_path)
    with open(folder / "unlabeled_X.bin", "ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(UserError, match="unlabeled_X.bin is truncated"):
        load_dataset("stl10", tmp_path)
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"not a mat file")
    write_svhn(tmp_path / "svhn", "test", 2, 0)
    with pytest.raises(UserError, match="train_32x32.mat is not a readable SVHN .mat file"):
        load_dataset("svhn", tmp_path)
