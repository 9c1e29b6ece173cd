import pytest
import torch
import torch.nn.functional as nnf

from hdl.ssl.ops import align_distribution, frozen_bn_statistics, labeled_loss, linear_rampup, mixup, sharpen
from ssl_fixtures import TinyNet


def test_sharpen_squares_and_renormalises_at_half_temperature():
    sharpened = sharpen(torch.tensor([[0.5, 0.3, 0.2]]), 0.5)
    assert torch.allclose(sharpened, torch.tensor([[25.0, 9.0, 4.0]]) / 38)


def test_sharpen_keeps_a_distribution_at_temperature_one_and_tends_to_one_hot():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.45, 0.1, 0.45]])
    assert torch.allclose(sharpen(probs, 1.0), probs)
    assert torch.allclose(sharpen(probs[:1], 1e-6), torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.allclose(sharpen(probs[1:], 1e-6), torch.tensor([[0.5, 0.0, 0.5]]))


def test_align_distribution_is_normalised_ratio():
    aligned = align_distribution(
        torch.tensor([[0.5, 0.3, 0.2]]), target=torch.tensor([0.2, 0.3, 0.5]), model_average=torch.tensor([0.4, 0.4, 0.2])
    )
    assert torch.allclose(aligned, torch.tensor([[10.0, 9.0, 20.0]]) / 39)


def test_align_distribution_adds_usbs_epsilon_so_an_empty_class_average_stays_finite():
    # USB's DistAlignEMAHook: probs * (p_target + 1e-6) / (p_model + 1e-6), then normalised
    probs, target, model_average = torch.tensor([[0.5, 0.3, 0.2]]), torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.6, 0.4, 0.0])
    expected = probs * (target + 1e-6) / (model_average + 1e-6)
    aligned = align_distribution(probs, target, model_average)
    assert torch.isfinite(aligned).all()
    assert torch.allclose(aligned, expected / expected.sum(), rtol=1e-6)


def test_mixup_is_a_convex_combination_that_stays_closer_to_the_first_input():
    n = 16
    inputs = torch.eye(n)
    torch.manual_seed(0)
    for _ in range(20):
        mixed_inputs, mixed_targets, lam = mixup(inputs, 2 * inputs, alpha=0.75)
        assert 0.5 <= lam <= 1.0
        assert torch.allclose(mixed_targets, 2 * mixed_inputs)  # targets mixed with the same lambda and partner
        assert torch.allclose(mixed_inputs.sum(dim=1), torch.ones(n))
        assert torch.equal(mixed_inputs.argmax(dim=1), torch.arange(n))  # row i is dominated by input i
        own = mixed_inputs.diagonal()
        assert torch.all(torch.isclose(own, lam) | torch.isclose(own, torch.tensor(1.0)))


def test_mixup_lambda_follows_the_torch_seed():
    x = torch.randn(8, 3)
    torch.manual_seed(1)
    first = mixup(x, x, 0.75)
    torch.manual_seed(1)
    second = mixup(x, x, 0.75)
    assert torch.equal(first[2], second[2]) and torch.equal(first[0], second[0])


def test_linear_rampup():
    assert linear_rampup(0, 6400, 1 / 64) == 0.0
    assert linear_rampup(50, 6400, 1 / 64) == pytest.approx(0.5)
    assert linear_rampup(100, 6400, 1 / 64) == 1.0
    assert linear_rampup(5000, 6400, 1 / 64) == 1.0
    assert linear_rampup(0, 6400, 0.0) == 1.0


def test_labeled_loss_weights_rows_and_takes_class_or_probability_targets():
    logits = torch.randn(5, 4)
    targets = torch.tensor([0, 3, 1, 1, 2])
    weights = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0])
    per_row = -nnf.log_softmax(logits, dim=-1)[torch.arange(5), targets]
    expected = (per_row * weights).sum() / weights.sum()
    assert labeled_loss(logits, targets, weights).item() == pytest.approx(expected.item(), rel=1e-6)
    assert labeled_loss(logits, nnf.one_hot(targets, 4).float(), weights).item() == pytest.approx(expected.item(), rel=1e-6)
    soft = torch.softmax(torch.randn(5, 4), dim=-1)
    expected_soft = (-(soft * nnf.log_softmax(logits, dim=-1)).sum(dim=-1) * weights).sum() / weights.sum()
    assert labeled_loss(logits, soft, weights).item() == pytest.approx(expected_soft.item(), rel=1e-6)
    assert labeled_loss(logits, targets, torch.zeros(5)).item() == 0.0  # a batch of zero-weight pseudo-labels adds nothing


def test_frozen_bn_statistics_leaves_running_averages_and_gradients_intact():
    torch.manual_seed(0)
    model = TinyNet()
    model(torch.randn(4, 1, 8, 8))
    norm = model.features[1]
    before = [norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.clone()]
    with frozen_bn_statistics(model):
        logits, _ = model(3 * torch.randn(4, 1, 8, 8) + 1)
    logits.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, [norm.running_mean, norm.running_var, norm.num_batches_tracked]))
    assert norm.momentum == 0.1
    assert model.features[0].weight.grad.abs().sum() > 0
    model(3 * torch.randn(4, 1, 8, 8) + 1)
    assert not torch.equal(before[0], norm.running_mean)
