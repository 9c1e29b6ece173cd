"""Pieces the semi-supervised losses share: the weighted labeled loss, the
FixMatch-style forward over three views, sharpening, MixMatch's mixup and the
forward over the mixed batch, distribution alignment, loss ramp-up and
BatchNorm statistics left untouched by auxiliary forward passes.

Cross-entropy against probability targets is ``torch.nn.functional.cross_entropy``
with float targets of the logits' shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
from torch import nn

from hdl.data.dataset import NO_LABEL
from hdl.ssl.base import Batch, Views


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised over the last dim, computed in log space so that T -> 0 gives one-hot without underflow."""
    return torch.softmax(probs.log() / temperature, dim=-1)


# Added to both sides of ReMixMatch's alignment ratio, as google-research/remixmatch and USB
# (semilearn/algorithms/hooks/dist_align.py) do: a class whose running average underflows to 0
# gets a large but finite ratio instead of inf (and NaN after normalising).
ALIGNMENT_EPSILON = 1e-6


def align_distribution(probs: torch.Tensor, target: torch.Tensor, model_average: torch.Tensor) -> torch.Tensor:
    """ReMixMatch's distribution alignment: normalise(p * (p_target + eps) / (p_model + eps)) per row."""
    aligned = probs * ((target + ALIGNMENT_EPSILON) / (model_average + ALIGNMENT_EPSILON))
    return aligned / aligned.sum(dim=-1, keepdim=True)


def labeled_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the labeled rows, averaged with each row's weight.

    ``targets`` are class indices, or probabilities (mixed one-hot labels).
    ``weights`` are ``Batch.labeled_weights``: 1 for a given label, HDL's
    weight for a pseudo-label.
    """
    per_row = nnf.cross_entropy(logits, targets, reduction="none")
    return (per_row * weights).sum() / weights.sum().clamp_min(1e-12)


def logits_of_three_views(model: nn.Module, batch: Batch, views: Views) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of the labeled weak, unlabeled weak and unlabeled strong views.

    One forward pass over all three, so that BatchNorm sees them together, as
    in FixMatch's reference code and USB (``use_cat``).
    """
    inputs = torch.cat([views.weak(batch.labeled_images), views.weak(batch.unlabeled_images), views.strong(batch.unlabeled_images)])
    logits, _ = model(inputs)
    num_labeled = batch.labeled_images.shape[0]
    weak_logits, strong_logits = logits[num_labeled:].chunk(2)
    return logits[:num_labeled], weak_logits, strong_logits


def mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MixMatch's mixup: each row mixed with a random row of the same batch.

    lambda ~ Beta(alpha, alpha), then lambda = max(lambda, 1 - lambda), so each
    mixed example stays closer to its own row (whose target and weight it keeps
    the meaning of).  Returns mixed inputs, mixed targets and lambda (a 0-d
    tensor on the inputs' device: no host sync).
    """
    lam = beta_sample(alpha, inputs.device)
    lam = torch.maximum(lam, 1.0 - lam)
    partner = torch.randperm(inputs.shape[0], device=inputs.device)
    mixed_inputs = lam * inputs + (1.0 - lam) * inputs[partner]
    mixed_targets = lam * targets + (1.0 - lam) * targets[partner]
    return mixed_inputs, mixed_targets, lam


def beta_sample(alpha: float, device: torch.device) -> torch.Tensor:
    """One draw of Beta(alpha, alpha), a 0-d tensor: the draw ``torch.distributions.Beta(alpha, alpha).sample()``
    makes from the same generator, without its argument checks (a host sync on a GPU, a graph break in a compiled step)."""
    concentration = torch.full((2,), float(alpha), device=device)
    return torch._sample_dirichlet(concentration)[0]


class MixedPrediction(NamedTuple):
    loss_x: torch.Tensor  # labeled_loss of the mixed labeled rows
    unlabeled_logits: torch.Tensor  # the model's logits on the mixed unlabeled rows
    unlabeled_targets: torch.Tensor  # their mixed targets
    mixup_lambda: torch.Tensor


def mix_and_predict(
    model: nn.Module, batch: Batch, labeled_view: torch.Tensor, unlabeled_views: Sequence[torch.Tensor], guess: torch.Tensor, alpha: float
) -> MixedPrediction:
    """MixMatch's step after label guessing, which ReMixMatch repeats: mixup of all rows, one forward, the labeled loss.

    Every unlabeled view takes ``guess`` as its target; the labeled view its
    one-hot label.  All rows are mixed with each other (``mixup``) and
    forwarded at once, so BatchNorm's batch statistics and running averages
    see exactly that mixture, once.  A mixed labeled row keeps its own
    sample's weight: mixup keeps that sample the dominant part.  The
    unlabeled loss is each method's own (L2 for MixMatch, cross-entropy for
    ReMixMatch).
    """
    inputs = torch.cat([labeled_view, *unlabeled_views])
    labeled_targets = nnf.one_hot(batch.labeled_targets, guess.shape[1]).to(guess.dtype)
    targets = torch.cat([labeled_targets, guess.repeat(len(unlabeled_views), 1)])
    mixed_inputs, mixed_targets, lam = mixup(inputs, targets, alpha)
    logits, _ = model(mixed_inputs)
    num_labeled = labeled_view.shape[0]
    loss_x = labeled_loss(logits[:num_labeled], mixed_targets[:num_labeled], batch.labeled_weights)
    return MixedPrediction(loss_x, logits[num_labeled:], mixed_targets[num_labeled:], lam)


def linear_rampup(step: torch.Tensor | int, total_steps: int, fraction: float) -> torch.Tensor:
    """Weight growing linearly from 0 to 1 over the first ``fraction`` of training, then 1 (a 0-d tensor on ``step``'s device)."""
    rampup_steps = fraction * total_steps
    step = torch.as_tensor(step, dtype=torch.float32)
    if rampup_steps <= 0:
        return torch.ones_like(step)
    return (step / rampup_steps).clamp(max=1.0)


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


def pseudo_label_accuracy(labels: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of the rows (of ``mask``'s, if given) with a true label whose ``labels`` equal ``truth``:
    pseudo-label quality, for logs only. A pool sample's truth is NO_LABEL: it counts neither way."""
    scored = (truth != NO_LABEL).float() * (1.0 if mask is None else mask.float())
    return ((labels == truth).float() * scored).sum() / scored.sum().clamp_min(1)


def label_accuracy(probs: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``pseudo_label_accuracy`` of the rows' argmax."""
    return pseudo_label_accuracy(probs.argmax(dim=-1), truth)
