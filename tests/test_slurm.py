"""profiles/slurm for real: a single-node SLURM (scripts/slurm_local.sh) runs the tiny grid through sbatch.

In CI (CI=true) this test never skips: a SLURM that cannot start is a failure. Elsewhere it skips
when it cannot run, e.g. without root or when the machine has a SLURM of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
IN_CI = os.environ.get("CI", "").lower() == "true"
CLUSTER_RULES = {"split", "train_stage1", "embed", "relabel", "train_stage2"}
GPU_RULES = {"train_stage1", "embed", "train_stage2"}


def _cannot_run(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run the SLURM test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def local_slurm():
    if os.geteuid() != 0:
        _cannot_run("starting a local SLURM needs root (it installs slurm-wlm and writes /etc/slurm)")
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        _cannot_run(f"scripts/slurm_local.sh start failed: {started.stderr.strip()[-2000:]}")
    try:
        yield
    finally:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=60)


def submitted_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still remembers, as scontrol's key=value fields."""
    lines = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines.splitlines() if line.strip()]


@pytest.mark.slow
def test_tiny_grid_runs_through_the_slurm_profile(local_slurm, tmp_path):
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(ROOT / "workflow" / "Snakefile"),
        "--configfile", str(ROOT / ".test" / "config.yaml"),
        "--directory", str(tmp_path),
        "--profile", str(ROOT / "profiles" / "slurm"),
        # this cluster keeps no accounting (sacct fails) and the jobs take seconds
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]

    jobs_by_rule: dict[str, list[dict[str, str]]] = {}
    for job in submitted_jobs():
        rule = re.match(r"rule_(\w+?)_wildcards", job.get("Comment", "")) or re.match(r"rule_(\w+)", job.get("Comment", ""))
        if rule:
            jobs_by_rule.setdefault(rule.group(1), []).append(job)
    # the cluster ran every cell step; grid.csv and the tables were made on this machine (localrules)
    assert set(jobs_by_rule) == CLUSTER_RULES
    assert len(jobs_by_rule["train_stage2"]) == 2 * len(jobs_by_rule["train_stage1"]) == 4
    for rule, jobs in jobs_by_rule.items():
        for job in jobs:
            assert job["JobState"] == "COMPLETED"
            asks_gpu = "gpu" in job.get("TresPerJob", "")
            assert asks_gpu == (rule in GPU_RULES), f"{rule}: TresPerJob={job.get('TresPerJob')}"

    accuracy = (tmp_path / "results/tables/accuracy.md").read_text()
    assert re.search(r"\| FixMatch \+ HDL \| \d+\.\d+ ± \d+\.\d+ \|", accuracy), accuracy
    # the paired difference over the two seeds: mean [95% interval], "n.s." when the interval holds 0
    assert re.search(r"\| Δ HDL − FixMatch \(paired\) \| [-+]?\d+\.\d+ \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]( n\.s\.)? \|",
                     accuracy), accuracy
    assert (tmp_path / "results/plots/hdl_gain.png").read_bytes()[:4] == b"\x89PNG"
