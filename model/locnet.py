"""LocNet, the digit localiser's network (see ``model.localiser`` for what its outputs mean).

A stride-2 stem and four stages of the WRN's pre-activation blocks (``model.wrn.BasicBlock``), each
starting with a stride-2 block, take the input to stride 32; a top-down path (nearest upsampling added to a 1x1
projection of the earlier stage, as in a feature pyramid) brings it back to stride 4, where a
BN-ReLU-conv3x3-ReLU-conv1x1 head predicts the five maps. Width ``w`` gives stages of
w, 2w, 4w, 4w channels; at w = 16 the network has about 0.3 M parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.localiser import OUTPUTS, blocks_per_stage
from model.wrn import BasicBlock, init_weights

HEAT_PRIOR = 0.01   # initial centre probability everywhere, as in focal-loss detectors


class LocNet(nn.Module):
    """The localiser.

    Args:
        depth: extra blocks per stage after its stride-2 block (1 or 2).
        width: channels of the first stage.
        in_channels: channels of the input image.
    """

    def __init__(self, depth: int = 1, width: int = 16, in_channels: int = 3):
        super().__init__()
        extra = blocks_per_stage(depth)
        widths = [width, 2 * width, 4 * width, 4 * width]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False)
        stages, prev = [], widths[0]
        for w in widths:
            blocks = [BasicBlock(prev, w, 2, 0.0, "conv")] + [BasicBlock(w, w, 1, 0.0, "conv") for _ in range(extra)]
            stages.append(nn.Sequential(*blocks))
            prev = w
        self.stages = nn.ModuleList(stages)
        top = widths[1]
        self.lateral = nn.ModuleList([nn.Conv2d(w, top, 1, bias=False) for w in widths])
        self.head_bn = nn.BatchNorm2d(top)
        self.head = nn.Sequential(nn.Conv2d(top, top, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(top, len(OUTPUTS), 1))
        init_weights(self)
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.stem(x)                                   # (B, w, S/2, S/2)
        features = []
        for stage in self.stages:
            o = stage(o)
            features.append(o)                             # strides 4, 8, 16, 32
        top = self.lateral[-1](features[-1])               # (B, 2w, S/32, S/32)
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1]):
            top = F.interpolate(top, size=feature.shape[-2:], mode="nearest") + lateral(feature)
        return self.head(F.relu(self.head_bn(top)))        # (B, 5, S/4, S/4)
