"""A micro-batcher: request threads enqueue single inputs, one thread runs batched forwards.

One forward runs at a time (``_forward_lock``), so a predictor need not be thread-safe and the
worker's intra-op threads are never shared between two concurrent forwards. The batcher's thread
takes whatever has queued (up to ``max_batch``), waits at most ``max_wait_s`` for more while the
batch is not full, runs one forward, and hands each caller its row. When nothing is queued and no
forward is running (one client), the request thread runs its forward itself: no hand-over to
another thread and back, which costs milliseconds of wake-up latency on busy cores.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_S = 0.0        # measured: on 2 cores waiting for company only adds latency
RESULT_TIMEOUT_S = 30.0


class BatcherClosed(RuntimeError):
    """The batcher was closed while a request was waiting."""


class MicroBatcher:
    """Group concurrent single-input predictions into batched calls of ``predict``.

    Args:
        predict: float32 (B, ...) -> (B, classes); called from one thread only.
        max_batch: most inputs in one forward.
        max_wait_s: longest wait for more inputs once the first has arrived.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S):
        assert max_batch >= 1, f"max_batch must be >= 1, got {max_batch}"
        self._predict = predict
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._forward_lock = threading.Lock()
        self._closed = threading.Event()
        self.batches = 0          # forwards run, for tests and logs
        self.items = 0            # inputs predicted
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, x: np.ndarray) -> Future:
        """Queue one input (C, H, W); the future resolves to its probabilities (classes,)."""
        if self._closed.is_set():
            raise BatcherClosed("the model is shutting down")
        future: Future = Future()
        self._queue.put((x, future))
        return future

    def predict(self, x: np.ndarray, timeout: float = RESULT_TIMEOUT_S) -> np.ndarray:
        """The probabilities of one input (C, H, W): directly when idle, else through the queue."""
        return self.predict_many(x[None], timeout)[0]

    def predict_many(self, xs: np.ndarray, timeout: float = RESULT_TIMEOUT_S) -> np.ndarray:
        """The probabilities (V, classes) of several inputs (V, C, H, W), such as the views of one
        picture: one forward of all of them when idle, else each queued beside other requests'."""
        if self._queue.empty() and not self._closed.is_set() and self._forward_lock.acquire(blocking=False):
            try:
                probs = self._predict(xs)               # (V, classes)
                self.batches += 1
                self.items += len(xs)
            finally:
                self._forward_lock.release()
            return probs
        futures = [self.submit(x) for x in xs]
        return np.stack([f.result(timeout) for f in futures])

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after the current batch; waiting requests get ``BatcherClosed``."""
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self, first: tuple) -> list[tuple]:
        """The first item plus whatever queues before the batch is full or the wait is over."""
        batch = [first]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:          # close() sentinel: put it back for the main loop
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            with self._forward_lock:
                self._run_batch(self._collect(first))
        self._fail_pending()

    def _run_batch(self, batch: list[tuple]) -> None:
        """One forward for the batch; each caller gets its row, or the exception."""
        live = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]  # skip cancelled
        if not live:
            return
        futures = [f for _, f in live]
        try:
            probs = self._predict(np.stack([x for x, _ in live]))      # (B, classes)
        except Exception as e:  # hand the failure to every waiting request, keep serving
            log.exception("batched forward of %d inputs failed", len(live))
            for f in futures:
                f.set_exception(e)
            return
        self.batches += 1
        self.items += len(futures)
        for f, p in zip(futures, probs):
            f.set_result(p)

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(BatcherClosed("the model is shutting down"))
