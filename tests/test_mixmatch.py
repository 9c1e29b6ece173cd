import pytest
import torch

from hdl.ssl import StepContext, build_algorithm, config_fields
from ssl_fixtures import NUM_CLASSES, StandInViews, TinyNet, random_batch, train_a_few_steps


def test_published_defaults():
    fields = config_fields("mixmatch")
    assert (fields["temperature"], fields["num_augmentations"], fields["mixup_alpha"], fields["lambda_u"]) == (0.5, 2, 0.75, 75.0)
    assert fields["rampup_fraction"] == 0.4
    assert build_algorithm("mixmatch", NUM_CLASSES, TinyNet.feature_dim).default_uratio == 1


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
