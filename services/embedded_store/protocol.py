"""The ClickHouse HTTP conventions the store server follows, independent of the web framework.

- URL parameters: a fixed set are transport parameters (`query`, `database`, `session_id`, ...),
  `param_<name>` are bound values, everything else is a setting for this query.
- The SQL is the `query` parameter, then a newline, then the body; an `INSERT ... FORMAT X`
  takes everything after its first line as data (ClickHouse skips blanks and one newline).
- Request bodies may carry `Content-Encoding` lz4 (one LZ4 frame per block), zstd, gzip,
  deflate or br; frames and gzip members may be concatenated.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

# Parameters that steer the HTTP exchange rather than the query (see DESIGN.md's probe notes
# and ClickHouse's HTTPHandler); they must never reach chDB as settings.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check",
    "close_session", "query_id", "quota_key", "user", "password", "role", "buffer_size",
    "wait_end_of_query", "compress", "decompress", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_zlib_compression_level",
    "client_protocol_version", "stacktrace", "http_native_compression_disable_checksumming_on_decompress",
    "cancel_http_readonly_queries_on_client_close", "http_response_buffer_size",
})

# `INSERT INTO <target> FORMAT <name>` on the first line, with data after it.
_INSERT_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>[^\n]+?)\s+FORMAT\s+(?P<format>\w+)[ \t\f]*(?:\r?\n|$)",
    re.IGNORECASE,
)
_NOT_A_TARGET_RE = re.compile(rb"\b(?:VALUES|SELECT|INFILE|WITH)\b", re.IGNORECASE)
_FORMAT_NAME_RE = re.compile(r"^\w+$")


@dataclass
class RequestParams:
    settings: dict[str, str]
    binds: dict[str, str]
    transport: dict[str, str]


def split_params(items: list[tuple[str, str]]) -> RequestParams:
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
    return InsertHead(match.group("target").decode("utf-8"), fmt, match.end())


class UnsupportedEncoding(ValueError):
    pass


class _Identity:
    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class _Frames:
    """Back-to-back complete frames (clickhouse-connect sends one LZ4 or zstd frame per insert block)."""

    def __init__(self, factory):
        self._factory = factory
        self._current = factory()

    def feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            out.append(self._current.decompress(chunk))
            if self._current.eof:
                chunk = self._current.unused_data
                self._current = self._factory()
            else:
                chunk = b""
        return b"".join(out)

    def finish(self) -> bytes:
        return b""


def _lz4_frames() -> _Frames:
    import lz4.frame

    return _Frames(lz4.frame.LZ4FrameDecompressor)


def _zstd_frames() -> _Frames:
    import zstandard

    return _Frames(zstandard.ZstdDecompressor().decompressobj)


class _ZlibMembers:
    def __init__(self, wbits: int):
        self._wbits = wbits
        self._current = zlib.decompressobj(wbits)

    def feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            out.append(self._current.decompress(chunk))
            if self._current.eof:
                chunk = self._current.unused_data
                self._current = zlib.decompressobj(self._wbits)
            else:
                chunk = b""
        return b"".join(out)

    def finish(self) -> bytes:
        return self._current.flush()


class _Brotli:
    def __init__(self):
        import brotli

        self._current = brotli.Decompressor()

    def feed(self, chunk: bytes) -> bytes:
        return self._current.process(chunk)

    def finish(self) -> bytes:
        return b""


def body_decoder(content_encoding: str | None):
    """A streaming decoder with `feed(chunk) -> bytes` and `finish() -> bytes`."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding == "lz4":
        return _lz4_frames()
    if encoding == "zstd":
        return _zstd_frames()
    if encoding in ("gzip", "x-gzip"):
        return _ZlibMembers(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _ZlibMembers(zlib.MAX_WBITS)
    if encoding == "br":
        return _Brotli()
    raise UnsupportedEncoding(f"Unknown Content-Encoding '{content_encoding}'; this store accepts lz4, zstd, "
                              "gzip, deflate and br.")
