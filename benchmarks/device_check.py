"""The training runs of benchmarks/device_check.sh: for every method and precision (fp32, bf16), `hdl split`, a
`hdl train` run, the same run interrupted after its mid-run checkpoint and resumed, and `hdl embed` of the result.

    python benchmarks/device_check.py --work DIR --device cuda --steps 200 --table TABLE

Writes Fashion-MNIST-format random images under DIR/data (no data set needed)
and appends one row per method and precision to TABLE: the run's seconds and top-1, whether
the resumed run's history equals the uninterrupted one bit for bit, the
largest loss difference between them, and the embedding's shape.  On CPU a
resume must be exact (the script fails otherwise); on a GPU, cuDNN's
autotuned kernels may differ in the last bits between runs, so the
difference is reported.  Runs in-process, reusing the tests' interruption
helper (tests/training_fixtures.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hdl.cli import main as hdl  # noqa: E402
from hdl.ssl import REGISTRY  # noqa: E402
from hdl.training.settings import PRECISIONS  # noqa: E402
from hdl.training.synthetic import write_fashion_mnist_files  # noqa: E402
from training_fixtures import train_interrupted_at  # noqa: E402


def check_method(method: str, precision: str, args: argparse.Namespace, data_dir: Path, split: Path) -> str:
    data = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--device", args.device]
    save_every = args.steps // 2
    train = [
        "train", *data, "--labels", "40", "--seed", "0", "--split", str(split), "--method", method, "--arch", args.arch, "--steps", str(args.steps),
        "--no-progress", "--wandb-mode", "disabled", "--set", f"batch_size={args.batch_size}",
        "--set", f"eval_every={max(1, args.steps // 4)}", "--set", f"save_every={save_every}", "--set", f"compile={args.compile}",
        "--set", f"precision={precision}", *(part for assignment in args.assignments for part in ("--set", assignment)),
        "--set", "probe_every=0",  # the label probe builds its k-NN graph with faiss, which the device machine lacks
    ]
    runs = args.work / "runs" / method / precision
    started = time.perf_counter()
    assert hdl([*train, "--out", str(runs / "uninterrupted")]) == 0
    seconds = time.perf_counter() - started
    train_interrupted_at(pytest.MonkeyPatch(), save_every + max(1, save_every // 2), [*train, "--out", str(runs / "resumed")])
    assert hdl([*train, "--out", str(runs / "resumed")]) == 0
    uninterrupted, resumed = (json.loads((runs / run / "metrics.json").read_text()) for run in ("uninterrupted", "resumed"))
    exact = resumed["history"] == uninterrupted["history"]
    loss_difference = max(abs(a["loss"] - b["loss"]) for a, b in zip(resumed["history"], uninterrupted["history"]))
    if args.device == "cpu" and not exact:
        raise SystemExit(f"{method} {precision}: the resumed run differs from the uninterrupted one on CPU (largest loss difference {loss_difference:.3g})")
    embeddings = runs / "embed.npz"
    assert hdl(["embed", *data, "--checkpoint", str(runs / "uninterrupted" / "checkpoint.pt"), "--split", str(split), "--out", str(embeddings)]) == 0
    with np.load(embeddings) as stored:
        shape = "x".join(map(str, stored["embeddings"].shape))
    return (f"{method:11} {precision:9} {args.steps:6d} {seconds:8.1f} {uninterrupted['top1']:6.3f} {'yes' if exact else 'no':>6} "
            f"{loss_difference:10.2e} {shape:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--arch", default="wrn-10-1")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4096, help="random training images written as Fashion-MNIST")
    parser.add_argument("--compile", default="auto", help="the runs' compile setting")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, help="each method trains in each")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to every `hdl train` (e.g. uratio=1 for a quick run)")
    args = parser.parse_args()
    data_dir = args.work / "data"
    write_fashion_mnist_files(data_dir / "fashion-mnist", size=args.images, test_size=max(64, args.images // 8))
    split = args.work / "split.npz"
    assert hdl(["split", "--dataset", "fashion_mnist", "--labels", "40", "--seed", "0", "--data-dir", str(data_dir), "--out", str(split)]) == 0
    rows = [f"{'method':11} {'precision':9} {'steps':>6} {'train s':>8} {'top1':>6} {'exact':>6} {'max dloss':>10} {'embeddings':>12}"]
    for method in sorted(REGISTRY):
        for precision in args.precisions:
            rows.append(check_method(method, precision, args, data_dir, split))
            print(rows[-1], flush=True)
    with args.table.open("a") as table:
        table.write(f"hdl train (--device {args.device}, {args.arch}, batch {args.batch_size}, compile={args.compile}"
                    f"{''.join(', ' + assignment for assignment in args.assignments)}), "
                    f"interrupted after step {args.steps // 2}'s checkpoint and resumed; hdl embed\n")
        table.write("\n".join(rows) + "\n\n")


if __name__ == "__main__":
    main()
