"""Stage 2 (`hdl train --init`) continues the method: state, clock, optimiser and LR carry over."""

import json

import pytest
import torch

from hdl.cli import build_parser, main
from hdl.training.averaging import warmed_up_decay
from training_fixtures import train_interrupted_at
from hdl.training.optim import cosine_lr, stage2_learning_rate
from hdl.training.train_cli import build_trainer

TINY = [
    "--dataset", "digits", "--labels", "40", "--seed", "0", "--arch", "wrn-10-1", "--threads", "1", "--no-progress",
    "--set", "batch_size=8", "--set", "uratio=1",
]
STAGE1_STEPS = 12


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """``stage1(method, *extra)``: the checkpoint of a stage-1 run, trained once per module; the tests only read it."""
    checkpoints = {}

    def checkpoint(method, *extra):
        if (method, extra) not in checkpoints:
            out = tmp_path_factory.mktemp("stage1")
            assert main(["train", *TINY, "--method", method, "--steps", str(STAGE1_STEPS), "--out", str(out), *extra]) == 0
            checkpoints[method, extra] = out / "checkpoint.pt"
        return checkpoints[method, extra]

    return checkpoint


def stage2_args(tmp_path, method, init, steps=3, *extra):
    argv = ["train", *TINY, "--method", method, "--steps", str(steps), "--init", str(init),
            "--out", str(tmp_path / "stage2"), "--set", "eval_every=1", "--set", "log_every=1", *extra]
    return build_parser("train").parse_args(argv), argv


def continued_trainer(tmp_path, method, init, *extra):
    args, _ = stage2_args(tmp_path, method, init, 3, *extra)
    trainer = build_trainer(args)
    trainer.continue_from(init)
    return trainer


def test_freematch_thresholds_carry_over(tmp_path, stage1):
    init = stage1("freematch", "--set", "uratio=2")
    saved = torch.load(init, weights_only=True)
    trainer = continued_trainer(tmp_path, "freematch", init)
    for name in ("time_p", "p_model", "label_hist"):
        assert torch.equal(trainer.algorithm.state_dict()[name], saved["algorithm"][name])
    assert saved["algorithm"]["time_p"].item() != pytest.approx(1 / 10)  # stage 1 moved tau off its start

    _, argv = stage2_args(tmp_path, "freematch", init)
    assert main(argv) == 0
    history = json.loads((tmp_path / "stage2" / "metrics.json").read_text())["history"]
    # one more update of an average with momentum 0.999 moves tau by at most 0.001
    assert history[0]["tau"] == pytest.approx(saved["algorithm"]["time_p"].item(), abs=1e-3)


def test_remixmatch_alignment_buffers_and_rotation_head_carry_over(tmp_path, stage1):
    init = stage1("remixmatch", "--set", "num_strong=1")
    saved = torch.load(init, weights_only=True)
    trainer = continued_trainer(tmp_path, "remixmatch", init, "--set", "num_strong=1")
    for name in ("recent_predictions", "rotation_head.weight", "rotation_head.bias"):
        assert torch.equal(trainer.algorithm.state_dict()[name], saved["algorithm"][name])


def test_model_ema_and_optimizer_momentum_carry_over(tmp_path, stage1):
    init = stage1("fixmatch")
    saved = torch.load(init, weights_only=True)
    trainer = continued_trainer(tmp_path, "fixmatch", init)
    assert torch.equal(trainer.model.state_dict()["classifier.weight"], saved["model"]["classifier.weight"])
    assert torch.equal(trainer.ema.model.state_dict()["classifier.weight"], saved["ema_model"]["classifier.weight"])
    momentum = trainer.optimizer.state_dict()["state"]
    assert momentum and all(
        torch.equal(momentum[key]["momentum_buffer"], saved["optimizer"]["state"][key]["momentum_buffer"]) for key in momentum
    )
    assert trainer.schedule["start_step"] == STAGE1_STEPS and trainer.step == 0


def test_mixmatch_unlabeled_weight_is_full_from_the_first_step(tmp_path, stage1):
    init = stage1("mixmatch")  # ramp-up over 0.4 of 12 steps: finished in stage 1
    _, argv = stage2_args(tmp_path, "mixmatch", init)
    assert main(argv) == 0
    history = json.loads((tmp_path / "stage2" / "metrics.json").read_text())["history"]
    assert [row["weight_u"] for row in history] == [75.0, 75.0, 75.0]


@pytest.mark.parametrize("rule", ["hold", "anneal", "restart"])
def test_stage2_learning_rate(tmp_path, rule, stage1):
    init = stage1("supervised")
    last_stage1_lr = cosine_lr(0.03, STAGE1_STEPS - 1, STAGE1_STEPS)
    assert torch.load(init, weights_only=True)["last_lr"] == pytest.approx(last_stage1_lr)
    _, argv = stage2_args(tmp_path, "supervised", init, 3, "--set", f"stage2_lr={rule}")
    assert main(argv) == 0
    used = [row["lr"] for row in json.loads((tmp_path / "stage2" / "metrics.json").read_text())["history"]]
    start = 0.03 if rule == "restart" else last_stage1_lr
    expected = [start] * 3 if rule == "hold" else [cosine_lr(start, step, 3) for step in range(3)]
    assert used == pytest.approx(expected)
    assert stage2_learning_rate(rule, 0.03, last_stage1_lr, 0, 3) == pytest.approx(start)


def test_stage2_must_continue_the_same_method(tmp_path, capsys, stage1):
    init = stage1("supervised")
    _, argv = stage2_args(tmp_path, "fixmatch", init)
    assert main(argv) == 2
    assert "continues the same method" in capsys.readouterr().err
    _, argv = stage2_args(tmp_path, "supervised", init, 1, "--arch", "wrn-10-2")
    assert main(argv) == 2
    assert "does not fit --arch wrn-10-2" in capsys.readouterr().err


def test_both_variants_draw_the_same_new_streams(tmp_path, stage1):
    init = stage1("fixmatch")
    first = continued_trainer(tmp_path, "fixmatch", init)
    second = continued_trainer(tmp_path, "fixmatch", init)
    assert torch.equal(first.unlabeled_stream.next(16), second.unlabeled_stream.next(16))
    fresh = build_trainer(stage2_args(tmp_path, "fixmatch", init)[0])  # stage 1's own streams
    assert not torch.equal(fresh.unlabeled_stream.order, second.unlabeled_stream.order)


def test_warmed_up_averages_start_fast_and_reach_the_published_values():
    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.999, 300) == pytest.approx(301 / 310)
    assert warmed_up_decay(0.999, 2**20) == 0.999
    assert 1 - warmed_up_decay(1.0, 2**20) < 0.001  # BatchNorm momentum back at its published 0.001


def test_an_interrupted_stage2_resumes_exactly(tmp_path, monkeypatch, stage1):
    init = stage1("freematch", "--set", "uratio=2")
    _, argv = stage2_args(tmp_path, "freematch", init, 6, "--set", "save_every=3", "--set", "stage2_lr=anneal")
    uninterrupted_argv = [*argv, "--out", str(tmp_path / "uninterrupted")]  # the last --out wins
    assert main(uninterrupted_argv) == 0
    train_interrupted_at(monkeypatch, 4, argv)
    assert main(argv) == 0
    resumed, uninterrupted = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("stage2", "uninterrupted"))
    assert resumed["history"] == uninterrupted["history"] and len(resumed["history"]) == 6
