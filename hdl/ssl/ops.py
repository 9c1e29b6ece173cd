"""Pieces the semi-supervised losses share: sharpening, mixup, soft-target
cross-entropy, distribution alignment, loss ramp-up and BatchNorm statistics
left untouched by auxiliary forward passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as nnf
from torch import nn


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised over the last dim, computed in log space so that T -> 0 gives one-hot without underflow."""
    return torch.softmax(probs.log() / temperature, dim=-1)


def align_distribution(probs: torch.Tensor, target: torch.Tensor, model_average: torch.Tensor) -> torch.Tensor:
    """ReMixMatch's distribution alignment: normalise(p * p_target / p_model) per row."""
    aligned = probs * (target / model_average)
    return aligned / aligned.sum(dim=-1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy -sum_c q_c log softmax(z)_c against probability targets q."""
    return -(targets * nnf.log_softmax(logits, dim=-1)).sum(dim=-1)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MixMatch's mixup: each row mixed with a random row of the same batch.

    lambda ~ Beta(alpha, alpha), then lambda = max(lambda, 1 - lambda), so each
    mixed example stays closer to its own row (whose target and weight it keeps
    the meaning of).  Returns mixed inputs, mixed targets and lambda (a 0-d
    tensor on the inputs' device: no host sync).
    """
    concentration = torch.tensor(float(alpha), device=inputs.device)
    lam = torch.distributions.Beta(concentration, concentration).sample()
    lam = torch.maximum(lam, 1.0 - lam)
    partner = torch.randperm(inputs.shape[0], device=inputs.device)
    mixed_inputs = lam * inputs + (1.0 - lam) * inputs[partner]
    mixed_targets = lam * targets + (1.0 - lam) * targets[partner]
    return mixed_inputs, mixed_targets, lam


def linear_rampup(step: int, total_steps: int, fraction: float) -> float:
    """Weight growing linearly from 0 to 1 over the first ``fraction`` of training, then 1."""
    rampup_steps = fraction * total_steps
    if rampup_steps <= 0:
        return 1.0
    return min(1.0, step / rampup_steps)


@contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Forward passes inside use batch statistics as usual but leave BatchNorm's running averages as they were.

    The references (USB's ``bn_controller``, the TensorFlow code's choice of
    update ops) let only the main training pass update the running averages;
    label-guessing and auxiliary passes must not count twice.  A momentum of 0
    keeps the averages exactly; restoring them afterwards instead would trip
    autograd, which saves them for the backward pass.
    """
    saved = [
        (module, module.momentum, module.num_batches_tracked.clone())
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    for module, _, _ in saved:
        module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum, count in saved:
            module.momentum = momentum
            module.num_batches_tracked.copy_(count)


def label_accuracy(probs: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of rows whose argmax equals ``truth``: pseudo-label quality, for logs only."""
    return (probs.argmax(dim=-1) == truth).float().mean()
