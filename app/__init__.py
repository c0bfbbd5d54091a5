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
from app.modelfile import DEFAULT_CHECKPOINT, REPO_ROOT, ensure_onnx
from app.requests import InMemoryRequest
from app.routes import api, health, pages
from model.inference import DEFAULT_BACKEND, default_threads, load_predictor, summary

log = logging.getLogger(__name__)

FORM_OVERHEAD_BYTES = 64 * 1024   # multipart headers and boundaries around a 1 MB picture
DEFAULTS: dict[str, Any] = {
    "CHECKPOINT": str(DEFAULT_CHECKPOINT),
    "BACKEND": DEFAULT_BACKEND,      # "onnx" (int8 if it passed its check, else fp32), "onnx-fp32" or "torch"
    "WORKERS": 1,                    # processes sharing the cores (sets the default intra-op threads)
    "INTRA_OP_THREADS": None,        # None: cores // WORKERS
    "MAX_BATCH": 32,
    "MAX_WAIT_MS": 0.0,
    "MAX_CONTENT_LENGTH": MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES,
}


def load_classifier(config: dict) -> Classifier:
    """The model named by ``config``, loaded once, behind a micro-batcher."""
    if config["BACKEND"].startswith("onnx"):
        ensure_onnx(config["CHECKPOINT"], config["BACKEND"])
    threads = config["INTRA_OP_THREADS"] or default_threads(int(config["WORKERS"]))
    predictor = load_predictor(config["CHECKPOINT"], config["BACKEND"], int(threads))
    height, width = (int(s) for s in predictor.info["input_size"])
    max_batch = int(config["MAX_BATCH"])
    # Warm up at the largest micro-batch: the runtime's memory arena grows to it now, so the first
    # full batch is not slow and a worker's memory is at its plateau before the first request.
    predictor.predict(np.zeros((max_batch, 3, height, width), np.float32))
    batcher = MicroBatcher(predictor.predict, max_batch, float(config["MAX_WAIT_MS"]) / 1000)
    log.info("loaded %s with %s, %d intra-op threads", summary(predictor), config["BACKEND"], threads)
    return Classifier(predictor, batcher)


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
