import pytest
import torch
import torch.nn.functional as nnf

from hdl.ssl import StepContext, build_algorithm, config_fields
from ssl_fixtures import NUM_CLASSES, PixelNet, StandInViews, TinyNet, gradients, papers_mixup, random_batch, train_a_few_steps


def test_mixup_alpha_and_lambda_u_are_the_paper_values_not_usb():
    # Paper (CIFAR-10): alpha 0.75, lambda_u 75. USB's config/classic_cv/mixmatch/mixmatch_cifar10_40_0.yaml
    # has mixup_alpha 0.5 and ulb_loss_ratio 100.
    fields = config_fields("mixmatch")
    assert (fields["mixup_alpha"], fields["lambda_u"]) == (0.75, 75.0)


def test_temperature_views_rampup_and_uratio_are_usb_values():
    # USB's mixmatch_cifar10_40_0.yaml: T 0.5, two unlabeled views, unsup_warm_up 0.4, uratio 1.
    # The paper's code ramps lambda_u over 1/64 of training instead of 0.4 (see hdl/ssl/mixmatch.py).
    fields = config_fields("mixmatch")
    assert (fields["temperature"], fields["num_augmentations"], fields["rampup_fraction"]) == (0.5, 2, 0.4)
    assert build_algorithm("mixmatch", NUM_CLASSES, TinyNet.feature_dim).default_uratio == 1


def mixmatch_reference(model, batch, seed, *, step, total_steps, temperature, num_augmentations, mixup_alpha, lambda_u, rampup_fraction):
    """MixMatch's loss as Berthelot et al. (arXiv 1905.02249) write it: Algorithm 1 and eqs. 2-5.

    The randomness is replayed from ``seed`` in Algorithm 1's order: the
    labeled view, the K unlabeled views, then mixup's lambda and shuffle
    (``papers_mixup``: one lambda for the batch, as USB).  Labeled rows are
    weighted by ``batch.labeled_weights`` (1 for given labels; HDL's weight
    for a pseudo-label).  Returns the loss and lambda.
    """
    views = StandInViews()
    torch.manual_seed(seed)
    x_hat = views.weak(batch.labeled_images)
    u_hat = [views.weak(batch.unlabeled_images) for _ in range(num_augmentations)]
    with torch.no_grad():  # the guess is a constant target
        q_bar = torch.stack([torch.softmax(model(u)[0], dim=-1) for u in u_hat]).mean(dim=0)  # eq. 6
        q = q_bar ** (1 / temperature)
        q = q / q.sum(dim=-1, keepdim=True)  # eq. 7, Sharpen
    p = nnf.one_hot(batch.labeled_targets, NUM_CLASSES).float()

    mixed_inputs, mixed_targets, lam = papers_mixup(torch.cat([x_hat, *u_hat]), torch.cat([p, *[q] * num_augmentations]), mixup_alpha)

    n = len(x_hat)
    log_probs = torch.log_softmax(model(mixed_inputs)[0], dim=-1)
    per_row_x = -(mixed_targets[:n] * log_probs[:n]).sum(dim=-1)  # eq. 3: H(p, p_model(y | x))
    loss_x = (per_row_x * batch.labeled_weights).sum() / batch.labeled_weights.sum()
    loss_u = (mixed_targets[n:] - log_probs[n:].exp()).square().sum(dim=-1).mean() / NUM_CLASSES  # eq. 4: ||q - p||^2 / (L |U'|)
    ramp = min(1.0, step / (rampup_fraction * total_steps))
    return loss_x + lambda_u * ramp * loss_u, lam  # eq. 5


@pytest.mark.parametrize("step", [3, 20])  # inside the ramp-up (weight 3/8) and after it
def test_loss_on_a_fixed_batch_is_the_papers(step):
    torch.manual_seed(0)
    model = PixelNet()
    batch = random_batch(4, 1)
    batch.labeled_weights = torch.tensor([1.0, 0.5, 0.0, 2.0])
    settings = {"temperature": 0.5, "num_augmentations": 3, "mixup_alpha": 0.75, "lambda_u": 75.0, "rampup_fraction": 0.4}
    algorithm = build_algorithm("mixmatch", NUM_CLASSES, PixelNet.feature_dim, settings)

    torch.manual_seed(1)
    loss, logs = algorithm.training_step(model, batch, StepContext(step=step, total_steps=20, views=StandInViews()))
    expected, lam = mixmatch_reference(model, batch, seed=1, step=step, total_steps=20, **settings)

    assert logs["mixup_lambda"].item() == pytest.approx(lam.item())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    parameters = list(model.parameters())
    for ours, reference in zip(gradients(loss, parameters), gradients(expected, parameters)):
        assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("step, expected_weight", [(0, 0.0), (1280, 37.5), (2560, 75.0), (6399, 75.0)])
def test_unlabeled_weight_ramps_up_linearly(step, expected_weight):
    torch.manual_seed(0)
    algorithm = build_algorithm("mixmatch", NUM_CLASSES, TinyNet.feature_dim)
    context = StepContext(step=step, total_steps=6400, views=StandInViews())
    _, logs = algorithm.training_step(TinyNet(), random_batch(4, 1), context)
    assert logs["weight_u"] == pytest.approx(expected_weight)
    assert 0.5 <= logs["mixup_lambda"] <= 1.0


def test_guessing_pass_leaves_batchnorm_averages_to_the_mixed_pass():
    torch.manual_seed(0)
    model = TinyNet()
    algorithm = build_algorithm("mixmatch", NUM_CLASSES, TinyNet.feature_dim)
    algorithm.training_step(model, random_batch(4, 1), StepContext(step=0, total_steps=10, views=StandInViews()))
    assert model.features[1].num_batches_tracked.item() == 1


def test_a_few_training_steps_give_finite_loss_and_gradients():
    _, _, loss, logs = train_a_few_steps("mixmatch")
    assert logs["weight_u"] == 75.0 and logs["loss_u"] > 0
