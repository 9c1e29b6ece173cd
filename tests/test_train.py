import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hdl.cli import build_parser, main
from hdl.data import load_dataset
from hdl.errors import UserError
from hdl.labeling.pipeline import LabelingOptions, SelectionOptions
from hdl.nets import build_net
from hdl.training.train_cli import run_config
from hdl.ssl import REGISTRY
from hdl.ssl.fixmatch import FixMatch
from hdl.ssl.supervised import Supervised
from hdl.training.averaging import EMA
from hdl.training.checkpoint import rng_states, set_rng_states
from hdl.training.inference import MixedPrecision, accuracy_metrics
from hdl.training.optim import cosine_lr, make_optimizer
from hdl.training.settings import TrainConfig, resolve_settings
from hdl.training.streams import EpochShuffler, TrainingData
from ssl_fixtures import StandInViews

TINY = [
    "--dataset", "digits", "--labels", "40", "--seed", "0", "--arch", "wrn-10-1", "--threads", "1", "--no-progress",
    "--set", "batch_size=16", "--set", "uratio=2", "--set", "ema=0.9", "--set", "bn_momentum=0.1",
]


def train(out, method="supervised", steps=60, *extra):
    return main(["train", *TINY, "--method", method, "--steps", str(steps), "--out", str(out), *extra])


# ---------------------------------------------------------------- configuration


def test_set_values_are_typed_like_the_defaults():
    train_settings, method_settings = resolve_settings(
        "fixmatch", ["lr=0.1", "batch_size=32", "nesterov=false", "threshold=0.9", "uratio=3"]
    )
    assert train_settings.lr == 0.1 and train_settings.batch_size == 32 and train_settings.nesterov is False
    assert train_settings.uratio == 3 and method_settings == FixMatch.Config(threshold=0.9, lambda_u=1.0)


def test_uratio_defaults_to_the_methods_own():
    assert resolve_settings("fixmatch", [])[0].uratio == 7
    assert resolve_settings("supervised", [])[0].uratio == 0


@pytest.mark.parametrize("assignment, message", [
    ("lr", "expected key=value"), ("momentum_x=1", "threshold, lambda_u"), ("batch_size=0.5", "int"), ("nesterov=maybe", "bool"),
    ("eval_every=0", "at least 1"), ("ema=1.5", "ema in"),
])
def test_bad_assignments_name_the_key_and_the_valid_ones(assignment, message):
    with pytest.raises(UserError, match=message):
        resolve_settings("fixmatch", [assignment])


def test_run_config_travels_typed_and_is_kept_as_plain_dicts():
    args = build_parser("train").parse_args(
        ["train", *TINY, "--method", "fixmatch", "--steps", "5", "--out", "unused", "--set", "threshold=0.9",
         "--k-candidates", "3", "7", "--confidence", "knn_margin"]
    )
    config = run_config(args)
    assert config.train == TrainConfig(batch_size=16, uratio=2, ema=0.9, bn_momentum=0.1)
    assert config.method_config == FixMatch.Config(threshold=0.9)
    assert config.labeling == LabelingOptions(k_candidates=(3, 7), seed=0)  # HDL's seed is the run's
    assert config.selection == SelectionOptions(confidence="knn_margin") and config.refresh_every == 0
    plain = config.as_dict()  # the form checkpoints and metrics.json keep
    assert list(plain) == [
        "dataset", "labels", "imbalance", "seed", "method", "arch", "steps", "split", "init", "extra_labels", "train",
        "method_config", "labeling", "selection", "refresh_every",
    ]
    assert plain["train"]["batch_size"] == 16 and plain["method_config"] == {"threshold": 0.9, "lambda_u": 1.0}
    assert plain["labeling"]["k_candidates"] == [3, 7]
    assert json.loads(json.dumps(plain)) == plain  # the same after metrics.json's round trip: lists, not tuples


# ---------------------------------------------------------------- pieces of the loop


def test_cosine_schedule_is_fixmatchs():
    assert cosine_lr(0.03, 0, 100) == 0.03
    assert cosine_lr(0.03, 50, 100) == pytest.approx(0.03 * math.cos(7 * math.pi / 32))
    assert cosine_lr(0.03, 100, 100) == pytest.approx(0.03 * math.cos(7 * math.pi / 16))


def test_weight_decay_skips_biases_and_batchnorm():
    model = build_net("wrn-10-1", 10, 1)
    optimizer = make_optimizer(list(model.parameters()), TrainConfig())
    decayed, undecayed = optimizer.param_groups
    assert decayed["weight_decay"] == 5e-4 and undecayed["weight_decay"] == 0.0
    assert {id(p) for p in undecayed["params"]} == {
        id(p) for name, p in model.named_parameters() if name.endswith("bias") or p.ndim == 1
    }
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9


def test_ema_averages_parameters_and_copies_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update()
    for averaged, old, new in zip(ema.model.parameters(), before, model.parameters()):
        assert torch.allclose(averaged, 0.9 * old + 0.1 * new)
    assert torch.equal(ema.model[1].running_mean, torch.full((2,), 3.0))


def test_mixed_precision_runs_the_network_in_bf16_and_returns_float32():
    torch.manual_seed(0)
    model = build_net("wrn-10-1", 10, 1).eval()
    images = torch.randn(4, 1, 8, 8)
    logits, features = MixedPrecision(model, enabled=True)(images)
    reference, _ = model(images)
    assert logits.dtype == features.dtype == torch.float32
    assert torch.allclose(logits, reference, atol=0.1) and not torch.equal(logits, reference)
    assert torch.equal(MixedPrecision(model, enabled=False)(images)[0], reference)


def test_epoch_shuffler_visits_every_sample_once_per_pass_and_resumes():
    stream = EpochShuffler(10, seed=1)
    first_pass = torch.cat([stream.next(4), stream.next(4), stream.next(2)])
    assert sorted(first_pass.tolist()) == list(range(10))
    stream.next(3)
    saved = {key: value.clone() if torch.is_tensor(value) else value for key, value in stream.state_dict().items()}
    expected = torch.cat([stream.next(7) for _ in range(3)])
    resumed = EpochShuffler(10, seed=99)
    resumed.load_state_dict(saved)
    assert torch.equal(torch.cat([resumed.next(7) for _ in range(3)]), expected)
    # a run whose label refresh changed its labeled set resumes into a stream made for the set it started with
    other_size = EpochShuffler(13, seed=99)
    other_size.load_state_dict(saved)
    assert torch.equal(torch.cat([other_size.next(7) for _ in range(3)]), expected)


def test_rng_states_round_trip():
    import random

    states = rng_states()
    draws = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_states(states)
    assert random.random() == draws[0] and np.random.rand() == draws[1] and torch.equal(torch.rand(3), draws[2])


def test_accuracy_metrics_per_class_and_balanced():
    labels = torch.tensor([0, 0, 0, 1])
    metrics = accuracy_metrics(torch.tensor([0, 0, 1, 0]), labels, num_classes=3)
    assert metrics["top1"] == 0.5
    assert metrics["per_class"] == pytest.approx([2 / 3, 0.0, 0.0])
    assert metrics["balanced_acc"] == pytest.approx(2 / 9)


def test_extra_labels_join_the_labeled_stream_and_leave_the_unlabeled_one_only_when_asked():
    dataset = load_dataset("digits")
    extra = (np.array([5, 7]), np.array([3, 4]), np.array([1.0, 0.25], dtype=np.float32))
    data = TrainingData.build(dataset, np.array([0, 1]), np.arange(2, 10), StandInViews(), torch.device("cpu"), extra)
    assert data.labeled_index.tolist() == [0, 1, 5, 7]
    assert data.labeled_targets.tolist() == [*dataset.train_labels[[0, 1]].tolist(), 3, 4]
    assert data.labeled_weights.tolist() == [1.0, 1.0, 1.0, 0.25]
    assert data.unlabeled_index.tolist() == list(range(2, 10))
    leaving = TrainingData.build(
        dataset, np.array([0, 1]), np.arange(2, 10), StandInViews(), torch.device("cpu"), extra, extra_leave_unlabeled=True
    )
    assert leaving.unlabeled_index.tolist() == [2, 3, 4, 6, 8, 9]
    with pytest.raises(UserError, match="labeled samples of the split"):
        TrainingData.build(dataset, np.array([0, 5]), np.arange(2, 10), StandInViews(), torch.device("cpu"), extra)


# ---------------------------------------------------------------- the command line, end to end


@pytest.mark.parametrize("method", ["supervised", "fixmatch"])
def test_train_then_embed_on_digits(tmp_path, method):
    assert train(tmp_path / "run", method, 60, "--set", "eval_every=20") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["top1"] > 0.35  # chance is 0.1
    assert [row["step"] for row in metrics["history"]] == [20, 40, 60]
    assert metrics["best_top1"] == max(row["top1"] for row in metrics["history"])
    assert metrics["median_last20_top1"] == sorted(row["top1"] for row in metrics["history"])[1]
    assert len(metrics["per_class"]) == 10 and (metrics["method"], metrics["arch"], metrics["steps"]) == (method, "wrn-10-1", 60)
    assert (metrics["num_labeled"], metrics["num_extra"]) == (40, 0)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 60 and checkpoint["config"] == metrics["config"]

    main(["split", "--dataset", "digits", "--labels", "40", "--seed", "0", "--out", str(tmp_path / "split.npz")])
    out = tmp_path / "embeddings.npz"
    assert main(["embed", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--dataset", "digits",
                 "--split", str(tmp_path / "split.npz"), "--out", str(out), "--threads", "1"]) == 0
    with np.load(out) as embedded:
        index, labels, truth = embedded["index"], embedded["labels"], embedded["truth"]
        assert embedded["embeddings"].shape == (len(index), 64) and embedded["embeddings"].dtype == np.float32
        assert np.allclose(np.linalg.norm(embedded["embeddings"], axis=1), 1, atol=1e-5)
        assert np.allclose(embedded["probs"].sum(1), 1, atol=1e-5)
        assert (embedded["probs"].argmax(1) == truth).mean() > 0.35
    assert np.all(np.diff(index) > 0) and (labels >= 0).sum() == 40
    assert np.array_equal(labels[labels >= 0], truth[labels >= 0])


def test_embed_reads_checkpoints_without_the_training_loop(tmp_path):
    script = (
        "import sys\n"
        "from hdl.cli import main\n"
        f"code = main(['embed', '--checkpoint', {str(tmp_path / 'missing.pt')!r}, '--dataset', 'digits',"
        f" '--split', {str(tmp_path / 'missing.npz')!r}, '--out', {str(tmp_path / 'out.npz')!r}, '--device', 'cpu'])\n"
        "print(code, 'hdl.files' in sys.modules, 'hdl.training.loop' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert f"--checkpoint {tmp_path / 'missing.pt'}: no such file" in result.stderr
    assert result.stdout.split() == ["2", "True", "False"]  # embed got as far as loading, without the loop


def test_finished_run_is_a_no_op_and_a_changed_command_is_refused(tmp_path, capsys):
    assert train(tmp_path, "supervised", 10) == 0
    written = (tmp_path / "metrics.json").read_text()
    (tmp_path / "metrics.json").touch()
    assert train(tmp_path, "supervised", 10) == 0
    assert (tmp_path / "metrics.json").read_text() == written
    assert train(tmp_path, "supervised", 20, "--set", "lr=0.1") == 2
    error = capsys.readouterr().err
    assert "steps (10 in the checkpoint, 20 now)" in error and "train.lr" in error


def test_extra_labels_file_feeds_the_run(tmp_path):
    extra = tmp_path / "extra.npz"
    np.savez(extra, index=np.array([1000, 1001, 1002]), label=np.array([1, 2, 3]))
    assert train(tmp_path / "run", "fixmatch", 2, "--extra-labels", str(extra)) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["num_labeled"], metrics["num_extra"]) == (40, 3)
    assert train(tmp_path / "leave", "fixmatch", 2, "--extra-labels", str(extra), "--set", "extra_labels_leave_unlabeled=true") == 0
    leaving = json.loads((tmp_path / "leave" / "metrics.json").read_text())
    assert leaving["num_unlabeled"] == metrics["num_unlabeled"] - 3
    np.savez(extra, index=np.array([1000]), label=np.array([10]))
    assert train(tmp_path / "bad", "fixmatch", 2, "--extra-labels", str(extra)) == 2


class NanAtStepThree(Supervised):
    name = "nan_at_step_three"

    def training_step(self, model, batch, context):
        loss, logs = super().training_step(model, batch, context)
        return (loss * math.nan if context.step == 2 else loss), logs


def test_a_non_finite_loss_stops_the_run_with_its_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, NanAtStepThree.name, NanAtStepThree)
    assert train(tmp_path, NanAtStepThree.name, 10, "--set", "save_every=1") == 2
    assert "NaN or infinite at step 3" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (tmp_path / "metrics.json").exists()
