"""SGD and the learning rate.

SGD with nesterov momentum and FixMatch's cosine decay
``lr * cos(7 pi t / 16 T)``.  The LR is a pure function of the step, so the
step stands in for a scheduler's state in checkpoints.  SGD runs fused (one
kernel over all parameters, on CPU and GPU) and eagerly: the LR, a Python
float set every step, then never reaches a compiled graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hdl.training.settings import TrainConfig


def make_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on weight matrices and kernels only: never on biases or BatchNorm."""
    decayed = [p for p in parameters if p.ndim > 1]
    undecayed = [p for p in parameters if p.ndim <= 1]
    return torch.optim.SGD(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": undecayed, "weight_decay": 0.0}],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        fused=True,
    )


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    return base_lr * math.cos(7 * math.pi * step / (16 * total_steps))


def stage2_learning_rate(rule: str, base_lr: float, held_lr: float, step: int, total_steps: int) -> float:
    """LR at ``step`` of a run that continues another whose last LR was ``held_lr`` (see TrainConfig.stage2_lr)."""
    if rule == "hold":
        return held_lr
    if rule == "anneal":
        return cosine_lr(held_lr, step, total_steps)
    return cosine_lr(base_lr, step, total_steps)
