"""HDL on the EMA model between training steps: the label probe and the label refresh, where a run asks for them.

The probe (``hdl.training.probe``, every ``probe_every`` steps and at the last) scores the
argmax's and HDL's labels; the refresh (``hdl.training.refresh``, every ``--refresh-every``
steps but the last) replaces stage 2's extra labels with HDL's, after which the labeled
stream starts afresh on them, drawn from the cell's seed and the global step (a new order
at each refresh).  Both import faiss: they are imported where a run uses them, so importing
the trainer does not import faiss.
"""

from __future__ import annotations

from typing import Any

from hdl.track import Tracker
from hdl.training.settings import RunConfig
from hdl.training.streams import EpochShuffler, TrainingData, stream_seed


class LabelingBetweenSteps:
    """A run's label probe and label refresh (either may be off), their records and state; the
    ``trainer`` its methods take is the ``hdl.training.loop.Trainer`` that holds it."""

    def __init__(self, config: RunConfig, data: TrainingData, bf16: bool):
        train = config.train
        self.probe = self.refresh = None
        if train.probe_every:
            from hdl.training.probe import LabelProbe

            self.probe = LabelProbe(
                data, config.seed, config.labeling, config.selection, train.probe_samples, train.eval_batch_size, bf16
            )
        if config.refresh_every:
            from hdl.training.refresh import LabelRefresh

            self.refresh = LabelRefresh(
                data, config.refresh_every, config.labeling, config.selection, train.eval_batch_size, bf16
            )
        self.probe_every = train.probe_every
        self.probes: list[dict[str, Any]] = []

    def after_step(self, trainer, tracker: Tracker, done: bool) -> None:
        """Probe and refresh where due after the ``trainer``'s step (``done``: its last), logging to ``tracker``."""
        step = trainer.step
        if self.probe is not None and (step % self.probe_every == 0 or done):
            self.probes.append(self.probe(trainer.ema.model, step, trainer.schedule["start_step"] + step))
            tracker.log(self.probe.tracked_values(self.probes[-1]), step)
        if self.refresh is not None and self.refresh.due(step, trainer.config.steps):
            tracker.log(self.refresh.tracked_values(self.refresh_labels(trainer)), step)

    def refresh_labels(self, trainer) -> dict[str, Any]:
        """HDL's labels on the ``trainer``'s EMA model replace its extra labels, and its labeled stream
        starts afresh on them; the refresh's record."""
        global_step = trainer.schedule["start_step"] + trainer.step
        record = self.refresh(trainer.ema.model, trainer.step, global_step)
        labeled = len(trainer.data.labeled_index)
        trainer.labeled_stream = EpochShuffler(labeled, stream_seed(trainer.config.seed, 0, global_step))
        return record

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``probes`` (its rows) and ``refresh`` (the extra labels of the moment and the records)."""
        return {"probes": self.probes, "refresh": None if self.refresh is None else self.refresh.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Before the labeled stream's state: a refresh may have changed the labeled set it draws from."""
        self.probes = state["probes"]
        if self.refresh is not None:
            self.refresh.load_state_dict(state["refresh"])

