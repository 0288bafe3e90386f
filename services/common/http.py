"""FastAPI glue shared by the services: error mapping, request ids and access lines, logging setup.

Imported only by services that already depend on FastAPI.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import request_ids
from services.common.errors import ServiceError, error_body

log = logging.getLogger(__name__)
access_log = logging.getLogger("access")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Polled by orchestrators and the stack every second or so: no access line for them.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def configure_logging(level: str = "INFO") -> None:
    request_ids.install_log_records()
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    # httpx logs every outgoing request at INFO; the called service's access line says it, by id.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


# Told of every finished request: (scope, status, seconds). The scope's "route" is set by then.
Observer = Callable[[Scope, int, float], None]


class RequestIdMiddleware:
    """Outermost: gives each request its id (the caller's `X-Request-ID` if it is a plain token),
    makes it current while the request is handled (log lines, error bodies, calls to other services
    carry it), answers it in `X-Request-ID`, logs one access line (method, path, status, time) and
    tells `observe` (a service's metrics) of the request."""

    def __init__(self, app: ASGIApp, observe: Observer | None = None):
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value.decode("latin-1") for key, value in scope.get("headers", [])
                         if key == b"x-request-id"), None)
        request_id = request_ids.accept(incoming)
        # Not reset on the way out: an unhandled error is answered outside this middleware (by
        # Starlette's ServerErrorMiddleware), whose handler must still see the id. Each request
        # runs in a task of its own, so the value ends with it.
        request_ids.bind(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope, status, seconds)
            if scope.get("path") not in QUIET_PATHS:
                access_log.info("%s %s %d %.1f ms", scope.get("method"), scope.get("path"), status, seconds * 1000)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/photos/{photo_id}`), never the raw path, so that metrics
    series stay bounded whatever callers send; unmatched paths share one label."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"


def install_request_ids(app: FastAPI, observe: Observer | None = None) -> None:
    """Call last, after every other middleware, so that the id (and the timing) wraps them all."""
    app.add_middleware(RequestIdMiddleware, observe=observe)


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = err.get("msg", "is invalid")
        parts.append(f"{where}: {msg}" if where else msg)
    return "The request is invalid: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to JSON `{"error": {"code", "message"}}`; never leak a traceback."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _validation_sentence(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        # Answered outside RequestIdMiddleware (see there): the header is set here.
        return JSONResponse(error_body("internal_error", "The service hit an unexpected error; it has been logged."),
                            status_code=500, headers=request_ids.outgoing_headers() or None)
