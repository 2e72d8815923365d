"""`cnnkit serve`: trained runs behind TorchServe's inference API, with a page that shows the network at work.

    cnnkit serve runs/digits                      # http://127.0.0.1:8080/ ; curl -T digit.png .../predictions/digits
    cnnkit serve a=runs/x b=runs/y --port 9000    # two models, named
    cnnkit serve runs/x --host 0.0.0.0            # reachable from other machines: a token is required (printed)
"""
from __future__ import annotations

import re
import secrets
import socket
import sys
from pathlib import Path
from typing import Sequence

from ..errors import CnnkitError
from .app import Settings, create_app

__all__ = ["Settings", "create_app", "load_models", "serve"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def load_models(specs: Sequence[str]) -> dict:
    """'RUN_DIR' or 'NAME=RUN_DIR' → {name: Predictor}; the name defaults to the folder's."""
    from ..run import Predictor

    models: dict = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not _NAME.match(name):
            raise CnnkitError(f"model name '{name}' (from '{spec}'): use letters, digits, '.', '_' or '-' "
                              "(up to 64), or name it: NAME=RUN_DIR")
        if name in models:
            raise CnnkitError(f"two models named '{name}'; name them apart: NAME=RUN_DIR")
        if not Path(path).is_dir():
            raise CnnkitError(f"{path} is not a run directory (a folder made by cnnkit train)")
        models[name] = Predictor.from_run(path)
    if not models:
        raise CnnkitError("give at least one run directory to serve")
    return models


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = "is in use" if e.errno == 98 else f"cannot be used ({e.strerror})"
        raise CnnkitError(f"{host}:{port} {why}; pick another with --port (0 picks a free one) or --host") from None
    sock.listen(2048)
    return sock


def serve(specs: Sequence[str], *, port: int = 8080, settings: Settings | None = None, log=print) -> None:
    """Load the runs, bind, and answer until interrupted (Ctrl-C)."""
    import uvicorn

    from .security import is_loopback

    s = settings or Settings()
    if not is_loopback(s.host) and s.token is None:
        s.token = secrets.token_urlsafe(24)  # any other address: never without a token
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1, thread_name_prefix="cnnkit-infer")
    models = executor.submit(load_models, specs).result()  # loaded on the thread that will run them (app.py)
    sock = _bind(s.host, port)
    port = sock.getsockname()[1]
    app = create_app(models, s, executor)
    shown = f"[{s.host}]" if ":" in s.host else s.host
    url = f"http://{shown}:{port}/" + (f"?token={s.token}" if s.token else "")

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:  # said once the socket answers: a script may wait for this line
                log(f"serving {', '.join(models)} at {url} (API docs: /docs; Ctrl-C stops)", file=sys.stderr,
                    flush=True)

    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5, timeout_graceful_shutdown=5,
                            limit_concurrency=1024, h11_max_incomplete_event_size=64 * 1024)
    Server(config).run(sockets=[sock])
