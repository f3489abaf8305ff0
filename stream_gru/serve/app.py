"""The ASGI application of ``stream-gru serve`` (Starlette): the KServe v2 endpoints with
Triton's sequence parameters, the WebSocket endpoint, admin by key, metrics.

    GET    /v2/health/live, /v2/health/ready      (never need the token)
    GET    /v2, /v2/models/{name}, /v2/models/{name}/ready
    POST   /v2/models/{name}/infer                JSON or binary tensors (protocol.py)
    WS     /v1/stream                             {"key", "x"} or {"samples": {...}}
    GET    /v1/streams/{key}                      {"key", "steps", "idle_seconds"}
    GET    /v1/streams/{key}/snapshot             the stream's snapshot bytes
    PUT    /v1/streams/{key}/snapshot             restore it (409 if open)
    DELETE /v1/streams/{key}                      close it (204)
    GET    /metrics                               Prometheus text format

Errors answer ``{"error": message, "code": code}`` with the status of the
``ServeError`` (400 bad input, 401 no token, 404 unknown, 409 open, 413 too large,
429 too many streams, 503 a full queue with ``Retry-After``); nothing changes.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .._version import __version__
from ..errors import ServeError
from .protocol import (
    HEADER_LENGTH,
    check_key,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)
from .service import StreamService
from .websocket import WebSocketSession

__all__ = ["build_app"]

Handler = Callable[[Request], Awaitable[Response]]


def _error(e: ServeError) -> JSONResponse:
    headers = {"Retry-After": "1"} if e.status == 503 else None
    return JSONResponse({"error": str(e), "code": e.code}, e.status, headers=headers)


def _answers_errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ServeError as e:
            return _error(e)

    return wrapped


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServeError(
            f"the body has {int(declared):,} bytes, over --max-body-bytes {limit:,}",
            status=413, code="too_large",
        )  # fmt: skip
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(
                f"the body is over --max-body-bytes {limit:,}", status=413, code="too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class _Routes:
    """The endpoints, around one ``StreamService``."""

    def __init__(self, service: StreamService) -> None:
        self.service = service
        self.name = service.options.model_name
        self.spec = service.model.spec

    def _model(self, request: Request) -> None:
        name = request.path_params["name"]
        if name != self.name:
            raise ServeError(f"no model {name!r:.80}; this server has {self.name!r}", 404,
                             "unknown_model")  # fmt: skip

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.service.ready
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "stream-gru", "version": __version__,
                             "extensions": ["binary_tensor_data", "sequence"]})  # fmt: skip

    async def model(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse(model_metadata(self.name, self.spec))

    async def model_ready(self, request: Request) -> Response:
        self._model(request)
        ok = self.service.ready
        return JSONResponse({"name": self.name, "ready": ok}, 200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        self._model(request)
        body = await _body(request, self.service.options.max_body_bytes)
        header = request.headers.get(HEADER_LENGTH.lower())
        if header is not None and not header.isdigit():
            raise ServeError(f"{HEADER_LENGTH} must be a number of bytes, got {header[:20]!r}")
        try:
            parsed = parse_infer_request(body, int(header) if header else None, self.spec)
        except ServeError as e:
            if e.code == "bad_sample":
                self.service.metrics.reject("bad_sample")
            raise
        ys, steps, status = await self.service.infer(
            parsed.key, parsed.samples, start=parsed.start, end=parsed.end
        )
        parameters: dict[str, Any] = {"sequence_id": parsed.key, "steps": steps}
        if status != "continued":
            parameters["stream"] = status
        content, headers = encode_infer_response(
            self.name, parsed, ys, self.spec.io.output, parameters
        )
        self.service.metrics.request("http", time.perf_counter() - started)
        return Response(content, headers=headers)

    async def stream_info(self, request: Request) -> Response:
        return JSONResponse(await self.service.info(check_key(request.path_params["key"])))

    async def get_snapshot(self, request: Request) -> Response:
        blob = await self.service.snapshot(check_key(request.path_params["key"]))
        return Response(blob, media_type="application/octet-stream")

    async def put_snapshot(self, request: Request) -> Response:
        key = check_key(request.path_params["key"])
        blob = await _body(request, self.service.options.max_body_bytes)
        await self.service.restore(key, blob)
        return Response(status_code=204)

    async def close(self, request: Request) -> Response:
        await self.service.close(check_key(request.path_params["key"]))
        return Response(status_code=204)

    async def metrics(self, request: Request) -> Response:
        return Response(
            self.service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await WebSocketSession(websocket, self.service).run()


class _TokenGuard:
    """ASGI middleware: every endpoint but ``/v2/health/*`` needs ``Authorization:
    Bearer <token>`` (compared in constant time, never logged)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith("/v2/health/"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = JSONResponse(
                    {"error": "this server needs Authorization: Bearer <token>",
                     "code": "unauthorized"},
                    401, headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(service: StreamService, *, token: str | None = None) -> ASGIApp:
    """The ASGI application; its lifespan starts the service and, at shutdown, runs
    what is queued and saves the pool."""
    routes = _Routes(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    def http(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, _answers_errors(handler), methods=methods)

    app = Starlette(
        routes=[
            http("/v2/health/live", routes.live, ["GET"]),
            http("/v2/health/ready", routes.ready, ["GET"]),
            http("/v2", routes.server_metadata, ["GET"]),
            http("/v2/models/{name}", routes.model, ["GET"]),
            http("/v2/models/{name}/ready", routes.model_ready, ["GET"]),
            http("/v2/models/{name}/infer", routes.infer, ["POST"]),
            http("/v2/models/{name}/versions/{version}/infer", routes.infer, ["POST"]),
            WebSocketRoute("/v1/stream", routes.websocket),
            http("/v1/streams/{key:path}/snapshot", routes.get_snapshot, ["GET"]),
            http("/v1/streams/{key:path}/snapshot", routes.put_snapshot, ["PUT"]),
            http("/v1/streams/{key:path}", routes.stream_info, ["GET"]),
            http("/v1/streams/{key:path}", routes.close, ["DELETE"]),
            http("/metrics", routes.metrics, ["GET"]),
        ],
        lifespan=lifespan,
    )
    return _TokenGuard(app, token) if token else app
