"""Shared fixtures: tiny checkpoints the tests make themselves."""
from __future__ import annotations

import pytest
import torch

from model.checkpoint import make_checkpoint, save_checkpoint
from model.networks import ArchConfig, build_network

DIGITS = [str(d) for d in range(10)]
TEST_MEAN = (0.44, 0.44, 0.47)
TEST_STD = (0.2, 0.2, 0.2)


def write_tiny_checkpoint(path, seed: int = 0, **arch) -> str:
    """A randomly initialised WRN-10-1 checkpoint in the project's format (fast to load and run)."""
    torch.manual_seed(seed)
    cfg = ArchConfig(**{"arch": "wrn", "depth": 10, "width": 1, **arch})
    net = build_network(cfg).eval()
    ckpt = make_checkpoint(cfg, net.state_dict(), dataset="random weights (test fixture)",
                           class_names=DIGITS, input_size=(32, 32), mean=TEST_MEAN, std=TEST_STD,
                           metrics={"val_accuracy": {"value": 0.1, "data": "none (test fixture)"}})
    save_checkpoint(ckpt, path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """Path to a tiny WRN checkpoint shared by the whole session (do not modify it)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def served_checkpoint(tmp_path_factory, tiny_checkpoint) -> str:
    """A copy of the tiny checkpoint with its fp32 and int8 ONNX exports beside it (X.pt, X.onnx,
    X.int8.onnx), made the way the server makes them (child processes, ``app.modelfile``)."""
    import shutil

    from app.modelfile import ensure_onnx

    path = tmp_path_factory.mktemp("served") / "tiny.pt"
    shutil.copyfile(tiny_checkpoint, path)
    ensure_onnx(path)
    return str(path)
