"""The embedded store's HTTP server: the subset of the ClickHouse HTTP interface that
`clickhouse-connect` (HTTP) uses, in front of one chDB data folder.

Implemented:

- `GET /ping` (and `GET /`) -> `Ok.`
- `GET /?query=...` and `POST /`: the SQL is the `query` URL parameter, then a newline, then the
  body; or, for `multipart/form-data` (clickhouse-connect's choice when bound values exceed 4096
  characters), the `query` form field. `param_<name>` (URL or form) are bound values for
  `{name:Type}` placeholders, passed to chDB as server-side parameters; other non-transport
  parameters are settings for that query (see protocol.TRANSPORT_PARAMS).
- Inserts `INSERT INTO t [(cols)] FORMAT X` followed by data, chunked, with `Content-Encoding`
  lz4 / zstd / gzip / deflate / br: the body is decoded as it arrives into a spool file (tmpfs
  where there is one) and loaded with `INSERT ... FROM INFILE ... FORMAT X`.
- Sessions (`session_id`, `session_timeout`, `close_session`): see engine.py.
- Responses: the result bytes with `X-ClickHouse-Format`, `X-ClickHouse-Summary`,
  `X-ClickHouse-Query-Id`, `X-ClickHouse-Timezone`; errors are non-2xx with
  `X-ClickHouse-Exception-Code` and the body `Code: N. DB::Exception: ...`, which
  clickhouse-connect raises as `DatabaseError`.
- Reads are streamed: blocks are pulled from chDB one at a time and sent with chunked transfer
  encoding, so the server holds a block or two of a large result, never all of it (uvicorn's flow
  control stops the pulling while the client is slow). A result that ends within the first MiB
  goes out as one plain response. An error after the first bytes were sent is written into the
  body in ClickHouse's 25.11 form (`__exception__`, the `X-ClickHouse-Exception-Tag` tag, the
  message), which clickhouse-connect raises as `DatabaseError`.
- Response compression, as ClickHouse does it: only when the request has
  `enable_http_compression=1` and an `Accept-Encoding` of lz4, zstd, gzip or deflate (the client's
  order wins); one frame/stream over the whole body, flushed per block.
- Optional credentials: basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key`, or `user`/`password`
  URL parameters.

Not implemented: ClickHouse's native block compression (`compress=1`, `decompress=1`), progress
headers while a query runs, `wait_end_of_query` buffering, external data tables, readonly GET
semantics. A client that goes away mid-result cancels the query.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import secrets
import tempfile
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from services.embedded_store.config import StoreSettings
from services.embedded_store.engine import (
    BAD_ARGUMENTS,
    STD_EXCEPTION,
    Outcome,
    ResultStream,
    Statement,
    StoreEngine,
    StoreQueryError,
)
from services.embedded_store.protocol import InsertHead, UnsupportedEncoding, body_decoder, match_insert, split_params

log = logging.getLogger(__name__)

# Enough decoded bytes to see an insert's first line; more than any INSERT head needs.
_HEAD_BYTES = 64 * 1024
# A result that ends within this many bytes is sent as one response with a Content-Length.
_STREAM_AFTER_BYTES = 1024 * 1024
AUTHENTICATION_FAILED = 516

# ClickHouse answers these codes with 4xx; the rest are 500. clickhouse-connect raises
# DatabaseError for any of them; only 429/503/504 would be retried, so none is used here.
_STATUS_FOR_CODE = {
    62: 400,   # SYNTAX_ERROR
    47: 400,   # UNKNOWN_IDENTIFIER
    46: 400,   # UNKNOWN_FUNCTION
    36: 400,   # BAD_ARGUMENTS
    115: 400,  # UNKNOWN_SETTING
    456: 400,  # UNKNOWN_QUERY_PARAMETER
    457: 400,  # BAD_QUERY_PARAMETER
    60: 404,   # UNKNOWN_TABLE
    81: 404,   # UNKNOWN_DATABASE
    413: 413,  # request body too large (our own use of the status)
    516: 403,  # AUTHENTICATION_FAILED
}

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8",
}


class BodyTooLarge(Exception):
    pass


class _Lz4Encoder:
    def __init__(self):
        import lz4.frame

        # One frame over the whole body: clickhouse-connect reads it with one LZ4FrameDecompressor.
        self._compressor = lz4.frame.LZ4FrameCompressor(auto_flush=True)
        self._started = False

    def encode(self, data: bytes) -> bytes:
        head = b""
        if not self._started:
            head, self._started = self._compressor.begin(), True
        return head + self._compressor.compress(data)

    def finish(self) -> bytes:
        head = b"" if self._started else self._compressor.begin()
        return head + self._compressor.flush()


class _ZstdEncoder:
    def __init__(self):
        import zstandard

        self._compressor = zstandard.ZstdCompressor(level=1).compressobj()
        self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(self._flush_block)

    def finish(self) -> bytes:
        return self._compressor.flush()


class _ZlibEncoder:
    def __init__(self, wbits: int):
        self._compressor = zlib.compressobj(1, zlib.DEFLATED, wbits)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()


_ENCODERS: dict[str, Callable[[], object]] = {
    "lz4": _Lz4Encoder,
    "zstd": _ZstdEncoder,
    "gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "deflate": lambda: _ZlibEncoder(zlib.MAX_WBITS),
}


def response_encoding(accept_encoding: str | None, enable_http_compression: str | None) -> str | None:
    """The Content-Encoding to answer with: ClickHouse compresses a response only when asked twice,
    by `enable_http_compression=1` and by `Accept-Encoding`."""
    if enable_http_compression not in ("1", "true"):
        return None
    for item in (accept_encoding or "").split(","):
        name, _, quality = item.strip().lower().partition(";")
        if name in _ENCODERS and quality.replace(" ", "") not in ("q=0", "q=0.0"):
            return name
    return None


def exception_block(tag: str, message: str) -> bytes:
    """An error written into a result that has already begun, as ClickHouse 25.11+ writes it."""
    text = message.rstrip("\n").encode() + b"\n"
    return (b"__exception__\r\n" + tag.encode() + b"\r\n" + text + str(len(text)).encode() + b" "
            + tag.encode() + b"\r\n__exception__\r\n")


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


def _error_response(error: StoreQueryError, query_id: str, status: int | None = None) -> Response:
    status = status or _STATUS_FOR_CODE.get(error.code, 500)
    return PlainTextResponse(
        error.message.rstrip("\n") + "\n",
        status_code=status,
        headers={"X-ClickHouse-Exception-Code": str(error.code), "X-ClickHouse-Query-Id": query_id},
    )


class _Credentials:
    def __init__(self, settings: StoreSettings):
        self.user = settings.user or "default"
        self.password = settings.password.get_secret_value() if settings.password else ""
        self.required = settings.auth_required

    def accepts(self, request: Request) -> bool:
        if not self.required:
            return True
        user, password = None, None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
        elif "x-clickhouse-user" in request.headers:
            user = request.headers["x-clickhouse-user"]
            password = request.headers.get("x-clickhouse-key", "")
        elif "user" in request.query_params:
            user = request.query_params["user"]
            password = request.query_params.get("password", "")
        if user is None:
            return False
        return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            (password or "").encode(), self.password.encode())


class _SpooledInsert:
    """An insert whose data has been decoded into a temp file."""

    def __init__(self, head: InsertHead, path: Path):
        self.head = head
        self.path = path

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def _read_body(request: Request, prefix: bytes, limit: int, spool_dir: Path) -> bytes | _SpooledInsert:
    """Decode the body as it streams in: SQL text, or an insert's data spooled to a file."""
    decoder = body_decoder(request.headers.get("content-encoding"))
    received = 0
    buffered = bytearray(prefix)
    spool = None
    head = None
    decided = False
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge
            data = decoder.feed(chunk)
            if spool is not None:
                spool.write(data)
                continue
            buffered += data
            # The first non-blank line decides whether this is an insert with data after it.
            if not decided and (len(buffered) >= _HEAD_BYTES or b"\n" in buffered.lstrip()):
                head = match_insert(bytes(buffered[:_HEAD_BYTES]))
                decided = True
                if head is not None:
                    spool = tempfile.NamedTemporaryFile(dir=spool_dir, prefix="store-insert-", suffix=".data",
                                                        delete=False)
                    spool.write(buffered[head.data_offset:])
                    buffered.clear()
        tail = decoder.finish()
        if spool is None and not decided:
            head = match_insert(bytes(buffered[:_HEAD_BYTES]) + tail[:_HEAD_BYTES])
            if head is not None:
                spool = tempfile.NamedTemporaryFile(dir=spool_dir, prefix="store-insert-", suffix=".data",
                                                    delete=False)
                spool.write(buffered[head.data_offset:])
        if spool is not None:
            spool.write(tail)
            spool.close()
            return _SpooledInsert(head, Path(spool.name))
        return bytes(buffered) + tail
    except BaseException:
        if spool is not None:
            spool.close()
            os.unlink(spool.name)
        raise


def create_app(settings: StoreSettings, engine: StoreEngine) -> Starlette:
    """The HTTP app over an opened engine (the caller owns the data-folder lock and the engine)."""
    credentials = _Credentials(settings)
    executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="chdb")
    spool_dir = settings.spool_path

    async def ping(_: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        if request.method == "GET" and not request.query_params.get("query"):
            return PlainTextResponse("Ok.\n")
        if not credentials.accepts(request):
            return _error_response(StoreQueryError.build(
                AUTHENTICATION_FAILED, "AUTHENTICATION_FAILED",
                "Authentication failed: password is incorrect, or there is no user with such name."), query_id)
        spooled = None
        try:
            items = list(request.query_params.multi_items())
            content_type = request.headers.get("content-type", "")
            sql_parts: list[bytes] = []
            if request.method == "POST" and content_type.startswith("multipart/form-data"):
                form = await request.form(max_files=0, max_fields=10_000, max_part_size=settings.max_body_bytes)
                fields = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
                url_query = dict(items).get("query")
                if url_query:
                    sql_parts.append(url_query.encode())
                sql_parts.extend(value.encode() for name, value in fields if name == "query")
                items = [item for item in items if item[0] != "query"]
                items += [(name, value) for name, value in fields if name != "query"]
                body = b"\n".join(sql_parts)
            elif request.method == "POST":
                url_query = request.query_params.get("query")
                prefix = (url_query + "\n").encode() if url_query else b""
                body = await _read_body(request, prefix, settings.max_body_bytes, spool_dir)
            else:
                body = request.query_params["query"].encode()
            params = split_params(items)
            if isinstance(body, _SpooledInsert):
                spooled = body
                sql = spooled.head.sql_from_file(str(spooled.path))
            else:
                sql = body.decode("utf-8").strip()
            if not sql:
                raise StoreQueryError.build(BAD_ARGUMENTS, "BAD_ARGUMENTS", "Empty query.")
            transport = params.transport
            statement = Statement(
                sql=sql,
                params=params.binds,
                settings=params.settings,
                database=transport.get("database") or None,
                session_id=transport.get("session_id") or None,
                session_timeout=float(transport["session_timeout"]) if transport.get("session_timeout") else None,
                close_session=transport.get("close_session") in ("1", "true"),
                default_format=transport.get("default_format") or None,
            )
            outcome = await asyncio.get_running_loop().run_in_executor(executor, engine.start, statement)
        except StoreQueryError as error:
            return _error_response(error, query_id)
        except ClientDisconnect:
            log.info("query %s: the client went away before sending the whole request", query_id)
            return Response(status_code=400)
        except HTTPException as error:  # starlette's multipart parser refusing the form
            return _error_response(StoreQueryError.build(
                BAD_ARGUMENTS, "BAD_ARGUMENTS",
                f"The multipart request was refused ({error.detail}); this store takes query and param_* "
                "fields only, not external data files."), query_id)
        except BodyTooLarge:
            return _error_response(StoreQueryError.build(
                BAD_ARGUMENTS, "BAD_ARGUMENTS",
                f"The request body is larger than this store accepts ({settings.max_body_bytes} bytes, "
                "STORE_MAX_BODY_BYTES); send smaller insert batches."), query_id, status=413)
        except (UnsupportedEncoding, UnicodeDecodeError, ValueError) as error:
            return _error_response(StoreQueryError.build(BAD_ARGUMENTS, "BAD_ARGUMENTS", f"{error}."), query_id)
        except Exception as error:  # noqa: BLE001 - the client must get an error, not a dropped connection
            log.exception("query %s failed unexpectedly", query_id)
            return _error_response(StoreQueryError.build(STD_EXCEPTION, "STD_EXCEPTION", str(error)), query_id)
        finally:
            if spooled is not None:
                spooled.discard()
        encoding = response_encoding(request.headers.get("accept-encoding"),
                                     request.query_params.get("enable_http_compression"))
        if isinstance(outcome, Outcome):
            return _whole_response(outcome.body, outcome.output_format, outcome.summary, query_id, encoding)
        return await _result_response(outcome, query_id, encoding)

    def _headers(output_format: str, summary: dict[str, str], query_id: str, encoding: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": _CONTENT_TYPES.get(output_format, "application/octet-stream"),
            "X-ClickHouse-Format": output_format,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": engine.timezone,
            "X-ClickHouse-Server-Display-Name": "imagesearch-store",
        }
        if encoding:
            headers["Content-Encoding"] = encoding
        return headers

    def _whole_response(body: bytes, output_format: str, summary: dict[str, str], query_id: str,
                        encoding: str | None) -> Response:
        if encoding:
            encoder = _ENCODERS[encoding]()
            body = encoder.encode(body) + encoder.finish()
        return Response(body, headers=_headers(output_format, summary, query_id, encoding))

    async def _result_response(stream: ResultStream, query_id: str, encoding: str | None) -> Response:
        """A small result as one response; a large one streamed block by block."""
        puller = _Puller(stream, executor)
        buffered: list[bytes] = []
        size = 0
        try:
            while size < _STREAM_AFTER_BYTES:
                chunk = await puller.next()
                if chunk is None:
                    return _whole_response(b"".join(buffered), stream.output_format, stream.summary(), query_id,
                                           encoding)
                buffered.append(chunk)
                size += len(chunk)
        except StoreQueryError as error:
            return _error_response(error, query_id)
        except BaseException:
            puller.close_soon()
            raise

        tag = secrets.token_hex(8)
        headers = _headers(stream.output_format, stream.summary(), query_id, encoding)
        headers["X-ClickHouse-Exception-Tag"] = tag

        async def body() -> AsyncIterator[bytes]:
            encoder = _ENCODERS[encoding]() if encoding else None
            encode = encoder.encode if encoder else (lambda data: data)
            try:
                for chunk in buffered:
                    yield encode(chunk)
                buffered.clear()
                try:
                    while (chunk := await puller.next()) is not None:
                        yield encode(chunk)
                except StoreQueryError as error:
                    log.info("query %s failed after its result began: %s", query_id, error.message.splitlines()[0])
                    yield encode(exception_block(tag, error.message))
                if encoder:
                    yield encoder.finish()
            finally:
                puller.close_soon()

        return StreamingResponse(body(), headers=headers)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        yield
        executor.shutdown(wait=True, cancel_futures=False)

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET", "HEAD"]), Route("/", query, methods=["GET", "POST"])],
        lifespan=lifespan,
    )
