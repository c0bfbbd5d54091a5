"""Throughput of the SynthDigits generator: images/s of train.synth.generate for 1 and 2 workers.

Run from the repository root: ``python bench/synth_throughput.py [--n 2000] [--repeats 3]``.
Font discovery is done once before timing, as a training run would.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import synth  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per run (default: 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (default: 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to time (default: 1 2)")
    return parser


def images_per_second(n: int, workers: int, repeats: int) -> float:
    """Median images/s of `generate(n, ...)` over `repeats` runs with different seeds."""
    rates = []
    for seed in range(repeats):
        start = time.perf_counter()
        synth.generate(n, seed=seed, workers=workers)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main(args: argparse.Namespace) -> None:
    """Time generate() for each requested worker count and print images/s."""
    fonts = synth.find_fonts()
    print(f"generator v{synth.GENERATOR_VERSION}, {len(fonts)} fonts, "
          f"{args.n} images x {args.repeats} runs")
    for workers in args.workers:
        rate = images_per_second(args.n, workers, args.repeats)
        print(f"workers={workers}: {rate:,.0f} images/s (median)")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
