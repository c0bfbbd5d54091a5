"""CIFAR ResNet of He et al., "Deep Residual Learning for Image Recognition" (2015), section 4.2.

6n+2 layers: a 3x3 stem of 16 channels, three stages of n post-activation basic blocks with
16/32/64 channels (stride 2 at the start of stages 2 and 3), global average pooling and a linear
layer. Shortcuts are parameter-free (option A: subsample and zero-pad channels), so ResNet-20 has
0.27M parameters as in the paper's Table 6.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from model.wrn import PoolShortcut, init_weights


def blocks_per_stage(depth: int) -> int:
    """Blocks n per stage of a ResNet of ``depth`` = 6n+2 layers (20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"Invalid ResNet depth {depth}: it must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...).")
    return (depth - 2) // 6


class SubsampleShortcut(PoolShortcut):
    """Option A of the paper: take every stride-th pixel, zero-pad the new channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class ResidualBlock(nn.Module):
    """Original (post-activation) basic block: conv-BN-ReLU-conv-BN, add, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        same = in_channels == out_channels and stride == 1
        self.shortcut = nn.Identity() if same else SubsampleShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        return F.relu(o + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images.

    Args:
        depth: 6n+2 layers.
        num_classes: size of the output.
        in_channels: channels of the input image.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        n = blocks_per_stage(depth)
        widths = [16, 16, 32, 64]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        for s, stride in enumerate((1, 2, 2)):
            stages.append(nn.Sequential(*[
                ResidualBlock(widths[s] if i == 0 else widths[s + 1], widths[s + 1], stride if i == 0 else 1)
                for i in range(n)]))
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(self.conv1(x)))              # (B, 16, H, W)
        o = self.stage3(self.stage2(self.stage1(o)))     # (B, 64, H/4, W/4)
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))
