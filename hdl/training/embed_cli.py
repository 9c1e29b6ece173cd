"""`hdl embed`: a checkpoint's EMA-model embeddings and softmax probabilities for a split's samples.

The embeddings (L2-normalised penultimate features) are what HDL labels with;
the probabilities feed the logit-based labelers it is compared with.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from hdl.cli_options import add_data_arguments, add_device_arguments, load_data, setup_device

if TYPE_CHECKING:
    import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hdl.data import DATASET_NAMES
    from hdl.training.settings import INFERENCE_BATCH_SIZE

    parser.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `hdl train`")
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_NAMES)}; must be the checkpoint's")
    parser.add_argument("--split", required=True, help="split .npz of the checkpoint's cell: its labeled and unlabeled samples are embedded")
    parser.add_argument("--out", required=True, help="output .npz: embeddings, probs, index, labels, truth, and the cell they belong to")
    add_data_arguments(parser)
    add_device_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=INFERENCE_BATCH_SIZE, help="images per forward pass (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from hdl.data.augment import Augmenter
    from hdl.errors import UserError
    from hdl.cell import Cell
    from hdl.files import checkpoint_cell, read_checkpoint, read_split, short_reason
    from hdl.io import save_npz
    from hdl.training.inference import embeddings_and_probabilities, images_to_tensor, uses_bf16

    device = setup_device(args)
    state = read_checkpoint(args.checkpoint, "--checkpoint", cell=Cell(dataset=args.dataset))
    dataset = load_data(args)
    cell = dataclasses.replace(checkpoint_cell(state), num_classes=dataset.num_classes)
    split = read_split(args.split, cell=cell, num_train=len(dataset.train_labels), wanted_by=f"--checkpoint {args.checkpoint}")

    try:
        model = ema_model(state, dataset.num_classes, dataset.channels, device)
    except (UserError, RuntimeError) as error:
        raise UserError(
            f"--checkpoint {args.checkpoint}: its ema_model does not fit {state['config']['arch']} on {args.dataset} "
            f"({short_reason(error)}); pass a checkpoint.pt written by `hdl train`"
        ) from None

    index = np.union1d(split.labeled_idx, split.unlabeled_idx).astype(np.int64)
    labels = np.where(np.isin(index, split.labeled_idx), dataset.train_labels[index], -1).astype(np.int64)
    mean, std = dataset.channel_stats()
    bf16 = uses_bf16(state["config"]["train"].get("precision", "fp32"), device, f"--checkpoint {args.checkpoint} (precision bf16)")
    images = images_to_tensor(dataset.train_images[index], device)
    embeddings, probs = embeddings_and_probabilities(model, images, Augmenter(mean, std), args.batch_size, bf16)
    save_npz(
        args.out,
        embeddings=embeddings,
        probs=probs,
        index=index,
        labels=labels,
        truth=dataset.train_labels[index].astype(np.int64),
        **cell.arrays(),
    )
    print(f"wrote {args.out}: {len(index)} embeddings of dimension {embeddings.shape[1]}")
    return 0


def ema_model(state: dict, num_classes: int, channels: int, device: torch.device) -> torch.nn.Module:
    """A checkpoint's EMA model, on ``device``."""
    from hdl.nets import build_net

    model = build_net(state["config"]["arch"], num_classes, channels, device=device)
    model.load_state_dict(state["ema_model"])
    return model

