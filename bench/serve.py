"""Serving benchmark: latency and throughput of gunicorn (``main-flask.py``) against the plain app.

In one run: the bare forward time of the network (ONNX Runtime and eager torch, batch 1), then for
each concurrency (1, 4, 16) a bounded-time load of the same JPEG against the gunicorn server and
against ``bench/plain_app.py`` (the seed's way), interleaved so that both see the same machine,
and the resident memory of every serving process afterwards. Serves ``checkpoints/default.pt`` if
it exists, else a randomly initialised WRN-16-4 made here (random weights time the same).
``--also-gthread`` adds ``main-flask.py --front-end gthread`` (gunicorn's threaded worker, the
front end before the buffered one) to the same interleaved rounds.

    python bench/serve.py [--seconds 10] [--workers 2] [--threads 8] [--backend onnx] [--also-gthread] [--json out.json]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from app.server import DEFAULT_THREADS, DEFAULT_WORKERS  # noqa: E402
from model.inference import BACKENDS, DEFAULT_BACKEND  # noqa: E402

DEFAULT_CKPT = REPO / "checkpoints" / "default.pt"
CONCURRENCIES = (1, 4, 16)
BOUNDARY = "benchboundary7d1f"
READY_TIMEOUT_S = 180
POLL_S = 0.2                # between checks while a server starts
ROUNDS = 5


@dataclass
class LoadResult:
    """What a bounded-time load measured."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms_per_request: float = 0.0     # server CPU time / requests: robust to other load on the machine
    latencies: list[float] = field(default_factory=list, repr=False)   # seconds, completed requests

    def figures(self) -> dict:
        """The summary, without the raw latencies."""
        return {k: v for k, v in asdict(self).items() if k != "latencies"}


def multipart(data: bytes, field: str = "image", filename: str = "digit.jpg", mime: str = "image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body with one file, and its Content-Type."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {mime}\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def _client(port: int, body: bytes, ctype: str, stop_at: float, expect: tuple[int, ...],
            latencies: list[float], errors: list[str]) -> None:
    """One client: keep-alive POSTs to /api/predict until ``stop_at``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            conn.request("POST", "/api/predict", body, {"Content-Type": ctype})
            response = conn.getresponse()
            response.read()
            if response.status not in expect:
                errors.append(f"status {response.status}")
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{type(e).__name__}: {e}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - start)
    conn.close()


def run_load(port: int, body: bytes, ctype: str, concurrency: int, seconds: float,
             expect: tuple[int, ...] = (200,)) -> LoadResult:
    """``concurrency`` clients posting ``body`` for ``seconds``; latencies of completed requests."""
    latencies: list[float] = []
    errors: list[str] = []
    result = LoadResult(concurrency, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    start = time.perf_counter()
    threads = [threading.Thread(target=_client, args=(port, body, ctype, start + seconds, expect, latencies, errors))
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    result.latencies = latencies
    result.errors, result.seconds = len(errors), time.perf_counter() - start
    return summarise(result)


def summarise(result: LoadResult) -> LoadResult:
    """Fill in the request count, rate and percentiles from ``result.latencies``."""
    ms = np.asarray(result.latencies) * 1000 if result.latencies else np.zeros(1)
    p50, p95, p99 = (round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99))
    result.requests = len(result.latencies)
    result.rps = round(result.requests / result.seconds, 1)
    result.p50_ms, result.p95_ms, result.p99_ms = p50, p95, p99
    return result


def merge(parts: list[LoadResult]) -> LoadResult:
    """One result from several slices of the same load."""
    merged = LoadResult(parts[0].concurrency, 0, sum(p.errors for p in parts), sum(p.seconds for p in parts), 0, 0, 0, 0)
    merged.latencies = [t for p in parts for t in p.latencies]
    return summarise(merged)


def poll_server(proc: subprocess.Popen, probe, timeout: float, waiting_for: str):
    """Call ``probe()`` until it returns something truthy, and return that.

    Raises:
        RuntimeError: if the server exits, or after ``timeout`` seconds, saying what was awaited.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} while waiting for {waiting_for}")
        if result := probe():
            return result
        time.sleep(POLL_S)
    raise RuntimeError(f"still waiting for {waiting_for} after {timeout} s")


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll /healthz until it answers 200, or fail if the server exits or takes too long."""
    def healthy() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    poll_server(proc, healthy, timeout, f"an answer from /healthz on port {port}")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])          # utime, stime
    return total / ticks


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def wait_workers(proc: subprocess.Popen, count: int, timeout: float = READY_TIMEOUT_S) -> list[int]:
    """The pids of gunicorn's workers once all ``count`` are running.

    /healthz answers as soon as one worker is up; the others may still be forking or loading.
    """
    def all_workers() -> list[int]:
        pids = child_pids(proc.pid)
        return pids if len(pids) == count else []

    return poll_server(proc, all_workers, timeout, f"{count} running workers")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoint(folder: Path) -> Path:
    """A randomly initialised WRN-16-4 checkpoint (timing only)."""
    import torch

    from model.checkpoint import make_checkpoint as assemble, save_checkpoint
    from model.networks import ArchConfig, build_network

    torch.manual_seed(0)
    cfg = ArchConfig(arch="wrn", depth=16, width=4)
    ckpt = assemble(cfg, build_network(cfg).state_dict(), dataset="random weights (benchmark)",
                    class_names=[str(d) for d in range(10)], input_size=(32, 32),
                    mean=(0.44, 0.44, 0.47), std=(0.2, 0.2, 0.2))
    return save_checkpoint(ckpt, folder / "bench-wrn-16-4.pt")


def bare_forward_ms(ckpt: Path, threads: int, backend: str, repeats: int = 200) -> dict[str, float]:
    """Median batch-1 forward time with the worker's thread count: what gunicorn serves (``backend``:
    int8 or fp32 ONNX Runtime), the fp32 ONNX model, and eager torch (the plain app's)."""
    import torch

    from model.inference import load_predictor

    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    served = load_predictor(ckpt, backend, threads)
    out = {"served": served.precision}
    predictors = {"onnx": served, "onnx-fp32": load_predictor(ckpt, "onnx-fp32", threads),
                  "torch": load_predictor(ckpt, "torch", threads)}
    for name, predictor in predictors.items():
        for _ in range(20):
            predictor.predict(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.predict(x)
            times.append(time.perf_counter() - start)
        out[name] = round(float(np.median(times)) * 1000, 2)
    torch.set_num_threads(1)
    return out


def sample_jpeg(width: int = 640, font_px: int = 300) -> bytes:
    """A 640x480 photo-like JPEG of a digit (about 20 KB), the kind a phone user uploads after
    resizing; ``width`` scales the same photo (4032: a 12-megapixel phone camera's), ``font_px``
    is the digit's font size at 640 px (300: a 7 about 210 px tall)."""
    from PIL import Image, ImageDraw, ImageFilter

    k = width / 640
    rng = np.random.default_rng(0)
    background = rng.normal(200, 12, (round(480 * k), width, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    ImageDraw.Draw(image).text((220 * k, 90 * k), "7", fill=(30, 30, 40), font_size=font_px * k)
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(k)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def launch_gunicorn(ckpt: str | Path, workers: int, threads: int, stderr=subprocess.DEVNULL,
                    backend: str = DEFAULT_BACKEND, extra: list[str] | tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    """Start ``main-flask.py`` (gunicorn) on a free port, without waiting for it: (process, port).

    ``extra``: more command-line arguments (``["--upload-timeout", "3"]``).
    """
    port = free_port()
    proc = subprocess.Popen([sys.executable, "main-flask.py", "--checkpoint", str(ckpt), "--port", str(port),
                             "--workers", str(workers), "--threads", str(threads), "--backend", backend, *extra],
                            cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, port


def start_servers(ckpt: Path, workers: int, threads: int, backend: str = DEFAULT_BACKEND,
                  also_gthread: bool = False) -> dict[str, tuple[subprocess.Popen, int]]:
    """Start gunicorn (main-flask.py), the plain app and, if asked, main-flask.py with gunicorn's own
    threaded worker (``gthread``, the front end before issue 14) on free ports; wait until all answer."""
    servers = {"gunicorn": launch_gunicorn(ckpt, workers, threads, backend=backend)}
    if also_gthread:
        servers["gthread"] = launch_gunicorn(ckpt, workers, threads, backend=backend, extra=["--front-end", "gthread"])
    port = free_port()
    servers["plain"] = (subprocess.Popen([sys.executable, "bench/plain_app.py", "--checkpoint", str(ckpt),
                                          "--port", str(port)], cwd=REPO,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)
    for proc, port in servers.values():
        wait_ready(port, proc)
    for name in gunicorns(servers):
        wait_workers(servers[name][0], workers)
    return servers


def gunicorns(names) -> list[str]:
    """The servers that are main-flask.py (all but the plain app)."""
    return [name for name in names if name != "plain"]


def report(results: dict, bare: dict, memory: dict, workers: int, threads: int) -> None:
    """Print the figures as a table."""
    print(f"\nbare forward, batch 1 ({results['intra_op_threads']} intra-op threads): ONNX Runtime "
          f"{bare['served']} (served) {bare['onnx']} ms, ONNX Runtime fp32 {bare['onnx-fp32']} ms, eager torch {bare['torch']} ms")
    print(f"gunicorn: {workers} worker(s) x {threads} threads, ONNX Runtime {bare['served']}, micro-batching; "
          f"plain: Flask threaded, torch fp32")
    print(f"{'server':9} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'p50/forward':>11} {'CPU ms/req':>10}")
    for c in CONCURRENCIES:
        for name in results["servers"]:
            r = results[name][c]
            forward = bare["torch"] if name == "plain" else bare["onnx"]
            print(f"{name:9} {c:>4} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['errors']:>6} {r['p50_ms'] / forward:>10.1f}x {r['cpu_ms_per_request']:>10.2f}")
    for c in CONCURRENCIES:
        for name in gunicorns(results["servers"]):
            print(f"concurrency {c}: {name}/plain requests/s = {results[name][c]['rps'] / results['plain'][c]['rps']:.2f}x, "
                  f"p50 {results[name][c]['p50_ms']:.2f} vs {results['plain'][c]['p50_ms']:.2f} ms")
    print("resident memory (MB): " + ", ".join(f"{k} {v}" for k, v in memory.items()))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark gunicorn serving against the plain Flask app.")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: checkpoints/default.pt, else a random WRN-16-4)")
    p.add_argument("--seconds", type=float, default=10.0, help="load duration per point (default: %(default)s)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers (default: %(default)s)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="request threads per worker (default: %(default)s)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="gunicorn's (default: %(default)s)")
    p.add_argument("--also-gthread", action="store_true",
                   help="also measure main-flask.py --front-end gthread (gunicorn's threaded worker), interleaved")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def main() -> None:
    args = get_args_parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else DEFAULT_CKPT if DEFAULT_CKPT.exists() else make_checkpoint(Path(tmp))
        from app.modelfile import ensure_onnx
        from model.inference import default_threads

        ensure_onnx(ckpt, args.backend)
        intra = default_threads(args.workers)
        bare = bare_forward_ms(ckpt, intra, args.backend)
        body, ctype = multipart(sample_jpeg())
        servers = start_servers(ckpt, args.workers, args.threads, args.backend, args.also_gthread)
        results: dict = {"checkpoint": str(ckpt), "intra_op_threads": intra, "servers": list(servers),
                         **{name: {} for name in servers}}
        try:
            for c in CONCURRENCIES:
                for name, (_, port) in servers.items():
                    run_load(port, body, ctype, c, 1.0)                      # warm-up
                slices: dict[str, list[LoadResult]] = {name: [] for name in servers}
                cpu = dict.fromkeys(servers, 0.0)
                for _ in range(ROUNDS):   # alternate short slices so both servers meet the same background load
                    for name, (proc, port) in servers.items():
                        pids = [proc.pid, *child_pids(proc.pid)]
                        before = cpu_seconds(pids)
                        slices[name].append(run_load(port, body, ctype, c, args.seconds / ROUNDS))
                        cpu[name] += cpu_seconds(pids) - before
                for name in servers:
                    merged = merge(slices[name])
                    merged.cpu_ms_per_request = round(cpu[name] * 1000 / max(1, merged.requests), 2)
                    results[name][c] = merged.figures()
                    print(f"{name:9} c={c:<3} {results[name][c]}", flush=True)
            memory = {}
            for name in gunicorns(servers):
                master = servers[name][0].pid
                memory.update({f"{name} worker {pid}": round(rss_mb(pid), 1) for pid in child_pids(master)})
                memory[f"{name} master"] = round(rss_mb(master), 1)
            memory["plain app"] = round(rss_mb(servers["plain"][0].pid), 1)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            for proc, _ in servers.values():
                proc.wait(30)
        report(results, bare, memory, args.workers, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps({**results, "bare_forward_ms": bare, "rss_mb": memory,
                                                   "workers": args.workers, "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
