"""The averages a run keeps: the EMA model that is evaluated and embedded, and BatchNorm's running statistics.

Both warm up as TensorFlow's ExponentialMovingAverage with ``num_updates``
does (``TrainConfig.ema_warmup``): at global step t the decay is capped by
(1 + t) / (10 + t), so the averages follow the model closely at first and
settle at the configured values after some ten thousand steps.

The rates change every step.  BatchNorm's momentum is read inside the
(compiled) step, so it lives in a 0-d tensor on the training device that the
trainer overwrites in place (``AveragingRates.set``): the step reads it as
data, and nothing waits for the host.  The EMA update runs eagerly after the
step and takes its decay as a number: ``torch._foreach_lerp_`` has no tensor
weight, so a decay held on a GPU would be read back every step, waiting for
the device.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from hdl.nets import share_momentum

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
        decay = self.decay if decay is None else decay
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - decay)
        torch._foreach_copy_(self._buffer_pairs[0], self._buffer_pairs[1])


def warmed_up_decay(decay: float, step: int) -> float:
    """``decay`` capped by (1 + t) / (10 + t) at global step t: fast averages early, ``decay`` later."""
    return min(decay, (1 + step) / (WARMUP_OFFSET + step))


def averaging_rates(ema: float, bn_momentum: float, step: int, warmup: bool) -> tuple[float, float]:
    """The EMA decay and the BatchNorm momentum at global step ``step``, warmed up or as configured."""
    if not warmup:
        return ema, bn_momentum
    return warmed_up_decay(ema, step), max(bn_momentum, 1.0 - warmed_up_decay(1.0, step))


class AveragingRates:
    """The EMA decay of the current step, a number, and its BatchNorm momentum, a 0-d tensor on ``device`` that the model's BatchNorms read."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.ema_decay = 0.0
        self.bn_momentum = torch.zeros((), device=device)
        share_momentum(model, self.bn_momentum)

    def set(self, ema_decay: float, bn_momentum: float) -> None:
        # Rounded to float32, as when the decay was a float32 tensor: runs keep their numbers bit for bit.
        self.ema_decay = float(np.float32(ema_decay))
        self.bn_momentum.fill_(bn_momentum)
