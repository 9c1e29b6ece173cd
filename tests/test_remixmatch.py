import pytest
import torch
import torch.nn.functional as nnf

from hdl.errors import UserError
from hdl.ssl import StepContext, build_algorithm, config_fields
from hdl.ssl.remixmatch import rotate_quarters
from ssl_fixtures import NUM_CLASSES, PixelNet, StandInViews, TinyNet, gradients, papers_mixup, random_batch, train_a_few_steps


def build(**overrides):
    return build_algorithm("remixmatch", NUM_CLASSES, TinyNet.feature_dim, overrides)


def test_loss_weights_mixup_rampup_and_uratio_are_usb_values():
    # USB's config/classic_cv/remixmatch/remixmatch_cifar10_40_0.yaml: T 0.5, mixup_alpha 0.75,
    # ulb_loss_ratio 1.5, kl_loss_ratio 0.5, rot_loss_ratio 0.5, unsup_warm_up 0.015625, uratio 1;
    # google-research/remixmatch's flags agree.
    fields = config_fields("remixmatch")
    assert (fields["temperature"], fields["mixup_alpha"]) == (0.5, 0.75)
    assert (fields["lambda_u"], fields["lambda_kl"], fields["lambda_rot"]) == (1.5, 0.5, 0.5)
    assert fields["rampup_fraction"] == 1 / 64
    assert build().default_uratio == 1


def test_strong_views_are_the_papers_eight_not_usbs_two():
    # The paper anchors K = 8 strong views on each weak one; USB's train_step takes two (x_ulb_s_0, x_ulb_s_1).
    assert config_fields("remixmatch")["num_strong"] == 8


def test_alignment_averages_the_last_128_batches_as_the_tensorflow_reference_not_usbs_ema():
    # google-research/remixmatch: PMovingAverage over dbuf=128 batches; USB's DistAlignEMAHook: an EMA with momentum 0.999.
    assert config_fields("remixmatch")["alignment_batches"] == 128


def test_distribution_alignment_uses_the_split_distribution_and_the_recent_prediction_average():
    algorithm = build_algorithm(
        "remixmatch", NUM_CLASSES, TinyNet.feature_dim, {"alignment_batches": 2, "temperature": 1.0},
        labeled_distribution=torch.tensor([3.0, 2.0, 1.0]),
    )
    assert torch.allclose(algorithm.model_distribution(), torch.full((3,), 1 / 3))
    assert torch.allclose(algorithm.target_distribution(), torch.tensor([3.0, 2.0, 1.0]) / 6)
    algorithm.remember_predictions(torch.tensor([[0.6, 0.2, 0.2], [0.4, 0.4, 0.2]]))  # batch mean [0.5, 0.3, 0.2]
    p_model = (torch.tensor([0.5, 0.3, 0.2]) + 1 / 3) / 2
    assert torch.allclose(algorithm.model_distribution(), p_model)

    probs = torch.tensor([[0.2, 0.5, 0.3]])
    expected = probs * (torch.tensor([3.0, 2.0, 1.0]) / 6 + 1e-6) / (p_model + 1e-6)
    assert torch.allclose(algorithm.guess_labels(probs), expected / expected.sum())
    # the oldest batch leaves the running average after alignment_batches updates
    algorithm.remember_predictions(torch.tensor([[0.1, 0.1, 0.8]]))
    assert torch.allclose(algorithm.model_distribution(), torch.tensor([0.3, 0.2, 0.5]))


def remixmatch_reference(
    model, rotation_head, batch, seed, p_target, p_tilde, *,
    step, total_steps, temperature, num_strong, mixup_alpha, lambda_u, lambda_kl, lambda_rot, rampup_fraction, alignment_batches,
):
    """ReMixMatch's loss as Berthelot et al. (arXiv 1911.09785) write it in Algorithm 1 and "Putting it all together".

    The randomness is replayed from ``seed`` in Algorithm 1's order: the
    labeled weak view, the unlabeled weak view, the K strong views, then
    mixup's lambda and shuffle.  As in hdl.ssl.mixmatch's reference: one
    lambda for the batch, labeled rows weighted by ``batch.labeled_weights``.
    ``p_tilde`` is the running average of predictions before this batch.
    The rotation of the first strong view is row i mod 4 quarter turns (the
    paper draws it at random).  The weak view joins mixup, as in both codebases.
    """
    views = StandInViews()
    torch.manual_seed(seed)
    x_hat = views.weak(batch.labeled_images)
    u_weak = views.weak(batch.unlabeled_images)
    u_strong = [views.strong(batch.unlabeled_images) for _ in range(num_strong)]
    with torch.no_grad():  # the guess is a constant target
        q = torch.softmax(model(u_weak)[0], dim=-1)
        q = q * (p_target + 1e-6) / (p_tilde + 1e-6)  # the epsilon of the TensorFlow reference and USB
        q = q / q.sum(dim=-1, keepdim=True)  # distribution alignment: Normalize(q p(y) / p_tilde(y))
        q = q ** (1 / temperature)
        q = q / q.sum(dim=-1, keepdim=True)  # Sharpen
    p = nnf.one_hot(batch.labeled_targets, NUM_CLASSES).float()

    # the guess against the first strong view, before mixup (L_U1)
    loss_kl = -(q * torch.log_softmax(model(u_strong[0])[0], dim=-1)).sum(dim=-1).mean()
    # self-supervised rotation of the first strong view (L_rot)
    rotation = torch.arange(len(u_strong[0])) % 4
    rotated = torch.stack([torch.rot90(image, int(turns), dims=(-2, -1)) for image, turns in zip(u_strong[0], rotation)])
    loss_rot = nnf.cross_entropy(rotation_head(model(rotated)[1]), rotation)

    # augmentation anchoring: each strong view (and the weak one) gets the weak view's guess; then MixMatch's mixup
    inputs, targets = torch.cat([x_hat, u_weak, *u_strong]), torch.cat([p, *[q] * (1 + num_strong)])
    mixed_inputs, mixed_targets, lam = papers_mixup(inputs, targets, mixup_alpha)

    n = len(x_hat)
    log_probs = torch.log_softmax(model(mixed_inputs)[0], dim=-1)
    per_row_x = -(mixed_targets[:n] * log_probs[:n]).sum(dim=-1)
    loss_x = (per_row_x * batch.labeled_weights).sum() / batch.labeled_weights.sum()
    loss_u = -(mixed_targets[n:] * log_probs[n:]).sum(dim=-1).mean()  # cross-entropy, where MixMatch had L2
    ramp = min(1.0, step / (rampup_fraction * total_steps))  # on lambda_u and lambda_kl only, as both codebases
    return loss_x + ramp * (lambda_u * loss_u + lambda_kl * loss_kl) + lambda_rot * loss_rot, lam


@pytest.mark.parametrize("step", [0, 1, 20])  # ramp weights 0, 1/2 and 1
def test_loss_on_a_fixed_batch_is_the_papers(step):
    torch.manual_seed(0)
    model = PixelNet()
    batch = random_batch(4, 2)
    batch.labeled_weights = torch.tensor([1.0, 0.5, 0.0, 2.0])
    settings = {
        "temperature": 0.5, "num_strong": 3, "mixup_alpha": 0.75, "lambda_u": 1.5, "lambda_kl": 0.5, "lambda_rot": 0.5,
        "rampup_fraction": 0.1, "alignment_batches": 2,
    }
    p_target = torch.tensor([0.5, 0.3, 0.2])
    algorithm = build_algorithm("remixmatch", NUM_CLASSES, PixelNet.feature_dim, settings, labeled_distribution=5 * p_target)
    earlier_batches = [torch.tensor([[0.6, 0.3, 0.1]]), torch.tensor([[0.1, 0.1, 0.8], [0.1, 0.3, 0.6]])]
    for probs in earlier_batches:
        algorithm.remember_predictions(probs)
    p_tilde = torch.stack([probs.mean(dim=0) for probs in earlier_batches]).mean(dim=0)

    torch.manual_seed(1)
    loss, logs = algorithm.training_step(model, batch, StepContext(step=step, total_steps=20, views=StandInViews()))
    expected, lam = remixmatch_reference(model, algorithm.rotation_head, batch, 1, p_target, p_tilde, step=step, total_steps=20, **settings)

    assert logs["mixup_lambda"].item() == pytest.approx(lam.item())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    parameters = [*model.parameters(), *algorithm.parameters()]
    for ours, reference in zip(gradients(loss, parameters), gradients(expected, parameters)):
        assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6)


def test_rotation_uses_four_quarter_turns():
    images = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).view(8, 2, 3, 3)
    rotated, rotation = rotate_quarters(images)
    assert rotation.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    for image, turned, k in zip(images, rotated, rotation.tolist()):
        assert torch.equal(turned, torch.rot90(image, k, dims=(-2, -1)))
    assert build().rotation_head.out_features == 4


def test_state_survives_a_state_dict_round_trip():
    _, trained, _, _ = train_a_few_steps("remixmatch", num_strong=2)
    fresh = build(num_strong=2)
    fresh.load_state_dict(trained.state_dict())
    for name in ("recent_predictions", "rotation_head.weight"):
        assert torch.equal(fresh.state_dict()[name], trained.state_dict()[name])
    assert not torch.allclose(fresh.model_distribution(), torch.full((3,), 1 / 3))


def test_a_few_training_steps_give_finite_loss_and_train_the_rotation_head():
    _, algorithm, _, logs = train_a_few_steps("remixmatch")
    assert algorithm.rotation_head.weight.grad.abs().sum() > 0
    assert logs["rampup"] == 1.0 and logs["loss_rot"] > 0 and logs["loss_kl"] > 0
    # training (pseudo-labels included) never moves the alignment target off the split's distribution
    assert torch.equal(algorithm.target_distribution(), torch.full((3,), 1 / 3))


def test_alignment_target_can_be_uniform_as_in_usbs_long_tailed_configs():
    algorithm = build_algorithm(
        "remixmatch", NUM_CLASSES, TinyNet.feature_dim, {"alignment_target": "uniform"},
        labeled_distribution=torch.tensor([3.0, 2.0, 1.0]),
    )
    assert torch.allclose(algorithm.target_distribution(), torch.full((3,), 1 / 3))
    with pytest.raises(UserError, match="alignment_target"):
        build_algorithm("remixmatch", NUM_CLASSES, TinyNet.feature_dim, {"alignment_target": "head"})
