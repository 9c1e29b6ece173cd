"""A run's data on the training device, and the index streams its batches are drawn from.

Labeled stream: epoch-shuffled (every labeled sample once per pass, a fresh
order each pass), as the references' samplers do; unlabeled likewise.  Each
stream has its own generator seeded from the run's seed (augmentation draws
from torch's global generator); the checkpoint saves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdl.errors import UserError
from hdl.ssl import Views
from hdl.training.inference import images_to_tensor


@dataclass(frozen=True)
class HostLabels:
    """The split and the training labels as numpy arrays, for what reads them on the host (the method's class
    prior, the label probe): nothing copies them back from the device."""

    train_labels: np.ndarray
    given_index: np.ndarray  # the split's labeled samples, without the extra ones
    given_targets: np.ndarray
    unlabeled_index: np.ndarray


@dataclass
class TrainingData:
    """Everything a run reads, as tensors on the training device (images stay uint8 (N, C, H, W)), and its
    labels on the host."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    labeled_index: torch.Tensor  # into the training set: the split's labeled samples, then the extra ones
    labeled_targets: torch.Tensor
    labeled_weights: torch.Tensor
    unlabeled_index: torch.Tensor
    num_classes: int
    views: Views
    host: HostLabels
    num_extra: int = 0

    @classmethod
    def build(
        cls,
        dataset,
        labeled_index: np.ndarray,
        unlabeled_index: np.ndarray,
        views: Views,
        device: torch.device,
        extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        extra_leave_unlabeled: bool = False,
    ) -> "TrainingData":
        """``extra`` = (index, label, weight) of pseudo-labeled samples: they join the labeled stream
        and, with ``extra_leave_unlabeled``, leave the unlabeled one."""
        targets = dataset.train_labels[labeled_index]
        given_index, given_targets = labeled_index, targets
        weights = np.ones(len(labeled_index), dtype=np.float32)
        if extra is not None:
            extra_index, extra_labels, extra_weights = extra
            clash = np.intersect1d(extra_index, labeled_index)
            if len(clash):
                raise UserError(
                    f"{len(clash)} extra-label indices (e.g. {clash[:5].tolist()}) are labeled samples of the split already; "
                    "extra labels must be for unlabeled samples"
                )
            if extra_leave_unlabeled:
                unlabeled_index = np.setdiff1d(unlabeled_index, extra_index)
            labeled_index = np.concatenate([labeled_index, extra_index])
            targets = np.concatenate([targets, extra_labels])
            weights = np.concatenate([weights, extra_weights.astype(np.float32)])

        host = HostLabels(*(np.asarray(array, dtype=np.int64) for array in (dataset.train_labels, given_index, given_targets, unlabeled_index)))

        def longs(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(array, dtype=np.int64), device=device)

        return cls(
            train_images=images_to_tensor(dataset.train_images, device),
            train_labels=longs(host.train_labels),
            test_images=images_to_tensor(dataset.test_images, device),
            test_labels=longs(dataset.test_labels),
            labeled_index=longs(labeled_index),
            labeled_targets=longs(targets),
            labeled_weights=torch.as_tensor(weights, device=device),
            unlabeled_index=longs(host.unlabeled_index),
            num_classes=dataset.num_classes,
            views=views,
            host=host,
            num_extra=0 if extra is None else len(extra[0]),
        )

    def replace_extra_labels(self, index: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
        """The extra labels become these (a label refresh): the split's labels stay first."""
        given = len(self.labeled_index) - self.num_extra
        device = self.labeled_index.device
        self.labeled_index = torch.cat([self.labeled_index[:given], torch.as_tensor(index, dtype=torch.int64, device=device)])
        self.labeled_targets = torch.cat([self.labeled_targets[:given], torch.as_tensor(labels, dtype=torch.int64, device=device)])
        self.labeled_weights = torch.cat([self.labeled_weights[:given], torch.as_tensor(weights, dtype=torch.float32, device=device)])
        self.num_extra = len(index)

    def sizes(self) -> dict[str, int]:
        return {
            "num_labeled": len(self.labeled_index) - self.num_extra,
            "num_extra": self.num_extra,
            "num_unlabeled": len(self.unlabeled_index),
        }


class EpochShuffler:
    """Endless batches of positions in [0, size): each pass visits every position once, in a fresh random order."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(size, generator=self.generator)
        self.position = 0

    def next(self, batch_size: int) -> torch.Tensor:
        parts = []
        while batch_size > 0:
            if self.position == self.size:
                self.order = torch.randperm(self.size, generator=self.generator)
                self.position = 0
            take = min(batch_size, self.size - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position += take
            batch_size -= take
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.size = len(self.order)  # the labeled set's size changes where a refresh replaced the extra labels
        self.position = state["position"]


def to_device(indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU indices on ``device``; onto a GPU through pinned memory without waiting for it."""
    if device.type == "cpu":
        return indices
    return indices.pin_memory().to(device, non_blocking=True)


def stream_seed(seed: int, stream: int, start_step: int = 0) -> int:
    """Seed of one data stream; a run continuing another (``start_step`` > 0) draws new orders."""
    entropy = [seed, stream] + ([start_step] if start_step else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
