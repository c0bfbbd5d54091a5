"""The checkpoint format: the one module that writes and reads it.

A checkpoint is a dict of plain Python types and tensors, loadable with
``torch.load(path, weights_only=True)``:

    format_version  int, FORMAT_VERSION
    arch            ArchConfig as a dict (enough to rebuild the network)
    state_dict      the network's weights
    dataset         what it was trained on (a sentence, e.g. "SynthDigits train, 200,000 images")
    class_names     list of str, index = class
    input_size      [height, width]
    mean, std       per-channel normalisation, list of 3 floats
    metrics         {name: {"value": float, "data": str}}: each number with the data it was measured on
    train_config    the training configuration as a dict of plain values
    versions        {"torch": ..., "torchvision": ...}
    created         ISO 8601 UTC time
    epoch           epochs completed
    seen_npz        optional: names of the .npz files whose labelled images these weights trained on,
                    in this run or any run they started from (``--init``) or were averaged with;
                    older checkpoints say it in ``train_config["train_npz"]`` (``seen_npz`` reads both)
    training_state  optional: optimizer, scheduler, scaler, RNG states, position within the epoch

Files are written to a temporary file in the same folder and renamed into place, so a crash or
kill at any moment leaves the previous file intact.
"""
from __future__ import annotations

import datetime as dt
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision

from model.networks import ArchConfig, build_network

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "arch", "state_dict", "class_names", "input_size", "mean", "std")


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or not in this project's format."""


def make_checkpoint(arch: ArchConfig, state_dict: dict, *, dataset: str, class_names: list[str],
                    input_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                    metrics: dict | None = None, train_config: dict | None = None, epoch: int = 0,
                    training_state: dict | None = None, seen_npz: list[str] | tuple[str, ...] = ()) -> dict:
    """Assemble a checkpoint dict (see the module docstring for the fields)."""
    ckpt = {
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "dataset": dataset,
        "class_names": list(class_names),
        "input_size": [int(s) for s in input_size],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}),
        "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "epoch": int(epoch),
        "seen_npz": sorted(set(seen_npz)),
    }
    if training_state is not None:
        ckpt["training_state"] = training_state
    return ckpt


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    """Write ``ckpt`` atomically: to a temporary file beside ``path``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint.

    Raises:
        CheckpointError: naming the file, if it is missing, corrupt or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # a pickled object other than plain types and tensors
        raise CheckpointError(f"{path}: not a checkpoint of this project (it holds pickled Python objects, "
                              f"which are never loaded).") from e
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint file ({type(e).__name__}).") from e
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing fields).")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {ckpt['format_version']} is newer than this code "
                              f"understands ({FORMAT_VERSION}); update the project.")
    return ckpt


def network_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint") -> torch.nn.Module:
    """Rebuild the network of a loaded checkpoint, in eval mode.

    Raises:
        CheckpointError: if the weights do not fit the stored architecture.
    """
    try:
        net = build_network(ArchConfig.from_dict(ckpt["arch"]))
        net.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not match the architecture it names ({str(e).splitlines()[0][:200]}).") from e
    return net.eval()


def load_network(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint file and rebuild its network (CPU, eval mode)."""
    ckpt = load_checkpoint(path)
    return network_from_checkpoint(ckpt, path), ckpt


def seen_npz(ckpt: dict) -> list[str]:
    """The names of the .npz files whose images a checkpoint's weights trained on (see the module
    docstring); an accuracy on those images is only honest through their cross-validation."""
    names = set(ckpt.get("seen_npz", ()))
    names.update(Path(p).name for p in ckpt.get("train_config", {}).get("train_npz") or ())
    return sorted(names)


def describe(ckpt: dict) -> dict[str, Any]:
    """The public facts of a checkpoint (no weights), for people and for the API."""
    arch = ArchConfig.from_dict(ckpt["arch"])
    n_params = sum(t.numel() for k, t in ckpt["state_dict"].items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    return {
        "architecture": arch.name, "arch": arch.to_dict(), "parameters": n_params,
        "dataset": ckpt.get("dataset", "unknown"), "class_names": ckpt["class_names"],
        "input_size": ckpt["input_size"], "mean": ckpt["mean"], "std": ckpt["std"],
        "metrics": ckpt.get("metrics", {}), "epoch": ckpt.get("epoch"),
        "train_config": ckpt.get("train_config", {}), "created": ckpt.get("created"),
        "versions": ckpt.get("versions", {}), "seen_npz": seen_npz(ckpt),
    }
