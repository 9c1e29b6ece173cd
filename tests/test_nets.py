import pytest
import torch
from torch import nn

from hdl.errors import UserError
from hdl.nets import BLOCK_BN_EPS, BatchNorm2d, PreActBlock, build_net, share_momentum
from hdl.training.averaging import averaging_rates


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32)])
def test_logits_and_features_for_any_channels_and_size(channels, size):
    model = build_net("wrn-10-2", num_classes=7, in_channels=channels)
    logits, features = model(torch.randn(3, channels, size, size))
    assert logits.shape == (3, 7)
    assert features.shape == (3, 128) == (3, model.feature_dim)
    assert torch.allclose(model.classifier(features), logits)


def test_convolutions_are_channels_last_on_the_cpu_and_compute_what_the_nchw_layout_does():
    torch.manual_seed(0)
    net = build_net("wrn-10-1", 10, 1).eval()
    convolutions = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    assert all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convolutions)
    nchw = build_net("wrn-10-1", 10, 1).eval()
    nchw.load_state_dict(net.state_dict())
    nn.utils.convert_conv2d_weight_memory_format(nchw, torch.contiguous_format)
    images = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        (logits, features), (nchw_logits, nchw_features) = net(images), nchw(images)
    torch.testing.assert_close(logits, nchw_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features, nchw_features, rtol=1e-4, atol=1e-5)


def test_depth_and_width_follow_the_name():
    model = build_net("wrn-28-2", 10, 3)
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 12  # (28 - 4) / 6 per group, three groups
    assert [b.conv2.out_channels for b in blocks[::4]] == [32, 64, 128]
    assert model.feature_dim == 128
    assert build_net("wrn-28-8", 100, 3).feature_dim == 512


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("arch, num_classes, total", [("wrn-28-2", 10, 1_467_626), ("wrn-28-8", 100, 23_401_028)])
def test_parameter_counts_are_usbs(arch, num_classes, total):
    """Counted from USB's semilearn/nets/wrn/wrn.py (since commit 7c7460f: no biases in the blocks'
    convolutions; before it, with them, WRN-28-2 had 1,469,642 and WRN-28-8 23,409,092)."""
    assert parameter_count(build_net(arch, num_classes, 3)) == total


def test_only_the_first_groups_first_block_activates_before_the_shortcut():
    blocks = [m for m in build_net("wrn-16-1", 10, 3).modules() if isinstance(m, PreActBlock)]
    changing = [block for block in blocks if block.shortcut is not None]
    assert [block.activate_first for block in changing] == [False, False]  # wrn-16-1's group 1 keeps 16 channels
    model = build_net("wrn-10-2", 10, 3).eval()
    first_of_group_2 = [m for m in model.modules() if isinstance(m, PreActBlock)][1]
    x = torch.randn(2, 32, 8, 8)
    expected = first_of_group_2.shortcut(x) + first_of_group_2.conv2(first_of_group_2.mid(first_of_group_2.conv1(x)))
    assert torch.allclose(first_of_group_2(x), expected)


def test_reference_hyperparameters_and_initialisation():
    model = build_net("wrn-16-1", 10, 3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.momentum, m.eps) for m in norms[:-1]} == {(0.001, 1e-5)} and (norms[-1].momentum, norms[-1].eps) == (0.001, 0.001)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.1}
    assert torch.all(model.classifier.bias == 0)
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert torch.all(convolutions[0].bias == 0) and all(m.bias is None for m in convolutions[1:])
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


def test_batchnorm_running_statistics_and_eval_output_match_torchs_under_a_changing_tensor_momentum():
    """hdl's BatchNorm2d keeps its own running averages (at a 0-d tensor momentum the trainer changes in
    place); over 20 steps of the warm-up's momenta (0.9 down to 0.31) they must stay torch's: the unbiased
    variance, moved by momentum. Measured: 2.4e-7 relative at worst (two float32 ulps, from recovering the
    variance from 1 / sqrt(var + eps)); a dropped Bessel correction is 1 / 199 off here."""
    torch.manual_seed(0)
    ours = BatchNorm2d(6, eps=BLOCK_BN_EPS)
    reference = nn.BatchNorm2d(6, eps=BLOCK_BN_EPS)
    with torch.no_grad():
        for norm in (ours, reference):
            norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
            norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    momentum = torch.zeros(())
    share_momentum(ours, momentum)
    for step in range(20):
        momentum.fill_(averaging_rates(0.999, 0.001, step, warmup=True)[1])
        reference.momentum = momentum.item()
        batch = torch.randn(8, 6, 5, 5) * torch.linspace(0.5, 3.0, 6).view(1, 6, 1, 1) + step / 4
        assert torch.allclose(ours(batch), reference(batch), rtol=1e-6, atol=1e-6)
        assert torch.allclose(ours.running_mean, reference.running_mean, rtol=1e-6, atol=1e-7)
        assert torch.allclose(ours.running_var, reference.running_var, rtol=1e-6, atol=0)
    assert torch.equal(ours.num_batches_tracked, reference.num_batches_tracked)
    ours.eval()
    reference.eval()
    batch = 2 * torch.randn(4, 6, 5, 5) + 3
    assert torch.allclose(ours(batch), reference(batch), rtol=1e-6, atol=1e-6)
