"""The HTTP service: ``POST /predict``, ``GET /health`` and ``GET /`` around one :class:`Predictor`.

Starlette (ASGI) routes requests on one event loop; the model runs on one worker thread behind a bounded queue
(:mod:`darknet_torch.serve.batcher`).  Every error is JSON ``{"error": message}`` with a 4xx/5xx status:
400 bad image or setting, 404/405 wrong route or method, 408 head or body too slow, 413 body over the cap,
415 wrong content type, 503 queue full or every connection busy, 504 no answer within the request timeout, 500 a bug
(logged).  Connection-level limits (head timeout, connection cap) are :mod:`darknet_torch.serve.connections`'.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from darknet_torch.data.images import Decoder
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import DataError
from darknet_torch.serve.batcher import Batcher, QueueFull
from darknet_torch.serve.inference import default_settings, run_jobs, warm_up
from darknet_torch.serve.inputs import read_job
from darknet_torch.serve.limits import BodyLimitMiddleware, BodyTooLarge
from darknet_torch.serve.page import PAGE_CSP, render_page

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Limits of the service.

    ``max_upload_bytes``: request body cap (413 above it).  ``max_pixels``: decoded image size cap, the
    decompression-bomb guard (400 above it).  ``queue_size``: requests that may wait for the model (503 beyond).
    ``max_batch``: images per forward pass.  ``batch_wait`` (s): how long a batch may wait to fill (0: take only what
    is queued).  ``timeout`` (s): from a request's arrival to its answer (408 for the body, 504 for the model).
    ``decoder``: Pillow by default because it refuses truncated files; ``"stb"`` gives Darknet's exact pixels but,
    like Darknet, decodes a truncated JPEG with its missing part grey (the answer's ``warnings`` says so).
    ``max_detections``: (box, class) pairs per image, the highest scores kept; ``max_response_bytes``: cap on a
    response body (lowest scores left out beyond it); both count what was left out in the answer's ``dropped``.
    ``header_timeout`` (s): time for a request head to arrive; ``max_connections``: open connections, idle ones
    closed first to make room (see :mod:`darknet_torch.serve.connections`).
    """

    max_upload_bytes: int = 16 * 2**20
    max_pixels: int = 50_000_000
    queue_size: int = 32
    max_batch: int = 4
    batch_wait: float = 0.0
    timeout: float = 30.0
    decoder: Decoder = "pil"
    max_detections: int = 1000
    max_response_bytes: int = 2**20
    header_timeout: float = 10.0
    max_connections: int = 128


def create_app(predictor: Predictor, config: ServeConfig = ServeConfig(), model_name: str = "") -> Starlette:
    """The ASGI app serving ``predictor``; its batcher (and model thread) lives for the app's lifespan."""
    defaults = default_settings(predictor)
    runner = partial(run_jobs, predictor, max_pixels=config.max_pixels, decoder=config.decoder,
                     max_detections=config.max_detections)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warm_up(predictor)
        app.state.batcher = Batcher(runner, config.queue_size, config.max_batch, config.batch_wait)
        app.state.batcher.start()
        try:
            yield
        finally:
            await app.state.batcher.stop()

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(defaults.thresh, defaults.letter_box),
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"})

    async def health(request: Request) -> Response:
        batcher: Batcher = request.app.state.batcher
        return JSONResponse({
            "status": "ok", "model": model_name, "classes": predictor.model.num_classes,
            "input_size": list(predictor.input_size),
            "defaults": {"thresh": defaults.thresh, "nms": defaults.nms, "letter_box": defaults.letter_box},
            "queue": {"waiting": batcher.waiting, "running": batcher.running, "size": config.queue_size},
            "max_batch": config.max_batch, "max_detections": config.max_detections,
        })

    async def predict(request: Request) -> Response:
        batcher: Batcher = request.app.state.batcher
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout
        if batcher.full:  # refuse before reading the body: a busy service should cost a client nothing
            raise _busy(f"{config.queue_size} requests are already waiting")
        job = await read_job(request, defaults, config.timeout)
        try:
            result = await asyncio.wait_for(batcher.submit(job), max(0.0, deadline - loop.time()))
        except QueueFull as exc:
            raise _busy(str(exc)) from None
        except TimeoutError:
            raise HTTPException(504, f"no answer within the request timeout of {config.timeout:g} s") from None
        if isinstance(result, DataError):
            raise HTTPException(400, str(result))
        return JSONResponse(result.to_json(config.max_response_bytes))

    return Starlette(
        routes=[Route("/", page, methods=["GET"]), Route("/health", health, methods=["GET"]),
                Route("/predict", predict, methods=["POST"])],
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)],
        exception_handlers={HTTPException: _http_error, BodyTooLarge: _too_large, Exception: _internal_error},
        lifespan=lifespan,
    )


def _busy(reason: str) -> HTTPException:
    return HTTPException(503, f"the service is busy ({reason}); retry shortly", headers={"Retry-After": "1"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
    # The rest of the body is not read: close the connection rather than drain it.
    return JSONResponse({"error": str(exc)}, 413, headers={"Connection": "close"})


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal server error (see the server log)"}, 500)
