"""Image preprocessing shared by training-time evaluation and serving (numpy and Pillow only).

``preprocess`` is the single path from a decoded picture to the network's input. SVHN's cropped
digits were made by widening each digit's box to a square around it and resizing that square to
32x32, so the digit keeps its aspect ratio. A photo whose main subject is a digit is treated the
same way: the centred square of side min(width, height) is cut out and resized (``fit="crop"``),
never squashed. The alternatives (``"squash"``, ``"pad"``) are kept for the measurement that chose
this default (see README, "Preprocessing").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

FITS = ("crop", "pad", "squash")
DEFAULT_FIT = "crop"
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto


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


def fit_to_input(image: Image.Image, size: Sequence[int], fit: str = DEFAULT_FIT) -> Image.Image:
    """Resize an RGB image to ``size`` = (height, width) keeping the subject's aspect ratio.

    Args:
        image: any Pillow image (converted with ``to_rgb``).
        size: (height, width) of the network input.
        fit: "crop" (centred square, then resize), "pad" (pad to a square with the border colour)
            or "squash" (resize ignoring aspect ratio).

    Returns:
        An RGB image of exactly ``size``: what the network sees, before normalisation.
    """
    if fit not in FITS:
        raise ValueError(f"Invalid fit {fit!r}. Only {', '.join(FITS)} are supported.")
    image = to_rgb(image)
    h, w = int(size[0]), int(size[1])
    if image.size == (w, h):
        return image
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
    return image.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0)


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
