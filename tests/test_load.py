"""Load test: gunicorn (``main-flask.py``) on 127.0.0.1 under concurrent clients for a bounded time.

Zero errors, and no growth in worker memory over thousands of requests: resident memory is read
once it has settled under load (a memory arena may still grow the first time a worker meets a
larger batch) and again at the end. Good pictures and refused ones are mixed, so error paths are
exercised for leaks too.
"""
from __future__ import annotations

import threading

import pytest

import tests.app_images as pics
from bench.serve import child_pids, multipart, rss_mb, run_load
from tests.servers import running_gunicorn, settled_rss

WORKERS = 2
THREADS = 4
CLIENTS = 8
SETTLE_S = 3              # one warm-up round
LOAD_S = 25
MIN_REQUESTS = 1000       # about 300 requests/s on a quiet machine; far fewer when the cores are shared
MAX_GROWTH_MB = 10.0


@pytest.fixture(scope="module")
def server(served_checkpoint, tmp_path_factory):
    """gunicorn with all its workers up: (process, port, worker pids, its log file)."""
    with running_gunicorn(served_checkpoint, WORKERS, THREADS, tmp_path_factory.mktemp("load") / "server.log") as running:
        yield running


def mixed_load(port: int, seconds: float) -> list:
    """Concurrent good uploads (200) and refused ones (415, 400) at the same time."""
    loads = [(multipart(pics.jpeg((320, 240))), (200,), CLIENTS - 2), (multipart(pics.png((64, 64)), mime="image/png"), (200,), 1),
             (multipart(pics.gif(), mime="image/gif"), (415,), 1)]
    results, threads = [], []
    for (body, ctype), expect, clients in loads:
        t = threading.Thread(target=lambda b=body, c=ctype, e=expect, n=clients: results.append(
            run_load(port, b, c, n, seconds, expect=e)))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    return results


def test_gunicorn_serves_thousands_of_requests_without_errors_or_memory_growth(server):
    proc, port, workers, log = server
    before = settled_rss(workers, lambda: mixed_load(port, SETTLE_S))
    results = mixed_load(port, LOAD_S)
    after = {pid: rss_mb(pid) for pid in workers}
    requests = sum(r.requests for r in results)
    errors = sum(r.errors for r in results)
    print(f"\n{requests} requests in {LOAD_S} s, {errors} errors; worker RSS MB before {before}, after {after}")
    assert errors == 0
    assert requests >= MIN_REQUESTS
    text = log.read_text()
    assert child_pids(proc.pid) == workers, f"a worker died or was restarted; server log:\n{text}"
    assert text.count("Booting worker") == WORKERS, f"a worker was restarted; server log:\n{text}"
    for pid in workers:
        assert after[pid] - before[pid] < MAX_GROWTH_MB, f"worker {pid} grew from {before[pid]:.1f} to {after[pid]:.1f} MB"
