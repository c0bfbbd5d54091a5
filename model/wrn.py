"""Wide Residual Network (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

Follows the authors' reference implementation: pre-activation basic blocks B(3,3) of
BN-ReLU-conv3x3, dropout between the two convolutions, a 1x1 projection shortcut where the shape
changes, three groups of 16k/32k/64k channels with stride 2 at the start of groups 2 and 3, and a
BN-ReLU-global-average-pool-linear head that works for any input size. Depth is 6n+4.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def blocks_per_group(depth: int) -> int:
    """Number of blocks n in each of the three groups of a WRN of ``depth`` = 6n+4 layers.

    Raises:
        ValueError: if depth is not of the form 6n+4 with n >= 1.
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"Invalid WRN depth {depth}: it must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...).")
    return (depth - 4) // 6


class PoolShortcut(nn.Module):
    """Parameter-free shortcut: average-pool to the new size, then zero-pad the channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:  # ceil_mode: same output size as the strided 3x3 conv, also for odd sizes
            x = F.avg_pool2d(x, self.stride, ceil_mode=True)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pad the channel dimension


class BasicBlock(nn.Module):
    """Pre-activation block B(3,3): BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float, shortcut: str):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.equal_in_out = in_channels == out_channels and stride == 1
        if self.equal_in_out:
            self.shortcut = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
        else:
            self.shortcut = PoolShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        # As in the reference code, a projection shortcut takes the pre-activated input.
        residual = x if self.equal_in_out else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(F.relu(self.bn2(o))))
        return o + residual


class WideResNet(nn.Module):
    """WRN-depth-k.

    Args:
        depth: total number of layers, 6n+4.
        widen_factor: k; the groups have 16k, 32k and 64k channels.
        num_classes: size of the output.
        dropout: dropout probability between the two convolutions of each block.
        shortcut: "conv" (1x1 projection, the paper) or "pool" (parameter-free).
        in_channels: channels of the input image.
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10, dropout: float = 0.0,
                 shortcut: str = "conv", in_channels: int = 3):
        super().__init__()
        n = blocks_per_group(depth)
        if widen_factor < 1:
            raise ValueError(f"Invalid widen factor {widen_factor}: it must be >= 1.")
        if shortcut not in ("conv", "pool"):
            raise ValueError(f"Invalid shortcut {shortcut!r}. Only 'conv' and 'pool' are supported.")
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            blocks = [BasicBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1],
                                 stride if i == 0 else 1, dropout, shortcut) for i in range(n)]
            groups.append(nn.Sequential(*blocks))
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.conv1(x)                       # (B, 16, H, W)
        o = self.group3(self.group2(self.group1(o)))  # (B, 64k, H/4, W/4)
        o = F.relu(self.bn(o))
        o = F.adaptive_avg_pool2d(o, 1).flatten(1)  # (B, 64k): any input size
        return self.fc(o)


def init_weights(module: nn.Module) -> None:
    """He (fan-out) normal init for convolutions, BN to identity, zero linear bias, as the reference."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
