"""Serve the digit recognizer: ``python main-flask.py`` (gunicorn on http://127.0.0.1:5000); see ``--help``."""
import argparse
import logging
import os
import sys

from app.server import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, DEFAULT_WORKERS, ServeConfig, serve
from app.modelfile import DEFAULT_CHECKPOINT
from model.inference import BACKENDS, DEFAULT_BACKEND, ModelLoadError

ENV_PREFIX = "DIGITS_"


def env(name: str, default):
    """The value of environment variable DIGITS_<NAME>, else ``default``."""
    return type(default)(os.environ.get(ENV_PREFIX + name.upper(), default))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Serve the digit recognizer: an upload page and a JSON API. "
                                            "Every option can also be set as DIGITS_<OPTION>, e.g. DIGITS_PORT=8000.")
    p.add_argument("--host", default=env("host", DEFAULT_HOST), help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=env("port", DEFAULT_PORT), help="port (default: %(default)s)")
    p.add_argument("--checkpoint", default=env("checkpoint", str(DEFAULT_CHECKPOINT)),
                   help="checkpoint to serve; its .onnx is exported beside it when missing or older (default: %(default)s)")
    p.add_argument("--workers", type=int, default=env("workers", DEFAULT_WORKERS),
                   help="gunicorn worker processes; each loads the model once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=env("threads", DEFAULT_THREADS),
                   help="request threads per worker, batched into one forward (default: %(default)s)")
    p.add_argument("--backend", default=env("backend", DEFAULT_BACKEND), choices=BACKENDS,
                   help="inference runtime: onnx serves the int8 model when it passed its accuracy check, "
                        "else fp32; onnx-fp32 always fp32 (default: %(default)s)")
    p.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    p.add_argument("--debug", action="store_true", help="with --dev: Flask debug mode (never on a public address)")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        print(f"error: --workers and --threads must be >= 1 (got {args.workers}, {args.threads}).", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = ServeConfig(args.host, args.port, args.checkpoint, args.workers, args.threads, args.backend,
                      args.dev, args.debug)
    try:
        return serve(cfg)
    except ModelLoadError as e:
        print(f"error: cannot serve: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
