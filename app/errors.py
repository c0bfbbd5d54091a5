"""Error responses: JSON under ``/api/``, the upload page elsewhere, never a traceback.

Routing errors (404, 405) happen before a blueprint is chosen, so the handlers are registered on
the app and look at the path.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from app.imaging import LIMIT_TEXT
from app.routes import render_page

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
API_ENDPOINTS = "POST /api/predict, GET /api/model"


def api_message(e: HTTPException) -> str:
    """A message a client can act on for an HTTP error under /api/."""
    if e.code == 404:
        return f"No API endpoint at {request.path}. The endpoints are {API_ENDPOINTS}."
    if e.code == 405:
        allowed = ", ".join(sorted(m for m in (e.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
        return f"{request.method} is not allowed on {request.path}; use {allowed or 'another method'}."
    if e.code == 413:
        return too_large_message()
    return e.description or e.name


def too_large_message() -> str:
    return f"The upload is too large: {LIMIT_TEXT}."


def handle_http_error(e: HTTPException) -> Response | HTTPException | tuple:
    if request.path.startswith(API_PREFIX):
        return jsonify(error=api_message(e)), e.code
    if e.code == 413 and request.path == "/":
        return render_page(error=too_large_message(), status=413)
    return e


def handle_unexpected(e: Exception) -> tuple:
    log.exception("unhandled error on %s %s", request.method, request.path)
    if request.path.startswith(API_PREFIX):
        return jsonify(error="Something went wrong on the server; it has been logged. Try again."), 500
    return "Something went wrong on the server; it has been logged. Try again.", 500, {"Content-Type": "text/plain"}


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
