"""Stage 2's extra labels refreshed during training (`hdl train --refresh-every`): the labels `hdl embed` and
`hdl relabel` would give, replacing the extra labels, recorded in metrics.json, resumed exactly."""

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hdl import workflow
from hdl.cli import build_parser, main
from hdl.data import load_dataset
from hdl.training.train_cli import build_trainer, run_config
from training_fixtures import train_interrupted_at

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))  # the study scripts import their neighbours by name
from stage2_runs import stage2_command  # noqa: E402

CELL = ["--dataset", "digits", "--labels", "40", "--seed", "0", "--method", "fixmatch"]
TRAIN = [*CELL, "--arch", "wrn-10-1", "--threads", "1", "--no-progress", "--set", "batch_size=16", "--set", "uratio=1",
         "--set", "probe_every=0"]
# as the workflow passes its hdl block to `hdl relabel` and `hdl train` alike; k candidates outside the package's
HDL = ["--k-candidates", "3", "7", "--folds", "2", "--confidence", "distribution_aware", "--class-quota", "uniform"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A 40-step FixMatch stage 1 on digits (76% top-1), its split, and `hdl embed` + `hdl relabel` of it."""
    folder = tmp_path_factory.mktemp("refresh")
    split, run = folder / "split.npz", folder / "stage1"
    assert main(["split", *CELL[:6], "--out", str(split)]) == 0
    assert main(["train", *TRAIN, "--steps", "40", "--split", str(split), "--out", str(run)]) == 0
    embed, extra, report = folder / "embed.npz", folder / "extra.npz", folder / "relabel.json"
    assert main(["embed", "--checkpoint", str(run / "checkpoint.pt"), "--dataset", "digits", "--split", str(split),
                 "--out", str(embed), "--threads", "1"]) == 0
    assert main(["relabel", "--embeddings", str(embed), "--out", str(folder / "relabel.npz"), "--report", str(report),
                 "--extra-labels-out", str(extra), "--seed", "0", *HDL]) == 0
    return {"folder": folder, "split": split, "init": run / "checkpoint.pt", "extra": extra,
            "relabel": json.loads(report.read_text())}


def stage2_argv(stage1, out, steps, *extra):
    return ["train", *TRAIN, "--steps", str(steps), "--split", str(stage1["split"]), "--init", str(stage1["init"]),
            "--extra-labels", str(stage1["extra"]), "--out", str(out), *HDL, *extra]


def without_seconds(records):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in records]


def test_a_refresh_of_the_stage_1_model_gives_the_labels_of_hdl_embed_and_relabel(stage1, tmp_path):
    trainer = build_trainer(build_parser("train").parse_args(stage2_argv(stage1, tmp_path / "run", 10, "--refresh-every", "5")))
    trainer.continue_from(stage1["init"])
    with np.load(stage1["extra"]) as relabeled:
        wanted = {key: relabeled[key] for key in ("index", "label", "weight")}
    data = trainer.data
    data.replace_extra_labels(wanted["index"][:3], wanted["label"][:3], wanted["weight"][:3])  # seeds are not extras

    record = trainer.labeling.refresh_labels(trainer)

    given = len(data.host.given_targets)
    assert data.num_extra == len(wanted["index"]) > 100
    assert np.array_equal(data.labeled_index[given:].numpy(), wanted["index"])
    assert np.array_equal(data.labeled_targets[given:].numpy(), wanted["label"])
    assert np.array_equal(data.labeled_weights[given:].numpy(), wanted["weight"])
    selection = stage1["relabel"]["selection"]
    for key in ("n_unlabeled", "n_reached", "n_selected", "coverage", "accuracy", "estimated_accuracy",
                "per_class", "per_class_disputed", "per_class_accuracy"):
        assert record[key] == selection[key], key
    assert (record["step"], record["global_step"], record["k"]) == (0, 40, stage1["relabel"]["k"])
    assert len(trainer.labeled_stream.next(2 * len(data.labeled_index)).unique()) == len(data.labeled_index)


def test_refreshes_replace_the_extra_labels_and_metrics_json_records_them(stage1, tmp_path):
    out = tmp_path / "run"
    assert main(stage2_argv(stage1, out, 12, "--refresh-every", "4", "--set", "eval_every=6")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    refreshes = metrics["refreshes"]
    assert [(record["step"], record["global_step"]) for record in refreshes] == [(4, 44), (8, 48)]  # none at the end

    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = checkpoint["refresh"]
    index, label = saved["index"].numpy(), saved["label"].numpy()
    last = refreshes[-1]
    assert metrics["num_extra"] == len(index) == last["n_selected"] == sum(last["per_class"])
    assert len(checkpoint["rng"]["labeled_stream"]["order"]) == 40 + len(index)  # the stream draws from the new labels
    assert np.array_equal(np.bincount(label, minlength=10), last["per_class"])
    truth = load_dataset("digits", tmp_path, False).train_labels
    assert last["accuracy"] == pytest.approx(np.mean(label == truth[index]))
    with np.load(stage1["split"]) as split:
        unlabeled = np.setdiff1d(split["unlabeled_idx"], split["labeled_idx"])
    assert np.isin(index, unlabeled).all() and last["n_unlabeled"] == len(unlabeled)
    for record in refreshes:
        # the confident selection keeps part of what HDL reached, and labels digits far better than chance
        assert record["coverage"] == record["n_selected"] / record["n_unlabeled"]
        assert 0.2 < record["coverage"] < record["n_reached"] / record["n_unlabeled"] and record["accuracy"] > 0.7
        assert record["k"] in (3, 7) and len(record["per_class_disputed"]) == 10 and record["seconds"] > 0
    # the refreshed labels differ from the ones the run started with
    with np.load(stage1["extra"]) as started:
        assert not np.array_equal(started["index"], index) or not np.array_equal(started["label"], label)


def test_a_run_killed_after_a_refresh_resumes_to_the_same_labels_and_metrics(stage1, tmp_path, monkeypatch):
    """Refreshes at steps 3, 6 and 9; the checkpoint of step 4 holds the first; killed before step 8, the
    rerun restores the first refresh's labels and redoes the second."""
    options = ["--refresh-every", "3", "--set", "save_every=4", "--set", "eval_every=2"]
    assert main(stage2_argv(stage1, tmp_path / "uninterrupted", 11, *options)) == 0
    train_interrupted_at(monkeypatch, 7, stage2_argv(stage1, tmp_path / "interrupted", 11, *options))
    saved = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 4 and [record["step"] for record in saved["refresh"]["records"]] == [3]
    assert main(stage2_argv(stage1, tmp_path / "interrupted", 11, *options)) == 0

    resumed, uninterrupted = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("interrupted", "uninterrupted"))
    assert [record["step"] for record in uninterrupted["refreshes"]] == [3, 6, 9]
    assert without_seconds(resumed["refreshes"]) == without_seconds(uninterrupted["refreshes"])
    for key in ("history", "per_class", "top1", "num_extra"):
        assert resumed[key] == uninterrupted[key], key
    labels = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["refresh"] for run in ("interrupted", "uninterrupted")]
    for key in ("index", "label", "weight"):
        assert torch.equal(labels[0][key], labels[1][key]), key


@pytest.mark.parametrize("extra, message", [
    ([], "pass --extra-labels too"),
    (["EXTRA", "--set", "extra_labels_leave_unlabeled=true"], "leave --set extra_labels_leave_unlabeled at false"),
    (["EXTRA", "--refresh-every", "-1"], "must be at least 0"),
])
def test_a_refresh_needs_extra_labels_that_stay_unlabeled(stage1, tmp_path, capsys, extra, message):
    labels = ["--extra-labels", str(stage1["extra"])] if extra[:1] == ["EXTRA"] else []
    argv = ["train", *TRAIN, "--steps", "4", "--split", str(stage1["split"]), "--init", str(stage1["init"]),
            "--out", str(tmp_path / "run"), "--refresh-every", "2", *labels, *extra[1:]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_study_tools_continue_a_stage_1_run_of_before_the_hdl_flags_with_a_refresh(stage1):
    """studies/stage2_runs.py: a stage-1 run that recorded the retired probe_k and probe_confidence still
    continues, with the HDL flags and the refresh it is given."""
    metrics = json.loads((stage1["init"].parent / "metrics.json").read_text())
    metrics["config"]["train"] |= {"probe_k": 0, "probe_confidence": "argmax_agreement"}  # as runs of before recorded
    hdl = {"k": "auto", "k_candidates": [3, 7], "folds": 2, "holdout": 0.2, "wave_rule": "frontier", "vote_weight": "similarity", "labeler": "hdl",
           "max_level": None, "min_agreement": 0.0, "weight": "one", "selection": "confident", "confidence": "distribution_aware",
           "selection_quantile": 0.1, "class_quota": "uniform", "crest_alpha": 3.0, "temperature": 0.3}
    flags = (*shlex.split(workflow.relabel_flags({"hdl": hdl})), "--refresh-every", "100")
    command = stage2_command(metrics, stage1["init"], 10, Path("out"), extra_labels=stage1["extra"], flags=flags)
    config = run_config(build_parser("train").parse_args(command[command.index("train"):]))
    assert (config.refresh_every, config.labeling.k_candidates, config.selection.temperature) == (100, (3, 7), 0.3)
