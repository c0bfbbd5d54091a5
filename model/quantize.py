"""Static int8 quantisation of an exported ONNX graph (ONNX Runtime's post-training quantiser).

Generic on purpose: ``quantize_int8`` takes any ONNX file with one float input, calibration arrays
for that input, and the names of the nodes to leave in float, so the same function serves the digit
classifier and any other small network exported the same way. The recipe it applies is the one
that kept the digit classifier's accuracy (docs/serving-int8.md): shape inference and graph clean-up
(``quant_pre_process``), then QDQ nodes around the chosen operator types only (the rest of the graph
stays float), per-channel symmetric int8 weights, uint8 activations with min/max calibration
ranges. The default types are those of a pre-activation residual network: convolutions and the
classifier, the residual additions, the ReLUs (so that a convolution's output and the ReLU after it
share one range and fuse) and the batch normalisations that no convolution absorbed (the
pre-activation ones after each residual addition). ONNX Runtime has no int8 batch normalisation, so
those are first rewritten as the equivalent 1x1 depthwise convolutions (``batchnorm_as_depthwise``):
then nothing between two int8 convolutions is float, and no DequantizeLinear/QuantizeLinear pair
or layout transpose is left between them. ``first_and_last`` names the usual nodes to keep in float: the
first convolution (it sees the raw picture, three channels, little compute) and the classifier.

The caller owns the calibration data (``train.quantize`` renders it), the accuracy check and the
file's metadata: ``quantize_int8`` keeps the source graph's ``metadata_props`` and adds ``extra``.
Imports onnx and onnxruntime (quantisation only; a serving worker never imports this module).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "Relu", "BatchNormalization")
CONVOLUTIONS = ("Conv", "Gemm", "MatMul")   # the types with weights: the first and last of these stay float
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
CALIBRATION_BATCH = 32


def first_and_last(onnx_path: str | Path, op_types: Sequence[str] = CONVOLUTIONS) -> list[str]:
    """Names of the first and the last node of ``op_types`` in graph order (the stem and the head)."""
    import onnx

    names = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type in op_types]
    assert names, f"{onnx_path}: no node of types {', '.join(op_types)}"
    return sorted({names[0], names[-1]}, key=names.index)


def float_by_weight(onnx_path: str | Path, prefixes: Sequence[str], op_types: Sequence[str] = CONVOLUTIONS) -> list[str]:
    """Names of the nodes of ``op_types`` whose weight (second input) is named with one of ``prefixes``
    (the module paths of the layers to keep in float, such as ``"head."``), in graph order."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    return [n.name for n in nodes if n.op_type in op_types and len(n.input) > 1 and n.input[1].startswith(tuple(prefixes))]


def batchnorm_as_depthwise(model) -> int:
    """Rewrite every BatchNormalization node of an ONNX model (inference form, NCHW) in place as the
    1x1 depthwise convolution that computes the same: weight scale / sqrt(var + eps) per channel,
    bias shift - mean x that. The node keeps its name (``nodes_to_exclude`` still reaches it) and its
    weight is named after the normalisation's scale, ``.depthwise`` and its output. Returns how many
    were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    params = {t.name: t for t in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        x, scale, shift, mean, var = node.input[:5]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mu, sigma2 = (numpy_helper.to_array(params[k]).astype(np.float64) for k in (scale, shift, mean, var))
        weight = gamma / np.sqrt(sigma2 + eps)                               # (C,)
        bias = beta - mu * weight
        channels = len(weight)
        w = numpy_helper.from_array(weight.reshape(channels, 1, 1, 1).astype(np.float32), f"{scale}.depthwise.{node.output[0]}")
        b = numpy_helper.from_array(bias.astype(np.float32), f"{shift}.depthwise.{node.output[0]}")
        graph.initializer.extend([w, b])
        nodes.append(helper.make_node("Conv", [x, w.name, b.name], [node.output[0]], name=node.name,   # nodes_to_exclude still finds it
                                      group=channels, kernel_shape=[1, 1]))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    unused = [t for t in graph.initializer if t.name not in used]     # the normalisations' parameters
    for t in unused:
        graph.initializer.remove(t)
    return rewritten


class _ArrayReader:
    """onnxruntime's CalibrationDataReader over one array, ``batch`` rows at a time."""

    def __init__(self, input_name: str, data: np.ndarray, batch: int):
        self._batches: Iterator[np.ndarray] = iter(np.array_split(data, max(1, -(-len(data) // batch))))
        self._name = input_name

    def get_next(self) -> dict | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {self._name: np.ascontiguousarray(chunk, dtype=np.float32)}


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if name not in methods:
        raise ValueError(f"Invalid calibration method {name!r}. Only {', '.join(CALIBRATION_METHODS)} are supported.")
    return methods[name]


def set_metadata(path: str | Path, props: dict[str, str], source: str | Path | None = None) -> None:
    """Set metadata_props of the ONNX file at ``path`` in place: those of ``source`` first, then ``props``."""
    import onnx

    model = onnx.load(str(path))
    merged = {p.key: p.value for p in model.metadata_props}
    if source is not None:
        merged.update({p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props})
    merged.update(props)
    del model.metadata_props[:]
    for key, value in merged.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray,
                  keep_float: Sequence[str] = (), op_types: Sequence[str] = QUANTIZED_OP_TYPES,
                  method: str = "minmax", extra: dict[str, str] | None = None) -> Path:
    """Write a QDQ int8 copy of an ONNX graph, calibrated on ``calibration``.

    Args:
        onnx_path: the float graph (one input; the batch axis may be dynamic).
        out_path: where to write; written beside it first, then renamed into place.
        calibration: float32 (N, ...) inputs as the graph receives them (already preprocessed).
        keep_float: node names left in float (e.g. ``first_and_last(onnx_path)``).
        op_types: operator types to quantise; every other node stays float. With
            "BatchNormalization", batch normalisations become depthwise convolutions first.
        method: activation range calibration, one of ``CALIBRATION_METHODS``.
        extra: metadata_props to add, e.g. how the file was calibrated.

    Returns:
        The path written.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    assert len(calibration) > 0, "quantize_int8 needs at least one calibration input"
    calibrate = _calibration_method(method)
    input_name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        if "BatchNormalization" in op_types:
            import onnx

            graph = onnx.load(str(prepared))
            if batchnorm_as_depthwise(graph):
                onnx.save(graph, str(prepared))
        quantize_static(str(prepared), str(quantized), _ArrayReader(input_name, calibration, CALIBRATION_BATCH),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=True,
                        reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(keep_float), calibrate_method=calibrate,
                        extra_options={"CalibTensorRangeSymmetric": False, "WeightSymmetric": True,
                                       "CalibMovingAverage": False})
        set_metadata(quantized, extra or {}, source=onnx_path)
        os.replace(quantized, out_path)
    log.info("quantised %s to %s (float: %s)", onnx_path, out_path, json.dumps(list(keep_float)))
    return out_path
