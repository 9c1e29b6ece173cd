"""What lets `hdl relabel` run at ImageNet scale: no per-class arrays, comparison labelers
skipped above their size with the reason in the report."""

import json

import numpy as np
from sklearn.datasets import load_digits

from hdl.cli import main
from hdl.labeling import baselines
from hdl.labeling.hdl import hdl_labeling
from hdl.labeling.knn import build_knn_graph


def test_hdl_holds_no_array_with_a_column_per_class():
    # 10^9 classes: a dense (N, classes) vote would need 14 TB.
    images, truth = load_digits(return_X_y=True)
    labels = np.where(np.arange(len(truth)) % 20 == 0, truth * 10**8, -1)
    result = hdl_labeling(build_knn_graph(images, 10), labels, n_classes=10**9)
    unlabeled = labels < 0
    assert np.mean(result.labels[unlabeled] == truth[unlabeled] * 10**8) > 0.9


def test_relabel_reports_the_comparison_labelers_it_skipped_and_why(tmp_path, monkeypatch):
    images, truth = load_digits(return_X_y=True)
    labels = np.where(np.arange(len(truth)) % 20 == 0, truth, -1)
    for name, array in {"embeddings": images.astype(np.float32), "labels": labels, "truth": truth}.items():
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.setattr(baselines, "KNN_VOTE_MAX_PRODUCTS", 1e3)
    code = main(["relabel", "--embeddings", str(tmp_path / "embeddings.npy"), "--labels", str(tmp_path / "labels.npy"),
                 "--truth", str(tmp_path / "truth.npy"), "--out", str(tmp_path / "out.npz"), "--report", str(tmp_path / "report.json"),
                 "--k-candidates", "5", "10", "--folds", "2"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["comparison"]) == {"label_propagation"}
    assert set(report["coverage_curve"]) == {"hdl", "label_propagation"}
    assert list(report["skipped"]) == ["knn_vote"] and "1e+03" in report["skipped"]["knn_vote"]
