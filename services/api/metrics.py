"""Request counts and latency by route, in the Prometheus text format, with no extra dependency.

Routes are labelled by their template (`/v1/photos/{photo_id}`), never by the raw path, so the number
of series stays bounded whatever callers send.
"""
from __future__ import annotations

import threading
from collections import defaultdict

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


def observe_request(metrics: Metrics):
    """The gateway's observer for RequestIdMiddleware: count and time each request by route template."""
    from services.common.http import route_template

    def observe(scope, status: int, seconds: float) -> None:
        metrics.observe(scope["method"], route_template(scope), status, seconds)

    return observe
