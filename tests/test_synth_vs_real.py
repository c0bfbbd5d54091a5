"""bench/synth_vs_real.py: the image statistics that generator v4 was matched on."""
from __future__ import annotations

import numpy as np

from bench.synth_vs_real import image_stats, profile_gap


def test_flat_crops_have_no_contrast_sharpness_or_saturation():
    stats = image_stats(np.full((3, 32, 32, 3), 120, np.uint8))
    assert np.allclose(stats["brightness"], 120)
    for name in ("contrast", "sharpness", "saturation"):
        assert np.allclose(stats[name], 0), name


def test_a_blurred_bar_is_less_sharp_and_a_coloured_one_is_saturated():
    sharp = np.zeros((1, 32, 32, 3), np.uint8)
    sharp[:, :, 14:18] = 255
    soft = sharp.astype(np.float32)
    soft[:, :, 1:-1] = (soft[:, :, :-2] + soft[:, :, 1:-1] + soft[:, :, 2:]) / 3
    red = sharp.copy()
    red[..., 1:] = 0
    assert image_stats(soft.astype(np.uint8))["sharpness"][0] < image_stats(sharp)["sharpness"][0]
    assert image_stats(sharp)["saturation"][0] == 0
    assert image_stats(red)["saturation"][0] > 0


def test_profile_gap_is_zero_for_the_same_crops_and_sees_a_moved_digit():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 32, 32, 3), np.uint8)
    x[:, 4:28, 12:20] = 200
    y = rng.integers(0, 2, 20)
    y[:2] = (0, 1)
    moved = np.roll(x, 6, axis=2)
    assert profile_gap(x, y, x, y, axis=2) == 0
    assert profile_gap(x, y, moved, y, axis=2) > 0.1
    assert profile_gap(x, y, moved, y, axis=1) < 1e-6  # a sideways move leaves the rows alone
