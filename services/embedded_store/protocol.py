"""The ClickHouse HTTP conventions the store server follows, independent of the web framework:
how one request (method, URL parameters, headers, body) becomes a `Statement` for the engine.

- URL parameters: a fixed set are transport parameters (`query`, `database`, `session_id`, ...),
  `param_<name>` are bound values, everything else is a setting for this query.
- The SQL is the `query` parameter, then a newline, then the body; or, for `multipart/form-data`
  (clickhouse-connect's choice when bound values exceed 4096 characters), the `query` form field,
  with `param_<name>` form fields as bound values.
- External data tables (clickhouse-connect's `external_data`): files in that form, each a table
  named after its field, with `<name>_structure` or `<name>_types` and `<name>_format` parameters;
  each file is spooled to disk and loaded into a temporary table before the query runs (engine.py).
- Bound values are taken from the raw query string as bytes: a String is bytes in ClickHouse, so
  bytes that are not UTF-8 are passed on as `\\xHH` escapes, which ClickHouse's escaped value
  syntax reads back as those bytes.
- The query text is bytes too (a binary literal, clickhouse-connect's `$name$` binary parameters):
  bytes that are not UTF-8 are kept as surrogate escapes (codec.SQL_ERRORS), so the text can still be
  matched as a string here, and chdb_adapter.py gives chDB the very bytes that were sent.
- A GET is read-only (`readonly` on the statement), as on a real server.
- An `INSERT ... FORMAT X` takes everything after its first line as data (ClickHouse skips blanks
  and one newline): the body is decoded as it arrives into a spool file and loaded with
  `INSERT ... FROM INFILE`, so a large insert never sits in memory whole.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from services.embedded_store.codec import SQL_ERRORS, body_decoder
from services.embedded_store.errors import BAD_ARGUMENTS, BodyTooLarge, FormRefused, StoreQueryError

# Parameters that steer the HTTP exchange rather than the query (ClickHouse's HTTPHandler takes
# them for itself); they must never reach chDB as settings.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "close_session", "query_id", "quota_key", "user", "password", "role", "buffer_size",
    "wait_end_of_query", "compress", "decompress", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_zlib_compression_level",
    "client_protocol_version", "stacktrace", "http_native_compression_disable_checksumming_on_decompress",
    "cancel_http_readonly_queries_on_client_close", "http_response_buffer_size",
})
DEFAULT_FORMAT = "TabSeparated"
# Enough decoded bytes to see an insert's first line; more than any INSERT head needs.
HEAD_BYTES = 64 * 1024
# A form carries the query, its bound values and external data files; the counts are generous.
_MAX_FORM_FIELDS = 10_000
_MAX_FORM_FILES = 100
_EXTERNAL_SUFFIXES = ("_structure", "_types", "_format")

# `INSERT INTO <target> FORMAT <name>` on the first line, with data after it.
_INSERT_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>[^\n]+?)\s+FORMAT\s+(?P<format>\w+)[ \t\f]*(?:\r?\n|$)",
    re.IGNORECASE,
)
_NOT_A_TARGET_RE = re.compile(rb"\b(?:VALUES|SELECT|INFILE|WITH)\b", re.IGNORECASE)
_FORMAT_NAME_RE = re.compile(r"^\w+$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Statements that change the state of the handle they run on, beyond the query itself.
_STATEFUL_RE = re.compile(r"^(?:SET\b(?!\s+ROLE\b)|USE\b|CREATE\s+TEMPORARY\b|DROP\s+TEMPORARY\b)", re.IGNORECASE)
_LEADING_COMMENTS_RE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# chDB streams SELECTs only (DESCRIBE, SHOW, EXPLAIN: "Streaming query is not supported").
_READ_RE = re.compile(r"^\(*\s*(?:SELECT|WITH)\b", re.IGNORECASE)
# `WITH ... INSERT INTO ... SELECT` starts like a read but writes; a read that merely mentions the
# words is then run whole instead of streamed, which is still correct.
_WITH_INSERT_RE = re.compile(r"^WITH\b.*\bINSERT\s+INTO\b", re.IGNORECASE | re.DOTALL)


@dataclass
class ExternalTable:
    """An external data file of the request: loaded into temporary table `name` before the query."""

    name: str
    path: Path
    structure: str  # `name Type, ...`
    format: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Statement:
    """One request to run: SQL, bound values (names without `param_`), settings, session."""

    sql: str
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    session_id: str | None = None
    session_timeout: float | None = None
    close_session: bool = False
    default_format: str | None = None
    readonly: bool = False  # a GET: only reads (and SET/USE), as on a real server
    query_id: str | None = None
    external: list[ExternalTable] = field(default_factory=list)

    @property
    def output_format(self) -> str:
        match = TRAILING_FORMAT_RE.search(self.sql)
        if match:
            return match.group(1)
        return self.default_format or DEFAULT_FORMAT

    @property
    def is_stateful(self) -> bool:
        head = _LEADING_COMMENTS_RE.sub("", self.sql, count=1)
        return bool(_STATEFUL_RE.match(head))

    @property
    def is_read(self) -> bool:
        """A query whose result can be streamed block by block."""
        head = _LEADING_COMMENTS_RE.sub("", self.sql, count=1)
        return (bool(_READ_RE.match(head)) and not _WITH_INSERT_RE.match(head)
                and " INTO OUTFILE " not in self.sql.upper())


@dataclass
class RequestParams:
    settings: dict[str, str]
    binds: dict[str, str]
    transport: dict[str, str]


def split_params(items: Iterable[tuple[str, str]]) -> RequestParams:
    """Sort URL (and form) parameters into settings, bound values and transport parameters."""
    settings: dict[str, str] = {}
    binds: dict[str, str] = {}
    transport: dict[str, str] = {}
    for name, value in items:
        if name.startswith("param_"):
            binds[name[len("param_"):]] = value
        elif name in TRANSPORT_PARAMS:
            transport[name] = value
        else:
            settings[name] = value
    return RequestParams(settings, binds, transport)


@dataclass
class InsertHead:
    """The SQL part of an insert whose data follows in the body."""

    target: str  # table and optional column list, as the client wrote it
    format: str
    data_offset: int  # where the data starts in the buffer that was matched

    def sql_from_file(self, path: str) -> str:
        # The path is made by the server (a temp file name), never by the client.
        quoted = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return f"INSERT INTO {self.target} FROM INFILE {quoted} FORMAT {self.format}"


def match_insert(head: bytes) -> InsertHead | None:
    """If `head` starts an `INSERT ... FORMAT X` with data after it, say where the data starts."""
    match = _INSERT_RE.match(head)
    if not match or _NOT_A_TARGET_RE.search(match.group("target")):
        return None
    fmt = match.group("format").decode("ascii")
    if not _FORMAT_NAME_RE.match(fmt):
        return None
    return InsertHead(match.group("target").decode("utf-8", SQL_ERRORS), fmt, match.end())


@dataclass
class SpooledInsert:
    """An insert whose data has been decoded into a temp file."""

    head: InsertHead
    path: Path

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class ParsedRequest:
    """A request ready to run; `discard` must be called once the statement has run."""

    statement: Statement
    spooled: SpooledInsert | None = None

    def discard(self) -> None:
        if self.spooled is not None:
            self.spooled.discard()
        for table in self.statement.external:
            table.discard()


def query_items(raw_query_string: bytes) -> list[tuple[str, str]]:
    """The URL parameters, percent-decoded as bytes. A bound value that is not UTF-8 keeps its bytes
    as `\\xHH` escapes (ClickHouse reads bound values in its escaped syntax), the query text as
    surrogate escapes (SQL_ERRORS); any other parameter must be UTF-8 (UnicodeDecodeError otherwise)."""
    items = []
    for name, value in parse_qsl(raw_query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        name = name.encode("latin-1").decode("utf-8")
        errors = "backslashreplace" if name.startswith("param_") else SQL_ERRORS if name == "query" else "strict"
        items.append((name, value.encode("latin-1").decode("utf-8", errors)))
    return items


def _as_chunks(body: AsyncIterator[bytes] | bytes) -> AsyncIterator[bytes]:
    if not isinstance(body, bytes):
        return body

    async def whole() -> AsyncIterator[bytes]:
        if body:
            yield body

    return whole()


def _open_spool(spool_dir: Path):
    return tempfile.NamedTemporaryFile(dir=spool_dir, prefix="store-insert-", suffix=".data", delete=False)


async def read_body(chunks: AsyncIterator[bytes], prefix: bytes, content_encoding: str | None, limit: int,
                    spool_dir: Path) -> bytes | SpooledInsert:
    """Decode the body as it streams in: SQL text, or an insert's data spooled to a file.
    `limit` applies to the bytes as sent (before decoding)."""
    decoder = body_decoder(content_encoding)
    received = 0
    buffered = bytearray(prefix)
    spool = None
    head = None
    decided = False
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge
            data = decoder.feed(chunk)
            if spool is not None:
                spool.write(data)
                continue
            buffered += data
            # The first non-blank line decides whether this is an insert with data after it.
            if not decided and (len(buffered) >= HEAD_BYTES or b"\n" in buffered.lstrip()):
                head = match_insert(bytes(buffered[:HEAD_BYTES]))
                decided = True
                if head is not None:
                    spool = _open_spool(spool_dir)
                    spool.write(buffered[head.data_offset:])
                    buffered.clear()
        tail = decoder.finish()
        if spool is None and not decided:
            head = match_insert(bytes(buffered[:HEAD_BYTES]) + tail[:HEAD_BYTES])
            if head is not None:
                spool = _open_spool(spool_dir)
                spool.write(buffered[head.data_offset:])
        if spool is not None:
            spool.write(tail)
            spool.close()
            return SpooledInsert(head, Path(spool.name))
        return bytes(buffered) + tail
    except BaseException:
        if spool is not None:
            spool.close()
            os.unlink(spool.name)
        raise


async def read_form(headers: Headers, chunks: AsyncIterator[bytes], max_part_size: int,
                    spool_dir: Path) -> tuple[list[tuple[str, str]], dict[str, Path]]:
    """The text fields of a multipart body, in order, and its files (external data) spooled to disk
    by field name. Raises FormRefused."""
    try:
        form = await MultiPartParser(headers, chunks, max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS,
                                     max_part_size=max_part_size).parse()
    except MultiPartException as error:
        raise FormRefused(error.message) from None
    fields, files = [], {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields.append((name, value))
                continue
            if name in files or not _IDENTIFIER_RE.match(name):
                raise FormRefused(f"external data file '{name}' needs a unique table name of letters, digits and _")
            with tempfile.NamedTemporaryFile(dir=spool_dir, prefix="store-external-", delete=False) as out:
                files[name] = Path(out.name)
                shutil.copyfileobj(value.file, out)
    except BaseException:
        for path in files.values():
            path.unlink(missing_ok=True)
        raise
    finally:
        await form.close()
    return fields, files


def _external_tables(files: dict[str, Path], items: list[tuple[str, str]]) -> tuple[list[ExternalTable], list]:
    """External tables from the spooled files and their `<name>_structure|_types|_format` parameters,
    and the parameters that are left (those are not settings)."""
    described = {name + suffix for name in files for suffix in _EXTERNAL_SUFFIXES}
    values = dict(item for item in items if item[0] in described)
    tables = []
    for name, path in files.items():
        structure = values.get(name + "_structure")
        if not structure and values.get(name + "_types"):
            # ClickHouse names the columns of a `_types` table _1, _2, ...
            types = [t.strip() for t in values[name + "_types"].split(",")]
            structure = ", ".join(f"_{i} {t}" for i, t in enumerate(types, 1))
        if not structure:
            raise FormRefused(f"external data '{name}' needs a {name}_structure or {name}_types parameter")
        fmt = values.get(name + "_format") or DEFAULT_FORMAT
        if not _FORMAT_NAME_RE.match(fmt):
            raise FormRefused(f"external data '{name}' has a bad format name")
        tables.append(ExternalTable(name, path, structure, fmt))
    return tables, [item for item in items if item[0] not in described]


def _statement(sql: str, items: list[tuple[str, str]], method: str) -> Statement:
    if not sql:
        raise StoreQueryError.build(BAD_ARGUMENTS, "BAD_ARGUMENTS", "Empty query.")
    params = split_params(items)
    transport = params.transport
    return Statement(
        sql=sql,
        params=params.binds,
        settings=params.settings,
        database=transport.get("database") or None,
        session_id=transport.get("session_id") or None,
        session_timeout=float(transport["session_timeout"]) if transport.get("session_timeout") else None,
        close_session=transport.get("close_session") in ("1", "true"),
        default_format=transport.get("default_format") or None,
        readonly=method == "GET",
        query_id=transport.get("query_id") or None,
    )


async def parse_request(method: str, query_items: Iterable[tuple[str, str]],
                        headers: Mapping[str, str] | Headers, body: AsyncIterator[bytes] | bytes, *,
                        max_body_bytes: int, spool_dir: Path) -> ParsedRequest:
    """Turn one request into a statement. Raises StoreQueryError (empty query), BodyTooLarge,
    FormRefused, UnsupportedEncoding, UnicodeDecodeError or ValueError (a bad parameter)."""
    headers = headers if isinstance(headers, Headers) else Headers(headers=dict(headers))
    items = list(query_items)
    url_query = dict(items).get("query")
    if method == "POST" and headers.get("content-type", "").startswith("multipart/form-data"):
        fields, files = await read_form(headers, _as_chunks(body), max_body_bytes, spool_dir)
        try:
            sql_parts = [url_query] if url_query else []
            sql_parts += [value for name, value in fields if name == "query"]
            items = [item for item in items if item[0] != "query"]
            items += [(name, value) for name, value in fields if name != "query"]
            external, items = _external_tables(files, items)
            statement = _statement("\n".join(sql_parts).strip(), items, method)
        except BaseException:
            for path in files.values():
                path.unlink(missing_ok=True)
            raise
        statement.external = external
        return ParsedRequest(statement)
    if method != "POST":
        return ParsedRequest(_statement((url_query or "").strip(), items, method))
    prefix = (url_query + "\n").encode("utf-8", SQL_ERRORS) if url_query else b""
    read = await read_body(_as_chunks(body), prefix, headers.get("content-encoding"), max_body_bytes, spool_dir)
    if isinstance(read, SpooledInsert):
        try:
            return ParsedRequest(_statement(read.head.sql_from_file(str(read.path)), items, method), read)
        except BaseException:
            read.discard()
            raise
    return ParsedRequest(_statement(read.decode("utf-8", SQL_ERRORS).strip(), items, method))
