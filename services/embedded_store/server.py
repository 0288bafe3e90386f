"""The embedded store's HTTP server: the subset of the ClickHouse HTTP interface that
`clickhouse-connect` (HTTP) uses, in front of one chDB data folder.

Implemented:

- `GET /ping` (and `GET /`) -> `Ok.`
- `GET /metrics`: Prometheus metrics of the queries (metrics.py); not part of ClickHouse's interface.
- `GET /?query=...` and `POST /`: the SQL is the `query` URL parameter, then a newline, then the
  body; or, for `multipart/form-data` (clickhouse-connect's choice when bound values exceed 4096
  characters), the `query` form field. `param_<name>` (URL or form) are bound values for
  `{name:Type}` placeholders, passed to chDB as server-side parameters; other non-transport
  parameters are settings for that query (see protocol.TRANSPORT_PARAMS). Requests become
  statements in protocol.py; bytes are encoded and decoded in codec.py.
- Inserts `INSERT INTO t [(cols)] FORMAT X` followed by data, chunked, with `Content-Encoding`
  lz4 / zstd / gzip / deflate / br: the body is decoded as it arrives into a spool file (tmpfs
  where there is one) and loaded with `INSERT ... FROM INFILE ... FORMAT X`.
- Sessions (`session_id`, `session_timeout`, `close_session`): see engine.py.
- Responses: the result bytes with `X-ClickHouse-Format`, `X-ClickHouse-Summary`,
  `X-ClickHouse-Query-Id`, `X-ClickHouse-Timezone` and, as on ClickHouse 25.11+, an
  `X-ClickHouse-Exception-Tag` on every answer; errors are non-2xx with
  `X-ClickHouse-Exception-Code` and the body `Code: N. DB::Exception: ...`, which
  clickhouse-connect raises as `DatabaseError`.
- Reads are streamed: blocks are pulled from chDB one at a time and sent with chunked transfer
  encoding, so the server holds a block or two of a large result, never all of it (uvicorn's flow
  control stops the pulling while the client is slow). As on ClickHouse, which flushes each block,
  the answer starts as the blocks come (a result of one block goes out whole); with
  `wait_end_of_query=1` (clickhouse-connect's `query` sends it) it is held instead, and a result
  that ends within the first MiB goes out as one plain response (past that MiB the rest is
  streamed, where ClickHouse would spool it to disk). An error after the first bytes were sent is
  written into the body in ClickHouse's 25.11 form (`__exception__`, the response's tag, the
  message, its length, the tag), which clickhouse-connect raises as `StreamFailureError` (a
  `DatabaseError`).
- Response compression, as ClickHouse does it: only when the request has
  `enable_http_compression=1` and an `Accept-Encoding` of lz4, zstd, gzip or deflate (the client's
  order wins); one frame/stream over the whole body, flushed per block.
- Optional credentials (auth.py): basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key`, or
  `user`/`password` URL parameters.

- A GET is read-only, as on ClickHouse: a statement that writes answers READONLY (code 164).
- External data tables (multipart files with `<name>_structure`/`_types`/`_format`): protocol.py.
- Results in formats whose blocks do not concatenate (JSON, Arrow, Parquet, CSVWithNames, ...)
  are run whole and sent as one document (engine.STREAMED_FORMATS lists those that stream).
- Statements that return nothing (DDL, INSERT, SET) get no `X-ClickHouse-Format`, as on ClickHouse
  (clickhouse-connect's `command` then returns a QuerySummary).

Not implemented: ClickHouse's native block compression (`compress=1`, `decompress=1`), progress
headers while a query runs, `wait_end_of_query` buffering past the first MiB, the client's
`query_id` inside the engine (chDB's query API takes none, so `queryID()` and `system.processes` show the engine's own
ids; the client's is echoed in `X-ClickHouse-Query-Id`, and `KILL QUERY WHERE query_id = '...'`
stops a streamed read by it: kills.py). A client that goes away mid-result cancels the query.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from services.embedded_store import codec
from services.embedded_store.auth import Credentials, authentication_failed
from services.embedded_store.config import StoreSettings
from services.embedded_store.engine import Outcome, ResultStream, StoreEngine
from services.embedded_store.errors import (
    BAD_ARGUMENTS,
    STD_EXCEPTION,
    BodyTooLarge,
    FormRefused,
    StoreQueryError,
    UnsupportedEncoding,
)
from services.embedded_store.metrics import StoreMetrics
from services.embedded_store.protocol import parse_request, query_items

log = logging.getLogger(__name__)

# With wait_end_of_query=1, a result that ends within this many bytes is sent as one response with a
# Content-Length, and an error before then is a status.
_STREAM_AFTER_BYTES = 1024 * 1024
_TRUE = ("1", "true")

# The statuses ClickHouse's exceptionCodeToHTTPStatus gives these codes; every other code is 500.
# clickhouse-connect raises DatabaseError for any of them, but retries 429/503/504, so the codes
# ClickHouse answers with 503 (SOCKET_TIMEOUT, CANNOT_OPEN_FILE) stay 500 here.
_BAD_REQUEST_CODES = (6, 8, 15, 25, 26, 27, 36, 38, 41, 44, 53, 62, 72, 117, 321, 376, 427)  # parse, syntax, ...
_NOT_FOUND_CODES = (46, 47, 50, 56, 57, 60, 63, 73, 81, 115, 336, 511)  # UNKNOWN_TABLE, _FUNCTION, _SETTING, ...
_STATUS_FOR_CODE = {
    **dict.fromkeys(_BAD_REQUEST_CODES, 400),
    **dict.fromkeys(_NOT_FOUND_CODES, 404),
    48: 501,   # NOT_IMPLEMENTED
    159: 408,  # TIMEOUT_EXCEEDED
    192: 403, 193: 403, 516: 403,  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED
}

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8",
}


def _as_query_error(error: Exception, query_id: str, settings: StoreSettings) -> tuple[StoreQueryError, int | None]:
    """The ClickHouse error a failed request answers with, and a status where the code's own does not fit."""
    if isinstance(error, StoreQueryError):
        return error, None
    if isinstance(error, BodyTooLarge):
        return StoreQueryError.build(
            BAD_ARGUMENTS, "BAD_ARGUMENTS",
            f"The request body is larger than this store accepts ({settings.max_body_bytes} bytes, "
            "STORE_MAX_BODY_BYTES); send smaller insert batches."), 413
    if isinstance(error, FormRefused):
        return StoreQueryError.build(
            BAD_ARGUMENTS, "BAD_ARGUMENTS",
            f"The multipart request was refused ({error.detail}); this store takes query and param_* "
            "fields only, not external data files."), None
    if isinstance(error, (UnsupportedEncoding, UnicodeDecodeError, ValueError)):
        return StoreQueryError.build(BAD_ARGUMENTS, "BAD_ARGUMENTS", f"{error}."), None
    # A bug or a broken engine: the client must get an error, not a dropped connection.
    log.error("query %s failed unexpectedly", query_id, exc_info=error)
    return StoreQueryError.build(STD_EXCEPTION, "STD_EXCEPTION", str(error)), None


def error_response(error: Exception, query_id: str, settings: StoreSettings) -> Response:
    """The one place a failed request becomes an HTTP answer."""
    if isinstance(error, ClientDisconnect):
        log.info("query %s: the client went away before sending the whole request", query_id)
        return Response(status_code=400)
    query_error, status = _as_query_error(error, query_id, settings)
    return PlainTextResponse(
        query_error.message.rstrip("\n") + "\n",
        status_code=status or _STATUS_FOR_CODE.get(query_error.code, 500),
        headers={"X-ClickHouse-Exception-Code": str(query_error.code), "X-ClickHouse-Query-Id": query_id,
                 "X-ClickHouse-Exception-Tag": _exception_tag()},
    )


def _exception_tag() -> str:
    """A fresh tag per response (16 lowercase letters and digits, as ClickHouse's): the result's own
    bytes cannot be mistaken for the exception block it frames."""
    return secrets.token_hex(8)


class _Puller:
    """Pulls a ResultStream's blocks on the engine threads, one call at a time, and closes it
    after any pull still running (a cancelled await does not stop the thread under it)."""

    def __init__(self, stream: ResultStream, executor: ThreadPoolExecutor):
        self.stream = stream
        self._executor = executor
        self._pending: Future | None = None

    async def next(self) -> bytes | None:
        self._pending = self._executor.submit(self.stream.next_chunk)
        return await asyncio.wrap_future(self._pending)

    def close_soon(self) -> None:
        def close(*_: object) -> None:
            try:
                self._executor.submit(self.stream.close)
            except RuntimeError:  # the executor is shut down: the server is stopping
                self.stream.close()

        if self._pending is not None and not self._pending.done():
            self._pending.add_done_callback(close)
        else:
            close()


def create_app(settings: StoreSettings, engine: StoreEngine) -> Starlette:
    """The HTTP app over an opened engine (the caller owns the data-folder lock and the engine)."""
    credentials = Credentials(settings)
    executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="chdb")
    metrics = StoreMetrics()

    async def ping(_: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        if request.method == "GET" and not request.query_params.get("query"):
            return PlainTextResponse("Ok.\n")
        if not credentials.accepts(request.headers, request.query_params):
            return error_response(authentication_failed(), query_id, settings)
        parsed = None
        try:
            parsed = await parse_request(request.method, query_items(request.scope["query_string"]), request.headers,
                                         request.stream(), max_body_bytes=settings.max_body_bytes,
                                         spool_dir=settings.spool_path)
            request.state.statement = parsed.statement
            outcome = await asyncio.get_running_loop().run_in_executor(executor, engine.start, parsed.statement)
        except Exception as error:  # noqa: BLE001 - every failure is answered by error_response
            return error_response(error, query_id, settings)
        finally:
            if parsed is not None:
                parsed.discard()
        encoding = codec.response_encoding(request.headers.get("accept-encoding"),
                                           request.query_params.get("enable_http_compression"))
        if isinstance(outcome, Outcome):
            request.state.summary = outcome.summary
            output_format = outcome.output_format if outcome.has_output else None
            return _whole_response(outcome.body, output_format, outcome.summary, query_id, encoding)
        request.state.stream = outcome
        waits = request.query_params.get("wait_end_of_query", "").lower() in _TRUE
        return await _result_response(outcome, query_id, encoding, _STREAM_AFTER_BYTES if waits else 0)

    def _headers(output_format: str | None, summary: dict[str, str], query_id: str,
                 encoding: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": _CONTENT_TYPES.get(output_format or "TabSeparated", "application/octet-stream"),
            "X-ClickHouse-Summary": codec.summary_header(summary),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": engine.timezone,
            "X-ClickHouse-Server-Display-Name": "imagesearch-store",
            "X-ClickHouse-Exception-Tag": _exception_tag(),
        }
        if output_format:  # ClickHouse names a format only for statements that return a result
            headers["X-ClickHouse-Format"] = output_format
        if encoding:
            headers["Content-Encoding"] = encoding
        return headers

    def _whole_response(body: bytes, output_format: str | None, summary: dict[str, str], query_id: str,
                        encoding: str | None) -> Response:
        encoder = codec.body_encoder(encoding)
        body = encoder.encode(body) + encoder.finish()
        return Response(body, headers=_headers(output_format, summary, query_id, encoding))

    async def _result_response(stream: ResultStream, query_id: str, encoding: str | None,
                               hold_bytes: int) -> Response:
        """A result that ends within its first block, or within `hold_bytes`, as one response (an error
        until then is a status); past that, streamed block by block."""
        puller = _Puller(stream, executor)
        buffered: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await puller.next()
                if chunk is None:
                    return _whole_response(b"".join(buffered), stream.output_format, stream.summary(), query_id,
                                           encoding)
                buffered.append(chunk)
                size += len(chunk)
                # One block more than the hold: a result of one block (most answers) still goes out
                # whole, with a Content-Length, instead of as a stream of one chunk.
                if size >= hold_bytes and len(buffered) > 1:
                    break
        except StoreQueryError as error:
            return error_response(error, query_id, settings)
        except BaseException:
            puller.close_soon()
            raise

        headers = _headers(stream.output_format, stream.summary(), query_id, encoding)
        tag = headers["X-ClickHouse-Exception-Tag"]

        async def body() -> AsyncIterator[bytes]:
            encoder = codec.body_encoder(encoding)
            encode = encoder.encode
            try:
                for chunk in buffered:
                    yield encode(chunk)
                buffered.clear()
                try:
                    while (chunk := await puller.next()) is not None:
                        yield encode(chunk)
                except StoreQueryError as error:
                    log.info("query %s failed after its result began: %s", query_id, error.message.splitlines()[0])
                    yield encode(codec.exception_block(tag, error.message))
                if tail := encoder.finish():
                    yield tail
            finally:
                puller.close_soon()

        return StreamingResponse(body(), headers=headers)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        yield
        executor.shutdown(wait=True, cancel_futures=False)

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET", "HEAD"]), Route("/metrics", metrics.endpoint, methods=["GET"]),
                Route("/", metrics.wrap(query), methods=["GET", "POST"])],
        lifespan=lifespan,
    )
