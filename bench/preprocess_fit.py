"""How should an upload of any size and shape become the network's 32x32 input?

Measures a checkpoint's accuracy on real SVHN digits (``--npz``, validation only) for each
``fit`` of ``model.preprocess`` ("crop": centred square then resize; "pad": pad to a square;
"squash": resize ignoring aspect ratio), on the images as they are and turned into what a phone
photo of the same digit looks like: enlarged 8x, landscape 4:3 and portrait 3:4 frames (the crop
continued by reflecting its own content, so the digit stays the main subject), and a frame with
a plain margin around the crop.

    python bench/preprocess_fit.py --checkpoint checkpoints/default.pt --npz ../shared/data/svhn/svhn_real_val.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.checkpoint import load_network  # noqa: E402
from model.preprocess import FITS, preprocess  # noqa: E402
from train.crossval import trained_on  # noqa: E402

SCALE = 8  # a 32 px crop becomes a 256 px photo


def enlarge(a: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((32 * SCALE, 32 * SCALE), Image.Resampling.BICUBIC))


def frame(a: np.ndarray, ratio: float, mode: str = "reflect") -> np.ndarray:
    """Enlarge, then extend to width/height = ratio by reflection (or a margin of edge colour)."""
    big = enlarge(a)
    h, w = big.shape[:2]
    if ratio >= 1:
        extra = int(round(h * ratio)) - w
        pad = ((0, 0), (extra // 2, extra - extra // 2), (0, 0))
    else:
        extra = int(round(w / ratio)) - h
        pad = ((extra // 2, extra - extra // 2), (0, 0), (0, 0))
    return np.pad(big, pad, mode=mode)


VARIANTS = {
    "original 32x32": lambda a: a,
    "enlarged 8x (256x256)": enlarge,
    "landscape 4:3 photo": lambda a: frame(a, 4 / 3),
    "portrait 3:4 photo": lambda a: frame(a, 3 / 4),
    "wide 16:9 photo": lambda a: frame(a, 16 / 9),
    "4:3 with plain margin": lambda a: frame(a, 4 / 3, "edge"),
}


@torch.inference_mode()
def accuracy(net, ckpt, images, labels, variant, fit) -> float:
    xs = [preprocess(Image.fromarray(variant(a)), ckpt["input_size"], ckpt["mean"], ckpt["std"], fit)[0]
          for a in images]
    pred = net(torch.from_numpy(np.stack(xs))).argmax(1).numpy()
    return float((pred == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/default.pt")
    p.add_argument("--npz", default="../shared/data/svhn/svhn_real_val.npz")
    args = p.parse_args()
    if trained_on(args.checkpoint, args.npz):
        sys.exit(f"error: {args.checkpoint} trained on {Path(args.npz).name}, so its accuracy there means nothing; "
                 f"give a model that never saw them (the SynthDigits-only one: git show "
                 f"4a393df:checkpoints/default.pt > runs/synthetic-v4.pt)")
    net, ckpt = load_network(args.checkpoint)
    with np.load(args.npz) as f:
        images, labels = f["x"], f["y"]
    print(f"{Path(args.checkpoint).name} on {Path(args.npz).name} ({len(labels)} images): accuracy by fit")
    print(f"{'variant':<24}" + "".join(f"{fit:>9}" for fit in FITS))
    for name, variant in VARIANTS.items():
        row = [accuracy(net, ckpt, images, labels, variant, fit) for fit in FITS]
        print(f"{name:<24}" + "".join(f"{a:>9.4f}" for a in row))


if __name__ == "__main__":
    main()
