"""Supervised baseline: the labeled stream only, weakly augmented (flip and crop), as in FixMatch's baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.ssl.ops import weighted_mean


@register("supervised")
class Supervised(Algorithm):
    uses_unlabeled = False
    default_uratio = 0

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict]:
        logits, _ = model(context.views.weak(batch.labeled_images))
        loss = weighted_mean(F.cross_entropy(logits, batch.labeled_targets, reduction="none"), batch.labeled_weights)
        return loss, {"loss_x": loss.detach()}
