"""`hdl.labeler` / `--labeler`: stage 2 trains on the labels of HDL, a plain k-NN vote, label propagation or the
model's argmax, each through the one path of `hdl relabel`, the refresh and the selection, each weighted under
its own labels."""

import json

import numpy as np
import pytest

from hdl import workflow
from hdl.cli import build_parser, main
from hdl.labeling import baselines, pipeline
from hdl.labeling.weights import entropy_balanced_weights
from hdl.training.train_cli import build_trainer
from test_refresh import CELL, TRAIN  # the same digits cell and trainer settings as the refresh's tests

ALL_LABELS = ["--k-candidates", "3", "7", "--folds", "2", "--selection", "all", "--weight", "entropy_balanced"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A 30-step FixMatch stage 1 on digits, its split and `hdl embed` of it."""
    folder = tmp_path_factory.mktemp("labelers")
    split, run, embed = folder / "split.npz", folder / "stage1", folder / "embed.npz"
    assert main(["split", *CELL[:6], "--out", str(split)]) == 0
    assert main(["train", *TRAIN, "--steps", "30", "--split", str(split), "--out", str(run)]) == 0
    assert main(["embed", "--checkpoint", str(run / "checkpoint.pt"), "--dataset", "digits", "--split", str(split),
                 "--out", str(embed), "--threads", "1"]) == 0
    return {"folder": folder, "split": split, "init": run / "checkpoint.pt", "embed": embed}


@pytest.mark.slow
@pytest.mark.parametrize("labeler", baselines.STAGE2_LABELERS)
def test_each_labelers_own_labels_reach_stage_2_and_its_refresh_gives_them_again(stage1, tmp_path, labeler):
    extra, report = tmp_path / "extra.npz", tmp_path / "relabel.json"
    assert main(["relabel", "--embeddings", str(stage1["embed"]), "--out", str(tmp_path / "relabel.npz"), "--report", str(report),
                 "--extra-labels-out", str(extra), "--seed", "0", "--labeler", labeler, *ALL_LABELS]) == 0
    relabeled = json.loads(report.read_text())
    with np.load(stage1["embed"]) as embedded:
        embeddings, given, probs, index = embedded["embeddings"], embedded["labels"], embedded["probs"], embedded["index"]
    graph_k = relabeled["k"]
    if labeler == "hdl":
        with np.load(tmp_path / "relabel.npz") as hdl_output:
            expected = hdl_output["labels"]
    else:
        options = pipeline.LabelingOptions(k=graph_k)
        graph = pipeline.relabel(embeddings, given, 10, probs, options, pipeline.SelectionOptions(rule="all")).graph
        expected = baselines.stage2_labeling(labeler, graph, embeddings, given, 10, probs).labels
    with np.load(extra) as kept:
        kept_index, kept_labels, kept_weights = kept["index"], kept["label"], kept["weight"]
    added = np.flatnonzero((given < 0) & (expected >= 0))
    assert relabeled["selection"]["labeler"] == labeler
    assert np.array_equal(kept_index, index[added]) and np.array_equal(kept_labels, expected[added])

    argv = ["train", *TRAIN, "--steps", "4", "--split", str(stage1["split"]), "--init", str(stage1["init"]),
            "--extra-labels", str(extra), "--out", str(tmp_path / "stage2"), "--labeler", labeler, *ALL_LABELS,
            "--refresh-every", "2"]
    trainer = build_trainer(build_parser("train").parse_args(argv))
    trainer.continue_from(stage1["init"])
    data, n_given = trainer.data, len(trainer.data.host.given_targets)
    assert np.array_equal(data.labeled_targets[n_given:].numpy(), kept_labels)
    assert np.array_equal(data.labeled_weights[n_given:].numpy(), kept_weights)

    data.replace_extra_labels(kept_index[:2], kept_labels[:2], kept_weights[:2])
    trainer.labeling.refresh_labels(trainer)  # the stage-1 model again: the same labels and weights
    assert np.array_equal(data.labeled_index[n_given:].numpy(), kept_index)
    assert np.array_equal(data.labeled_targets[n_given:].numpy(), kept_labels)
    np.testing.assert_allclose(data.labeled_weights[n_given:].numpy(), kept_weights, rtol=1e-6)


def two_clusters_with_a_guessing_classifier(seed=0):
    """Two well-separated clusters with 8 given labels each, and probabilities whose argmax is a coin flip."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, 16))
    centres[0, 0] = centres[1, 1] = 6.0
    truth = np.repeat([0, 1], 100)
    embeddings = (centres[truth] + rng.normal(size=(200, 16))).astype(np.float32)
    labels = np.full(200, -1)
    given = np.concatenate([np.arange(8), 100 + np.arange(8)])
    labels[given] = truth[given]
    guesses = rng.integers(0, 2, 200)
    probs = np.where(np.arange(2)[None, :] == guesses[:, None], 0.6, 0.4).astype(np.float32)
    return embeddings, labels, probs, truth


def test_entropy_balanced_weights_follow_each_labelers_own_labels():
    embeddings, labels, probs, truth = two_clusters_with_a_guessing_classifier()
    selection = pipeline.SelectionOptions(rule="all", weight="entropy_balanced")
    runs = {labeler: pipeline.relabel(embeddings, labels, 2, probs, pipeline.LabelingOptions(k=7, labeler=labeler), selection)
            for labeler in baselines.STAGE2_LABELERS}
    given_per_class = np.bincount(labels[labels >= 0], minlength=2)
    for labeler, run in runs.items():
        kept = run.selection
        assert np.array_equal(kept.labels, run.stage2.result.labels[kept.positions])
        expected = entropy_balanced_weights(run.graph, run.stage2.result.labels, kept.positions, given_per_class)
        np.testing.assert_allclose(kept.weights, expected, rtol=1e-6, err_msg=labeler)
    # the embeddings' labelers label the clusters cleanly; the coin-flip argmax leaves every neighbourhood mixed
    for labeler in ("hdl", "knn_vote", "label_propagation"):
        assert np.mean(runs[labeler].selection.labels == truth[runs[labeler].selection.positions]) > 0.95
        assert runs[labeler].selection.weights.mean() > 2 * runs["argmax"].selection.weights.mean()


def test_a_labeler_other_than_hdl_is_calibrated_on_its_own_hold_out_labels():
    embeddings, labels, probs, _ = two_clusters_with_a_guessing_classifier()
    selection = pipeline.SelectionOptions(rule="confident", confidence="agreement", class_quota="none")
    run = pipeline.relabel(embeddings, labels, 2, probs, pipeline.LabelingOptions(k=7, folds=2, labeler="argmax"), selection)
    folds = run.stage2.holdout
    assert len(folds) == 2 and run.stage2 is not run.chosen
    hidden_confidence = np.concatenate([probs[fold.hidden].max(axis=1) for fold in folds])  # argmax's own confidence
    assert run.selection.thresholds == {"all": pytest.approx(float(np.sort(hidden_confidence)[0]))}
    assert np.all(probs[run.selection.positions].max(axis=1) >= run.selection.thresholds["all"])


def test_hdl_relabel_refuses_the_argmax_labeler_without_probabilities(tmp_path, capsys):
    embeddings, labels, _, _ = two_clusters_with_a_guessing_classifier()
    np.save(tmp_path / "e.npy", embeddings)
    np.save(tmp_path / "y.npy", labels)
    code = main(["relabel", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--out", str(tmp_path / "out.npz"), "--labeler", "argmax", "--k", "5"])
    assert code == 2 and "--labeler argmax needs the model's probabilities" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


def test_a_labeler_outside_the_four_stops_the_config_check_naming_the_key(repo_root):
    schema = workflow.load_yaml(workflow.SCHEMA_PATH)
    config = workflow.load_yaml(repo_root / "config" / "config.yaml")
    config["hdl"]["labeler"] = "oracle"
    with pytest.raises(workflow.ConfigError, match=r"hdl\.labeler: 'oracle' is not one of"):
        workflow.check_config(config, schema)
