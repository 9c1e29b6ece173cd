import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from hdl.cli import main

REPORT_KEYS = {"k", "k_scores", "waves", "coverage", "seconds", "accuracy", "per_class", "per_level", "comparison", "coverage_curve",
               "selection"}


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits, 5 labels per class: real images, small enough to be fast."""
    images, truth = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    labels = np.full(len(truth), -1)
    for c in range(10):
        chosen = rng.choice(np.flatnonzero(truth == c), 5, replace=False)
        labels[chosen] = c
    probs = np.eye(10)[(truth + (rng.random(len(truth)) < 0.3)) % 10] * 0.9 + 0.01  # a 70%-accurate model
    return images.astype(np.float32), labels, truth, probs.astype(np.float32)


def save(tmp_path, **arrays):
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array)
    return paths


def test_relabel_writes_labels_and_a_report_that_compares_labelers(tmp_path, digits):
    images, labels, truth, probs = digits
    paths = save(tmp_path, embeddings=images, labels=labels, truth=truth, probs=probs)
    out, report_path = tmp_path / "out.npz", tmp_path / "report.json"
    code = main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--out", str(out),
                 "--truth", paths["truth"], "--probs", paths["probs"], "--report", str(report_path),
                 "--k-candidates", "5", "10", "--folds", "2"])
    assert code == 0
    result = np.load(out)
    assert {"labels", "level", "agreement", "index"} <= set(result.files)
    assert np.array_equal(result["labels"][labels >= 0], labels[labels >= 0])
    assert np.array_equal(result["index"], np.arange(len(labels)))
    report = json.loads(report_path.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["k"] in (5, 10) and set(report["k_scores"]) == {"5", "10"}
    assert report["coverage"] == 1.0
    unlabeled = labels < 0
    assert report["accuracy"] == pytest.approx(np.mean(result["labels"][unlabeled] == truth[unlabeled]))
    assert report["accuracy"] > 0.85  # digits' pixels cluster well
    assert set(report["comparison"]) == {"knn_vote", "label_propagation", "argmax", "argmax_threshold"}
    assert 0.6 < report["comparison"]["argmax"]["accuracy"] < 0.8
    assert report["comparison"]["argmax_threshold"]["coverage"] == 0.0  # no prediction reaches 0.95
    assert [point["coverage"] for point in report["coverage_curve"]["hdl"]] == pytest.approx(np.linspace(0.1, 1, 10), abs=1e-3)
    assert sum(level["count"] for level in report["per_level"]) == unlabeled.sum()


def test_relabel_reports_where_its_time_went_and_names_the_largest_part(tmp_path, digits, capsys):
    images, labels, truth, probs = digits
    paths = save(tmp_path, embeddings=images, labels=labels, truth=truth, probs=probs)
    report_path = tmp_path / "report.json"
    code = main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--out", str(tmp_path / "out.npz"),
                 "--truth", paths["truth"], "--probs", paths["probs"], "--report", str(report_path),
                 "--k-candidates", "5", "10", "--folds", "2", "--exact-max-size", "500", "--nprobe", "4"])
    assert code == 0
    timings = json.loads(report_path.read_text())["timings"]
    parts = timings["parts"]
    assert list(parts) == ["load", "graph", "folds k=5", "folds k=10", "final hdl", "selection", "diagnostics", "write"]
    for seconds in ("seconds", "cpu_seconds"):
        assert all(part[seconds] >= 0 for part in parts.values())
        assert sum(part[seconds] for part in parts.values()) <= timings[seconds]
    assert timings["largest"] == max(parts, key=lambda name: parts[name]["seconds"])
    graph = timings["graph"]
    assert {key: graph[key] for key in ("index", "nlist", "nprobe", "train_samples")} == {
        "index": "faiss_ivf", "nlist": int(4 * np.sqrt(len(labels))), "nprobe": 4, "train_samples": len(labels)}
    assert list(graph["steps"]) == ["normalize", "train cells", "search", "merge"]
    assert sum(step["seconds"] for step in graph["steps"].values()) <= parts["graph"]["seconds"]
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"the largest part {timings['largest']} ({parts[timings['largest']]['seconds']:.2f} s" in last_line


def test_relabel_reads_the_embed_npz_and_writes_extra_labels_by_train_index(tmp_path, digits):
    images, labels, truth, probs = digits
    embed = tmp_path / "embed.npz"
    index = np.arange(len(labels)) * 3 + 7
    norms = np.linalg.norm(images, axis=1, keepdims=True)
    np.savez(embed, embeddings=images / norms, probs=probs, index=index, labels=labels, truth=truth)
    out, extra = tmp_path / "out.npz", tmp_path / "extra.npz"
    code = main(["relabel", "--embeddings", str(embed), "--out", str(out), "--k", "10",
                 "--extra-labels-out", str(extra), "--selection", "all", "--max-level", "3", "--weight", "agreement"])
    assert code == 0
    result, selected = np.load(out), np.load(extra)
    assert np.array_equal(result["index"], index)
    kept = (result["level"] >= 1) & (result["level"] <= 3)
    assert np.array_equal(selected["index"], index[kept])
    assert np.array_equal(selected["label"], result["labels"][kept])
    assert np.allclose(selected["weight"], result["agreement"][kept])
    assert selected["index"].dtype == np.int64 and selected["weight"].dtype == np.float32


def test_default_selection_keeps_fewer_and_more_accurate_labels_within_class_quotas(tmp_path, digits):
    images, labels, truth, probs = digits
    paths = save(tmp_path, embeddings=images, labels=labels, truth=truth, probs=probs)
    out, extra, report_path = tmp_path / "out.npz", tmp_path / "extra.npz", tmp_path / "report.json"
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--out", str(out),
                 "--truth", paths["truth"], "--probs", paths["probs"], "--report", str(report_path),
                 "--extra-labels-out", str(extra), "--k", "10"]) == 0
    result, selected = np.load(out), np.load(extra)
    report = json.loads(report_path.read_text())
    selection = report["selection"]
    reached = (labels < 0) & (result["labels"] >= 0)
    assert 0 < len(selected["index"]) == selection["n_selected"] < selection["n_reached"] == reached.sum()
    accuracy_selected = np.mean(selected["label"] == truth[selected["index"]])
    assert selection["accuracy"] == pytest.approx(accuracy_selected)
    assert accuracy_selected > report["accuracy"]  # more accurate than all of HDL's labels together
    assert selection["per_class"] == np.bincount(selected["label"], minlength=10).tolist()
    assert selection["n_selected"] <= selection["n_above_threshold"]
    assert max(selection["per_class"]) <= round(selection["n_above_threshold"] / 10)  # balanced labels: equal quotas
    assert selection["rule"] == "confident" and selection["confidence"] == "argmax_agreement"
    assert 0 < selection["threshold"] <= 1 and 0 < selection["estimated_accuracy"] <= 1
    assert 0.6 < selection["argmax_accuracy"] < 0.8
    assert set(selection["confidence_curves"]) == {"consistency", "agreement", "rank", "knn_margin", "argmax_agreement", "distribution_aware"}
    # the diagnostics rank HDL's labels by the selection's confidence, not by labeling order
    assert report["coverage_curve"]["hdl"] == selection["confidence_curves"]["argmax_agreement"]
    assert report["coverage_curve"]["hdl"] != selection["confidence_curves"]["rank"]
    kept = selected["label"] == truth[selected["index"]]
    assert selection["per_class_accuracy"] == pytest.approx([kept[selected["label"] == c].mean() for c in range(10)])
    assert selection["class_quota"] == "uniform" and selection["quotas"] == [round(selection["n_above_threshold"] / 10)] * 10


def test_argmax_agreement_needs_the_models_probabilities(tmp_path, digits, capsys):
    images, labels, _, _ = digits
    paths = save(tmp_path, embeddings=images, labels=labels)
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--k", "5",
                 "--out", str(tmp_path / "out.npz"), "--confidence", "argmax_agreement"]) == 2
    assert "--probs" in capsys.readouterr().err and not (tmp_path / "out.npz").exists()



def test_the_default_confidence_falls_back_to_consistency_without_probabilities(tmp_path, digits):
    images, labels, truth, probs = digits
    paths = save(tmp_path, embeddings=images, labels=labels, truth=truth, probs=probs)
    chosen = {}
    for name, flags in {"bare": [], "with probs": ["--probs", paths["probs"]]}.items():
        report = tmp_path / f"{name}.json"
        assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--k", "5",
                     "--truth", paths["truth"], "--out", str(tmp_path / "out.npz"), "--report", str(report), *flags]) == 0
        chosen[name] = json.loads(report.read_text())["selection"]["confidence"]
    assert chosen == {"bare": "consistency", "with probs": "argmax_agreement"}

# case: (make the bad arrays from good ones, extra flags, what the message says, the file it names)
def test_one_label_per_class_cannot_calibrate_the_selection(tmp_path, digits, capsys):
    images, _, truth, _ = digits
    labels = np.full(len(truth), -1)
    labels[[np.flatnonzero(truth == c)[0] for c in range(10)]] = np.arange(10)
    paths = save(tmp_path, embeddings=images, labels=labels)
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--k", "5",
                 "--out", str(tmp_path / "out.npz")]) == 2
    assert "--selection all" in capsys.readouterr().err and not (tmp_path / "out.npz").exists()
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--k", "5",
                 "--out", str(tmp_path / "out.npz"), "--selection", "all"]) == 0


BAD_INPUTS = {
    "shapes disagree": (lambda e, y: (e, y[:-1]), [], "must have shape", "labels.npy"),
    "NaN embedding": (lambda e, y: (np.where(np.arange(len(e))[:, None] == 3, np.nan, e), y), [], "NaN or infinite", "embeddings.npy"),
    "infinite embedding": (lambda e, y: (np.where(np.arange(len(e))[:, None] == 3, np.inf, e), y), [], "NaN or infinite", "embeddings.npy"),
    "label out of range": (lambda e, y: (e, np.where(np.arange(len(y)) == 0, 12, y)), ["--num-classes", "10"], "must lie in [-1, 9]", "labels.npy"),
    "label below -1": (lambda e, y: (e, np.where(np.arange(len(y)) == 0, -2, y)), [], "must be >= -1", "labels.npy"),
    "fractional label": (lambda e, y: (e, np.where(np.arange(len(y)) == 0, 0.5, y)), [], "must hold integers", "labels.npy"),
    "no labeled sample": (lambda e, y: (e, np.full_like(y, -1)), [], "no labeled sample", "labels.npy"),
    "class without a label": (lambda e, y: (e, np.where(y == 3, -1, y)), [], "1 of 10 classes have no labeled sample [3]", "labels.npy"),
    "k >= N": (lambda e, y: (e, y), ["--k", "1797"], "below the number of samples", None),
    "candidate k >= N": (lambda e, y: (e, y), ["--k-candidates", "5", "5000"], "below the number of samples", None),
    "k not a number": (lambda e, y: (e, y), ["--k", "many"], "'auto' or an integer", None),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(tmp_path, digits, capsys, case):
    make_bad, extra_args, message, names = BAD_INPUTS[case]
    images, labels, _, _ = digits
    embeddings, bad_labels = make_bad(images, labels)
    paths = save(tmp_path, embeddings=embeddings, labels=bad_labels)
    out, report = tmp_path / "out.npz", tmp_path / "report.json"
    code = main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--out", str(out),
                 "--report", str(report), *extra_args])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and len(error.splitlines()) == 1
    assert names is None or str(tmp_path / names) in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["embeddings.npy", "labels.npy"]


def test_a_long_class_list_is_counted_and_cut(tmp_path, capsys):
    """1,000 classes of which 500 have no label: the message counts them and names the first few."""
    rng = np.random.default_rng(0)
    labels = np.full(3000, -1)
    labels[:500] = np.arange(500)
    paths = save(tmp_path, embeddings=rng.normal(size=(3000, 8)).astype(np.float32), labels=labels)
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--num-classes", "1000",
                 "--out", str(tmp_path / "out.npz")]) == 2
    error = capsys.readouterr().err
    assert "500 of 1000 classes have no labeled sample [500, 501, 502, 503, 504, 505, 506, 507, ...]" in error
    assert len(error) < 400


def test_missing_labels_are_a_clear_error(tmp_path, capsys):
    embeddings = save(tmp_path, embeddings=np.eye(4, dtype=np.float32))["embeddings"]
    assert main(["relabel", "--embeddings", embeddings, "--out", str(tmp_path / "o.npz")]) == 2
    assert "pass --labels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def long_tailed_digits(tmp_path_factory):
    """Digits with long-tailed given labels (30 down to 3 per class, IF 10) and the probabilities of a
    head-biased classifier: it agrees with every given label (it trained on them), but puts 60% of
    the tail classes' (7-9) other images into a head class (0-2), as the study's classifiers do."""
    images, truth = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    given_per_class = np.rint(30 * 0.1 ** (np.arange(10) / 9)).astype(int)
    labels = np.full(len(truth), -1)
    for c in range(10):
        labels[rng.choice(np.flatnonzero(truth == c), given_per_class[c], replace=False)] = c
    predicted = truth.copy()
    moved = (truth >= 7) & (labels < 0) & (rng.random(len(truth)) < 0.6)
    predicted[moved] = rng.integers(0, 3, moved.sum())
    probs = np.full((len(truth), 10), 0.02, dtype=np.float32)
    probs[np.arange(len(truth)), predicted] = 0.82
    folder = tmp_path_factory.mktemp("long_tailed_digits")
    return save(folder, embeddings=images.astype(np.float32), labels=labels, truth=truth, probs=probs), labels, truth, predicted


TAIL = [7, 8, 9]


def relabel_selection(tmp_path, paths, *options) -> tuple[dict, np.lib.npyio.NpzFile]:
    report, extra = tmp_path / "report.json", tmp_path / "extra.npz"
    code = main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--truth", paths["truth"],
                 "--probs", paths["probs"], "--out", str(tmp_path / "out.npz"), "--report", str(report),
                 "--extra-labels-out", str(extra), "--k-candidates", "5", "10", "--folds", "2", *options])
    assert code == 0
    return json.loads(report.read_text())["selection"], np.load(extra)


def test_distribution_aware_keeps_the_tail_labels_a_head_biased_classifier_disputes(tmp_path, long_tailed_digits):
    paths, labels, truth, predicted = long_tailed_digits
    agreement, _ = relabel_selection(tmp_path, paths, "--confidence", "argmax_agreement")
    aware, extra = relabel_selection(tmp_path, paths, "--confidence", "distribution_aware")
    # argmax_agreement's one threshold, calibrated on given labels the classifier agrees with, vetoes every dispute
    assert set(aware["thresholds"]) == {"agreeing", "disputed"} and aware["thresholds"]["disputed"] < agreement["threshold"]
    assert sum(agreement["per_class_disputed"][c] for c in TAIL) == 0
    disputed_in_tail = sum(aware["per_class_disputed"][c] for c in TAIL)
    kept_in_tail = {name: sum(selection["per_class"][c] for c in TAIL) for name, selection in (("agreement", agreement), ("aware", aware))}
    assert disputed_in_tail >= 100 and kept_in_tail["aware"] >= kept_in_tail["agreement"] + disputed_in_tail - 20
    # the disputed labels it lets in are right, where the classifier is wrong on most of the tail's images
    in_tail = np.isin(extra["label"], TAIL)
    tail_kept_accuracy = np.mean(extra["label"][in_tail] == truth[extra["index"][in_tail]])
    unlabeled_tail = (labels < 0) & np.isin(truth, TAIL)
    classifier_tail_accuracy = np.mean(predicted[unlabeled_tail] == truth[unlabeled_tail])
    assert tail_kept_accuracy > 0.95 and classifier_tail_accuracy < 0.5
    # a lower temperature trusts the classifier's less-predicted classes less, so fewer disputes pass
    cold, _ = relabel_selection(tmp_path, paths, "--confidence", "distribution_aware", "--temperature", "0.3")
    assert cold["temperature"] == 0.3 and sum(cold["per_class_disputed"]) < sum(aware["per_class_disputed"])


def test_entropy_balanced_keeps_every_label_weighted_by_certainty_and_inverse_class_frequency(tmp_path, long_tailed_digits):
    paths, labels, truth, _ = long_tailed_digits
    selection, extra = relabel_selection(tmp_path, paths, "--selection", "all", "--weight", "entropy_balanced")
    assert selection["weight"] == "entropy_balanced" and selection["n_selected"] == selection["n_reached"]
    kept_labels, weights = extra["label"], extra["weight"]
    given_counts = np.bincount(labels[labels >= 0], minlength=10)
    per_class = given_counts + np.bincount(kept_labels, minlength=10)
    # zeta: (n / C) / n_c; omega in (0, 1], the most certain kept label's 1
    zeta = (per_class.sum() / 10) / per_class
    omega = weights / zeta[kept_labels]
    assert omega.max() == pytest.approx(1.0) and omega.min() > 0
    # wrong labels sit in mixed neighbourhoods: their certainty is lower
    right = kept_labels == truth[extra["index"]]
    assert omega[~right].mean() < omega[right].mean() - 0.1
    # a tail label weighs more than a head label: the tail holds fewer labels in all
    assert zeta[9] > zeta[0]


def test_relabel_scores_only_samples_with_a_true_label(tmp_path, digits):
    """A pool sample (truth -1) is labeled like any other but counts neither right nor wrong anywhere."""
    images, labels, truth, probs = digits
    pool = np.flatnonzero(labels < 0)[::3]
    pool_truth = truth.copy()
    pool_truth[pool] = -1
    paths = save(tmp_path, embeddings=images, labels=labels, truth=pool_truth, probs=probs)
    out, report_path = tmp_path / "out.npz", tmp_path / "report.json"
    assert main(["relabel", "--embeddings", paths["embeddings"], "--labels", paths["labels"], "--out", str(out),
                 "--truth", paths["truth"], "--probs", paths["probs"], "--report", str(report_path),
                 "--k-candidates", "5", "10", "--folds", "2", "--selection", "all"]) == 0
    result, report = np.load(out), json.loads(report_path.read_text())
    assert (result["labels"][pool] >= 0).all()  # the pool is labeled for stage 2
    scored = (labels < 0) & (pool_truth >= 0)
    assert report["scored"] == scored.sum()
    assert report["accuracy"] == pytest.approx(np.mean(result["labels"][scored] == truth[scored]))
    assert sum(level["count"] for level in report["per_level"]) == scored.sum()
    assert report["selection"]["n_scored"] == scored.sum()
    assert report["selection"]["accuracy"] == pytest.approx(report["accuracy"])
    argmax = probs.argmax(axis=1)
    assert report["comparison"]["argmax"]["accuracy"] == pytest.approx(np.mean(argmax[scored] == truth[scored]))
