"""Human-readable names of data sets, methods, labelers and settings, shared by tables and plots."""

from __future__ import annotations

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST", "digits": "digits",
                 "svhn": "SVHN", "stl10": "STL-10", "image_folder": "your images"}
METHOD_NAMES = {
    "mixmatch": "MixMatch",
    "remixmatch": "ReMixMatch",
    "fixmatch": "FixMatch",
    "freematch": "FreeMatch",
    "supervised": "Supervised",
}
# relabel.json's stage-2 selection, read as two more labelers: the HDL labels selected for stage 2,
# and the model's argmax restricted to the same coverage.
SELECTED = "hdl_selected"
ARGMAX_AT_SELECTED = "argmax_selected"
LABELER_NAMES = {
    "hdl": "HDL (embeddings)",
    "knn_vote": "k-NN vote (embeddings)",
    "label_propagation": "label propagation (embeddings)",
    "argmax": "argmax (logits)",
    "argmax_threshold": "thresholded argmax (logits)",
    SELECTED: "HDL, selected for stage 2",
    ARGMAX_AT_SELECTED: "argmax (logits) at the selection's coverage",
}
# Marks a paired difference whose confidence interval contains 0.
NOT_SIGNIFICANT = "n.s."
# The order in which labelers appear in tables and legends: HDL first, then the comparisons.
LABELER_ORDER = list(LABELER_NAMES)


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def labeler_name(labeler: str) -> str:
    return LABELER_NAMES.get(labeler, labeler)


def imbalance_text(imbalance: float) -> str:
    return "balanced" if imbalance == 1 else f"IF={imbalance:g}"


def setting_parts(dataset: str, labels: int, imbalance: float) -> tuple[str, str, str]:
    """(data set, label budget, imbalance) as column-header lines.

    For long-tailed splits ``labels`` is N_1, the head class's labeled count, not a total.
    """
    budget = f"{labels} labels" if imbalance == 1 else f"N1={labels}"
    return dataset_name(dataset), budget, imbalance_text(imbalance)


def setting_name(dataset: str, labels: int, imbalance: float, separator: str = ", ") -> str:
    return separator.join(setting_parts(dataset, labels, imbalance))
