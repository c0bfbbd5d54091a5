"""model.localiser and model.locnet: letterboxing, decoding boxes, picking the main digit, the network."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.localiser import (HEAT, INPUT_SIZE, LOG_H, LOG_W, OFFSET_X, OUTPUTS, PAD_VALUE, STRIDE, Detection,
                             Letterbox, decode, letterbox, main_detection)
from model.networks import ArchConfig, build_network, count_parameters


@pytest.mark.parametrize("size", [(480, 360), (100, 300), (128, 128), (7, 3)])
def test_letterbox_keeps_aspect_and_maps_back(size):
    image = Image.new("RGB", size, (250, 10, 10))
    pixels, frame = letterbox(image)
    assert pixels.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    # the picture's corners land inside the input and map back to themselves
    corners = np.array([[0, 0, size[0], size[1]]], np.float32) * frame.scale + [frame.left, frame.top] * 2
    assert corners.min() >= 0 and corners.max() <= INPUT_SIZE + 1e-3
    np.testing.assert_allclose(frame.to_picture(corners), [[0, 0, size[0], size[1]]], atol=1e-3)
    if size[0] != size[1]:   # the shorter side is padded with the grey border
        assert tuple(pixels[0, 0]) == PAD_VALUE or tuple(pixels[-1, -1]) == PAD_VALUE


def _maps_with_peak(row: int, col: int, w_cells: float, h_cells: float, logit: float = 5.0) -> np.ndarray:
    grid = INPUT_SIZE // STRIDE
    maps = np.zeros((len(OUTPUTS), grid, grid), np.float32)
    maps[HEAT] = -8.0
    maps[HEAT, row, col] = logit
    maps[OFFSET_X, row, col] = 0.25
    maps[LOG_W, row, col], maps[LOG_H, row, col] = np.log(w_cells), np.log(h_cells)
    return maps


def test_decode_turns_a_peak_into_its_box_in_picture_pixels():
    maps = _maps_with_peak(row=10, col=20, w_cells=4, h_cells=8)
    frame = Letterbox(scale=0.5, left=0, top=14)          # a 256x200 picture letterboxed at half size
    (found,) = decode(maps, frame, (256, 200))
    cx, cy = (20 + 0.5 + 0.25) * STRIDE, (10 + 0.5) * STRIDE
    expected = np.array([cx - 8, cy - 16 - 14, cx + 8, cy + 16 - 14]) / 0.5
    expected[[1, 3]] = (np.array([cy - 16, cy + 16]) - 14) / 0.5
    np.testing.assert_allclose(found.box, [(cx - 8) / 0.5, (cy - 16 - 14) / 0.5, (cx + 8) / 0.5, (cy + 16 - 14) / 0.5],
                               rtol=1e-5)
    assert found.score == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_decode_finds_nothing_below_the_threshold():
    assert decode(_maps_with_peak(5, 5, 2, 2, logit=-3.0), Letterbox(1, 0, 0), (128, 128), threshold=0.3) == []


def test_decode_keeps_one_box_per_peak():
    maps = _maps_with_peak(10, 10, 3, 6)
    maps[HEAT, 10, 11] = 4.0             # a neighbour of the peak, lower: suppressed
    maps[HEAT, 20, 25] = 3.0             # a second digit
    found = decode(maps, Letterbox(1, 0, 0), (128, 128))
    assert len(found) == 2 and found[0].score > found[1].score


def test_main_digit_is_the_largest_and_most_central():
    size = (400, 300)
    small_centre = Detection((190, 140, 210, 170), 0.9)
    large_corner = Detection((0, 0, 40, 80), 0.9)
    large_centre = Detection((170, 100, 230, 200), 0.8)
    assert main_detection([small_centre, large_corner, large_centre], size) is large_centre
    assert main_detection([small_centre, large_corner], size) is small_centre
    assert main_detection([], size) is None


def test_locnet_output_shape_gradients_and_size():
    cfg = ArchConfig(arch="locnet", depth=1, width=8, num_classes=len(OUTPUTS))
    assert cfg.name == "LocNet-1-8"
    net = build_network(cfg)
    out = net(torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE))
    assert out.shape == (2, len(OUTPUTS), INPUT_SIZE // STRIDE, INPUT_SIZE // STRIDE)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    # the heat prior: every cell starts near 1% digit-centre probability
    assert torch.sigmoid(out[:, HEAT]).mean().item() < 0.2
    assert count_parameters(build_network(ArchConfig(arch="locnet", depth=1, width=24, num_classes=5))) < 1_000_000


def test_locnet_depth_is_checked():
    with pytest.raises(ValueError, match="LocNet depth"):
        ArchConfig(arch="locnet", depth=3)


def test_iou_of_boxes():
    from model.localiser import iou

    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_merge_keeps_the_surer_of_two_looks_at_one_digit():
    from model.localiser import merge
    a, b, c = Detection((0, 0, 10, 20), 0.5), Detection((1, 1, 11, 21), 0.9), Detection((30, 0, 40, 20), 0.4)
    assert merge([a, c, b], 0.5) == [b, c]
    assert merge([a, c, b], 0.9) == [b, a, c]     # under the overlap allowed: all kept, surest first
