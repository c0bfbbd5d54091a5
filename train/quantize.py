"""The int8 model of a checkpoint: calibrated on rendered SynthDigits, checked against the fp32 one.

``make_int8`` exports the fp32 graph if it is missing or stale (``model.export``), renders
``CALIBRATION_SIZE`` SynthDigits training-split pictures (fixed seed) through the serving
preprocessing, quantises with ``model.quantize.quantize_int8`` (first convolution and classifier
kept in float; everything between them int8, the residual additions and pre-activation batch
normalisations included), then measures the fp32 and int8 graphs on ``CHECK_SIZE`` validation-split renders.
The int8 file (``model.inference.int8_path_for``: ``X.int8.onnx`` beside ``X.pt``) records in its
metadata how it was calibrated and that check; serving uses it only if the check passed (int8 at
most ``ACCURACY_BUDGET`` below fp32, and the same answer as fp32 for at least ``MIN_AGREEMENT`` of
the pictures: the second rule is what catches a broken quantisation of a model whose accuracy means
little, such as the tests' randomly initialised ones). Real photographs are never used here: they are for measuring.

The localiser (LocNet) is quantised the same way, calibrated on rendered scenes (``train.scenes``,
training split) and checked on the validation split's main-digit box accuracy, false alarms on
digit-free scenes and agreement with fp32; its stem, first stage, the top-down path's 1x1
convolutions and the head stay in float (quantising the head's 3x3 convolution as well found 7% of
the main digits instead of 69%; docs/serving-int8.md).

Run as ``python -m train.quantize CKPT`` (the server runs it in a child process when the int8 file
is missing or was made from other weights); it prints the check as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from model.checkpoint import CheckpointError, describe, load_checkpoint
from model.export import export_onnx
from model.inference import (INT8_STAMPS, QUANTIZATION_KEY, OnnxPredictor, default_threads, int8_path_for,
                             onnx_is_current, onnx_path_for)
from model.localiser import INPUT_SIZE, iou, normalize_input
from model.preprocess import normalize
from model.quantize import CONVOLUTIONS, QUANTIZED_OP_TYPES, first_and_last, float_by_weight, quantize_int8, set_metadata
from model.reading import FIND_THRESHOLD
from train.localise import IOU_GOOD, evaluate, main_digits
from train.scenes import generate_scenes
from train.synth import GENERATOR_VERSION, load_or_generate

log = logging.getLogger(__name__)

CALIBRATION_SIZE = 512
CHECK_SIZE = 1000
SEED = 0
ACCURACY_BUDGET = 0.003        # int8 may read at most 0.3 points fewer of the check set than fp32
MIN_AGREEMENT = 0.95           # measured: 0.99 and more when calibrated well, about 0.6 with broken ranges
METHOD = "percentile"         # the classifier's activation ranges: min/max let a few outliers widen them
LOCALISER_METHOD = "minmax"    # (its recipe below was chosen and checked with min/max ranges)
SCENE_CALIBRATION_SIZE = 256   # the localiser: rendered scenes to calibrate on ...
SCENE_CHECK_SIZE = 1000        # ... and to check on (801 with digits, 199 without: one false find is 0.5 points)
BOX_BUDGET = 0.01              # int8 may find the main digit in at most 1 point fewer of them (2 more false alarms)
LOCALISER_MIN_AGREEMENT = 0.8  # measured: 0.97 with the float nodes below; the head's 3x3 in int8 broke it
LOCALISER_FLOAT = ("stem.", "stages.0.", "lateral.", "head.")   # LocNet's layers kept in float (weights named so)
DATA_DIR = Path(__file__).resolve().parent.parent / "data"   # renders are cached in DATA_DIR/synthdigits


def rendered_inputs(n: int, split: str, facts: dict, workers: int = 2,
                    data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``n`` SynthDigits renders (seed ``SEED``, cached) as the network receives them: float32
    (n, 3, H, W) and labels (n,)."""
    assert list(facts["input_size"]) == [32, 32], f"SynthDigits renders 32x32 crops, the model wants {facts['input_size']}"
    pictures, labels = load_or_generate(data_dir, n, SEED, split, workers)
    x = np.stack([normalize(p, facts["mean"], facts["std"]) for p in pictures])   # (n, 3, H, W)
    return x, labels


def predictions(onnx_path: Path, x: np.ndarray, batch: int = 100) -> np.ndarray:
    """Argmax class of every row of ``x`` with an ONNX file, ``batch`` rows per forward."""
    predictor = OnnxPredictor(onnx_path, threads=default_threads())
    return np.concatenate([predictor.predict(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def accuracy_check(fp32_path: Path, int8_path: Path, x: np.ndarray, y: np.ndarray, data: str,
                   budget: float = ACCURACY_BUDGET) -> dict:
    """fp32 and int8 accuracy on (x, y), their argmax agreement, and whether int8 passed (see module)."""
    fp32, int8 = predictions(fp32_path, x), predictions(int8_path, x)
    fp32_acc, int8_acc, agreement = float((fp32 == y).mean()), float((int8 == y).mean()), float((fp32 == int8).mean())
    return {"data": data, "fp32_accuracy": fp32_acc, "int8_accuracy": int8_acc, "agreement": agreement,
            "budget": budget, "min_agreement": MIN_AGREEMENT,
            "passed": bool(int8_acc >= fp32_acc - budget - 1e-9 and agreement >= MIN_AGREEMENT)}


def localiser_check(fp32_path: Path, int8_path: Path, scenes: dict[str, np.ndarray], data: str,
                    budget: float = BOX_BUDGET) -> dict:
    """The localiser's fp32 and int8 main-box accuracy on letterboxed scenes, their false alarms on the
    digit-free ones, and how often they choose the same main digit (IoU >= 0.5, or both none)."""
    fp32, int8 = (main_digits(OnnxPredictor(p, threads=default_threads()).forward, scenes["x"], FIND_THRESHOLD)
                  for p in (fp32_path, int8_path))
    f, q = evaluate(fp32, scenes), evaluate(int8, scenes)
    same = [(a is None and b is None) or (a is not None and b is not None and iou(a.box, b.box) >= IOU_GOOD)
            for a, b in zip(fp32, int8)]
    agreement = float(np.mean(same))
    return {"data": data, "fp32_accuracy": f["box_iou50"], "int8_accuracy": q["box_iou50"], "agreement": agreement,
            "fp32_false_alarm": f["false_alarm"], "int8_false_alarm": q["false_alarm"], "budget": budget,
            "min_agreement": LOCALISER_MIN_AGREEMENT,
            "passed": bool(q["box_iou50"] >= f["box_iou50"] - budget - 1e-9
                           and q["false_alarm"] <= f["false_alarm"] + 2 * budget + 1e-9
                           and agreement >= LOCALISER_MIN_AGREEMENT)}


def make_int8(ckpt_path: str | Path, calibration_size: int | None = None, check_size: int | None = None,
              workers: int = 2) -> dict:
    """Write ``X.int8.onnx`` for checkpoint ``X.pt`` (and ``X.onnx`` if stale); returns the check.
    A digit classifier is calibrated and checked on SynthDigits renders, the localiser (LocNet) on
    rendered scenes (``train.scenes``), its stem, first stage, top-down path and head kept in float.

    Raises:
        CheckpointError: naming the file, if the checkpoint is missing, corrupt or incompatible.
    """
    ckpt_path = Path(ckpt_path)
    facts = describe(load_checkpoint(ckpt_path))
    fp32_path = onnx_path_for(ckpt_path)
    if not onnx_is_current(ckpt_path):
        export_onnx(ckpt_path, fp32_path)
    tmp_path = int8_path_for(ckpt_path).with_suffix(".tmp")
    if facts["arch"]["arch"] == "locnet":
        calibration_size, check_size = calibration_size or SCENE_CALIBRATION_SIZE, check_size or SCENE_CHECK_SIZE
        calibration = normalize_input(generate_scenes(calibration_size, SEED, "train", INPUT_SIZE, workers)["x"])
        scenes = generate_scenes(check_size, SEED, "val", INPUT_SIZE, workers)
        keep_float = float_by_weight(fp32_path, LOCALISER_FLOAT)
        source = f"rendered scenes (train/scenes.py), training split, {calibration_size} scenes, seed {SEED}"
        data = f"rendered scenes, validation split, {check_size} scenes, seed {SEED}"
        check = lambda: localiser_check(fp32_path, tmp_path, scenes, data)  # noqa: E731
        method, op_types = LOCALISER_METHOD, CONVOLUTIONS
    else:
        calibration_size, check_size = calibration_size or CALIBRATION_SIZE, check_size or CHECK_SIZE
        calibration, _ = rendered_inputs(calibration_size, "train", facts, workers=workers)
        x, y = rendered_inputs(check_size, "val", facts, workers=workers)
        keep_float = first_and_last(fp32_path)
        source = f"SynthDigits v{GENERATOR_VERSION} training split, {calibration_size} renders, seed {SEED}"
        data = f"SynthDigits v{GENERATOR_VERSION} validation split, {check_size} renders, seed {SEED}"
        check = lambda: accuracy_check(fp32_path, tmp_path, x, y, data)  # noqa: E731
        method, op_types = METHOD, QUANTIZED_OP_TYPES
    recipe = {**INT8_STAMPS, "precision": "int8", "format": "QDQ", "weights": "int8, symmetric, per channel",
              "activations": f"uint8, per tensor, {method} ranges", "op_types": list(op_types),
              "float_nodes": keep_float, "calibration": source}
    quantize_int8(fp32_path, tmp_path, calibration, keep_float, op_types=op_types, method=method,
                  extra={QUANTIZATION_KEY: json.dumps(recipe)})
    recipe["check"] = check()
    set_metadata(tmp_path, {QUANTIZATION_KEY: json.dumps(recipe)})
    os.replace(tmp_path, int8_path_for(ckpt_path))
    log.info("int8 check for %s: %s", ckpt_path, recipe["check"])
    return recipe["check"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Make the int8 ONNX model of a checkpoint (X.pt -> X.int8.onnx).")
    parser.add_argument("checkpoint", help="checkpoint file (.pt)")
    parser.add_argument("--calibration-size", type=int, default=None,
                        help=f"training renders to calibrate on (default: {CALIBRATION_SIZE} SynthDigits, "
                             f"{SCENE_CALIBRATION_SIZE} scenes for the localiser)")
    parser.add_argument("--check-size", type=int, default=None,
                        help=f"validation renders for the accuracy check (default: {CHECK_SIZE} SynthDigits, "
                             f"{SCENE_CHECK_SIZE} scenes for the localiser)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        check = make_int8(args.checkpoint, args.calibration_size, args.check_size, args.workers)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(check))
    return 0


if __name__ == "__main__":
    sys.exit(main())
