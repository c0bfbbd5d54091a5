"""ResNeXt for CIFAR (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", 2017).

Depth 9n+2: a 3x3 stem of 64 channels, three stages of n bottleneck blocks (1x1 reduce, 3x3
grouped convolution with ``cardinality`` groups, 1x1 expand) whose outputs have 256/512/1024
channels, stride 2 at the start of stages 2 and 3, global average pooling and a linear layer.
ResNeXt-29 (8x64d), the paper's CIFAR model, has cardinality 8 and bottleneck width 64.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from model.wrn import init_weights

STAGE_OUT_CHANNELS = (256, 512, 1024)


def blocks_per_stage(depth: int) -> int:
    """Blocks n per stage of a ResNeXt of ``depth`` = 9n+2 layers (11, 20, 29, ...)."""
    if depth < 11 or (depth - 2) % 9 != 0:
        raise ValueError(f"Invalid ResNeXt depth {depth}: it must be 9n+2 with n >= 1 (11, 20, 29, ...).")
    return (depth - 2) // 9


class BottleneckBlock(nn.Module):
    """Aggregated transformation: 1x1 reduce to C*d*2^s channels, grouped 3x3, 1x1 expand."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int, group_width: int):
        super().__init__()
        inner = cardinality * group_width
        self.conv_reduce = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.conv_grouped = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn_grouped = nn.BatchNorm2d(inner)
        self.conv_expand = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn_reduce(self.conv_reduce(x)))
        o = F.relu(self.bn_grouped(self.conv_grouped(o)))
        o = self.bn_expand(self.conv_expand(o))
        return F.relu(o + self.shortcut(x))


class ResNeXt(nn.Module):
    """ResNeXt-depth (cardinality x bottleneck_width d).

    Args:
        depth: 9n+2 layers.
        cardinality: number of groups C in each grouped convolution.
        bottleneck_width: d, channels per group in the first stage (doubled at each stage).
        num_classes: size of the output.
        in_channels: channels of the input image.
    """

    def __init__(self, depth: int, cardinality: int = 8, bottleneck_width: int = 64,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        n = blocks_per_stage(depth)
        if cardinality < 1 or bottleneck_width < 1:
            raise ValueError(f"Invalid ResNeXt cardinality {cardinality} or bottleneck width {bottleneck_width}: both must be >= 1.")
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, in_ch = [], 64
        for s, (out_ch, stride) in enumerate(zip(STAGE_OUT_CHANNELS, (1, 2, 2))):
            blocks = []
            for i in range(n):
                blocks.append(BottleneckBlock(in_ch, out_ch, stride if i == 0 else 1,
                                              cardinality, bottleneck_width * 2 ** s))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(self.conv1(x)))            # (B, 64, H, W)
        o = self.stage3(self.stage2(self.stage1(o)))   # (B, 1024, H/4, W/4)
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))
