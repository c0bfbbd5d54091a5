"""Accuracy of the fp32 and int8 ONNX models side by side: real SVHN digits and the SynthDigits test split.

Both files are made first if missing or stale (``train.quantize.make_int8``, which calibrates on
SynthDigits training renders only). Every image goes through the serving preprocessing
(``model.preprocess.preprocess``) and the serving predictor (``model.inference.OnnxPredictor``).

    python bench/int8_accuracy.py [--checkpoint checkpoints/default.pt] \\
        [--npz ../shared/data/svhn/svhn_real_val.npz] [--synth-test 10000] [--crossval DIR]

A checkpoint that trained on the --npz images is scored on them through its cross-validation
(``--crossval DIR``, as ``bench/photo_suite.py``): each image by the fp32 and int8 models of the
fold that held it out. Without it such a checkpoint's real row is left out, with a note.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from model.checkpoint import CheckpointError  # noqa: E402
from model.inference import OnnxPredictor, int8_path_for, onnx_is_current, onnx_path_for  # noqa: E402
from model.preprocess import preprocess  # noqa: E402
from train.crossval import fold_models, trained_on  # noqa: E402
from train.quantize import make_int8  # noqa: E402
from train.synth import GENERATOR_VERSION, load_or_generate  # noqa: E402

DEFAULT_NPZ = REPO.parent / "shared" / "data" / "svhn" / "svhn_real_val.npz"


def inputs(pictures: np.ndarray, info: dict) -> np.ndarray:
    """uint8 (N, H, W, 3) pictures -> float32 (N, 3, H, W) through the serving preprocessing."""
    return np.stack([preprocess(Image.fromarray(p), info["input_size"], info["mean"], info["std"])[0] for p in pictures])


def accuracy(predictor: OnnxPredictor, x: np.ndarray, y: np.ndarray, batch: int = 64) -> tuple[float, np.ndarray]:
    """(accuracy, argmax) of a predictor on x."""
    pred = np.concatenate([predictor.predict(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).mean()), pred


def onnx_pair(checkpoint: str | Path) -> tuple[OnnxPredictor, OnnxPredictor]:
    """The fp32 and int8 ONNX predictors of a checkpoint, made first if missing or stale."""
    if not onnx_is_current(checkpoint, "int8"):
        make_int8(checkpoint)
    return OnnxPredictor(onnx_path_for(checkpoint), threads=2), OnnxPredictor(int8_path_for(checkpoint), threads=2)


def fold_predictions(crossval: str, pictures: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fp32 and int8 argmax of every picture, each by the models of the fold that held it out."""
    models, fold_of = fold_models(crossval, labels)
    p32, p8 = np.empty(len(labels), int), np.empty(len(labels), int)
    for f, model in enumerate(models):
        fp32, int8 = onnx_pair(model)
        idx = np.flatnonzero(fold_of == f)
        batch = inputs(pictures[idx], fp32.info)
        p32[idx], p8[idx] = accuracy(fp32, batch, labels[idx])[1], accuracy(int8, batch, labels[idx])[1]
    return p32, p8


def main() -> None:
    p = argparse.ArgumentParser(description="fp32 vs int8 accuracy of a checkpoint's ONNX models.")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"), help="default: %(default)s")
    p.add_argument("--npz", default=str(DEFAULT_NPZ), help="real digits, x uint8 (N,32,32,3), y (default: %(default)s)")
    p.add_argument("--synth-test", type=int, default=10_000, help="SynthDigits test renders (default: %(default)s)")
    p.add_argument("--data-dir", default=str(REPO / "data"), help="render cache (default: %(default)s)")
    p.add_argument("--crossval", default=None, metavar="DIR",
                   help="score the --npz images with the models of this cross-validation folder, fold by fold")
    args = p.parse_args()
    try:
        fp32, int8 = onnx_pair(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    print(f"{Path(args.checkpoint).name}: int8 calibrated on {int8.quantization['calibration']}; "
          f"float nodes {', '.join(int8.quantization['float_nodes'])}")
    print(f"{'data':44} {'images':>7} {'fp32':>8} {'int8':>8} {'int8-fp32':>10} {'agree':>7}")

    def row(name: str, labels: np.ndarray, p32: np.ndarray, p8: np.ndarray) -> None:
        a32, a8 = float((p32 == labels).mean()), float((p8 == labels).mean())
        print(f"{name:44} {len(labels):>7} {a32:>8.4f} {a8:>8.4f} {100 * (a8 - a32):>+9.2f}p {float((p32 == p8).mean()):>7.4f}")

    if not Path(args.npz).is_file():
        print(f"{args.npz}: no such file, its row left out (give the real digits with --npz FILE.npz)")
    else:
        with np.load(args.npz) as data:
            pictures, labels = data["x"], data["y"]
        name = Path(args.npz).name
        if args.crossval:
            row(f"{name} (real, by fold)", labels, *fold_predictions(args.crossval, pictures, labels))
        elif trained_on(args.checkpoint, args.npz):
            print(f"{name}: left out, {Path(args.checkpoint).name} trained on it (give --crossval DIR)")
        else:
            batch = inputs(pictures, fp32.info)
            row(f"{name} (real)", labels, accuracy(fp32, batch, labels)[1], accuracy(int8, batch, labels)[1])
    x, y = load_or_generate(args.data_dir, args.synth_test, 0, "test", workers=2)
    batch = inputs(x, fp32.info)
    row(f"SynthDigits v{GENERATOR_VERSION} test, seed 0", y, accuracy(fp32, batch, y)[1], accuracy(int8, batch, y)[1])


if __name__ == "__main__":
    main()
