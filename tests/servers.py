"""gunicorn (``main-flask.py``) started for a test module, with all its workers up, and stopped after."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from bench.serve import launch_gunicorn, wait_ready, wait_workers


@contextmanager
def running_gunicorn(checkpoint: str, workers: int, threads: int, log: Path,
                     extra: list[str] | tuple[str, ...] = ()) -> Iterator[tuple]:
    """(process, port, worker pids, ``log``): the server's stderr goes to ``log``, shown if it fails to start."""
    with log.open("w") as log_file:
        proc, port = launch_gunicorn(checkpoint, workers, threads, stderr=log_file, extra=extra)
    try:
        try:
            wait_ready(port, proc)
            pids = wait_workers(proc, workers)
        except RuntimeError as e:
            pytest.fail(f"{e}; server log:\n{log.read_text()}")
        yield proc, port, pids, log
    finally:
        proc.terminate()
        proc.wait(30)
