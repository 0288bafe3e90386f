"""What running a statement gives back: a whole `Outcome`, or a read's `ResultStream` pulled from
chDB one block at a time, so a large result never sits in memory whole."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.embedded_store import codec
from services.embedded_store.chdb_adapter import ChdbConnection, StreamCursor
from services.embedded_store.errors import QUERY_WAS_CANCELLED, StoreQueryError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    body: bytes
    output_format: str
    summary: dict[str, str]
    has_output: bool = True  # False for statements that return nothing (no X-ClickHouse-Format then)


class ResultStream:
    """A read's result. It owns its handle (and, in a session, the session's lock) until it is
    finished or closed; `next_chunk` blocks and must not overlap another call on the same stream."""

    def __init__(self, handle: ChdbConnection, cursor: StreamCursor, output_format: str,
                 release: Callable[[bool], None], started: float,
                 describe: tuple[str, dict[str, str]] | None = None):
        self._describe = describe  # (SQL without its FORMAT, bound values), to name an empty result's columns
        self._handle = handle
        self._cursor = cursor
        self._release = release  # called once with True (handle reusable) or False (discard it)
        self.output_format = output_format
        self.started = started
        self.rows = 0
        self.bytes = 0
        self.read_rows = 0  # from storage, by chDB's counters
        self.read_bytes = 0
        self.has_output = True
        self.killed = False  # set by KILL QUERY (kills.py): stop before the next block
        self._finished = False

    def next_chunk(self) -> bytes | None:
        """The next block's bytes, or None at the end (blocking)."""
        if self._finished:
            return None
        if self.killed:
            self.close()
            raise StoreQueryError.build(QUERY_WAS_CANCELLED, "QUERY_WAS_CANCELLED", "Query was cancelled.")
        try:
            while True:
                block = self._cursor.fetch()
                if block is not None:
                    self.read_rows += block[2]
                    self.read_bytes += block[3]
                if block is None or not block[0]:
                    if block is None or block[1] == 0:
                        header = self._empty_native_header() if self.bytes == 0 else None
                        self._finish(reusable=True)
                        if header:
                            self.bytes += len(header)
                        return header
                    continue
                data, rows = block[0], block[1]
                self.rows += rows
                self.bytes += len(data)
                return data
        except Exception as exc:
            self._finish(reusable=True)
            if isinstance(exc, StoreQueryError):
                raise
            raise StoreQueryError.from_engine(exc) from None

    def _empty_native_header(self) -> bytes | None:
        """ClickHouse answers an empty Native result with a block of column names and types and
        no rows (clients take the columns from it); chDB sends nothing, so build that block."""
        if self.output_format != "Native" or self._describe is None:
            return None
        sql, params = self._describe
        try:
            rows = self._handle.query(f"DESCRIBE ({sql})", "JSONCompact", params).data()
        except StoreQueryError:
            return None
        columns = [(row[0], row[1]) for row in json.loads(rows or b'{"data": []}')["data"]]
        return codec.native_header(columns)

    def summary(self) -> dict[str, str]:
        return codec.summary(read_rows=self.read_rows, read_bytes=self.read_bytes, result_rows=self.rows,
                             result_bytes=self.bytes, elapsed_ns=int((time.perf_counter() - self.started) * 1e9))

    def close(self) -> None:
        """Cancel the query if it has not finished and give the handle back (idempotent)."""
        if self._finished:
            return
        reusable = True
        try:
            self._cursor.cancel()
        except Exception:  # a handle whose query could not be cancelled is not reused
            log.warning("cancelling a streamed query failed", exc_info=True)
            reusable = False
        self._finish(reusable)

    def _finish(self, reusable: bool) -> None:
        if not self._finished:
            self._finished = True
            self._release(reusable)
