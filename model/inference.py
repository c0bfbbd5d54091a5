"""Predictors: a preprocessed batch in, class probabilities out, with the model's public facts.

Two back-ends share one small interface (``Predictor``): ``OnnxPredictor`` runs an exported graph
(``model.export``, or its int8 copy from ``train.quantize``) in ONNX Runtime and never imports
torch, which keeps a serving worker small (about 100 MB resident against about 640 MB for a process
that imports the CUDA build of torch); ``TorchPredictor`` runs the checkpoint in eager torch,
imported lazily. ``predict`` takes any batch size. A predictor is not thread-safe: serving calls it
from a single thread (``app.batcher``).

Back-ends: ``onnx`` (the default) serves the int8 file ``X.int8.onnx`` when it is current, passed
its accuracy check and this CPU and runtime have int8 kernels, else the fp32 ``X.onnx`` with a
one-line warning; ``onnx-fp32`` always serves ``X.onnx``; ``torch`` serves ``X.pt``.

Run as ``python -m model.inference CKPT [--backend onnx|onnx-fp32|torch]`` to check that a model
loads exactly as a serving worker would load it; it prints one line and exits 2 with the reason if
it cannot.
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

from model.preprocess import EXPOSURE_TARGET, MAX_GAIN

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "onnx-fp32", "torch")
DEFAULT_BACKEND = "onnx"
METADATA_KEY = "checkpoint"       # ONNX metadata_props key: JSON of model.checkpoint.describe()
SOURCE_KEY = "source_checkpoint"  # ONNX metadata_props key: file name of the source checkpoint
SOURCE_SHA256_KEY = "source_sha256"  # ONNX metadata_props key: SHA-256 of the source checkpoint
QUANTIZATION_KEY = "quantization"  # ONNX metadata_props key of int8 files: JSON recipe and accuracy check
INT8_RECIPE = "3"                  # train.quantize's recipe; an int8 file made by another is stale
# the preprocessing its calibration inputs went through (model.preprocess.expose); under another, stale
INT8_EXPOSURE = f"white level raised to {EXPOSURE_TARGET:g}, at most x{MAX_GAIN:g}"
INT8_STAMPS = {"recipe": INT8_RECIPE, "exposure": INT8_EXPOSURE}   # what an int8 file records to be current
ONNX_EXPORT = "2"                  # model.export's graph version (2: a localiser takes any multiple of 32 as its
                                   # height and width); a file (fp32 or int8) exported by another is stale
FIELDS_NEEDED = ("class_names", "input_size", "mean", "std")
# CPU flags (Linux /proc/cpuinfo) of 8-bit dot-product instructions; without them ONNX Runtime's u8s8
# kernels fall back to pairwise 16-bit sums that can saturate, and are slower.
INT8_CPU_FLAGS = {"x86_64": ("avx512_vnni", "avx_vnni"), "aarch64": ("asimddp",)}


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


def int8_path_for(ckpt_path: str | Path) -> Path:
    """The int8 ONNX file that belongs to a checkpoint: ``X.pt`` -> ``X.int8.onnx`` beside it."""
    return Path(ckpt_path).with_suffix(".int8.onnx")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_is_current(ckpt_path: str | Path, precision: str = "fp32") -> bool:
    """True if the checkpoint's ONNX file (``precision`` "fp32" or "int8") exists and was made from
    this very checkpoint by the current exporter (``ONNX_EXPORT``; an int8 file also by
    ``INT8_STAMPS``: the quantiser's current recipe, from inputs exposed as now).

    The exporter stores the checkpoint's SHA-256 in the ONNX metadata (``SOURCE_SHA256_KEY``); the
    digest is looked for in the file's bytes, so neither onnx nor onnxruntime is imported here.
    File times are not used: a git checkout writes both files in arbitrary order.
    """
    ckpt_path = Path(ckpt_path)
    onnx_path = int8_path_for(ckpt_path) if precision == "int8" else onnx_path_for(ckpt_path)
    if not onnx_path.is_file():
        return False
    if not ckpt_path.exists():
        return True
    data = onnx_path.read_bytes()
    if precision == "int8" and any(f'"{key}": "{value}"'.encode() not in data for key, value in INT8_STAMPS.items()):
        return False
    if f'"onnx_export": "{ONNX_EXPORT}"'.encode() not in data:
        return False
    return file_sha256(ckpt_path).encode() in data


class OnnxPredictor:
    """The exported graph in ONNX Runtime (CPU); imports onnxruntime only.

    Args:
        onnx_path: a file written by ``model.export.export_onnx`` or ``train.quantize.make_int8``.
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
        self.quantization: dict | None = json.loads(meta[QUANTIZATION_KEY]) if QUANTIZATION_KEY in meta else None
        self.precision = "int8" if self.quantization else "fp32"
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
        self.precision = "fp32"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw output (logits, or a localiser's maps) for float32 (B, 3, H, W)."""
        with self._torch.inference_mode():
            return self._net(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.forward(batch))


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
            for flag in line.split(":", 1)[1].split()}


def int8_unsupported() -> str | None:
    """Why this machine cannot serve int8 well (no 8-bit dot products, no CPU provider), else None."""
    import platform

    import onnxruntime as ort

    if "CPUExecutionProvider" not in ort.get_available_providers():
        return "ONNX Runtime has no CPU execution provider"
    wanted = INT8_CPU_FLAGS.get(platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64"), ())
    if not set(wanted) & cpu_flags():
        return f"this CPU lacks 8-bit dot-product instructions ({' or '.join(wanted) or platform.machine()})"
    return None


def _int8_or_none(ckpt_path: Path, threads: int) -> tuple[OnnxPredictor | None, str]:
    """The int8 predictor if it may serve, else (None, why not)."""
    if not onnx_is_current(ckpt_path, "int8"):
        return None, f"{int8_path_for(ckpt_path).name} is missing or was made from other weights"
    reason = int8_unsupported()
    if reason:
        return None, reason
    try:
        predictor = OnnxPredictor(int8_path_for(ckpt_path), threads)
    except ModelLoadError as e:
        return None, f"the runtime cannot load it ({e})"
    check = (predictor.quantization or {}).get("check", {})
    if not check.get("passed"):
        nan = float("nan")
        return None, (f"it failed its accuracy check (int8 {check.get('int8_accuracy', nan):.4f} vs fp32 "
                      f"{check.get('fp32_accuracy', nan):.4f}, agreement {check.get('agreement', nan):.4f}, "
                      f"on {check.get('data', 'no data')})")
    return predictor, ""


def load_predictor(ckpt_path: str | Path, backend: str = DEFAULT_BACKEND, threads: int = 1) -> Predictor:
    """The predictor for a checkpoint: its int8 or fp32 ONNX file, or the checkpoint itself.

    ``onnx`` prefers the int8 file; where it may not serve (see ``_int8_or_none``) it logs one
    warning line naming the reason and serves fp32.

    Raises:
        ValueError: for an unknown backend.
        ModelLoadError: naming the file, if it cannot be loaded.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend {backend!r}. Only {', '.join(BACKENDS)} are supported.")
    if backend == "torch":
        return TorchPredictor(ckpt_path, threads)
    if backend == "onnx":
        predictor, why_not = _int8_or_none(Path(ckpt_path), threads)
        if predictor is not None:
            return predictor
        log.warning("serving fp32, not int8: %s", why_not)
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


def precision_of(predictor: Predictor) -> str:
    """What a predictor computes in: "int8" (an int8 ONNX file that passed its check) or "fp32"."""
    return getattr(predictor, "precision", "fp32")


def summary(predictor: Predictor) -> dict[str, Any]:
    """A short description for logs: name, architecture, parameters, precision."""
    info = predictor.info
    return {"model": predictor.name, "architecture": info.get("architecture"), "parameters": info.get("parameters"),
            "precision": precision_of(predictor)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that a checkpoint loads for serving.")
    parser.add_argument("checkpoint", help="checkpoint file (.pt); the onnx back-ends read the .onnx files beside it")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="default: %(default)s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
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
