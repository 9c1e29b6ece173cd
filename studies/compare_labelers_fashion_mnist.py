"""HDL against the comparison labelers on Fashion-MNIST, at 2, 5 and 10 labels per class.

Representations of the 60,000 training images:
- ``pixels``: raw pixels;
- ``mlp_test``: the hidden layer of an MLP trained on the 10,000 test images (a representation
  learned on other data, like a general encoder), with its probabilities for the argmax labelers;
- ``mlp_few``: the hidden layer of an MLP trained on the few labeled images only (a stand-in for
  a stage-1 model trained with few labels), with its probabilities.
The k-NN graph of each representation is built once; every labeler sees the same labels.
Accuracy is on the unlabeled images, at the coverage of the first HDL variant (and at half
coverage: each labeler's most confident 50%); knn_vote and label propagation use the k that
adaptive k picked for the frontier rule. Prints a Markdown
table and writes JSON.

    python studies/compare_labelers_fashion_mnist.py --out results/labelers_fmnist.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

from hdl.data import load_dataset
from hdl.labeling import (
    Labeling,
    adaptive_hdl,
    argmax_labels,
    build_knn_graph,
    knn_vote,
    label_propagation,
    score_labeler,
)

N_CLASSES = 10


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened [0, 1] pixels and labels of train and test, through the package's loader."""
    dataset = load_dataset("fashion_mnist")

    def flat(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / 255.0).astype(np.float32)

    return flat(dataset.train_images), dataset.train_labels, flat(dataset.test_images), dataset.test_labels


def mlp_features(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, seed: int, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    model = MLPClassifier(hidden_layer_sizes=(256,), max_iter=epochs, random_state=seed, alpha=1e-3)
    model.fit(train_x, train_y)
    hidden = np.maximum(x @ model.coefs_[0] + model.intercepts_[0], 0.0).astype(np.float32)
    return hidden, model.predict_proba(x).astype(np.float32)


def labels_per_class(truth: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.full(len(truth), -1)
    for c in range(N_CLASSES):
        chosen = rng.choice(np.flatnonzero(truth == c), per_class, replace=False)
        labels[chosen] = c
    return labels


def compare(embeddings, graph, labels, truth, probs, variants) -> dict:
    """Every labeler's accuracy at the first HDL variant's coverage, and at half coverage."""
    unlabeled = labels < 0
    labelings, results = {}, {}
    for name, options in variants.items():
        chosen = adaptive_hdl(graph, labels, N_CLASSES, **options)
        labelings[name] = Labeling(chosen.result.labels, chosen.result.confidence)
        results[name] = {"k": chosen.k, "k_scores": chosen.k_scores, "waves": chosen.result.waves}
    k = results["hdl_frontier"]["k"]
    labelings["knn_vote"] = knn_vote(embeddings, labels, N_CLASSES, k)
    labelings["label_propagation"] = label_propagation(graph.truncate(k), labels, N_CLASSES)
    if probs is not None:
        labelings["argmax"] = argmax_labels(probs, labels)
    first = labelings[next(iter(variants))]
    coverage = float((first.labels[unlabeled] >= 0).mean())
    for name, labeling in labelings.items():
        results.setdefault(name, {}).update(
            accuracy=score_labeler(labeling, truth, unlabeled, coverage)["accuracy"],
            accuracy_at_half=score_labeler(labeling, truth, unlabeled, 0.5)["accuracy"],
        )
    results["coverage"] = coverage
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/labelers_fmnist.json")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budgets", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--representations", nargs="+", default=["pixels", "mlp_test", "mlp_few"])
    args = parser.parse_args()

    train_x, train_y, test_x, test_y = load_fashion_mnist()
    variants = {
        "hdl_max_count": {"wave_rule": "max_count"},
        "hdl_frontier": {"wave_rule": "frontier"},
        "hdl_frontier_agree": {"wave_rule": "frontier", "min_agreement": 0.6},
    }
    rows = []
    fixed = {}
    if "pixels" in args.representations:
        fixed["pixels"] = (train_x, None)
    if "mlp_test" in args.representations:
        fixed["mlp_test"] = mlp_features(test_x, test_y, train_x, seed=0, epochs=30)
    graphs = {name: build_knn_graph(embeddings, 40) for name, (embeddings, _) in fixed.items()}
    for per_class in args.budgets:
        for seed in range(args.seeds):
            labels = labels_per_class(train_y, per_class, np.random.default_rng(seed))
            representations = dict(fixed)
            if "mlp_few" in args.representations:
                given = labels >= 0
                representations["mlp_few"] = mlp_features(train_x[given], labels[given], train_x, seed=seed, epochs=200)
            for name, (embeddings, probs) in representations.items():
                start = time.perf_counter()
                graph = graphs.get(name) or build_knn_graph(embeddings, 40)
                result = compare(embeddings, graph, labels, train_y, probs, variants)
                rows.append({"representation": name, "per_class": per_class, "seed": seed, **result})
                print(name, per_class, seed, f"{time.perf_counter() - start:.1f}s",
                      {key: round(value["accuracy"], 4) for key, value in result.items() if isinstance(value, dict)}, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print_table(rows, "accuracy")
    print_table(rows, "accuracy_at_half")


def print_table(rows: list[dict], metric: str) -> None:
    labelers = list(dict.fromkeys(key for row in rows for key, value in row.items() if isinstance(value, dict)))
    print(f"\n{metric}\n| representation | labels/class | " + " | ".join(labelers) + " |")
    print("|---|---|" + "---|" * len(labelers))
    for name in dict.fromkeys(row["representation"] for row in rows):
        for per_class in dict.fromkeys(row["per_class"] for row in rows):
            group = [row for row in rows if row["representation"] == name and row["per_class"] == per_class]
            cells = [f"{np.mean([row[key][metric] for row in group if key in row]):.3f}" if any(key in row for row in group) else "-" for key in labelers]
            print(f"| {name} | {per_class} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
