"""The HTTP server of `cnnkit serve`: TorchServe's inference API, and the page's API, over trained runs.

FastAPI + uvicorn: the most used maintained ASGI stack, with OpenAPI docs built in (served from the package
here, offline). LitServe (itself FastAPI + uvicorn) was the other candidate; it is made for one
request → predict → response shape per server with its own worker processes, while this server also answers the
page's feature-map and Grad-CAM requests from the same loaded model, so the plain stack with a small batcher
(`batching.py`) is simpler and keeps one Predictor per model.

Everything that predicts goes through the run's Predictor, so an answer equals `cnnkit predict --json` for the
same image; torch work runs on one inference thread (batches, feature maps, Grad-CAM in turn), image decoding on
the request threads.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import CnnkitError
from .batching import Batcher, Busy
from .security import HEADERS, PAGE_CSP, ApiError, Guard, error_response, image_from_body, read_body

STATIC = Path(__file__).parent / "static"

_IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"data": {"type": "string",
                                                                                  "format": "binary"}}}}}}}


@dataclass
class Settings:
    """The server's limits and batching; `cnnkit serve --help` says what each is."""
    host: str = "127.0.0.1"
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    cors: tuple[str, ...] = ()
    max_bytes: int = 20_000_000
    max_pixels: int | None = None  # None: each run's own limit (cnnkit.data.images.MAX_PIXELS unless trained with one)
    timeout: float = 30.0
    max_batch: int = 32
    max_delay: float = 0.0
    max_queue: int = 256
    top_k: int = 3


def _run_batch(pred):
    def run(arrays: list[np.ndarray]) -> list[torch.Tensor]:
        return list(pred.probs(torch.from_numpy(np.stack(arrays))))
    return run


def _warm_up(models: dict[str, Any]) -> None:
    """One zero image through each model, on the inference thread (see `serve`)."""
    for p in models.values():
        p.probs(torch.zeros(1, p.preprocess.channels, *p.preprocess.size, dtype=torch.uint8))


def create_app(models: dict[str, Any], settings: Settings | None = None,
               executor: ThreadPoolExecutor | None = None) -> FastAPI:
    """The ASGI app serving `models` (name → Predictor), loaded once, before the first request. `executor`: the
    one thread torch runs on (made here unless given; `serve` loads the models on it)."""
    from fastapi_offline import FastAPIOffline

    from .._version import __version__
    from ..explain import network

    s = settings or Settings()
    guard = Guard(bind=s.host, token=s.token, allowed_hosts=s.allowed_hosts)
    # torch runs on this one thread, one job at a time. Measured (bench/serve_speed.py): a one-image resnet18
    # pass took 17-22 ms on a thread other than the one that first ran torch, 9-11 ms on that thread alone.
    executor = executor or ThreadPoolExecutor(1, thread_name_prefix="cnnkit-infer")
    batchers = {name: Batcher(_run_batch(p), executor, max_batch=s.max_batch, max_delay=s.max_delay,
                              max_queue=s.max_queue) for name, p in models.items()}
    views: dict[str, dict] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(executor, _warm_up, models)
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            await b.stop()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPIOffline(title="cnnkit serve", version=__version__, lifespan=lifespan,
                         description="TorchServe's inference API over cnnkit runs, and the page's API. "
                                     "Images are sent as the raw body (curl -T IMAGE URL) or a multipart field "
                                     "'data'.")
    if s.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(s.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.middleware("http")
    async def checks(request: Request, call_next):
        refused = guard.check(request)
        if refused is not None:
            return refused
        try:
            response = await call_next(request)
        except Exception as e:  # never a traceback to the client, never a dead server
            return error_response(500, "InternalServerError", f"{type(e).__name__}: {str(e)[:200]}")
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return error_response(e.code, e.kind, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e: StarletteHTTPException):
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status_code, "HTTPError")
        msg = f"no such endpoint: {request.method} {request.url.path} (see /docs)" if e.status_code == 404 \
            else str(e.detail)
        return error_response(e.status_code, kind, msg)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error_response(400, "BadRequest", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(CnnkitError)
    async def _cnnkit_error(request, e: CnnkitError):
        return error_response(400, "BadRequest", str(e))

    def model_of(name: str):
        if name not in models:
            raise ApiError(404, "ModelNotFound", f"no model named '{name}'; served: {', '.join(models)}")
        return models[name]

    async def image_of(request: Request, pred) -> np.ndarray:
        from ..data.images import BadImagesError

        body = await read_body(request, s.max_bytes, s.timeout)
        data, label = image_from_body(body, request.headers.get("content-type", ""))
        try:
            return await run_in_threadpool(pred.image_bytes, data, label, s.max_pixels)
        except BadImagesError as e:
            kind = e.bad[0].kind if e.bad else "corrupt"
            reason = e.bad[0].reason if e.bad else str(e)
            if kind == "format":
                raise ApiError(415, "UnsupportedMediaType", f"{label} is not an image cnnkit reads (PNG, JPEG, "
                                                            "WebP, BMP, TIFF, DICOM): the content says so, "
                                                            "whatever its name") from None
            if kind == "size":
                raise ApiError(413, "ImageTooLarge", f"{label}: {reason}") from None
            raise ApiError(400, "BadImage", f"{label}: {reason}") from None

    async def on_thread(fn, *args, **kw):
        """Torch work other than batched predictions (feature maps, Grad-CAM), on the inference thread."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, lambda: fn(*args, **kw)), s.timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "Timeout", f"not answered within {s.timeout:g} s (--timeout)") from None

    # --- TorchServe's inference API --------------------------------------------------------------------------
    @app.get("/ping", tags=["TorchServe"])
    async def ping():
        return {"status": "Healthy"}

    @app.get("/models", tags=["TorchServe"])
    async def list_models():
        return {"models": [{"modelName": n, "modelUrl": n} for n in models]}

    @app.get("/models/{model}", tags=["TorchServe"])
    async def describe(model: str):
        p = model_of(model)
        b = batchers[model]
        return [{"modelName": model, "modelUrl": model, "batchSize": s.max_batch,
                 "maxBatchDelay": round(s.max_delay * 1000, 3), "queue": s.max_queue,
                 "architecture": getattr(p.model, "model_name", type(p.model).__name__),
                 "classes": list(p.classes), "input": [p.preprocess.channels, *p.preprocess.size],
                 "temperature": p.temperature, "decision": p.decision_text(),
                 "recentBatchSizes": b.batches[-20:]}]

    # PUT too: TorchServe's own examples send the image with `curl -T FILE`, which is a PUT
    @app.api_route("/predictions/{model}", methods=["POST", "PUT"], tags=["TorchServe"], openapi_extra=_IMAGE_BODY)
    async def predictions(model: str, request: Request, top_k: int | None = None):
        """The top-k classes with their (calibrated) probabilities, most probable first: `cnnkit predict`'s."""
        pred = model_of(model)
        k = top_k if top_k is not None else s.top_k
        if k < 1:
            raise ApiError(400, "BadRequest", f"top_k must be at least 1, got {k}")
        x = await image_of(request, pred)
        try:
            probs = await asyncio.wait_for(batchers[model].submit(x), s.timeout)
        except Busy as e:
            raise ApiError(503, "ServiceUnavailable", f"the server is busy ({e}); retry later") from None
        except asyncio.TimeoutError:
            raise ApiError(504, "Timeout", f"not answered within {s.timeout:g} s (--timeout)") from None
        top = pred.top(probs[None], k)[0]
        headers = {}
        if pred.decision_text():
            headers["X-Cnnkit-Decision"] = pred.classes[int(pred.decide(probs[None])[0])]
        return JSONResponse({c: round(p, 6) for c, p in top}, headers=headers)

    @app.api_route("/explanations/{model}", methods=["POST", "PUT"], tags=["TorchServe"], openapi_extra=_IMAGE_BODY)
    async def explanations(model: str, request: Request, target: str | None = None):
        """Grad-CAM for the decided class (or `target`): the map at the model's input size, and an overlay."""
        pred = model_of(model)
        x = await image_of(request, pred)
        return await on_thread(network.explanation, pred, x, target)

    # --- the page's API ----------------------------------------------------------------------------------------
    @app.get("/api/models/{model}/network", tags=["page"])
    async def network_view(model: str):
        pred = model_of(model)
        if model not in views:
            views[model] = await on_thread(network.network_view, pred)
        return views[model]

    @app.post("/api/models/{model}/inspect", tags=["page"], openapi_extra=_IMAGE_BODY)
    async def inspect(model: str, request: Request, channels: int = 8):
        pred = model_of(model)
        if not 1 <= channels <= 64:
            raise ApiError(400, "BadRequest", f"channels must be 1 to 64, got {channels}")
        x = await image_of(request, pred)
        return await on_thread(network.inspect, pred, x, channels)

    @app.get("/api/samples", tags=["page"])
    async def samples():
        from ..data.samples import SAMPLES

        return {"samples": list(SAMPLES)}

    sample_png: dict[str, bytes] = {}

    @app.get("/api/samples/{name}", tags=["page"], response_class=Response)
    async def sample(name: str):
        from ..data.samples import SAMPLES

        if name not in SAMPLES:
            raise ApiError(404, "NotFound", f"no sample named '{name}'; see /api/samples")
        if name not in sample_png:
            sample_png[name] = await run_in_threadpool(_sample_png, name)
        return Response(sample_png[name], media_type="image/png")

    @app.get("/api/kernels", tags=["page"])
    async def kernels():
        from ..ops.kernels import KERNELS

        return {"kernels": {k: {"matrix": m, "about": about} for k, (m, about) in KERNELS.items()}}

    @app.post("/api/convolve", tags=["page"])
    async def convolve(request: Request):
        body = await read_body(request, 1_000_000, s.timeout)
        import json

        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "BadRequest", "the body must be JSON: {\"input\": [[...]], \"kernel\": ...}") from None
        if not isinstance(spec, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        known = {"input", "sample", "size", "kernel", "stride", "padding"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ApiError(400, "BadRequest", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return await run_in_threadpool(lambda: network.convolve_view(**spec))

    # --- the page --------------------------------------------------------------------------------------------
    def page(name: str) -> Response:
        path = STATIC / name
        if not path.is_file():
            raise ApiError(404, "NotFound", f"the page {name} is missing from this install of cnnkit")
        return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/", include_in_schema=False)
    async def index():
        return page("index.html")

    @app.get("/conv", include_in_schema=False)
    async def conv_page():
        return page("conv.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _sample_png(name: str) -> bytes:
    from PIL import Image

    from ..data.samples import load_sample

    im = Image.fromarray(load_sample(name))
    im.thumbnail((512, 512))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
