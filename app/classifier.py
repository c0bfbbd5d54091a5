"""The classification service: upload bytes in, a ``Prediction`` out.

One ``Classifier`` per worker, created by the application factory: it decodes the upload
(``app.imaging``), runs the one shared preprocessing function (``model.preprocess.preprocess``)
with the input size and mean/std that travel with the model, and asks the micro-batcher for the
probabilities. Pages and the API both call ``classify``, so they cannot disagree.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from app.batcher import MicroBatcher
from app.imaging import decode_upload, png_data_url
from model.inference import Predictor
from model.preprocess import preprocess

log = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.5   # below this the page says the picture may not show a single clear digit


@dataclass(frozen=True)
class Prediction:
    """One classified picture, as the API returns it."""

    digit: int                    # index of the most probable class (class names are the digits)
    confidence: float             # its probability
    probabilities: list[float]    # index = digit, sums to 1
    model: str                    # checkpoint file name
    elapsed_ms: float             # decode + preprocess + forward, in this worker
    input_image: str              # what the network saw: data: URL of a PNG of the input size

    @property
    def low_confidence(self) -> bool:
        return self.confidence < LOW_CONFIDENCE

    def to_json(self) -> dict:
        return asdict(self)


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

    def classify(self, data: bytes) -> Prediction:
        """Classify one uploaded picture.

        Raises:
            app.imaging.UploadError: if the upload is not a picture this service accepts.
        """
        start = time.perf_counter()
        image = decode_upload(data)
        x, seen = preprocess(image, self.input_size, self.mean, self.std)   # (3, H, W)
        probs = np.asarray(self.batcher.predict(x), dtype=np.float64)
        probs = probs / probs.sum()                                         # exact in float64 for JSON
        digit = int(probs.argmax())
        return Prediction(digit=digit, confidence=round(float(probs[digit]), 6),
                          probabilities=[float(p) for p in probs], model=self.name,
                          elapsed_ms=round((time.perf_counter() - start) * 1000, 2),
                          input_image=png_data_url(seen))

    def close(self) -> None:
        self.batcher.close()
