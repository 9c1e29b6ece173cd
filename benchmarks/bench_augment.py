"""Throughput of `Augmenter.weak` and `Augmenter.strong` in images per second.

    .venv/bin/python benchmarks/bench_augment.py [--batch 448] [--repeats 20] [--threads N]

Measures CPU, and CUDA when a GPU is present, on CIFAR-like (3x32x32) and
Fashion-MNIST-like (1x28x28) uint8 batches.
"""

import argparse
import os
import time

import torch

from hdl.data.augment import Augmenter

SHAPES = {"3x32x32": (3, 32), "1x28x28": (1, 28)}


def images_per_second(view, images: torch.Tensor, repeats: int) -> float:
    view(images)  # warm-up: first calls pay for kernel selection and allocation
    if images.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        view(images)
    if images.is_cuda:
        torch.cuda.synchronize()
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=448, help="images per batch (FixMatch: 7 x 64 unlabeled)")
    parser.add_argument("--repeats", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{'device':<8}{'images':<10}{'weak img/s':>14}{'strong img/s':>14}")
    torch.manual_seed(0)
    for device in devices:
        for shape_name, (channels, size) in SHAPES.items():
            augmenter = Augmenter(mean=(0.5,) * channels, std=(0.25,) * channels)
            images = torch.randint(0, 256, (args.batch, channels, size, size), dtype=torch.uint8, device=device)
            weak = images_per_second(augmenter.weak, images, args.repeats)
            strong = images_per_second(augmenter.strong, images, args.repeats)
            print(f"{device:<8}{shape_name:<10}{weak:>14,.0f}{strong:>14,.0f}")


if __name__ == "__main__":
    main()
