"""Experiment tracking with wandb: ``offline`` (files only), ``online`` or ``disabled``.

wandb is imported only when tracking is on, so tests and ``disabled`` runs
never pay for it.  Its files go under the run's output folder; the run id is
kept in the checkpoint so that a resumed run continues the same wandb run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("offline", "online", "disabled")


@dataclass
class TrackingOptions:
    mode: str = "disabled"
    project: str = "hdl"
    group: str | None = None
    name: str | None = None


class Tracker:
    def __init__(self, options: TrackingOptions, out_dir: str | Path, config: dict, run_id: str | None = None):
        if options.mode not in MODES:
            from hdl.errors import UserError

            raise UserError(f"wandb mode {options.mode!r} is not one of {', '.join(MODES)}")
        self.run = None
        if options.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=options.project,
            group=options.group,
            name=options.name,
            config=config,
            dir=str(out_dir),
            mode=options.mode,
            id=run_id,
            resume="allow",
        )

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(summary)
            self.run.finish()
