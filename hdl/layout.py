"""Where every file of the workflow lives: the one definition of the results/ tree.

::

    results/grid.csv                                        the cells the tables must show
    results/splits/dataset~D/labels~N/imbalance~IF/seed~S.npz
    results/runs/dataset~D/labels~N/imbalance~IF/method~M/seed~S/   one cell
        stage1/metrics.json, stage1/checkpoint.pt           the base method alone
        round~R/embed.npz                                   embeddings stage 2 of round R labels from
        round~R/relabel.npz, relabel.json, extra_labels.npz HDL's pseudo-labels, report, stage-2 labels
        round~R/variant~V/metrics.json, checkpoint.pt       stage 2: V is hdl or baseline
    results/logs/...                                        one log per job, mirroring the runs
    results/tables/, results/plots/                         `hdl aggregate`

The Snakemake rules, the workflow helpers (``hdl.workflow``) and the report
collector (``hdl.report.collect``) all build and read paths here.  Every
function takes a mapping of coordinates (``dataset``, ``labels``, ...);
passing :data:`WILDCARDS` gives the Snakemake pattern of the same path.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Mapping

#: coordinates of a data setting, a cell (one training run of the grid), a split and a run inside a cell
SETTING = ("dataset", "labels", "imbalance")
CELL = SETTING + ("method", "seed")
SPLIT = SETTING + ("seed",)
RUN = CELL + ("round", "variant")
#: stage-2 variants: with HDL's pseudo-labels, and the paired baseline without them
VARIANTS = ("hdl", "baseline")
#: how a stage-1 run reads in RUN coordinates (its folder has no round or variant)
STAGE1 = "stage1"
STAGE1_ROUND = 0

RESULTS = "results"
RUNS = f"{RESULTS}/runs"
SPLITS = f"{RESULTS}/splits"
LOGS = f"{RESULTS}/logs"
GRID = f"{RESULTS}/grid.csv"
TABLES = f"{RESULTS}/tables"
PLOTS = f"{RESULTS}/plots"

METRICS = "metrics.json"  # written once a training run has finished
CHECKPOINT = "checkpoint.pt"  # saved during training; a rerun resumes from it
EMBED = "embed.npz"
RELABEL = "relabel.npz"
RELABEL_REPORT = "relabel.json"
EXTRA_LABELS = "extra_labels.npz"

#: Snakemake wildcards for every coordinate: ``cell_dir(WILDCARDS)`` is the rules' cell pattern
WILDCARDS = {name: f"{{{name}}}" for name in RUN}

SEPARATOR = "~"


def segments(columns: tuple[str, ...], values: Mapping[str, Any]) -> str:
    """``dataset~D/labels~N/...`` for ``columns``, in that order."""
    return "/".join(f"{column}{SEPARATOR}{values[column]}" for column in columns)


def cell_dir(values: Mapping[str, Any]) -> str:
    return f"{RUNS}/{segments(CELL, values)}"


def split_file(values: Mapping[str, Any]) -> str:
    return f"{SPLITS}/{segments(SPLIT, values)}.npz"


def stage1_dir(values: Mapping[str, Any]) -> str:
    return f"{cell_dir(values)}/{STAGE1}"


def round_name(round_number: Any) -> str:
    return f"round{SEPARATOR}{round_number}"


def round_dir(values: Mapping[str, Any]) -> str:
    """Embeddings and HDL's labels of round ``values['round']``."""
    return f"{cell_dir(values)}/{round_name(values['round'])}"


def stage2_name(round_number: Any, variant: str) -> str:
    return f"{round_name(round_number)}/variant{SEPARATOR}{variant}"


def stage2_dir(values: Mapping[str, Any]) -> str:
    return f"{cell_dir(values)}/{stage2_name(values['round'], values['variant'])}"


def start_dir(values: Mapping[str, Any]) -> str:
    """The run whose checkpoint stage 2 of ``values['round']``, variant ``values['variant']``, continues.

    Round 1 starts both variants from stage 1: the paired comparison.  Round
    R > 1 continues round R-1 of the same variant; embeddings of round R come
    from round R-1's HDL model (``start_dir`` with variant hdl).
    """
    round_number = int(values["round"])
    if round_number == 1:
        return stage1_dir(values)
    return f"{cell_dir(values)}/{stage2_name(round_number - 1, values['variant'])}"


def split_log(values: Mapping[str, Any]) -> str:
    return f"{LOGS}/split/{segments(SPLIT, values)}.log"


def stage1_log(values: Mapping[str, Any]) -> str:
    return f"{LOGS}/{segments(CELL, values)}/{STAGE1}.log"


def stage2_log(values: Mapping[str, Any]) -> str:
    return f"{LOGS}/{segments(CELL, values)}/{stage2_name(values['round'], values['variant'])}.log"


def round_log(values: Mapping[str, Any], job: str) -> str:
    """Log of a per-round job (embed, relabel) of one cell."""
    return f"{LOGS}/{segments(CELL, values)}/{round_name(values['round'])}/{job}.log"


def job_log(job: str) -> str:
    """Log of a job that covers the whole grid (write_grid, aggregate)."""
    return f"{LOGS}/{job}.log"


def parse_run_dir(relative_dir: str | PurePath) -> dict[str, str | int | None] | None:
    """RUN coordinates (as strings) of a folder relative to :data:`RUNS`, or None if it is no run folder.

    ``.../seed~S/stage1`` reads as round :data:`STAGE1_ROUND`, variant
    :data:`STAGE1`; ``.../seed~S/round~R`` (embeddings, HDL labels) has
    variant None; ``.../round~R/variant~V`` is a stage-2 run.
    """
    fields: dict[str, str | int | None] = {"round": None, "variant": None}
    for part in PurePath(relative_dir).parts:
        if part == STAGE1:
            fields.update(round=STAGE1_ROUND, variant=STAGE1)
        elif SEPARATOR in part:
            key, value = part.split(SEPARATOR, 1)
            fields[key] = value
    if any(key not in fields for key in CELL) or fields["round"] is None:
        return None
    return {key: fields[key] for key in RUN}
