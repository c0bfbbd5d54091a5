"""Export a checkpoint's network to one self-contained ONNX file for serving without torch.

The exported graph takes ``input`` float32 (B, 3, H, W), already preprocessed by
``model.preprocess.preprocess``, with a dynamic batch axis, and returns ``logits`` (B, classes).
A localiser's graph (LocNet, fully convolutional) also takes any height and width that are
multiples of ``LOCALISER_STEP`` (its coarsest stride), and returns its maps (B, 5, H/4, W/4).
The checkpoint's public facts (``model.checkpoint.describe``), with the exporter's version
(``"onnx_export"``), travel inside the file as JSON in the model's ``metadata_props`` under
``METADATA_KEY``, so a serving worker reads class names, input size, mean/std and metrics with
ONNX Runtime alone. The file is written beside its destination and renamed into place, like
checkpoints.

Run as ``python -m model.export CKPT [OUT]`` (OUT defaults to CKPT with the suffix ``.onnx``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, describe, load_network
from model.inference import METADATA_KEY, ONNX_EXPORT, SOURCE_KEY, SOURCE_SHA256_KEY, file_sha256, onnx_path_for
from model.quantize import set_metadata

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 18
LOCALISER_STEP = 32   # LocNet's coarsest stride: its input's height and width are multiples of it
LOCALISER_MAX = 2048  # the largest side a localiser's graph accepts


def _export_graph(net: torch.nn.Module, size: list[int], path: Path, any_size: bool = False) -> None:
    """Write the ONNX graph of ``net`` to ``path``, weights inside the one file; with ``any_size``
    its height and width are dynamic too (multiples of ``LOCALISER_STEP``)."""
    example = torch.zeros(2, 3, int(size[0]), int(size[1]))  # (B, C, H, W); B > 1 keeps the axis symbolic
    axes = {0: torch.export.Dim("batch")}
    if any_size:
        steps = LOCALISER_MAX // LOCALISER_STEP
        axes[2] = LOCALISER_STEP * torch.export.Dim("height_steps", min=1, max=steps)
        axes[3] = LOCALISER_STEP * torch.export.Dim("width_steps", min=1, max=steps)
    program = torch.onnx.export(net, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes=(axes,), dynamo=True,
                                opset_version=OPSET, verbose=False, optimize=True)
    program.save(str(path), external_data=False)


def _embed_metadata(path: Path, facts: dict, source: Path) -> None:
    """Add the checkpoint's public facts to the ONNX file's metadata_props."""
    set_metadata(path, {METADATA_KEY: json.dumps(facts), SOURCE_KEY: source.name,
                        SOURCE_SHA256_KEY: file_sha256(source)})


def export_onnx(ckpt_path: str | Path, onnx_path: str | Path | None = None) -> Path:
    """Export the network of ``ckpt_path`` to a single ONNX file.

    Args:
        ckpt_path: a checkpoint in this project's format.
        onnx_path: where to write; defaults to ``onnx_path_for(ckpt_path)``.

    Returns:
        The path written.

    Raises:
        CheckpointError: naming the file, if the checkpoint is missing, corrupt or incompatible.
    """
    ckpt_path = Path(ckpt_path)
    onnx_path = Path(onnx_path) if onnx_path is not None else onnx_path_for(ckpt_path)
    net, ckpt = load_network(ckpt_path)
    facts = {**describe(ckpt), "onnx_export": ONNX_EXPORT}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".export-") as tmp:
        tmp_file = Path(tmp) / "model.onnx"
        _export_graph(net, facts["input_size"], tmp_file, any_size=facts["arch"]["arch"] == "locnet")
        _embed_metadata(tmp_file, facts, ckpt_path)
        extra = sorted(p.name for p in Path(tmp).iterdir() if p != tmp_file)
        if extra:
            raise RuntimeError(f"ONNX export wrote external data files {extra}; expected one self-contained file.")
        os.replace(tmp_file, onnx_path)
    log.info("exported %s (%s) to %s", ckpt_path, facts["architecture"], onnx_path)
    return onnx_path


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a checkpoint to a self-contained ONNX file.")
    parser.add_argument("checkpoint", help="checkpoint file (.pt)")
    parser.add_argument("out", nargs="?", default=None, help="ONNX file to write (default: CHECKPOINT with .onnx)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        path = export_onnx(args.checkpoint, args.out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
