"""A data set in memory: uint8 images, int64 labels and class names, with its normalisation statistics.

A data set with an unlabeled pool (a folder's ``unlabeled/``, STL-10's unlabeled split) keeps the pool
at the end of the training set, each with the label ``NO_LABEL``: splits never draw it as labeled, it
is always unlabeled, and nothing scores a pseudo-label against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hdl.errors import UserError

#: the training label of a pool sample, which has none: it is no class and never counts right or wrong
NO_LABEL = -1


@dataclass(frozen=True)
class Dataset:
    name: str
    train_images: np.ndarray  # uint8 (N, H, W, C)
    train_labels: np.ndarray  # int64 (N,); NO_LABEL for the samples of an unlabeled pool
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    #: whether a horizontal flip keeps the class (true for photos and clothes, not for digits)
    hflip: bool = True
    _stats: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train_images.shape[-1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[1]

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images, in [0, 1] units (for normalisation)."""
        if not self._stats:
            # A 256-bin histogram per channel gives exact moments without a float copy of every pixel.
            pixels = self.train_images.reshape(-1, self.channels)
            values = np.arange(256, dtype=np.float64) / 255.0
            means, stds = [], []
            for channel in range(self.channels):
                histogram = np.bincount(pixels[:, channel], minlength=256) / len(pixels)
                mean = float(histogram @ values)
                means.append(mean)
                stds.append(float(np.sqrt(histogram @ (values - mean) ** 2)))
            self._stats["mean"], self._stats["std"] = tuple(means), tuple(stds)
        return self._stats["mean"], self._stats["std"]


def check_arrays(name: str, images: np.ndarray, labels: np.ndarray, source: Path | str) -> None:
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
        raise UserError(
            f"{name}: {source} holds images of shape {images.shape} ({images.dtype}) and {len(labels)} labels; "
            "expected uint8 (N, H, W, C) images with one label each. Delete the files and fetch them again."
        )


def check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path} holds labels in [{labels.min()}, {labels.max()}], but the data set has classes 0 to {num_classes - 1}; "
            "delete it and fetch it again."
        )
