import math

import pytest
import torch
import torch.nn.functional as F

from hdl.ssl import Batch, StepContext, build_algorithm, config_fields
from hdl.ssl.fixmatch import confident_pseudo_labels
from ssl_fixtures import NUM_CLASSES, StandInViews, TinyNet, random_batch, train_a_few_steps


def test_defaults_are_the_paper_and_usb_values():
    # USB's config/classic_cv/fixmatch/fixmatch_cifar10_40_0.yaml: p_cutoff 0.95, ulb_loss_ratio 1.0, uratio 7 (as the paper).
    assert config_fields("fixmatch") == {"threshold": 0.95, "lambda_u": 1.0}
    assert build_algorithm("fixmatch", NUM_CLASSES, 6).default_uratio == 7


def test_mask_takes_confidence_at_or_above_the_threshold():
    margin = math.log(0.95 / 0.05)  # two classes: p_max = 0.95 exactly at this logit gap
    logits = torch.tensor([[margin + 1e-3, 0.0], [margin - 1e-3, 0.0], [0.0, margin + 1e-3], [0.0, 0.0]])
    pseudo_labels, mask = confident_pseudo_labels(logits, 0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pseudo_labels.tolist()[:3] == [0, 0, 1]
    exactly = torch.softmax(logits[1:2], -1).max().item()
    assert confident_pseudo_labels(logits[1:2], exactly)[1].item() == 1.0  # >=, as in both reference codebases


class StrongIsNegatedViews(StandInViews):
    """Deterministic views: weak = normalised image, strong = its negative, so the two views disagree."""

    def weak(self, images):
        return self.normalize(images)

    def strong(self, images):
        return -self.normalize(images)


def reference_loss(model, batch: Batch, threshold: float, lambda_u: float) -> torch.Tensor:
    views = StrongIsNegatedViews()
    logits_x, _ = model(views.weak(batch.labeled_images))
    logits_w, _ = model(views.weak(batch.unlabeled_images))
    logits_s, _ = model(views.strong(batch.unlabeled_images))
    probs = torch.softmax(logits_w.detach(), -1)
    mask = (probs.max(-1).values >= threshold).float()
    loss_x = (F.cross_entropy(logits_x, batch.labeled_targets, reduction="none") * batch.labeled_weights).sum() / batch.labeled_weights.sum()
    return loss_x + lambda_u * (F.cross_entropy(logits_s, probs.argmax(-1), reduction="none") * mask).mean()


@pytest.mark.parametrize("threshold", [0.0, 0.4, 1.01])
def test_loss_is_labeled_ce_plus_masked_strong_view_ce(threshold):
    torch.manual_seed(0)
    model = TinyNet().eval()  # eval: BatchNorm does not depend on how the batch is split into forwards
    batch = random_batch(4, 3)
    batch.labeled_weights = torch.tensor([1.0, 0.5, 0.0, 2.0])
    algorithm = build_algorithm("fixmatch", NUM_CLASSES, TinyNet.feature_dim, {"threshold": threshold, "lambda_u": 2.0})
    loss, logs = algorithm.training_step(model, batch, StepContext(0, 10, StrongIsNegatedViews()))
    assert loss.item() == pytest.approx(reference_loss(model, batch, threshold, 2.0).item(), rel=1e-5)
    if threshold == 0.0:
        assert logs["mask"].item() == 1.0
    if threshold > 1:
        assert logs["mask"].item() == 0.0 and logs["loss_u"].item() == 0.0


def test_trains_on_random_data():
    _, algorithm, loss, logs = train_a_few_steps("fixmatch", threshold=0.0)
    assert set(logs) == {"loss_x", "loss_u", "mask", "pseudo_acc"}
    assert logs["mask"].item() == 1.0 and logs["loss_u"].item() > 0
    assert algorithm.state_dict() == {}  # FixMatch keeps no state beyond its config
