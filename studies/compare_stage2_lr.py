"""Which LR should stage 2 continue with?  Train the paired baseline (no HDL labels) of finished
stage-1 runs under each `stage2_lr` rule and compare their test accuracy.

    .venv/bin/python studies/compare_stage2_lr.py --runs results/runs --steps 500 --rules hold anneal restart

The runs use whichever ``hdl`` package the interpreter imports (set PYTHONPATH to measure a checkout
other than the installed one: checkpoints only load into the code that wrote them).

For every ``stage1/checkpoint.pt`` under ``--runs`` (a workflow's results), and every rule, runs
``hdl train --init CHECKPOINT --set stage2_lr=RULE`` with the stage-1 run's own settings for
``--steps`` steps into ``--out``/<cell>/<rule>/, then prints, per setting and method, the mean
accuracy of each rule and each rule's paired difference from the first rule over seeds with a
95% paired-t interval.  Reruns resume (finished runs are read back).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from hdl.report.stats import paired_t_interval
from stage2_runs import cell_of, run, stage1_runs, stage2_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/runs", help="results/runs of a finished workflow")
    parser.add_argument("--out", default="results/stage2_lr", help="where the stage-2 runs go")
    parser.add_argument("--steps", type=int, required=True, help="stage-2 steps (the workflow's stage2_steps)")
    parser.add_argument("--rules", nargs="+", required=True, help="stage2_lr values (hdl train checks them); the first is the reference")
    parser.add_argument("--cells", nargs="+", default=["*"], help="only cells whose path under --runs matches one of these globs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one CPU thread each)")
    parser.add_argument("--metric", default="median_last20_top1")
    args = parser.parse_args()

    jobs = []
    for cell, cell_dir, stage1 in stage1_runs(args.runs, args.cells):
        for rule in args.rules:
            out = Path(args.out) / cell / rule
            command = stage2_command(stage1, cell_dir / "stage1" / "checkpoint.pt", args.steps, out, {"stage2_lr": rule})
            jobs.append((cell_of(stage1) | {"rule": rule, "stage1": stage1[args.metric]}, command, out))
    if not jobs:
        print(f"no stage1/metrics.json under {args.runs}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(job[1], job[2]), jobs))
    frame = pd.DataFrame([job[0] | {"accuracy": 100 * metrics[args.metric]} for job, metrics in zip(jobs, results)])
    frame["stage1"] *= 100

    print(f"stage-2 baseline accuracy ({args.metric}, %) after {args.steps} steps, by stage2_lr rule; "
          f"difference from '{args.rules[0]}' as mean [95% paired-t interval] over seeds")
    setting = ["dataset", "labels", "imbalance", "method"]
    for key, group in frame.groupby(setting):
        wide = group.pivot(index="seed", columns="rule", values="accuracy")
        parts = [f"stage 1 {group.groupby('seed')['stage1'].first().mean():.2f}"]
        for rule in args.rules:
            text = f"{rule} {wide[rule].mean():.2f}"
            if rule != args.rules[0]:
                difference = wide[rule] - wide[args.rules[0]]
                low, high, _ = paired_t_interval(difference)
                text += f" ({difference.mean():+.2f} [{low:+.2f}, {high:+.2f}])"
            parts.append(text)
        print(f"{' '.join(map(str, key))} (n={len(wide)}): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
