"""The digit-recognition web app: an upload page, a JSON API and a health check.

``create_app(test_config=None)`` is the application factory (``flask --app app run`` finds it).
Configuration is layered: ``DEFAULTS``, then ``DIGITS_*`` environment variables (``DIGITS_CHECKPOINT``,
``DIGITS_BACKEND``, ...), then ``test_config``. The factory loads the model once per process and
keeps it, with its micro-batcher, in ``app.extensions["classifier"]``; under gunicorn it runs in
each worker after the fork (``app.server``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flask import Flask

from app.batcher import MicroBatcher
from app.classifier import Classifier
from app.errors import register_error_handlers
from app.imaging import MAX_UPLOAD_BYTES
from app.modelfile import DEFAULT_CHECKPOINT, DEFAULT_LOCALISER, REPO_ROOT, ensure_onnx, localiser_enabled
from app.requests import InMemoryRequest
from app.routes import api, health, pages
from model.inference import DEFAULT_BACKEND, default_threads, load_predictor, summary

log = logging.getLogger(__name__)

FORM_OVERHEAD_BYTES = 64 * 1024   # multipart headers and boundaries around a 1 MB picture
DEFAULTS: dict[str, Any] = {
    "CHECKPOINT": str(DEFAULT_CHECKPOINT),
    "LOCALISER": str(DEFAULT_LOCALISER),   # "" or "none": read the centred square, never "no digit"
    "BACKEND": DEFAULT_BACKEND,      # "onnx" (int8 if it passed its check, else fp32), "onnx-fp32" or "torch"
    "WORKERS": 1,                    # processes sharing the cores (sets the default intra-op threads)
    "INTRA_OP_THREADS": None,        # None: cores // WORKERS
    "MAX_BATCH": 32,
    "LOCALISER_MAX_BATCH": 4,
    "MAX_WAIT_MS": 0.0,
    "MAX_CONTENT_LENGTH": MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES,
}


def _behind_batcher(path: str, backend: str, config: dict, threads: int, max_batch: int, raw: bool):
    """A model loaded once, warmed up at its largest micro-batch, and its micro-batcher."""
    if backend.startswith("onnx"):
        ensure_onnx(path, backend)
    predictor = load_predictor(path, backend, threads)
    height, width = (int(s) for s in predictor.info["input_size"])
    forward = predictor.forward if raw else predictor.predict
    # Warm up at the largest micro-batch: the runtime's memory arena grows to it now, so the first
    # full batch is not slow and a worker's memory is at its plateau before the first request.
    forward(np.zeros((max_batch, 3, height, width), np.float32))
    log.info("loaded %s with %s, %d intra-op threads", summary(predictor), backend, threads)
    return predictor, MicroBatcher(forward, max_batch, float(config["MAX_WAIT_MS"]) / 1000)


def load_classifier(config: dict) -> Classifier:
    """The models named by ``config`` (classifier and localiser), loaded once, behind micro-batchers."""
    threads = int(config["INTRA_OP_THREADS"] or default_threads(int(config["WORKERS"])))
    predictor, batcher = _behind_batcher(config["CHECKPOINT"], config["BACKEND"], config, threads,
                                         int(config["MAX_BATCH"]), raw=False)
    localiser = localiser_batcher = None
    if localiser_enabled(config["LOCALISER"]):
        localiser, localiser_batcher = _behind_batcher(config["LOCALISER"], config["BACKEND"], config,
                                                       threads, int(config["LOCALISER_MAX_BATCH"]), raw=True)
    return Classifier(predictor, batcher, localiser, localiser_batcher)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app.

    Args:
        test_config: overrides applied last (e.g. ``{"CHECKPOINT": path, "BACKEND": "torch"}``).

    Raises:
        model.inference.ModelLoadError: naming the file, if the model cannot be loaded.
    """
    app = Flask(__name__, root_path=str(REPO_ROOT), static_folder="static", template_folder="templates")
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("DIGITS")
    if test_config:
        app.config.from_mapping(test_config)
    app.request_class = InMemoryRequest
    app.extensions["classifier"] = load_classifier(app.config)
    app.register_blueprint(pages)
    app.register_blueprint(api)
    app.register_blueprint(health)
    register_error_handlers(app)
    return app
