"""Scenes: whole synthetic photos with the box of every digit in them, for training the localiser.

A scene is what a person photographs: a wall (plain, textured, brick or siding, with windows,
wires and blurred signs), sometimes letters and symbols, and usually a house number, rendered by
the SynthDigits generator (``train.synth``: same faces, colours, distortions and degradation) at
any size and position. Four kinds, each a fraction of the scenes (``KINDS``):

- ``plate``: a house number on its plate (hard or soft edges, or painted straight on the wall),
  anywhere in the frame, 6 px to most of the frame high;
- ``tight``: the frame is a tight box around one digit, taller than wide or square, as a phone
  crop or a meter's digit window;
- ``empty``: no digit at all (walls, letters, clutter, blurred signs): the localiser learns to
  find nothing;
- ``two``: two house numbers of different sizes.

Every digit's box (left, top, right, bottom, in scene pixels) is computed from the same transform
that renders it; digits cut by the frame or by their plate's border are "ignore" boxes, where the
localiser is neither rewarded nor punished. Each scene comes from its own generator
``default_rng([seed, SCENE_SPLIT_IDS[split], index])``. Two more kinds of picture are drawn while
training rather than cached (``train.localise``): ``closeup`` (one glyph filling a bare wall: letters,
or one digit) and ``svhn_crop`` (a small SVHN-style crop enlarged: a tight photo or a plate on a wall).
"""
from __future__ import annotations

import io
import multiprocessing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model.localiser import INPUT_SIZE, letterbox
from train.synth import (DIGITS, RENDER_SCALE, _crop_coeffs, _draw_text, _layout, _random_colour, find_fonts,
                         get_font, render_style, sample_style)

KINDS = ("plate", "tight", "empty", "two")
KIND_CDF = np.cumsum([0.5, 0.2, 0.15, 0.15])
SCENE_SPLIT_IDS = {"train": 10, "val": 11, "test": 12}
RENDERER_VERSION = 2      # in the cached scenes' file names: raise it whenever render_scene draws or labels differently
#                           (2: a thin digit, a 1 under MIN_SIDE_PX wide, is a digit, no longer a cut digit)
# Letters and symbols that do not look like a digit (no O, I, l, S, B, Z, G, g, q, b).
DISTRACTORS = "ACEFHKLMNPRUVWXYacefhkmnrtuvwxy#&+%@?!*"
MIN_VISIBLE = 0.7        # fraction of a digit's box inside the frame for it to count as a digit
MIN_SIDE_PX = 4          # digits whose longer side is smaller are ignored (a 1 is thinner than this and still a digit)


@dataclass
class Scene:
    """A rendered scene: uint8 RGB (H, W, 3), digit boxes (N, 4) and ignore boxes (M, 4), float32."""

    image: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray


# ----------------------------------------------------------------------------- backgrounds


def _noise_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field (h, w) in about [-1, 1]: coarse normal noise, upsampled bicubically."""
    coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.Resampling.BICUBIC))


def _picture(img: np.ndarray) -> Image.Image:
    """A float32 RGB image in [0, 1] as an 8-bit Pillow picture."""
    return Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))


def _wall(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A wall: float32 (h, w, 3) in 0-1, plain, mottled, brick or siding, with gradient and grain."""
    base = np.asarray(_random_colour(rng, float(rng.uniform(0.15, 0.95))), np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    style = rng.integers(4)
    if style == 1:   # mottled plaster, stone, foliage
        other = np.asarray(_random_colour(rng, float(rng.uniform(0.1, 0.95))), np.float32)
        mix = np.clip(0.5 + 0.5 * _noise_field(rng, h, w, int(rng.integers(3, 24))), 0, 1)[..., None]
        img = img + (other - img) * mix * float(rng.uniform(0.3, 1.0))
    elif style in (2, 3):  # brick (staggered joints) or siding (lines only)
        period = float(rng.uniform(4, 24))
        mortar = np.asarray(_random_colour(rng, float(rng.uniform(0.2, 0.95))), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        row = np.floor(yy / period)
        joint = (yy % period) < max(1.0, period * 0.12)
        if style == 2:
            brick = period * float(rng.uniform(1.8, 3.0))
            joint |= ((xx + (row % 2) * brick / 2) % brick) < max(1.0, period * 0.12)
        img[joint] = mortar
    img *= (1.0 + float(rng.uniform(0, 0.5)) * _noise_field(rng, h, w, 2)[..., None] * 0.5)
    img += rng.normal(0, float(rng.uniform(0, 0.04)), (h, w, 1)).astype(np.float32)
    return img


def _draw_clutter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Windows, signs, pipes and wires: random rectangles and lines over the wall."""
    h, w = img.shape[:2]
    layer = _picture(img)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(0, 5)):
        colour = tuple(int(255 * c) for c in _random_colour(rng, float(rng.random())))
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * w)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, 2) * h)
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour if rng.random() < 0.6 else None, outline=colour,
                           width=int(rng.integers(1, 4)))
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 5)))
    return np.asarray(layer, np.float32) / 255.0


def _draw_letters(rng: np.random.Generator, img: np.ndarray, fonts: Sequence[Path]) -> np.ndarray:
    """Words of letters and symbols (no digit look-alikes) in random faces, sizes and colours."""
    h, w = img.shape[:2]
    layer = _picture(img)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(1, 4)):
        size = int(np.exp(rng.uniform(np.log(8), np.log(max(9, 0.8 * min(h, w))))))
        font = get_font(str(fonts[int(rng.integers(len(fonts)))]), size)
        text = "".join(rng.choice(list(DISTRACTORS), int(rng.integers(1, 5))))
        colour = tuple(int(255 * c) for c in _random_colour(rng, float(rng.random())))
        draw.text((float(rng.uniform(-0.1, 0.9) * w), float(rng.uniform(-0.1, 0.9) * h)), text, fill=colour,
                  font=font)
    return np.asarray(layer, np.float32) / 255.0


def _blurred_signs(rng: np.random.Generator, img: np.ndarray, fonts: Sequence[Path]) -> np.ndarray:
    """Out-of-focus house numbers far behind the subject: heavily blurred, never digits to find."""
    h, w = img.shape[:2]
    for _ in range(rng.integers(1, 3)):
        side = int(rng.uniform(0.2, 0.6) * min(h, w)) + 8
        crop = render_style(sample_style(rng, fonts, side), int(rng.integers(10)), rng, side)
        crop = Image.fromarray(crop).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.12, 0.25)) * side))
        x, y = int(rng.integers(-side // 2, w)), int(rng.integers(-side // 2, h))
        _paste(img, np.asarray(crop, np.float32) / 255.0, x, y, feather=0)
    return img


def _wall_of_blurred_numbers(rng: np.random.Generator, h: int, w: int, tile: int,
                             fonts: Sequence[Path]) -> np.ndarray:
    """A wall covered edge to edge by other house numbers out of focus (a panel of mailboxes, a
    photo of a sign board): square tiles of side ``tile``, each a few low-resolution crops drawn
    again, enlarged and blurred by 8 to 20% of the tile; never digits to find."""
    kinds = []
    for _ in range(4):
        native = int(rng.integers(24, 49))
        crop = Image.fromarray(render_style(sample_style(rng, fonts, native), int(rng.integers(10)), rng, native))
        crop = crop.resize((tile, tile), Image.Resampling.BICUBIC)
        kinds.append(np.asarray(crop.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.08, 0.2)) * tile)),
                                np.float32) / 255.0)
    img = np.empty((h, w, 3), np.float32)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            patch = kinds[int(rng.integers(len(kinds)))]
            img[y:y + tile, x:x + tile] = patch[:h - y, :w - x]
    return img


# ----------------------------------------------------------------------------- digits


def _digit_boxes(style, label: int, side: int) -> np.ndarray:
    """Boxes (n, 4) of every digit of the house number, in the pixels of a crop of side ``side``.

    Each glyph's ink box on the generator's canvas is carried through the crop's transform (the
    inverse of the perspective map that ``train.synth`` samples with); a rotated or sheared glyph
    gets the axis-aligned box around its transformed corners.
    """
    _, bbox = _draw_text(style, label)
    coeffs = _crop_coeffs(style, bbox, RENDER_SCALE * side)
    to_canvas = np.append(np.asarray(coeffs, np.float64), 1.0).reshape(3, 3)
    to_crop = np.linalg.inv(to_canvas)
    font = get_font(str(style.font), style.font_size)
    text, xs, _, target = _layout(style, label)
    baseline, boxes = int(1.5 * style.font_size), []
    for i, char in enumerate(text):
        if i == target:
            x0, y0, x1, y1 = bbox
        else:
            l, t, r, b = font.getbbox(char, anchor="ls", stroke_width=style.stroke)
            x0, y0, x1, y1 = xs[i] + l, baseline + t, xs[i] + r, baseline + b
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ to_crop.T
        corners = corners[:, :2] / corners[:, 2:3] / RENDER_SCALE
        boxes.append([*corners.min(axis=0), *corners.max(axis=0)])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _paste(img: np.ndarray, patch: np.ndarray, x: int, y: int, feather: int) -> None:
    """Lay ``patch`` (h, w, 3) over ``img`` with its top-left at (x, y), edges feathered by ``feather`` px."""
    h, w = img.shape[:2]
    ph, pw = patch.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if x1 <= x0 or y1 <= y0:
        return
    alpha = np.ones((ph, pw, 1), np.float32)
    if feather > 0:
        ramp = lambda n: np.clip(np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / feather, 0, 1)  # noqa: E731
        alpha = (ramp(ph)[:, None] * ramp(pw)[None, :])[..., None].astype(np.float32)
    sub = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + sub * a


def _plate(rng: np.random.Generator, fonts: Sequence[Path], digit_px: float) -> tuple[np.ndarray, np.ndarray, object]:
    """A house number on its plate: float32 crop (s, s, 3), its digit boxes, and the style."""
    height_frac = float(rng.uniform(0.3, 0.95))
    side = int(np.clip(digit_px / height_frac, 12, 4 * INPUT_SIZE))
    style = sample_style(rng, fonts, side)
    style = replace(style, height_frac=height_frac,
                    shift=tuple(float(v) for v in rng.uniform(-0.35, 0.35, 2) * (1 - height_frac)))
    label = int(rng.integers(10))
    crop = render_style(style, label, rng, side).astype(np.float32) / 255.0
    return crop, _digit_boxes(style, label, side), style


def split_visible(boxes: np.ndarray, clip: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(digits, ignored): boxes mostly inside ``clip`` (clipped to it) and at least MIN_SIDE_PX on their
    longer side, and the rest that show at all. The longer side: a 1 is tall and thin; until
    renderer version 2 the shorter side here made about 5% of the whole digits of the training
    scenes cut digits, which the localiser learns as background (7% of the 1s as rendered, more
    after the training zoom; docs/reading.md)."""
    if len(boxes) == 0:
        return boxes, boxes
    clipped = np.concatenate([np.maximum(boxes[:, :2], clip[:2]), np.minimum(boxes[:, 2:], clip[2:])], axis=1)
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    visible = area(clipped) / np.maximum(area(boxes), 1e-6)
    big = np.maximum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]) >= MIN_SIDE_PX
    keep = (visible >= MIN_VISIBLE) & big
    return clipped[keep], clipped[~keep & (visible > 0)]


def _place_plate(rng: np.random.Generator, img: np.ndarray, fonts: Sequence[Path], digit_px: float):
    """Paste one house number somewhere in ``img``; returns its (digits, ignored) boxes in scene px."""
    h, w = img.shape[:2]
    crop, boxes, style = _plate(rng, fonts, digit_px)
    side = crop.shape[0]
    x = int(rng.uniform(*sorted((-0.25 * side, w - 0.75 * side))))   # a plate larger than the frame
    y = int(rng.uniform(*sorted((-0.25 * side, h - 0.75 * side))))   # overflows it on both sides
    edge = rng.random()
    if edge < 0.25:   # painted on the wall: the wall takes the plate's colour, edges fade
        img[:] = img * 0.3 + np.asarray(style.bg, np.float32) * 0.7
        _paste(img, crop, x, y, feather=max(1, side // 4))
    else:
        _paste(img, crop, x, y, feather=0 if edge < 0.8 else max(1, side // 12))
    boxes = boxes + np.array([x, y, x, y], np.float32)
    inside = (max(x, 0), max(y, 0), min(x + side, w), min(y + side, h))
    return split_visible(boxes, inside)


# ----------------------------------------------------------------------------- scenes


def _frame_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(h, w) of a portrait, square or landscape frame whose longer side is ``size``."""
    ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))   # width / height
    return (size, max(8, round(size * ratio))) if ratio < 1 else (max(8, round(size / ratio)), size)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Light, focus, noise and JPEG of the whole photo: uint8 RGB."""
    h, w = img.shape[:2]
    img = img * (1.0 + float(rng.uniform(0, 0.4)) * _noise_field(rng, h, w, 2)[..., None])
    img = img * float(rng.uniform(0.5, 1.2)) + float(rng.uniform(-0.1, 0.1))
    pil = _picture(img)
    if rng.random() < 0.5:
        pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    out = np.asarray(pil, np.float32) + rng.normal(0, float(rng.uniform(0, 6)), (h, w, 3)).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        buffer = io.BytesIO()
        Image.fromarray(out).save(buffer, format="JPEG", quality=int(rng.integers(30, 95)))
        out = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def _tight(rng: np.random.Generator, fonts: Sequence[Path], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame cut tightly around one digit: (image float32, digits, ignored)."""
    crop, boxes, _ = _plate(rng, fonts, digit_px=size * float(rng.uniform(0.55, 0.95)))
    side = crop.shape[0]
    x0, y0, x1, y1 = boxes[len(boxes) // 2] if len(boxes) % 2 else boxes[np.argmax(boxes[:, 3] - boxes[:, 1])]
    tall = float(rng.uniform(1.0, 2.2))               # height / width of the cut
    ch = min(side, (y1 - y0) * float(rng.uniform(1.05, 1.4)))
    cw = min(side, ch / tall)
    cx = (x0 + x1) / 2 + float(rng.normal(0, 0.05)) * cw
    cy = (y0 + y1) / 2 + float(rng.normal(0, 0.05)) * ch
    left, top = int(np.clip(cx - cw / 2, 0, side - cw)), int(np.clip(cy - ch / 2, 0, side - ch))
    cut = crop[top:top + int(ch), left:left + int(cw)]
    digits, ignored = split_visible(boxes - np.array([left, top, left, top], np.float32), (0, 0, cut.shape[1], cut.shape[0]))
    return cut, digits, ignored


def render_scene(rng: np.random.Generator, fonts: Sequence[Path], size: int = INPUT_SIZE) -> Scene:
    """Render one random scene whose longer side is ``size`` px (see the module docstring)."""
    kind = KINDS[int(np.searchsorted(KIND_CDF, rng.random(), side="right"))]
    if kind == "tight":
        img, digits, ignored = _tight(rng, fonts, size)
        scale = size / max(img.shape[:2])
        new_size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        out = _picture(img).resize(new_size, Image.Resampling.BILINEAR)
        img = np.asarray(out, np.float32) / 255.0
        to_frame = lambda b: np.minimum(b * scale, [*new_size, *new_size]).astype(np.float32)  # noqa: E731
        return Scene(_finish(rng, img), to_frame(digits), to_frame(ignored))
    h, w = _frame_size(rng, size)
    img = _draw_clutter(rng, _wall(rng, h, w))
    if rng.random() < 0.3:
        img = _blurred_signs(rng, img, fonts)
    if kind == "empty" or rng.random() < 0.3:
        img = _draw_letters(rng, img, fonts)
    found: list[np.ndarray] = [np.zeros((0, 4), np.float32)]
    ignored: list[np.ndarray] = [np.zeros((0, 4), np.float32)]
    for _ in range({"plate": 1, "two": 2, "empty": 0}[kind]):
        digit_px = float(np.exp(rng.uniform(np.log(0.05 * size), np.log(0.8 * min(h, w)))))   # 6 px at 128
        digits, cut = _place_plate(rng, img, fonts, digit_px)
        found.append(digits)
        ignored.append(cut)
    return Scene(_finish(rng, img), np.concatenate(found), np.concatenate(ignored))


def closeup(rng: np.random.Generator, fonts: Sequence[Path], size: int = INPUT_SIZE, digit: bool = False) -> Scene:
    """A close-up: one glyph or two filling much of a bare wall or a plain plate, the way a tight
    crop fills the frame with its digit. Letters or symbols (``digit=False``): digit-free, the
    localiser must not take them for a digit. One digit (``digit=True``): its ink box, so that a
    large digit alone on a wall stays a digit for a localiser also shown the letter close-ups. The
    ink is drawn on a larger canvas, so a digit crossing the frame's edge gets its true box: mostly
    visible, a digit (its box clipped); mostly cut, a cut digit, as in the scenes. (Digits up to
    1.5x the frame's shorter side, as people crop, were tried in localiser run 7: no better on tight
    crops; docs/reading.md.)"""
    h, w = _frame_size(rng, size)
    img = _wall(rng, h, w) if rng.random() < 0.5 else np.full((h, w, 3), _random_colour(rng, float(rng.random())), np.float32)
    layer = _picture(img)
    font = get_font(str(fonts[int(rng.integers(len(fonts)))]), max(8, int(min(h, w) * float(rng.uniform(0.5, 0.95)))))
    text = str(int(rng.integers(10))) if digit else "".join(rng.choice(list(DISTRACTORS), int(rng.integers(1, 3))))
    colour = tuple(int(255 * c) for c in _random_colour(rng, float(rng.random())))
    margin = max(h, w)
    centre = (margin + w * float(rng.uniform(0.35, 0.65)), margin + h * float(rng.uniform(0.35, 0.65)))
    ink = Image.new("L", (w + 2 * margin, h + 2 * margin), 0)
    ImageDraw.Draw(ink).text(centre, text, fill=255, font=font, anchor="mm")
    layer.paste(colour, mask=ink.crop((margin, margin, margin + w, margin + h)))
    boxes = ignored = np.zeros((0, 4), np.float32)
    if digit and (bbox := ink.getbbox()) is not None:
        boxes, ignored = split_visible(np.asarray([bbox], np.float32) - margin, (0, 0, w, h))
    return Scene(_finish(rng, np.asarray(layer, np.float32) / 255.0), boxes, ignored)


def noise_picture(rng: np.random.Generator, size: int = INPUT_SIZE) -> Scene:
    """A digit-free picture of random pixels (uniform, or in blocks of 2 to 8 pixels), sometimes
    blurred: people upload noise too, and the localiser must not find digits in it."""
    h, w = _frame_size(rng, size)
    block = int(rng.choice([1, 1, 2, 4, 8]))
    cells = rng.integers(0, 256, (-(-h // block), -(-w // block), 3), dtype=np.uint8)
    img = np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:h, :w].astype(np.float32) / 255.0
    return Scene(_finish(rng, img), np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))


def svhn_crop(rng: np.random.Generator, fonts: Sequence[Path], size: int = INPUT_SIZE,
              blurred_numbers: float = 0.0) -> Scene:
    """A house number framed as SVHN frames it, rendered small and enlarged, as people crop it.

    The crop is ``train.synth``'s own (the digit 0.75 to 1.0 of the height, neighbours cut at the
    sides), rendered at 24 to 96 px and enlarged, so it is as soft as a low-resolution photo. Half
    the time it is the whole picture (longer side ``size``), square or cut 1.3 to 2.2 times taller
    than wide around its digit: the tight crops the scenes' ``tight`` kind frames more loosely.
    Otherwise it is laid on a wall (with clutter, sometimes blurred signs or letters, as in the
    scenes) whose longer side is 2 to 6 times its side; with probability ``blurred_numbers`` the wall
    is instead a mosaic of other house numbers out of focus (``_wall_of_blurred_numbers``). Boxes as
    in the scenes: the middle digit, and a neighbour where it shows mostly; a neighbour cut by the
    crop's edge is a cut digit.
    """
    native = int(np.exp(rng.uniform(np.log(24), np.log(96))))
    style = sample_style(rng, fonts, native)
    label = int(rng.integers(10))
    crop = Image.fromarray(render_style(style, label, rng, native))
    boxes = _digit_boxes(style, label, native)
    if rng.random() < 0.5:                                       # the crop is the picture
        left, right = 0, native
        if rng.random() < 0.5:                                   # cut taller than wide around the digit
            x0, _, x1, _ = boxes[len(style.left)]
            width = max(4, round(native / float(rng.uniform(1.3, 2.2))))
            left = int(np.clip(round((x0 + x1) / 2 - width / 2), 0, native - width))
            right = left + width
        scale = size / native
        picture = crop.crop((left, 0, right, native)).resize((max(1, round((right - left) * scale)), size),
                                                             Image.Resampling.BICUBIC)
        img = np.asarray(picture, np.float32) / 255.0
        h, w = img.shape[:2]
        digits, cut = split_visible((boxes - np.array([left, 0, left, 0], np.float32)) * scale, (0, 0, w, h))
        return Scene(_finish(rng, img), digits, cut)
    h, w = _frame_size(rng, size)
    crop_side = lambda: max(12, min(min(h, w), round(max(h, w) / float(rng.uniform(2, 6)))))  # noqa: E731
    if blurred_numbers and rng.random() < blurred_numbers:
        side = crop_side()
        img = _wall_of_blurred_numbers(rng, h, w, max(8, round(side * float(rng.uniform(0.5, 1.5)))), fonts)
    else:                                   # the draws in the order of runs 8 to 12: they render as before
        img = _draw_clutter(rng, _wall(rng, h, w))
        if rng.random() < 0.3:
            img = _blurred_signs(rng, img, fonts)
        if rng.random() < 0.3:
            img = _draw_letters(rng, img, fonts)
        side = crop_side()
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    _paste(img, np.asarray(crop.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0,
           x, y, feather=0)
    digits, cut = split_visible(boxes * (side / native) + np.array([x, y, x, y], np.float32), (x, y, x + side, y + side))
    return Scene(_finish(rng, img), digits, cut)


def letterboxed(scene: Scene, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scene as the localiser sees it: uint8 (size, size, 3) and its boxes in input pixels."""
    image, frame = letterbox(Image.fromarray(scene.image), size)
    to_input = lambda b: b * frame.scale + np.array([frame.left, frame.top] * 2, np.float32)  # noqa: E731
    return image, to_input(scene.boxes).astype(np.float32), to_input(scene.ignore).astype(np.float32)


def _render_chunk(args: tuple) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    indices, seed, split_id, size, fonts = args
    out = []
    for index in indices:
        rng = np.random.default_rng([seed, split_id, int(index)])
        out.append(letterboxed(render_scene(rng, fonts, size), size))
    return out


def generate_scenes(n: int, seed: int, split: str = "train", size: int = INPUT_SIZE,
                    workers: int = 1) -> dict[str, np.ndarray]:
    """Render ``n`` letterboxed scenes.

    Returns:
        ``x`` uint8 (n, size, size, 3); ``boxes`` float32 (K, 4) and ``ignore`` float32 (L, 4) in
        input pixels, with ``box_index``/``ignore_index`` int64 naming each box's scene.

    Raises:
        ValueError: for an unknown split.
    """
    if split not in SCENE_SPLIT_IDS:
        raise ValueError(f"Invalid split {split!r}. Only {', '.join(SCENE_SPLIT_IDS)} are supported.")
    fonts = tuple(find_fonts())
    chunks = np.array_split(np.arange(n), max(1, min(n, workers * 8)))
    jobs = [(c, seed, SCENE_SPLIT_IDS[split], size, fonts) for c in chunks]
    if workers == 1 or n < 2:
        parts = [_render_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    scenes = [s for part in parts for s in part]
    x = np.stack([s[0] for s in scenes]) if scenes else np.zeros((0, size, size, 3), np.uint8)
    out = {"x": x}
    for key, col in (("boxes", 1), ("ignore", 2)):
        out[key] = np.concatenate([s[col] for s in scenes] + [np.zeros((0, 4), np.float32)])
        out[key + "_index"] = np.concatenate([np.full(len(s[col]), i, np.int64) for i, s in enumerate(scenes)]
                                             + [np.zeros(0, np.int64)])
    return out


__all__ = ["RENDERER_VERSION", "Scene", "render_scene", "closeup", "svhn_crop", "letterboxed", "split_visible", "generate_scenes", "KINDS", "DIGITS"]
