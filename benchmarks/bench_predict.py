"""Prediction throughput (evaluation, the label probe and refresh, `hdl embed`) per backbone, batch size and layout.

    .venv/bin/python benchmarks/bench_predict.py --threads 1                      # CPU: wrn-10-1 at 28x28x1
    .venv/bin/python benchmarks/bench_predict.py --device cuda --archs wrn-28-2 --shapes 32x32x3 --batch-sizes 256 1024

Prints one row per (image shape, arch, layout, batch size): images/s of
``hdl.training.inference.predict`` (eval mode, no gradients, the
normalisation included) on random uint8 images, and the peak memory.  The
``channels_last`` rows are the network as ``hdl.nets.build_net`` makes it;
``contiguous`` rows convert its convolution kernels back to NCHW, the layout
CPU runs used before 2026-12-03, for comparison on the same machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from bench_train import SHAPES, peak_memory_mb, synchronize
from hdl.cli_options import resolve_device
from hdl.data.augment import Augmenter
from hdl.nets import build_net
from hdl.training.inference import predict
from hdl.training.settings import INFERENCE_BATCH_SIZE

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def images_per_second(model: nn.Module, images: torch.Tensor, views: Augmenter, batch_size: int) -> float:
    predict(model, images[:batch_size], views, batch_size)  # first call: kernels chosen, memory allocated
    synchronize(images.device)
    started = time.perf_counter()
    predict(model, images, views, batch_size)
    synchronize(images.device)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--archs", nargs="+", default=["wrn-10-1"])
    parser.add_argument("--shapes", nargs="+", default=["28x28x1"], choices=list(SHAPES))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=sorted({128, INFERENCE_BATCH_SIZE, 1024}))
    parser.add_argument("--images", type=int, default=10_000, help="images predicted per row (timed)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; fp32; {args.images} images per row after one untimed batch")
    print(f"{'shape':8} {'arch':9} {'layout':14} {'batch':>6} {'img/s':>8} {'peak MB':>8}")
    generator = torch.Generator().manual_seed(0)
    for shape in args.shapes:
        height, width, channels = SHAPES[shape]
        images = torch.randint(0, 256, (args.images, channels, height, width), dtype=torch.uint8, generator=generator).to(device)
        views = Augmenter([0.5] * channels, [0.25] * channels)
        for arch in args.archs:
            for layout in args.layouts:
                model = build_net(arch, 10, channels, device=device)
                nn.utils.convert_conv2d_weight_memory_format(model, LAYOUTS[layout])
                for batch_size in args.batch_sizes:
                    speed = images_per_second(model, images, views, batch_size)
                    print(f"{shape:8} {arch:9} {layout:14} {batch_size:6} {speed:8.0f} {peak_memory_mb(device):8.0f}")


if __name__ == "__main__":
    main()
