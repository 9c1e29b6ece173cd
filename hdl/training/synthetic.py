"""Random images for measuring and checking training where no data set is at hand (benchmarks, the device check, tests).

Speed does not depend on the images' content, and the checks (compilation,
same numbers compiled and eager, exact resume) hold on any content.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from hdl.data.datasets import FASHION_MNIST_FILES, write_idx
from hdl.training.loop import Trainer
from hdl.training.settings import RunConfig, resolve_settings
from hdl.training.streams import TrainingData


def random_dataset(shape: tuple[int, ...], num_classes: int = 10, size: int = 4096, test_size: int = 256, seed: int = 0):
    """uint8 (N, H, W, C) images and labels in the attributes of a ``hdl.data.Dataset``."""
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        train_images=rng.integers(0, 256, (size, *shape), dtype=np.uint8),
        train_labels=rng.integers(0, num_classes, size).astype(np.int64),
        test_images=rng.integers(0, 256, (test_size, *shape), dtype=np.uint8),
        test_labels=rng.integers(0, num_classes, test_size).astype(np.int64),
        num_classes=num_classes,
    )


def random_trainer(method: str, arch: str, dataset, device: torch.device, assignments: list[str], num_labeled: int = 256, seed: int = 0) -> Trainer:
    """A Trainer of ``method`` on ``dataset`` (its first ``num_labeled`` samples labeled), with ``--set`` style ``assignments``.

    Its steps are for timing and tracing, so the label probe is off unless ``assignments`` turn it on."""
    from hdl.data.augment import Augmenter
    from hdl.labeling.pipeline import LabelingOptions, SelectionOptions

    train, method_config = resolve_settings(method, ["probe_every=0", *assignments])
    config = RunConfig(
        dataset="random uint8 images", labels=num_labeled, imbalance=1.0, seed=seed, method=method, arch=arch, steps=10**6,
        split=None, init=None, extra_labels=None, train=train, method_config=method_config,
        labeling=LabelingOptions(seed=seed), selection=SelectionOptions(), refresh_every=0,
    )
    channels = dataset.train_images.shape[-1]
    views = Augmenter([0.5] * channels, [0.25] * channels, hflip=True)
    labeled, unlabeled = np.arange(num_labeled), np.arange(num_labeled, len(dataset.train_labels))
    return Trainer(config, TrainingData.build(dataset, labeled, unlabeled, views, device), device)


def write_fashion_mnist_files(folder: Path, size: int = 4096, test_size: int = 512, seed: int = 0) -> None:
    """Random 28x28 images and labels as Fashion-MNIST's four idx files in ``folder`` (``--data-dir`` is its parent, named fashion-mnist)."""
    dataset = random_dataset((28, 28), 10, size, test_size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FASHION_MNIST_FILES.items():
        write_idx(folder / f"{stem}.gz", getattr(dataset, key))
