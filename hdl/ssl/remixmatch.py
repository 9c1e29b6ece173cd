"""ReMixMatch (Berthelot et al., 2020, arXiv 1911.09785).

MixMatch with three changes: distribution alignment of the guessed label,
augmentation anchoring (the guess from one weak view is the target of K strong
views), and two auxiliary losses: the guess against the first strong view
before mixup, and predicting the rotation of that view (self-supervised, with
a linear head on the features that this algorithm owns and trains).

Defaults follow google-research/remixmatch (``remixmatch_no_cta.py`` flags)
and USB's ``config/classic_cv/remixmatch/remixmatch_cifar10_40_0.yaml``:
T 0.5, K 8 (paper), alpha 0.75, w_match 1.5, w_kl 0.5, w_rot 0.5, batch 64
labeled + 64 unlabeled, and the ramp-up of w_match and w_kl over 1024 of the
reference's 65536 kimg, i.e. 1/64 of training (USB ``unsup_warm_up``
0.015625).  The rotation loss is not ramped, as in both references.

Distribution alignment (paper Sec. 3.2): guess = sharpen(normalise(p * (p_target
+ 1e-6) / (p_model + 1e-6))), the epsilon as in the reference and USB's
``DistAlignEMAHook`` (``hdl.ssl.ops.ALIGNMENT_EPSILON``), where p_model is the mean prediction on weak unlabeled views over
the last 128 batches (the reference's ``PMovingAverage``, ``dbuf=128``,
starting uniform, read before this batch's update) and p_target is the
class distribution of the split's given labels, as the reference reads it
from the labeled data set.  The trainer hands it over
(``Algorithm.labeled_distribution``); stage 2's pseudo-labels never shift it.

BatchNorm: as in ``hdl.ssl.mixmatch``, only the single forward pass over the
mixed batch updates the running averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

from hdl.errors import UserError
from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.ssl.ops import (
    align_distribution,
    frozen_bn_statistics,
    label_accuracy,
    linear_rampup,
    mix_and_predict,
    sharpen,
)

NUM_ROTATIONS = 4
ALIGNMENT_TARGETS = ("labeled", "uniform")


def rotate_quarters(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate row i of square images by (i mod 4) * 90 degrees; return the rotated batch and i mod 4 as the label."""
    rotation = torch.arange(images.shape[0], device=images.device) % NUM_ROTATIONS
    rotated = images.clone()
    for quarter_turns in range(1, NUM_ROTATIONS):
        rotated[quarter_turns::NUM_ROTATIONS] = torch.rot90(images[quarter_turns::NUM_ROTATIONS], quarter_turns, dims=(-2, -1))
    return rotated, rotation


@register("remixmatch")
class ReMixMatch(Algorithm):
    default_uratio = 1  # 64 labeled and 64 unlabeled images per step (reference)

    @dataclass
    class Config:
        temperature: float = 0.5  # sharpening T (paper, reference)
        num_strong: int = 8  # K strong views anchored on the weak view's guess (paper)
        mixup_alpha: float = 0.75  # lambda ~ Beta(alpha, alpha) (reference ``beta``, USB)
        lambda_u: float = 1.5  # unlabeled loss after mixup (reference ``w_match``, USB ``ulb_loss_ratio``)
        lambda_kl: float = 0.5  # guess vs first strong view before mixup (reference ``w_kl``, USB ``kl_loss_ratio``)
        lambda_rot: float = 0.5  # rotation prediction (reference ``w_rot``, USB ``rot_loss_ratio``)
        rampup_fraction: float = 1 / 64  # lambda_u, lambda_kl ramp up over this share of steps (reference, USB)
        alignment_batches: int = 128  # batches in p_model's running average (reference ``dbuf``)
        alignment_target: str = "labeled"  # p_target: the given labels' distribution, or "uniform" (USB's long-tailed configs)

    def __init__(self, num_classes: int, feature_dim: int, config: Config, labeled_distribution: torch.Tensor | None = None):
        super().__init__(num_classes, feature_dim, config, labeled_distribution)
        if config.alignment_target not in ALIGNMENT_TARGETS:
            raise UserError(f"--set alignment_target={config.alignment_target}: must be one of {', '.join(ALIGNMENT_TARGETS)}")
        self.rotation_head = nn.Linear(feature_dim, NUM_ROTATIONS)
        nn.init.xavier_normal_(self.rotation_head.weight)  # the reference's glorot_normal
        nn.init.zeros_(self.rotation_head.bias)
        self.register_buffer("recent_predictions", torch.full((config.alignment_batches, num_classes), 1.0 / num_classes))

    def model_distribution(self) -> torch.Tensor:
        """p_model: mean prediction on weak unlabeled views over the last ``alignment_batches`` batches."""
        mean = self.recent_predictions.mean(dim=0)
        return mean / mean.sum()

    def target_distribution(self) -> torch.Tensor:
        """p_target: class distribution of the split's given labels, or uniform (``alignment_target``)."""
        if self.config.alignment_target == "uniform":
            return torch.full_like(self.labeled_distribution, 1.0 / self.num_classes)
        return self.labeled_distribution

    @torch.no_grad()
    def remember_predictions(self, probs: torch.Tensor) -> None:
        self.recent_predictions.copy_(torch.cat([self.recent_predictions[1:], probs.mean(dim=0, keepdim=True)]))

    def guess_labels(self, probs: torch.Tensor) -> torch.Tensor:
        aligned = align_distribution(probs, self.target_distribution(), self.model_distribution())
        return sharpen(aligned, self.config.temperature)

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        config = self.config
        labeled = context.views.weak(batch.labeled_images)
        weak = context.views.weak(batch.unlabeled_images)
        strong = [context.views.strong(batch.unlabeled_images) for _ in range(config.num_strong)]

        with torch.no_grad(), frozen_bn_statistics(model):
            probs = torch.softmax(model(weak)[0], dim=-1)
            guess = self.guess_labels(probs)
        self.remember_predictions(probs)

        with frozen_bn_statistics(model):
            strong_logits, _ = model(strong[0])
            rotated, rotation = rotate_quarters(strong[0])
            _, rotated_features = model(rotated)
        loss_kl = nnf.cross_entropy(strong_logits, guess)
        loss_rot = nnf.cross_entropy(self.rotation_head(rotated_features), rotation)

        mixed = mix_and_predict(model, batch, labeled, [weak, *strong], guess, config.mixup_alpha)
        loss_u = nnf.cross_entropy(mixed.unlabeled_logits, mixed.unlabeled_targets)
        rampup = linear_rampup(context.step, context.total_steps, config.rampup_fraction)
        loss = mixed.loss_x + rampup * (config.lambda_u * loss_u + config.lambda_kl * loss_kl) + config.lambda_rot * loss_rot
        logs = {
            "loss_x": mixed.loss_x.detach(),
            "loss_u": loss_u.detach(),
            "loss_kl": loss_kl.detach(),
            "loss_rot": loss_rot.detach(),
            "rampup": rampup,
            "mixup_lambda": mixed.mixup_lambda,
            "pseudo_acc": label_accuracy(guess, batch.unlabeled_truth),
        }
        return loss, logs
