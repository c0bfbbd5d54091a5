"""Serve the digit recognizer: ``python main-flask.py`` (gunicorn on http://127.0.0.1:5000); see ``--help``."""
import argparse
import logging
import os
import sys

from app.frontend import (HEADER_TIMEOUT_S, KEEPALIVE_S, MAX_CONNECTIONS, MIN_UPLOAD_BYTES_PER_S, UPLOAD_GRACE_S,
                          UPLOAD_TIMEOUT_S, Limits)
from app.server import (DEFAULT_FRONT_END, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, DEFAULT_WORKERS, FRONT_ENDS,
                        ServeConfig, serve)
from app.modelfile import DEFAULT_CHECKPOINT, DEFAULT_LOCALISER
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
    p.add_argument("--localiser", default=env("localiser", str(DEFAULT_LOCALISER)),
                   help="digit localiser; 'none' reads the centred square and never says 'no digit' "
                        "(default: %(default)s)")
    p.add_argument("--workers", type=int, default=env("workers", DEFAULT_WORKERS),
                   help="gunicorn worker processes; each loads the model once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=env("threads", DEFAULT_THREADS),
                   help="request threads per worker, batched into one forward (default: %(default)s)")
    p.add_argument("--backend", default=env("backend", DEFAULT_BACKEND), choices=BACKENDS,
                   help="inference runtime: onnx serves the int8 model when it passed its accuracy check, "
                        "else fp32; onnx-fp32 always fp32 (default: %(default)s)")
    p.add_argument("--front-end", default=env("front_end", DEFAULT_FRONT_END), choices=FRONT_ENDS,
                   help="buffered: an event loop reads each request in full, under the deadlines below, before a "
                        "request thread runs it; gthread: gunicorn's threads read requests themselves (only behind "
                        "a buffering proxy) (default: %(default)s)")
    p.add_argument("--header-timeout", type=float, default=env("header_timeout", HEADER_TIMEOUT_S),
                   help="seconds for a request's line and headers to arrive, else 408 (default: %(default)s)")
    p.add_argument("--upload-timeout", type=float, default=env("upload_timeout", UPLOAD_TIMEOUT_S),
                   help="seconds for a whole upload to arrive, else 408 (default: %(default)s)")
    p.add_argument("--min-upload-rate", type=float, default=env("min_upload_rate", MIN_UPLOAD_BYTES_PER_S),
                   help=f"bytes/s an upload must average after its first {UPLOAD_GRACE_S:g} s, else 408 (default: %(default)s)")
    p.add_argument("--keepalive", type=float, default=env("keepalive", KEEPALIVE_S),
                   help="seconds an idle keep-alive connection stays open (default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=env("max_connections", MAX_CONNECTIONS),
                   help="open connections per worker; past it, 503 with Retry-After (default: %(default)s)")
    p.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    p.add_argument("--debug", action="store_true", help="with --dev: Flask debug mode (never on a public address)")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.workers < 1 or args.threads < 1 or args.max_connections < 1:
        print(f"error: --workers, --threads and --max-connections must be >= 1 (got {args.workers}, {args.threads}, "
              f"{args.max_connections}).", file=sys.stderr)
        return 2
    timeouts = {"--header-timeout": args.header_timeout, "--upload-timeout": args.upload_timeout,
                "--min-upload-rate": args.min_upload_rate, "--keepalive": args.keepalive}
    if bad := [f"{name} {value}" for name, value in timeouts.items() if not value > 0]:
        print(f"error: {', '.join(bad)}: must be > 0.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits(header_timeout_s=args.header_timeout, upload_timeout_s=args.upload_timeout,
                    min_upload_rate=args.min_upload_rate, keepalive_s=args.keepalive, max_connections=args.max_connections)
    cfg = ServeConfig(host=args.host, port=args.port, checkpoint=args.checkpoint, localiser=args.localiser,
                      workers=args.workers, threads=args.threads, backend=args.backend, dev=args.dev,
                      debug=args.debug, front_end=args.front_end, limits=limits)
    try:
        return serve(cfg)
    except ModelLoadError as e:
        print(f"error: cannot serve: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
