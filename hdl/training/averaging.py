"""The averages a run keeps: the EMA model that is evaluated and embedded, and BatchNorm's running statistics.

Both warm up as TensorFlow's ExponentialMovingAverage with ``num_updates``
does (``TrainConfig.ema_warmup``): at global step t the decay is capped by
(1 + t) / (10 + t), so the averages follow the model closely at first and
settle at the configured values after some ten thousand steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WARMUP_OFFSET = 10  # TensorFlow's ExponentialMovingAverage: decay <= (1 + t) / (10 + t)


class EMA:
    """An exponential moving average of a model's parameters; buffers (BatchNorm statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._pairs = [list(self.model.parameters()), list(model.parameters())]
        self._buffer_pairs = [list(self.model.buffers()), list(model.buffers())]

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        """Move the average towards the model by ``1 - decay`` (default: the constructor's decay)."""
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - (self.decay if decay is None else decay))
        torch._foreach_copy_(self._buffer_pairs[0], self._buffer_pairs[1])


def warmed_up_decay(decay: float, step: int) -> float:
    """``decay`` capped by (1 + t) / (10 + t) at global step t: fast averages early, ``decay`` later."""
    return min(decay, (1 + step) / (WARMUP_OFFSET + step))


def averaging_rates(ema: float, bn_momentum: float, step: int, warmup: bool) -> tuple[float, float]:
    """The EMA decay and the BatchNorm momentum at global step ``step``, warmed up or as configured."""
    if not warmup:
        return ema, bn_momentum
    return warmed_up_decay(ema, step), max(bn_momentum, 1.0 - warmed_up_decay(1.0, step))


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
