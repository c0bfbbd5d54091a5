"""Networks: reference parameter counts, depth validation, shapes, gradients and dropout."""
from __future__ import annotations

import re

import pytest
import torch

from model.networks import ArchConfig, build_network, count_parameters

REFERENCE_PARAMETERS = [  # 10 classes; the WRN and ResNeXt papers, ResNet paper Table 6
    (dict(arch="wrn", depth=40, width=4), 8_949_210),
    (dict(arch="wrn", depth=16, width=4), 2_748_890),
    (dict(arch="wrn", depth=16, width=8), 10_961_370),
    (dict(arch="wrn", depth=28, width=10), 36_479_194),
    (dict(arch="resnet", depth=20), 269_722),
    (dict(arch="resnet", depth=110), 1_727_962),
    (dict(arch="resnext", depth=29, cardinality=8, bottleneck_width=64), 34_426_698),
]


def meta_network(**arch) -> torch.nn.Module:
    """Build on the meta device: shapes only, no memory or init time (fast even for 36M parameters)."""
    with torch.device("meta"):
        return build_network(ArchConfig(**arch))


@pytest.mark.parametrize("arch, expected", REFERENCE_PARAMETERS,
                         ids=[ArchConfig(**a).name for a, _ in REFERENCE_PARAMETERS])
def test_parameter_count_matches_reference(arch, expected):
    assert count_parameters(meta_network(**arch)) == expected


def test_pool_shortcut_has_fewer_parameters_and_no_projection():
    conv = count_parameters(meta_network(depth=16, width=4, shortcut="conv"))
    pool = count_parameters(meta_network(depth=16, width=4, shortcut="pool"))
    # the three 1x1 projections of WRN-16-4: 16*64 + 64*128 + 128*256 weights
    assert conv - pool == 16 * 64 + 64 * 128 + 128 * 256


@pytest.mark.parametrize("arch, depth, allowed", [
    ("wrn", 15, "6n+4"), ("wrn", 4, "6n+4"), ("wrn", 20, "6n+4"),
    ("resnet", 16, "6n+2"), ("resnet", 2, "6n+2"),
    ("resnext", 28, "9n+2"), ("resnext", 2, "9n+2"),
])
def test_bad_depth_raises_clear_value_error(arch, depth, allowed):
    with pytest.raises(ValueError, match=rf"depth {depth}\b.*{re.escape(allowed)}"):
        ArchConfig(arch=arch, depth=depth)


@pytest.mark.parametrize("field, value, message", [
    ("arch", "vgg", "Invalid arch 'vgg'"),
    ("dropout", 1.0, "Invalid dropout 1.0"),
    ("shortcut", "max", "Invalid shortcut 'max'"),
    ("width", 0, "Invalid widen factor 0"),
])
def test_bad_architecture_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_network(ArchConfig(**{"arch": "wrn", "depth": 10, "width": 1, field: value}))


SMALL_ARCHS = {
    "wrn-conv": dict(arch="wrn", depth=10, width=2, dropout=0.3, shortcut="conv"),
    "wrn-pool": dict(arch="wrn", depth=10, width=2, dropout=0.3, shortcut="pool"),
    "resnet": dict(arch="resnet", depth=8),
    "resnext": dict(arch="resnext", depth=11, cardinality=2, bottleneck_width=4),
}


# 18 -> 9 -> 5: odd sizes where a strided conv rounds up; 20x28: not square
@pytest.mark.parametrize("size", [(32, 32), (18, 18), (20, 28)], ids=["32x32", "18x18", "20x28"])
@pytest.mark.parametrize("name", SMALL_ARCHS)
def test_forward_shape_and_gradient_for_every_parameter(name, size):
    torch.manual_seed(0)
    net = build_network(ArchConfig(num_classes=7, **SMALL_ARCHS[name])).train()
    x = torch.randn(2, 3, *size)                                    # (B, C, H, W)
    out = net(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    net = build_network(ArchConfig(arch="wrn", depth=10, width=1, dropout=0.5))
    x = torch.randn(2, 3, 32, 32)
    net.train()
    # BN in train mode uses batch statistics, identical for the same batch; only dropout differs.
    assert not torch.equal(net(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_no_dropout_gives_deterministic_training_forward():
    """The control for the test above: without dropout, two training forwards agree."""
    torch.manual_seed(0)
    net = build_network(ArchConfig(arch="wrn", depth=10, width=1, dropout=0.0)).train()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(net(x), net(x))


def test_arch_config_round_trips_through_a_dict():
    cfg = ArchConfig(arch="resnext", depth=11, cardinality=2, bottleneck_width=4, num_classes=100)
    assert ArchConfig.from_dict({**cfg.to_dict(), "unknown_future_field": 1}) == cfg
    assert cfg.name == "ResNeXt-11 (2x4d)"
    assert ArchConfig(depth=28, width=10).name == "WRN-28-10"
