"""Benchmark `hdl relabel --k auto` (with diagnostics) against scikit-learn's LabelSpreading.

Data: a Gaussian mixture whose truth is known, written to disk in chunks (never held in memory
whole): class centres ~ N(0, separation^2 I_dim), unit-variance isotropic noise, a stratified
``--labeled`` fraction keeping its labels. In 256 dimensions the noise makes a class's samples
nearly equidistant, the hard case for approximate k-NN search: recall@k counts exact top-k
order, which matters little for labeling, since the neighbours found are still of the class.

One run reports, as one JSON object:

- ``hdl``: the real command in a subprocess (start-up, loading, graph, adaptive k, selection,
  diagnostics, writing), its wall and CPU seconds, peak RSS, and accuracy on the unlabeled samples;
- ``graph``: the same k-NN graph built again in this process, timed, and scored against exact
  search for ``--recall-queries`` random samples: recall@k, and purity@k (the share of
  neighbours of the sample's own class) of the graph's neighbours and of the exact ones;
- ``label_spreading``: LabelSpreading(kernel="knn") on the first ``--spreading-n`` samples (their
  own stratified labels), beside `hdl relabel` on the same subset. Its k-NN search is brute force
  (N^2 dim: 100,000 x 256 took two minutes here, as long as HDL on 1.28 M) and its label arrays
  are dense (N, classes) float64, 10 GB each at 1.28 M x 1,000, so it cannot run on a large set;
- ``reference`` (with ``--reference-source DIR``): the command again from another copy of the
  package (``git archive <commit> hdl | tar -x -C DIR``) on the same files: its time, memory,
  and whether its labels, levels and ranks equal this checkout's.

    python benchmarks/bench_relabel.py [--n 50000] [--dim 128] [--classes 10] [-- relabel flags]
    python benchmarks/bench_relabel.py --n 1281167 --dim 256 --classes 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from numpy.lib.format import open_memmap
from sklearn.semi_supervised import LabelSpreading

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hdl.labeling import adaptive, knn  # noqa: E402

CHUNK_ROWS = 65_536


def write_mixture(folder: Path, args: argparse.Namespace) -> None:
    """E.npy (float32 embeddings), truth.npy, y.npy (labels, -1 unlabeled) under ``folder``."""
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.classes, args.dim)) * args.separation
    truth = rng.integers(0, args.classes, args.n)
    embeddings = open_memmap(folder / "E.npy", mode="w+", dtype=np.float32, shape=(args.n, args.dim))
    for start in range(0, args.n, CHUNK_ROWS):
        classes = truth[start : start + CHUNK_ROWS]
        embeddings[start : start + len(classes)] = centres[classes] + rng.normal(size=(len(classes), args.dim))
    embeddings.flush()
    del embeddings
    np.save(folder / "truth.npy", truth)
    np.save(folder / "y.npy", stratified_labels(truth, args.classes, args.labeled, rng))


def stratified_labels(truth: np.ndarray, classes: int, fraction: float, rng: np.random.Generator, at_least: int = 1) -> np.ndarray:
    """-1 except for round(fraction * n_c) random samples of each class c (at least ``at_least``)."""
    labels = np.full(len(truth), -1)
    for c in range(classes):
        members = np.flatnonzero(truth == c)
        if len(members):
            labels[rng.choice(members, min(len(members), max(at_least, int(round(fraction * len(members))))), replace=False)] = c
    return labels


def run_relabel(folder: Path, source: Path, extra_args: list[str], name: str = "out") -> dict:
    """`hdl relabel` on ``folder``'s files with the package at ``source``: seconds, CPU, peak RSS, report."""
    out = folder / name
    command = [sys.executable, "-m", "hdl.cli", "relabel", "--embeddings", str(folder / "E.npy"), "--labels", str(folder / "y.npy"),
               "--truth", str(folder / "truth.npy"), "--out", f"{out}.npz", "--report", f"{out}.json", "--k", "auto", *extra_args]
    start = time.perf_counter()
    # `python -m` looks in the working directory first: run from ``source`` to import its package
    process = subprocess.Popen(command, cwd=source, stdout=subprocess.DEVNULL)
    # The child's own peak: its rusage maxrss would count this process's peak too (inherited at exec).
    peak_kb = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak_kb = max(peak_kb, _peak_rss_kb(process.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"hdl relabel from {source} failed with status {status}")
    report = json.loads(Path(f"{out}.json").read_text())
    with np.load(f"{out}.npz") as result:
        arrays = {key: result[key] for key in ("labels", "level", "rank")}
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak_kb / 1024, "report": report, **arrays}


def _peak_rss_kb(pid: int) -> int:
    """VmHWM of a running process (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def summary(run: dict, truth: np.ndarray, labels: np.ndarray) -> dict:
    unlabeled = labels < 0
    report = run["report"]
    return {
        "seconds_end_to_end": round(run["seconds"], 2), "cpu_seconds": round(run["cpu_seconds"], 2),
        "seconds_labeling": round(report["seconds"], 2), "seconds_diagnostics": round(report.get("seconds_diagnostics", 0.0), 2),
        "peak_rss_mb": round(run["peak_rss_mb"]), "k": report["k"], "k_scores": report["k_scores"], "waves": report["waves"],
        "coverage": round(report["coverage"], 4), "accuracy": round(float(np.mean(run["labels"][unlabeled] == truth[unlabeled])), 4),
        "comparison": report.get("comparison"), "skipped": report.get("skipped"),
    }


def graph_recall(embeddings: np.ndarray, truth: np.ndarray, k_values: list[int], queries: int, seed: int) -> dict:
    """Build the command's graph (default parameters) and score it against exact search on a
    sample: recall@k, and the share of neighbours of the sample's own class (purity) in both."""
    start = time.perf_counter()
    graph = knn.build_knn_graph(embeddings, max(k_values), seed=seed)
    seconds = time.perf_counter() - start
    vectors = knn.l2_normalize(embeddings)
    sample = np.sort(np.random.default_rng(seed).choice(len(vectors), min(queries, len(vectors)), replace=False))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    exact = index.search(vectors[sample], max(k_values) + 1)[1]
    exact = np.stack([row[row != i][: max(k_values)] for row, i in zip(exact, sample)])
    found = graph.neighbors[sample]
    score = {"recall_at_k": {}, "purity_at_k": {}, "exact_purity_at_k": {}}
    for k in k_values:
        score["recall_at_k"][str(k)] = round(float(np.mean([len(np.intersect1d(a[:k], b[:k])) / k for a, b in zip(found, exact)])), 4)
        score["purity_at_k"][str(k)] = round(float(np.mean(truth[found[:, :k]] == truth[sample, None])), 4)
        score["exact_purity_at_k"][str(k)] = round(float(np.mean(truth[exact[:, :k]] == truth[sample, None])), 4)
    search = "exact" if len(vectors) <= knn.EXACT_MAX_SIZE else "faiss ivf" if len(vectors) <= knn.FAISS_IVF_MAX_SIZE else "cell-by-cell ivf"
    return {"search": search, "seconds": round(seconds, 2), "queries": len(sample), **score,
            "nlist": knn.default_nlist(len(vectors)) if search != "exact" else None, "nprobe": knn.IVF_NPROBE}


def run_label_spreading(embeddings: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    vectors = knn.l2_normalize(embeddings)
    predicted = LabelSpreading(kernel="knn").fit(vectors, labels).transduction_
    unlabeled = labels < 0
    return {"n": len(labels), "seconds": round(time.perf_counter() - start, 2), "cpu_seconds": round(time.process_time() - cpu_start, 2),
            "accuracy": round(float(np.mean(predicted[unlabeled] == truth[unlabeled])), 4)}


def compare_label_spreading(folder: Path, embeddings: np.ndarray, truth: np.ndarray, labels: np.ndarray, subset: int, args) -> dict:
    """LabelSpreading on the first ``subset`` samples; below N, with their own stratified labels (at
    least two per class, so that adaptive k's hold-out can hide one) and `hdl relabel` beside it."""
    if subset == len(truth):
        return run_label_spreading(np.asarray(embeddings), labels, truth)
    subset_truth = truth[:subset]
    subset_labels = stratified_labels(subset_truth, args.classes, args.labeled, np.random.default_rng(args.seed), at_least=2)
    subset_folder = folder / "subset"
    subset_folder.mkdir(exist_ok=True)
    np.save(subset_folder / "E.npy", embeddings[:subset])
    np.save(subset_folder / "truth.npy", subset_truth)
    np.save(subset_folder / "y.npy", subset_labels)
    hdl = summary(run_relabel(subset_folder, Path(__file__).resolve().parents[1], args.hdl_args), subset_truth, subset_labels)
    spreading = run_label_spreading(np.asarray(embeddings[:subset]), subset_labels, subset_truth)
    return {**spreading, "labeled": int((subset_labels >= 0).sum()), "hdl_same_subset": hdl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="samples (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimensions (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default: %(default)s)")
    parser.add_argument("--separation", type=float, default=0.5, help="scale of the class centres; the noise has unit scale (default: %(default)s)")
    parser.add_argument("--labeled", type=float, default=0.01, help="labeled fraction, stratified (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spreading-n", type=int, default=100_000, help="LabelSpreading (and HDL beside it) on the first this many samples; 0: none (default: %(default)s)")
    parser.add_argument("--recall-queries", type=int, default=1000, help="samples whose graph neighbours are checked by exact search (default: %(default)s)")
    parser.add_argument("--reference-source", type=Path, help="also run `hdl relabel` from the package under this folder, on the same data")
    parser.add_argument("--folder", type=Path, help="write the data here and keep it (default: a temporary folder)")
    parser.add_argument("hdl_args", nargs="*", help="extra `hdl relabel` flags, after --")
    args = parser.parse_args()
    repository = Path(__file__).resolve().parents[1]

    with tempfile.TemporaryDirectory() as temporary:
        folder = (args.folder or Path(temporary)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_mixture(folder, args)
        result = {"n": args.n, "dim": args.dim, "classes": args.classes, "separation": args.separation, "seconds_writing_data": round(time.perf_counter() - start, 2), "cpus": os.cpu_count(),
                  "load_average_before": [round(x, 2) for x in os.getloadavg()]}
        truth, labels = np.load(folder / "truth.npy"), np.load(folder / "y.npy")
        result["labeled"] = int((labels >= 0).sum())
        run = run_relabel(folder, repository, args.hdl_args)
        result["hdl"] = summary(run, truth, labels)
        if args.reference_source:
            reference = run_relabel(folder, args.reference_source.resolve(), args.hdl_args, "reference")
            result["reference"] = {**summary(reference, truth, labels), "source": str(args.reference_source),
                                   "same_labels_levels_ranks": all(np.array_equal(run[key], reference[key]) for key in ("labels", "level", "rank"))}
        embeddings = np.load(folder / "E.npy", mmap_mode="r")
        result["graph"] = graph_recall(embeddings, truth, sorted(adaptive.K_CANDIDATES), args.recall_queries, args.seed)

        subset = min(args.n, args.spreading_n)
        if subset > 0:
            result["label_spreading"] = compare_label_spreading(folder, embeddings, truth, labels, subset, args)
            if subset == args.n:
                result["label_spreading"]["speedup_of_hdl"] = round(result["label_spreading"]["seconds"] / result["hdl"]["seconds_end_to_end"], 2)
        del embeddings
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
