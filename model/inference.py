"""Predictors: a preprocessed batch in, class probabilities out, with the model's public facts.

Two back-ends share one small interface (``Predictor``): ``OnnxPredictor`` runs the exported graph
(``model.export``) in ONNX Runtime and never imports torch, which keeps a serving worker small
(about 100 MB resident against about 640 MB for a process that imports the CUDA build of torch);
``TorchPredictor`` runs the checkpoint in eager torch, imported lazily. A predictor is not
thread-safe: serving calls it from a single thread (``app.batcher``).

Run as ``python -m model.inference CKPT [--backend onnx|torch]`` to check that a model loads exactly
as a serving worker would load it; it prints one line and exits 2 with the reason if it cannot.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")
DEFAULT_BACKEND = "onnx"
METADATA_KEY = "checkpoint"       # ONNX metadata_props key: JSON of model.checkpoint.describe()
SOURCE_KEY = "source_checkpoint"  # ONNX metadata_props key: file name of the source checkpoint
SOURCE_SHA256_KEY = "source_sha256"  # ONNX metadata_props key: SHA-256 of the source checkpoint
FIELDS_NEEDED = ("class_names", "input_size", "mean", "std")


class ModelLoadError(Exception):
    """A model file cannot be served; the message names the file and what to do."""


class Predictor(Protocol):
    """What serving needs from a model."""

    name: str          # the checkpoint's file name, e.g. "default.pt"
    info: dict         # model.checkpoint.describe() of the checkpoint

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 (B, 3, H, W), preprocessed -> probabilities float32 (B, classes), rows sum to 1."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, classes) logits, computed stably in float64 then cast to float32."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def default_threads(workers: int = 1) -> int:
    """Intra-op threads per process so that ``workers`` processes together use each core once."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def onnx_path_for(ckpt_path: str | Path) -> Path:
    """The ONNX file that belongs to a checkpoint: ``X.pt`` -> ``X.onnx`` beside it."""
    return Path(ckpt_path).with_suffix(".onnx")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_is_current(ckpt_path: str | Path) -> bool:
    """True if the checkpoint's ONNX file exists and was exported from this very checkpoint.

    The exporter stores the checkpoint's SHA-256 in the ONNX metadata (``SOURCE_SHA256_KEY``); the
    digest is looked for in the file's bytes, so neither onnx nor onnxruntime is imported here.
    File times are not used: a git checkout writes both files in arbitrary order.
    """
    ckpt_path, onnx_path = Path(ckpt_path), onnx_path_for(ckpt_path)
    if not onnx_path.is_file():
        return False
    if not ckpt_path.exists():
        return True
    return file_sha256(ckpt_path).encode() in onnx_path.read_bytes()


class OnnxPredictor:
    """The exported graph in ONNX Runtime (CPU); imports onnxruntime only.

    Args:
        onnx_path: a file written by ``model.export.export_onnx``.
        threads: intra-op threads (see ``default_threads``).
    """

    def __init__(self, onnx_path: str | Path, threads: int = 1):
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such ONNX file. Make it with: python -m model.export CHECKPOINT {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle intra-op threads would spin for work, taking the CPU the request threads need to decode.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self.info = json.loads(meta[METADATA_KEY])
        except Exception as e:  # onnxruntime raises its own types for bad files
            raise ModelLoadError(f"{path}: not a readable ONNX model exported by model.export "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}). "
                                 f"Re-export it with: python -m model.export CHECKPOINT {path}") from e
        missing = [k for k in FIELDS_NEEDED if k not in self.info]
        if missing:
            raise ModelLoadError(f"{path}: metadata lacks {', '.join(missing)}; re-export it with python -m model.export.")
        self.name = meta.get(SOURCE_KEY, path.with_suffix(".pt").name)
        self._input = self._session.get_inputs()[0].name

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The graph's raw output (logits, or a localiser's maps) for float32 (B, 3, H, W)."""
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.forward(batch))


class TorchPredictor:
    """The checkpoint in eager torch (CPU, inference mode); torch is imported on construction.

    Args:
        ckpt_path: a checkpoint in this project's format.
        threads: intra-op threads (``torch.set_num_threads``).
    """

    def __init__(self, ckpt_path: str | Path, threads: int = 1):
        import torch

        from model.checkpoint import CheckpointError, describe, load_network

        torch.set_num_threads(int(threads))
        try:
            self._net, ckpt = load_network(ckpt_path)
        except CheckpointError as e:
            raise ModelLoadError(str(e)) from e
        self._torch = torch
        self.info = describe(ckpt)
        self.name = Path(ckpt_path).name

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw output (logits, or a localiser's maps) for float32 (B, 3, H, W)."""
        with self._torch.inference_mode():
            return self._net(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.forward(batch))


def load_predictor(ckpt_path: str | Path, backend: str = DEFAULT_BACKEND, threads: int = 1) -> Predictor:
    """The predictor for a checkpoint: its ONNX file (``onnx_path_for``) or the checkpoint itself.

    Raises:
        ValueError: for an unknown backend.
        ModelLoadError: naming the file, if it cannot be loaded.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend {backend!r}. Only {', '.join(BACKENDS)} are supported.")
    if backend == "torch":
        return TorchPredictor(ckpt_path, threads)
    return OnnxPredictor(onnx_path_for(ckpt_path), threads)


def load_reader(ckpt_path: str | Path, localiser_path: str | Path | None, backend: str = DEFAULT_BACKEND,
                threads: int = 1):
    """The reading pipeline (``model.reading.Reader``) of a classifier and, if given, a localiser.

    Raises:
        ModelLoadError: naming the file, if either cannot be loaded.
    """
    from model.reading import Reader

    classifier = load_predictor(ckpt_path, backend, threads)
    locate, size = None, None
    if localiser_path is not None:
        localiser = load_predictor(localiser_path, backend, threads)
        locate, size = localiser.forward, int(localiser.info["input_size"][0])
    info = classifier.info
    return Reader(classifier.predict, locate, info["input_size"], info["mean"], info["std"], locator_size=size)


def summary(predictor: Predictor) -> dict[str, Any]:
    """A short description for logs: name, architecture, parameters."""
    info = predictor.info
    return {"model": predictor.name, "architecture": info.get("architecture"), "parameters": info.get("parameters")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that a checkpoint loads for serving.")
    parser.add_argument("checkpoint", help="checkpoint file (.pt); the onnx backend reads the .onnx beside it")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        predictor = load_predictor(args.checkpoint, args.backend)
        size = predictor.info["input_size"]
        predictor.predict(np.zeros((1, 3, size[0], size[1]), np.float32))
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary(predictor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
