"""MixMatch (Berthelot et al., 2019, arXiv 1905.02249).

Guess a label for each unlabeled image by averaging the predictions on K weak
views and sharpening, mixup the labeled and unlabeled examples together, then
cross-entropy on the labeled part and an L2 loss on the unlabeled part.

Defaults are the paper's CIFAR-10 settings (Sec. 4, "Implementation details")
as run by google-research/mixmatch: T 0.5, K 2, alpha 0.75, lambda_u 75, 64
labeled and 64 unlabeled images per step.

Ramp-up of lambda_u: linear over the first 0.4 of training, USB's
``unsup_warm_up`` in ``config/classic_cv/mixmatch/mixmatch_cifar10_40_0.yaml``.
The original ramps over 1024 kimg (16384 steps, 1/64 of its 2^20), with Adam
at lr 0.002; our trainer runs USB's SGD at lr 0.03, as USB does with 0.4.  In
short runs 1/64 is a handful of steps, and the full weight of 75 that early
holds the guesses near chance (digits, 200 steps: top-1 0.37 with 1/64,
0.93 with 0.4).  ``rampup_fraction=0.015625`` restores the original.
USB's config also has alpha 0.5 and lambda_u 100; we keep the paper's 0.75 and 75.

BatchNorm: the reference interleaves labeled and unlabeled rows so that each
of its separately forwarded batches holds the same mixture, and lets one of
them update the running averages.  We forward the whole mixed batch at once,
which computes batch statistics over exactly that mixture and updates the
running averages once; the label-guessing pass leaves them untouched, as in
USB.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.ssl.ops import frozen_bn_statistics, label_accuracy, linear_rampup, mix_and_predict, sharpen


@register("mixmatch")
class MixMatch(Algorithm):
    default_uratio = 1  # the paper's batches: 64 labeled and 64 unlabeled

    @dataclass
    class Config:
        temperature: float = 0.5  # sharpening T (paper)
        num_augmentations: int = 2  # K weak views per unlabeled image (paper)
        mixup_alpha: float = 0.75  # lambda ~ Beta(alpha, alpha) (paper, CIFAR-10)
        lambda_u: float = 75.0  # weight of the L2 unlabeled loss (paper, CIFAR-10)
        rampup_fraction: float = 0.4  # lambda_u ramps up over this share of steps (USB; the original: 1/64)

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        config = self.config
        labeled = context.views.weak(batch.labeled_images)
        unlabeled_views = [context.views.weak(batch.unlabeled_images) for _ in range(config.num_augmentations)]

        with torch.no_grad(), frozen_bn_statistics(model):
            logits, _ = model(torch.cat(unlabeled_views))
            probs = torch.softmax(logits, dim=-1).view(config.num_augmentations, -1, self.num_classes).mean(dim=0)
            guess = sharpen(probs, config.temperature)

        mixed = mix_and_predict(model, batch, labeled, unlabeled_views, guess, config.mixup_alpha)
        loss_u = (torch.softmax(mixed.unlabeled_logits, dim=-1) - mixed.unlabeled_targets).square().mean()
        weight_u = config.lambda_u * linear_rampup(context.step, context.total_steps, config.rampup_fraction)
        loss = mixed.loss_x + weight_u * loss_u
        logs = {
            "loss_x": mixed.loss_x.detach(),
            "loss_u": loss_u.detach(),
            "weight_u": weight_u,
            "mixup_lambda": mixed.mixup_lambda,
            "pseudo_acc": label_accuracy(guess, batch.unlabeled_truth),
        }
        return loss, logs
