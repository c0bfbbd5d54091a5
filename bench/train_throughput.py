"""Training throughput (images/s) of the project's ``train_one_epoch`` against a plain fp32 loop.

For each WRN, the project path is what ``main.py`` runs: ``train.engine.train_one_epoch`` with the
runtime of ``setup_runtime`` and the network in ``Runtime.memory_format`` (bf16/fp16 autocast and
channels_last on CUDA, and on CPUs with native bf16; fp32 channels_last on other CPUs). Beside it,
the same project path in fp32 (what ``--no-amp`` runs), so the two precisions come from one run. The
baseline is a plain loop:
the same network and SGD optimiser, contiguous memory, no autocast, and ``loss.item()`` every
step (the usual way to log the loss; the project loop keeps its running totals on the device
instead). Both see the same random batches, copied from host memory every step. Windows of the
two paths alternate, so drift in a shared machine's load hits both; each figure is the median over
windows after one warm-up window.

Run from the repository root: ``python bench/train_throughput.py [--archs 16-4 16-8] [--steps N]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from model.networks import ArchConfig, build_network  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.engine import Runtime, setup_runtime, train_one_epoch  # noqa: E402

DEFAULTS = {"cuda": {"batch_size": 128, "steps": 50, "windows": 5},  # per device type
            "cpu": {"batch_size": 8, "steps": 1, "windows": 3}}


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["16-4", "16-8"], metavar="DEPTH-WIDTH",
                        help="WRNs to time (default: 16-4 16-8)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: 128 on CUDA, 8 on CPU)")
    parser.add_argument("--steps", type=int, help="steps per timed window (default: 50 on CUDA, 1 on CPU)")
    parser.add_argument("--windows", type=int, help="timed windows per path (default: 5 on CUDA, 3 on CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu or cuda")
    return parser


def parse_arch(text: str) -> ArchConfig:
    """'16-4' -> WRN-16-4 with the training default dropout."""
    try:
        depth, width = (int(v) for v in text.split("-"))
    except ValueError:
        raise SystemExit(f"Invalid --archs value {text!r}: expected DEPTH-WIDTH such as 16-4.") from None
    return ArchConfig(arch="wrn", depth=depth, width=width, dropout=TrainConfig().dropout)


def make_optimizer(net: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with the training defaults (the same optimiser for both paths)."""
    c = TrainConfig()
    return torch.optim.SGD(net.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                           weight_decay=c.weight_decay)


def make_batches(steps: int, batch_size: int, num_classes: int, pin: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random host-memory batches: (B, 3, 32, 32) images and (B,) labels, pinned as the loader pins them on CUDA."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch_size, 3, 32, 32, generator=g), torch.randint(num_classes, (batch_size,), generator=g))
               for _ in range(steps)]
    return [(x.pin_memory(), y.pin_memory()) for x, y in batches] if pin else batches


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_project(net, optimizer, scaler, rt: Runtime, batches) -> float:
    """Images/s of one window through the project's train_one_epoch."""
    synchronize(rt.device)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        train_one_epoch(net, batches, optimizer, scaler, rt)
    synchronize(rt.device)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def time_plain(net, optimizer, device: torch.device, batches) -> float:
    """Images/s of one window of a plain fp32 loop."""
    net.train()
    synchronize(device)
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    synchronize(device)
    return sum(len(y) for _, y in batches) / (time.perf_counter() - start)


def bench_arch(arch: ArchConfig, rt: Runtime, batch_size: int, steps: int,
               windows: int) -> tuple[float, float, float]:
    """Median images/s of (project path, project path in fp32, plain loop), alternating windows
    after one warm-up each."""
    torch.manual_seed(0)
    rt32 = Runtime(rt.device, None, rt.rank, rt.world_size)  # what --no-amp runs
    project_net = build_network(arch).to(rt.device, memory_format=rt.memory_format)  # as train.loop.Run does
    fp32_net = build_network(arch).to(rt.device, memory_format=rt.memory_format)
    plain_net = build_network(arch).to(rt.device)
    nets = (project_net, fp32_net, plain_net)
    project_opt, fp32_opt, plain_opt = (make_optimizer(n) for n in nets)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    no_scaler = torch.amp.GradScaler(rt.device.type, enabled=False)
    batches = make_batches(steps, batch_size, arch.num_classes, pin=rt.device.type == "cuda")
    project, fp32, plain = [], [], []
    for window in range(windows + 1):  # window 0 warms up (kernels, allocator, cudnn.benchmark)
        p = time_project(project_net, project_opt, scaler, rt, batches)
        f = time_project(fp32_net, fp32_opt, no_scaler, rt32, batches)
        q = time_plain(plain_net, plain_opt, rt.device, batches)
        if window > 0:
            project.append(p)
            fp32.append(f)
            plain.append(q)
    return statistics.median(project), statistics.median(fp32), statistics.median(plain)


def main(args: argparse.Namespace) -> None:
    rt = setup_runtime(args.device, amp=True)
    defaults = DEFAULTS["cuda" if rt.device.type == "cuda" else "cpu"]
    batch_size = args.batch_size or defaults["batch_size"]
    steps, windows = args.steps or defaults["steps"], args.windows or defaults["windows"]
    name = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    amp = f"autocast {str(rt.amp_dtype).replace('torch.', '')}" if rt.amp_dtype else "fp32 (no native bf16 or fp16 here)"
    precision = f"{amp}, {str(rt.memory_format).replace('torch.', '')}"
    print(f"device: {name}; torch {torch.__version__}; project path: {precision}")
    print(f"batch {batch_size}, {steps} steps per window, median of {windows} windows after 1 warm-up")
    print(f"{'network':<10} {'project img/s':>14} {'project fp32':>13} {'plain fp32 img/s':>17} "
          f"{'project/fp32':>12} {'project/plain':>13}")
    for text in args.archs:
        arch = parse_arch(text)
        project, fp32, plain = bench_arch(arch, rt, batch_size, steps, windows)
        print(f"{arch.name:<10} {project:>14.1f} {fp32:>13.1f} {plain:>17.1f} {project / fp32:>12.2f} "
              f"{project / plain:>13.2f}", flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
