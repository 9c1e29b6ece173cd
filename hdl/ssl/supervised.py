"""Supervised baseline: the labeled stream only, weakly augmented (flip and crop), as in FixMatch's baseline."""

from __future__ import annotations

import torch
from torch import nn

from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.ssl.ops import labeled_loss


@register("supervised")
class Supervised(Algorithm):
    uses_unlabeled = False
    default_uratio = 0

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict]:
        logits, _ = model(context.views.weak(batch.labeled_images))
        loss = labeled_loss(logits, batch.labeled_targets, batch.labeled_weights)
        return loss, {"loss_x": loss.detach()}
