"""Image preprocessing shared by training-time evaluation and serving (numpy and Pillow only).

``preprocess`` is the single path from a decoded picture to the network's input. SVHN's cropped
digits were made by widening each digit's box to a square around it and resizing that square to
32x32, so the digit keeps its aspect ratio. A photo whose main subject is a digit is treated the
same way: the centred square of side min(width, height) is cut out and resized (``fit="crop"``),
never squashed. The alternatives (``"squash"``, ``"pad"``) are kept for the measurement that chose
this default (see README, "Preprocessing"). An underexposed result is brightened into the range the
network trained on (``expose``; docs/reading.md, "An exposure gain").

``decode_picture`` is the single path from a picture file to an upright RGB picture, for the server
and the command line alike: a large JPEG (a phone camera's) is decoded at a reduced scale, and the
``Photo`` it returns maps boxes between the file's pixels and the decoded picture's.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

FITS = ("crop", "pad", "squash")
DEFAULT_FIT = "crop"
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto
EXPOSURE_TARGET = 94.0       # the 5th percentile of the white level (below) over SynthDigits v5 training renders
MAX_GAIN = 4.0               # ... and the most an underexposed input is brightened
WORKING_SIDE = 1280           # a large JPEG is decoded with at least this many pixels on its longer side:
#                               a digit 1/40 of the photo's width keeps the network's 32 px


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB.

    Transparent pixels are composited onto white; 16- and 32-bit images are scaled to 8 bits
    (float images with values in [0, 1] are taken as [0, 1], others as [0, 255]).
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or a.max() > 255:
            top = 65535.0
        else:  # float images in [0, 1] are scaled like 8-bit ones in [0, 255]
            top = 1.0 if image.mode == "F" and a.max() <= 1.0 else 255.0
        image = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


@dataclass(frozen=True)
class Photo:
    """A decoded picture file: ``picture``, upright RGB, perhaps decoded at a reduced scale; ``size``,
    the upright file's (width, height), in whose pixels boxes are given and returned."""

    picture: Image.Image
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """File pixels per decoded pixel, across and down (1, 1 unless reduced)."""
        return self.size[0] / self.picture.width, self.size[1] / self.picture.height

    def to_picture(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A box in the file's pixels -> the same box in the decoded picture's pixels."""
        sx, sy = self.scale
        return box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy

    def to_photo(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """A box in the decoded picture's pixels -> whole file pixels covering it, inside the picture."""
        sx, sy = self.scale
        return whole_pixels((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy), self.size)


def whole_pixels(box: Sequence[float], size: Sequence[int]) -> tuple[int, int, int, int]:
    """The whole pixels covering ``box`` (left, top, right, bottom), inside a picture of ``size``."""
    w, h = size
    return (min(max(math.floor(box[0]), 0), w), min(max(math.floor(box[1]), 0), h),
            min(max(math.ceil(box[2]), 0), w), min(max(math.ceil(box[3]), 0), h))


def reduce_on_decode(image: Image.Image) -> None:
    """Ask a large JPEG's decoder (not yet loaded) for the smallest DCT scale, of 1/2, 1/4 and 1/8
    (libjpeg's, ``Image.draft``), that keeps WORKING_SIDE pixels on the longer side."""
    width, height = image.size
    if image.format in ("JPEG", "MPO") and max(width, height) >= 2 * WORKING_SIDE:   # MPO: a phone's JPEG with extra frames
        fraction = WORKING_SIDE / max(width, height)
        image.draft(image.mode, (math.ceil(width * fraction), math.ceil(height * fraction)))


def decode_picture(image: Image.Image) -> Photo:
    """An opened, not yet loaded, picture -> its ``Photo``: decoded (a large JPEG at a reduced
    scale), turned upright by its EXIF orientation, in RGB.

    Raises:
        OSError, ValueError, SyntaxError: as Pillow does for a damaged or truncated file.
    """
    width, height = image.size                      # as stored, before the EXIF rotation
    reduce_on_decode(image)
    image.load()
    stored = image.size
    try:
        ImageOps.exif_transpose(image, in_place=True)   # a returned copy would cost 0.1 ms a request
    except Exception:  # a damaged EXIF block should not cost the picture
        log.debug("ignoring unreadable EXIF orientation", exc_info=True)
    turned = image.size != stored
    return Photo(to_rgb(image), (height, width) if turned else (width, height))


def fit_to_input(image: Image.Image, size: Sequence[int], fit: str = DEFAULT_FIT) -> Image.Image:
    """Resize an RGB image to ``size`` = (height, width) keeping the subject's aspect ratio.

    Args:
        image: any Pillow image (converted with ``to_rgb``).
        size: (height, width) of the network input.
        fit: "crop" (centred square, then resize), "pad" (pad to a square with the border colour)
            or "squash" (resize ignoring aspect ratio).

    Returns:
        An RGB image of exactly ``size``: what the network sees, before normalisation; ``expose``d.
    """
    if fit not in FITS:
        raise ValueError(f"Invalid fit {fit!r}. Only {', '.join(FITS)} are supported.")
    image = to_rgb(image)
    h, w = int(size[0]), int(size[1])
    if image.size == (w, h):
        return expose(image)
    iw, ih = image.size
    target_ratio = w / h
    if fit == "crop" and iw != ih * target_ratio:
        cw, ch = min(iw, round(ih * target_ratio)), min(ih, round(iw / target_ratio))
        left, top = (iw - cw) // 2, (ih - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))
    elif fit == "pad" and iw != ih * target_ratio:
        cw, ch = max(iw, round(ih * target_ratio)), max(ih, round(iw / target_ratio))
        border = tuple(int(v) for v in np.median(np.asarray(image).reshape(-1, 3), axis=0))
        canvas = Image.new("RGB", (cw, ch), border)
        canvas.paste(image, ((cw - iw) // 2, (ch - ih) // 2))
        image = canvas
    return expose(image.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0))


def white_level(a: np.ndarray) -> float:
    """The white level of an RGB array (H, W, 3): the 99th percentile of its luminance (mean of R, G, B)."""
    return float(np.percentile(a.mean(axis=2), 99))


def exposure_gain(white: float, target: float) -> float:
    """The gain that raises a white level under ``target`` to it, at most ``MAX_GAIN``; 1 at or above it."""
    return 1.0 if white >= target else min(MAX_GAIN, target / max(white, 1.0))


def expose(image: Image.Image) -> Image.Image:
    """An underexposed input brightened into the range the network trained on.

    The white level (``white_level``) of an input under ``EXPOSURE_TARGET`` is raised to it, by at
    most ``MAX_GAIN``; any other input is returned as it is.
    """
    a = np.asarray(image, dtype=np.float32)                         # (H, W, 3)
    gain = exposure_gain(white_level(a), EXPOSURE_TARGET)
    if gain == 1.0:
        return image
    return Image.fromarray(np.clip(a * gain + 0.5, 0, 255).astype(np.uint8))


def normalize(image: Image.Image | np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W), scaled to [0, 1] then standardised per channel."""
    a = np.asarray(image, dtype=np.float32) / 255.0                   # (H, W, 3)
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))                 # (3, H, W)


def preprocess(image: Image.Image, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
               fit: str = DEFAULT_FIT) -> tuple[np.ndarray, Image.Image]:
    """Picture -> network input. The one preprocessing path for evaluation and serving.

    Returns:
        (x, seen): x float32 (3, H, W), and the RGB image of ``size`` the network sees.
    """
    seen = fit_to_input(image, size, fit)
    return normalize(seen, mean, std), seen
