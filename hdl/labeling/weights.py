"""Iscen et al.'s (CVPR 2019, "Label propagation for deep semi-supervised learning") per-label
weight, omega * zeta, for stage 2's ``entropy_balanced`` weight: omega = 1 - H(z) / log C, z the
similarity-weighted class distribution of the sample's k nearest neighbours' final HDL labels
(their propagated score, in HDL's terms), scaled so the largest kept omega is 1 as theirs is;
zeta_c = (n / C) / n_c, n_c the given and kept labels of class c, their inverse class frequency.
"""

from __future__ import annotations

import numpy as np

from hdl.labeling.knn import KnnGraph
def neighbour_label_entropy(graph: KnnGraph, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """H(z) / log C per sample, z the similarity-weighted class distribution of its k nearest
    neighbours' ``labels`` (unlabeled neighbours left out; 1 where none is labeled)."""
    neighbour_labels = np.where(graph.neighbors >= 0, labels[np.maximum(graph.neighbors, 0)], -1)
    weights = np.where(neighbour_labels >= 0, np.maximum(graph.similarities, 0.0), 0.0).astype(np.float64)
    rows = np.repeat(np.arange(len(labels)), graph.k)
    voting = neighbour_labels.ravel() >= 0
    distribution = np.zeros((len(labels), n_classes))
    np.add.at(distribution, (rows[voting], neighbour_labels.ravel()[voting]), weights.ravel()[voting])
    total = distribution.sum(axis=1, keepdims=True)
    z = np.divide(distribution, total, out=np.zeros_like(distribution), where=total > 0)
    entropy = -np.sum(np.where(z > 0, z * np.log(np.where(z > 0, z, 1.0)), 0.0), axis=1)
    return np.where(total[:, 0] > 0, entropy / np.log(max(n_classes, 2)), 1.0)


def entropy_balanced_weights(graph: KnnGraph, labels: np.ndarray, positions: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """omega * zeta of the kept labels at ``positions`` (see the module docstring), ``labeled`` the
    given labels per class."""
    if len(positions) == 0:
        return np.empty(0)
    n_classes = len(labeled)
    omega = 1.0 - neighbour_label_entropy(graph, labels, n_classes)[positions]
    omega = omega / omega.max() if omega.max() > 0 else np.ones(len(positions))
    per_class = labeled + np.bincount(labels[positions], minlength=n_classes)
    zeta = (per_class.sum() / n_classes) / np.maximum(per_class, 1)
    return omega * zeta[labels[positions]]
