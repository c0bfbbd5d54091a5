"""The classification service: upload bytes (and optionally a box) in, a ``Prediction`` out.

One ``Classifier`` per worker, created by the application factory: it decodes the upload
(``app.imaging``), checks the person's box against the picture (``app.boxes``), then reads the
digit (``Classifier._read``): the region is framed as SVHN's crops were, run through the one shared
preprocessing function (``model.preprocess.preprocess``) with the input size and mean/std that
travel with the model, and the micro-batcher gives the probabilities. Pages and the API both call
``classify``, so they cannot disagree.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from PIL import Image

from app.batcher import MicroBatcher
from app.boxes import Box, check_box
from app.imaging import decode_upload, png_data_url
from model.inference import Predictor
from model.preprocess import preprocess

log = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.5   # below this the page says the picture may not show a single clear digit


@dataclass(frozen=True)
class Prediction:
    """One classified picture, as the API returns it (``to_json``); boxes are [left, top, right,
    bottom] in pixels of the picture after EXIF rotation, right and bottom exclusive."""

    digit: int | None             # the digit read (class index = digit), None when there is none
    confidence: float             # its probability (the highest one when digit is None)
    probabilities: list[float]    # index = digit, sums to 1
    model: str                    # checkpoint file name
    elapsed_ms: float             # decode + preprocess + forward, in this worker
    input_image: str              # what the network saw: data: URL of a PNG of the input size
    box: list[int] | None         # where it looked
    image_size: list[int]         # [width, height] of the picture after EXIF rotation
    others: int                   # how many other digits were seen besides the one read
    reason: str | None            # why digit is None; None when a digit was read
    source: str                   # where the box came from: "localiser" or "user"

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Reading:
    """What ``Classifier._read`` found in a picture; ``classify`` adds the model and the timing."""

    digit: int | None
    probabilities: np.ndarray     # (classes,) float64, sums to 1
    seen: Image.Image             # the network input before normalisation
    box: Box | None
    others: int = 0
    reason: str | None = None
    source: str = "localiser"


def centred_square(width: int, height: int) -> Box:
    """The centred square of side min(width, height): what ``fit="crop"`` cuts from a picture."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def square_around(image: Image.Image, box: Box) -> Image.Image:
    """PROVISIONAL (issue 11, until model/reading.py): ``box`` widened to a square around its
    centre (side = max(width, height)), as SVHN's crops were; parts past the picture's edges repeat
    the edge pixels."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top)
    x0, y0 = (left + right - side) // 2, (top + bottom - side) // 2
    x1, y1 = x0 + side, y0 + side
    width, height = image.size
    inside = image.crop((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
    pad = ((max(-y0, 0), max(y1 - height, 0)), (max(-x0, 0), max(x1 - width, 0)), (0, 0))
    if not any(any(p) for p in pad):
        return inside
    return Image.fromarray(np.pad(np.asarray(inside), pad, mode="edge"))


class Classifier:
    """Owns a worker's predictor and micro-batcher.

    Args:
        predictor: the loaded model (``model.inference``).
        batcher: a ``MicroBatcher`` around ``predictor.predict``.
    """

    def __init__(self, predictor: Predictor, batcher: MicroBatcher):
        self.predictor = predictor
        self.batcher = batcher
        info = predictor.info
        self.input_size = [int(s) for s in info["input_size"]]
        self.mean, self.std = info["mean"], info["std"]
        self.class_names = list(info["class_names"])

    @property
    def name(self) -> str:
        return self.predictor.name

    def classify(self, data: bytes, box: Box | None = None) -> Prediction:
        """Classify one uploaded picture, in ``box`` when the person gave one.

        Args:
            data: the uploaded file's bytes.
            box: (left, top, right, bottom) in pixels of the picture after EXIF rotation, from
                ``app.boxes.parse_box``; None lets the service find the digit.

        Raises:
            app.imaging.UploadError: if the upload is not a picture this service accepts, or the
                box is not inside it (400).
        """
        start = time.perf_counter()
        image = decode_upload(data)
        if box is not None:
            box = check_box(box, *image.size)
        reading = self._read(image, box)
        probs = reading.probabilities
        confidence = float(probs[reading.digit]) if reading.digit is not None else float(probs.max(initial=0.0))
        return Prediction(digit=reading.digit, confidence=round(confidence, 6),
                          probabilities=[float(p) for p in probs], model=self.name,
                          elapsed_ms=round((time.perf_counter() - start) * 1000, 2),
                          input_image=png_data_url(reading.seen),
                          box=None if reading.box is None else [int(v) for v in reading.box],
                          image_size=list(image.size), others=reading.others, reason=reading.reason,
                          source=reading.source)

    def _read(self, image: Image.Image, box: Box | None) -> Reading:
        """PROVISIONAL (issue 11): read the digit in ``box``, or in the centred square without one.

        Stands in for model/reading.py (localiser, SVHN framing, several views, "no digit"), which
        replaces this function: here the person's box is widened to a square around its centre,
        and without a box the picture's centred square is read as before. It always reads a digit
        (``reason`` None) and sees no others.
        """
        source = "localiser" if box is None else "user"
        if box is None:
            box = centred_square(*image.size)
        x, seen = preprocess(square_around(image, box), self.input_size, self.mean, self.std)   # (3, H, W)
        probs = np.asarray(self.batcher.predict(x), dtype=np.float64)
        probs = probs / probs.sum()                                         # exact in float64 for JSON
        return Reading(digit=int(probs.argmax()), probabilities=probs, seen=seen, box=box, source=source)

    def close(self) -> None:
        self.batcher.close()
