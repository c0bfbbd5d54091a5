"""How SynthDigits crops differ from real SVHN crops, in image statistics (no network involved).

Run from the repository root:
``python bench/synth_vs_real.py [--npz ../shared/data/svhn/svhn_real_val.npz] [--n 2000]``.

Prints percentiles of per-image contrast (grey std), brightness (grey mean), sharpness (mean
|Laplacian| / (std + 1)) and colour saturation (mean max-min over RGB) for the real crops and for
`--n` rendered validation-split crops, then the mean gap between their per-class edge profiles:
rows (where the digit's top and bottom are) and columns (its width and the neighbours). Generator
v4's geometry, blur, noise, contrast and saturation were set by bringing these closer; this compares
aggregate statistics only, the real images are never trained on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import synth  # noqa: E402

PERCENTILES = (10, 25, 50, 75, 90)


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default="../shared/data/svhn/svhn_real_val.npz",
                        help="real crops: x uint8 (N, 32, 32, 3), y int (N,)")
    parser.add_argument("--n", type=int, default=2000, help="rendered crops to compare (default: 2000)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default: 2)")
    return parser


def to_grey(x: np.ndarray) -> np.ndarray:
    """float32 (N, H, W) mean of the RGB channels of uint8 (N, H, W, 3) crops."""
    return x.astype(np.float32).mean(-1)


def image_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image contrast, brightness, sharpness and saturation of uint8 (N, H, W, 3) crops."""
    grey = to_grey(x)
    laplacian = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
                 - 4 * grey[:, 1:-1, 1:-1])
    std = grey.std((1, 2))
    return {
        "contrast": std,
        "brightness": grey.mean((1, 2)),
        "sharpness": np.abs(laplacian).mean((1, 2)) / (std + 1),
        "saturation": (x.max(-1).astype(np.float32) - x.min(-1)).mean((1, 2)),
    }


def edge_profile(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean edge strength along rows (axis 1) or columns (axis 2), scaled to a maximum of 1."""
    profile = np.abs(np.diff(to_grey(x), axis=axis)).mean(3 - axis).mean(0)
    return profile / profile.max()


def profile_gap(x_a: np.ndarray, y_a: np.ndarray, x_b: np.ndarray, y_b: np.ndarray, axis: int) -> float:
    """Mean absolute difference of the per-class edge profiles of two sets of crops."""
    classes = sorted(set(y_a.tolist()) & set(y_b.tolist()))
    return float(np.mean([np.abs(edge_profile(x_a[y_a == c], axis) - edge_profile(x_b[y_b == c], axis)).mean()
                          for c in classes]))


def main(args: argparse.Namespace) -> None:
    """Render the crops and print both sets' statistics side by side."""
    with np.load(args.npz) as data:
        x_real, y_real = data["x"], data["y"]
    x_synth, y_synth = synth.generate(args.n, seed=0, split="val", workers=args.workers)
    print(f"{Path(args.npz).name} ({len(x_real)} images) vs SynthDigits v{synth.GENERATOR_VERSION} "
          f"({args.n} validation-split images)")
    print(f"{'statistic':<11} {'set':<6}" + "".join(f"{f'p{p}':>9}" for p in PERCENTILES))
    real, rendered = image_stats(x_real), image_stats(x_synth)
    for name in real:
        for label, stats in (("real", real), ("synth", rendered)):
            print(f"{name:<11} {label:<6}" + "".join(f"{v:9.3f}" for v in np.percentile(stats[name], PERCENTILES)))
    for axis, name in ((1, "row (height)"), (2, "column (width)")):
        print(f"per-class {name} edge-profile gap: {profile_gap(x_real, y_real, x_synth, y_synth, axis):.4f}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
