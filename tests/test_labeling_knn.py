import numpy as np
import pytest

from hdl.labeling import knn
from hdl.labeling.knn import KnnGraph, build_knn_graph, l2_normalize, reverse_index


def brute_force_neighbors(embeddings: np.ndarray, k: int) -> np.ndarray:
    vectors = l2_normalize(embeddings)
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    return np.argsort(-similarities, axis=1, kind="stable")[:, :k]


def clustered_points(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)) * 3
    return (centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_points_on_a_circle_have_their_angular_neighbours():
    angles = np.array([0.0, 0.1, 0.25, 1.0, 1.2, 3.0])
    graph = build_knn_graph(np.stack([np.cos(angles), np.sin(angles)], axis=1), k=2)
    assert graph.neighbors.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2], [4, 3]]
    assert graph.similarities[0, 0] == pytest.approx(np.cos(0.1), abs=1e-6)
    assert np.all(np.diff(graph.similarities, axis=1) <= 0)


def test_exact_graph_matches_brute_force_and_never_lists_self():
    points = clustered_points(500, 16, 5, seed=0)
    graph = build_knn_graph(points, k=8)
    assert np.array_equal(graph.neighbors, brute_force_neighbors(points, 8))
    assert not np.any(graph.neighbors == np.arange(500)[:, None])


def test_duplicate_points_list_each_other_but_not_themselves():
    points = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    graph = build_knn_graph(points, k=1)
    assert graph.neighbors[:2, 0].tolist() == [1, 0]


def test_smaller_k_is_a_prefix_of_larger_k():
    points = clustered_points(400, 8, 4, seed=1)
    large, small = build_knn_graph(points, k=12), build_knn_graph(points, k=4)
    assert np.array_equal(large.truncate(4).neighbors, small.neighbors)
    assert np.allclose(large.truncate(4).similarities, small.similarities)


def test_ivf_graph_above_the_size_threshold_finds_most_true_neighbours():
    points = clustered_points(3000, 16, 10, seed=2)
    truth = build_knn_graph(points, k=10).neighbors  # exact: checked against brute force above
    ivf = build_knn_graph(points, k=10, exact_max_size=1000, nlist=50, nprobe=8)
    coarse = build_knn_graph(points, k=10, exact_max_size=1000, nlist=60, nprobe=1)
    recall = lambda graph: np.mean([len(np.intersect1d(a, b)) for a, b in zip(graph.neighbors, truth)]) / 10
    assert recall(ivf) > 0.9
    assert recall(coarse) < recall(ivf)  # the IVF index really is approximate: fewer cells probed, fewer found
    assert not np.any(ivf.neighbors == np.arange(3000)[:, None])


def test_k_must_be_below_the_number_of_samples():
    with pytest.raises(ValueError, match="below the number of samples"):
        build_knn_graph(np.eye(3), k=3)


def test_reverse_index_lists_exactly_the_samples_pointing_at_each_sample():
    neighbors = np.array([[1, 2], [0, 2], [0, -1], [2, 0]])
    graph = KnnGraph(neighbors, np.ones((4, 2), dtype=np.float32))
    indptr, sources, slots = reverse_index(graph)
    pointing = {j: sorted(zip(sources[indptr[j] : indptr[j + 1]], slots[indptr[j] : indptr[j + 1]])) for j in range(4)}
    assert pointing == {0: [(1, 0), (2, 0), (3, 1)], 1: [(0, 0)], 2: [(0, 1), (1, 1), (3, 0)], 3: []}


def test_cell_by_cell_search_above_faiss_ivf_size_finds_most_true_neighbours(monkeypatch):
    monkeypatch.setattr(knn, "FAISS_IVF_MAX_SIZE", 1000)
    points = clustered_points(3000, 16, 10, seed=2)
    truth = build_knn_graph(points, k=10).neighbors
    graph = build_knn_graph(points, k=10, exact_max_size=1000, nlist=50, nprobe=8)
    coarse = build_knn_graph(points, k=10, exact_max_size=1000, nlist=60, nprobe=1)
    recall = lambda graph: np.mean([len(np.intersect1d(a, b)) for a, b in zip(graph.neighbors, truth)]) / 10
    assert recall(graph) > 0.9
    assert recall(coarse) < recall(graph)
    assert not np.any(graph.neighbors == np.arange(3000)[:, None])
    vectors = l2_normalize(points)
    found = graph.neighbors >= 0
    rows = np.nonzero(found)[0]
    assert np.allclose(graph.similarities[found], np.einsum("ij,ij->i", vectors[rows], vectors[graph.neighbors[found]]), atol=1e-5)
    assert np.all(np.diff(graph.similarities, axis=1) <= 0)


def test_cell_by_cell_search_gives_the_same_graph_whatever_the_pieces_a_cell_is_searched_in(monkeypatch):
    monkeypatch.setattr(knn, "FAISS_IVF_MAX_SIZE", 1000)
    points = clustered_points(3000, 16, 10, seed=3)
    whole = build_knn_graph(points, k=10, exact_max_size=1000, nlist=20, nprobe=4)
    monkeypatch.setattr(knn, "QUERY_PIECE", 37)  # every cell's ~600 probing samples in 17 pieces
    pieces = build_knn_graph(points, k=10, exact_max_size=1000, nlist=20, nprobe=4)
    assert np.array_equal(pieces.neighbors, whole.neighbors)
    assert np.array_equal(pieces.similarities, whole.similarities)
