"""Benchmark `hdl relabel --k auto` (with diagnostics) on Gaussian mixtures, part by part.

Data: Gaussian mixtures whose truth is known, written to disk in chunks (never held in memory
whole): class centres ~ N(0, separation^2 I_dim), unit-variance isotropic noise, a stratified
``--labeled`` fraction keeping its labels. ``MIXTURES`` differ in separation and class sizes:
the README's (separation 0.45), standard-normal centres (separation 1, well apart: k-means
cells follow the classes, and a few cells near the origin are probed by most samples), and a
long tail (class sizes falling exponentially to 1/100 of the largest). In 256 dimensions the
noise makes a class's samples nearly equidistant, the hard case for approximate k-NN search:
recall@k counts exact top-k order, which matters little for labeling, since the neighbours
found are still of the class.

Per mixture, one JSON object with:

- ``hdl``: the real command in a subprocess (start-up, loading, graph, adaptive k, selection,
  diagnostics, writing), its wall and CPU seconds, peak RSS, accuracy on the unlabeled samples,
  and relabel.json's ``timings`` (wall and CPU seconds per part, the graph's search and steps);
- ``graph``: the same k-NN graph (default graph options) built again in this process and scored
  against exact search for ``--recall-queries`` random samples: recall@k, and purity@k (the share
  of neighbours of the sample's own class) of the graph's neighbours and of the exact ones;
- ``label_spreading`` (``--spreading-n``): LabelSpreading(kernel="knn") on the first that many
  samples (their own stratified labels), beside `hdl relabel` on the same subset. Its k-NN search
  is brute force (N^2 dim: 100,000 x 256 took two minutes here) and its label arrays are dense
  (N, classes) float64, 10 GB each at 1.28 M x 1,000, so it cannot run on a large set;
- ``reference`` (with ``--reference-source DIR``): the command again from another copy of the
  package (``git archive <commit> hdl | tar -x -C DIR``) on the same files: its time, memory,
  and whether its labels, levels and ranks equal this checkout's.

Then a table: each mixture's seconds per part (wall / CPU).

    python benchmarks/bench_relabel.py                      # the three mixtures at 1,281,167 x 256 x 1,000
    python benchmarks/bench_relabel.py --mixtures separation-0.45 --n 50000 --dim 128 --classes 10 -- --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.lib.format import open_memmap
from sklearn.semi_supervised import LabelSpreading

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hdl.labeling import adaptive, knn  # noqa: E402

CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class Mixture:
    separation: float  # scale of the class centres; the noise has unit scale
    imbalance: float  # largest class / smallest class; 1: classes of equal expected size


MIXTURES = {
    "separation-0.45": Mixture(0.45, 1.0),  # the README's
    "standard-normal": Mixture(1.0, 1.0),
    "long-tail": Mixture(0.7, 100.0),
}


def write_mixture(folder: Path, args: argparse.Namespace, mixture: Mixture) -> None:
    """E.npy (float32 embeddings), truth.npy, y.npy (labels, -1 unlabeled) under ``folder``.

    Class c's share falls as imbalance^(-c / (classes - 1)), the long-tailed profile of CIFAR-LT."""
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.classes, args.dim)) * mixture.separation
    if mixture.imbalance == 1:
        truth = rng.integers(0, args.classes, args.n)
    else:
        shares = mixture.imbalance ** (-np.arange(args.classes) / max(args.classes - 1, 1))
        truth = rng.choice(args.classes, args.n, p=shares / shares.sum())
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
    timings = report["timings"]
    return {
        "seconds_end_to_end": round(run["seconds"], 2), "cpu_seconds": round(run["cpu_seconds"], 2),
        "seconds_in_command": round(timings["seconds"], 2), "peak_rss_mb": round(run["peak_rss_mb"]), "k": report["k"],
        "k_scores": report["k_scores"], "waves": report["waves"], "coverage": round(report["coverage"], 4),
        "accuracy": round(float(np.mean(run["labels"][unlabeled] == truth[unlabeled])), 4),
        "comparison": report.get("comparison"), "skipped": report.get("skipped"),
        "timings": {"largest": timings["largest"], "parts": _rounded(timings["parts"]),
                    "graph": {**{key: value for key, value in timings["graph"].items() if key != "steps"}, "steps": _rounded(timings["graph"]["steps"])}},
    }


def _rounded(parts: dict) -> dict:
    return {name: [round(part["seconds"], 2), round(part["cpu_seconds"], 2)] for name, part in parts.items()}


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
    return {**asdict(knn.search_plan(len(vectors))), "seconds": round(seconds, 2), "queries": len(sample), **score}


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


def bench_mixture(name: str, args: argparse.Namespace, folder: Path) -> dict:
    mixture = MIXTURES[name]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_mixture(folder, args, mixture)
    result = {"mixture": name, "n": args.n, "dim": args.dim, "classes": args.classes, **asdict(mixture),
              "seconds_writing_data": round(time.perf_counter() - start, 2), "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    truth, labels = np.load(folder / "truth.npy"), np.load(folder / "y.npy")
    sizes = np.bincount(truth, minlength=args.classes)
    result["class_sizes"] = {"largest": int(sizes.max()), "smallest": int(sizes.min())}
    result["labeled"] = int((labels >= 0).sum())
    run = run_relabel(folder, Path(__file__).resolve().parents[1], args.hdl_args)
    result["hdl"] = summary(run, truth, labels)
    if args.reference_source:
        reference = run_relabel(folder, args.reference_source.resolve(), args.hdl_args, "reference")
        result["reference"] = {**summary(reference, truth, labels), "source": str(args.reference_source),
                               "same_labels_levels_ranks": {key: bool(np.array_equal(run[key], reference[key])) for key in ("labels", "level", "rank")}}
    embeddings = np.load(folder / "E.npy", mmap_mode="r")
    if args.recall_queries > 0:
        result["graph"] = graph_recall(embeddings, truth, sorted(adaptive.K_CANDIDATES), args.recall_queries, args.seed)
    subset = min(args.n, args.spreading_n)
    if subset > 0:
        result["label_spreading"] = compare_label_spreading(folder, embeddings, truth, labels, subset, args)
        if subset == args.n:
            result["label_spreading"]["speedup_of_hdl"] = round(result["label_spreading"]["seconds"] / result["hdl"]["seconds_end_to_end"], 2)
    del embeddings
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def timings_table(results: list[dict]) -> str:
    """Markdown: one row per part, one column per mixture, "wall s / CPU s"."""
    parts = list(dict.fromkeys(part for result in results for part in result["hdl"]["timings"]["parts"]))
    steps = list(dict.fromkeys(step for result in results for step in result["hdl"]["timings"]["graph"]["steps"]))

    def cell(values: list[float] | None) -> str:
        return "" if values is None else f"{values[0]:.1f} / {values[1]:.1f}"

    lines = ["| part (wall s / CPU s) | " + " | ".join(result["mixture"] for result in results) + " |",
             "| --- |" + " --- |" * len(results)]
    for part in parts:
        lines.append(f"| {part} | " + " | ".join(cell(result["hdl"]["timings"]["parts"].get(part)) for result in results) + " |")
        if part == "graph":
            for step in steps:
                lines.append(f"| graph: {step} | " + " | ".join(cell(result["hdl"]["timings"]["graph"]["steps"].get(step)) for result in results) + " |")
    rows = {
        "in the command": lambda result: f"{result['hdl']['seconds_in_command']:.1f}",
        "end to end / CPU": lambda result: f"{result['hdl']['seconds_end_to_end']:.1f} / {result['hdl']['cpu_seconds']:.1f}",
        "peak RSS": lambda result: f"{result['hdl']['peak_rss_mb'] / 1024:.1f} GB",
        "accuracy, k": lambda result: f"{result['hdl']['accuracy']:.4f}, {result['hdl']['k']}",
        "recall@10 / @40": lambda result: f"{result['graph']['recall_at_k']['10']:.3f} / {result['graph']['recall_at_k']['40']:.3f}" if "graph" in result else "",
    }
    lines += [f"| {name} | " + " | ".join(value(result) for result in results) + " |" for name, value in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixtures", nargs="+", choices=MIXTURES, default=list(MIXTURES), help="(default: all)")
    parser.add_argument("--n", type=int, default=1_281_167, help="samples (default: %(default)s, ImageNet's train set)")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimensions (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default: %(default)s)")
    parser.add_argument("--labeled", type=float, default=0.01, help="labeled fraction, stratified (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spreading-n", type=int, default=0, help="LabelSpreading (and HDL beside it) on the first this many samples; 0: none (default: %(default)s)")
    parser.add_argument("--recall-queries", type=int, default=1000, help="samples whose graph neighbours are checked by exact search; 0: no check (default: %(default)s)")
    parser.add_argument("--reference-source", type=Path, help="also run `hdl relabel` from the package under this folder, on the same data")
    parser.add_argument("--folder", type=Path, help="write the data here and keep it (default: a temporary folder)")
    parser.add_argument("hdl_args", nargs="*", help="extra `hdl relabel` flags, after --")
    args = parser.parse_args()

    results = []
    for name in args.mixtures:
        with tempfile.TemporaryDirectory() as temporary:
            results.append(bench_mixture(name, args, (args.folder / name if args.folder else Path(temporary)).resolve()))
        print(json.dumps(results[-1], indent=1), flush=True)
    print(f"cpus: {os.cpu_count()}")
    print(timings_table(results))


if __name__ == "__main__":
    main()
