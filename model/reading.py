"""Reading the digit in a photo as people take it: find it, frame it like SVHN, read several views.

The one path from a decoded picture to an answer, for the API, the page, ``--evaluate``-style
benches and the command line (``python -m model.reading PHOTO|FOLDER ... [--json]``):

1. **Find** (``Reader.read`` without a box): the localiser (``model.localiser``, a small network
   trained on rendered scenes) proposes a box for every digit it sees; the one a person most
   likely meant is the largest and most central (``main_detection``); the others are counted.
   When it finds no digit, or only a small one, it looks at the whole picture again at a finer
   scale (``FINER_SIZE`` instead of 128 px: a digit a twentieth of the picture is 8 px there, not
   6) and adds the small digits it is sure of there (``FINER_THRESHOLD``).
   A small main digit gets a second look: the localiser sees a square of four times its size around
   it (letterboxed like any picture, so a small digit is enlarged), and its box there (``main_detection`` of that square) replaces the first.
   When the digit found fills much of the picture (a tight crop), the square around the whole
   picture is the second view instead of the zooms and shifts (they would run off the picture,
   into repeated edge pixels: measured 3 points worse on tight photos).
   When it finds none in a dim picture (white level under ``DIM_TARGET``), it looks again, all of
   the above, at the picture brightened (``brightened``).
   When it finds none, the answer is "no digit here" (``digit`` None, with a ``reason``); the
   classifier does not read the whole picture then (that fallback called large letters digits).
   A weak find (score under ``WEAK_FIND``) read less than ``WEAK_READ`` sure is no digit too.
2. **Frame**: SVHN's crops widen a digit's box to a square around it, keeping its neighbours at
   the sides; ``frame_views`` cuts that square (``FRAME_SCALE`` x the box's longer side) from the
   picture, continuing the picture's edge where the square runs past it, plus the ``VIEWS``: small
   zooms and shifts of the same square.
3. **Read**: the first view (the square) is read; when the classifier is less than ``SURE`` of it,
   all views go through the classifier in one batch and their probabilities are averaged (most
   pictures cost one view). A box the person drew (``box=``) replaces step 1 and is framed the same
   way.

No torch here: the two networks are callables (ONNX Runtime in serving, see ``model.inference``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from model.localiser import Detection, decode, iou, letterbox, main_detection, merge, normalize_input
from model.preprocess import (Photo, decode_picture, exposure_gain, fit_to_input, normalize, to_rgb, white_level,
                              whole_pixels)

FIND_THRESHOLD = 0.3     # lowest localiser score that counts as a digit (see bench/photo_suite.py)
WEAK_FIND = 0.5          # a main digit found less sure than this ...
WEAK_READ = 0.5          # ... and read less sure than this is no digit (letters, mostly; docs/reading.md)
TIGHT_FRACTION = 0.5     # a digit at least this tall (or wide) a part of the picture: the picture is a tight crop
SURE = 0.9               # a first view this confident is the answer; below it, all the views are read
FRAME_SCALE = 1.0        # square side / the box's longer side (SVHN: the box widened to a square)
OTHER_MAX_IOU = 0.3      # detections overlapping the main one more than this are the same digit
LOOK_AGAIN_BELOW = 0.25  # a main digit smaller than this part of the picture's longer side gets a second look
LOOK_AGAIN_CONTEXT = 4.0 # side of the second look's square / the digit's longer side
FINER_SIZE = 160         # with no main digit or one under LOOK_AGAIN_BELOW, the localiser sees the picture this large too
FINER_THRESHOLD = 0.4    # ... and adds the digits under LOOK_AGAIN_BELOW it finds there this sure
SAME_DIGIT_IOU = 0.5     # detections of the two looks overlapping more than this are one digit (the surer kept)
DIM_TARGET = 77.0        # a picture with no digit found whose white level is under this (the 5th percentile of the
#                          localiser's training scenes') is looked at again brightened up to it (docs/reading.md)
WHITE_LEVEL_SIDE = 256   # the white level is measured on a copy at most this large
# (zoom, shift x, shift y) of each view: zoom scales the square, shifts are fractions of its side.
VIEWS: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (1.15, 0.0, 0.0), (0.9, 0.0, 0.0),
                                                 (1.0, -0.06, 0.0), (1.0, 0.06, 0.0))
NOTHING_FOUND = "nothing in the picture looks like a digit"          # the no-digit answers' reasons
FAINT = "the one candidate is faint and does not read as a digit"
COMBINES = ("mean", "most confident")   # how the views' probabilities become one answer

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Reading:
    """What the pipeline made of one picture.

    Attributes:
        digit: the digit read, or None when no digit was found.
        confidence: its averaged probability (0 when no digit).
        probabilities: (classes,) combined over the views (empty when no digit).
        box: (left, top, right, bottom) in picture pixels of the digit read, or of the faint
            candidate that did not read as one; None when nothing was found.
        others: other digits seen besides the one read.
        reason: why ``digit`` is None, else None.
        seen: the first view, as the network saw it (input size); None when it read nothing.
        source: "localiser", "user" (a box the person gave) or "picture" (no localiser).
        views: number of views read.
    """

    digit: int | None
    confidence: float
    probabilities: np.ndarray
    box: tuple[int, int, int, int] | None
    others: int
    reason: str | None
    seen: Image.Image | None
    source: str
    views: int


def longer_side(box: Box) -> float:
    """The longer of a box's width and height."""
    return max(box[2] - box[0], box[3] - box[1])


def square_around(box: Box, zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> Box:
    """The SVHN square around ``box``: side FRAME_SCALE x zoom x its longer side, centred, shifted."""
    x0, y0, x1, y1 = box
    side = FRAME_SCALE * zoom * longer_side(box)
    cx, cy = (x0 + x1) / 2 + shift[0] * side, (y0 + y1) / 2 + shift[1] * side
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def cut(picture: Image.Image, box: Box) -> Image.Image:
    """The pixels of ``box`` from an RGB ``picture``; where the box runs past the picture, the
    picture's edge pixels continue (SVHN's squares run past the photo too, over more of the wall).
    Only the part of the picture inside the box is copied."""
    w, h = picture.size
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = max(x0 + 1, int(np.ceil(box[2]))), max(y0 + 1, int(np.ceil(box[3])))
    sx0, sy0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
    sx1, sy1 = max(min(x1, w), sx0 + 1), max(min(y1, h), sy0 + 1)
    inside = picture.crop((sx0, sy0, sx1, sy1))
    pad = ((max(0, sy0 - y0), max(0, y1 - sy1)), (max(0, sx0 - x0), max(0, x1 - sx1)), (0, 0))
    if not any(any(p) for p in pad):
        return inside
    return Image.fromarray(np.pad(np.asarray(inside), pad, mode="edge"))


def frame_views(picture: Image.Image, box: Box, size: Sequence[int],
                views: Sequence[tuple[float, float, float]] = VIEWS) -> list[Image.Image]:
    """Each view of ``box`` in an RGB picture as the network's input: the SVHN square, zoomed and
    shifted, resized."""
    # already square: squash only resizes
    return [fit_to_input(cut(picture, square_around(box, zoom, (dx, dy))), size, "squash") for zoom, dx, dy in views]


def brightened(picture: Image.Image, target: float = DIM_TARGET) -> Image.Image | None:
    """A dim RGB picture brightened so that its white level reaches ``target`` (at most
    ``model.preprocess.MAX_GAIN``), or None if it is not dim."""
    small = picture.copy()
    small.thumbnail((WHITE_LEVEL_SIDE, WHITE_LEVEL_SIDE))
    gain = exposure_gain(white_level(np.asarray(small, np.float32)), target)
    if gain == 1.0:
        return None
    return picture.point([min(255, int(v * gain + 0.5)) for v in range(256)] * 3)


def is_tight(box: Box, size: Sequence[int]) -> bool:
    """Whether a digit's box fills much of the picture: the picture itself is then a tight crop."""
    return (box[3] - box[1]) >= TIGHT_FRACTION * size[1] or (box[2] - box[0]) >= TIGHT_FRACTION * size[0]


class Reader:
    """The reading pipeline around two networks.

    Args:
        classify: float32 (V, 3, H, W) preprocessed views -> probabilities (V, classes).
        locate: float32 (1, 3, S, S) letterboxed picture -> localiser maps (1, 5, S/4, S/4), or
            None to read the whole picture's centred square (the behaviour before the localiser).
        input_size, mean, std: the classifier's, from its checkpoint.
        views: the views read for each box (``VIEWS``).
        threshold: lowest localiser score that counts as a digit.
        locator_size: the localiser's input side (its checkpoint's; default ``model.localiser.INPUT_SIZE``).
        finer_size: the side of the finer look (``FINER_SIZE``), or None for none.
        combine: "mean" (average the views' probabilities) or "most confident" (the view whose top
            probability is highest).
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray], locate: Callable[[np.ndarray], np.ndarray] | None,
                 input_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 views: Sequence[tuple[float, float, float]] = VIEWS, threshold: float = FIND_THRESHOLD,
                 locator_size: int | None = None, combine: str = "mean", finer_size: int | None = FINER_SIZE):
        if combine not in COMBINES:
            raise ValueError(f"Invalid combine {combine!r}. Only {', '.join(COMBINES)} are supported.")
        self.combine = combine
        self.classify, self.locate = classify, locate
        self.input_size, self.mean, self.std = [int(s) for s in input_size], mean, std
        self.views, self.threshold = tuple(views), threshold
        self.locator_size, self.finer_size = locator_size, finer_size

    def detect(self, picture: Image.Image, size: int | None = None, threshold: float | None = None) -> list[Detection]:
        """Every digit the localiser sees with at least ``threshold`` (default: the reader's), best
        first, with the picture letterboxed to ``size`` (default: the localiser's input size)."""
        size = size or self.locator_size
        letterboxed, frame = letterbox(picture, **({} if size is None else {"size": size}))
        maps = self.locate(normalize_input(letterboxed[None]))[0]
        return decode(maps, frame, picture.size, self.threshold if threshold is None else threshold)

    def find(self, picture: Image.Image) -> tuple[Detection | None, list[Detection]]:
        """The main digit (None if none) and every detection, after the finer look and the second
        look at a small one; when none is found in a dim picture, all of that again on the picture
        brightened (``brightened``)."""
        main, found = self._find(picture)
        if main is None and (bright := brightened(picture)) is not None:
            return self._find(bright)
        return main, found

    def _find(self, picture: Image.Image) -> tuple[Detection | None, list[Detection]]:
        found = self.detect(picture)
        main = main_detection(found, picture.size)
        small = LOOK_AGAIN_BELOW * max(picture.size)
        if self.finer_size and (main is None or longer_side(main.box) < small):
            finer = [d for d in self.detect(picture, self.finer_size, FINER_THRESHOLD) if longer_side(d.box) < small]
            found = merge(found + finer, SAME_DIGIT_IOU)
            main = main_detection(found, picture.size)
        if main is None or longer_side(main.box) >= small:
            return main, found
        return self._look_again(picture, main, found)

    def _look_again(self, picture: Image.Image, main: Detection, found: list[Detection]
                    ) -> tuple[Detection, list[Detection]]:
        """The second look at a small main digit: the localiser on the square of LOOK_AGAIN_CONTEXT
        times its size around it; the main digit there, if any, replaces it."""
        x0, y0, x1, y1 = main.box
        half = LOOK_AGAIN_CONTEXT * longer_side(main.box) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        right, bottom = min(picture.width, int(np.ceil(cx + half))), min(picture.height, int(np.ceil(cy + half)))
        closer = main_detection(self.detect(picture.crop((left, top, right, bottom))), (right - left, bottom - top))
        if closer is None:
            return main, found
        b = closer.box
        refined = Detection((b[0] + left, b[1] + top, b[2] + left, b[3] + top), max(main.score, closer.score))
        return refined, [refined if d is main else d for d in found]

    def read_photo(self, photo: Photo, box: Box | None = None) -> Reading:
        """Read a decoded file (``model.preprocess.decode_picture``), at ``box`` (the file's pixels)
        if the person gave one; the reading's box is in the file's pixels too: the person's box as
        given (whole pixels inside the picture), else the box found, mapped from the decoded picture."""
        r = self.read(photo.picture, None if box is None else photo.to_picture(box))
        if r.box is None:
            return r
        return replace(r, box=whole_pixels(box, photo.size) if box is not None else photo.to_photo(r.box))

    def read(self, picture: Image.Image, box: Box | None = None) -> Reading:
        """Read one upright RGB picture, at ``box`` (picture pixels) if the person gave one."""
        picture = to_rgb(picture)
        others, source = 0, "user"
        if box is None and self.locate is None:
            side = min(picture.size)
            w, h = picture.size
            box, source = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2), "picture"
        elif box is None:
            main, found = self.find(picture)
            if main is None:       # nothing is read: a sure whole-picture read was mostly a letter (docs/reading.md)
                return self._no_digit(None, 0, NOTHING_FOUND)
            whole = (0.0, 0.0, float(picture.width), float(picture.height))
            others = sum(1 for d in found if d is not main and iou(d.box, main.box) <= OTHER_MAX_IOU)
            tight = is_tight(main.box, picture.size)   # zooms and shifts would run off the picture
            probs, views = self._read_when_unsure(picture, main.box, extra=whole if tight else None)
            if main.score < WEAK_FIND and probs.max() < WEAK_READ:   # a faint mark that does not read as a digit
                return self._no_digit(views[0], len(views), FAINT, whole_pixels(main.box, picture.size))
            return self._reading(probs, views, main.box, picture.size, others, "localiser")
        probs, views = self._read_when_unsure(picture, box)
        return self._reading(probs, views, box, picture.size, others, source)

    def _read_when_unsure(self, picture: Image.Image, box: Box,
                          extra: Box | None = None) -> tuple[np.ndarray, list[Image.Image]]:
        """The first view of ``box``; when it is less than SURE, the other views too (or, given
        ``extra``, the square of that box instead: a tight crop's whole picture), all combined."""
        views = frame_views(picture, box, self.input_size, self.views[:1])
        each = self._classify(views)
        if each.max() < SURE and (extra is not None or len(self.views) > 1):
            more = (frame_views(picture, extra, self.input_size, self.views[:1]) if extra is not None
                    else frame_views(picture, box, self.input_size, self.views[1:]))
            each, views = np.concatenate([each, self._classify(more)]), views + more
        return self._combine(each), views

    def _classify(self, views: list[Image.Image]) -> np.ndarray:
        """Probabilities (V, classes) of the views, in one batch."""
        batch = np.stack([normalize(v, self.mean, self.std) for v in views])        # (V, 3, H, W)
        return np.asarray(self.classify(batch), np.float64)

    def _combine(self, each: np.ndarray) -> np.ndarray:
        """One answer (classes,) from the views' probabilities (V, classes), by ``combine``."""
        probs = each.mean(axis=0) if self.combine == "mean" else each[each.max(axis=1).argmax()]
        return probs / probs.sum()

    @staticmethod
    def _no_digit(seen: Image.Image | None, views: int, reason: str,
                  box: tuple[int, int, int, int] | None = None) -> Reading:
        """The "no digit here" answer; ``seen`` and ``box``: the view the network read and where, if it read one."""
        return Reading(None, 0.0, np.zeros(0, np.float32), box, 0, reason, seen, "localiser", views)

    @staticmethod
    def _reading(probs: np.ndarray, views: list[Image.Image], box: Box, size: Sequence[int], others: int,
                 source: str) -> Reading:
        digit = int(probs.argmax())
        return Reading(digit, float(probs[digit]), probs, whole_pixels(box, size), others, None, views[0], source,
                       len(views))


# ----------------------------------------------------------------------------- command line


PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def picture_files(paths: Sequence[str]) -> list[Path]:
    """The picture files named, and those inside named folders (sorted), in order."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in PICTURE_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out


def reading_json(path: Path, r: Reading, size: Sequence[int]) -> dict:
    """One picture's line of ``--json`` (``read_photo``'s reading): box and size in the file's pixels."""
    return {"file": str(path), "digit": r.digit, "confidence": round(r.confidence, 4),
            "box": None if r.box is None else list(r.box),
            "image_size": list(size), "others": r.others, "reason": r.reason}


def get_args_parser() -> argparse.ArgumentParser:
    from model.inference import BACKENDS, DEFAULT_BACKEND

    p = argparse.ArgumentParser(description="Read the digit in photos with the serving pipeline (no server).")
    p.add_argument("paths", nargs="+", help="picture files (JPEG, PNG, WebP) or folders of them")
    p.add_argument("--checkpoint", default="checkpoints/default.pt", help="classifier (default: %(default)s)")
    p.add_argument("--localiser", default="checkpoints/localiser.pt", help="localiser (default: %(default)s)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="default: %(default)s")
    p.add_argument("--box", default=None, metavar="L,T,R,B", help="read this box instead of finding the digit")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def _export_if_needed(*checkpoints: str) -> None:
    """Export each checkpoint's ONNX file if it is missing or stale (this alone imports torch)."""
    from model.inference import onnx_is_current

    for ckpt in checkpoints:
        if not onnx_is_current(ckpt):
            from model.checkpoint import CheckpointError
            from model.export import export_onnx
            from model.inference import ModelLoadError

            try:
                export_onnx(ckpt)
            except CheckpointError as e:
                raise ModelLoadError(str(e)) from e


def main(argv: list[str] | None = None) -> int:
    from model.inference import ModelLoadError, load_reader

    args = get_args_parser().parse_args(argv)
    box = None
    if args.box:
        try:
            box = tuple(float(v) for v in args.box.split(","))
            assert len(box) == 4 and box[2] > box[0] and box[3] > box[1]
        except (ValueError, AssertionError):
            print(f"error: --box {args.box!r}: give left,top,right,bottom in pixels, right > left, bottom > top.",
                  file=sys.stderr)
            return 2
    try:
        if args.backend != "torch":
            _export_if_needed(args.checkpoint, args.localiser)
        reader = load_reader(args.checkpoint, args.localiser, args.backend)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    for path in picture_files(args.paths):
        try:
            with Image.open(path) as image:
                photo = decode_picture(image)       # as the server decodes an upload
        except (OSError, ValueError, SyntaxError) as e:
            print(f"{path}: error: not a readable picture ({type(e).__name__})", file=sys.stderr)
            status = 1
            continue
        r = reader.read_photo(photo, box)
        if args.json:
            print(json.dumps(reading_json(path, r, photo.size)))
        elif r.digit is None:
            where = f"; candidate's box {','.join(map(str, r.box))}" if r.box else ""
            print(f"{path}: no digit ({r.reason}{where})")
        else:
            extra = f", {r.others} other digit{'s' * (r.others != 1)} seen" if r.others else ""
            print(f"{path}: {r.digit} (confidence {r.confidence:.2f}, box {','.join(map(str, r.box))}{extra})")
    return status


if __name__ == "__main__":
    sys.exit(main())
