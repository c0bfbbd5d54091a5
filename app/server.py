"""Running the app: gunicorn (production) or Flask's own server (``--dev``).

The master process checks the model in a child process (``app.modelfile``), then starts gunicorn
through its Python API without ``preload_app``: each worker imports the app and runs the factory
after the fork, so the model is loaded once per worker and the master never imports torch or
onnxruntime. Workers are threaded (``gthread``); their request threads feed one micro-batcher,
and the model's intra-op threads are cores // workers so the workers do not oversubscribe the cores.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication

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

    def app_config(self) -> dict:
        """The factory's configuration for this way of serving."""
        return {"CHECKPOINT": self.checkpoint, "LOCALISER": self.localiser, "BACKEND": self.backend,
                "WORKERS": self.workers}


class GunicornServer(BaseApplication):
    """gunicorn with the app factory called lazily, in each worker after the fork."""

    def __init__(self, cfg: ServeConfig):
        self._serve_cfg = cfg
        super().__init__()

    def load_config(self) -> None:
        cfg = self._serve_cfg
        settings = {
            "bind": f"{cfg.host}:{cfg.port}", "workers": cfg.workers, "threads": cfg.threads,
            "worker_class": "gthread", "preload_app": False, "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "timeout": WORKER_TIMEOUT_S, "proc_name": "digits", "loglevel": "info",
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> "Flask":
        from app import create_app  # in the worker, after the fork

        return create_app(self._serve_cfg.app_config())


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
