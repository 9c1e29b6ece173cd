"""Flags several subcommands share: where the data come from, and where torch runs."""

from __future__ import annotations

import argparse

from hdl.errors import UserError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from hdl.data.datasets import DEFAULT_IMAGE_SIZE

    parser.add_argument("--data-dir", default="data", help="where data sets live")
    parser.add_argument("--download", action="store_true", help="let torchvision download a missing data set")
    parser.add_argument("--image-folder", metavar="ROOT",
                        help="--dataset image_folder: the folder holding train/<class>/, test/<class>/ and optionally unlabeled/")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, metavar="PX",
                        help=f"--dataset image_folder: the side its images are resized to (default: {DEFAULT_IMAGE_SIZE})")


def load_data(args: argparse.Namespace):
    """The data set ``--dataset`` names, from where the data arguments say."""
    from hdl.data import load_dataset

    return load_dataset(args.dataset, args.data_dir, args.download, args.image_folder, args.image_size)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")


def resolve_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA device; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.backends.cudnn.benchmark = True
    return torch.device(name)


def setup_device(args: argparse.Namespace):
    """Apply ``--threads`` and return the torch device ``--device`` names."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)
