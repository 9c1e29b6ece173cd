"""Helpers for training tests."""

from collections.abc import Callable

import pytest

from hdl.cli import main
from hdl.training.loop import Trainer

#: what a resumed run's metrics.json must share with an uninterrupted run's (all but its wall time)
RESUMED_KEYS = ("top1", "balanced_acc", "per_class", "best_top1", "median_last20_top1", "steps", "history", "config")


class Interrupted(Exception):
    pass


def interrupted_at(monkeypatch, step: int, run: Callable[[], object]) -> None:
    """Call ``run`` (a training run) and stop it, as a kill would, when its trainer is about to take ``step``."""
    train_step = Trainer.train_step

    def interrupt(trainer):
        if trainer.step == step:
            raise Interrupted
        return train_step(trainer)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", interrupt)
        with pytest.raises(Interrupted):
            run()


def train_interrupted_at(monkeypatch, step: int, argv: list[str]) -> None:
    """Run `hdl <argv>` in-process and stop it, as a kill would, when the trainer is about to take ``step``."""
    interrupted_at(monkeypatch, step, lambda: main(argv))
