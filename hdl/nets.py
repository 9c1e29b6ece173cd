"""Wide ResNet backbones as in the semi-supervised codebases (FixMatch, USB, TorchSSL).

``build_net("wrn-28-2", num_classes, in_channels)`` builds WRN-depth-width:
WRN-28-2 for CIFAR-10, WRN-28-8 for CIFAR-100, and small ones such as
WRN-10-1 for CPU runs, layer for layer as USB's ``semilearn/nets/wrn/wrn.py``
since its commit 7c7460f (Nov 2022; its published results came after it):
BatchNorm momentum 0.001 (a running-average decay of 0.999), eps 1e-5 in the
blocks and 0.001 before the pooling, LeakyReLU(0.1), no biases in the blocks'
convolutions, and only the first group's first block feeding its activated
input to the first convolution and the shortcut (the first blocks of groups 2
and 3 convolve the raw input, and their first BatchNorm goes unused, as in
USB; it stays so that the parameters match).  Any channel count and image size work:
the last feature map is average-pooled to 1x1.  ``model(x)`` returns
``(logits, features)``; the features are the penultimate layer, the
embeddings HDL labels with.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as nnf
from torch import nn

BN_MOMENTUM = 0.001
BLOCK_BN_EPS = 1e-5
FINAL_BN_EPS = 0.001
LEAKY_SLOPE = 0.1


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose running averages are updated here, at a ``momentum`` that may be a 0-d tensor.

    The trainer warms the momentum up step by step (``hdl.training.averaging``).
    As a Python float, every new value is a new constant to ``torch.compile``,
    which recompiles the step each time; as a tensor on the model's device,
    shared by all its BatchNorms (``share_momentum``) and changed in place, it
    is data.  A momentum of 0 (``hdl.ssl.ops.frozen_bn_statistics``) leaves
    the averages untouched.  Training normalises with the batch's statistics
    and saves no running statistics for the backward pass, so a later pass may
    update them in place.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nnf.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        output, mean, inverse_std = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
        momentum = self.momentum
        if isinstance(momentum, torch.Tensor) or momentum:
            with torch.no_grad():
                # The batch's unbiased variance, from the 1 / sqrt(var + eps) the kernel computed (1e-7 relative).
                count = x.numel() // x.shape[1]
                variance = (inverse_std.float().pow(-2) - self.eps).clamp_min(0) * (count / max(count - 1, 1))
                self.running_mean.lerp_(mean.float(), momentum)
                self.running_var.lerp_(variance, momentum)
                self.num_batches_tracked.add_(1)
        return output


def share_momentum(model: nn.Module, momentum: torch.Tensor) -> None:
    """Let every BatchNorm of ``model`` (all ``BatchNorm2d`` of this module) move its running averages at ``momentum``, a 0-d tensor the caller changes in place."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not isinstance(module, BatchNorm2d):
                raise TypeError(f"{type(module).__name__} cannot take a tensor momentum; build the model with hdl.nets.BatchNorm2d")
            module.momentum = momentum


def _bn_act(channels: int, bn_momentum: float, eps: float = BLOCK_BN_EPS) -> nn.Sequential:
    return nn.Sequential(BatchNorm2d(channels, eps=eps, momentum=bn_momentum), nn.LeakyReLU(LEAKY_SLOPE))


class PreActBlock(nn.Module):
    """BN-act-conv-BN-act-conv with an identity shortcut, or a 1x1 conv one when the shape changes.

    With a shape change, ``activate_first`` decides whether conv1 and the shortcut see the
    activated input (USB: only in the first group) or the raw one.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn_momentum: float, activate_first: bool = True):
        super().__init__()
        self.pre = _bn_act(in_channels, bn_momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.mid = _bn_act(out_channels, bn_momentum)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = (
            None if in_channels == out_channels and stride == 1 else nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
        )
        self.activate_first = activate_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return x + self.conv2(self.mid(self.conv1(self.pre(x))))
        inputs = self.pre(x) if self.activate_first else x
        return self.shortcut(inputs) + self.conv2(self.mid(self.conv1(inputs)))


class WideResNet(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int = 3, depth: int = 28, width: int = 2, bn_momentum: float = BN_MOMENTUM
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 or width < 1:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...) and width >= 1, got {depth}-{width}")
        blocks_per_group = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=True)]
        for group, stride in enumerate((1, 2, 2)):
            for block in range(blocks_per_group):
                first = block == 0
                layers.append(
                    PreActBlock(
                        channels[group + (not first)], channels[group + 1], stride if first else 1, bn_momentum, group == 0
                    )
                )
        layers += [_bn_act(channels[3], bn_momentum, FINAL_BN_EPS), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels[3], num_classes)
        self.feature_dim = channels[3]
        self.num_classes = num_classes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features), features


ARCH_PATTERN = re.compile(r"wrn-(\d+)-(\d+)")


def build_net(
    arch: str, num_classes: int, in_channels: int, bn_momentum: float = BN_MOMENTUM, device: torch.device | str = "cpu"
) -> WideResNet:
    """Build ``wrn-DEPTH-WIDTH`` (e.g. ``wrn-28-2``) on ``device``; an unknown name is a UserError.

    ``bn_momentum`` 0.001 is USB's; the trainer warms it up (``ema_warmup``)
    so that short runs have usable running statistics.  Parameters and
    buffers are created on ``device`` (initialised from its generator), with
    no CPU copy to move.  The convolution kernels are channels_last, the
    layout cuDNN and oneDNN (CPU) are fastest with; the activations follow
    them from the first convolution on, whatever the input's layout.
    """
    from hdl.errors import UserError

    match = ARCH_PATTERN.fullmatch(arch)
    if match is None:
        raise UserError(f"unknown --arch {arch!r}; use wrn-DEPTH-WIDTH, e.g. wrn-28-2 (CIFAR-10), wrn-28-8 (CIFAR-100), wrn-10-1 (CPU)")
    try:
        with torch.device(device):
            net = WideResNet(num_classes, in_channels, int(match.group(1)), int(match.group(2)), bn_momentum)
    except ValueError as error:
        raise UserError(f"--arch {arch}: {error}") from None
    nn.utils.convert_conv2d_weight_memory_format(net, torch.channels_last)
    return net
