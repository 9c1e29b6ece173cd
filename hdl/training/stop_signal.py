"""Stopping a training run cleanly before a SLURM time limit.

The train rules ask SLURM for ``STOP_SIGNAL`` a margin before the job's time limit
(``resources.time_limit_margin_s``, ``hdl.workflow.time_limit_warning``).
``hdl train`` catches it with ``stop_on_signal``, whose handler only records it: the
loop looks between steps, saves a checkpoint at the next step boundary and raises
``TrainingStopped``; ``hdl train`` then exits with ``EXIT_STATUS``.  Snakemake counts
that as a failed job and retries it, and the retry resumes from the checkpoint.

No torch here: the Snakefile imports this module (``hdl.workflow``) to keep the
signal from killing the Snakemake processes of a job.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Iterator

STOP_SIGNAL = signal.SIGUSR1
#: EX_TEMPFAIL of sysexits.h: a temporary failure, worth retrying
EXIT_STATUS = 75


class StopRequest:
    """Whether ``STOP_SIGNAL`` has arrived; only ever set by its handler."""

    def __init__(self) -> None:
        self.received = False

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True


@contextlib.contextmanager
def stop_on_signal() -> Iterator[StopRequest]:
    """Record ``STOP_SIGNAL`` instead of dying of it (or ignoring it, as a Snakemake job's parent makes it do)."""
    request = StopRequest()
    previous = signal.signal(STOP_SIGNAL, request._handle)
    try:
        yield request
    finally:
        signal.signal(STOP_SIGNAL, previous)


class TrainingStopped(Exception):
    """The run saved its checkpoint at ``step`` on ``STOP_SIGNAL`` and stopped before its last step."""

    def __init__(self, step: int, steps: int, checkpoint: Path):
        self.step, self.steps, self.checkpoint = step, steps, checkpoint
        super().__init__(
            f"{signal.Signals(STOP_SIGNAL).name} (a SLURM time-limit warning): saved {checkpoint} at step {step} of "
            f"{steps} and stopped; exit status {EXIT_STATUS}. Running the same command again resumes from there."
        )
