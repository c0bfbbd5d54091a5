"""model.inference predictors and app.batcher: same answers from both back-ends, no torch in ONNX."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.batcher import BatcherClosed, MicroBatcher
from model.inference import ModelLoadError, OnnxPredictor, TorchPredictor, load_predictor, onnx_path_for, softmax

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)   # (B, C, H, W)


@pytest.mark.parametrize("backend", ["onnx", "onnx-fp32", "torch"])
def test_predict_returns_probabilities(served_checkpoint, batch, backend):
    probs = load_predictor(served_checkpoint, backend).predict(batch)
    assert probs.shape == (4, 10) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1, atol=1e-6)


def test_backends_agree(served_checkpoint, batch):
    onnx = OnnxPredictor(onnx_path_for(served_checkpoint)).predict(batch)
    torch_ = TorchPredictor(served_checkpoint).predict(batch)
    np.testing.assert_allclose(onnx, torch_, atol=1e-5)


def test_backends_share_metadata(served_checkpoint):
    onnx, torch_ = load_predictor(served_checkpoint, "onnx"), load_predictor(served_checkpoint, "torch")
    assert onnx.name == torch_.name == "tiny.pt"
    for key in ("architecture", "class_names", "input_size", "mean", "std", "metrics", "dataset"):
        assert onnx.info[key] == torch_.info[key]


def test_softmax_is_stable_for_large_logits():
    probs = softmax(np.array([[1000.0, 0.0, -1000.0]], np.float32))
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)


def test_onnx_predictor_never_imports_torch(served_checkpoint):
    code = ("import sys, numpy as np; from model.inference import load_predictor; "
            f"p = load_predictor({served_checkpoint!r}, 'onnx'); p.predict(np.zeros((1, 3, 32, 32), np.float32)); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("content, match", [(None, "no such ONNX file"), (b"garbage", "not a readable ONNX model")])
def test_bad_onnx_file_names_the_file(tmp_path, content, match):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match) as info:
        OnnxPredictor(path)
    assert str(path) in str(info.value)


def test_unknown_backend_is_refused(served_checkpoint):
    with pytest.raises(ValueError, match="Only onnx, onnx-fp32, torch"):
        load_predictor(served_checkpoint, "tensorrt")


def slow_identity(sizes: list[int]):
    def predict(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        time.sleep(0.05)
        return x.reshape(len(x), -1)[:, :3]
    return predict


def test_batcher_groups_concurrent_requests_and_returns_each_its_row():
    sizes: list[int] = []
    batcher = MicroBatcher(slow_identity(sizes), max_batch=8)
    results = {}

    def ask(i: int) -> None:
        results[i] = batcher.predict(np.full((3, 2, 2), i, np.float32))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert all(np.all(results[i] == i) for i in range(12))
    assert sum(sizes) == 12 and max(sizes) <= 8 and len(sizes) < 12


def test_a_lone_request_runs_in_its_own_thread():
    threads = []
    batcher = MicroBatcher(lambda x: threads.append(threading.current_thread()) or x[:, :1])
    assert batcher.predict(np.ones((2,), np.float32)).tolist() == [1.0]
    batcher.close()
    assert threads == [threading.current_thread()]


def test_batcher_hands_a_failure_to_the_caller_and_keeps_serving():
    calls = []

    def flaky(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x[:, :1]

    batcher = MicroBatcher(flaky)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.predict(np.zeros((2,), np.float32))
    assert batcher.predict(np.ones((2,), np.float32)).tolist() == [1.0]
    batcher.close()


def test_closed_batcher_refuses_work():
    batcher = MicroBatcher(lambda x: x)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit(np.zeros(1, np.float32))
