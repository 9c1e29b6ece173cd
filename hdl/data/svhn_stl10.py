"""SVHN and STL-10 read from the files torchvision downloads, in their own formats.

SVHN: ``<data_dir>/svhn/{train,test}_32x32.mat``, MATLAB files with ``X`` (32, 32, 3, N) uint8 and ``y``
(N, 1), where digit 0 has the label 10.  STL-10: ``<data_dir>/stl10_binary/``, raw uint8 files of
(N, 3, 96, 96) images stored column-major (``train_X.bin``, ``test_X.bin``, ``unlabeled_X.bin``), labels
1-10 (``train_y.bin``, ``test_y.bin``) and ``class_names.txt``; its 100,000 unlabeled images are the
data set's unlabeled pool (label ``NO_LABEL``).  torchvision's classes check every file's md5 whenever
they open it, so they serve only to download (``download=True``); the readers here check the shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdl.data.dataset import NO_LABEL, Dataset, check_arrays, check_labels
from hdl.errors import UserError

SVHN_FOLDER = "svhn"
SVHN_SPLITS = ("train", "test")
STL10_FOLDER = "stl10_binary"
STL10_SIDE = 96
STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt")


def _missing(name: str, path: Path, folder: Path, data_dir: Path) -> UserError:
    return UserError(
        f"{name}: {path} is missing (expected the files torchvision downloads in {folder}/). Rerun with download "
        f"enabled (`--download`, or `download: true` in the config; needs internet), or put them in {data_dir}/."
    )


# ---------------------------------------------------------------- SVHN (.mat)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        images, labels = np.asarray(mat["X"]), np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except Exception as error:  # scipy raises many kinds on a torn or foreign file
        raise UserError(f"{path} is not a readable SVHN .mat file with X and y ({type(error).__name__}); "
                        "delete it and fetch it again.") from None
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        raise UserError(f"{path}: X has shape {images.shape} ({images.dtype}), not uint8 (32, 32, 3, N); "
                        "delete it and fetch it again.")
    labels = np.where(labels == 10, 0, labels)  # SVHN stores digit 0 as 10
    check_labels(path, labels, 10)
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels


def load_svhn(data_dir: Path, download: bool) -> Dataset:
    folder = data_dir / SVHN_FOLDER
    paths = {split: folder / f"{split}_32x32.mat" for split in SVHN_SPLITS}
    for split, path in paths.items():
        if not path.is_file() and download:
            import torchvision.datasets

            torchvision.datasets.SVHN(root=str(folder), split=split, download=True)
        if not path.is_file():
            raise _missing("svhn", path, folder, data_dir)
    (train_images, train_labels), (test_images, test_labels) = (_read_svhn_mat(paths[split]) for split in SVHN_SPLITS)
    check_arrays("svhn", train_images, train_labels, paths["train"])
    check_arrays("svhn", test_images, test_labels, paths["test"])
    return Dataset("svhn", train_images, train_labels, test_images, test_labels, tuple(str(d) for d in range(10)), hflip=False)


# ---------------------------------------------------------------- STL-10 (raw binaries)


def _read_stl10_images(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    pixels = 3 * STL10_SIDE * STL10_SIDE
    if raw.size % pixels:
        raise UserError(f"{path} is truncated: {raw.size} bytes is no whole number of 3x96x96 images; fetch it again.")
    # column-major (N, 3, 96, 96): each channel plane is stored by columns, so axis 2 is x and axis 3 is y
    return np.ascontiguousarray(raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 3, 2, 1))


def _read_stl10_labels(path: Path, num_images: int, num_classes: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1  # stored 1-10
    if len(labels) != num_images:
        raise UserError(f"{path} holds {len(labels)} labels for {num_images} images; fetch it again.")
    check_labels(path, labels, num_classes)
    return labels


def load_stl10(data_dir: Path, download: bool) -> Dataset:
    folder = data_dir / STL10_FOLDER
    if not all((folder / name).is_file() for name in STL10_FILES) and download:
        import torchvision.datasets

        torchvision.datasets.STL10(root=str(data_dir), split="train", download=True)
    for name in STL10_FILES:
        if not (folder / name).is_file():
            raise _missing("stl10", folder / name, folder, data_dir)
    class_names = tuple(line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip())
    train_images, test_images, pool = (_read_stl10_images(folder / f"{part}_X.bin") for part in ("train", "test", "unlabeled"))
    train_labels = _read_stl10_labels(folder / "train_y.bin", len(train_images), len(class_names))
    test_labels = _read_stl10_labels(folder / "test_y.bin", len(test_images), len(class_names))
    return Dataset(
        "stl10",
        np.concatenate([train_images, pool]),
        np.concatenate([train_labels, np.full(len(pool), NO_LABEL, dtype=np.int64)]),
        test_images,
        test_labels,
        class_names,
        hflip=True,
    )
