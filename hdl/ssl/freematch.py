"""FreeMatch (Wang et al., ICLR 2023, arXiv 2205.07246).

FixMatch with a self-adaptive threshold and a class-fairness penalty.

Self-adaptive threshold, from the predictions p on the weak unlabeled views
(updated with each batch before its mask is taken, as in USB and TorchSSL):
    tau      <- m tau      + (1 - m) mean_b max_c p_bc       (global)
    p_model  <- m p_model  + (1 - m) mean_b p_b              (per class)
    hist     <- m hist     + (1 - m) histogram of argmax_c p_bc
    threshold_c = p_model_c / max(p_model) * tau            (MaxNorm(p_model) * tau)
A sample counts when its max probability reaches the threshold of its
predicted class; it is then trained with cross-entropy from its strong view
to the weak view's hard pseudo-label.  All three start at 1/C (paper,
TorchSSL, and USB since April 2023; before, USB started them at 1, a threshold
nothing reaches at first).

Self-adaptive fairness loss (paper eq. 10, USB ``entropy_loss``) on the
strong views of the masked samples:
    L_f = sum_c SumNorm(p_model / hist)_c log SumNorm(pbar / hbar)_c
with pbar, hbar the mean prediction and prediction histogram of those views
(classes absent from hbar get weight 0).  Minimising it pushes the batch's
predictions away from the classes the model already favours.

Defaults: momentum 0.999 and lambda_u 1 (paper, TorchSSL, USB); fairness
weight 0.001 from USB's ``config/classic_cv/freematch/freematch_cifar10_40_0.yaml``
(``ent_loss_ratio``; USB's argument default is 0.01, TorchSSL's CIFAR-10
40-label config has 0.0); 64 labeled and 7 x 64 unlabeled images per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

from hdl.ssl.base import Algorithm, Batch, StepContext, register
from hdl.data.dataset import NO_LABEL
from hdl.ssl.ops import label_accuracy, labeled_loss, logits_of_three_views, pseudo_label_accuracy


def class_histogram(predicted: torch.Tensor, num_classes: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted count of each class among ``predicted`` (class indices): ``bincount`` with a shape fixed by ``num_classes``."""
    counts = nnf.one_hot(predicted, num_classes).float()
    return (counts if weights is None else counts * weights[:, None]).sum(dim=0)


def fairness_loss(logits: torch.Tensor, p_model: torch.Tensor, label_hist: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness loss on the strong-view logits of the masked rows; see the module docstring.

    ``mask`` (float, one per row; default all) selects the rows as weights,
    so the shapes never depend on it; with no row selected the loss is 0.
    """
    mask = torch.ones_like(logits[:, 0]) if mask is None else mask
    selected = mask.sum()
    probs = torch.softmax(logits, dim=-1)
    hist = class_histogram(probs.argmax(dim=-1), logits.shape[1], mask)
    hist = hist / selected.clamp_min(1)
    target = p_model / label_hist
    target = target / target.sum()
    inverse_hist = torch.where(hist > 0, 1.0 / hist, torch.zeros_like(hist))
    batch_mean = (probs * mask[:, None]).sum(dim=0) / selected.clamp_min(1) * inverse_hist
    # Clamped, not branched: with no row selected every term is 0, and so is every gradient.
    batch_mean = batch_mean / batch_mean.sum().clamp_min(torch.finfo(batch_mean.dtype).tiny)
    return (target * torch.log(batch_mean + 1e-12)).sum() * (selected > 0)


@register("freematch")
class FreeMatch(Algorithm):
    default_uratio = 7  # paper, TorchSSL and USB configs

    @dataclass
    class Config:
        ema_momentum: float = 0.999  # m for tau, p_model, hist (paper, USB ``ema_p``)
        lambda_u: float = 1.0  # unlabeled loss weight (paper w_u, TorchSSL ``ulb_loss_ratio``)
        lambda_fairness: float = 0.001  # USB CIFAR-10 40-label ``ent_loss_ratio``

    def __init__(self, num_classes: int, feature_dim: int, config: Config, labeled_distribution: torch.Tensor | None = None):
        super().__init__(num_classes, feature_dim, config, labeled_distribution)
        self.register_buffer("time_p", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("label_hist", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update_thresholds(self, probs: torch.Tensor) -> None:
        momentum = self.config.ema_momentum
        max_probs, predicted = probs.max(dim=-1)
        hist = class_histogram(predicted, self.num_classes) / predicted.numel()
        self.time_p.mul_(momentum).add_((1 - momentum) * max_probs.mean())
        self.p_model.mul_(momentum).add_((1 - momentum) * probs.mean(dim=0))
        self.label_hist.mul_(momentum).add_((1 - momentum) * hist)

    def class_thresholds(self) -> torch.Tensor:
        return self.p_model / self.p_model.max() * self.time_p

    def confident(self, probs: torch.Tensor) -> torch.Tensor:
        """Boolean mask: max probability at or above its predicted class's threshold."""
        max_probs, predicted = probs.max(dim=-1)
        return max_probs >= self.class_thresholds()[predicted]

    def training_step(self, model: nn.Module, batch: Batch, context: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        config = self.config
        labeled_logits, weak_logits, strong_logits = logits_of_three_views(model, batch, context.views)
        loss_x = labeled_loss(labeled_logits, batch.labeled_targets, batch.labeled_weights)

        probs = torch.softmax(weak_logits.detach(), dim=-1)
        self.update_thresholds(probs)
        mask = self.confident(probs)
        pseudo_labels = probs.argmax(dim=-1)
        loss_u = (nnf.cross_entropy(strong_logits, pseudo_labels, reduction="none") * mask).mean()
        loss_f = fairness_loss(strong_logits, self.p_model, self.label_hist, mask.float())

        loss = loss_x + config.lambda_u * loss_u + config.lambda_fairness * loss_f
        logs = {
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "loss_fairness": loss_f.detach(),
            "mask": mask.float().mean(),
            "tau": self.time_p.clone(),
            "pseudo_acc": label_accuracy(probs, batch.unlabeled_truth),
            # of the rows with a true label, the share confident and right
            "masked_correct": pseudo_label_accuracy(torch.where(mask, pseudo_labels, NO_LABEL), batch.unlabeled_truth),
        }
        return loss, logs
