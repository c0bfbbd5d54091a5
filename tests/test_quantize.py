"""int8 serving: the export is made, re-made when stale, chosen by default, faithful, and optional."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import model.inference as inference
from app.modelfile import ensure_onnx
from conftest import write_tiny_checkpoint
from model.checkpoint import describe, load_checkpoint, load_network
from model.inference import (QUANTIZATION_KEY, OnnxPredictor, int8_path_for, load_predictor, onnx_is_current,
                             onnx_path_for)
from model.quantize import batchnorm_as_depthwise, first_and_last, quantize_int8, set_metadata
from train.quantize import MIN_AGREEMENT, make_int8, predictions, rendered_inputs


@pytest.fixture()
def int8_kernels(monkeypatch):
    """Pretend the CPU has 8-bit dot products, so the choice does not depend on the test machine."""
    monkeypatch.setattr(inference, "int8_unsupported", lambda: None)


def test_int8_export_is_made_and_chosen_by_default(served_checkpoint, int8_kernels):
    assert onnx_is_current(served_checkpoint, "int8")
    predictor = load_predictor(served_checkpoint)
    assert predictor.precision == "int8" and predictor.name == "tiny.pt"
    assert predictor.quantization["check"]["passed"]
    assert "SynthDigits" in predictor.quantization["calibration"]
    assert load_predictor(served_checkpoint, "onnx-fp32").precision == "fp32"


def test_app_serves_int8_by_default(served_checkpoint, int8_kernels):
    from app import create_app

    app = create_app({"CHECKPOINT": served_checkpoint})
    try:
        assert app.extensions["classifier"].predictor.precision == "int8"
        assert app.test_client().get("/api/model").get_json()["precision"] == "int8"   # and it says so
    finally:
        app.extensions["classifier"].close()


def test_int8_agrees_with_fp32_on_rendered_digits(served_checkpoint):
    """Fails if quantisation broke the model: with wrong ranges agreement falls to about 0.6."""
    facts = describe(load_checkpoint(served_checkpoint))
    x, _ = rendered_inputs(300, "test", facts)       # not the check set (validation split)
    fp32 = predictions(onnx_path_for(served_checkpoint), x)
    int8 = predictions(int8_path_for(served_checkpoint), x)
    assert (fp32 == int8).mean() >= MIN_AGREEMENT


@pytest.mark.parametrize("batch", [1, 3, 32])
def test_int8_predict_takes_any_batch_size(served_checkpoint, batch):
    x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
    probs = OnnxPredictor(int8_path_for(served_checkpoint)).predict(x)
    assert probs.shape == (batch, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_stale_int8_file_is_remade(tmp_path, monkeypatch):
    import app.modelfile
    from model.export import export_onnx

    def run_in_process(module: str, ckpt: str, *args: str) -> None:   # small calibration, for speed
        ran.append(module)
        export_onnx(ckpt) if module == "model.export" else make_int8(ckpt, calibration_size=32, check_size=50)

    ran: list[str] = []
    monkeypatch.setattr(app.modelfile, "_run_module", run_in_process)
    ckpt = Path(write_tiny_checkpoint(tmp_path / "m.pt", seed=1))
    ensure_onnx(ckpt)
    assert ran == ["model.export", "train.quantize"] and onnx_is_current(ckpt, "int8")
    ensure_onnx(ckpt)
    assert len(ran) == 2                                 # current: nothing re-made
    write_tiny_checkpoint(ckpt, seed=2)                  # new weights: both exports are stale
    assert not onnx_is_current(ckpt, "int8")
    ensure_onnx(ckpt)
    assert ran[2:] == ["model.export", "train.quantize"]
    assert onnx_is_current(ckpt) and onnx_is_current(ckpt, "int8")
    recipe = OnnxPredictor(int8_path_for(ckpt)).quantization
    set_metadata(int8_path_for(ckpt), {QUANTIZATION_KEY: json.dumps({**recipe, "recipe": "1"})})
    assert not onnx_is_current(ckpt, "int8")             # made by an older recipe: stale too
    ensure_onnx(ckpt)
    assert ran[4:] == ["train.quantize"] and onnx_is_current(ckpt, "int8")
    recipe = OnnxPredictor(int8_path_for(ckpt)).quantization
    set_metadata(int8_path_for(ckpt), {QUANTIZATION_KEY: json.dumps({**recipe, "exposure": "white level as read"})})
    assert not onnx_is_current(ckpt, "int8")             # calibrated on inputs exposed another way: stale
    ensure_onnx(ckpt)
    assert ran[5:] == ["train.quantize"] and onnx_is_current(ckpt, "int8")


def copy_served(served_checkpoint: str, folder: Path) -> Path:
    for source in (Path(served_checkpoint), onnx_path_for(served_checkpoint), int8_path_for(served_checkpoint)):
        shutil.copyfile(source, folder / source.name)
    return folder / Path(served_checkpoint).name


def fallback_warnings(caplog, ckpt: Path) -> list[str]:
    with caplog.at_level(logging.WARNING, logger="model.inference"):
        predictor = load_predictor(ckpt)
    assert predictor.precision == "fp32"
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("lack, reason", [("cpu", "8-bit dot-product"), ("runtime", "no CPU execution provider")])
def test_fallback_to_fp32_in_one_line_without_int8_kernels(served_checkpoint, monkeypatch, caplog, lack, reason):
    import onnxruntime as ort

    if lack == "cpu":
        monkeypatch.setattr(inference, "cpu_flags", lambda: {"sse4_2", "avx2", "avx512f"})
    else:
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    warnings = fallback_warnings(caplog, Path(served_checkpoint))
    assert len(warnings) == 1 and "\n" not in warnings[0] and reason in warnings[0]


def test_int8_that_failed_its_check_is_not_served(served_checkpoint, tmp_path, int8_kernels, caplog):
    ckpt = copy_served(served_checkpoint, tmp_path)
    recipe = OnnxPredictor(int8_path_for(ckpt)).quantization
    recipe["check"] = {**recipe["check"], "int8_accuracy": 0.05, "passed": False}
    set_metadata(int8_path_for(ckpt), {QUANTIZATION_KEY: json.dumps(recipe)})
    warnings = fallback_warnings(caplog, ckpt)
    assert len(warnings) == 1 and "failed its accuracy check" in warnings[0]


def test_quantizer_keeps_the_named_nodes_in_float(served_checkpoint, tmp_path):
    fp32 = onnx_path_for(served_checkpoint)
    keep = first_and_last(fp32)
    graph = onnx.load(str(fp32)).graph
    assert [n.op_type for n in graph.node if n.name in keep] == ["Conv", "Gemm"]
    out = quantize_int8(fp32, tmp_path / "q.onnx", np.zeros((4, 3, 32, 32), np.float32), keep,
                        extra={"note": "test"})
    quantized = onnx.load(str(out))
    dequantized = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = [n for n in quantized.graph.node if n.name in keep]
    assert len(kept) == 2 and not any(i in dequantized for n in kept for i in n.input)
    convs = [n for n in quantized.graph.node if n.op_type == "Conv" and n.name not in keep]
    assert convs and all(n.input[1] in dequantized for n in convs)    # every other conv has int8 weights
    meta = {p.key: p.value for p in quantized.metadata_props}
    assert meta["note"] == "test" and meta[inference.SOURCE_KEY] == "tiny.pt"


def test_batchnorm_as_depthwise_computes_the_same(served_checkpoint, tmp_path):
    """The rewrite that lets the pre-activation batch normalisations go int8 changes no output."""
    fp32 = onnx_path_for(served_checkpoint)
    model = onnx.load(str(fp32))
    norms = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    assert norms and batchnorm_as_depthwise(model) == norms
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "depthwise.onnx"))
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    before, after = OnnxPredictor(fp32).forward(x), OnnxPredictor(tmp_path / "depthwise.onnx").forward(x)
    assert np.allclose(before, after, atol=1e-4)


def test_nothing_between_two_int8_convolutions_stays_float(served_checkpoint, tmp_path):
    """Residual additions, ReLUs and batch normalisations are int8 too: every Add reads dequantised
    inputs and no BatchNormalization is left (float ones cost a quantise/dequantise pair and a
    layout transpose each, a third of the forward)."""
    fp32 = onnx_path_for(served_checkpoint)
    out = quantize_int8(fp32, tmp_path / "q.onnx", np.zeros((4, 3, 32, 32), np.float32), first_and_last(fp32))
    nodes = onnx.load(str(out)).graph.node
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    adds = [n for n in nodes if n.op_type == "Add"]
    assert adds and all(i in dequantized for n in adds for i in n.input)
    assert not any(n.op_type == "BatchNormalization" for n in nodes)


SHIPPED_LOCALISER = Path(__file__).resolve().parents[1] / "checkpoints" / "localiser.pt"


def test_the_localiser_int8_is_calibrated_on_scenes_checked_and_chosen(tmp_path, int8_kernels):
    """The shipped localiser's int8 file: its first stage, top-down path and head stay float, and it
    finds the main digit of rendered validation scenes as fp32 does (the check serving relies on)."""
    ckpt = tmp_path / "localiser.pt"
    shutil.copyfile(SHIPPED_LOCALISER, ckpt)
    check = make_int8(ckpt)
    assert check["passed"] and check["agreement"] >= 0.9 and "validation split, 1000 scenes" in check["data"]
    predictor = load_predictor(ckpt)
    assert predictor.precision == "int8" and "rendered scenes" in predictor.quantization["calibration"]
    graph = onnx.load(str(onnx_path_for(ckpt))).graph
    weights = {n.name: n.input[1] for n in graph.node if n.op_type == "Conv"}
    floats = {weights[name] for name in predictor.quantization["float_nodes"]}
    assert floats == {w for w in weights.values() if w.startswith(("stem.", "stages.0.", "lateral.", "head."))}
    assert "head.0.weight" in floats and len(floats) < len(weights) - 10     # the later stages are int8
    # both graphs take any multiple of 32 as height and width (the reading pipeline's finer look is 160)
    x = np.random.default_rng(0).normal(size=(1, 3, 160, 224)).astype(np.float32)
    net, _ = load_network(ckpt)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    fp32, int8 = (OnnxPredictor(p).forward(x) for p in (onnx_path_for(ckpt), int8_path_for(ckpt)))
    assert fp32.shape == int8.shape == (1, 5, 40, 56)
    np.testing.assert_allclose(fp32, expected, rtol=0, atol=1e-4)


def test_a_broken_localiser_quantisation_fails_its_check(tmp_path):
    """With its head's 3x3 convolution in int8 the localiser finds few main digits: the check says so."""
    from model.localiser import INPUT_SIZE, normalize_input
    from train.quantize import localiser_check
    from train.scenes import generate_scenes

    ckpt = tmp_path / "localiser.pt"
    shutil.copyfile(SHIPPED_LOCALISER, ckpt)
    ensure_onnx(ckpt, "onnx-fp32")
    fp32 = onnx_path_for(ckpt)
    calibration = normalize_input(generate_scenes(256, 0, "train", INPUT_SIZE, workers=2)["x"])
    broken = quantize_int8(fp32, tmp_path / "broken.onnx", calibration, first_and_last(fp32))
    check = localiser_check(fp32, broken, generate_scenes(80, 0, "val", INPUT_SIZE), "80 scenes")
    assert not check["passed"] and check["int8_accuracy"] < check["fp32_accuracy"] - 0.2
