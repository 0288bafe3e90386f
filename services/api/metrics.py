"""Request counts and latency by route, in the Prometheus text format, with no extra dependency.

Routes are labelled by their template (`/v1/photos/{photo_id}`), never by the raw path, so the number
of series stays bounded whatever callers send.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; chosen around a search's expected 10 ms - 1 s.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency_counts: dict[tuple[str, str], list[int]] = {}
        self._latency_sum: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            counts = self._latency_counts.setdefault((method, route), [0] * (len(BUCKETS) + 1))
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[index] += 1
            counts[-1] += 1
            self._latency_sum[(method, route)] += seconds

    def render(self) -> str:
        lines = ["# HELP api_requests_total HTTP requests by method, route and status.",
                 "# TYPE api_requests_total counter"]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                lines.append(f'api_requests_total{{method="{method}",route="{_escape(route)}",status="{status}"}} {count}')
            lines += ["# HELP api_request_duration_seconds HTTP request latency by method and route.",
                      "# TYPE api_request_duration_seconds histogram"]
            for (method, route), counts in sorted(self._latency_counts.items()):
                labels = f'method="{method}",route="{_escape(route)}"'
                for bound, count in zip(BUCKETS, counts):
                    lines.append(f'api_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count}')
                lines.append(f'api_request_duration_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]}')
                lines.append(f"api_request_duration_seconds_sum{{{labels}}} {self._latency_sum[(method, route)]:.6f}")
                lines.append(f"api_request_duration_seconds_count{{{labels}}} {counts[-1]}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Times every HTTP request by route (the request id is `RequestIdMiddleware`'s, outside this)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label, so scanners cannot grow the series without bound.
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)

