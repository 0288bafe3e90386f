"""The store server's Prometheus metrics (prometheus_client), served at `GET /metrics` on its HTTP port.

Queries are counted and timed by kind (read, insert, other) and outcome (ok, error); rows and bytes
read and written come from each answer's X-ClickHouse-Summary counters (for a streamed read, what was
sent). One registry per app, so that apps built side by side (tests) keep their own counts. The
middleware wraps the query route only: /ping and /metrics themselves are not counted.
"""
from __future__ import annotations

import re
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

# Seconds: a point lookup takes a millisecond, an indexed search ~10 ms, an index build minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
_INSERT_RE = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*INSERT\b", re.IGNORECASE | re.DOTALL)


def query_kind(statement) -> str:
    """read (a streamed SELECT/WITH), insert, or other (DDL, ALTER, DELETE, SHOW...)."""
    if statement is None:
        return "other"
    if statement.is_read:
        return "read"
    return "insert" if _INSERT_RE.match(statement.sql) else "other"


class StoreMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter("store_queries", "Queries by kind (read, insert, other) and outcome (ok, error).",
                               ["kind", "outcome"], registry=self.registry)
        self.latency = Histogram("store_query_duration_seconds",
                                 "Seconds from the request's arrival to the answer's last byte, by kind.",
                                 ["kind"], buckets=BUCKETS, registry=self.registry)
        self.rows = Counter("store_rows", "Rows read and written (direction: read, written).",
                            ["direction"], registry=self.registry)
        self.bytes = Counter("store_bytes", "Bytes read and written (direction: read, written).",
                             ["direction"], registry=self.registry)

    def observe(self, kind: str, ok: bool, seconds: float, summary: dict[str, str] | None) -> None:
        self.queries.labels(kind, "ok" if ok else "error").inc()
        self.latency.labels(kind).observe(seconds)
        for direction, prefix in (("read", "read"), ("written", "written")):
            self.rows.labels(direction).inc(int((summary or {}).get(f"{prefix}_rows", 0) or 0))
            self.bytes.labels(direction).inc(int((summary or {}).get(f"{prefix}_bytes", 0) or 0))

    async def endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def wrap(self, handler):
        """The query route, counted. The handler leaves on `request.state` the statement it ran and,
        when known, the answer's summary or the result stream (whose summary is read at its end)."""

        async def counted(request: Request) -> Response:
            started = time.perf_counter()
            response = await handler(request)
            state = request.state
            if getattr(state, "statement", None) is None and response.status_code < 400:
                return response  # `GET /` without a query: ClickHouse's ping
            kind = query_kind(getattr(state, "statement", None))
            ok = response.status_code < 400
            stream = getattr(state, "stream", None)
            if stream is None or not isinstance(response, StreamingResponse):
                # A result read whole before answering (a small stream, an error) has its counts in the stream.
                summary = stream.summary() if stream is not None else getattr(state, "summary", None)
                self.observe(kind, ok, time.perf_counter() - started, summary)
                return response
            inner = response.body_iterator

            async def body():
                finished = False
                try:
                    async for chunk in inner:
                        yield chunk
                    finished = True
                finally:
                    self.observe(kind, finished, time.perf_counter() - started, stream.summary())

            response.body_iterator = body()
            return response

        return counted
