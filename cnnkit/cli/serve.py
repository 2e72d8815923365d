"""`cnnkit serve RUN [RUN...]`: an HTTP server over trained runs (TorchServe's inference API) and a page at /.

    cnnkit serve runs/digits                       # then open http://127.0.0.1:8080/
    curl -T digit.png http://127.0.0.1:8080/predictions/digits       # {"3": 0.98, "8": 0.01, "5": 0.003}

Models are loaded once, at start-up. Loopback only by default; `--host 0.0.0.0` (or any other address) needs a
token, random unless `--token` gives one, printed at start-up and sent as `Authorization: Bearer TOKEN`.
"""
from __future__ import annotations

import argparse

from ._common import finite_float, integer

NAME = "serve"
HELP = "serve trained runs over HTTP (TorchServe's API) with a page that shows the network at work"


def _port(text: str) -> int:
    v = integer(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {v}")
    return v


def _above_zero(kind):
    """A positive number (finite: an infinite timeout is no timeout), in serve's words: "must be above 0"."""
    def parse(text: str):
        v = (integer if kind is int else finite_float)(text)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {v}")
        return v
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories; NAME=RUN_DIR names one (default: the "
                                                          "folder's name), as in /predictions/NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' (always required, and "
                                                 "random unless given, when --host is not loopback)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another Host header to accept (a DNS name of this machine); repeatable")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="let pages from ORIGIN call the API (e.g. http://localhost:3000); none by default")
    p.add_argument("--top-k", type=_above_zero(int), default=3, metavar="K",
                   help="classes per answer (default 3, as cnnkit predict; ?top_k=K per request)")
    p.add_argument("--max-bytes", type=_above_zero(int), default=20_000_000, metavar="N",
                   help="largest upload in bytes (default 20 MB; above: 413)")
    p.add_argument("--max-pixels", type=_above_zero(int), default=None, metavar="N",
                   help="largest image in pixels (default: the run's limit, 40 MP; above: 413)")
    p.add_argument("--timeout", type=_above_zero(float), default=30.0, metavar="S",
                   help="seconds a request may take, upload included (default 30; then 408 or 504)")
    p.add_argument("--batch-size", type=_above_zero(int), default=32, metavar="N",
                   help="most requests run as one batch (default 32)")
    p.add_argument("--batch-delay", type=finite_float, default=0.0, metavar="MS",
                   help="milliseconds to wait for more requests once one has come (default 0: batch what waits)")
    p.add_argument("--queue", type=_above_zero(int), default=256, metavar="N",
                   help="most requests waiting per model (default 256; beyond: 503 at once)")


def run(args: argparse.Namespace) -> int:
    from ..errors import CnnkitError
    from ..server import Settings, serve

    if not 0 <= args.port <= 65535:
        raise CnnkitError(f"--port must be 0 to 65535, got {args.port}")
    if not 0 <= args.batch_delay <= 10_000:
        raise CnnkitError(f"--batch-delay must be 0 to 10000 ms, got {args.batch_delay}")
    if args.token is not None and len(args.token) < 8:
        raise CnnkitError("--token must be at least 8 characters (a guessable token guards nothing)")
    settings = Settings(host=args.host, token=args.token, allowed_hosts=tuple(args.allow_host),
                        cors=tuple(args.cors), max_bytes=args.max_bytes, max_pixels=args.max_pixels,
                        timeout=args.timeout, max_batch=args.batch_size, max_delay=args.batch_delay / 1000,
                        max_queue=args.queue, top_k=args.top_k)
    serve(args.runs, port=args.port, settings=settings)
    return 0
