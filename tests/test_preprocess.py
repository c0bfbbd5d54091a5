"""model.preprocess: any Pillow mode to RGB, exact output size, aspect ratio kept, normalisation maths."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.preprocess import (BACKGROUND, EXPOSURE_TARGET, FITS, MAX_GAIN, expose, fit_to_input, normalize, preprocess,
                              to_rgb)


def _palette(transparent: bool = False) -> Image.Image:
    """8x8 of palette colour 1 (200, 30, 30) with pixel (0, 0) of colour 0, transparent if asked."""
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    if transparent:
        image.info["transparency"] = 0  # palette index 0 is transparent
    return image


def _palette_with_transparency() -> Image.Image:
    return _palette(transparent=True)


MODES = {
    "1": lambda: Image.new("1", (8, 8), 1),
    "L": lambda: Image.new("L", (8, 8), 128),
    "LA": lambda: Image.new("LA", (8, 8), (128, 255)),
    "P": _palette,
    "P+transparency": _palette_with_transparency,
    "RGBA": lambda: Image.new("RGBA", (8, 8), (200, 30, 30, 255)),
    "CMYK": lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
    "I;16": lambda: Image.fromarray(np.full((8, 8), 40000, np.uint16)),  # Pillow picks I;16
    "I": lambda: Image.fromarray(np.full((8, 8), 100, np.int32), "I"),
    "F": lambda: Image.fromarray(np.full((8, 8), 100.0, np.float32), "F"),
    "RGB": lambda: Image.new("RGB", (8, 8), (1, 2, 3)),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_converts_to_8_bit_rgb(mode):
    image = MODES[mode]()
    assert image.mode == mode.split("+")[0]  # the test really starts from that mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    assert np.asarray(rgb).dtype == np.uint8


@pytest.mark.parametrize("mode, pixel", [
    ("L", (128, 128, 128)), ("RGBA", (200, 30, 30)), ("CMYK", (255, 0, 0)), ("P", (200, 30, 30)),
    ("I;16", (156, 156, 156)), ("I", (100, 100, 100)), ("F", (100, 100, 100)), ("RGB", (1, 2, 3)),
])
def test_converted_colours_are_right(mode, pixel):
    assert to_rgb(MODES[mode]()).getpixel((4, 4)) == pixel


def test_transparent_pixels_become_the_background():
    rgb = to_rgb(_palette_with_transparency())
    assert rgb.getpixel((0, 0)) == BACKGROUND and rgb.getpixel((5, 5)) == (200, 30, 30)
    assert to_rgb(_palette()).getpixel((0, 0)) == (0, 0, 0)  # the control: opaque, stays black
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((1, 1)) == BACKGROUND
    la = Image.new("LA", (4, 4), (0, 0))
    assert to_rgb(la).getpixel((1, 1)) == BACKGROUND


@pytest.mark.parametrize("fit", FITS)
@pytest.mark.parametrize("in_size", [(32, 32), (100, 40), (40, 100), (7, 300), (1, 1)])
@pytest.mark.parametrize("out_size", [(32, 32), (24, 40)])
def test_every_fit_gives_exactly_the_input_size(fit, in_size, out_size):
    image = Image.new("RGB", in_size, (10, 200, 30))
    seen = fit_to_input(image, out_size, fit)
    assert seen.mode == "RGB" and seen.size == (out_size[1], out_size[0])  # PIL size is (W, H)


def _wide_image_with_centred_square(width=120, height=40, side=20) -> Image.Image:
    image = Image.new("RGB", (width, height), (255, 255, 255))
    left, top = (width - side) // 2, (height - side) // 2
    image.paste((0, 0, 0), (left, top, left + side, top + side))
    return image


def _dark_box(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the dark pixels' bounding box."""
    dark = np.asarray(image.convert("L")) < 128
    rows, cols = np.where(dark.any(1))[0], np.where(dark.any(0))[0]
    return cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_crop_and_pad_keep_a_square_square(fit):
    seen = fit_to_input(_wide_image_with_centred_square(), (32, 32), fit)
    w, h = _dark_box(seen)
    assert abs(w - h) <= 1, f"{fit}: square became {w}x{h}"


def test_crop_cuts_the_centred_square_of_the_subject():
    seen = fit_to_input(_wide_image_with_centred_square(), (32, 32), "crop")
    w, h = _dark_box(seen)
    assert 15 <= w <= 17 and 15 <= h <= 17  # 20 px of a 40 px square scaled to 32 px: 16 px
    assert np.asarray(seen)[0, 0].tolist() == [255, 255, 255]


def test_squash_stretches_and_is_the_control():
    w, h = _dark_box(fit_to_input(_wide_image_with_centred_square(), (32, 32), "squash"))
    assert h > 1.5 * w


def test_pad_uses_the_border_colour():
    image = Image.new("RGB", (60, 20), (0, 120, 240))
    seen = np.asarray(fit_to_input(image, (32, 32), "pad"))
    assert np.abs(seen.astype(int) - [0, 120, 240]).max() <= 2  # nothing but the border colour


def test_input_of_the_right_size_is_unchanged():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for fit in FITS:
        assert np.array_equal(np.asarray(fit_to_input(Image.fromarray(pixels), (32, 32), fit)), pixels)


def _white_level(image: Image.Image) -> float:
    return float(np.percentile(np.asarray(image, np.float32).mean(axis=2), 99))


def test_an_underexposed_input_is_brightened_to_the_white_level_of_training():
    rng = np.random.default_rng(2)
    dim = Image.fromarray(rng.integers(0, 50, (32, 32, 3), dtype=np.uint8))      # white level about 48
    for fit in FITS:
        seen = fit_to_input(dim, (32, 32), fit)
        assert abs(_white_level(seen) - EXPOSURE_TARGET) < 1.5
    dark = np.asarray(fit_to_input(Image.new("RGB", (64, 48), (10, 5, 0)), (32, 32), "crop"))
    assert dark.max() == round(10 * MAX_GAIN)                                        # at most MAX_GAIN brighter


def test_a_well_exposed_input_and_a_dark_plate_with_a_light_digit_are_not_touched():
    plate = np.zeros((32, 32, 3), np.uint8)
    plate[8:24, 12:20] = 230                                                          # a white digit on black
    assert np.array_equal(np.asarray(expose(Image.fromarray(plate))), plate)
    assert np.array_equal(np.asarray(fit_to_input(Image.fromarray(plate), (32, 32))), plate)


def test_unknown_fit_is_named():
    with pytest.raises(ValueError, match="'stretch'.*crop"):
        fit_to_input(Image.new("RGB", (4, 4)), (32, 32), "stretch")


def test_normalize_maths_and_layout():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)                 # (H, W, 3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    x = normalize(Image.fromarray(pixels), mean, std)
    assert x.dtype == np.float32 and x.shape == (3, 5, 7) and x.flags["C_CONTIGUOUS"]
    for c in range(3):
        expected = (pixels[:, :, c] / 255.0 - mean[c]) / std[c]
        np.testing.assert_allclose(x[c], expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(normalize(pixels, mean, std), x)  # arrays and images alike


def test_preprocess_returns_network_input_and_what_it_sees():
    image = Image.new("LA", (64, 48), (200, 255))
    x, seen = preprocess(image, (32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert seen.size == (32, 32) and seen.mode == "RGB"
    np.testing.assert_allclose(x, (200 / 255 - 0.5) / 0.25, atol=1e-5)


def test_float_images_in_unit_range_scale_like_8_bit():
    unit = Image.fromarray(np.full((8, 8), 0.5, np.float32), "F")
    assert to_rgb(unit).getpixel((4, 4)) == (128, 128, 128)
