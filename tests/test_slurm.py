"""profiles/slurm for real: a single-node SLURM (scripts/slurm_local.sh) runs the tiny grid through sbatch,
and a training job warned of its time limit saves and resumes in its retry.

In CI (CI=true) this test never skips: a SLURM that cannot start is a failure. Elsewhere it skips
when it cannot run, e.g. without root or when the machine has a SLURM of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ci  # a real slurmctld: CI runs it, a local `make test` leaves it out
import yaml

from hdl import layout
from hdl.training.stop_signal import EXIT_STATUS
from training_fixtures import RESUMED_KEYS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
TINY_CONFIG = ROOT / ".test" / "config.yaml"
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


def submitted_jobs(workdir: Path) -> list[dict[str, str]]:
    """Every job of the workflow run in ``workdir`` that slurmctld still remembers, as scontrol's key=value fields."""
    lines = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=True).stdout
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines.splitlines() if line.strip()]
    return [job for job in jobs if Path(job.get("WorkDir", "")).resolve() == workdir.resolve()]


def through_the_profile(workdir: Path, config: Path, *targets: str) -> list[str]:
    """The Snakemake command that runs the workflow in ``workdir`` on this SLURM with profiles/slurm."""
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(ROOT / "workflow" / "Snakefile"),
        "--configfile", str(config),
        "--directory", str(workdir),
        "--profile", str(ROOT / "profiles" / "slurm"),
        # this cluster keeps no accounting (sacct fails) and the jobs take seconds
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        *targets,
    ]


@pytest.mark.slow
def test_tiny_grid_runs_through_the_slurm_profile(local_slurm, tmp_path):
    result = subprocess.run(through_the_profile(tmp_path, TINY_CONFIG), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]

    jobs_by_rule: dict[str, list[dict[str, str]]] = {}
    for job in submitted_jobs(tmp_path):
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


@pytest.mark.slow
def test_a_training_job_warned_of_its_time_limit_saves_and_its_retry_resumes_there(local_slurm, tmp_path):
    """SIGUSR1 as SLURM sends it before a time limit (to every process of the job's steps) reaches `hdl train`
    through the Snakemake processes that run it: it saves where it is, exits 75, and the profile's retry resumes."""
    steps, cell = 100, {"dataset": "digits", "labels": 50, "imbalance": 1, "method": "fixmatch", "seed": 0}
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"]["seeds"] = [cell["seed"]]
    config["train"].update(stage1_steps=steps, save_every=steps)  # no checkpoint before the one the signal asks for
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    metrics = f"{layout.stage1_dir(cell)}/{layout.METRICS}"

    warned = tmp_path / "warned"
    output = tmp_path / "snakemake.log"
    # unbuffered, so that the job's log shows each evaluation as it happens; --verbose prints the sbatch calls
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with output.open("w") as sink:
        run = subprocess.Popen(through_the_profile(warned, config_path, "--verbose", metrics),
                               stdout=sink, stderr=subprocess.STDOUT, env=environment)
        try:
            warned_log = warned / layout.stage1_log(cell)
            deadline = time.monotonic() + 600
            while not (warned_log.exists() and "step 10: top1" in warned_log.read_text()):
                assert run.poll() is None, output.read_text()[-4000:]
                assert time.monotonic() < deadline, "stage 1 did not reach step 10 within 10 minutes"
                time.sleep(0.2)
            (training,) = [job for job in submitted_jobs(warned) if job["JobState"] == "RUNNING"
                           and job.get("Comment", "").startswith("rule_train_stage1")]
            # what SLURM does resources.time_limit_margin_s before the limit: the job's steps get the signal
            subprocess.run(["scancel", "--signal=USR1", training["JobId"]], check=True)
            assert run.wait(timeout=900) == 0, output.read_text()[-4000:]
        finally:
            run.kill()
    assert re.search(r"sbatch call: .* --signal=USR1@300 ", output.read_text())

    train_jobs = sorted((job for job in submitted_jobs(warned) if job.get("Comment", "").startswith("rule_train_stage1")),
                        key=lambda job: int(job["JobId"]))
    assert [job["JobState"] for job in train_jobs] == ["FAILED", "COMPLETED"]
    assert f"exit status {EXIT_STATUS}" in Path(train_jobs[0]["StdOut"]).read_text()
    # the retry started from the step the warned job reached (no save_every multiple: it saved only at the end)
    (resumed_at,) = [int(step) for step in re.findall(rf"resuming from \S+ at step (\d+) of {steps}", warned_log.read_text())]
    assert 10 <= resumed_at < steps

    uninterrupted = tmp_path / "uninterrupted"
    local = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
                            "--configfile", str(config_path), "--directory", str(uninterrupted), "--cores", "1", metrics],
                           capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stderr[-4000:]
    resumed, straight = (json.loads((run_dir / metrics).read_text()) for run_dir in (warned, uninterrupted))
    for key in RESUMED_KEYS:
        assert resumed[key] == straight[key], key
