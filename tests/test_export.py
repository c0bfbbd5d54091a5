"""model.export: one self-contained ONNX file that matches torch and carries the checkpoint's facts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from model.checkpoint import CheckpointError, describe, load_network
from model.export import export_onnx
from model.inference import METADATA_KEY, ONNX_EXPORT, SOURCE_KEY, onnx_path_for

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_logits_match_torch_to_1e_5(served_checkpoint, batch):
    net, _ = load_network(served_checkpoint)
    x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_path_for(served_checkpoint)), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_export_is_one_self_contained_file(served_checkpoint):
    files = sorted(p.name for p in Path(served_checkpoint).parent.iterdir())
    assert files == ["tiny.int8.onnx", "tiny.onnx", "tiny.pt"]


def test_metadata_carries_the_checkpoint_facts(served_checkpoint):
    session = ort.InferenceSession(str(onnx_path_for(served_checkpoint)), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    _, ckpt = load_network(served_checkpoint)
    assert json.loads(meta[METADATA_KEY]) == json.loads(json.dumps({**describe(ckpt), "onnx_export": ONNX_EXPORT}))
    assert meta[SOURCE_KEY] == "tiny.pt"


def test_input_has_a_dynamic_batch_axis(served_checkpoint):
    session = ort.InferenceSession(str(onnx_path_for(served_checkpoint)), providers=["CPUExecutionProvider"])
    batch, channels, height, width = session.get_inputs()[0].shape
    assert isinstance(batch, str) and (channels, height, width) == (3, 32, 32)


def test_export_of_a_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt"):
        export_onnx(tmp_path / "nothing.pt")
    assert not any(tmp_path.iterdir())


def test_command_line_reports_a_corrupt_checkpoint_in_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    done = subprocess.run([sys.executable, "-m", "model.export", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "bad.pt" in done.stderr
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_is_current_follows_the_checkpoint_content_not_file_times(tmp_path):
    from conftest import write_tiny_checkpoint
    from model.export import export_onnx
    from model.inference import onnx_is_current

    ckpt = Path(write_tiny_checkpoint(tmp_path / "m.pt", seed=1))
    assert not onnx_is_current(ckpt)
    onnx_file = export_onnx(ckpt)
    os.utime(onnx_file, (0, 0))  # older than the checkpoint, as after a git checkout
    assert onnx_is_current(ckpt)
    write_tiny_checkpoint(ckpt, seed=2)  # new weights: the export is stale
    assert not onnx_is_current(ckpt)
    export_onnx(ckpt)
    onnx_file.write_bytes(onnx_file.read_bytes().replace(f'"onnx_export": "{ONNX_EXPORT}"'.encode(), b'"onnx_export": "0"'))
    assert not onnx_is_current(ckpt)  # made by an older exporter: stale too
