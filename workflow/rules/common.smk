# The grid (one cell per dataset x labels x imbalance x method x seed), the paths of a cell and
# the small functions that turn the config into `hdl` flags and job resources.
import os
import sys
from pathlib import Path

from snakemake.utils import Paramspace

# Jobs find the `hdl` command of the Python that runs Snakemake (`.venv/bin/snakemake` works
# without activating .venv); with --use-conda, the rule's environment comes first.
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

CELLS = Paramspace(hdl.workflow.grid_table(config), param_sep="~")
SPLITS = Paramspace(hdl.workflow.split_table(CELLS.dataframe), param_sep="~")
ROUNDS = config["hdl"]["rounds"]

# results/runs/dataset~D/labels~N/imbalance~IF/method~M/seed~S
CELL = f"results/runs/{CELLS.wildcard_pattern}"
# results/splits/dataset~D/labels~N/imbalance~IF/seed~S.npz
SPLIT = f"results/splits/{SPLITS.wildcard_pattern}.npz"
LOGS = "results/logs"
# every rule runs the hdl package; `--use-conda` builds this environment for them
HDL_ENV = "../../environment.yml"


wildcard_constraints:
    dataset="[a-z0-9_]+",
    labels="[0-9]+",
    imbalance=r"[0-9]+(\.[0-9]+)?",
    method="[a-z0-9_]+",
    seed="[0-9]+",
    round="[1-9][0-9]*",
    variant="hdl|baseline",


def split_of_cell(wildcards):
    return SPLIT.format(**{column: wildcards[column] for column in SPLITS.dataframe.columns})


def cell_of(wildcards):
    return {column: wildcards[column] for column in CELLS.dataframe.columns}


def cell_path(wildcards, relative):
    return f"{CELL.format(**cell_of(wildcards))}/{relative}"


def runtime_minutes(job_kind):
    return lambda wildcards, attempt: config["resources"][job_kind]["runtime"] * attempt


def mem_mb(job_kind):
    return lambda wildcards, attempt: config["resources"][job_kind]["mem_mb"]


def last_round_outputs(pattern):
    return expand(f"{CELL}/round~{ROUNDS}/{pattern}", zip, **CELLS.dataframe.to_dict("list"))


def run_log(stage_path):
    return f"{LOGS}/{CELLS.wildcard_pattern}/{stage_path}.log"


def stage2_inputs(wildcards):
    """Round R of a variant continues the run of round R-1 (stage 1 for R = 1); HDL adds the pseudo-labels."""
    inputs = {
        "split": split_of_cell(wildcards),
        "start": cell_path(wildcards, hdl.workflow.start_run(int(wildcards.round), wildcards.variant)),
    }
    if wildcards.variant == "hdl":
        inputs["extra_labels"] = cell_path(wildcards, f"round~{wildcards.round}/extra_labels.npz")
    return inputs


def checkpoint_of(metrics_path):
    """The checkpoint a finished run left next to its metrics.json."""
    return Path(metrics_path).with_name("checkpoint.pt")
