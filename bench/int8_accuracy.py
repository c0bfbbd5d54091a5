"""Accuracy of the fp32 and int8 ONNX models side by side: real SVHN digits and the SynthDigits test split.

Both files are made first if missing or stale (``train.quantize.make_int8``, which calibrates on
SynthDigits training renders only). Every image goes through the serving preprocessing
(``model.preprocess.preprocess``) and the serving predictor (``model.inference.OnnxPredictor``).

    python bench/int8_accuracy.py [--checkpoint checkpoints/default.pt] \\
        [--npz ../shared/data/svhn/svhn_real_val.npz] [--synth-test 10000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from model.inference import OnnxPredictor, int8_path_for, onnx_is_current, onnx_path_for  # noqa: E402
from model.preprocess import preprocess  # noqa: E402
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


def main() -> None:
    p = argparse.ArgumentParser(description="fp32 vs int8 accuracy of a checkpoint's ONNX models.")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"), help="default: %(default)s")
    p.add_argument("--npz", default=str(DEFAULT_NPZ), help="real digits, x uint8 (N,32,32,3), y (default: %(default)s)")
    p.add_argument("--synth-test", type=int, default=10_000, help="SynthDigits test renders (default: %(default)s)")
    p.add_argument("--data-dir", default=str(REPO / "data"), help="render cache (default: %(default)s)")
    args = p.parse_args()
    if not onnx_is_current(args.checkpoint, "int8"):
        make_int8(args.checkpoint)
    fp32 = OnnxPredictor(onnx_path_for(args.checkpoint), threads=2)
    int8 = OnnxPredictor(int8_path_for(args.checkpoint), threads=2)
    sets = []
    if Path(args.npz).is_file():
        with np.load(args.npz) as data:
            sets.append((f"{Path(args.npz).name} (real)", data["x"], data["y"]))
    x, y = load_or_generate(args.data_dir, args.synth_test, 0, "test", workers=2)
    sets.append((f"SynthDigits v{GENERATOR_VERSION} test, seed 0", x, y))
    print(f"{Path(args.checkpoint).name}: int8 calibrated on {int8.quantization['calibration']}; "
          f"float nodes {', '.join(int8.quantization['float_nodes'])}")
    print(f"{'data':36} {'images':>7} {'fp32':>8} {'int8':>8} {'int8-fp32':>10} {'agree':>7}")
    for name, pictures, labels in sets:
        batch = inputs(pictures, fp32.info)
        (a32, p32), (a8, p8) = accuracy(fp32, batch, labels), accuracy(int8, batch, labels)
        print(f"{name:36} {len(labels):>7} {a32:>8.4f} {a8:>8.4f} {100 * (a8 - a32):>+9.2f}p {float((p32 == p8).mean()):>7.4f}")


if __name__ == "__main__":
    main()
