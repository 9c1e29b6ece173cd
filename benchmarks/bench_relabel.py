"""Benchmark `hdl relabel --k auto` against scikit-learn's LabelSpreading(kernel="knn").

Data: a Gaussian mixture of 10 classes in 128 dimensions (50,000 samples), 1% labeled,
stratified. HDL runs as the real command (a subprocess: start-up, loading, graph, adaptive k,
writing), timed end to end; LabelSpreading runs on the same arrays in the same process run.
Accuracy is on the unlabeled samples. Prints one JSON object with wall and CPU seconds (CPU time
is the fairer figure on a shared machine) and the machine's load.

    python benchmarks/bench_relabel.py [--samples 50000] [--dim 128] [--separation 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.semi_supervised import LabelSpreading

N_CLASSES = 10


def gaussian_mixture(samples: int, dim: int, separation: float, labeled_fraction: float, seed: int):
    """Class centres ~ N(0, separation^2 I), unit-variance noise; a stratified labeled fraction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLASSES, dim)) * separation
    truth = rng.integers(0, N_CLASSES, samples)
    embeddings = (centres[truth] + rng.normal(size=(samples, dim))).astype(np.float32)
    labels = np.full(samples, -1)
    for c in range(N_CLASSES):
        members = np.flatnonzero(truth == c)
        chosen = rng.choice(members, max(1, int(round(labeled_fraction * len(members)))), replace=False)
        labels[chosen] = c
    return embeddings, labels, truth


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_hdl(embeddings: np.ndarray, labels: np.ndarray, extra_args: list[str]) -> tuple[float, float, np.ndarray, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "E.npy", embeddings)
        np.save(tmp / "y.npy", labels)
        command = [sys.executable, "-m", "hdl.cli", "relabel", "--embeddings", str(tmp / "E.npy"),
                   "--labels", str(tmp / "y.npy"), "--out", str(tmp / "out.npz"), "--report", str(tmp / "r.json"),
                   "--k", "auto", *extra_args]
        start, cpu_start = time.perf_counter(), children_cpu_seconds()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds, cpu_seconds = time.perf_counter() - start, children_cpu_seconds() - cpu_start
        report = json.loads((tmp / "r.json").read_text())
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the only child
        return seconds, cpu_seconds, np.load(tmp / "out.npz")["labels"], report


def run_label_spreading(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    start, cpu_start = time.perf_counter(), time.process_time()
    model = LabelSpreading(kernel="knn").fit(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), labels)
    return time.perf_counter() - start, time.process_time() - cpu_start, model.transduction_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--separation", type=float, default=0.5, help="scale of the class centres (noise has unit scale)")
    parser.add_argument("--labeled", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("hdl_args", nargs="*", help="extra `hdl relabel` flags, after --")
    args = parser.parse_args()

    embeddings, labels, truth = gaussian_mixture(args.samples, args.dim, args.separation, args.labeled, args.seed)
    unlabeled = labels < 0
    load_before = os.getloadavg()
    hdl_seconds, hdl_cpu, hdl_labels, report = run_hdl(embeddings, labels, args.hdl_args)
    spreading_seconds, spreading_cpu, spreading_labels = run_label_spreading(embeddings, labels)
    print(json.dumps({
        "samples": args.samples, "dim": args.dim, "separation": args.separation, "labeled": int((~unlabeled).sum()),
        "hdl": {"seconds_end_to_end": round(hdl_seconds, 2), "cpu_seconds": round(hdl_cpu, 2),
                "seconds_labeling": round(report["seconds"], 2), "peak_rss_mb": round(report["peak_rss_mb"]),
                "k": report["k"], "k_scores": report["k_scores"], "waves": report["waves"], "coverage": report["coverage"],
                "accuracy": round(float(np.mean(hdl_labels[unlabeled] == truth[unlabeled])), 4)},
        "label_spreading": {"seconds": round(spreading_seconds, 2), "cpu_seconds": round(spreading_cpu, 2),
                            "accuracy": round(float(np.mean(spreading_labels[unlabeled] == truth[unlabeled])), 4)},
        "speedup": round(spreading_seconds / hdl_seconds, 2),
        "cpu_speedup": round(spreading_cpu / hdl_cpu, 2),
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }, indent=1))


if __name__ == "__main__":
    main()
