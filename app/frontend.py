"""An asyncio front end for a WSGI app: each request is read in full, under deadlines, before a thread runs it.

With gunicorn's threaded worker a request thread reads the request itself, so as many clients as
there are threads, trickling an upload a byte at a time, leave no thread for anyone else (issue
14). Here an event loop holds the connections and reads every request (h11 parses HTTP/1.1); only
a complete request reaches one of the app's ``threads`` real threads, and the loop writes the
answer back. Waiting connections cost a socket and a few kilobytes, not a thread. Limits, as in
Apache's mod_reqtimeout and nginx's client timeouts:

- headers within ``header_timeout_s`` of the connection opening (or of the first byte of a
  keep-alive request); a body at ``min_upload_rate`` bytes/s on average after ``upload_grace_s``,
  and whole within ``upload_timeout_s``; past either the client gets a 408 JSON error and the
  connection is closed;
- an idle keep-alive connection is closed after ``keepalive_s``;
- at most ``max_connections`` connections, ``max_queued`` complete requests waiting for a thread
  and ``max_buffered_bytes`` of uploads in memory; past any, 503 JSON with ``Retry-After``.

A body longer than ``max_body_bytes`` is not read: the app gets the declared length and answers
its own 413, and the connection is closed.
"""
from __future__ import annotations

import asyncio
import email.utils
import io
import json
import logging
import socket
import sys
from http import HTTPStatus
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote_to_bytes, urlsplit

import h11

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0          # a request line and headers must arrive within this
UPLOAD_TIMEOUT_S = 60.0          # a whole body must arrive within this (a 10 MB photo at 1.4 Mbit/s)
UPLOAD_GRACE_S = 5.0             # ... and, after this, at no less than the minimum rate on average
MIN_UPLOAD_BYTES_PER_S = 1000.0  # a 2G phone sends 10 to 30 KB/s; a byte-a-second trickle is cut at 5 s
KEEPALIVE_S = 5.0                # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 1000           # per worker; each waiting one costs a socket, not a thread
MAX_QUEUED = 64                  # complete requests waiting for a thread, per worker (about 1 s of work)
RETRY_AFTER_S = 1                # what a 503 asks the client to wait
WRITE_TIMEOUT_S = 30.0           # a client that does not read its answer is dropped after this
LINGER_S = 1.0                   # after an error answer, read what the client still sends, then close
MAX_HEADER_BYTES = 16 * 1024
READ_BYTES = 64 * 1024
MAX_BUFFERED_BYTES = 64 * 2**20  # uploads held in memory at once, per worker (worker goal: under 250 MB)
FALLBACK_MAX_BODY_BYTES = 16 * 1024 * 1024   # for an app that sets no MAX_CONTENT_LENGTH


@dataclass(frozen=True)
class Limits:
    """Deadlines and capacity of one worker's front end; built once from the command line."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    upload_timeout_s: float = UPLOAD_TIMEOUT_S
    min_upload_rate: float = MIN_UPLOAD_BYTES_PER_S
    keepalive_s: float = KEEPALIVE_S
    max_connections: int = MAX_CONNECTIONS
    max_queued: int = MAX_QUEUED
    upload_grace_s: float = UPLOAD_GRACE_S
    max_buffered_bytes: int = MAX_BUFFERED_BYTES

    def __post_init__(self):
        for name in ("header_timeout_s", "upload_timeout_s", "min_upload_rate", "keepalive_s", "upload_grace_s"):
            assert getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}"
        assert self.max_connections >= 1 and self.max_queued >= 0, f"bad capacity in {self}"


class Busy(Exception):
    """The worker cannot take this request now (503)."""


class TooSlow(Exception):
    """A deadline passed while reading a request (``what``: what was late)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


@dataclass
class Answer:
    """A complete HTTP response."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


def json_answer(status: int, message: str, extra_headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """An error as the API writes them: ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    return Answer(status, HTTPStatus(status).phrase, [("Content-Type", "application/json"), *extra_headers], body)


def busy_answer(why: str) -> Answer:
    return json_answer(503, f"The server is busy ({why}). Try again in {RETRY_AFTER_S} s.",
                       (("Retry-After", str(RETRY_AFTER_S)),))


def call_app(app: Callable, environ: dict) -> Answer:
    """Run a WSGI app on this thread and collect its whole answer."""
    started: list = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list, exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(chunk for chunk in result if chunk)
    finally:
        if hasattr(result, "close"):
            result.close()
    code, _, reason = started[0].partition(" ")
    return Answer(int(code), reason, list(started[1]), b"".join(chunks))


def wsgi_environ(request: h11.Request, body: bytes, content_length: int, server: tuple, peer: tuple) -> dict:
    """The PEP 3333 environ of a request whose body has been read (``content_length``: as declared)."""
    target = request.target.decode("latin-1")
    if not target.startswith("/"):            # absolute form: http://host/path
        parts = urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": request.method.decode("ascii"), "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query, "RAW_URI": target,
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('ascii')}",
        "REMOTE_ADDR": str(peer[0]), "REMOTE_PORT": str(peer[1]), "CONTENT_LENGTH": str(content_length),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.input_terminated": True,
    }
    for name, value in request.headers:       # h11 gives lower-case names
        if b"_" in name:                          # X_Forwarded_For could pose as X-Forwarded-For
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):   # the body is de-framed: its length is above
            continue
        key = key if key == "CONTENT_TYPE" else f"HTTP_{key}"
        value = value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class FrontEnd:
    """Serves one WSGI app on listening sockets from an asyncio loop.

    Args:
        app: the WSGI callable, run on ``threads`` real threads (never on the loop).
        threads: the app's threads.
        limits: deadlines and capacity.
        max_body_bytes: the longest body read; longer ones go to the app unread (it answers 413).
    """

    def __init__(self, app: Callable, threads: int, limits: Limits = Limits(),
                 max_body_bytes: int = FALLBACK_MAX_BODY_BYTES):
        self.app, self.limits, self.max_body_bytes = app, limits, max_body_bytes
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="request")
        self.connections: set[asyncio.Task] = set()
        self.in_app = 0                # requests handed to the pool and not yet answered
        self.buffered = 0              # body bytes held in memory
        self.requests = 0
        self.timeouts = 0              # connections closed for a missed deadline
        self.refused = 0               # 503s

    async def start(self, sock: socket.socket) -> asyncio.AbstractServer:
        """Start serving on a listening socket; returns the server (close it to stop accepting)."""
        return await asyncio.start_server(self._connection, sock=sock, limit=READ_BYTES)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for requests in the app to be answered, then close every connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_app and loop.time() < deadline:
            await asyncio.sleep(0.1)
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        self.pool.shutdown(wait=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            if len(self.connections) > self.limits.max_connections:
                self.refused += 1
                await self._fail(reader, writer, busy_answer(f"{self.limits.max_connections} connections open"))
            else:
                await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a bug here must cost one connection, never the worker
            log.exception("front end failed on a connection")
        finally:
            self.connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests of one connection, one after the other, until it closes or a deadline passes."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        server, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        first = True
        try:
            while (request := await self._read_head(conn, reader, first)) is not None:
                body, length, complete = await self._read_body(conn, reader, writer, request)
                try:
                    answer = await self._dispatch(wsgi_environ(request, body, length, server, peer))
                    await self._send(conn, writer, request, answer, keep_alive=complete)
                finally:
                    self.buffered -= len(body)
                if not complete:                      # the client may still be sending what was refused
                    await self._linger(reader, writer)
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                first = False
        except Busy as e:
            self.refused += 1
            await self._fail(reader, writer, busy_answer(str(e)))
        except TooSlow as e:
            self.timeouts += 1
            await self._fail(reader, writer, json_answer(408, f"The request's {e.what} did not arrive in time. "
                                                      f"Try again on a faster connection."))
        except h11.RemoteProtocolError as e:
            if conn.their_state is not h11.CLOSED and not reader.at_eof():
                status = e.error_status_hint if e.error_status_hint in (400, 431) else 400
                await self._fail(reader, writer, json_answer(status, f"Malformed HTTP request: {e}"))

    async def _read(self, reader: asyncio.StreamReader, deadline: float, what: str) -> bytes:
        """The next bytes from the client, or ``TooSlow(what)`` once the loop's clock passes ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TooSlow(what)
        try:
            return await asyncio.wait_for(reader.read(READ_BYTES), remaining)
        except asyncio.TimeoutError:
            raise TooSlow(what) from None

    async def _read_head(self, conn: h11.Connection, reader: asyncio.StreamReader, first: bool) -> h11.Request | None:
        """The next request's line and headers; None when the client closes or a keep-alive idles out.

        The first request's headers are timed from the connection's opening, a keep-alive request's
        from its first byte.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.header_timeout_s if first else None
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:        # ConnectionClosed
                return None
            if deadline is None:                  # idle keep-alive: wait for the next request's first byte
                try:
                    data = await self._read(reader, loop.time() + self.limits.keepalive_s, "keep-alive")
                except TooSlow:
                    return None
                deadline = loop.time() + self.limits.header_timeout_s
            else:
                data = await self._read(reader, deadline, "headers")
            conn.receive_data(data)

    async def _read_body(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         request: h11.Request) -> tuple[bytes, int, bool]:
        """(body, its length as the app should see it, whether it was read to its end)."""
        declared = next((int(v) for k, v in request.headers if k == b"content-length"), None)
        if declared is not None and declared > self.max_body_bytes:
            return b"", declared, False                          # the app answers 413 from the length alone
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        loop = asyncio.get_running_loop()
        start, received, chunks = loop.time(), 0, []
        try:
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    chunks.append(event.data)
                    received += len(event.data)
                    self.buffered += len(event.data)
                    if self.buffered > self.limits.max_buffered_bytes:
                        raise Busy(f"{self.limits.max_buffered_bytes // 2**20} MB of uploads in progress")
                    if received > self.max_body_bytes:          # chunked and too long: stop reading
                        return b"".join(chunks), received, False
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks), received, True
                elif event is h11.NEED_DATA:
                    allowed = min(self.limits.upload_timeout_s,
                                  self.limits.upload_grace_s + received / self.limits.min_upload_rate)
                    conn.receive_data(await self._read(reader, start + allowed, "upload"))
                else:                                            # ConnectionClosed mid-body
                    raise ConnectionError("client closed during the upload")
        except BaseException:
            self.buffered -= received                            # on success the caller gives it back
            raise

    async def _dispatch(self, environ: dict) -> Answer:
        """The app's answer from one of its threads, or 503 when too many requests wait for one."""
        if self.in_app >= self.threads + self.limits.max_queued:
            self.refused += 1
            return busy_answer(f"{self.in_app} requests in progress")
        self.in_app += 1
        self.requests += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, call_app, self.app, environ)
        except Exception:
            log.exception("the app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return json_answer(500, "Something went wrong on the server; it has been logged. Try again.")
        finally:
            self.in_app -= 1

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request,
                    answer: Answer, keep_alive: bool) -> None:
        """Write the app's answer (h11 frames it and decides keep-alive)."""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        names = {k.lower() for k, _ in headers}
        if b"content-length" not in names and answer.status >= 200 and answer.status not in (204, 304):
            headers.append((b"content-length", str(len(answer.body)).encode()))
        if b"date" not in names:
            headers.append((b"date", email.utils.formatdate(usegmt=True).encode()))
        if not keep_alive:
            headers.append((b"connection", b"close"))
        data = conn.send(h11.Response(status_code=answer.status, reason=answer.reason.encode("latin-1"), headers=headers))
        if request.method != b"HEAD" and answer.body:
            data += conn.send(h11.Data(data=answer.body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ConnectionError("client did not read its answer") from None

    async def _fail(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
        """Write an error answer, then close: a lingering close, so the client reads it rather than a reset."""
        head = [f"HTTP/1.1 {answer.status} {answer.reason}", *(f"{k}: {v}" for k, v in answer.headers),
                f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1") + answer.body)
        await self._linger(reader, writer)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send the answer and a FIN, then read and drop what the client still sends for ``LINGER_S``:
        closing with unread bytes would reset the connection, and the client could lose the answer."""
        try:
            await self._drain(writer)
            if writer.can_write_eof():
                writer.write_eof()
            deadline = asyncio.get_running_loop().time() + LINGER_S
            while await self._read(reader, deadline, "linger"):
                pass
        except (ConnectionError, TooSlow):
            pass
