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


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("arch, num_classes, total, usb_total", [
    ("wrn-28-2", 10, 1_469_642, 1_467_626),
    ("wrn-28-8", 100, 23_409_092, 23_401_028),
])
def test_parameter_counts_are_the_tensorflow_reference_and_usb_but_for_block_conv_biases(arch, num_classes, total, usb_total):
    """Ours: the counts of google-research/fixmatch's ResNet (convolutions with biases) and of USB's
    semilearn/nets/wrn/wrn.py before its commit 7c7460f (Nov 2022).  USB's wrn_28_2 / wrn_28_8 since then
    drop the biases of the residual blocks' convolutions and shortcuts, and nothing else."""
    model = build_net(arch, num_classes, 3)
    assert parameter_count(model) == total
    block_conv_biases = sum(
        conv.bias.numel()
        for block in model.modules() if isinstance(block, PreActBlock)
        for conv in (block.conv1, block.conv2, block.shortcut) if conv is not None
    )
    assert parameter_count(model) - block_conv_biases == usb_total


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
