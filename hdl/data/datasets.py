"""Image classification data sets as uint8 arrays, read from their real on-disk formats.

Every loader returns a ``Dataset`` with train and test images as uint8
``(N, H, W, C)`` arrays, int64 labels and the class names.  The CIFAR files are
the python pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``);
Fashion-MNIST is the idx format, gzipped or not; SVHN and STL-10 are read in
``hdl.data.svhn_stl10``; ``image_folder`` is a folder of
your own images (``hdl.data.image_folder``), whose unlabeled pool joins the
training set with the label ``NO_LABEL``.  Downloading goes through
torchvision and happens only when asked for (``download=True``), so an offline
machine fails at once with an error that names the path and the remedies.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hdl.data.dataset import NO_LABEL, Dataset, check_arrays, check_labels
from hdl.data.svhn_stl10 import load_stl10, load_svhn
from hdl.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- CIFAR (pickle batches)

CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    torchvision_class: str


_CIFAR = {
    "cifar10": _CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        torchvision_class="CIFAR10",
    ),
    "cifar100": _CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        torchvision_class="CIFAR100",
    ),
}


def _unpickle(path: Path, keys: tuple[bytes, ...]) -> dict:
    """A CIFAR pickle batch holding ``keys``; a torn or foreign file is a UserError that names it."""
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except Exception as error:  # pickle raises many kinds on a torn or foreign file
        raise UserError(f"{path} is not a readable CIFAR batch ({type(error).__name__}); delete it and fetch it again.") from None
    if not isinstance(batch, dict) or any(key not in batch for key in keys):
        raise UserError(f"{path} is not a CIFAR batch with {b', '.join(keys).decode()}; delete it and fetch it again.")
    return batch


def _read_cifar_batches(paths: list[Path], label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path, (b"data", label_key))
        try:
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        except ValueError:
            raise UserError(f"{path}: its data are no 32x32 RGB images; delete it and fetch it again.") from None
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
        check_labels(path, labels[-1], num_classes)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _load_cifar(name: str, data_dir: Path, download: bool) -> Dataset:
    layout = _CIFAR[name]
    root = data_dir / layout.folder
    needed = [root / f for f in (*layout.train_files, layout.test_file, layout.meta_file)]
    if not all(path.is_file() for path in needed) and download:
        import torchvision.datasets

        getattr(torchvision.datasets, layout.torchvision_class)(root=str(data_dir), train=True, download=True)
    missing = [path for path in needed if not path.is_file()]
    if missing:
        raise UserError(
            f"{name}: {missing[0]} is missing (expected the python pickle batches in {root}/). "
            f"Either rerun with download enabled (`--download`, or `download: true` in the config; needs internet), "
            f"or download {CIFAR_URLS[name]} and extract it into {data_dir}/."
        )
    class_names = tuple(n.decode() for n in _unpickle(root / layout.meta_file, (layout.names_key,))[layout.names_key])
    train_images, train_labels = _read_cifar_batches([root / f for f in layout.train_files], layout.label_key, len(class_names))
    test_images, test_labels = _read_cifar_batches([root / layout.test_file], layout.label_key, len(class_names))
    check_arrays(name, train_images, train_labels, root)
    return Dataset(name, train_images, train_labels, test_images, test_labels, class_names, hflip=True)


# ---------------------------------------------------------------- Fashion-MNIST (idx files)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not, as a uint8 array of its stated shape."""
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # a torn or foreign .gz
        raise UserError(f"{path} cannot be read ({type(error).__name__}: {error}); fetch it again.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte idx file (bad magic number); fetch it again.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: header says {shape}, found {array.size} bytes; fetch it again.")
    return array.reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as an unsigned-byte idx file (gzipped when ``path`` ends in .gz): what ``read_idx`` reads."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _fashion_mnist_folder(data_dir: Path, download: bool) -> Path:
    candidates = [data_dir / "fashion-mnist", data_dir / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
    for folder in candidates:
        if all(_find_idx(folder, stem) for stem in FASHION_MNIST_FILES.values()):
            return folder
    if download:
        import torchvision.datasets

        torchvision.datasets.FashionMNIST(root=str(data_dir), train=True, download=True)
        return data_dir / "FashionMNIST" / "raw"
    raise UserError(
        "fashion_mnist: the idx files were found in none of "
        + ", ".join(str(c) for c in candidates)
        + ". Install Debian's package (`apt-get install dataset-fashion-mnist`), "
        "or rerun with download enabled (`--download`, or `download: true` in the config; needs internet)."
    )


def _load_fashion_mnist(data_dir: Path, download: bool) -> Dataset:
    folder = _fashion_mnist_folder(data_dir, download)
    paths = {key: _find_idx(folder, stem) for key, stem in FASHION_MNIST_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key in ("train_labels", "test_labels"):
        check_labels(paths[key], arrays[key], len(FASHION_MNIST_CLASSES))
    train_images = arrays["train_images"][..., None]
    test_images = arrays["test_images"][..., None]
    train_labels = arrays["train_labels"].astype(np.int64)
    test_labels = arrays["test_labels"].astype(np.int64)
    check_arrays("fashion_mnist", train_images, train_labels, folder)
    check_arrays("fashion_mnist", test_images, test_labels, folder)
    return Dataset("fashion_mnist", train_images, train_labels, test_images, test_labels, FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- scikit-learn digits

DIGITS_TEST_FRACTION = 0.2


def _load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped with the package), split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_mask[members[: int(round(len(members) * DIGITS_TEST_FRACTION))]] = True
    return Dataset(
        "digits",
        np.ascontiguousarray(images[~test_mask]),
        labels[~test_mask],
        np.ascontiguousarray(images[test_mask]),
        labels[test_mask],
        tuple(str(d) for d in range(10)),
        hflip=False,
    )


# ---------------------------------------------------------------- your own images


def _load_image_folder(source: DataSource) -> Dataset:
    from hdl.data.image_folder import load_image_folder

    if source.image_folder is None:
        raise UserError("image_folder: no folder given; pass --image-folder ROOT (the config's image_folder.root)")
    images = load_image_folder(source.image_folder, source.data_dir, source.image_size)
    train_images = np.concatenate([images.train_images, images.unlabeled_images])
    train_labels = np.concatenate([images.train_labels, np.full(len(images.unlabeled_images), NO_LABEL, dtype=np.int64)])
    return Dataset("image_folder", train_images, train_labels, images.test_images, images.test_labels, images.class_names)


@dataclass(frozen=True)
class DataSource:
    """Where a data set comes from: ``data_dir`` (and whether torchvision may download into it), and for
    ``image_folder`` the folder of images and the side they are resized to."""

    data_dir: Path
    download: bool = False
    image_folder: Path | None = None
    image_size: int = 32


LOADERS: dict[str, Callable[[DataSource], Dataset]] = {
    "cifar10": lambda source: _load_cifar("cifar10", source.data_dir, source.download),
    "cifar100": lambda source: _load_cifar("cifar100", source.data_dir, source.download),
    "fashion_mnist": lambda source: _load_fashion_mnist(source.data_dir, source.download),
    "digits": lambda source: _load_digits(),
    "svhn": lambda source: load_svhn(source.data_dir, source.download),
    "stl10": lambda source: load_stl10(source.data_dir, source.download),
    "image_folder": _load_image_folder,
}
DATASET_NAMES = tuple(LOADERS)
#: the side in pixels that ``image_folder`` images are resized to unless told otherwise
DEFAULT_IMAGE_SIZE = 32


def load_dataset(
    name: str,
    data_dir: str | Path = "data",
    download: bool = False,
    image_folder: str | Path | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> Dataset:
    """Load data set ``name`` from ``data_dir``; ``download=True`` lets torchvision fetch what is missing.

    ``image_folder`` (the root of ``train/``, ``test/`` and ``unlabeled/``) and ``image_size`` are for
    ``image_folder`` only; its decoded images are cached under ``data_dir``.
    """
    if name not in LOADERS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    folder = Path(image_folder) if image_folder is not None else None
    return LOADERS[name](DataSource(Path(data_dir), download, folder, image_size))
