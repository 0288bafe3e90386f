"""The gateway's Prometheus metrics (prometheus_client): request counts and latency by route.

Routes are labelled by their template (`/v1/photos/{photo_id}`), never by the raw path, so the number
of series stays bounded whatever callers send. One registry per app, so that apps built side by side
(tests) keep their own counts.
"""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

# Seconds; chosen around a search's expected 10 ms - 1 s.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("api_requests", "HTTP requests by method, route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("api_request_duration_seconds", "HTTP request latency by method, route and status.",
                                 ["method", "route", "status"], buckets=BUCKETS, registry=self.registry)

    def watch_caches(self, state: Any) -> None:
        """Export the hits and misses of the text vector and result caches of `state.services`."""
        self.registry.register(_CacheLookups(state))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def observe_request(metrics: Metrics):
    """The gateway's observer for RequestIdMiddleware: count and time each request by route template."""
    from services.common.http import route_template

    def observe(scope, status: int, seconds: float) -> None:
        metrics.observe(scope["method"], route_template(scope), status, seconds)

    return observe


class _CacheLookups:
    """`api_cache_lookups_total{cache, outcome}`: read from the caches' own counts at each scrape (a custom
    collector, because the caches are built in the app's lifespan, after the registry)."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self):
        family = CounterMetricFamily("api_cache_lookups", "Lookups in the gateway's caches (text_vectors: texts; "
                                     "results: searches); a hit spares the embedder or the store's search.",
                                     labels=["cache", "outcome"])
        services = getattr(self._state, "services", None)
        for name, attribute in (("text_vectors", "text_cache"), ("results", "result_cache")):
            cache = getattr(services, attribute, None)
            if cache is not None:
                family.add_metric([name, "hit"], cache.hits)
                family.add_metric([name, "miss"], cache.misses)
        yield family
