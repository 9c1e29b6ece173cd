"""A run killed with SIGKILL after a checkpoint, or stopped by SLURM's time-limit warning, and rerun ends
exactly as an uninterrupted run (on CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hdl.cli import main
from hdl.ssl import REGISTRY
from hdl.training.averaging import EMA
from hdl.training.loop import Trainer
from hdl.training.stop_signal import EXIT_STATUS, STOP_SIGNAL
from training_fixtures import RESUMED_KEYS, train_interrupted_at

ARGUMENTS = [
    "train", "--dataset", "digits", "--labels", "40", "--seed", "3",
    "--method", "fixmatch", "--arch", "wrn-10-1", "--steps", "60", "--threads", "1", "--no-progress",
    "--set", "batch_size=8", "--set", "uratio=2", "--set", "ema=0.9", "--set", "bn_momentum=0.1",
    "--set", "eval_every=10", "--set", "save_every=10",
]


def run_to_the_end(out):
    # In-process, to save the start-up time of a second and third interpreter.
    assert main([*ARGUMENTS, "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_to_the_end(tmp_path_factory.mktemp("uninterrupted"))


def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "hdl.cli", *ARGUMENTS, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < interrupted_at < 60 and not (killed / "metrics.json").exists()
    assert not [path.name for path in killed.iterdir() if path.name != "checkpoint.pt"]  # no stray temp files

    resumed = run_to_the_end(killed)
    for key in RESUMED_KEYS:
        assert resumed[key] == uninterrupted[key], key
    assert len(resumed["history"]) == 6


def test_stop_signal_mid_step_saves_at_the_step_boundary_and_the_rerun_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys, uninterrupted):
    """SLURM's time-limit warning arrives in step 13, after SGD has moved the weights and before the EMA follows:
    the run finishes that step, saves at step 14 (no save_every multiple) and exits with the retry status."""
    train_step = Trainer.train_step

    def step_signalled_midway(trainer):
        if trainer.step != 13:
            return train_step(trainer)
        with monkeypatch.context() as patch:
            def signal_then_update(decay):
                os.kill(os.getpid(), STOP_SIGNAL)  # its handler runs here, before the EMA update
                EMA.update(trainer.ema, decay)

            patch.setattr(trainer.ema, "update", signal_then_update)
            return train_step(trainer)

    stopped = tmp_path / "stopped"
    disposition = signal.getsignal(STOP_SIGNAL)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", step_signalled_midway)
        assert main([*ARGUMENTS, "--out", str(stopped)]) == EXIT_STATUS
    assert signal.getsignal(STOP_SIGNAL) == disposition  # hdl train handed the signal back
    assert f"saved {stopped / 'checkpoint.pt'} at step 14 of 60" in capsys.readouterr().err
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["step"] == 14
    assert not (stopped / "metrics.json").exists()

    resumed = run_to_the_end(stopped)
    assert f"resuming from {stopped / 'checkpoint.pt'} at step 14 of 60" in capsys.readouterr().out
    for key in RESUMED_KEYS:
        assert resumed[key] == uninterrupted[key], key


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_resumes_exactly(tmp_path, monkeypatch, method):
    """In-process interruption after the step-10 checkpoint: the method's own state must be in the checkpoint."""
    arguments = [
        "train", "--dataset", "digits", "--labels", "20", "--seed", "1", "--method", method, "--arch", "wrn-10-1",
        "--steps", "20", "--threads", "1", "--no-progress", "--set", "batch_size=4", "--set", "uratio=1",
        "--set", "eval_every=5", "--set", "save_every=10",
    ]
    assert main([*arguments, "--out", str(tmp_path / "uninterrupted")]) == 0
    train_interrupted_at(monkeypatch, 13, [*arguments, "--out", str(tmp_path / "interrupted")])
    assert torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)["step"] == 10
    assert main([*arguments, "--out", str(tmp_path / "interrupted")]) == 0
    resumed, uninterrupted = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("interrupted", "uninterrupted"))
    assert resumed["history"] == uninterrupted["history"] and resumed["per_class"] == uninterrupted["per_class"]
