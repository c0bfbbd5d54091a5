"""Forward pass alone: the fp32 and int8 ONNX models of a checkpoint, interleaved in one run.

For each (batch, intra-op threads) point both models run in alternating windows, so they meet the
same background load; the table gives the median wall time per forward and the process CPU time
per forward (robust to other processes on the machine), and the int8 speed-up of each.
``--explore`` adds what else was tried: ONNX Runtime graph optimisation levels, the micro-batch
size, and eager torch in fp32 against bf16 autocast (oneDNN uses AVX-512 BF16 where present).

    python bench/forward.py [--checkpoint checkpoints/default.pt] [--windows 7] [--explore]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from model.inference import int8_path_for, onnx_is_current, onnx_path_for, softmax  # noqa: E402

POINTS = ((1, 1), (32, 1), (1, 2), (32, 2))      # (batch, intra-op threads)
OPT_LEVELS = ("disable", "basic", "extended", "all")


def session(path: Path, threads: int, level: str = "all"):
    """An ONNX Runtime session with the serving options (``model.inference.OnnxPredictor``) and ``level``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: softmax(s.run(None, {name: x})[0])


def race(runs: dict[str, Callable], x: np.ndarray, windows: int, seconds: float = 0.4) -> dict[str, tuple[float, float]]:
    """Alternate ``windows`` timed windows of each run on ``x``: {name: (median wall ms, CPU ms) per forward}."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for run in runs.values():
        for _ in range(3):
            run(x)
    for _ in range(windows):
        for name, run in runs.items():
            n, start, cpu_start = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds:
                t = time.perf_counter()
                run(x)
                wall[name].append(time.perf_counter() - t)
                n += 1
            cpu[name].append((time.process_time() - cpu_start) / n)
    return {k: (float(np.median(wall[k])) * 1000, float(np.median(cpu[k])) * 1000) for k in runs}


def main_table(fp32: Path, int8: Path, windows: int) -> None:
    print(f"{'batch':>5} {'threads':>7} {'fp32 ms':>9} {'int8 ms':>9} {'speed-up':>8} {'fp32 CPU':>9} {'int8 CPU':>9} "
          f"{'speed-up':>8} {'int8 ms/img':>11}")
    for batch, threads in POINTS:
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        r = race({"fp32": session(fp32, threads), "int8": session(int8, threads)}, x, windows)
        (w32, c32), (w8, c8) = r["fp32"], r["int8"]
        print(f"{batch:>5} {threads:>7} {w32:>9.2f} {w8:>9.2f} {w32 / w8:>7.2f}x {c32:>9.2f} {c8:>9.2f} {c32 / c8:>7.2f}x "
              f"{w8 / batch:>11.3f}", flush=True)


def explore(ckpt: Path, fp32: Path, int8: Path, windows: int) -> None:
    print("\ngraph optimisation level (1 thread): median wall ms per forward")
    print(f"{'level':>9} {'fp32 b1':>8} {'int8 b1':>8} {'fp32 b32':>9} {'int8 b32':>9}")
    for level in OPT_LEVELS:
        row = []
        for batch in (1, 32):
            x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
            r = race({"fp32": session(fp32, 1, level), "int8": session(int8, 1, level)}, x, windows)
            row += [r["fp32"][0], r["int8"][0]]
        print(f"{level:>9} {row[0]:>8.2f} {row[1]:>8.2f} {row[2]:>9.2f} {row[3]:>9.2f}", flush=True)
    print("\nmicro-batch size (int8, 1 thread): ms per image, wall and CPU")
    runs = {"int8": session(int8, 1)}
    for batch in (1, 2, 4, 8, 16, 32, 64):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        wall, cpu = race(runs, x, windows)["int8"]
        print(f"  batch {batch:>2}: {wall / batch:6.3f} ms/img wall, {cpu / batch:6.3f} CPU", flush=True)
    print("\neager torch, fp32 vs bf16 autocast (1 thread): median wall ms per forward")
    import torch

    from model.checkpoint import load_network

    torch.set_num_threads(1)
    net, _ = load_network(ckpt)
    net = net.to(memory_format=torch.channels_last)

    def eager(dtype):
        def run(x):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                return net(torch.from_numpy(x).to(memory_format=torch.channels_last)).float().numpy()
        return run

    for batch in (1, 32):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        r = race({"fp32": eager("fp32"), "bf16": eager("bf16"), "onnx int8": session(int8, 1)}, x, windows)
        print(f"  batch {batch:>2}: torch fp32 {r['fp32'][0]:.2f}, torch bf16 {r['bf16'][0]:.2f}, "
              f"ONNX Runtime int8 {r['onnx int8'][0]:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description="fp32 vs int8 forward time of a checkpoint's ONNX models.")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"), help="default: %(default)s")
    p.add_argument("--windows", type=int, default=7, help="timed windows per model and point (default: %(default)s)")
    p.add_argument("--explore", action="store_true", help="also optimisation levels, batch sizes, torch bf16")
    args = p.parse_args()
    ckpt = Path(args.checkpoint)
    if not onnx_is_current(ckpt, "int8"):
        from train.quantize import make_int8

        make_int8(ckpt)
    fp32, int8 = onnx_path_for(ckpt), int8_path_for(ckpt)
    print(f"{ckpt.name}: {fp32.name} vs {int8.name}; medians over {args.windows} interleaved windows")
    main_table(fp32, int8, args.windows)
    if args.explore:
        explore(ckpt, fp32, int8, args.windows)


if __name__ == "__main__":
    main()
