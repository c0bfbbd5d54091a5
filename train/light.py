"""Poor light, a training augmentation: a picture as a camera takes it in dim, uneven, coloured light.

``poor_light`` is the arithmetic; the caller draws the randomness (the localiser's training from its
numpy generator, ``train.localise.augment``), so seeded runs repeat. The classifier's real crops
were tried with it too and it did not pay there (docs/reading.md, "Poor light in training").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

UNIFORMS = 7   # how many U(0, 1) numbers one poor_light call takes


def light_ramp(h: int, w: int, angle: float) -> np.ndarray:
    """float32 (h, w): a linear ramp across a picture in direction ``angle`` (radians), about -0.5
    at one edge to 0.5 at the other, 0 at the centre: light falling off across it."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / max(h, w)


def poor_light(x: np.ndarray, u: Sequence[float], noise: np.ndarray) -> np.ndarray:
    """``x``, float (H, W, 3) in [0, 1], as taken in poor light; the result is not clipped.

    From the uniforms ``u``: underexposed (x0.25 to 1), the light falling off across the picture
    (a linear ramp in a random direction, up to half as much again at one edge and half as little at
    the other), a colour cast (each channel x0.6 to 1), and a dim sensor's noise (``noise``, standard
    normal like ``x``, scaled to sigma 0 to 3% of full scale).
    """
    light = (0.25 + 0.75 * u[1]) * (1 + u[2] * light_ramp(*x.shape[:2], 2 * np.pi * u[0]))
    cast = 0.6 + 0.4 * np.asarray(u[3:6], np.float32)
    return x * light[..., None] * cast + 0.03 * u[6] * noise
