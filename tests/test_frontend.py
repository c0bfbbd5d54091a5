"""The buffered front end (``app.frontend``) in this process, on 127.0.0.1, with a tiny WSGI app.

Short deadlines keep every test under a few seconds; each slow client is a raw socket that sends
exactly what the test says, and every read has a timeout.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.frontend import FrontEnd, Limits

REPO = Path(__file__).resolve().parent.parent
MAX_BODY = 1000
FAST = Limits(header_timeout_s=0.6, upload_timeout_s=0.8, upload_grace_s=0.4, min_upload_rate=1000,
              keepalive_s=0.5, max_connections=50, max_queued=4)
SLACK_S = 0.5              # how late past a deadline the front end may act on a busy machine
READ_TIMEOUT_S = 5.0


def echo_app(environ, start_response):
    """Answers what it saw as JSON; /block waits until released; a too-long body gets 413 unread."""
    if environ["PATH_INFO"] == "/block":
        environ["test.release"].wait(READ_TIMEOUT_S)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY:
        start_response("413 Request Entity Too Large", [("Content-Type", "application/json")])
        return [b'{"error": "too large"}']
    body = environ["wsgi.input"].read()
    seen = {k: v for k, v in environ.items() if isinstance(v, str)}
    seen["body"] = body.decode("latin-1")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


@contextmanager
def front_end(limits: Limits = FAST, threads: int = 2):
    """A FrontEnd serving ``echo_app`` on a loop of its own thread: (front end, port, release event)."""
    release = threading.Event()
    front = FrontEnd(lambda environ, start: echo_app({**environ, "test.release": release}, start),
                     threads, limits, MAX_BODY)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run():
        server = loop.run_until_complete(front.start(sock))
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(front.drain(0))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield front, sock.getsockname()[1], release
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def raw(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
    if data:
        sock.sendall(data)
    return sock


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(response: bytes) -> tuple[int, dict, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def test_requests_on_one_keep_alive_connection_reach_the_app_as_sent():
    with front_end() as (_, port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        for i in range(3):
            conn.request("POST", f"/a%20b/{i}?x=1&y=%20", b"hello", {"Content-Type": "text/plain", "X-Thing": "t",
                                                                       "X_Spoof": "s"})
            response = conn.getresponse()
            seen = json.loads(response.read())
            assert response.status == 200
            assert (seen["PATH_INFO"], seen["QUERY_STRING"], seen["body"]) == (f"/a b/{i}", "x=1&y=%20", "hello")
            assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"], seen["HTTP_X_THING"]) == ("text/plain", "5", "t")
            assert "HTTP_X_SPOOF" not in seen                     # underscores could pose as CGI names
        conn.close()


def test_a_chunked_upload_reaches_the_app_whole_with_its_length():
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with front_end() as (_, port, _), raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                                   b"Connection: close\r\n\r\n" + body) as sock:
        status, _, seen = status_and_json(read_to_close(sock))
    assert status == 200 and seen["body"] == "hello world" and seen["CONTENT_LENGTH"] == "11"
    assert "HTTP_TRANSFER_ENCODING" not in seen


def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent():
    with front_end() as (_, port, _), raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                                   b"Expect: 100-continue\r\nConnection: close\r\n\r\n") as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"abc")
        status, _, seen = status_and_json(read_to_close(sock))
    assert status == 200 and seen["body"] == "abc"


STALLED_BODY = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nabc"
CAPPED = Limits(header_timeout_s=0.6, upload_timeout_s=0.8, upload_grace_s=5)    # the whole-upload deadline first


@pytest.mark.parametrize("sent, limits, deadline", [
    (b"", FAST, FAST.header_timeout_s),                                             # connects, says nothing
    (b"POST /api/pre", FAST, FAST.header_timeout_s),                                # half a request line
    (b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Le", FAST, FAST.header_timeout_s),   # half the headers
    (STALLED_BODY, FAST, FAST.upload_grace_s + 3 / FAST.min_upload_rate),           # below the minimum rate
    (STALLED_BODY, CAPPED, CAPPED.upload_timeout_s),                                # past the whole-upload deadline
], ids=["silent", "half-line", "half-headers", "stalled-body", "stalled-body-capped"])
def test_a_stalled_request_gets_408_json_at_its_deadline_and_is_closed(sent, limits, deadline):
    with front_end(limits) as (front, port, _):
        start = time.monotonic()
        with raw(port, sent) as sock:
            status, headers, body = status_and_json(read_to_close(sock))
        elapsed = time.monotonic() - start
        assert status == 408 and "did not arrive in time" in body["error"]
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert deadline - 0.05 <= elapsed <= deadline + SLACK_S
        assert front.timeouts == 1


def test_an_upload_trickled_below_the_minimum_rate_is_cut_after_the_grace():
    limits = Limits(header_timeout_s=5, upload_timeout_s=30, upload_grace_s=0.5, min_upload_rate=100)
    with front_end(limits) as (_, port, _), raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n") as sock:
        start = time.monotonic()
        sock.settimeout(0.1)
        response = b""
        while time.monotonic() - start < READ_TIMEOUT_S and not response:   # a byte every 0.1 s: 10 B/s
            try:
                sock.send(b"-")
                response = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - start
    assert response.startswith(b"HTTP/1.1 408 ")
    assert limits.upload_grace_s <= elapsed <= limits.upload_grace_s + 0.2 + SLACK_S   # + the few bytes' allowance


def test_an_upload_at_a_fair_rate_is_read_to_its_end():
    limits = Limits(header_timeout_s=5, upload_timeout_s=30, upload_grace_s=0.2, min_upload_rate=100)
    with front_end(limits) as (_, port, _), raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                                                      b"Connection: close\r\n\r\n") as sock:
        for _ in range(10):                             # 4 bytes every 0.02 s: 200 B/s, 0.2 s
            sock.sendall(b"abcd")
            time.sleep(0.02)
        status, _, seen = status_and_json(read_to_close(sock))
    assert status == 200 and seen["body"] == "abcd" * 10


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive():
    with front_end() as (_, port, _), raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        start = time.monotonic()
        response = read_to_close(sock)                  # the answer, then the close with nothing more
        elapsed = time.monotonic() - start
    assert response.startswith(b"HTTP/1.1 200 ") and b"408" not in response.split(b"\r\n")[0]
    assert FAST.keepalive_s - 0.05 <= elapsed <= FAST.keepalive_s + SLACK_S


def test_past_the_connection_limit_a_client_gets_503_json_with_retry_after():
    limits = Limits(header_timeout_s=3, max_connections=3)
    with front_end(limits) as (front, port, _):
        held = [raw(port) for _ in range(limits.max_connections)]
        time.sleep(0.2)                                 # accepted
        with raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
            status, headers, body = status_and_json(read_to_close(sock))
        assert status == 503 and int(headers["retry-after"]) >= 1 and "busy" in body["error"]
        for sock in held:
            sock.close()
        time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200          # capacity comes back when they leave
        conn.close()
        assert front.refused == 1


def test_past_the_queue_limit_a_request_gets_503_json_with_retry_after_at_once():
    limits = Limits(max_queued=1)
    with front_end(limits, threads=1) as (_, port, release):
        blocked = [raw(port, b"GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") for _ in range(2)]
        time.sleep(0.3)                                 # one runs, one waits for the thread
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
        assert time.monotonic() - start < 1.0
        release.set()
        for sock in blocked:
            assert read_to_close(sock).startswith(b"HTTP/1.1 200 ")
            sock.close()
        conn.close()


def test_a_declared_body_over_the_limit_is_not_read_and_the_app_answers_413():
    with front_end() as (_, port, _), raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n") as sock:
        status, headers, _ = status_and_json(read_to_close(sock))   # no body sent: the answer comes anyway
    assert status == 413 and headers["connection"] == "close"


def test_a_malformed_request_gets_400_json():
    with front_end() as (_, port, _), raw(port, b"NOT HTTP AT ALL\r\n\r\n") as sock:
        status, _, body = status_and_json(read_to_close(sock))
    assert status == 400 and "Malformed" in body["error"]


def test_stalled_clients_leave_the_only_thread_free_for_others():
    with front_end(Limits(header_timeout_s=30, upload_timeout_s=30), threads=1) as (_, port, _):
        stalled = [raw(port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nab") for _ in range(20)]
        stalled += [raw(port, b"POST /up") for _ in range(20)]
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        conn.request("POST", "/", b"x")
        assert conn.getresponse().status == 200
        assert time.monotonic() - start < 1.0
        conn.close()
        for sock in stalled:
            sock.close()


def test_head_gets_headers_without_a_body_and_the_connection_stays_usable():
    with front_end() as (_, port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["REQUEST_METHOD"] == "GET"
        conn.close()


def test_past_the_memory_cap_an_upload_gets_503_json_with_retry_after():
    limits = Limits(max_buffered_bytes=1500)
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\nConnection: close\r\n\r\n"
    with front_end(limits) as (front, port, _), raw(port, head + b"a" * 800) as held:
        time.sleep(0.2)                                 # 800 bytes held, 100 to come
        with raw(port, head + b"b" * 900) as sock:
            status, headers, body = status_and_json(read_to_close(sock))
        assert status == 503 and headers["retry-after"] == "1" and "MB of uploads" in body["error"]
        held.sendall(b"a" * 100)
        status, _, seen = status_and_json(read_to_close(held))
        assert status == 200 and seen["body"] == "a" * 900
        time.sleep(0.1)
        assert front.buffered == 0


@pytest.mark.parametrize("flag, value", [("--upload-timeout", "0"), ("--header-timeout", "-1"),
                                         ("--min-upload-rate", "0"), ("--max-connections", "0")])
def test_main_flask_refuses_a_limit_that_is_not_positive_in_one_line(flag, value):
    done = subprocess.run([sys.executable, "main-flask.py", flag, value], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and flag in done.stderr and len(done.stderr.strip().splitlines()) == 1
