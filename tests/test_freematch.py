import math

import pytest
import torch
import torch.nn.functional as nnf

from hdl.ssl import StepContext, build_algorithm, config_fields
from hdl.ssl.freematch import fairness_loss
from ssl_fixtures import NUM_CLASSES, PixelNet, StandInViews, TinyNet, gradients, random_batch, train_a_few_steps


def build(**overrides):
    return build_algorithm("freematch", NUM_CLASSES, TinyNet.feature_dim, overrides)


def test_defaults_are_usb_values_and_state_starts_at_one_over_c():
    # USB's config/classic_cv/freematch/freematch_cifar10_40_0.yaml: ema_p 0.999, ent_loss_ratio 0.001, uratio 7,
    # ulb_loss_ratio not set (train.py's default 1.0). Tau, p_model and the histogram start at 1/C in the paper and in USB.
    fields = config_fields("freematch")
    assert (fields["ema_momentum"], fields["lambda_u"], fields["lambda_fairness"]) == (0.999, 1.0, 0.001)
    algorithm = build()
    assert algorithm.default_uratio == 7
    for state in (algorithm.time_p, algorithm.p_model, algorithm.label_hist):
        assert torch.allclose(state, torch.tensor(1 / 3))


def test_one_update_is_the_ema_of_the_batch_statistics():
    algorithm = build()
    algorithm.update_thresholds(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    m = 0.999
    assert algorithm.time_p.item() == pytest.approx(m / 3 + (1 - m) * 0.65)
    assert torch.allclose(algorithm.p_model, m / 3 + (1 - m) * torch.tensor([0.4, 0.4, 0.2]))
    assert torch.allclose(algorithm.label_hist, m / 3 + (1 - m) * torch.tensor([0.5, 0.5, 0.0]))
    thresholds = algorithm.p_model / algorithm.p_model.max() * algorithm.time_p
    assert torch.allclose(algorithm.class_thresholds(), thresholds)


def test_mask_takes_samples_at_their_class_threshold():
    algorithm = build()
    algorithm.time_p.fill_(0.5)
    algorithm.p_model.copy_(torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(algorithm.class_thresholds(), torch.tensor([0.5, 0.25, 0.25]))
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.49, 0.26, 0.25], [0.3, 0.4, 0.3]])
    assert algorithm.confident(probs).tolist() == [True, False, True]


def test_fairness_loss_value():
    logits = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]).log()
    loss = fairness_loss(logits, p_model=torch.tensor([0.5, 0.3, 0.2]), label_hist=torch.tensor([0.5, 0.25, 0.25]))
    # target SumNorm([1, 1.2, 0.8]); batch mean [0.4, 0.5, 0.1] over histogram [0.5, 0.5, 0] -> [4/9, 5/9, 0]
    expected = math.log(4 / 9) / 3 + 0.4 * math.log(5 / 9) + 4 / 15 * math.log(1e-12)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def fairness_reference(strong_logits, mask, p_tilde, h_tilde):
    """L_f = -H(SumNorm(p_tilde / h_tilde), SumNorm(p_bar / h_bar)) over the strong predictions of the masked
    rows, indexed out as USB does; with no masked row there is no fairness loss (USB: ``if mask.sum() > 0``)."""
    if not mask.any():
        return torch.tensor(0.0)
    strong_probs = torch.softmax(strong_logits[mask.bool()], dim=-1)
    p_bar = strong_probs.mean(dim=0)
    h_bar = torch.bincount(strong_probs.argmax(dim=-1), minlength=strong_logits.shape[1]).float()
    target = p_tilde / h_tilde
    target = target / target.sum()
    batch_ratio = p_bar * torch.where(h_bar > 0, 1 / h_bar, 0.0)  # USB's replace_inf_to_zero(1 / hist_s)
    batch_ratio = batch_ratio / batch_ratio.sum()
    return (target * torch.log(batch_ratio + 1e-12)).sum()


def freematch_reference(model, batches, seeds, *, ema_momentum, lambda_u, lambda_fairness, tau=1 / NUM_CLASSES):
    """FreeMatch's loss on consecutive batches as Wang et al. (arXiv 2205.07246) write it: self-adaptive thresholds and fairness.

    The self-adaptive global threshold tau (unless given), the class distribution p_tilde
    and the histogram h_tilde start at 1/C and are updated with each batch's weak
    predictions before its mask is taken.  Each batch's views are replayed from
    its seed (labeled weak, unlabeled weak, unlabeled strong).  Two conventions
    of USB where the paper is silent: a class absent from the masked batch's
    histogram gets weight 0 in SumNorm(p_bar / h_bar), and the log adds 1e-12.
    Labeled rows are weighted by ``batch.labeled_weights``.
    """
    views = StandInViews()
    m = ema_momentum
    tau = torch.tensor(tau)
    p_tilde = torch.full((NUM_CLASSES,), 1 / NUM_CLASSES)
    h_tilde = torch.full((NUM_CLASSES,), 1 / NUM_CLASSES)
    losses, masks = [], []
    for batch, seed in zip(batches, seeds):
        torch.manual_seed(seed)
        x_weak, u_weak, u_strong = views.weak(batch.labeled_images), views.weak(batch.unlabeled_images), views.strong(batch.unlabeled_images)
        q = torch.softmax(model(u_weak)[0], dim=-1).detach()
        confidence, q_hat = q.max(dim=-1)
        tau = m * tau + (1 - m) * confidence.mean()  # self-adaptive global threshold
        p_tilde = m * p_tilde + (1 - m) * q.mean(dim=0)  # expected prediction per class
        h_tilde = m * h_tilde + (1 - m) * torch.bincount(q_hat, minlength=NUM_CLASSES) / len(q_hat)
        thresholds = p_tilde / p_tilde.max() * tau  # self-adaptive local thresholds: MaxNorm(p_tilde) * tau
        mask = (confidence >= thresholds[q_hat]).float()  # ties (measure zero here) count, as in USB

        per_row_x = nnf.cross_entropy(model(x_weak)[0], batch.labeled_targets, reduction="none")
        loss_s = (per_row_x * batch.labeled_weights).sum() / batch.labeled_weights.sum()
        strong_logits = model(u_strong)[0]
        loss_u = (mask * nnf.cross_entropy(strong_logits, q_hat, reduction="none")).mean()  # averaged over all mu B rows

        loss_f = fairness_reference(strong_logits, mask, p_tilde, h_tilde)
        losses.append(loss_s + lambda_u * loss_u + lambda_fairness * loss_f)
        masks.append(mask)
    return losses, masks


def test_loss_on_two_consecutive_batches_is_the_papers():
    torch.manual_seed(0)
    model = PixelNet()
    batches = [random_batch(4, 7) for _ in range(2)]
    batches[1].labeled_weights = torch.tensor([1.0, 0.5, 0.0, 2.0])
    settings = {"ema_momentum": 0.5, "lambda_u": 2.0, "lambda_fairness": 0.5}  # a fast average, so the thresholds move
    algorithm = build_algorithm("freematch", NUM_CLASSES, PixelNet.feature_dim, settings)

    losses = []
    for step, batch in enumerate(batches):
        torch.manual_seed(10 + step)
        losses.append(algorithm.training_step(model, batch, StepContext(step=step, total_steps=2, views=StandInViews()))[0])
    expected, masks = freematch_reference(model, batches, [10, 11], **settings)

    assert all(0 < mask.mean() < 1 for mask in masks)  # the thresholds decide
    parameters = list(model.parameters())
    for ours, reference in zip(losses, expected):
        assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
        for ours_gradient, reference_gradient in zip(gradients(ours, parameters), gradients(reference, parameters)):
            assert torch.allclose(ours_gradient, reference_gradient, rtol=1e-4, atol=1e-6)


def test_state_survives_a_state_dict_round_trip():
    _, trained, _, _ = train_a_few_steps("freematch")
    assert set(trained.state_dict()) == {"time_p", "p_model", "label_hist"}
    fresh = build()
    fresh.load_state_dict(trained.state_dict())
    for name, value in trained.state_dict().items():
        assert torch.equal(getattr(fresh, name), value)
    assert fresh.time_p.item() != pytest.approx(1 / 3)


def test_fairness_loss_on_a_mask_is_usbs_on_the_masked_rows_and_nothing_on_an_empty_one():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    p_model, label_hist = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.4, 0.4, 0.2])
    for mask in (torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), torch.zeros(6)):
        loss = fairness_loss(logits, p_model, label_hist, mask)
        expected = fairness_reference(logits, mask, p_model, label_hist)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6, abs=0)
        (gradient,) = torch.autograd.grad(loss, logits)
        expected_gradient = torch.autograd.grad(expected, logits)[0] if expected.requires_grad else torch.zeros_like(logits)
        assert torch.allclose(gradient, expected_gradient, rtol=1e-5, atol=1e-7)
    assert loss.item() == 0.0 and torch.equal(gradient, torch.zeros_like(logits))


def test_a_step_whose_mask_is_empty_is_the_papers_loss_without_fairness():
    torch.manual_seed(0)
    model = PixelNet()
    batch = random_batch(4, 7)
    algorithm = build_algorithm("freematch", NUM_CLASSES, PixelNet.feature_dim, {"lambda_fairness": 0.5})
    algorithm.time_p.fill_(2.0)  # a threshold no probability reaches
    torch.manual_seed(1)
    loss, logs = algorithm.training_step(model, batch, StepContext(step=0, total_steps=1, views=StandInViews()))
    (expected,), (mask,) = freematch_reference(model, [batch], [1], ema_momentum=0.999, lambda_u=1.0, lambda_fairness=0.5, tau=2.0)
    assert not mask.any() and logs["mask"].item() == 0.0 and logs["loss_fairness"].item() == 0.0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    parameters = list(model.parameters())
    for ours_gradient, reference_gradient in zip(gradients(loss, parameters), gradients(expected, parameters)):
        assert torch.isfinite(ours_gradient).all()
        assert torch.allclose(ours_gradient, reference_gradient, rtol=1e-4, atol=1e-6)
