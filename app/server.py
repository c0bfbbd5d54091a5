"""Running the app: gunicorn (production) or Flask's own server (``--dev``).

The master process checks the model in a child process (``app.modelfile``), then starts gunicorn
through its Python API without ``preload_app``: each worker imports the app and runs the factory
after the fork, so the model is loaded once per worker and the master never imports torch or
onnxruntime. Each worker (``BufferedWorker``) holds its connections on an event loop that reads
every request in full, under deadlines, before one of its request threads runs it
(``app.frontend``), so slow and stalled clients cannot take the threads; the request threads feed
one micro-batcher, and the model's intra-op threads are cores // workers so the workers do not
oversubscribe the cores. ``front_end="gthread"`` is gunicorn's threaded worker, whose threads read
requests themselves: only behind a buffering proxy.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker

from app.frontend import FALLBACK_MAX_BODY_BYTES, FrontEnd, Limits
from app.modelfile import DEFAULT_CHECKPOINT, DEFAULT_LOCALISER, check_loadable, localiser_enabled
from model.inference import DEFAULT_BACKEND

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_WORKERS = 2          # with cores // workers intra-op threads each: no thread hand-overs inside a forward
DEFAULT_THREADS = 8          # request threads per worker: enough concurrent requests to batch
GRACEFUL_TIMEOUT_S = 10
WORKER_TIMEOUT_S = 60
FRONT_ENDS = ("buffered", "gthread")
DEFAULT_FRONT_END = "buffered"
HEARTBEAT_S = 1.0
SPARE_FILES = 256            # open files a worker needs besides its connections


@dataclass(frozen=True)
class ServeConfig:
    """How to serve: built once from the command line (``main-flask.py``)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    checkpoint: str = str(DEFAULT_CHECKPOINT)
    localiser: str = str(DEFAULT_LOCALISER)
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS
    backend: str = DEFAULT_BACKEND
    dev: bool = False
    debug: bool = False
    front_end: str = DEFAULT_FRONT_END
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        assert self.front_end in FRONT_ENDS, f"Invalid front end {self.front_end}. Only {', '.join(FRONT_ENDS)} are supported."

    def app_config(self) -> dict:
        """The factory's configuration for this way of serving."""
        return {"CHECKPOINT": self.checkpoint, "LOCALISER": self.localiser, "BACKEND": self.backend,
                "WORKERS": self.workers}


class BufferedWorker(Worker):
    """A gunicorn worker whose connections and uploads are held by ``app.frontend.FrontEnd``.

    The app runs on ``threads`` real threads (inference releases the GIL); the event loop only
    reads requests, writes answers and sends gunicorn's heartbeat.
    """

    def init_process(self) -> None:
        limits = self.app.serve_cfg.limits
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = limits.max_connections + SPARE_FILES
        if soft != resource.RLIM_INFINITY and soft < wanted:   # Debian's default soft limit is 1024
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
        super().init_process()

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        max_body = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH") or FALLBACK_MAX_BODY_BYTES
        front = FrontEnd(self.wsgi, self.cfg.threads, self.app.serve_cfg.limits, int(max_body))
        servers = [await front.start(s.sock) for s in self.sockets]
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                log.info("master %s is gone; worker %s stops", self.ppid, self.pid)
                break
            await asyncio.sleep(HEARTBEAT_S)
        for server in servers:
            server.close()
        await front.drain(self.cfg.graceful_timeout)


def worker_ready(worker: Worker) -> None:
    """gunicorn's ``post_worker_init`` hook: the worker has loaded the app and its models."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)


class GunicornServer(BaseApplication):
    """gunicorn with the app factory called lazily, in each worker after the fork."""

    def __init__(self, cfg: ServeConfig):
        self.serve_cfg = cfg
        super().__init__()

    def load_config(self) -> None:
        cfg = self.serve_cfg
        settings = {
            "bind": f"{cfg.host}:{cfg.port}", "workers": cfg.workers, "threads": cfg.threads,
            "worker_class": BufferedWorker if cfg.front_end == "buffered" else "gthread",
            "worker_connections": cfg.limits.max_connections, "keepalive": math.ceil(cfg.limits.keepalive_s),
            "preload_app": False, "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "timeout": WORKER_TIMEOUT_S, "proc_name": "digits", "loglevel": "info",
            "control_socket_disable": True, "post_worker_init": worker_ready,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> "Flask":
        from app import create_app  # in the worker, after the fork

        return create_app(self.serve_cfg.app_config())


def serve(cfg: ServeConfig) -> int:
    """Check the model, then serve until interrupted. Returns a process exit status.

    Raises:
        ModelLoadError: before anything starts, naming the file and how to make one.
    """
    check_loadable(cfg.checkpoint, cfg.backend)
    if localiser_enabled(cfg.localiser):
        check_loadable(cfg.localiser, cfg.backend)
    if cfg.dev:
        from app import create_app

        log.info("Flask development server on http://%s:%d (not for production)", cfg.host, cfg.port)
        create_app(cfg.app_config()).run(cfg.host, cfg.port, debug=cfg.debug, threaded=True, use_reloader=False)
        return 0
    GunicornServer(cfg).run()
    return 0
