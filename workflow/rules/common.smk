# The grid (one cell per dataset x labels x imbalance x method x seed), the path patterns of
# hdl.layout and the small functions that turn the config into `hdl` flags and job resources.
import os
import sys
from pathlib import Path

from hdl import layout

# Jobs find the `hdl` command of the Python that runs Snakemake (`.venv/bin/snakemake` works
# without activating .venv); with --use-conda, the rule's environment comes first.
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

CELLS = hdl.workflow.grid_table(config)
ROUNDS = config["hdl"]["rounds"]
# every rule runs the hdl package; `--use-conda` builds this environment for them
HDL_ENV = "../../environment.yml"

# Path patterns: hdl.layout's paths with Snakemake wildcards for the coordinates.
W = layout.WILDCARDS
SPLIT = layout.split_file(W)  # results/splits/dataset~D/labels~N/imbalance~IF/seed~S.npz
STAGE1 = layout.stage1_dir(W)  # results/runs/dataset~D/labels~N/imbalance~IF/method~M/seed~S/stage1
ROUND = layout.round_dir(W)  # .../seed~S/round~R
STAGE2 = layout.stage2_dir(W)  # .../seed~S/round~R/variant~V


wildcard_constraints:
    dataset="[a-z0-9_]+",
    labels="[0-9]+",
    imbalance=r"[0-9]+(\.[0-9]+)?",
    method="[a-z0-9_]+",
    seed="[0-9]+",
    round="[1-9][0-9]*",
    variant="|".join(layout.VARIANTS),


def for_every_cell(path_pattern, **values):
    """``path_pattern`` for every cell of the grid (and the given round, variant)."""
    return [path_pattern.format(**cell, **values) for cell in CELLS.to_dict("records")]


def runtime_minutes(job_kind):
    return lambda wildcards, attempt: config["resources"][job_kind]["runtime"] * attempt


def mem_mb(job_kind):
    return lambda wildcards, attempt: config["resources"][job_kind]["mem_mb"]


def stage2_inputs(wildcards):
    """Round R of a variant continues the run of round R-1 (stage 1 for R = 1); HDL adds the pseudo-labels."""
    inputs = {
        "split": layout.split_file(wildcards),
        "start": f"{layout.start_dir(wildcards)}/{layout.METRICS}",
    }
    if wildcards.variant == "hdl":
        inputs["extra_labels"] = f"{layout.round_dir(wildcards)}/{layout.EXTRA_LABELS}"
    return inputs


def checkpoint_of(metrics_path):
    """The checkpoint a finished run left next to its metrics.json."""
    return Path(metrics_path).with_name(layout.CHECKPOINT)
