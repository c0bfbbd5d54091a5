"""Slow and stalled clients against ``main-flask.py`` on 127.0.0.1, and a normal client beside them.

Two kinds of slow client, as a phone on a bad network (or anyone, on purpose) makes them: ``body``
sends a POST's headers, then one byte of its body every second; ``line`` sends half a request line
and stalls. A slow client that the server closes comes back at once, so ``count`` are connected
for the whole attack. Meanwhile a normal client uploads a 640x480 JPEG on a fresh connection a few
times a second. The figures: the normal client's statuses and latencies before, during and after
the attack, and what the slow connections got (a 408, a close, or nothing) and after how long.

    python bench/slow_clients.py [--slow 200] [--seconds 10] [--front-end buffered|gthread]
"""
from __future__ import annotations

import argparse
import http.client
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.serve import (DEFAULT_CKPT, child_pids, launch_gunicorn, make_checkpoint, multipart,  # noqa: E402
                         rss_mb, sample_jpeg, wait_ready, wait_workers)

KINDS = ("body", "line")
TRICKLE_S = 1.0              # a body client sends one byte this often
DECLARED_BODY_BYTES = 100_000
NORMAL_TIMEOUT_S = 10.0      # a normal request gives up after this
MAX_SLOW_CONNECTS = 20_000   # bound on connections opened in one attack, whatever the server does


@dataclass
class SlowConnection:
    """One slow connection's fate."""

    kind: str
    opened: float
    closed: float | None = None       # when the server closed it (monotonic), None if it never did
    response: bytes = b""             # what the server sent before closing

    @property
    def status(self) -> int | None:
        """The HTTP status the server answered with, if any."""
        parts = self.response.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None

    @property
    def lifetime(self) -> float | None:
        return None if self.closed is None else self.closed - self.opened


class SlowClients:
    """``count`` slow connections (half of each kind) held open to 127.0.0.1:``port`` until ``stop()``.

    A connection the server closes is replaced at once. Everything runs on one thread with a
    selector, and the whole attack stops by itself after ``max_seconds``.
    """

    def __init__(self, port: int, count: int, max_seconds: float = 120.0):
        self.port, self.count, self.max_seconds = port, count, max_seconds
        self.done: list[SlowConnection] = []          # closed by the server
        self._open: dict[socket.socket, SlowConnection] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self.connects = 0
        self.refused = 0                               # connects that failed outright

    def __enter__(self) -> "SlowClients":
        self._thread.start()
        deadline = time.monotonic() + 30
        while len(self._open) < self.count and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def still_open(self) -> list[SlowConnection]:
        """Connections the server had not closed (when stopped: when the attack ended)."""
        return list(self._open.values())

    def _connect(self, kind: str, selector: selectors.BaseSelector) -> None:
        self.connects += 1
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
            if kind == "body":
                sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                             f"boundary=x\r\nContent-Length: {DECLARED_BODY_BYTES}\r\n\r\n".encode())
            else:
                sock.sendall(b"POST /api/pre")
        except OSError:
            self.refused += 1
            sock.close()
            return
        sock.setblocking(False)
        self._open[sock] = SlowConnection(kind, time.monotonic())
        selector.register(sock, selectors.EVENT_READ)

    def _closed_by_server(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        conn = self._open.pop(sock)
        conn.closed = time.monotonic()
        selector.unregister(sock)
        sock.close()
        self.done.append(conn)

    def _read(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._open[sock].response += data
        else:
            self._closed_by_server(sock, selector)

    def _trickle(self, selector: selectors.BaseSelector) -> None:
        for sock, conn in list(self._open.items()):
            if conn.kind == "body":
                try:
                    sock.send(b"-")
                except OSError:
                    self._closed_by_server(sock, selector)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        stop_at = time.monotonic() + self.max_seconds
        next_trickle = time.monotonic() + TRICKLE_S
        while not self._stop.is_set() and time.monotonic() < stop_at:
            while len(self._open) < self.count and self.connects < MAX_SLOW_CONNECTS:
                self._connect(KINDS[self.connects % len(KINDS)], selector)
            for key, _ in selector.select(timeout=0.1):
                self._read(key.fileobj, selector)
            if time.monotonic() >= next_trickle:
                self._trickle(selector)
                next_trickle += TRICKLE_S
        for sock in list(self._open):
            selector.unregister(sock)
            sock.close()
        selector.close()


@dataclass
class NormalResult:
    """A normal client's requests: (status or the error, seconds) each."""

    outcomes: list[tuple[int | str, float]] = field(default_factory=list)

    @property
    def answered_ok(self) -> int:
        return sum(1 for status, _ in self.outcomes if status == 200)

    def slowest(self) -> float:
        return max((t for _, t in self.outcomes), default=0.0)

    def summary(self) -> str:
        times = np.asarray([t for _, t in self.outcomes]) * 1000 if self.outcomes else np.zeros(1)
        statuses = sorted({str(s) for s, _ in self.outcomes})
        return (f"{self.answered_ok}/{len(self.outcomes)} answered 200, p50 {np.percentile(times, 50):.0f} ms, "
                f"max {times.max():.0f} ms, statuses {statuses}")


def normal_requests(port: int, body: bytes, ctype: str, seconds: float, interval_s: float = 0.25,
                    timeout_s: float = NORMAL_TIMEOUT_S) -> NormalResult:
    """Upload ``body`` on a fresh connection every ``interval_s`` for ``seconds``, one at a time."""
    result = NormalResult()
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        try:
            conn.request("POST", "/api/predict", body, {"Content-Type": ctype})
            response = conn.getresponse()
            response.read()
            result.outcomes.append((response.status, time.monotonic() - start))
        except (OSError, http.client.HTTPException) as e:
            result.outcomes.append((type(e).__name__, time.monotonic() - start))
        finally:
            conn.close()
        time.sleep(max(0.0, interval_s - (time.monotonic() - start)))
    return result


def describe_slow(done: list[SlowConnection], still_open: list[SlowConnection]) -> str:
    """What the slow connections got, per kind."""
    lines = []
    for kind in KINDS:
        closed = [c for c in done if c.kind == kind]
        statuses = sorted({str(c.status) for c in closed})
        life = np.asarray([c.lifetime for c in closed]) if closed else np.zeros(1)
        lines.append(f"  {kind:4}: {len(closed)} closed by the server (statuses {statuses}, after "
                     f"{life.min():.1f} to {life.max():.1f} s), {sum(c.kind == kind for c in still_open)} still open")
    return "\n".join(lines)


@dataclass
class Attack:
    """A normal client's requests before, during and after the slow clients, and the slow clients."""

    before: NormalResult
    during: NormalResult
    after: NormalResult
    slow: SlowClients

    def story(self) -> str:
        return (f"  normal client before: {self.before.summary()}\n  normal client during: {self.during.summary()}\n"
                f"  normal client after:  {self.after.summary()}\n"
                f"{describe_slow(self.slow.done, self.slow.still_open)}\n"
                f"  {self.slow.connects} slow connects, {self.slow.refused} refused")


def attack(port: int, slow: int, seconds: float, body: bytes, ctype: str, before_s: float = 2.0,
           after_s: float = 3.0) -> Attack:
    """Normal requests before, during and after ``seconds`` of ``slow`` slow clients."""
    before = normal_requests(port, body, ctype, before_s)
    with SlowClients(port, slow, max_seconds=seconds + 30) as clients:
        during = normal_requests(port, body, ctype, seconds)
    return Attack(before, during, normal_requests(port, body, ctype, after_s), clients)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Slow and stalled clients against main-flask.py, beside a normal client.")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: checkpoints/default.pt, else a random WRN-16-4)")
    p.add_argument("--slow", type=int, default=200, help="slow connections held open (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="how long the slow clients stay (default: %(default)s)")
    p.add_argument("--front-end", nargs="+", default=["buffered", "gthread"],
                   help="front ends to try, one server each (default: %(default)s)")
    p.add_argument("--server-args", default="", help="more main-flask.py arguments, e.g. '--upload-timeout 5'")
    return p


def main() -> None:
    import tempfile

    args = get_args_parser().parse_args()
    body, ctype = multipart(sample_jpeg())
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else DEFAULT_CKPT if DEFAULT_CKPT.exists() else make_checkpoint(Path(tmp))
        for front_end in args.front_end:
            proc, port = launch_gunicorn(ckpt, 2, 8, extra=["--front-end", front_end, *args.server_args.split()])
            try:
                wait_ready(port, proc)
                workers = wait_workers(proc, 2)
                rss = {pid: rss_mb(pid) for pid in workers}
                result = attack(port, args.slow, args.seconds, body, ctype)
                print(f"front end {front_end}, {args.slow} slow clients for {args.seconds} s:\n{result.story()}")
                print(f"  workers {workers} -> {child_pids(proc.pid)}, RSS MB "
                      + ", ".join(f"{rss[p]:.1f} -> {rss_mb(p):.1f}" for p in workers if p in child_pids(proc.pid)), flush=True)
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
