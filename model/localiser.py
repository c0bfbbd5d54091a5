"""LocNet: a small fully convolutional digit localiser, and the decoding of its output (numpy only).

The network follows the idea of CenterNet (Zhou, Wang & Krähenbühl, "Objects as Points", 2019) at
a tiny scale: a letterboxed picture (``input_size`` square, the longer side scaled to fit) goes
through four stride-2 stages of pre-activation BN-ReLU-conv3x3 blocks, a small top-down path
brings the coarse features back to stride 4, and a head predicts, per cell of the stride-4 grid,
five maps: the logit that a digit's centre lies in the cell (``HEAT``), the centre's offset within
the cell (``OFFSET_X``, ``OFFSET_Y``) and the log of the digit's width and height in cells
(``LOG_W``, ``LOG_H``). Every digit is an object, so a house number gives one peak per digit.

``decode`` turns the maps of one picture into scored boxes in the picture's own pixels, in numpy,
so a serving worker needs no torch; ``letterbox`` is the one way a picture becomes the input, for
training and serving alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

HEAT, OFFSET_X, OFFSET_Y, LOG_W, LOG_H = range(5)
OUTPUTS = ("heat", "offset_x", "offset_y", "log_w", "log_h")   # the checkpoint's "class_names"
INPUT_SIZE = 128          # side of the letterboxed input
STRIDE = 4                # input pixels per output cell
PAD_VALUE = (124, 124, 124)   # letterbox border, about the mean of the training scenes
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
DEPTHS = (1, 2)           # convolutions after each stage's stride-2 convolution
REDUCING_GAP = 1.0        # letterbox: Pillow box-reduces by the whole factor, then resamples the rest (< 2x);
                          # 2.0 (resample the last >= 2x) cost 0.35 ms more a photo and read no better (docs/reading.md)


def blocks_per_stage(depth: int) -> int:
    """LocNet's ``depth`` is the number of extra convolutions per stage (1 or 2)."""
    if depth not in DEPTHS:
        raise ValueError(f"Invalid LocNet depth {depth}. Only {', '.join(map(str, DEPTHS))} are supported.")
    return depth


@dataclass(frozen=True)
class Letterbox:
    """Where a picture lies inside the square input: input = picture * scale + (left, top)."""

    scale: float
    left: int
    top: int

    def to_picture(self, box: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) in input pixels -> picture pixels."""
        offset = np.array([self.left, self.top, self.left, self.top], np.float32)
        return (np.asarray(box, np.float32) - offset) / self.scale


def letterbox(image: Image.Image, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Scale an RGB picture so its longer side is ``size`` and centre it on a grey square.

    Returns:
        uint8 (size, size, 3) and the mapping back to the picture.
    """
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = image.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP) if (nw, nh) != (w, h) else image
    canvas = Image.new("RGB", (size, size), PAD_VALUE)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas.paste(small, (left, top))
    return np.asarray(canvas), Letterbox(scale=scale, left=left, top=top)


_SCALE = (1 / (255 * np.asarray(STD, np.float32))).reshape(1, 3, 1, 1)
_SHIFT = (-np.asarray(MEAN, np.float32) / np.asarray(STD, np.float32)).reshape(1, 3, 1, 1)


def normalize_input(batch: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) standardised with MEAN and STD (one copy, then
    in place: 0.03 instead of 0.195 ms for one 128x128 picture, bench/request_cpu.py)."""
    a = batch.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    a *= _SCALE
    a += _SHIFT
    return a


@dataclass(frozen=True)
class Detection:
    """One digit found: its box (left, top, right, bottom) in picture pixels and its score (0-1)."""

    box: tuple[float, float, float, float]
    score: float


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _local_maxima(heat: np.ndarray) -> np.ndarray:
    """Boolean (H, W): cells not below any of their 8 neighbours (CenterNet's 3x3 max-pool NMS)."""
    padded = np.pad(heat, 1, constant_values=-np.inf)
    h, w = heat.shape
    neighbours = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return heat >= neighbours.max(axis=0)


def decode(maps: np.ndarray, frame: Letterbox, picture_size: Sequence[int], threshold: float = 0.1,
           max_detections: int = 20) -> list[Detection]:
    """The detections of one picture, best first.

    Args:
        maps: float32 (5, H/STRIDE, W/STRIDE), the network's output for the picture.
        frame: where the picture lies in the input (``letterbox``).
        picture_size: (width, height) of the picture; boxes are clipped to it.
        threshold: lowest centre score kept.
        max_detections: most detections returned.
    """
    heat = _sigmoid(maps[HEAT])
    y, x = np.nonzero(_local_maxima(heat) & (heat >= threshold))
    order = np.argsort(-heat[y, x], kind="stable")[:max_detections]
    y, x = y[order], x[order]
    cx = (x + 0.5 + maps[OFFSET_X, y, x]) * STRIDE
    cy = (y + 0.5 + maps[OFFSET_Y, y, x]) * STRIDE
    bw, bh = np.exp(np.clip(maps[[LOG_W, LOG_H]][:, y, x], -4, 6)) * STRIDE
    boxes = frame.to_picture(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
    boxes = np.clip(boxes, 0, [picture_size[0], picture_size[1]] * 2)
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return [Detection(tuple(float(v) for v in box), float(score))
            for box, score in zip(boxes[keep].tolist(), heat[y, x][keep].tolist())]


def merge(detections: Sequence[Detection], max_iou: float) -> list[Detection]:
    """The detections of several looks at one picture as one list, best first: of two overlapping
    more than ``max_iou`` (the same digit seen twice), the surer one."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if all(iou(d.box, k.box) <= max_iou for k in kept):
            kept.append(d)
    return kept


def main_detection(detections: Sequence[Detection], picture_size: Sequence[int]) -> Detection | None:
    """The digit a person most likely meant: the largest and most central, weighed by score.

    Each detection is ranked by score x height x (1 - 0.8 d), d being the distance of its centre
    from the picture's centre in half-diagonals (0 at the centre, 1 in a corner): a digit in a
    corner must be more than three times as tall to win over one in the centre.
    """
    if not detections:
        return None
    w, h = float(picture_size[0]), float(picture_size[1])
    half_diagonal = np.hypot(w, h) / 2

    def rank(d: Detection) -> float:
        x0, y0, x1, y1 = d.box
        off = np.hypot((x0 + x1 - w) / 2, (y0 + y1 - h) / 2) / half_diagonal
        return d.score * (y1 - y0) * (1 - 0.8 * off)

    return max(detections, key=rank)
