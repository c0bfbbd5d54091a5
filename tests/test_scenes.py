"""train.scenes: rendered photos whose digit boxes are where the digits are."""
from __future__ import annotations

import numpy as np
import pytest

from model.localiser import INPUT_SIZE
from train import scenes
from train.synth import find_fonts


@pytest.fixture(scope="module")
def fonts():
    return tuple(find_fonts())


def test_scenes_are_deterministic_and_splits_differ():
    a = scenes.generate_scenes(6, seed=0, split="val")
    b = scenes.generate_scenes(6, seed=0, split="val")
    c = scenes.generate_scenes(6, seed=0, split="test")
    assert a["x"].shape == (6, INPUT_SIZE, INPUT_SIZE, 3) and a["x"].dtype == np.uint8
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert not np.array_equal(a["x"], c["x"])
    assert a["boxes_index"].shape == (len(a["boxes"]),) and a["boxes"].shape[1] == 4


def test_every_kind_is_rendered_and_boxes_lie_in_the_frame(fonts):
    counts = {"with digits": 0, "without": 0}
    for i in range(40):
        scene = scenes.render_scene(np.random.default_rng([1, 10, i]), fonts, size=160)
        h, w = scene.image.shape[:2]
        assert max(h, w) == 160
        counts["with digits" if len(scene.boxes) else "without"] += 1
        for x0, y0, x1, y1 in scene.boxes:
            assert 0 <= x0 < x1 <= w + 1e-3 and 0 <= y0 < y1 <= h + 1e-3
            assert max(x1 - x0, y1 - y0) >= scenes.MIN_SIDE_PX
    assert counts["with digits"] > 20 and counts["without"] >= 2


def test_a_thin_whole_digit_is_a_digit_and_a_tiny_or_cut_one_is_not():
    """A 1 is far thinner than MIN_SIDE_PX at the localiser's scale; it must still be a digit
    (renderer version 1 made it a cut digit, which trains as background)."""
    thin, tiny, cut = [10, 10, 12, 30], [40, 40, 43, 43], [58, 10, 70, 40]   # cut: half past the clip
    digits, ignored = scenes.split_visible(np.asarray([thin, tiny, cut], np.float32), (0, 0, 64, 64))
    np.testing.assert_array_equal(digits, [thin])
    np.testing.assert_array_equal(ignored, [tiny, [58, 10, 64, 40]])


def test_digit_boxes_hold_the_ink(fonts):
    """A black digit on a white plate, no degradation: its box holds most of the dark pixels."""
    from dataclasses import replace

    from train.synth import plain_style, render_style

    style = replace(plain_style(fonts[0]), height_frac=0.5, left=(1,), right=(2,), gap=0.3)
    image = render_style(style, 7, np.random.default_rng(0), 96)
    boxes = scenes._digit_boxes(style, 7, 96)
    assert len(boxes) == 3
    ink = image.min(axis=-1) < 128
    inside = np.zeros_like(ink)
    for x0, y0, x1, y1 in boxes:
        inside[max(0, int(y0) - 1):int(np.ceil(y1)) + 1, max(0, int(x0) - 1):int(np.ceil(x1)) + 1] = True
    assert ink.sum() > 50 and (ink & inside).sum() / ink.sum() > 0.97
    target = boxes[1]   # the labelled digit is centred and half the crop high
    assert abs((target[1] + target[3]) / 2 - 48) < 3 and abs((target[3] - target[1]) - 48) < 3


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="Invalid split"):
        scenes.generate_scenes(1, seed=0, split="nope")


def test_an_svhn_crop_boxes_its_middle_digit_where_it_is_drawn(fonts):
    for seed in range(12):
        scene = scenes.svhn_crop(np.random.default_rng([3, seed]), fonts, 128)
        h, w = scene.image.shape[:2]
        assert max(h, w) == 128 and scene.image.dtype == np.uint8
        assert len(scene.boxes) >= 1, "the middle digit is always whole"
        for x0, y0, x1, y1 in scene.boxes:
            assert 0 <= x0 < x1 <= w + 1e-3 and 0 <= y0 < y1 <= h + 1e-3
            inside = scene.image[int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1].astype(float)
            assert inside.std() > 4, "a box holds ink, not plain plate"


def test_a_wall_of_blurred_numbers_is_tiles_of_soft_house_numbers(fonts):
    rng = np.random.default_rng(5)
    wall = scenes._wall_of_blurred_numbers(rng, 70, 90, 24, fonts)
    assert wall.shape == (70, 90, 3) and wall.dtype == np.float32 and 0 <= wall.min() and wall.max() <= 1
    tiles = {wall[y:y + 24, x:x + 24].tobytes() for y in (0, 24) for x in (0, 24, 48)}
    assert len(tiles) <= 4, "the tiles repeat a few blurred crops"
    sharp = np.abs(np.diff(wall[:24, :24], axis=1)).mean()
    assert sharp < 0.05, "out of focus: neighbouring pixels differ little inside a tile"


def test_svhn_crops_on_a_wall_of_blurred_numbers_still_box_their_digit(fonts):
    on_mosaic = 0
    for seed in range(16):
        plain = scenes.svhn_crop(np.random.default_rng([4, seed]), fonts, 128)
        scene = scenes.svhn_crop(np.random.default_rng([4, seed]), fonts, 128, blurred_numbers=1.0)
        on_mosaic += not np.array_equal(plain.image, scene.image)
        h, w = scene.image.shape[:2]
        assert max(h, w) == 128 and len(scene.boxes) >= 1
        for x0, y0, x1, y1 in scene.boxes:
            assert 0 <= x0 < x1 <= w + 1e-3 and 0 <= y0 < y1 <= h + 1e-3
    assert on_mosaic >= 4, "about half the crops lie on a wall, all of those on the mosaic"
