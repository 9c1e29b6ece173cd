"""The k-NN graph of all samples under cosine similarity, built once with faiss.

Row ``i`` of ``neighbors`` lists the ``k`` nearest other samples of ``i``, nearest first, so
the graph for any smaller k is a column prefix (``graph.truncate(k)``). Missing neighbours
(an approximate search that found fewer than ``k`` candidates) are ``-1`` with similarity ``-inf``.

Up to ``EXACT_MAX_SIZE`` samples the search is exact; above, it is an inverted-file (IVF)
search: k-means cells, and each sample compared with the samples of its ``nprobe`` nearest
cells. Up to ``FAISS_IVF_MAX_SIZE`` samples that is faiss's IVF-Flat index. Above, faiss scans
the lists query by query, reading a scattered few thousand vectors per query from memory; the
cell-by-cell search instead compares each cell's samples with all the samples that probe it in
one matrix product (BLAS) and merges the results into a top-k heap per sample.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hdl.stopwatch import Stopwatch

if TYPE_CHECKING:
    import faiss

EXACT_MAX_SIZE = 20_000
FAISS_IVF_MAX_SIZE = 100_000
IVF_NPROBE = 8  # 96% recall@20 on Fashion-MNIST pixels (60k) with faiss's IVF, 2x faster than 16 (99%)
# k-means of the cells on a sample: cell quality barely matters for a k-NN graph, and faiss's
# defaults (256 points per cell, 25 iterations) made training the slowest step.
IVF_TRAIN_POINTS_PER_CELL = 64
IVF_TRAIN_ITERATIONS = 10
CELL_TRAIN_POINTS_PER_CELL = 32  # the cell-by-cell search's k-means, over more cells
CHUNK_ROWS = 65_536  # rows normalised or searched at a time, to bound the temporary copies
QUERY_PIECE = 2_048  # most samples one task of the cell-by-cell search compares with a cell's members


@dataclass(frozen=True)
class KnnGraph:
    neighbors: np.ndarray  # int64 (N, k), -1 where missing
    similarities: np.ndarray  # float32 (N, k), -inf where missing

    @property
    def k(self) -> int:
        return self.neighbors.shape[1]

    def truncate(self, k: int) -> "KnnGraph":
        if not 1 <= k <= self.k:
            raise ValueError(f"k={k} must be between 1 and the graph's k={self.k}")
        return KnnGraph(self.neighbors[:, :k], self.similarities[:, :k])


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Unit-norm float32 copy of the rows, made a chunk at a time (``embeddings`` may be a memmap)."""
    n, dim = embeddings.shape
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.asarray(embeddings[start : start + CHUNK_ROWS], dtype=np.float32)
        norms = np.linalg.norm(chunk, axis=1, keepdims=True)
        np.divide(chunk, np.maximum(norms, np.finfo(np.float32).tiny), out=vectors[start : start + CHUNK_ROWS])
    return vectors


def default_nlist(n: int, nprobe: int = IVF_NPROBE) -> int:
    """IVF cells for N samples: 4 sqrt(N) for faiss's index; sqrt(nprobe N) for the cell-by-cell
    search, which balances assigning the samples to cells against searching them."""
    return max(1, int(np.sqrt(nprobe * n) if n > FAISS_IVF_MAX_SIZE else 4 * np.sqrt(n)))


@dataclass(frozen=True)
class SearchPlan:
    """How ``build_knn_graph`` searches N samples; the cell fields are None for exact search."""

    index: str  # "exact", "faiss_ivf" (faiss's IVF-Flat index) or "cells" (the cell-by-cell search)
    nlist: int | None = None  # k-means cells
    nprobe: int | None = None  # nearest cells each sample is compared with
    train_samples: int | None = None  # samples the cells' k-means trains on
    train_iterations: int | None = None


def search_plan(n: int, exact_max_size: int = EXACT_MAX_SIZE, nlist: int | None = None, nprobe: int = IVF_NPROBE) -> SearchPlan:
    if n <= exact_max_size:
        return SearchPlan("exact")
    cells = min(nlist or default_nlist(n, nprobe), n)
    by_cells = n > FAISS_IVF_MAX_SIZE
    per_cell = CELL_TRAIN_POINTS_PER_CELL if by_cells else IVF_TRAIN_POINTS_PER_CELL
    return SearchPlan("cells" if by_cells else "faiss_ivf", cells, min(nprobe, cells), min(n, cells * per_cell), IVF_TRAIN_ITERATIONS)


def build_knn_graph(
    embeddings: np.ndarray,
    k: int,
    exact_max_size: int = EXACT_MAX_SIZE,
    nlist: int | None = None,
    nprobe: int = IVF_NPROBE,
    seed: int = 0,
    stopwatch: Stopwatch | None = None,
) -> KnnGraph:
    """k nearest neighbours (self excluded) of every row by cosine similarity.

    Exact inner-product search when N <= ``exact_max_size``; above it an IVF search with
    ``nlist`` cells and each sample's ``nprobe`` nearest cells searched: faiss's IVF-Flat index
    up to FAISS_IVF_MAX_SIZE samples, the cell-by-cell search above (``search_plan``).
    faiss uses as many threads as OpenMP gives it (``faiss.omp_set_num_threads``).
    ``stopwatch`` times the steps (normalize, train cells, assign cells, search, merge).
    """
    n = len(embeddings)
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be at least 1 and below the number of samples N={n}")
    import faiss  # here, not at the top: `hdl train` imports this package, and the GPU machines lack faiss

    stopwatch = stopwatch or Stopwatch()
    plan = search_plan(n, exact_max_size, nlist, nprobe)
    with stopwatch.part("normalize"):
        vectors = l2_normalize(embeddings)
    if plan.index == "cells":
        return _cell_by_cell_search(vectors, k, plan, seed, stopwatch)
    with stopwatch.part("train cells"):
        if plan.index == "exact":
            index = faiss.IndexFlatIP(vectors.shape[1])
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], plan.nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
            index.cp.niter = plan.train_iterations
            index.train(vectors)
            index.nprobe = plan.nprobe
    with stopwatch.part("search"):
        index.add(vectors)
        similarities, neighbors = index.search(vectors, k + 1)
    with stopwatch.part("merge"):
        return _drop_self(neighbors, similarities, np.arange(n), k)


def _cell_by_cell_search(vectors: np.ndarray, k: int, plan: SearchPlan, seed: int, stopwatch: Stopwatch) -> KnnGraph:
    """Every sample's k nearest among the samples of its ``nprobe`` nearest cells, cell by cell:
    each cell's samples are compared at once with all the samples that probe it, and the
    results merge into one top-k heap per sample."""
    import faiss

    n, cells, nprobe = len(vectors), plan.nlist, plan.nprobe
    with stopwatch.part("train cells"):
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, plan.train_samples, replace=False))
        kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=plan.train_iterations, seed=seed, min_points_per_centroid=1)
        kmeans.train(vectors[train])
    with stopwatch.part("assign cells"):
        probes = np.empty((n, nprobe), dtype=np.int64)  # nearest cells first
        for start in range(0, n, CHUNK_ROWS):
            probes[start : start + CHUNK_ROWS] = faiss.knn(vectors[start : start + CHUNK_ROWS], kmeans.centroids, nprobe)[1]
    with stopwatch.part("search"):
        heap = _search_cells(vectors, k, probes, cells)
    with stopwatch.part("merge"):
        neighbors = np.empty((n, k), dtype=np.int64)
        similarities = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, CHUNK_ROWS):
            rows = np.arange(start, min(n, start + CHUNK_ROWS))
            block = _drop_self(heap.I[rows], heap.D[rows], rows, k)
            neighbors[rows], similarities[rows] = block.neighbors, block.similarities
    return KnnGraph(neighbors, similarities)


def _search_cells(vectors: np.ndarray, k: int, probes: np.ndarray, cells: int) -> faiss.ResultHeap:
    """The top-(k + 1) heap of every sample over the members of the cells it probes.

    Cells are searched by a pool of threads, one faiss thread each: the matrix products are
    small, and faiss's OpenMP threads on one product spent more time waiting for each other
    than computing (3x the CPU seconds of one thread on a loaded machine). The heap takes the
    cells' results in cell order, so the graph does not depend on the number of threads.
    """
    import faiss

    n, nprobe = probes.shape
    members = np.argsort(probes[:, 0], kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(probes[:, 0], minlength=cells))]
    probing = np.argsort(probes.ravel(), kind="stable") // nprobe  # the samples probing each cell, by cell
    probing_bounds = np.r_[0, np.cumsum(np.bincount(probes.ravel(), minlength=cells))]

    def search(cell: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        faiss.omp_set_num_threads(1)  # this pool thread's own OpenMP setting
        queries = probing[first:last]
        base = members[bounds[cell] : bounds[cell + 1]]
        similarities, found = faiss.knn(vectors[queries], vectors[base], min(k + 1, len(base)), faiss.METRIC_INNER_PRODUCT)
        return queries, similarities, np.where(found >= 0, base[found], -1)

    heap = faiss.ResultHeap(n, k + 1, keep_max=True)
    threads = faiss.omp_get_max_threads()
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future] = deque()
        for cell in np.flatnonzero(np.diff(bounds)):
            # A cell's probing samples in pieces: one large cell (a head class, a hub) would
            # otherwise hold up the pool while the other threads wait for the heap to take it.
            for first in range(probing_bounds[cell], probing_bounds[cell + 1], QUERY_PIECE):
                pending.append(pool.submit(search, cell, first, min(first + QUERY_PIECE, probing_bounds[cell + 1])))
                if len(pending) > 2 * threads:  # bounds the results waiting for the heap
                    heap.add_result_subset(*pending.popleft().result())
        while pending:
            heap.add_result_subset(*pending.popleft().result())
    heap.finalize()
    return heap


def _drop_self(neighbors: np.ndarray, similarities: np.ndarray, rows: np.ndarray, k: int) -> KnnGraph:
    # Usually self is column 0, but exact duplicates can put it anywhere (or, for IVF, nowhere):
    # drop the self column where there is one, else the last column.
    is_self = neighbors == rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    neighbors = np.take_along_axis(neighbors, keep, axis=1).astype(np.int64)
    similarities = np.take_along_axis(similarities, keep, axis=1).astype(np.float32)
    similarities[neighbors < 0] = -np.inf
    return KnnGraph(neighbors, similarities)


def reverse_index(graph: KnnGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every sample j, the (source, slot) pairs with ``graph.neighbors[source, slot] == j``.

    Returned CSR-style: pairs for j are ``sources[indptr[j]:indptr[j + 1]]`` (and ``slots``),
    in row-major order of the graph.
    """
    n, k = graph.neighbors.shape
    targets = graph.neighbors.ravel()
    present = np.flatnonzero(targets >= 0)
    # target * (n k) + position is unique, so an unstable (faster) sort of it is stable by target.
    keys = targets[present] * (n * k) + present
    keys.sort()
    order = keys % (n * k)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(targets[present], minlength=n), out=indptr[1:])
    return indptr, order // k, order % k
