"""The k-NN graph of all samples under cosine similarity, built once with faiss.

Row ``i`` of ``neighbors`` lists the ``k`` nearest other samples of ``i``, nearest first, so
the graph for any smaller k is a column prefix (``graph.truncate(k)``). Missing neighbours
(an approximate search that found fewer than ``k`` candidates) are ``-1`` with similarity ``-inf``.

Up to ``EXACT_MAX_SIZE`` samples the search is exact; above, it is an inverted-file (IVF)
search that compares each sample with the samples of the ``nprobe`` cells nearest it. Up to
``FAISS_IVF_MAX_SIZE`` samples that is faiss's IVF-Flat index. Above, where its k-means and
its assignment of all samples cost N x cells distances each and its query-by-query scans of
scattered lists are slow (minutes at a million samples on 2 cores), the cells come from a two-level k-means (sqrt(cells) cells, each split again, so that no step
costs N x cells distances) and the search runs cell by cell: a cell's samples meet all the
samples that probe it in one matrix product, and the results merge into a top-k heap per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

EXACT_MAX_SIZE = 20_000
FAISS_IVF_MAX_SIZE = 100_000
IVF_NPROBE = 8  # 96% recall@20 on Fashion-MNIST pixels (60k) with faiss's IVF, 2x faster than 16 (99%)
# k-means of the cells on a sample: cell quality barely matters for a k-NN graph, and faiss's
# defaults (256 points per cell, 25 iterations) made training the slowest step.
IVF_TRAIN_POINTS_PER_CELL = 64
IVF_TRAIN_ITERATIONS = 10
# A sample's nprobe nearest cells are looked for among this many cells nearest its own.
PROBE_CANDIDATES = 32
CHUNK_ROWS = 65_536  # rows normalised or searched at a time, to bound the temporary copies


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


def default_nlist(n: int) -> int:
    return max(1, int(4 * np.sqrt(n)))


def build_knn_graph(
    embeddings: np.ndarray,
    k: int,
    exact_max_size: int = EXACT_MAX_SIZE,
    nlist: int | None = None,
    nprobe: int = IVF_NPROBE,
    seed: int = 0,
) -> KnnGraph:
    """k nearest neighbours (self excluded) of every row by cosine similarity.

    Exact inner-product search when N <= ``exact_max_size``; above it an IVF search with
    ``nlist`` cells (default 4 sqrt(N)) and each sample's ``nprobe`` nearest cells searched:
    faiss's IVF-Flat index up to FAISS_IVF_MAX_SIZE samples, the cell-by-cell search above.
    faiss uses as many threads as OpenMP gives it (``faiss.omp_set_num_threads``).
    """
    n = len(embeddings)
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be at least 1 and below the number of samples N={n}")
    vectors = l2_normalize(embeddings)
    cells = min(nlist or default_nlist(n), n)
    if n > max(exact_max_size, FAISS_IVF_MAX_SIZE):
        return _cell_by_cell_search(vectors, k, _two_level_cells(vectors, cells, seed), min(nprobe, cells))
    if n <= exact_max_size:
        index = faiss.IndexFlatIP(vectors.shape[1])
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
        index.cp.niter = IVF_TRAIN_ITERATIONS
        index.train(vectors)
        index.nprobe = min(nprobe, cells)
    index.add(vectors)
    similarities, neighbors = index.search(vectors, k + 1)
    return _drop_self(neighbors, similarities, np.arange(n), k)


def _kmeans(vectors: np.ndarray, n_centroids: int, seed: int) -> np.ndarray:
    """Centroids of a k-means on at most IVF_TRAIN_POINTS_PER_CELL samples per centroid."""
    if n_centroids >= len(vectors):
        return np.ascontiguousarray(vectors[:n_centroids])
    kmeans = faiss.Kmeans(
        vectors.shape[1], n_centroids, niter=IVF_TRAIN_ITERATIONS, seed=seed,
        max_points_per_centroid=IVF_TRAIN_POINTS_PER_CELL, min_points_per_centroid=1,
    )
    kmeans.train(np.ascontiguousarray(vectors))
    return kmeans.centroids


def _nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    cell = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK_ROWS):
        cell[start : start + CHUNK_ROWS] = faiss.knn(np.ascontiguousarray(vectors[start : start + CHUNK_ROWS]), centroids, 1)[1][:, 0]
    return cell


def _two_level_cells(vectors: np.ndarray, cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell of every sample, centroids): sqrt(cells) top cells, each split in proportion to its size.

    Each sample is compared with sqrt(cells) top centroids and its top cell's subcentroids, not
    with all ``cells`` centroids.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    tops = max(1, int(round(np.sqrt(cells))))
    sample = np.sort(rng.choice(n, min(n, tops * IVF_TRAIN_POINTS_PER_CELL), replace=False))
    top = _nearest_centroid(vectors, _kmeans(vectors[sample], tops, seed))
    members = np.argsort(top, kind="stable")
    top_sizes = np.bincount(top, minlength=tops)
    bounds = np.r_[0, np.cumsum(top_sizes)]
    splits = np.maximum(1, np.round(cells * top_sizes / n).astype(np.int64)) * (top_sizes > 0)
    cell = np.empty(n, dtype=np.int64)
    centroids = []
    offset = 0
    for t in np.flatnonzero(top_sizes):
        points = members[bounds[t] : bounds[t + 1]]
        train = points if len(points) <= splits[t] * IVF_TRAIN_POINTS_PER_CELL else np.sort(
            rng.choice(points, splits[t] * IVF_TRAIN_POINTS_PER_CELL, replace=False)
        )
        sub_centroids = _kmeans(vectors[train], int(splits[t]), seed)
        cell[points] = offset + _nearest_centroid(vectors[points], sub_centroids)
        centroids.append(sub_centroids)
        offset += len(sub_centroids)
    return cell, np.concatenate(centroids)


def _cell_by_cell_search(vectors: np.ndarray, k: int, cells: tuple[np.ndarray, np.ndarray], nprobe: int) -> KnnGraph:
    """Every sample's k nearest among the samples of its ``nprobe`` nearest cells, cell by cell:
    each cell's samples are compared at once with all the samples that probe it (one matrix
    product), and the results merge into one top-k heap per sample."""
    cell, centroids = cells
    n, n_cells = len(vectors), len(centroids)
    members = np.argsort(cell, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(cell, minlength=n_cells))]
    probes = _nearest_cells(vectors, centroids, members, bounds, nprobe)
    probing = np.argsort(probes.ravel(), kind="stable") // nprobe  # samples probing each cell, by cell
    probing_bounds = np.r_[0, np.cumsum(np.bincount(probes.ravel(), minlength=n_cells))]
    heap = faiss.ResultHeap(n, k + 1, keep_max=True)
    for c in np.flatnonzero(np.diff(bounds)):
        queries = probing[probing_bounds[c] : probing_bounds[c + 1]]
        base = members[bounds[c] : bounds[c + 1]]
        heap.add_result_subset(queries, vectors[queries] @ vectors[base].T, base)
    heap.finalize()
    neighbors = np.empty((n, k), dtype=np.int64)
    similarities = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        rows = np.arange(start, min(n, start + CHUNK_ROWS))
        block = _drop_self(heap.I[rows], heap.D[rows], rows, k)
        neighbors[rows], similarities[rows] = block.neighbors, block.similarities
    return KnnGraph(neighbors, similarities)


def _nearest_cells(vectors: np.ndarray, centroids: np.ndarray, members: np.ndarray, bounds: np.ndarray, nprobe: int) -> np.ndarray:
    """(N, nprobe) cells nearest each sample (L2), looked for among the PROBE_CANDIDATES cells
    nearest its own cell's centroid rather than among all cells."""
    candidates = faiss.knn(centroids, centroids, min(max(PROBE_CANDIDATES, nprobe), len(centroids)))[1]
    squared_norms = (centroids**2).sum(axis=1)
    probes = np.empty((len(vectors), nprobe), dtype=np.int64)
    for c in np.flatnonzero(np.diff(bounds)):
        queries = members[bounds[c] : bounds[c + 1]]
        near = candidates[c]
        distances = squared_norms[near] - 2 * (vectors[queries] @ centroids[near].T)  # up to the query's own norm
        probes[queries] = near[np.argsort(distances, axis=1, kind="stable")[:, :nprobe]]
    return probes


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
