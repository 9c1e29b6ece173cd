"""FixMatch (Sohn et al., NeurIPS 2020, arXiv 2001.07685).

The weak view of an unlabeled image gives a hard pseudo-label when the model's
top probability reaches the threshold; the strong view (RandAugment + Cutout)
is trained on it.  Defaults are the paper's (section 3 and table 5 of the
appendix; google-research/fixmatch and USB's ``fixmatch`` configs agree):
threshold 0.95 (``>=``, as in both codebases), unlabeled loss weight 1, uratio 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.ssl.ops import labeled_loss, logits_of_three_views, pseudo_label_accuracy


def confident_pseudo_labels(logits_weak: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels and the float mask of samples whose top softmax probability is >= ``threshold``."""
    confidence, pseudo_labels = torch.softmax(logits_weak.detach().float(), dim=-1).max(dim=-1)
    return pseudo_labels, (confidence >= threshold).float()


@register("fixmatch")
class FixMatch(Algorithm):
    default_uratio = 7

    @dataclass
    class Config:
        threshold: float = 0.95
        lambda_u: float = 1.0

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict]:
        labeled_logits, logits_weak, logits_strong = logits_of_three_views(model, batch, context.views)
        loss_x = labeled_loss(labeled_logits, batch.labeled_targets, batch.labeled_weights)
        pseudo_labels, mask = confident_pseudo_labels(logits_weak, self.config.threshold)
        loss_u = (F.cross_entropy(logits_strong, pseudo_labels, reduction="none") * mask).mean()
        logs = {
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "mask": mask.mean(),
            "pseudo_acc": pseudo_label_accuracy(pseudo_labels, batch.unlabeled_truth, mask),
        }
        return loss_x + self.config.lambda_u * loss_u, logs
