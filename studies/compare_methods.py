"""Every method on one data set with the same labels, backbone and schedule: a table of final accuracies.

    .venv/bin/python studies/compare_methods.py                  # Fashion-MNIST, 40 labels, CPU settings
    .venv/bin/python studies/compare_methods.py --steps 3000 --jobs 1 --set uratio=7

Each method is one `hdl train` run under OUT/METHOD/, so an interrupted
comparison resumes and a finished one only reprints the table.  ``--jobs``
runs that many at once, each with ``--threads`` CPU threads.  The table
(Markdown) is printed and written to OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hdl.ssl import REGISTRY

# Shared by all methods: short-run values for the EMA and BatchNorm averages (see hdl.training.settings.TrainConfig).
CPU_SETTINGS = ["batch_size=8", "uratio=2", "ema=0.99", "bn_momentum=0.01", "eval_every=150", "save_every=150"]


def settings(args: argparse.Namespace) -> list[str]:
    """The shared settings with the command line's ``--set`` replacing them key by key."""
    merged = dict(assignment.split("=", 1) for assignment in [*CPU_SETTINGS, *args.assignments])
    return [f"{key}={value}" for key, value in merged.items()]


def train_command(args: argparse.Namespace, method: str) -> list[str]:
    command = [
        sys.executable, "-m", "hdl.cli", "train", "--dataset", args.dataset, "--labels", str(args.labels),
        "--seed", str(args.seed), "--method", method, "--steps", str(args.steps), "--arch", args.arch,
        "--out", str(args.out / method), "--threads", str(args.threads), "--no-progress",
    ]
    for assignment in settings(args):
        command += ["--set", assignment]
    return command


def run(args: argparse.Namespace, method: str) -> dict:
    command = train_command(args, method)
    log = args.out / f"{method}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return json.loads((args.out / method / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="wrn-10-1")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--methods", nargs="+", default=sorted(REGISTRY))
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help=f"added after the shared settings {' '.join(CPU_SETTINGS)}")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/compare_methods"))
    args = parser.parse_args()

    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(args.methods, pool.map(lambda method: run(args, method), args.methods)))
    lines = [
        f"{args.dataset}, {args.labels} labels, seed {args.seed}, {args.arch}, settings: {' '.join(settings(args))}",
        "",
        "| method | steps | top1 | balanced_acc | median_last20_top1 | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, metrics in results.items():
        lines.append(
            f"| {method} | {metrics['steps']} | {metrics['top1']:.4f} | {metrics['balanced_acc']:.4f} | "
            f"{metrics['median_last20_top1']:.4f} | {metrics['seconds']:.0f} |"
        )
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
