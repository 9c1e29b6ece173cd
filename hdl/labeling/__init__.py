"""Labeling from embeddings: the k-NN graph, HDL, adaptive k, comparison labelers, scoring.

Pure functions of numpy arrays (no torch, no files); `hdl relabel` (``cli.py``) wraps them.
"""

from hdl.labeling.adaptive import AdaptiveHdl, adaptive_hdl, best_k, holdout_scores, stratified_holdout
from hdl.labeling.baselines import Labeling, argmax_labels, knn_vote, label_propagation, thresholded_argmax
from hdl.labeling.evaluate import coverage_curve, score_labeler, selected_at_coverage
from hdl.labeling.hdl import HdlResult, hdl_labeling
from hdl.labeling.knn import KnnGraph, build_knn_graph, l2_normalize, reverse_index
from hdl.labeling.select import select_pseudo_labels

__all__ = [
    "AdaptiveHdl",
    "HdlResult",
    "KnnGraph",
    "Labeling",
    "adaptive_hdl",
    "argmax_labels",
    "best_k",
    "build_knn_graph",
    "coverage_curve",
    "hdl_labeling",
    "holdout_scores",
    "knn_vote",
    "l2_normalize",
    "label_propagation",
    "reverse_index",
    "score_labeler",
    "select_pseudo_labels",
    "selected_at_coverage",
    "stratified_holdout",
    "thresholded_argmax",
]
