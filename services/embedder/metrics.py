"""The embedder's Prometheus metrics (prometheus_client), one registry per app.

Requests by route, method and status with their latency, items embedded by kind, items refused by
reason, a histogram of batch sizes (the evidence that micro-batching happens), forward-pass seconds,
the queue depth and whether the model is loaded; with several models (registry.py), how many are
loading, ready or failed, and the items each model embedded. Routes are labelled by their template, so
the number of series stays bounded whatever callers send (model names are those loaded by the operator).
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        # Its own registry: several apps in one process (tests) must not share or collide.
        self.registry = CollectorRegistry()
        self.requests = Counter("embedder_requests", "HTTP requests by method, route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("embedder_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route", "status"], buckets=SECONDS_BUCKETS, registry=self.registry)
        self.items = Counter("embedder_items_embedded", "Texts and images embedded.", ["kind"],
                             registry=self.registry)
        self.rejected_items = Counter("embedder_items_rejected", "Items refused, by reason.", ["code"],
                                      registry=self.registry)
        self.batch_sizes = Histogram("embedder_batch_size", "Items per forward pass.", ["kind"],
                                     buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("embedder_batch_seconds", "Seconds per forward pass.", ["kind"],
                                       buckets=SECONDS_BUCKETS, registry=self.registry)
        self.queue_items = Gauge("embedder_queue_items", "Items waiting for the model.", registry=self.registry)
        self.ready = Gauge("embedder_ready", "1 when the model is loaded.", registry=self.registry)
        self.models = Gauge("embedder_models", "Models held, by state (loading, ready, failed).", ["state"],
                            registry=self.registry)
        self.model_items = Counter("embedder_model_items_embedded", "Texts and images embedded, by model.",
                                   ["model", "kind"], registry=self.registry)

    def count_request(self, method: str, route: str, status: int, seconds: float = 0.0) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def count_rejected(self, code: str, count: int = 1) -> None:
        self.rejected_items.labels(code).inc(count)

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        self.items.labels(kind).inc(size)
        self.batch_sizes.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)

    def batch_observer(self, model: str) -> Callable[[str, int, float], None]:
        """The batch observer of one model's batcher: the totals, and that model's own count."""
        def observe(kind: str, size: int, seconds: float) -> None:
            self.observe_batch(kind, size, seconds)
            self.model_items.labels(model, kind).inc(size)
        return observe

    def render(self, queue_depth: Callable[[], int], ready: bool, models: dict[str, int] | None = None) -> bytes:
        """The Prometheus text exposition; the gauges are read at scrape time."""
        self.queue_items.set(queue_depth())
        self.ready.set(int(ready))
        for state, count in (models or {}).items():
            self.models.labels(state).set(count)
        return generate_latest(self.registry)
