"""Training throughput of every method and backbone on this machine (CPU, and GPU when there is one).

    .venv/bin/python benchmarks/bench_train.py                      # CPU: 28x28x1 and 32x32x3, wrn-10-1 and wrn-28-2
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 64 --archs wrn-28-2 wrn-28-8
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 64 --precision bf16

Prints one row per (image shape, arch, method): optimiser steps/s and
training images/s, counting each labeled and unlabeled sample drawn once per
step (batch_size * (1 + uratio)), however many views the method makes of it.
Images are random uint8 arrays: speed does not depend on their content.  On
a GPU the network runs channels_last, as in real runs, and in fp32 unless
``--precision bf16`` (the trainer's ``precision`` setting) asks for bf16
autocast; the CPU always runs fp32.
"""

from __future__ import annotations

import argparse
import resource
import time
from types import SimpleNamespace

import numpy as np
import torch

from hdl.cli_options import resolve_device
from hdl.data.augment import Augmenter
from hdl.ssl import REGISTRY
from hdl.training.loop import Trainer
from hdl.training.settings import PRECISIONS, RunConfig, resolve_settings
from hdl.training.streams import TrainingData

SHAPES = {"28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3)}


def random_dataset(shape: tuple[int, int, int], num_classes: int = 10, size: int = 4096):
    rng = np.random.default_rng(0)
    return SimpleNamespace(
        train_images=rng.integers(0, 256, (size, *shape), dtype=np.uint8),
        train_labels=rng.integers(0, num_classes, size).astype(np.int64),
        test_images=rng.integers(0, 256, (256, *shape), dtype=np.uint8),
        test_labels=rng.integers(0, num_classes, 256).astype(np.int64),
        num_classes=num_classes,
    )


def throughput(
    method: str, arch: str, dataset, device: torch.device, assignments: list[str], steps: int, warmup: int
) -> tuple[float, int]:
    train, method_config = resolve_settings(method, assignments)
    config = RunConfig(
        dataset="random uint8 images", labels=256, imbalance=1.0, seed=0, method=method, arch=arch, steps=10**6,
        split=None, init=None, extra_labels=None, train=train, method_config=method_config,
    )
    channels = dataset.train_images.shape[-1]
    views = Augmenter([0.5] * channels, [0.25] * channels, hflip=True)
    data = TrainingData.build(dataset, np.arange(0, 256), np.arange(256, len(dataset.train_labels)), views, device)
    trainer = Trainer(config, data, device)
    trainer.model.train()
    for _ in range(warmup):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.train_step()
    float(loss)  # waits for the device
    seconds = time.perf_counter() - started
    return steps / seconds, train.batch_size * (1 + train.uratio if trainer.uses_unlabeled else 1)


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
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="bf16: the network in bf16 autocast (GPU only)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="trainer or method hyperparameter, as for `hdl train` (e.g. uratio=2)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    precision = args.precision if device.type == "cuda" else "fp32"
    print(
        f"device: {name}; {precision}; labeled batch {args.batch_size} {' '.join(args.assignments)}; "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    print(f"{'shape':8} {'arch':9} {'method':11} {'steps/s':>8} {'img/s':>8} {'peak MB':>8}")
    for shape in args.shapes:
        dataset = random_dataset(SHAPES[shape])
        for arch in args.archs:
            for method in args.methods:
                assignments = [f"batch_size={args.batch_size}", f"precision={args.precision}", *args.assignments]
                steps_per_second, images_per_step = throughput(method, arch, dataset, device, assignments, args.steps, args.warmup)
                print(
                    f"{shape:8} {arch:9} {method:11} {steps_per_second:8.2f} {steps_per_second * images_per_step:8.0f}"
                    f" {peak_memory_mb(device):8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
