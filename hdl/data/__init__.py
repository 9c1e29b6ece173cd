"""Data sets, labeled/unlabeled splits and batch augmentations."""

from hdl.data.dataset import Dataset
from hdl.data.datasets import DATASET_NAMES, load_dataset, read_idx
from hdl.data.splits import Split, long_tailed_counts, make_split, save_split

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "Split",
    "load_dataset",
    "long_tailed_counts",
    "make_split",
    "read_idx",
    "save_split",
]
