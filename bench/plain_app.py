"""The baseline for ``bench/serve.py``: the seed's way of serving, kept deliberately plain.

One Flask app on Flask's own server (``app.run(threaded=True)``), the network in eager torch, each
request on its own: open the upload with Pillow, resize to 32x32, normalise, one forward, argmax.
No batching, no ONNX Runtime, no gunicorn. Run as
``python bench/plain_app.py --checkpoint CKPT --port 5001``; it answers ``POST /api/predict``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from flask import Flask, jsonify, request
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model.checkpoint import load_network  # noqa: E402


def create_plain_app(ckpt_path: str) -> Flask:
    """The seed's app for one checkpoint."""
    net, ckpt = load_network(ckpt_path)
    mean = torch.tensor(ckpt["mean"]).view(3, 1, 1)
    std = torch.tensor(ckpt["std"]).view(3, 1, 1)
    app = Flask(__name__)

    @app.post("/api/predict")
    def predict():
        image = Image.open(request.files["image"].stream).convert("RGB").resize((32, 32))
        x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)   # (3, 32, 32)
        with torch.no_grad():
            probs = torch.softmax(net(((x - mean) / std)[None]), dim=1)[0]
        digit = int(probs.argmax())
        return jsonify(digit=digit, confidence=float(probs[digit]), probabilities=probs.tolist())

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The plain baseline app (seed's way).")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    create_plain_app(args.checkpoint).run(args.host, args.port, threaded=True)


if __name__ == "__main__":
    main()
