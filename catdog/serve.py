"""A local demo page and JSON endpoint: `python -m catdog.serve ckpt_path=FILE [port=8000] [host=127.0.0.1]`.

FILE is a checkpoint, or an `.onnx` from `catdog.export` (float or int8, run by onnxruntime). Drop or pick photos
in the browser to see the label (or "unsure" below min_confidence), the calibrated probabilities and, for a
checkpoint, the Grad-CAM heatmap. The page's JSON endpoint is usable on its own:
`curl -F file=@photo.jpg http://127.0.0.1:8000/api/predict` ->
`{"label": "Dog", "probability": 0.93, "probabilities": {"Cat": 0.07, "Dog": 0.93}}`.

A small ASGI app (Starlette on uvicorn): one static page and two JSON routes need no framework beyond routing,
multipart parsing and a server that stops cleanly on SIGTERM, and these three packages (plus python-multipart)
are a few hundred kB with no compiled parts.

Under load, decoding runs in worker threads and photos that arrive together share one forward pass
(catdog.batching: at most batch_max photos, waiting at most batch_wait_ms), so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
import socket
from importlib.resources import files

from omegaconf import DictConfig
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

import catdog
from catdog.batching import Batcher, check_batching
from catdog.data.decode import BadImage
from catdog.errors import CatdogError
from catdog.runtime import BasePredictor
from catdog.shell.cli import run_entry

# named, not __name__: run as `python -m catdog.serve`, this module is __main__
LOGGER = "catdog.serve"
log = logging.getLogger(LOGGER)
# seconds open requests get to finish after SIGTERM/SIGINT; any still open then is answered with a JSON 503
SHUTDOWN_GRACE_S = 5


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is longer than `limit` bytes (no more is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def replayed(request: Request, body: bytes) -> Request:
    """A request whose body is `body`, for Starlette's multipart parser after the size check read it."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def explained(predictor: BasePredictor, data: bytes, layer: int | str | None) -> dict:
    """The page's answer with the Grad-CAM heatmap as a PNG data URL: one photo, forward and backward on its own
    (gradients do not batch with other requests' plain forwards)."""
    from catdog.explain.gradcam import display_image, overlay_png

    image = predictor.decode(data)
    result = predictor.describe(predictor.probabilities(image[None])[0])
    heat = predictor.heatmaps(image[None], layer)[0]  # type: ignore[attr-defined]  # explains
    png = overlay_png(display_image(data, image, resize=predictor.resize), heat)
    result["heatmap"] = "data:image/png;base64," + base64.b64encode(png).decode()
    return result


def answers_when_cancelled(app):
    """uvicorn cancels the requests still open SHUTDOWN_GRACE_S after SIGTERM (a slow upload), and would answer
    them with a plain-text 500 and log a traceback: they get the JSON 503 every other error has the shape of."""

    async def wrapped(scope, receive, send) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracked)
        except asyncio.CancelledError:
            if scope["type"] != "http" or started:
                raise
            log.warning("The server is stopping: answered %s, still open, with 503", scope["path"])
            response = error(503, "the server is stopping; send the request again")
            response.headers["connection"] = "close"
            await response(scope, receive, send)

    return wrapped


def create_app(
    predictor: BasePredictor,
    max_upload_bytes: int = 10_000_000,
    layer: int | str | None = None,
    batch_max: int = 32,
    batch_wait_ms: float = 5,
):
    """The demo page at `/`, the model's classes at `/api/info`, predictions at `POST /api/predict`."""
    if predictor.explains:
        from catdog.explain.gradcam import resolve_layer

        resolve_layer(predictor.net.net, layer)  # type: ignore[attr-defined]  # explains: a torch Predictor
    page = (files("catdog") / "serve_static" / "index.html").read_text(encoding="utf-8")
    batcher = Batcher(predictor.probabilities, batch_max, batch_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        yield
        await batcher.stop()

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "classes": predictor.classes,
                "min_confidence": predictor.min_confidence,
                "temperature": predictor.temperature,
                "max_upload_bytes": max_upload_bytes,
                "explain": predictor.explains,
            }
        )

    async def predict(request: Request) -> JSONResponse:
        try:
            body = await read_limited(request, max_upload_bytes)
        except ClientDisconnect:
            return error(400, "the upload was interrupted")
        if body is None:
            return error(
                413, f"the upload is larger than the limit of {max_upload_bytes:,} bytes (max_upload_mb)"
            )
        try:
            form = await replayed(request, body).form(max_files=1, max_fields=10)
        except HTTPException as e:
            # Starlette's answer to a malformed form: a plain-text 400, made JSON here like every other error
            return error(400, f"not a multipart form upload ({e.detail}); send the photo as the field 'file'")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return error(400, "no file: send the photo as the multipart form field 'file'")
        data = await upload.read()
        # an export has no gradients: it answers without the heatmap, and /api/info says explain: false
        explain = predictor.explains and request.query_params.get("explain", "").lower() in (
            "1",
            "true",
            "yes",
        )
        try:
            if explain:
                return JSONResponse(await run_in_threadpool(explained, predictor, data, layer))
            async with batcher.decoding():
                image = await run_in_threadpool(predictor.decode, data)
        except BadImage as e:
            return error(415, f"{upload.filename or 'the upload'}: not a usable image ({e})")
        return JSONResponse(predictor.describe(await batcher.submit(image)))

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/predict", predict, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return answers_when_cancelled(app)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made before the server starts: a taken port is one clear message, and connections
    wait in its backlog from the moment the address is printed."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP by name: asyncio turns Nagle's algorithm off only on sockets whose proto says TCP, and with
        # it on, every answer on a keep-alive connection waited ~40 ms for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except (OSError, OverflowError) as e:
        raise CatdogError(
            f"host={host} port={port}: cannot listen there ({e}). Give another port=, e.g. port=8001."
        ) from e
    return sock


class AsCatdog(logging.Filter):
    """uvicorn's own lines (started, stopping, cancelled requests) under this module's name, like every other line
    a catdog command logs, rather than under `uvicorn.error` (which holds no errors as often as it does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = LOGGER
        if str(record.msg).startswith("Cancel %s running task"):
            # expected after SHUTDOWN_GRACE_S, and each such request gets its 503: no error of the server's
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def serve(cfg: DictConfig) -> None:
    """Load the model, then serve until SIGINT/SIGTERM (open requests get SHUTDOWN_GRACE_S to finish)."""
    import uvicorn

    if not cfg.max_upload_mb or float(cfg.max_upload_mb) <= 0:
        raise CatdogError(f"max_upload_mb={cfg.max_upload_mb}: must be a positive size in megabytes.")
    check_batching(cfg.batch_max, cfg.batch_wait_ms)
    predictor = catdog.load(cfg.ckpt_path, cfg.get("min_confidence", 0.0))
    upload_limit = int(float(cfg.max_upload_mb) * 1_000_000)
    app = create_app(predictor, upload_limit, cfg.get("explain_layer"), cfg.batch_max, cfg.batch_wait_ms)
    sock = bind(str(cfg.host), int(cfg.port))
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    # flushed at once: a script (or test) waiting for the server reads the address from this line
    print(f"Serving {cfg.ckpt_path} on {url} (Ctrl+C or SIGTERM stops it)", flush=True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).addFilter(AsCatdog())
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler that was there
    # before it: this one ends the run quietly (exit 0) rather than the default one (killed, or a traceback)
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("Stopped.", flush=True)


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _stopped(signum: int, frame) -> None:
    raise _Stopped


if __name__ == "__main__":
    run_entry(serve, "serve", usage=__doc__)
