"""`KILL QUERY WHERE query_id = '<id>'` for the `query_id` a client sent.

chDB's query API takes no query id: `query(sql, format, params)` and `send_query` have no such
argument, and `SET query_id` / `SETTINGS query_id` answer UNKNOWN_SETTING. So the engine's own
ids are what `queryID()` and `system.processes` show. To keep the one use clients make of their
id, cancelling, the server remembers the client's id of every read it is streaming and answers
that exact form of KILL QUERY itself: the read stops before its next block with
QUERY_WAS_CANCELLED (a flag, not a call into chDB from another thread, since a handle must not be
used by two threads at once). Other KILL statements, and ids it does not know, go to chDB.
"""
from __future__ import annotations

import re
import threading

_KILL_RE = re.compile(
    r"^\s*KILL\s+QUERY\s+WHERE\s+query_id\s*=\s*'((?:[^'\\]|\\.)*)'\s*(SYNC|ASYNC)?\s*(?:FORMAT\s+\w+\s*)?;?\s*$",
    re.IGNORECASE,
)


def kill_target(sql: str) -> str | None:
    """The query_id when `sql` is `KILL QUERY WHERE query_id = '<id>' [SYNC|ASYNC]`."""
    match = _KILL_RE.match(sql)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else None


# The answer KILL QUERY gives (its columns), with the id bound as {kill_id}. Always `waiting`, even
# for SYNC: the read stops when its next block is pulled, which this statement does not wait for.
REPORT_SQL = ("SELECT 'waiting' AS kill_status, {kill_id:String} AS query_id, 'default' AS user, '' AS query "
              "FROM numbers({kill_count:UInt32})")


class RunningReads:
    """The streamed reads by the client's query_id; `kill` flags them to stop."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_id: dict[str, list] = {}

    def add(self, query_id: str, stream) -> None:
        with self._lock:
            self._by_id.setdefault(query_id, []).append(stream)

    def remove(self, query_id: str, stream) -> None:
        with self._lock:
            streams = self._by_id.get(query_id, [])
            if stream in streams:
                streams.remove(stream)
            if not streams:
                self._by_id.pop(query_id, None)

    def kill(self, query_id: str) -> int:
        """Flag every read with this id; how many there were."""
        with self._lock:
            streams = list(self._by_id.get(query_id, []))
        for stream in streams:
            stream.killed = True
        return len(streams)
