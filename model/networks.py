"""Architecture configuration and the one place that turns it into a network.

An ``ArchConfig`` is stored in every checkpoint (as a plain dict), so a checkpoint alone is enough
to rebuild its network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch import nn

from model.localiser import blocks_per_stage as locnet_blocks
from model.locnet import LocNet
from model.resnet import CifarResNet, blocks_per_stage as resnet_blocks
from model.resnext import ResNeXt, blocks_per_stage as resnext_blocks
from model.wrn import WideResNet, blocks_per_group as wrn_blocks

ARCHS = ("wrn", "resnet", "resnext", "locnet")


@dataclass(frozen=True)
class ArchConfig:
    """Hyper-parameters of a network.

    Attributes:
        arch: "wrn", "resnet", "resnext" or "locnet" (the digit localiser, ``model.locnet``).
        depth: layers (6n+4 for wrn, 6n+2 for resnet, 9n+2 for resnext; blocks per stage for locnet).
        width: widen factor k (wrn), channels of the first stage (locnet).
        dropout: dropout between the two convolutions of a block (wrn only).
        shortcut: "conv" or "pool" (wrn only).
        cardinality: groups per grouped convolution (resnext only).
        bottleneck_width: channels per group in the first stage (resnext only).
        num_classes: outputs.
        in_channels: image channels.
    """

    arch: str = "wrn"
    depth: int = 16
    width: int = 4
    dropout: float = 0.0
    shortcut: str = "conv"
    cardinality: int = 8
    bottleneck_width: int = 64
    num_classes: int = 10
    in_channels: int = 3

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"Invalid arch {self.arch!r}. Only {', '.join(ARCHS)} are supported.")
        depth_check = {"wrn": wrn_blocks, "resnet": resnet_blocks, "resnext": resnext_blocks,
                       "locnet": locnet_blocks}[self.arch]
        depth_check(self.depth)  # raises ValueError naming the allowed depths
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Invalid dropout {self.dropout}: it must be in [0, 1).")

    @property
    def name(self) -> str:
        """Conventional name, e.g. WRN-16-4, ResNet-20, ResNeXt-29 (8x64d)."""
        if self.arch == "wrn":
            return f"WRN-{self.depth}-{self.width}"
        if self.arch == "resnet":
            return f"ResNet-{self.depth}"
        if self.arch == "locnet":
            return f"LocNet-{self.depth}-{self.width}"
        return f"ResNeXt-{self.depth} ({self.cardinality}x{self.bottleneck_width}d)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def build_network(cfg: ArchConfig) -> nn.Module:
    """Build the network described by ``cfg`` (weights freshly initialised)."""
    if cfg.arch == "wrn":
        return WideResNet(cfg.depth, cfg.width, cfg.num_classes, cfg.dropout, cfg.shortcut, cfg.in_channels)
    if cfg.arch == "resnet":
        return CifarResNet(cfg.depth, cfg.num_classes, cfg.in_channels)
    if cfg.arch == "locnet":
        return LocNet(cfg.depth, cfg.width, cfg.in_channels)
    return ResNeXt(cfg.depth, cfg.cardinality, cfg.bottleneck_width, cfg.num_classes, cfg.in_channels)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
