"""The label probe: argmax against HDL on the embeddings, scored through training, in metrics.json."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hdl.cli import main
from hdl.data import load_dataset
from hdl.labeling.pipeline import LabelingOptions, SelectionOptions
from hdl.training.probe import COVERAGES, LabelProbe, coverage_key
from hdl.training.streams import TrainingData
from ssl_fixtures import StandInViews

TINY = [
    "--dataset", "digits", "--labels", "40", "--seed", "0", "--arch", "wrn-10-1", "--threads", "1", "--no-progress",
    "--set", "batch_size=8", "--set", "uratio=1", "--method", "fixmatch",
]
LONG_TAILED_COUNTS = [10, 8, 6, 5, 4, 3, 3, 2, 2, 2]


class PixelModel(nn.Module):
    """Embeddings: the pixels themselves (HDL labels digits well from them); logits: a fixed random
    projection of them (a classifier near chance), so that a probe that swapped the two would fail."""

    def __init__(self, pixels: int, classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.projection = nn.Linear(pixels, classes)

    def forward(self, images):
        features = images.flatten(1)
        return self.projection(features), features


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", tmp_path_factory.mktemp("data"), False)


def probe_on_digits(digits, counts, seed=0, max_unlabeled=10_000, labeling=LabelingOptions()):
    labels = digits.train_labels
    labeled = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(counts)])
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
    data = TrainingData.build(digits, labeled, unlabeled, StandInViews(), torch.device("cpu"))
    probe = LabelProbe(data, seed, labeling, SelectionOptions(confidence="consistency"), max_unlabeled=max_unlabeled,
                       batch_size=256, bf16=False)
    return probe, len(unlabeled)


def test_probe_scores_embeddings_with_hdl_and_logits_with_argmax(digits):
    probe, n_unlabeled = probe_on_digits(digits, LONG_TAILED_COUNTS)
    row = probe(PixelModel(64, 10), step=5, global_step=105)
    assert (row["step"], row["global_step"], row["n_unlabeled"]) == (5, 105, n_unlabeled)
    assert row["k"] in (5, 10, 20, 40) and row["hdl_confidence"] == "consistency"
    for labeler in ("argmax", "hdl"):
        assert set(row[labeler]) == {"full", "top50", "top30", "top10"}
        for coverage in COVERAGES:
            score = row[labeler][coverage_key(coverage)]
            assert 0.0 <= score["accuracy"] <= 1.0 and len(score["per_class"]) == 10
            # the argmax labels every sample; HDL reaches all of these from the given labels
            assert score["coverage"] == pytest.approx(round(coverage * n_unlabeled) / n_unlabeled)
            # head: the 3 classes with the most given labels (0, 1, 2); tail: the 3 with the fewest (7, 8, 9)
            assert score["head"] == pytest.approx(np.mean([score["per_class"][c] for c in (0, 1, 2)]))
            assert score["tail"] == pytest.approx(np.mean([score["per_class"][c] for c in (7, 8, 9)]))
    assert row["hdl"]["full"]["accuracy"] > 0.8 > 0.3 > row["argmax"]["full"]["accuracy"]
    assert row["hdl"]["top10"]["accuracy"] >= row["hdl"]["full"]["accuracy"]


def test_the_probe_chooses_k_among_the_runs_candidates_not_the_packages(digits):
    """`hdl.k_candidates` (here 3 and 7, none of the package's 5, 10, 20, 40) reach the probe, as they reach `hdl relabel`."""
    chosen = [probe_on_digits(digits, [4] * 10, labeling=LabelingOptions(k_candidates=candidates))[0](PixelModel(64, 10), 1, 1)["k"]
              for candidates in ((3,), (7,), (3, 7))]
    assert chosen[:2] == [3, 7] and chosen[2] in (3, 7)
    fixed, _ = probe_on_digits(digits, [4] * 10, labeling=LabelingOptions(k=4))
    assert fixed(PixelModel(64, 10), 1, 1)["k"] == 4


def test_balanced_labels_have_no_head_or_tail(digits):
    probe, _ = probe_on_digits(digits, [4] * 10)
    score = probe(PixelModel(64, 10), 1, 1)["hdl"]["full"]
    assert "head" not in score and "tail" not in score


def test_many_unlabeled_samples_are_subsampled_by_the_seed(digits):
    first, again, other = (probe_on_digits(digits, [4] * 10, seed, max_unlabeled=200)[0] for seed in (0, 0, 1))
    assert int(first.evaluated.sum()) == 200 and len(first.positions) == 240
    assert torch.equal(first.positions, again.positions) and not torch.equal(first.positions, other.positions)
    assert first(PixelModel(64, 10), 1, 1)["n_unlabeled"] == 200


def train(out, steps, *extra):
    assert main(["train", *TINY, "--steps", str(steps), "--out", str(out), *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def without_seconds(probes):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in probes]


def test_a_run_and_its_stage_2_probe_at_their_cadence(tmp_path):
    stage1 = train(tmp_path / "stage1", 12, "--set", "probe_every=5")
    assert [(row["step"], row["global_step"]) for row in stage1["probes"]] == [(5, 5), (10, 10), (12, 12)]
    for row in stage1["probes"]:
        for labeler in ("argmax", "hdl"):
            assert all(0.0 <= score["accuracy"] <= 1.0 for score in row[labeler].values())
            assert row[labeler]["top30"]["coverage"] == pytest.approx(round(0.3 * row["n_unlabeled"]) / row["n_unlabeled"])
    again = train(tmp_path / "again", 12, "--set", "probe_every=5")
    assert without_seconds(again["probes"]) == without_seconds(stage1["probes"])

    stage2 = train(tmp_path / "stage2", 6, "--set", "probe_every=5", "--init", str(tmp_path / "stage1" / "checkpoint.pt"))
    assert [(row["step"], row["global_step"]) for row in stage2["probes"]] == [(5, 17), (6, 18)]


def test_probing_leaves_training_unchanged_and_off_needs_no_faiss(tmp_path):
    probed = train(tmp_path / "probed", 6, "--set", "probe_every=2", "--set", "eval_every=2")
    silent = train(tmp_path / "silent", 6, "--set", "probe_every=0", "--set", "eval_every=2")
    assert silent["probes"] == [] and len(probed["probes"]) == 3
    assert silent["history"] == probed["history"]
    imports = "import sys, hdl.training.train_cli, hdl.training.loop; print('faiss' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True).stdout.strip() == "False"
