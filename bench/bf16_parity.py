"""Does bf16 autocast on the CPU train as well as fp32? The same short run both ways, several seeds.

Each seed trains the same network on the same SynthDigits renders with the same batches twice:
under bf16 autocast (``main.py``'s CPU default where the CPU has native bf16) and in fp32 (what
``--no-amp`` runs), one after the other, so both see the same machine. Printed per run: the
synthetic test accuracy of the best epoch, the real SVHN crops of ``--eval-npz`` (reported only,
never trained on or used for selection), and the wall time; then the mean gap bf16 - fp32 beside
the spread between seeds of one precision, which is the noise the gap is to be read against.

    python bench/bf16_parity.py [--seeds 0 1] [--synth-size 8000] [--epochs 3] [--depth 16 --width 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.config import TrainConfig  # noqa: E402
from train.engine import cpu_has_bf16  # noqa: E402
from train.loop import fit  # noqa: E402

PRECISIONS = {"bf16": True, "fp32": False}


def one_run(seed: int, amp: bool, args: argparse.Namespace, out: Path) -> dict:
    cfg = TrainConfig(dataset="SynthDigits", data_dir=args.data_dir, synth_size=args.synth_size, val_size=args.val_size,
                      depth=args.depth, width=args.width, dropout=0.3, epochs=args.epochs, batch_size=128, lr=0.05,
                      milestones=(max(1, args.epochs - 1),), seed=seed, device="cpu", amp=amp, out=str(out),
                      eval_npz=args.eval_npz if Path(args.eval_npz).is_file() else "")
    began = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):          # the progress bars
        metrics = fit(cfg, out)
    seconds = time.perf_counter() - began
    real = metrics.get("reported_accuracy", {}).get("value", float("nan"))
    return {"test": metrics["test_accuracy"]["value"], "real": real, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--synth-size", type=int, default=8000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=2)
    p.add_argument("--data-dir", default=str(REPO / "data"))
    p.add_argument("--eval-npz", default=str(REPO.parent / "shared" / "data" / "svhn" / "svhn_real_val.npz"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not cpu_has_bf16():
        sys.exit("this CPU has no native bf16: main.py trains in fp32 here, there is nothing to compare")
    print(f"WRN-{args.depth}-{args.width}, SynthDigits {args.synth_size:,} renders, {args.epochs} epochs, batch 128, CPU")
    print(f"{'seed':>4} {'precision':>9} {'synth test':>11} {'real crops':>11} {'seconds':>8}")
    results = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            warm_up = argparse.Namespace(**{**vars(args), "depth": 10, "width": 1, "epochs": 1})
            one_run(seed, False, warm_up, Path(tmp) / f"warm-up-{seed}")   # renders the data, untimed
            for name, amp in PRECISIONS.items():
                r = one_run(seed, amp, args, Path(tmp) / f"{name}-{seed}")
                results[name].append(r)
                print(f"{seed:>4} {name:>9} {r['test']:>11.2%} {r['real']:>11.2%} {r['seconds']:>8.0f}", flush=True)
    for key, label in (("test", "synth test"), ("real", "real crops")):
        gaps = [b[key] - f[key] for b, f in zip(results["bf16"], results["fp32"])]
        spread = max(max(r[key] for r in rs) - min(r[key] for r in rs) for rs in results.values())
        print(f"{label}: bf16 - fp32 = {statistics.mean(gaps):+.2%} (per seed: "
              f"{', '.join(f'{g:+.2%}' for g in gaps)}); spread between seeds of one precision up to {spread:.2%}")
    speed = statistics.mean(f["seconds"] for f in results["fp32"]) / statistics.mean(b["seconds"] for b in results["bf16"])
    print(f"wall time: bf16 {speed:.2f}x faster than fp32")


if __name__ == "__main__":
    main()
