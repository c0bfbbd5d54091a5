"""The classification service: upload bytes (and optionally a box) in, a ``Prediction`` out.

One ``Classifier`` per worker, created by the application factory: it decodes the upload
(``app.imaging``), checks the person's box against the picture (``app.boxes``), then reads the
digit with the one reading pipeline (``model.reading.Reader``: the localiser finds the digit, its
SVHN square is framed in several views, and the classifier reads them in one batch). Both networks
sit behind micro-batchers, so concurrent requests share forwards. Pages and the API both call
``classify``, so they cannot disagree.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from app.batcher import MicroBatcher
from app.boxes import Box, check_box
from app.imaging import decode_upload, png_data_url
from model.inference import Predictor
from model.reading import Reader

log = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.5   # below this the page says the picture may not show a single clear digit


@dataclass(frozen=True)
class Prediction:
    """One classified picture, as the API returns it (``to_json``); boxes are [left, top, right,
    bottom] in pixels of the picture after EXIF rotation, right and bottom exclusive."""

    digit: int | None             # the digit read (class index = digit), None when there is none
    confidence: float             # its probability (averaged over the views); 0 when digit is None
    probabilities: list[float]    # index = digit, sums to 1; empty when digit is None
    model: str                    # checkpoint file name
    elapsed_ms: float             # decode + preprocess + forward, in this worker
    input_image: str | None       # what the network saw: data: URL of a PNG of the input size; None if nothing
    box: list[int] | None         # where it looked (for no digit: the faint candidate's box; None if nothing was found)
    image_size: list[int]         # [width, height] of the picture after EXIF rotation
    others: int                   # how many other digits were seen besides the one read
    reason: str | None            # why digit is None; None when a digit was read
    source: str                   # where the box came from: "localiser", "user" or "picture" (--localiser none)

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    def to_json(self) -> dict:
        return asdict(self)


class Classifier:
    """Owns a worker's networks, their micro-batchers and the reading pipeline.

    Args:
        predictor: the classifier (``model.inference``).
        batcher: a ``MicroBatcher`` around ``predictor.predict``.
        localiser: the localiser's predictor, or None to read the centred square (no "no digit").
        localiser_batcher: a ``MicroBatcher`` around ``localiser.forward``.
    """

    def __init__(self, predictor: Predictor, batcher: MicroBatcher, localiser: Predictor | None = None,
                 localiser_batcher: MicroBatcher | None = None):
        self.predictor = predictor
        self.batcher = batcher
        self.localiser, self.localiser_batcher = localiser, localiser_batcher
        info = predictor.info
        self.input_size = [int(s) for s in info["input_size"]]
        self.mean, self.std = info["mean"], info["std"]
        self.class_names = list(info["class_names"])
        locate, size = None, None
        if localiser is not None:
            locate, size = localiser_batcher.predict_many, int(localiser.info["input_size"][0])
        self.reader = Reader(batcher.predict_many, locate, self.input_size, self.mean, self.std, locator_size=size)

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
        upload = decode_upload(data)
        if box is not None:
            box = check_box(box, *upload.size)
        reading = self.reader.read_photo(upload, box)     # its box in the uploaded picture's pixels
        return Prediction(digit=reading.digit, confidence=round(reading.confidence, 6),
                          probabilities=[float(p) for p in reading.probabilities], model=self.name,
                          elapsed_ms=round((time.perf_counter() - start) * 1000, 2),
                          input_image=None if reading.seen is None else png_data_url(reading.seen),
                          box=None if reading.box is None else list(reading.box),
                          image_size=list(upload.size), others=reading.others, reason=reading.reason,
                          source=reading.source)

    def close(self) -> None:
        self.batcher.close()
        if self.localiser_batcher is not None:
            self.localiser_batcher.close()
