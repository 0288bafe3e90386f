"""Bytes on the wire, both directions: request body decoders and response encoders for the HTTP
content encodings, and the pieces of ClickHouse's formats the store writes itself (an empty Native
block, the X-ClickHouse-Summary header, the exception block inside a begun result).

Request bodies may carry lz4 (one LZ4 frame per block), zstd, gzip, deflate or br; frames and gzip
members may be concatenated. Responses are one frame/stream over the whole body, flushed per block,
so a client reading a streamed result can decode each block as it arrives.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Protocol

from services.embedded_store.errors import UnsupportedEncoding

# The query text is bytes on the wire (a binary literal need not be UTF-8): it becomes a str with the
# bytes that are not UTF-8 kept as surrogate escapes, and goes back to the same bytes for chDB.
SQL_ERRORS = "surrogateescape"


class BodyDecoder(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class BodyEncoder(Protocol):
    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


# -- request bodies -----------------------------------------------------------------------------

class _Identity:
    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class _Members:
    """Back-to-back complete frames or members: clickhouse-connect sends one LZ4 or zstd frame per
    insert block, and gzip allows concatenated members. `factory` makes one decompressor with
    `decompress`, `eof` and `unused_data` (lz4, zstandard and zlib all have that shape)."""

    def __init__(self, factory: Callable[[], object], flush_tail: bool = False):
        self._factory = factory
        self._current = factory()
        self._flush_tail = flush_tail  # zlib may hold back bytes until flush()

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
        return self._current.flush() if self._flush_tail else b""


class _Brotli:
    def __init__(self):
        import brotli

        self._current = brotli.Decompressor()

    def feed(self, chunk: bytes) -> bytes:
        return self._current.process(chunk)

    def finish(self) -> bytes:
        return b""


def _lz4_frames() -> _Members:
    import lz4.frame

    return _Members(lz4.frame.LZ4FrameDecompressor)


def _zstd_frames() -> _Members:
    import zstandard

    return _Members(zstandard.ZstdDecompressor().decompressobj)


def _zlib_members(wbits: int) -> _Members:
    return _Members(lambda: zlib.decompressobj(wbits), flush_tail=True)


_DECODERS: dict[str, Callable[[], BodyDecoder]] = {
    "": _Identity,
    "identity": _Identity,
    "lz4": _lz4_frames,
    "zstd": _zstd_frames,
    "gzip": lambda: _zlib_members(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _zlib_members(zlib.MAX_WBITS | 16),
    "deflate": lambda: _zlib_members(zlib.MAX_WBITS),
    "br": _Brotli,
}


def body_decoder(content_encoding: str | None) -> BodyDecoder:
    """A streaming decoder with `feed(chunk) -> bytes` and `finish() -> bytes`."""
    factory = _DECODERS.get((content_encoding or "").strip().lower())
    if factory is None:
        raise UnsupportedEncoding(f"Unknown Content-Encoding '{content_encoding}'; this store accepts lz4, zstd, "
                                  "gzip, deflate and br.")
    return factory()


# -- responses ----------------------------------------------------------------------------------

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


class _IdentityEncoder:
    def encode(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


ENCODERS: dict[str, Callable[[], BodyEncoder]] = {
    "lz4": _Lz4Encoder,
    "zstd": _ZstdEncoder,
    "gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "deflate": lambda: _ZlibEncoder(zlib.MAX_WBITS),
}


def body_encoder(encoding: str | None) -> BodyEncoder:
    """The encoder for a `response_encoding` answer (None: the bytes as they are)."""
    return ENCODERS[encoding]() if encoding else _IdentityEncoder()


def response_encoding(accept_encoding: str | None, enable_http_compression: str | None) -> str | None:
    """The Content-Encoding to answer with: ClickHouse compresses a response only when asked twice,
    by `enable_http_compression=1` and by `Accept-Encoding`."""
    if enable_http_compression not in ("1", "true"):
        return None
    for item in (accept_encoding or "").split(","):
        name, _, quality = item.strip().lower().partition(";")
        if name in ENCODERS and quality.replace(" ", "") not in ("q=0", "q=0.0"):
            return name
    return None


# -- ClickHouse wire-format pieces --------------------------------------------------------------

def varuint(value: int) -> bytes:
    """ClickHouse's unsigned LEB128 integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def native_header(columns: list[tuple[str, str]]) -> bytes:
    """A Native block with these (name, type) columns and no rows."""
    out = bytearray(varuint(len(columns)) + varuint(0))
    for name, type_name in columns:
        for text in (name.encode(), type_name.encode()):
            out += varuint(len(text)) + text
    return bytes(out)


def summary(*, read_rows: int, read_bytes: int, written_rows: int = 0, written_bytes: int = 0,
            result_rows: int, result_bytes: int, elapsed_ns: int) -> dict[str, str]:
    """The counters of X-ClickHouse-Summary, as strings the way ClickHouse sends them."""
    return {"read_rows": str(read_rows), "read_bytes": str(read_bytes), "written_rows": str(written_rows),
            "written_bytes": str(written_bytes), "total_rows_to_read": str(read_rows),
            "result_rows": str(result_rows), "result_bytes": str(result_bytes), "elapsed_ns": str(elapsed_ns)}


def summary_header(counters: dict[str, str]) -> str:
    return json.dumps(counters, separators=(",", ":"))


def exception_block(tag: str, message: str) -> bytes:
    """An error written into a result that has already begun, as ClickHouse 25.11+ writes it."""
    text = message.rstrip("\n").encode() + b"\n"
    return (b"__exception__\r\n" + tag.encode() + b"\r\n" + text + str(len(text)).encode() + b" "
            + tag.encode() + b"\r\n__exception__\r\n")
