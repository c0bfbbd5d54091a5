"""Making sure a checkpoint can be served, without importing torch or onnxruntime here.

The serving master process must import neither torch (a worker forked from a process that ran a
multi-threaded torch op can hang for good) nor onnxruntime (it makes every worker take 30 s to shut
down), so the exports (``python -m model.export``, and ``python -m train.quantize`` for the int8 model:
it renders its calibration pictures with the training code, which the app never imports) and the
load check (``python -m model.inference``) run in child processes, and their one-line errors are
passed on as ``ModelLoadError``. A failed int8 export is not fatal: serving falls back to fp32.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from model.inference import ModelLoadError, int8_path_for, onnx_is_current, onnx_path_for

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "default.pt"
DEFAULT_LOCALISER = REPO_ROOT / "checkpoints" / "localiser.pt"
NO_LOCALISER = ("", "none")
HOW_TO_MAKE = "Train one with `python main.py -d SVHN` (see README), or pass --checkpoint PATH."
EXPORT_TIMEOUT_S = 600
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")   # torch colours some of its error messages


def _run_module(module: str, *args: str) -> None:
    """Run ``python -m module args`` from the repository root; raise its last error line on failure."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=EXPORT_TIMEOUT_S)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        reason = (errors or lines or [f"{module} exited with status {done.returncode}"])[-1]
        reason = ANSI_ESCAPE.sub("", reason.removeprefix("error: "))
        raise ModelLoadError(f"{reason} {HOW_TO_MAKE}")


def ensure_onnx(ckpt_path: str | Path, backend: str = "onnx") -> Path:
    """Export ``X.pt`` to ``X.onnx`` in a child process if the .onnx is missing or stale, and for the
    ``onnx`` back-end also to ``X.int8.onnx`` (``ensure_int8``).

    Raises:
        ModelLoadError: naming the file, if the checkpoint is missing, corrupt or incompatible.
    """
    ckpt_path = Path(ckpt_path).resolve()
    onnx_path = onnx_path_for(ckpt_path)
    if not onnx_is_current(ckpt_path):
        if not ckpt_path.is_file():
            raise ModelLoadError(f"{ckpt_path}: no such checkpoint file. {HOW_TO_MAKE}")
        _run_module("model.export", str(ckpt_path), str(onnx_path))
        log.info("exported %s to %s", ckpt_path, onnx_path)
    if backend == "onnx":
        ensure_int8(ckpt_path)
    return onnx_path


def localiser_enabled(path: str | Path | None) -> bool:
    """False for the values that switch the localiser off ("", "none", None)."""
    return path is not None and str(path).strip().lower() not in NO_LOCALISER


def ensure_int8(ckpt_path: Path) -> None:
    """Make ``X.int8.onnx`` in a child process if it is missing or stale; on failure, warn in one line."""
    if onnx_is_current(ckpt_path, "int8") or not ckpt_path.is_file():
        return
    try:
        _run_module("train.quantize", str(ckpt_path))
    except (ModelLoadError, subprocess.TimeoutExpired) as e:
        log.warning("no int8 model, serving fp32: %s", str(e).replace(HOW_TO_MAKE, "").strip())
        return
    log.info("quantised %s to %s", ckpt_path, int8_path_for(ckpt_path))


def check_loadable(ckpt_path: str | Path, backend: str) -> None:
    """Load the model in a child process exactly as a worker will, so start-up fails early and clearly.

    Raises:
        ModelLoadError: naming the file and how to make one.
    """
    ckpt_path = Path(ckpt_path).resolve()
    if backend.startswith("onnx"):
        ensure_onnx(ckpt_path, backend)
    elif not ckpt_path.is_file():
        raise ModelLoadError(f"{ckpt_path}: no such checkpoint file. {HOW_TO_MAKE}")
    _run_module("model.inference", str(ckpt_path), "--backend", backend)
