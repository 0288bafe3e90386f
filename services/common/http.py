"""FastAPI glue shared by the services: error mapping, request ids and access lines, logging setup.

Imported only by services that already depend on FastAPI.
"""
from __future__ import annotations

import asyncio
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


class BodyGuardMiddleware:
    """Bounds every request body, whichever route reads it and however it is sent: a declared
    Content-Length over `max_bytes` is answered 413 before any byte is read; a chunked body is
    counted as it arrives and refused at the limit; and the whole body must arrive within
    `timeout_s` of the first read, or the request is answered 408 (a sender trickling a body a byte
    at a time would otherwise hold its connection and buffers for ever). uvicorn bounds neither.

    Both refusals are raised from `receive` as Starlette's HTTPException, which FastAPI's body
    reader lets through (any other error there becomes a 400 "error parsing the body").
    Once the body is complete, `receive` is passed through untouched: it then only waits for the
    client to go away, which may rightly take as long as a streamed response."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(413, f"The request body is larger than this service accepts "
                                           f"({self.max_bytes:,} bytes at most).")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for key, value in scope.get("headers", []) if key == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._too_large()
            response = JSONResponse(error_body("payload_too_large", str(exc.detail)), status_code=413)
            await response(scope, receive, send)
            return
        received = 0
        complete = False
        deadline: float | None = None

        async def guarded() -> Message:
            nonlocal received, complete, deadline
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise StarletteHTTPException(408, f"The request body did not arrive within {self.timeout_s:g} "
                                                  "seconds; send it at once.") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise self._too_large()
            else:
                complete = True
            return message

        await self.app(scope, guarded, send)


def install_body_guard(app: FastAPI, max_bytes: int, timeout_s: float) -> None:
    app.add_middleware(BodyGuardMiddleware, max_bytes=max_bytes, timeout_s=timeout_s)


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = err.get("msg", "is invalid")
        parts.append(f"{where}: {msg}" if where else msg)
    return "The request is invalid: " + "; ".join(parts) + "."


TOO_DEEP = ("The JSON is nested too deeply to read; send the fields as documented "
            "(a filter is one level: field -> value, list, or {operator: value}).")


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
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's body reader wraps it in a 400
            return await _too_deep(request, exc.__cause__)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 408: "request_timeout",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        # JSON nested about a thousand levels deep (a body, a multipart `filters` field, a `?filters=`)
        # makes json.loads, pydantic or our own walks of the value hit Python's recursion limit. No
        # field of these APIs nests more than three levels, so any such input is the caller's mistake.
        # Caught here, once, rather than by a depth cap at each place that parses JSON: the JSON is
        # parsed in several places (our routes, FastAPI's body reader, the filter grammar), and the
        # recursion can come from any of them; the stack has unwound by the time the handler runs.
        return JSONResponse(error_body("too_deeply_nested", TOO_DEEP), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        # Answered outside RequestIdMiddleware (see there): the header is set here.
        return JSONResponse(error_body("internal_error", "The service hit an unexpected error; it has been logged."),
                            status_code=500, headers=request_ids.outgoing_headers() or None)
