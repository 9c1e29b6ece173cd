"""Stage-2 runs from finished stage-1 checkpoints, for the study scripts that compare stage-2 rules
(compare_stage2_lr.py, tune_selection.py): finding the stage-1 runs, the `hdl train` command that
continues one with the run's own settings, and running it once (a finished run is read back).

The runs use whichever ``hdl`` package the interpreter imports (set PYTHONPATH to measure a checkout
other than the installed one: checkpoints only load into the code that wrote them).
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

CELL_KEYS = ("dataset", "labels", "imbalance", "method", "seed")
#: trainer settings of stage-1 runs written before `hdl train` took `hdl relabel`'s flags, which now set
#: what these did (the label probe's k and confidence): a stage 2 continuing such a run leaves them out
RETIRED_TRAIN_KEYS = ("probe_k", "probe_confidence")


def stage1_runs(runs: str | Path, patterns: list[str]) -> Iterator[tuple[Path, Path, dict]]:
    """(cell folder relative to ``runs``, cell folder, stage-1 metrics) of every finished stage-1 run
    whose cell folder matches one of the globs ``patterns``."""
    for metrics_path in sorted(Path(runs).rglob("stage1/metrics.json")):
        cell_dir = metrics_path.parent.parent
        cell = cell_dir.relative_to(runs)
        if any(fnmatch.fnmatch(str(cell), pattern) for pattern in patterns):
            yield cell, cell_dir, json.loads(metrics_path.read_text())


def cell_of(stage1_metrics: dict) -> dict:
    return {key: stage1_metrics[key] for key in CELL_KEYS}


def stage2_command(stage1_metrics: dict, checkpoint: Path, steps: int, out: Path, settings: dict | None = None,
                   extra_labels: Path | None = None, flags: tuple[str, ...] = ()) -> list[str]:
    """`hdl train --init CHECKPOINT` for ``steps`` steps with the stage-1 run's own settings,
    ``settings`` replacing some of them, the stage-2 labels ``extra_labels`` if given, and ``flags``
    last: `hdl relabel`'s HDL and selection flags (``hdl.workflow.relabel_flags``), which the label
    probe and ``--refresh-every E`` label with."""
    config = stage1_metrics["config"]
    command = [
        sys.executable, "-m", "hdl.cli", "train", "--dataset", config["dataset"], "--labels", str(config["labels"]),
        "--imbalance", str(config["imbalance"]), "--seed", str(config["seed"]), "--method", config["method"],
        "--arch", config["arch"], "--steps", str(steps), "--init", str(checkpoint), "--out", str(out),
        "--threads", "1", "--no-progress",
    ]
    if config["split"]:
        command += ["--split", config["split"]]
    if extra_labels is not None:
        command += ["--extra-labels", str(extra_labels)]
    train = {key: value for key, value in config["train"].items() if key not in RETIRED_TRAIN_KEYS}
    for key, value in {**train, **config["method_config"], **(settings or {})}.items():
        command += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return command + list(flags)


def run(command: list[str], out: Path) -> dict:
    """The run's metrics.json, running ``command`` first unless it is there (logged to out/train.log)."""
    if not (out / "metrics.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.log", "w") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads((out / "metrics.json").read_text())
