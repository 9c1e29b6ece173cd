"""Running a trained network: predictions in batches, bf16 autocast, accuracy.

Used by the training loop's evaluation and by ``hdl embed``, which must not
need the loop.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from hdl.errors import UserError
from hdl.ssl import Views


def images_to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) array -> uint8 (N, C, H, W) tensor on ``device`` (a copy: loaders may hand out read-only arrays)."""
    return torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), order="C")).to(device)


def uses_bf16(precision: str, device: torch.device, setting: str = "--set precision=bf16") -> bool:
    """Whether ``precision`` (TrainConfig.precision) means bf16 autocast, on any device: a UserError naming
    ``setting`` where ``device``'s autocast does not compute in bfloat16, rather than fp32 in silence."""
    if precision != "bf16":
        return False
    problem = autocast_bf16_problem(device)
    if problem:
        raise UserError(
            f"{setting}: autocast on {device} does not compute in bfloat16 ({problem}); "
            "run on a device whose autocast does (any CPU; a CUDA GPU with bfloat16), or train with precision=fp32"
        )
    return True


def autocast_bf16_problem(device: torch.device) -> str | None:
    """Why bf16 autocast on ``device`` would not compute a product in bfloat16 (its error or warning), or None where it does."""
    operand = torch.ones(1, 1, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                product = operand @ operand
        except RuntimeError as error:
            return str(error).splitlines()[0]
    if product.dtype != torch.bfloat16:
        return "; ".join(str(warning.message).splitlines()[0] for warning in caught) or f"it computed in {product.dtype}"
    return None


class MixedPrecision(nn.Module):
    """The model's forward in bf16 autocast when ``enabled`` (CPU or GPU), returning float32 logits and features.

    Only the network runs in bf16: augmentations (whose sampling grids bf16
    would shift) and the losses (thresholds such as 0.95) stay in float32.
    Autocast casts the float32 parameters to bf16 inside each op, so the
    parameters, their gradients, the optimiser's momentum, the EMA model and
    BatchNorm's running statistics (``hdl.nets.BatchNorm2d`` averages the
    batch's float32 statistics) all stay float32, and so do checkpoints.
    """

    def __init__(self, model: nn.Module, enabled: bool):
        super().__init__()
        self.model = model
        self.enabled = enabled

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.enabled):
            logits, features = self.model(images)
        return logits.float(), features.float()


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, views: Views, batch_size: int, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and features (float32) of uint8 images, in batches, with the model in eval mode."""
    was_training = model.training
    model.eval()
    forward = MixedPrecision(model, enabled=bf16)
    logits, features = [], []
    for chunk in images.split(batch_size):
        chunk_logits, chunk_features = forward(views.normalize(chunk))
        logits.append(chunk_logits)
        features.append(chunk_features)
    model.train(was_training)
    return torch.cat(logits), torch.cat(features)


def model_outputs(
    model: nn.Module, images: torch.Tensor, views: Views, batch_size: int, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """What HDL labels with, on the images' device: the L2-normalised penultimate features of uint8
    images, and the model's softmax probabilities (`hdl embed`'s, the label probe's and the refresh's)."""
    logits, features = predict(model, images, views, batch_size, bf16)
    return torch.nn.functional.normalize(features, dim=1), torch.softmax(logits, dim=1)


def embeddings_and_probabilities(
    model: nn.Module, images: torch.Tensor, views: Views, batch_size: int, bf16: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``model_outputs`` as float32 arrays on the host."""
    embeddings, probs = model_outputs(model, images, views, batch_size, bf16)
    return embeddings.cpu().numpy().astype(np.float32), probs.cpu().numpy().astype(np.float32)


def accuracy_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    correct = (predictions == labels).double()
    per_class = torch.bincount(labels, weights=correct, minlength=num_classes) / torch.bincount(
        labels, minlength=num_classes
    ).clamp_min(1)
    return {"top1": correct.mean().item(), "balanced_acc": per_class.mean().item(), "per_class": per_class.tolist()}
