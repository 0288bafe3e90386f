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

Reads (`SELECT`, `WITH ... SELECT`) in a format whose blocks concatenate into one valid answer
(STREAMED_FORMATS) are streamed: `start` returns a `ResultStream` (results.py) that pulls one
block at a time from chDB, so a large result never sits in memory whole. chDB formats each
streamed block as a complete document, so other formats (JSON, Arrow, Parquet, CSVWithNames, ...)
are run whole, to be one valid answer.

Statements are classified by chDB's own parser before they run: a read-only request (an HTTP
GET) may only read or SET/USE, and statements that return nothing are marked so the server sends
no X-ClickHouse-Format for them, as ClickHouse does. A statement with external data tables runs
on a handle of its own that loads them into temporary tables first. The stream owns its handle (and, in a session, the session's lock) until
it is finished or closed. Every call into chDB goes through chdb_adapter.py.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from services.embedded_store import codec
from services.embedded_store.chdb_adapter import ChdbConnection, QueryResult
from services.embedded_store.errors import READONLY, TOO_MANY_SIMULTANEOUS_QUERIES, UNKNOWN_SETTING, StoreQueryError
from services.embedded_store.kills import REPORT_SQL, RunningReads, kill_target
from services.embedded_store.protocol import DEFAULT_FORMAT, TRAILING_FORMAT_RE, Statement
from services.embedded_store.results import Outcome, ResultStream
from services.embedded_store.sessions import Session, quote_identifier, quote_literal

log = logging.getLogger(__name__)

_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESULT_RE = re.compile(r"^[\s(]*(?:SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)
_KILL_RE = re.compile(r"^\s*KILL\b", re.IGNORECASE)  # KILL QUERY/MUTATION answer with rows
_SET_OR_USE_RE = re.compile(r"^\s*(?:SET\b(?!\s+ROLE\b)|USE\b)", re.IGNORECASE)
# Formats whose per-block outputs concatenate into one valid answer (no header, footer or
# separator between blocks); Native repeats its column header per block by design.
STREAMED_FORMATS = frozenset({
    "Native", "RowBinary", "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV", "JSONEachRow",
    "JSONStringsEachRow", "JSONCompactEachRow", "JSONCompactStringsEachRow", "NDJSON", "JSONLines",
})

__all__ = ["Outcome", "ResultStream", "Statement", "StoreEngine", "StoreQueryError"]


def _check_setting_names(settings: dict[str, str]) -> None:
    for name in settings:
        if not _SETTING_NAME_RE.match(name):
            raise StoreQueryError.build(UNKNOWN_SETTING, "UNKNOWN_SETTING", f"Unknown setting '{name}'.")


def _stream(handle: ChdbConnection, statement: Statement, release, started: float,
            reads: RunningReads | None = None) -> ResultStream:
    cursor = handle.send_query(statement.sql, statement.output_format, statement.params)
    describe = (TRAILING_FORMAT_RE.sub("", statement.sql).rstrip().rstrip(";"), statement.params or {})
    if reads is None or not statement.query_id:
        return ResultStream(handle, cursor, statement.output_format, release, started, describe)

    def finished(reusable: bool) -> None:  # known to KILL QUERY by the client's id while it runs
        reads.remove(statement.query_id, stream)
        release(reusable)

    stream = ResultStream(handle, cursor, statement.output_format, finished, started, describe)
    reads.add(statement.query_id, stream)
    return stream


def _summary(result: QueryResult, elapsed_ns: int) -> dict[str, str]:
    return codec.summary(
        read_rows=result.counter("storage_rows_read"), read_bytes=result.counter("storage_bytes_read"),
        written_rows=result.counter("rows_written"), written_bytes=result.counter("bytes_written"),
        result_rows=result.counter("rows_read"), result_bytes=len(result.data()), elapsed_ns=elapsed_ns)


class StoreEngine:
    """Runs statements against one chDB data folder from many threads."""

    def __init__(self, data_dir: Path, *, idle_handles: int = 16, session_timeout: float = 60.0,
                 max_sessions: int = 1000):
        self.data_dir = Path(data_dir)
        self.idle_limit = idle_handles
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self._anchor: ChdbConnection | None = None
        self._idle: OrderedDict[int, ChdbConnection] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._reads = RunningReads()
        self._classify_lock = threading.Lock()  # the anchor handle parses for everyone, one at a time
        self.version = ""
        self.timezone = "UTC"

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The first handle starts the engine (about 0.3 s) and keeps it alive between requests.
        self._anchor = ChdbConnection(str(self.data_dir))
        row = self._anchor.query("SELECT version(), timezone()", DEFAULT_FORMAT).data().decode().rstrip("\n")
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
        return Outcome(b"".join(chunks), outcome.output_format, outcome.summary(), outcome.has_output)

    def start(self, statement: Statement) -> Outcome | ResultStream:
        """Run one statement (blocking; call it off the event loop): a read comes back as a
        `ResultStream` that the caller must drain or close, anything else as an `Outcome`."""
        _check_setting_names(statement.settings)
        has_output = self._check_kind(statement)
        started = time.perf_counter()
        target = kill_target(statement.sql)
        if target is not None and (killed := self._reads.kill(target)):
            statement = replace(statement, sql=f"{REPORT_SQL} FORMAT {statement.output_format}",
                                params={"kill_id": target, "kill_count": str(killed)})
        streamed = statement.is_read and statement.output_format in STREAMED_FORMATS
        if statement.external:
            return self._run_with_external(statement, started, streamed, has_output)
        session = self._session_for(statement)
        if streamed and not statement.is_stateful:
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
        return Outcome(result.data(), statement.output_format, _summary(result, elapsed_ns), has_output)

    def _check_kind(self, statement: Statement) -> bool:
        """Refuse a write in a read-only request (READONLY, as ClickHouse answers a GET that
        writes); say whether the statement returns a result."""
        with self._classify_lock:
            kind, count = self._anchor.classify(statement.sql)
        if kind == "UNKNOWN":
            # SQL chDB cannot parse (it will fail with its own error), or a chDB without
            # classify_query: judge by the first word, one statement only.
            reads = _RESULT_RE.match(statement.sql) and ";" not in statement.sql.strip().rstrip(";")
            kind, count = ("READ_ONLY", 1) if reads else ("UNKNOWN", 0)
        if statement.readonly and kind != "READ_ONLY" and not (
                kind == "CONTROL" and count == 1 and _SET_OR_USE_RE.match(statement.sql)):
            raise StoreQueryError.build(
                READONLY, "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries.")
        return kind == "READ_ONLY" or statement.is_read or bool(_KILL_RE.match(statement.sql))

    def _run_with_external(self, statement: Statement, started: float, streamed: bool,
                           has_output: bool) -> Outcome | ResultStream:
        """Load the external data tables into temporary tables of a handle of this statement's own,
        run the statement there, then close the handle (with the stream, for a streamed read)."""
        handle = self._open_handle((), statement.settings, statement.database)
        try:
            for table in statement.external:
                name = quote_identifier(table.name)
                handle.query(f"CREATE TEMPORARY TABLE {name} ({table.structure}) ENGINE = Memory", DEFAULT_FORMAT)
                handle.query(f"INSERT INTO {name} FROM INFILE {quote_literal(str(table.path))} FORMAT {table.format}",
                             DEFAULT_FORMAT)
            if streamed:
                return _stream(handle, statement, lambda _: handle.close(), started, self._reads)
            result = handle.query(statement.sql, statement.output_format, statement.params)
        except BaseException:
            handle.close()
            raise
        handle.close()
        elapsed_ns = int((time.perf_counter() - started) * 1e9)
        return Outcome(result.data(), statement.output_format, _summary(result, elapsed_ns), has_output)

    def _run_pooled(self, statement: Statement):
        key = (tuple(sorted(statement.settings.items())), statement.database or "default")
        handle = self._take_idle(key) or self._open_handle(key, statement.settings, statement.database)
        try:
            result = handle.query(statement.sql, statement.output_format, statement.params)
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
            return _stream(handle, statement, release, started, self._reads)
        except StoreQueryError:
            self._give_back(handle)
            raise
        except BaseException:
            handle.close()
            raise

    def _stream_in_session(self, session: Session, statement: Statement, started: float) -> ResultStream:
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
            return _stream(session.handle, statement, release, started, self._reads)
        except BaseException:
            release(True)
            raise

    def _run_throwaway(self, statement: Statement):
        handle = self._open_handle((), statement.settings, statement.database)
        try:
            return handle.query(statement.sql, statement.output_format, statement.params)
        finally:
            handle.close()

    def _run_in_session(self, session: Session, statement: Statement):
        with session.lock:
            session.last_used = time.monotonic()
            try:
                session.use_database(statement.database or session.database)
                if statement.is_stateful:
                    # A SET must change the session's own settings, not the per-query overlay.
                    session.drop_overlay()
                    result = session.handle.query(statement.sql, statement.output_format, statement.params)
                    current = session.handle.query("SELECT currentDatabase()", DEFAULT_FORMAT).data().decode().strip()
                    session.current_database = current
                    if not statement.database:
                        session.database = current
                    return result
                session.apply_overlay(statement.settings)
                return session.handle.query(statement.sql, statement.output_format, statement.params)
            finally:
                session.last_used = time.monotonic()
                if statement.close_session:
                    self._end_session(statement.session_id)

    # -- handles and sessions ----------------------------------------------------------------

    def _open_handle(self, key: tuple, settings: dict[str, str], database: str | None) -> ChdbConnection:
        with self._lock:  # chdb.connect touches the process-wide engine registry
            handle = ChdbConnection(str(self.data_dir), key)
        try:
            if settings:
                handle.query("SET " + ", ".join(f"{n} = {quote_literal(v)}" for n, v in settings.items()), DEFAULT_FORMAT)
            if database and database != "default":
                handle.query(f"USE {quote_identifier(database)}", DEFAULT_FORMAT)
        except BaseException:
            handle.close()
            raise
        return handle

    def _take_idle(self, key: tuple) -> ChdbConnection | None:
        with self._lock:
            for ident, handle in reversed(self._idle.items()):
                if handle.key == key:
                    del self._idle[ident]
                    return handle
        return None

    def _give_back(self, handle: ChdbConnection) -> None:
        surplus = []
        with self._lock:
            self._idle[id(handle)] = handle
            while len(self._idle) > self.idle_limit:
                surplus.append(self._idle.popitem(last=False)[1])
        for old in surplus:
            old.close()

    def _session_for(self, statement: Statement) -> Session | None:
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
                TOO_MANY_SIMULTANEOUS_QUERIES, "TOO_MANY_SIMULTANEOUS_QUERIES",
                f"Too many open sessions ({self.max_sessions}); close sessions or raise STORE_MAX_SESSIONS.")
        handle = self._open_handle((), {}, None)
        session = Session(handle, statement.session_timeout or self.session_timeout)
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
