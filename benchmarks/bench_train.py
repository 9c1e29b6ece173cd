"""Training throughput of every method and backbone on this machine (CPU, and GPU when there is one), eager and compiled.

    .venv/bin/python benchmarks/bench_train.py                      # CPU: 28x28x1 and 32x32x3, wrn-10-1 and wrn-28-2
    .venv/bin/python benchmarks/bench_train.py --compile default    # the same, eager beside torch.compile
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 64 --archs wrn-28-2 --compile reduce-overhead
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 64 --precision bf16

Prints one row per (image shape, arch, method): optimiser steps/s and
training images/s, counting each labeled and unlabeled sample drawn once per
step (batch_size * (1 + uratio)), however many views the method makes of it.
With ``--compile MODE`` each row also runs the step compiled (the trainer's
``compile`` setting): its img/s, the speed-up over eager, and the compile time
(the first step, which compiles the forward and backward; never counted in
img/s); a step that fails to compile runs eagerly, and its row says so.  Images are random uint8
arrays: speed does not depend on their content.  The network runs channels_last, as in real
runs.  The network runs in fp32 unless ``--precision bf16`` asks for bf16 autocast, on CPU
and GPU alike (``TrainConfig.precision``).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from hdl.cli_options import resolve_device
from hdl.ssl import REGISTRY
from hdl.training.compiling import COMPILE_SETTINGS
from hdl.training.loop import Trainer
from hdl.training.settings import PRECISIONS
from hdl.training.synthetic import random_dataset, random_trainer

SHAPES = {"28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(trainer: Trainer, steps: int, sync_debug: bool = False) -> float:
    """Seconds for ``steps`` training steps, waiting for the device at the end; with ``sync_debug``, any host
    synchronisation within the steps is an error (CUDA's sync debug mode)."""
    synchronize(trainer.device)
    started = time.perf_counter()
    sync_check = sync_debug and trainer.device.type == "cuda"
    if sync_check:
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            trainer.train_step()
    finally:
        if sync_check:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(trainer.device)
    return time.perf_counter() - started


def throughput(trainer: Trainer, steps: int, warmup: int, sync_debug: bool = False) -> tuple[float, float]:
    """Steps/s over ``steps`` timed steps, and the seconds of the first step (a compiled step's compile time)."""
    trainer.model.train()
    first_step = timed_steps(trainer, 1)
    timed_steps(trainer, warmup)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return steps / timed_steps(trainer, steps, sync_debug), first_step


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated during the last row's timed steps; CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--methods", nargs="+", default=sorted(REGISTRY))
    parser.add_argument("--archs", nargs="+", default=["wrn-10-1", "wrn-28-2"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--batch-size", type=int, default=16, help="labeled batch; 64 is the papers' (use it on a GPU)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="bf16: the network in bf16 autocast")
    parser.add_argument("--compile", choices=[mode for mode in COMPILE_SETTINGS if mode not in ("auto", "off")],
                        help="also run every row compiled with this torch.compile mode, beside eager")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="trainer or method hyperparameter, as for `hdl train` (e.g. uratio=2)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--sync-debug", action="store_true",
                        help="CUDA: fail on any host synchronisation in the timed steps (torch.cuda.set_sync_debug_mode)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {name}; {args.precision}; labeled batch {args.batch_size} {' '.join(args.assignments)}; "
        f"{args.steps} timed steps after {1 + args.warmup} untimed"
        + ("; no host synchronisation in the timed steps (sync debug mode: error)" if args.sync_debug and device.type == "cuda" else "")
    )
    header = f"{'shape':8} {'arch':9} {'method':11} {'steps/s':>8} {'img/s':>8} {'peak MB':>8}"
    if args.compile:
        header += f" | {args.compile + ' steps/s':>24} {'img/s':>8} {'speed-up':>8} {'compile s':>9} {'peak MB':>8}"
    print(header)
    for shape in args.shapes:
        dataset = random_dataset(SHAPES[shape])
        for arch in args.archs:
            for method in args.methods:
                assignments = [f"batch_size={args.batch_size}", f"precision={args.precision}", *args.assignments]
                row = f"{shape:8} {arch:9} {method:11}"
                eager_steps = None
                for mode in ["off"] + ([args.compile] if args.compile else []):
                    torch._dynamo.reset()  # every row compiles afresh, as a new run would
                    trainer = random_trainer(method, arch, dataset, device, [*assignments, f"compile={mode}"])
                    steps_per_second, first_step = throughput(trainer, args.steps, args.warmup, args.sync_debug)
                    images = steps_per_second * trainer.config.train.batch_size * (1 + trainer.config.train.uratio if trainer.uses_unlabeled else 1)
                    if mode == "off":
                        eager_steps = steps_per_second
                        row += f" {steps_per_second:8.2f} {images:8.0f} {peak_memory_mb(device):8.0f}"
                    else:
                        row += (f" | {steps_per_second:24.2f} {images:8.0f} {steps_per_second / eager_steps:7.2f}x"
                                f" {first_step:9.1f} {peak_memory_mb(device):8.0f}")
                        if trainer.method_loss.failure:
                            row += " (failed to compile, ran eagerly: see the line above)"
                print(row, flush=True)


if __name__ == "__main__":
    main()
