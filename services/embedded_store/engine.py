"""The chDB side of the embedded store: connection handles, sessions and per-query settings.

chDB runs one ClickHouse engine per process; any number of `chdb.connect(path)` handles share
it and run queries in parallel, but each handle carries its own session state (settings set
with `SET`, the current database, temporary tables) and must not be used by two threads at once.
So the engine keeps:

- an idle pool of handles keyed by the settings and database that were applied to them, for
  requests with no session state (the common case, even when a client sends a `session_id`);
- one dedicated handle per `session_id` that has state, created when a session first runs a
  statement that changes session state (`SET`, `USE`, temporary tables), expired after the
  session timeout. Per-query URL settings on such a handle are applied on top of the session's
  own settings and taken back before the next statement that changes the session.

A stateful statement without a session runs on a throwaway handle, so a `SET` never leaks
into another client.

Reads (`SELECT`, `WITH ... SELECT`) are streamed: `start` returns a
`ResultStream` that pulls one block at a time from chDB (`send_query`), so a large result never
sits in memory whole. The stream owns its handle (and, in a session, the session's lock) until it
is finished or closed; each `next_chunk` call blocks and must not overlap another on the same stream.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import chdb

log = logging.getLogger(__name__)

# Statements that change the state of the handle they run on, beyond the query itself.
_STATEFUL_RE = re.compile(r"^(?:SET\b(?!\s+ROLE\b)|USE\b|CREATE\s+TEMPORARY\b|DROP\s+TEMPORARY\b)", re.IGNORECASE)
_LEADING_COMMENTS_RE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE_RE = re.compile(r"Code:\s*(\d+)")
# chDB streams SELECTs only (DESCRIBE, SHOW, EXPLAIN: "Streaming query is not supported").
_READ_RE = re.compile(r"^\(*\s*(?:SELECT|WITH)\b", re.IGNORECASE)

DEFAULT_FORMAT = "TabSeparated"
# ClickHouse error codes used by the server itself.
UNKNOWN_SETTING = 115
BAD_ARGUMENTS = 36
STD_EXCEPTION = 1001


class StoreQueryError(Exception):
    """A ClickHouse-style error: numeric code and the `Code: N. DB::Exception: ...` text."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: Exception) -> StoreQueryError:
        text = str(exc).strip()
        start = text.find("Code: ")
        if start > 0:
            text = text[start:]
        match = _ERROR_CODE_RE.search(text)
        if match:
            return cls(int(match.group(1)), text)
        return cls(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {text}. (STD_EXCEPTION)")

    @classmethod
    def build(cls, code: int, name: str, sentence: str) -> StoreQueryError:
        return cls(code, f"Code: {code}. DB::Exception: {sentence} ({name})")


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

    @property
    def output_format(self) -> str:
        match = _TRAILING_FORMAT_RE.search(self.sql)
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
        return bool(_READ_RE.match(head)) and " INTO OUTFILE " not in self.sql.upper()


@dataclass
class Outcome:
    body: bytes
    output_format: str
    summary: dict[str, str]


class ResultStream:
    """A read's result, pulled from chDB one block at a time.

    Uses chDB's low-level streaming calls rather than `StreamingResult`, whose iterator stops at
    the first block without rows and so loses the header-only block of an empty JSON result.
    """

    def __init__(self, handle: _Handle, c_result, output_format: str, release, started: float,
                 describe: tuple[str, dict[str, str]] | None = None):
        self._describe = describe  # (SQL without its FORMAT, bound values), to name an empty result's columns
        self._handle = handle
        self._c_result = c_result
        self._release = release  # called once with True (handle reusable) or False (discard it)
        self.output_format = output_format
        self.started = started
        self.rows = 0
        self.bytes = 0
        self._finished = False
        self._closed = False

    def next_chunk(self) -> bytes | None:
        """The next block's bytes, or None at the end (blocking)."""
        if self._finished:
            return None
        try:
            while True:
                result = self._handle.connection._conn.streaming_fetch_result(self._c_result)
                data = result.bytes() if result is not None else None
                rows = int(result.rows_read()) if result is not None else 0
                if not data:
                    if result is None or rows == 0:
                        header = self._empty_native_header() if self.bytes == 0 else None
                        self._finish(reusable=True)
                        if header:
                            self.bytes += len(header)
                        return header
                    continue
                self.rows += rows
                self.bytes += len(data)
                return data
        except Exception as exc:
            self._finish(reusable=True)
            raise StoreQueryError.from_engine(exc) from None

    def _empty_native_header(self) -> bytes | None:
        """ClickHouse answers an empty Native result with a block of column names and types and
        no rows (clients take the columns from it); chDB sends nothing, so build that block."""
        if self.output_format != "Native" or self._describe is None:
            return None
        sql, params = self._describe
        try:
            rows = self._handle.run(f"DESCRIBE ({sql})", "JSONCompact", params).bytes()
        except StoreQueryError:
            return None
        columns = [(row[0], row[1]) for row in json.loads(rows or b'{"data": []}')["data"]]
        return native_header(columns)

    def summary(self) -> dict[str, str]:
        return {"read_rows": str(self.rows), "read_bytes": str(self.bytes), "written_rows": "0",
                "written_bytes": "0", "total_rows_to_read": str(self.rows), "result_rows": str(self.rows),
                "result_bytes": str(self.bytes),
                "elapsed_ns": str(int((time.perf_counter() - self.started) * 1e9))}

    def close(self) -> None:
        """Cancel the query if it has not finished and give the handle back (idempotent)."""
        if self._finished:
            return
        reusable = True
        try:
            self._handle.connection._conn.streaming_cancel_query(self._c_result)
        except Exception:  # a handle whose query could not be cancelled is not reused
            log.warning("cancelling a streamed query failed", exc_info=True)
            reusable = False
        self._finish(reusable)

    def _finish(self, reusable: bool) -> None:
        if not self._finished:
            self._finished = True
            self._release(reusable)


def _varuint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def native_header(columns: list[tuple[str, str]]) -> bytes:
    """A Native block with these (name, type) columns and no rows."""
    out = bytearray(_varuint(len(columns)) + _varuint(0))
    for name, type_name in columns:
        for text in (name.encode(), type_name.encode()):
            out += _varuint(len(text)) + text
    return bytes(out)


def quote_literal(value: str) -> str:
    """A ClickHouse string literal. Only for SET, which takes no bound parameters; ClickHouse
    converts a quoted literal to the setting's type."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _check_setting_names(settings: dict[str, str]) -> None:
    for name in settings:
        if not _SETTING_NAME_RE.match(name):
            raise StoreQueryError.build(UNKNOWN_SETTING, "UNKNOWN_SETTING", f"Unknown setting '{name}'.")


class _Handle:
    """One chDB connection; `key` is the (settings, database) state it was opened with."""

    def __init__(self, connection, key: tuple):
        self.connection = connection
        self.key = key

    def run(self, sql: str, fmt: str = DEFAULT_FORMAT, params: dict[str, str] | None = None):
        try:
            return self.connection.query(sql, fmt, params=params or {})
        except Exception as exc:  # chDB raises a bare RuntimeError subclass with the server text
            raise StoreQueryError.from_engine(exc) from None

    def stream(self, sql: str, fmt: str, params: dict[str, str] | None, release, started: float) -> ResultStream:
        try:
            c_result = self.connection._conn.send_query(sql, fmt, params=params or {})
        except Exception as exc:
            raise StoreQueryError.from_engine(exc) from None
        describe = (_TRAILING_FORMAT_RE.sub("", sql).rstrip().rstrip(";"), params or {})
        return ResultStream(self, c_result, fmt, release, started, describe)

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # closing must never take the server down
            log.warning("closing a chDB handle failed", exc_info=True)


class _Session:
    def __init__(self, handle: _Handle, timeout: float):
        self.handle = handle
        self.timeout = timeout
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.database = "default"  # the session's own (after USE)
        self.current_database = "default"  # what the handle has now
        self.overlay: dict[str, str] = {}  # URL settings applied on top of the session's own
        self.base: dict[str, tuple[str, bool]] = {}  # the session's values under the overlay

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.timeout and not self.lock.locked()

    def use_database(self, database: str) -> None:
        if database != self.current_database:
            self.handle.run(f"USE {quote_identifier(database)}")
            self.current_database = database

    def apply_overlay(self, wanted: dict[str, str]) -> None:
        """Make the handle's settings the session's own plus `wanted`, with as few SETs as
        possible: a client sends the same settings on every request."""
        stale = [name for name in self.overlay if name not in wanted]
        changed = {name: value for name, value in wanted.items() if self.overlay.get(name) != value}
        unseen = [name for name in changed if name not in self.base]
        if unseen:
            rows = self.handle.run(
                "SELECT name, value, changed FROM system.settings WHERE name IN {names:Array(String)}",
                "JSONCompact", {"names": "[" + ",".join(quote_literal(n) for n in unseen) + "]"},
            )
            for name, value, was_changed in json.loads(rows.bytes() or b'{"data": []}')["data"]:
                self.base[name] = (value, bool(int(was_changed)))
        assignments = [self._restore_expr(name) for name in stale]
        assignments += [f"{name} = {quote_literal(value)}" for name, value in changed.items()]
        if assignments:
            self.handle.run("SET " + ", ".join(assignments))
        for name in stale:
            self.overlay.pop(name, None)
            self.base.pop(name, None)
        self.overlay.update(changed)

    def drop_overlay(self) -> None:
        self.apply_overlay({})

    def _restore_expr(self, name: str) -> str:
        value, was_changed = self.base.get(name, ("", False))
        return f"{name} = {quote_literal(value)}" if was_changed else f"{name} = DEFAULT"


class StoreEngine:
    """Runs statements against one chDB data folder from many threads."""

    def __init__(self, data_dir: Path, *, idle_handles: int = 16, session_timeout: float = 60.0,
                 max_sessions: int = 1000):
        self.data_dir = Path(data_dir)
        self.idle_limit = idle_handles
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self._anchor: _Handle | None = None
        self._idle: OrderedDict[int, _Handle] = OrderedDict()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()
        self.version = ""
        self.timezone = "UTC"

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The first handle starts the engine (about 0.3 s) and keeps it alive between requests.
        self._anchor = _Handle(chdb.connect(str(self.data_dir)), ())
        row = self._anchor.run("SELECT version(), timezone()").bytes().decode().rstrip("\n")
        self.version, self.timezone = row.split("\t")
        log.info("chDB %s opened %s (timezone %s)", self.version, self.data_dir, self.timezone)

    def close(self) -> None:
        with self._lock:
            handles = list(self._idle.values()) + [s.handle for s in self._sessions.values()]
            self._idle.clear()
            self._sessions.clear()
        for handle in handles:
            handle.close()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None
        log.info("chDB data folder %s closed", self.data_dir)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- running statements ------------------------------------------------------------------

    def execute(self, statement: Statement) -> Outcome:
        """Run one statement to the end, its whole result in memory (blocking)."""
        outcome = self.start(statement)
        if isinstance(outcome, Outcome):
            return outcome
        chunks = []
        try:
            while (chunk := outcome.next_chunk()) is not None:
                chunks.append(chunk)
        finally:
            outcome.close()
        return Outcome(b"".join(chunks), outcome.output_format, outcome.summary())

    def start(self, statement: Statement) -> Outcome | ResultStream:
        """Run one statement (blocking; call it off the event loop): a read comes back as a
        `ResultStream` that the caller must drain or close, anything else as an `Outcome`."""
        _check_setting_names(statement.settings)
        started = time.perf_counter()
        session = self._session_for(statement)
        if statement.is_read and not statement.is_stateful:
            if session is not None:
                return self._stream_in_session(session, statement, started)
            return self._stream_pooled(statement, started)
        if session is not None:
            result = self._run_in_session(session, statement)
        elif statement.is_stateful:
            result = self._run_throwaway(statement)
        else:
            result = self._run_pooled(statement)
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        return Outcome(result.bytes() or b"", statement.output_format, self._summary(result, elapsed_ns))

    def _run_pooled(self, statement: Statement):
        key = (tuple(sorted(statement.settings.items())), statement.database or "default")
        handle = self._take_idle(key) or self._open_handle(key, statement.settings, statement.database)
        try:
            result = handle.run(statement.sql, statement.output_format, statement.params)
        except StoreQueryError:
            self._give_back(handle)  # a failed query leaves the handle as it was
            raise
        except BaseException:
            handle.close()
            raise
        self._give_back(handle)
        return result

    def _stream_pooled(self, statement: Statement, started: float) -> ResultStream:
        key = (tuple(sorted(statement.settings.items())), statement.database or "default")
        handle = self._take_idle(key) or self._open_handle(key, statement.settings, statement.database)

        def release(reusable: bool) -> None:
            if reusable:
                self._give_back(handle)
            else:
                handle.close()

        try:
            return handle.stream(statement.sql, statement.output_format, statement.params, release, started)
        except StoreQueryError:
            self._give_back(handle)
            raise
        except BaseException:
            handle.close()
            raise

    def _stream_in_session(self, session: _Session, statement: Statement, started: float) -> ResultStream:
        # The session's lock is held until the stream ends: its handle runs one query at a time.
        session.lock.acquire()
        session.last_used = time.monotonic()

        def release(_: bool) -> None:
            session.last_used = time.monotonic()
            session.lock.release()
            if statement.close_session:
                self._end_session(statement.session_id)

        try:
            session.use_database(statement.database or session.database)
            session.apply_overlay(statement.settings)
            return session.handle.stream(statement.sql, statement.output_format, statement.params, release, started)
        except BaseException:
            release(True)
            raise

    def _run_throwaway(self, statement: Statement):
        handle = self._open_handle((), statement.settings, statement.database)
        try:
            return handle.run(statement.sql, statement.output_format, statement.params)
        finally:
            handle.close()

    def _run_in_session(self, session: _Session, statement: Statement):
        with session.lock:
            session.last_used = time.monotonic()
            try:
                session.use_database(statement.database or session.database)
                if statement.is_stateful:
                    # A SET must change the session's own settings, not the per-query overlay.
                    session.drop_overlay()
                    result = session.handle.run(statement.sql, statement.output_format, statement.params)
                    current = session.handle.run("SELECT currentDatabase()").bytes().decode().strip()
                    session.current_database = current
                    if not statement.database:
                        session.database = current
                    return result
                session.apply_overlay(statement.settings)
                return session.handle.run(statement.sql, statement.output_format, statement.params)
            finally:
                session.last_used = time.monotonic()
                if statement.close_session:
                    self._end_session(statement.session_id)

    # -- handles and sessions ----------------------------------------------------------------

    def _open_handle(self, key: tuple, settings: dict[str, str], database: str | None) -> _Handle:
        with self._lock:  # chdb.connect touches the process-wide engine registry
            handle = _Handle(chdb.connect(str(self.data_dir)), key)
        try:
            if settings:
                handle.run("SET " + ", ".join(f"{n} = {quote_literal(v)}" for n, v in settings.items()))
            if database and database != "default":
                handle.run(f"USE {quote_identifier(database)}")
        except BaseException:
            handle.close()
            raise
        return handle

    def _take_idle(self, key: tuple) -> _Handle | None:
        with self._lock:
            for ident, handle in reversed(self._idle.items()):
                if handle.key == key:
                    del self._idle[ident]
                    return handle
        return None

    def _give_back(self, handle: _Handle) -> None:
        surplus = []
        with self._lock:
            self._idle[id(handle)] = handle
            while len(self._idle) > self.idle_limit:
                surplus.append(self._idle.popitem(last=False)[1])
        for old in surplus:
            old.close()

    def _session_for(self, statement: Statement) -> _Session | None:
        """The session's handle if it has state, creating it when this statement gives it some."""
        if not statement.session_id:
            return None
        expired = []
        with self._lock:
            now = time.monotonic()
            for sid, session in list(self._sessions.items()):
                if session.expired(now):
                    expired.append(self._sessions.pop(sid).handle)
            session = self._sessions.get(statement.session_id)
            if session is not None:
                # Marked as used now, so that no other request expires it before this one runs.
                session.last_used = now
                self._sessions.move_to_end(statement.session_id)
                if statement.session_timeout:
                    session.timeout = statement.session_timeout
        for handle in expired:
            handle.close()
        if session is not None or not statement.is_stateful:
            return session
        if len(self._sessions) >= self.max_sessions:
            raise StoreQueryError.build(
                202, "TOO_MANY_SIMULTANEOUS_QUERIES",
                f"Too many open sessions ({self.max_sessions}); close sessions or raise STORE_MAX_SESSIONS.")
        handle = self._open_handle((), {}, None)
        session = _Session(handle, statement.session_timeout or self.session_timeout)
        with self._lock:
            existing = self._sessions.setdefault(statement.session_id, session)
        if existing is not session:  # another request of the same session won the race
            handle.close()
        return existing

    def _end_session(self, session_id: str | None) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None) if session_id else None
        if session is not None:
            session.handle.close()

    @staticmethod
    def _summary(result, elapsed_ns: int) -> dict[str, str]:
        def number(name: str) -> int:
            try:
                return int(getattr(result, name)())
            except Exception:  # older chDB results lack some counters
                return 0

        return {
            "read_rows": str(number("rows_read")),
            "read_bytes": str(number("bytes_read")),
            "written_rows": str(number("rows_written")),
            "written_bytes": str(number("bytes_written")),
            "total_rows_to_read": str(number("rows_read")),
            "result_rows": str(number("rows_read")),
            "result_bytes": str(len(result.bytes() or b"")),
            "elapsed_ns": str(elapsed_ns),
        }
