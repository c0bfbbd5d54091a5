"""gunicorn (``main-flask.py``) started for a test module, with all its workers up, and stopped after."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bench.serve import READY_TIMEOUT_S, launch_gunicorn, poll_server, rss_mb, wait_ready, wait_workers

SETTLE_ROUNDS = 8         # at most this many warm-up rounds for every worker's memory to settle
SETTLED_MB = 2.0          # a worker has settled when one round grows it by less than this


@contextmanager
def running_gunicorn(checkpoint: str, workers: int, threads: int, log: Path,
                     extra: list[str] | tuple[str, ...] = ()) -> Iterator[tuple]:
    """(process, port, worker pids, ``log``) once every worker is ready: the server's stderr goes to
    ``log``, shown if it fails to start."""
    with log.open("w") as log_file:
        proc, port = launch_gunicorn(checkpoint, workers, threads, stderr=log_file, extra=extra)
    try:
        try:
            wait_ready(port, proc)
            pids = wait_workers(proc, workers)
            # A worker's process exists seconds before it has loaded its models and takes requests
            # (memory measured then is start-up): wait for each one's "Worker ready" line.
            poll_server(proc, lambda: log.read_text().count("Worker ready") >= workers, READY_TIMEOUT_S,
                        f"{workers} workers ready")
        except RuntimeError as e:
            pytest.fail(f"{e}; server log:\n{log.read_text()}")
        yield proc, port, pids, log
    finally:
        proc.terminate()
        proc.wait(30)


def settled_rss(workers: list[int], warm_up: Callable[[], object]) -> dict[int, float]:
    """Each worker's resident MB once one round of ``warm_up`` no longer grows any of them.

    A worker's memory arenas and its request threads' first allocations grow during its first
    requests, and the kernel may hand one worker far fewer of them than another: growth measured
    from before that has settled is start-up, not a leak.
    """
    last = {pid: rss_mb(pid) for pid in workers}
    for _ in range(SETTLE_ROUNDS):
        warm_up()
        now = {pid: rss_mb(pid) for pid in workers}
        if all(now[pid] - last[pid] < SETTLED_MB for pid in workers):
            return now
        last = now
    pytest.fail(f"worker memory still growing after {SETTLE_ROUNDS} warm-up rounds: {last} -> {now} MB")
