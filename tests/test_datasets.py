"""Data sets read through the real on-disk formats: CIFAR pickle batches, idx files, digits."""

import pickle
from pathlib import Path

import numpy as np
import pytest

import hdl.data.datasets as datasets
from hdl.data import load_dataset, read_idx
from hdl.data.datasets import write_idx
from hdl.errors import UserError


def write_cifar_batch(path: Path, images_nhwc: np.ndarray, labels: np.ndarray, label_key: bytes) -> None:
    """One batch exactly as the CIFAR tarballs store it: rows of 3072 bytes, channel-major (R, G, B planes)."""
    batch = {
        b"batch_label": b"fixture batch",
        b"data": images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), -1),
        label_key: labels.tolist(),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def random_images(rng, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    expected = {"train_images": [], "train_labels": []}
    for i in range(1, 6):
        images, labels = random_images(rng, 20), rng.integers(0, 10, size=20)
        write_cifar_batch(root / f"data_batch_{i}", images, labels, b"labels")
        expected["train_images"].append(images)
        expected["train_labels"].append(labels)
    test_images, test_labels = random_images(rng, 12), rng.integers(0, 10, size=12)
    write_cifar_batch(root / "test_batch", test_images, test_labels, b"labels")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": 20, b"num_vis": 3072}, handle, protocol=2)
    expected["train_images"] = np.concatenate(expected["train_images"])
    expected["train_labels"] = np.concatenate(expected["train_labels"])
    expected["test_images"], expected["test_labels"] = test_images, test_labels
    return tmp_path, expected


def test_cifar10_reads_pickle_batches_in_order_as_nhwc(cifar10_dir):
    data_dir, expected = cifar10_dir
    dataset = load_dataset("cifar10", data_dir)
    assert dataset.train_images.shape == (100, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.train_images, expected["train_images"])
    np.testing.assert_array_equal(dataset.train_labels, expected["train_labels"])
    np.testing.assert_array_equal(dataset.test_images, expected["test_images"])
    assert dataset.train_labels.dtype == np.int64
    assert dataset.class_names[0] == "airplane" and dataset.num_classes == 10


def test_cifar_pixel_layout_matches_the_format(tmp_path):
    """The first 1024 bytes of a row are the red plane, row-major: pixel (0, 1) red is byte 1, green byte 1025."""
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    row = np.arange(3072, dtype=np.int64) % 251
    for name in ("train", "test"):
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": row[None].astype(np.uint8), b"fine_labels": [7], b"coarse_labels": [1]}, handle)
    with open(root / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}, handle)
    dataset = load_dataset("cifar100", tmp_path)
    assert dataset.num_classes == 100 and dataset.train_labels.tolist() == [7]
    assert dataset.train_images[0, 0, 1].tolist() == [1, 1025 % 251, 2049 % 251]


def test_cifar_missing_offline_names_path_and_both_remedies(tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset("cifar10", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "--download" in message and "cifar-10-python.tar.gz" in message


def test_cifar_download_goes_through_torchvision_then_the_same_reader(tmp_path, cifar10_dir, monkeypatch):
    fixture_dir, expected = cifar10_dir
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, download))
            (Path(root) / "cifar-10-batches-py").symlink_to(fixture_dir / "cifar-10-batches-py")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    target = tmp_path / "fresh"
    target.mkdir()
    dataset = load_dataset("cifar10", target, download=True)
    assert calls == [(str(target), True)]
    np.testing.assert_array_equal(dataset.train_labels, expected["train_labels"])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path, suffix):
    rng = np.random.default_rng(1)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    train_labels, test_labels = rng.integers(0, 10, 30), rng.integers(0, 10, 10)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", train)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", train_labels)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", test_labels)
    dataset = load_dataset("fashion_mnist", tmp_path)
    assert dataset.train_images.shape == (30, 28, 28, 1)
    np.testing.assert_array_equal(dataset.train_images[..., 0], train)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.class_names[9] == "Ankle boot"


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken-idx3-ubyte"
    write_idx(path, np.zeros((4, 2, 2), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_fashion_mnist_missing_everywhere_lists_places_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(UserError) as error:
        load_dataset("fashion_mnist", tmp_path)
    message = str(error.value)
    assert "dataset-fashion-mnist" in message and "--download" in message and str(tmp_path / "nowhere") in message


def test_fashion_mnist_real_debian_files(fashion_mnist_available):
    dataset = load_dataset("fashion_mnist", "/nonexistent-data-dir")
    assert dataset.train_images.shape == (60000, 28, 28, 1) and dataset.test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(dataset.train_labels).tolist() == [6000] * 10
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    mean, std = dataset.channel_stats()
    assert mean[0] == pytest.approx(0.2860, abs=1e-3) and std[0] == pytest.approx(0.3530, abs=1e-3)


def test_digits_is_a_stratified_fixed_split():
    dataset = load_dataset("digits")
    assert dataset.train_images.shape[1:] == (8, 8, 1) and dataset.train_images.dtype == np.uint8
    assert len(dataset.train_labels) + len(dataset.test_labels) == 1797
    assert dataset.train_images.max() == 255 and not dataset.hflip
    per_class_test = np.bincount(dataset.test_labels, minlength=10)
    assert per_class_test.min() >= 35 and per_class_test.max() <= 37
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.test_labels, dataset.test_labels)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(UserError, match="cifar10, cifar100, fashion_mnist, digits"):
        load_dataset("imagenet")
