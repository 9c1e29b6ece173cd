import math

import pytest
import torch

from hdl.ssl import build_algorithm, config_fields
from hdl.ssl.freematch import fairness_loss
from ssl_fixtures import NUM_CLASSES, TinyNet, train_a_few_steps


def build(**overrides):
    return build_algorithm("freematch", NUM_CLASSES, TinyNet.feature_dim, overrides)


def test_published_defaults_and_initial_state():
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


def test_state_survives_a_state_dict_round_trip():
    _, trained, _, _ = train_a_few_steps("freematch")
    assert set(trained.state_dict()) == {"time_p", "p_model", "label_hist"}
    fresh = build()
    fresh.load_state_dict(trained.state_dict())
    for name, value in trained.state_dict().items():
        assert torch.equal(getattr(fresh, name), value)
    assert fresh.time_p.item() != pytest.approx(1 / 3)


def test_a_few_training_steps_give_finite_loss_and_gradients():
    _, _, _, logs = train_a_few_steps("freematch")
    assert 0.0 <= logs["mask"] <= 1.0
    assert logs["masked_correct"] <= logs["mask"]
