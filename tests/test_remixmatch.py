import torch

from hdl.ssl import build_algorithm, config_fields
from hdl.ssl.remixmatch import rotate_quarters
from ssl_fixtures import NUM_CLASSES, TinyNet, train_a_few_steps


def build(**overrides):
    return build_algorithm("remixmatch", NUM_CLASSES, TinyNet.feature_dim, overrides)


def test_published_defaults():
    fields = config_fields("remixmatch")
    assert (fields["temperature"], fields["num_strong"], fields["mixup_alpha"]) == (0.5, 8, 0.75)
    assert (fields["lambda_u"], fields["lambda_kl"], fields["lambda_rot"]) == (1.5, 0.5, 0.5)
    assert (fields["rampup_fraction"], fields["alignment_batches"]) == (1 / 64, 128)
    assert build().default_uratio == 1


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
    expected = probs * torch.tensor([3.0, 2.0, 1.0]) / 6 / p_model
    assert torch.allclose(algorithm.guess_labels(probs), expected / expected.sum())
    # the oldest batch leaves the running average after alignment_batches updates
    algorithm.remember_predictions(torch.tensor([[0.1, 0.1, 0.8]]))
    assert torch.allclose(algorithm.model_distribution(), torch.tensor([0.3, 0.2, 0.5]))


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
