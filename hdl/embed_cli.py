"""`hdl embed`: a checkpoint's EMA-model embeddings and softmax probabilities for a split's samples.

The embeddings (L2-normalised penultimate features) are what HDL labels with;
the probabilities feed the logit-based labelers it is compared with.
"""

from __future__ import annotations

import argparse

from hdl.cli_options import add_data_arguments, add_device_arguments, setup_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hdl.data import DATASET_NAMES

    parser.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `hdl train`")
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_NAMES)}; must be the checkpoint's")
    parser.add_argument("--split", required=True, help="split .npz: its labeled and unlabeled samples are embedded")
    parser.add_argument("--out", required=True, help="output .npz: embeddings, probs, index, labels, truth")
    add_data_arguments(parser)
    add_device_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=1024)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hdl.data import load_dataset, load_split
    from hdl.data.augment import Augmenter
    from hdl.errors import UserError
    from hdl.io import save_npz
    from hdl.nets import build_net
    from hdl.training.checkpoint import load_checkpoint
    from hdl.training.inference import images_to_tensor, predict, uses_bf16

    device = setup_device(args)
    state = load_checkpoint(args.checkpoint)
    trained_on = state["config"]["dataset"]
    if trained_on != args.dataset:
        raise UserError(f"--checkpoint {args.checkpoint} was trained on {trained_on}, not on --dataset {args.dataset}")
    dataset = load_dataset(args.dataset, args.data_dir, args.download)
    split = load_split(args.split)

    model = build_net(state["config"]["arch"], dataset.num_classes, dataset.channels)
    model.load_state_dict(state["ema_model"])
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    index = np.union1d(split.labeled_idx, split.unlabeled_idx).astype(np.int64)
    labels = np.where(np.isin(index, split.labeled_idx), dataset.train_labels[index], -1).astype(np.int64)
    images = images_to_tensor(dataset.train_images[index], device)
    mean, std = dataset.channel_stats()
    bf16 = uses_bf16(state["config"]["train"].get("precision", "fp32"), device)
    logits, features = predict(model, images, Augmenter(mean, std), args.batch_size, bf16)
    embeddings = torch.nn.functional.normalize(features, dim=1)
    save_npz(
        args.out,
        embeddings=embeddings.cpu().numpy().astype(np.float32),
        probs=torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32),
        index=index,
        labels=labels,
        truth=dataset.train_labels[index].astype(np.int64),
    )
    print(f"wrote {args.out}: {len(index)} embeddings of dimension {embeddings.shape[1]}")
    return 0
