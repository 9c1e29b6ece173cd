import pytest
import torch
from torch import nn

from hdl.errors import UserError
from hdl.nets import PreActBlock, build_net


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32)])
def test_logits_and_features_for_any_channels_and_size(channels, size):
    model = build_net("wrn-10-2", num_classes=7, in_channels=channels)
    logits, features = model(torch.randn(3, channels, size, size))
    assert logits.shape == (3, 7)
    assert features.shape == (3, 128) == (3, model.feature_dim)
    assert torch.allclose(model.classifier(features), logits)


def test_depth_and_width_follow_the_name():
    model = build_net("wrn-28-2", 10, 3)
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 12  # (28 - 4) / 6 per group, three groups
    assert [b.conv2.out_channels for b in blocks[::4]] == [32, 64, 128]
    assert model.feature_dim == 128
    assert build_net("wrn-28-8", 100, 3).feature_dim == 512


def test_reference_hyperparameters_and_initialisation():
    model = build_net("wrn-16-1", 10, 3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.momentum, m.eps) for m in norms} == {(0.001, 0.001)}
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.1}
    assert torch.all(model.classifier.bias == 0)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert build_net("wrn-10-1", 10, 3, bn_momentum=0.01).features[1].pre[0].momentum == 0.01


def test_shortcut_is_identity_only_when_the_shape_stays():
    model = build_net("wrn-16-1", 10, 3)
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    # wrn-16-1: 16 -> 16 channels in the first group keeps the shape; groups 2 and 3 halve the size
    assert [b.shortcut is None for b in blocks] == [True, True, False, True, False, True]


@pytest.mark.parametrize("arch", ["resnet18", "wrn-12-2", "wrn-28-0", "wrn-28"])
def test_bad_arch_names_are_user_errors(arch):
    with pytest.raises(UserError, match="arch"):
        build_net(arch, 10, 3)
