"""Labelers HDL is measured against, on the same inputs (docs/method.md, "Diagnostics and comparison labelers").

Each returns a ``Labeling``: a label per sample (-1 where it abstains) and a confidence
that orders its labels from most to least trusted, for scoring at matched coverage.
``STAGE2_LABELERS`` are the ones stage 2 may train on instead of HDL (``hdl.labeler``,
``--labeler``): ``stage2_labeling`` runs one on HDL's inputs, ``as_one_wave`` makes its labels a
result the stage-2 selection reads as it reads HDL's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hdl.labeling.hdl import HdlResult, vote_weights, weighted_vote
from hdl.labeling.knn import KnnGraph, l2_normalize

ARGMAX_THRESHOLD = 0.95
PROPAGATION_ALPHA = 0.99
PROPAGATION_GAMMA = 3.0
PROPAGATION_ITERATIONS = 20
# Above these sizes `hdl relabel` skips a comparison labeler and says why (``skipped_at_size``).
KNN_VOTE_MAX_PRODUCTS = 5e11
PROPAGATION_DENSE_ARRAYS = 6  # seeds, solution, residual, direction, product, scores
LABEL_PROPAGATION_MAX_SCORES = 5e7
#: the labelers whose labels stage 2 can train on: HDL's own and three of the comparison labelers
STAGE2_LABELERS = ("hdl", "knn_vote", "label_propagation", "argmax")


@dataclass(frozen=True)
class Labeling:
    labels: np.ndarray  # int64 (N,), -1 where the labeler abstains
    confidence: np.ndarray  # float64 (N,), higher = more trusted


def knn_vote(embeddings: np.ndarray, labels: np.ndarray, n_classes: int, k: int) -> Labeling:
    """Similarity-weighted vote of each sample's k nearest originally labeled samples.

    Non-hierarchical: the labeled set never grows. The vote is HDL's (``hdl.weighted_vote``,
    weights ``hdl.vote_weights``), so the two differ only in who votes. Confidence is the
    winner's vote share. Given labels are kept as they are. ``n_classes`` bounds the labels;
    no array has a column per class.
    """
    if labels.max() >= n_classes:
        raise ValueError(f"labels reach {labels.max()}, beyond n_classes={n_classes}")
    votes = weighted_vote(*nearest_given_labels(embeddings, labels, k))
    return _keep_given(labels, votes.winner, votes.winner_weight / votes.total)


def nearest_given_labels(embeddings: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's k nearest labeled samples (cosine, exact): their labels (N, k), -1 in empty
    slots, and their vote weights (N, k) as HDL weighs a vote (``vote_weights``, "similarity")."""
    import faiss  # lazily, as in knn.py

    vectors = l2_normalize(embeddings)
    labeled = np.flatnonzero(labels >= 0)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors[labeled])
    similarities, positions = index.search(vectors, min(k, len(labeled)))
    return np.where(positions >= 0, labels[labeled][positions], -1), vote_weights(similarities, "similarity")


def skipped_at_size(n: int, n_labeled: int, n_classes: int, dim: int) -> dict[str, str]:
    """The comparison labelers too large to run on this input, each with the reason."""
    reasons = {}
    products = float(n) * n_labeled * dim
    if products > KNN_VOTE_MAX_PRODUCTS:
        reasons["knn_vote"] = (
            f"its exact search of {n} samples among {n_labeled} labeled ones in {dim} dimensions is {products:.1e} "
            f"multiply-adds, above {KNN_VOTE_MAX_PRODUCTS:.0e}"
        )
    if float(n) * n_classes > LABEL_PROPAGATION_MAX_SCORES:
        reasons["label_propagation"] = (
            f"its conjugate gradient holds {PROPAGATION_DENSE_ARRAYS} dense (N, classes) float64 arrays, "
            f"{PROPAGATION_DENSE_ARRAYS * 8 * n * n_classes / 2**30:.1f} GiB for N={n} and {n_classes} classes; "
            f"it runs up to N x classes = {LABEL_PROPAGATION_MAX_SCORES:.0e}"
        )
    return reasons


def label_propagation(
    graph: KnnGraph,
    labels: np.ndarray,
    n_classes: int,
    alpha: float = PROPAGATION_ALPHA,
    gamma: float = PROPAGATION_GAMMA,
    iterations: int = PROPAGATION_ITERATIONS,
) -> Labeling:
    """Label propagation (Zhou et al. 2004) on the k-NN graph, as Iscen et al. (CVPR 2019) run it.

    Affinities s^gamma of the k-NN (negative similarities dropped), symmetrised, normalised
    D^-1/2 W D^-1/2; solve (I - alpha W) Z = Y by conjugate gradient, with Y_ic = 1/|L_c| for
    the labeled samples of class c. Label = argmax of Z; confidence = the max of Z's row
    normalised to sum 1. Samples Z leaves at 0 (unreached) abstain.
    """
    n = len(labels)
    present = graph.neighbors >= 0
    rows = np.repeat(np.arange(n), graph.k)[present.ravel()]
    affinity = np.maximum(graph.similarities[present], 0.0) ** gamma
    weights = sp.csr_matrix((affinity, (rows, graph.neighbors[present])), shape=(n, n))
    weights = weights + weights.T
    weights.setdiag(0)
    degree = np.asarray(weights.sum(axis=1)).ravel()
    inv_sqrt_degree = 1.0 / np.sqrt(np.maximum(degree, np.finfo(float).tiny))
    normalized = sp.diags(inv_sqrt_degree) @ weights @ sp.diags(inv_sqrt_degree)
    system = sp.identity(n, format="csr") - alpha * normalized

    labeled = np.flatnonzero(labels >= 0)
    seeds = np.zeros((n, n_classes))
    seeds[labeled, labels[labeled]] = 1.0 / np.bincount(labels[labeled], minlength=n_classes)[labels[labeled]]
    scores = np.maximum(_conjugate_gradient(system, seeds, iterations), 0.0)
    totals = scores.sum(axis=1)
    reached = totals > 0
    confidence = np.where(reached, scores.max(axis=1) / np.where(reached, totals, 1.0), 0.0)
    return _keep_given(labels, np.where(reached, scores.argmax(axis=1), -1), confidence)


def argmax_labels(probs: np.ndarray, labels: np.ndarray) -> Labeling:
    """The model's own prediction; confidence = its max probability."""
    return _keep_given(labels, probs.argmax(axis=1), probs.max(axis=1).astype(np.float64))


def thresholded_argmax(probs: np.ndarray, labels: np.ndarray, threshold: float = ARGMAX_THRESHOLD) -> Labeling:
    """The model's prediction where its max probability reaches ``threshold`` (FixMatch's rule)."""
    confidence = probs.max(axis=1).astype(np.float64)
    return _keep_given(labels, np.where(confidence >= threshold, probs.argmax(axis=1), -1), confidence)


def stage2_labeling(
    name: str, graph: KnnGraph, embeddings: np.ndarray, labels: np.ndarray, n_classes: int, probs: np.ndarray | None
) -> Labeling:
    """The comparison labeler ``name`` of ``STAGE2_LABELERS`` (not "hdl") on HDL's inputs, at the k of
    HDL's ``graph``: the k-NN vote of the k nearest given labels, label propagation on the graph, or the
    model's argmax (needs ``probs``)."""
    if name == "knn_vote":
        return knn_vote(embeddings, labels, n_classes, graph.k)
    if name == "label_propagation":
        return label_propagation(graph, labels, n_classes)
    if name == "argmax":
        if probs is None:
            raise ValueError('labeler "argmax" needs the model\'s probabilities')
        return argmax_labels(probs, labels)
    raise ValueError(f"labeler must be one of {STAGE2_LABELERS[1:]} here, not {name!r}")


def as_one_wave(labeling: Labeling, given: np.ndarray) -> HdlResult:
    """A labeler's labels as an ``HdlResult`` of one wave: level 0 for the ``given`` labels, 1 for the
    labels it adds, -1 where it abstains; agreement = its confidence (clipped to [0, 1]; 1 for given
    labels); rank = its labels ordered by that confidence, the most confident first."""
    is_given = given >= 0
    added = ~is_given & (labeling.labels >= 0)
    level = np.where(is_given, 0, np.where(added, 1, -1)).astype(np.int64)
    agreement = np.where(is_given, 1.0, np.where(added, np.clip(labeling.confidence, 0.0, 1.0), 0.0)).astype(np.float32)
    order = np.flatnonzero(added)[np.argsort(-labeling.confidence[added], kind="stable")]
    rank = np.full(len(given), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return HdlResult(labeling.labels.astype(np.int64), level, agreement, rank, waves=int(added.any()))


def _keep_given(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> Labeling:
    given = labels >= 0
    return Labeling(
        np.where(given, labels, predicted).astype(np.int64),
        np.where(given, np.inf, confidence).astype(np.float64),
    )


def _conjugate_gradient(matrix: sp.spmatrix, rhs: np.ndarray, iterations: int) -> np.ndarray:
    """Solve ``matrix @ x = rhs`` for every column of ``rhs`` at once (symmetric positive definite)."""
    solution = np.zeros_like(rhs)
    residual = rhs.copy()
    direction = residual.copy()
    residual_norm = np.einsum("ij,ij->j", residual, residual)
    for _ in range(iterations):
        product = matrix @ direction
        curvature = np.einsum("ij,ij->j", direction, product)
        step = np.divide(residual_norm, curvature, out=np.zeros_like(residual_norm), where=curvature > 0)
        solution += step * direction
        residual -= step * product
        new_norm = np.einsum("ij,ij->j", residual, residual)
        direction = residual + np.divide(new_norm, residual_norm, out=np.zeros_like(new_norm), where=residual_norm > 0) * direction
        residual_norm = new_norm
    return solution
