"""The only module that talks to chDB: one connection handle, its results and its streamed
queries, with chDB's errors turned into StoreQueryError.

Streaming uses chDB's low-level calls on the connection's private `_conn` rather than
`StreamingResult`, whose iterator stops at the first block without rows and so loses the
header-only block of an empty JSON result. Keeping those calls here means a chDB upgrade that
moves them touches this file alone.

A query that fails after it began writing its output leaves that partial output on the handle,
and chDB hands it to the next query on the same handle as if it were that query's result (an
Arrow or JSON fragment where a Native answer was asked for). So after any failed query the handle
is drained with a throwaway query before anyone else uses it.

SQL text that was not UTF-8 on the wire arrives here with surrogate escapes (codec.SQL_ERRORS);
chDB takes the query as bytes too, so such text is handed over as the bytes the client sent.
"""
from __future__ import annotations

import logging

import chdb

from services.embedded_store.codec import SQL_ERRORS
from services.embedded_store.errors import StoreQueryError

log = logging.getLogger(__name__)


def _sql_text(sql: str) -> str | bytes:
    """The SQL as chDB should get it: the str itself, or its original bytes where some were not UTF-8."""
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError:
        return sql.encode("utf-8", SQL_ERRORS)
    return sql


class QueryResult:
    """A whole result: its bytes and chDB's counters."""

    def __init__(self, raw):
        self._raw = raw

    def data(self) -> bytes:
        return self._raw.bytes() or b""

    def counter(self, name: str) -> int:
        """`storage_rows_read`, `storage_bytes_read` (what the query read), `rows_read` (what it
        returned), `rows_written` or `bytes_written`; 0 where chDB lacks it."""
        try:
            return int(getattr(self._raw, name)())
        except Exception:  # older chDB results lack some counters
            return 0


class StreamCursor:
    """A query sent with `send_query`, its blocks fetched one at a time."""

    def __init__(self, conn, c_result):
        self._conn = conn
        self._c_result = c_result

    def fetch(self) -> tuple[bytes, int, int, int] | None:
        """The next block's (bytes, rows, rows read from storage, bytes read from storage), or None
        when chDB has nothing more (blocking)."""
        try:
            result = self._conn.streaming_fetch_result(self._c_result)
        except Exception as exc:
            raise StoreQueryError.from_engine(exc) from None
        if result is None:
            return None
        raw = QueryResult(result)
        return (result.bytes() or b"", raw.counter("rows_read"), raw.counter("storage_rows_read"),
                raw.counter("storage_bytes_read"))

    def cancel(self) -> None:
        """Stop the query; raises whatever chDB raises (the caller decides whether the handle is spoiled)."""
        self._conn.streaming_cancel_query(self._c_result)


class ChdbConnection:
    """One `chdb.connect` handle on the data folder; `key` is the (settings, database) state that
    the engine's pool opened it with. Not for two threads at once."""

    def __init__(self, data_dir: str, key: tuple = ()):
        self._connection = chdb.connect(data_dir)
        self.key = key

    def query(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> QueryResult:
        try:
            return QueryResult(self._connection.query(_sql_text(sql), fmt, params=params or {}))
        except Exception as exc:  # chDB raises a bare RuntimeError subclass with the server text
            self._drain()
            raise StoreQueryError.from_engine(exc) from None

    def send_query(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> StreamCursor:
        conn = self._connection._conn
        try:
            return StreamCursor(conn, conn.send_query(_sql_text(sql), fmt, params=params or {}))
        except Exception as exc:
            self._drain()
            raise StoreQueryError.from_engine(exc) from None

    def _drain(self) -> None:
        """Take whatever output a failed query left on the handle (see the module docstring)."""
        try:
            self._connection.query("SELECT 1", "TabSeparated")
        except Exception:  # a handle that cannot even run this fails its next query on its own
            log.warning("draining a chDB handle after a failed query failed", exc_info=True)

    def classify(self, sql: str) -> tuple[str, int]:
        """What the SQL would do, by chDB's own parser, without running it: (READ_ONLY, MUTATING,
        MUTATING_GLOBAL, CONTROL or UNKNOWN; statement count). ("UNKNOWN", 0) where chDB cannot say."""
        classify = getattr(self._connection._conn, "classify_query", None)
        if classify is None:  # chDB before classify_query
            return "UNKNOWN", 0
        try:
            report = classify(_sql_text(sql))
        except Exception:  # classification must never fail a query; UNKNOWN is the careful answer
            return "UNKNOWN", 0
        return report["query_class"].name, int(report["statement_count"])

    def close(self) -> None:
        try:
            self._connection.close()
        except Exception:  # closing must never take the server down
            log.warning("closing a chDB handle failed", exc_info=True)
