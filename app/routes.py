"""Blueprints: ``pages`` (the upload page, with and without JavaScript), ``api`` and ``health``.

Routes only move bytes in and results out; the work is ``Classifier.classify``. The page's plain
form POST and the API return the same prediction, and the page template renders both the empty
page and the result, so the no-JavaScript path looks like the scripted one.
"""
from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from app.batcher import BatcherClosed
from app.boxes import BOX_FIELD, MAX_BOX_TEXT, MIN_BOX_SIDE, Box, parse_box
from app.classifier import LOW_CONFIDENCE, Classifier, Prediction
from app.imaging import ACCEPTED_DESCRIPTION, MAX_UPLOAD_BYTES, UploadError
from model.inference import precision_of

log = logging.getLogger(__name__)

UPLOAD_FIELD = "image"
MODEL_FACTS = ("architecture", "arch", "parameters", "dataset", "metrics", "class_names", "input_size",
               "mean", "std", "epoch", "created", "seen_npz")

# how the page names where a result's box came from (its "source"), for the template and app.js alike
WHERE_FROM = {"localiser": "found automatically", "user": "your box", "picture": "the centre of the picture"}

pages = Blueprint("pages", __name__)
api = Blueprint("api", __name__, url_prefix="/api")
health = Blueprint("health", __name__)


def classifier() -> Classifier:
    return current_app.extensions["classifier"]


def read_upload() -> bytes:
    """The bytes of the one picture in field ``image``; an unfilled file input counts as none.

    Raises:
        UploadError: 400 if no picture was sent.
    """
    for part in request.files.getlist(UPLOAD_FIELD):
        data = part.read(MAX_UPLOAD_BYTES + 1)    # one byte over is enough to refuse it
        if data or part.filename:
            return data
    raise UploadError(400, f"No picture was sent. Choose a {ACCEPTED_DESCRIPTION} file "
                           f"(multipart form field '{UPLOAD_FIELD}').")


def read_box() -> Box | None:
    """The optional box in form field ``box``; an empty or blank field counts as none.

    Raises:
        UploadError: 400 if the field is not four whole numbers (``app.boxes.parse_box``).
    """
    text = request.form.get(BOX_FIELD, "")
    return parse_box(text) if text.strip() else None


def predict_upload() -> Prediction:
    """Classify the request's picture, in the request's box if it has one.

    Raises:
        UploadError: for anything wrong with the upload or the box (4xx), or 503 if the model is
            unavailable.
    """
    data = read_upload()
    box = read_box()
    try:
        return classifier().classify(data, box)
    except (BatcherClosed, FutureTimeout):
        raise UploadError(503, "The server is busy or restarting. Try again in a moment.") from None


def render_page(result: Prediction | None = None, error: str | None = None, status: int = 200,
                box_text: str = "") -> tuple[str, int]:
    """The upload page, with a result or an error when there is one, and the box the form sent."""
    c = classifier()
    return render_template("index.html", result=result, error=error, box_text=box_text, class_names=c.class_names,
                           model_name=c.name, architecture=c.predictor.info.get("architecture", ""),
                           max_upload_bytes=MAX_UPLOAD_BYTES, accepted=ACCEPTED_DESCRIPTION,
                           low_confidence=LOW_CONFIDENCE, min_box_side=MIN_BOX_SIDE, where_from=WHERE_FROM), status


@pages.get("/")
def index() -> tuple[str, int]:
    return render_page()


@pages.post("/")
def index_post() -> tuple[str, int]:
    box_text = request.form.get(BOX_FIELD, "")[:MAX_BOX_TEXT]   # shown again, to be corrected
    try:
        return render_page(result=predict_upload(), box_text=box_text)
    except UploadError as e:
        return render_page(error=e.message, status=e.status, box_text=box_text)


@api.post("/predict")
def api_predict() -> tuple[Response, int]:
    try:
        return jsonify(predict_upload().to_json()), 200
    except UploadError as e:
        return jsonify(error=e.message), e.status


@api.get("/model")
def api_model() -> Response:
    c = classifier()
    info = c.predictor.info
    facts = {k: info[k] for k in MODEL_FACTS if k in info}
    localiser = None
    if c.localiser is not None:
        localiser = {"model": c.localiser.name, "precision": precision_of(c.localiser),
                     **{k: c.localiser.info[k] for k in MODEL_FACTS if k in c.localiser.info}}
    return jsonify(model=c.name, backend=current_app.config["BACKEND"], precision=precision_of(c.predictor), **facts,
                   localiser=localiser)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", model=classifier().name)
