"""Slow and stalled clients against gunicorn (``main-flask.py``) on 127.0.0.1 (issue 14).

200 slow connections, held for ``SLOW_S`` seconds (half trickle an upload a byte a second, half
stall in the request line; one the server closes comes back at once), while a normal client
uploads a 640x480 JPEG on a fresh connection four times a second: every normal request is answered
200 within 2 s, during the attack and after it; the stalled connections get their 408 at the
deadlines; no worker restarts; worker memory stays flat. Bounded: at most ``MAX_SLOW_CONNECTS``
connections, about 25 s in all. Deadlines are short here so that they pass several times.
"""
from __future__ import annotations

import pytest

from bench.serve import child_pids, multipart, rss_mb, run_load, sample_jpeg
from tests.servers import running_gunicorn, settled_rss
from bench.slow_clients import attack

WORKERS = 2               # main-flask.py's defaults: 16 request threads in all
THREADS = 8
SLOW_CLIENTS = 200
SLOW_S = 10
HEADER_TIMEOUT_S = 2.0
UPLOAD_TIMEOUT_S = 3.0
ANSWER_WITHIN_S = 2.0
WARM_UP_S = 3.0           # one warm-up round
LATE_S = 1.5              # how late past its deadline a slow connection may be cut on a busy machine
MAX_GROWTH_MB = 10.0


@pytest.fixture(scope="module")
def server(served_checkpoint, tmp_path_factory):
    """gunicorn with short deadlines and all its workers up: (process, port, worker pids, its log file)."""
    extra = ["--header-timeout", str(HEADER_TIMEOUT_S), "--upload-timeout", str(UPLOAD_TIMEOUT_S)]
    log = tmp_path_factory.mktemp("slow") / "server.log"
    with running_gunicorn(served_checkpoint, WORKERS, THREADS, log, extra) as running:
        yield running


def test_normal_clients_are_answered_within_2_s_while_200_slow_clients_hold_on(server):
    proc, port, workers, log = server
    body, ctype = multipart(sample_jpeg())
    # Normal requests first, until every worker's memory has settled (its arenas and its threads'
    # first allocations in place): what is measured then is growth under the slow clients.
    def warm_up():
        load = run_load(port, body, ctype, concurrency=WORKERS * THREADS, seconds=WARM_UP_S)
        assert load.errors == 0 and load.requests > 0
    rss_before = settled_rss(workers, warm_up)
    result = attack(port, SLOW_CLIENTS, SLOW_S, body, ctype)
    rss_after = {pid: rss_mb(pid) for pid in workers}
    print(f"\n{result.story()}\nworker RSS MB before {rss_before}, after {rss_after}")

    for phase in (result.before, result.during, result.after):
        assert phase.outcomes and phase.answered_ok == len(phase.outcomes), phase.summary()
        assert phase.slowest() <= ANSWER_WITHIN_S, phase.summary()
    assert len(result.during.outcomes) >= SLOW_S * 2, result.during.summary()

    assert result.slow.refused == 0, "a slow client could not even connect"
    for kind, deadline in (("body", UPLOAD_TIMEOUT_S), ("line", HEADER_TIMEOUT_S)):
        cut = [c for c in result.slow.done if c.kind == kind]
        assert len(cut) >= SLOW_CLIENTS // 2, f"{kind}: only {len(cut)} slow connections were closed"
        assert {c.status for c in cut} == {408}, f"{kind}: statuses {sorted({str(c.status) for c in cut})}"
        lifetimes = [c.lifetime for c in cut]
        assert deadline - 0.1 <= min(lifetimes) and max(lifetimes) <= deadline + LATE_S, \
            f"{kind}: cut after {min(lifetimes):.2f} to {max(lifetimes):.2f} s, deadline {deadline} s"

    text = log.read_text()
    assert child_pids(proc.pid) == workers, f"a worker died or was restarted; server log:\n{text}"
    assert text.count("Booting worker") == WORKERS, f"a worker was restarted; server log:\n{text}"
    for pid in workers:
        assert rss_after[pid] - rss_before[pid] < MAX_GROWTH_MB, \
            f"worker {pid} grew from {rss_before[pid]:.1f} to {rss_after[pid]:.1f} MB"
