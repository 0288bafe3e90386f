"""Prometheus text-format metrics for the embedder, kept in process (no client library needed).

Requests by route and status, items embedded by kind, a histogram of batch sizes (the evidence
that micro-batching happens), forward-pass seconds, and the queue depth.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{str(value)}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.items: dict[str, int] = defaultdict(int)
        self.batch_sizes: dict[str, _Histogram] = {}
        self.batch_seconds: dict[str, _Histogram] = {}
        self.rejected_items: dict[str, int] = defaultdict(int)

    def count_request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1

    def count_rejected(self, code: str, count: int = 1) -> None:
        with self._lock:
            self.rejected_items[code] += count

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        with self._lock:
            self.items[kind] += size
            self.batch_sizes.setdefault(kind, _Histogram(BATCH_BUCKETS)).observe(size)
            self.batch_seconds.setdefault(kind, _Histogram(SECONDS_BUCKETS)).observe(seconds)

    def render(self, queue_depth: Callable[[], int], ready: bool) -> str:
        lines: list[str] = []
        with self._lock:
            lines += ["# HELP embedder_requests_total HTTP requests by route and status.",
                      "# TYPE embedder_requests_total counter"]
            for (method, route, status), count in sorted(self.requests.items()):
                lines.append(f"embedder_requests_total{_labels(method=method, route=route, status=str(status))} {count}")
            lines += ["# HELP embedder_items_embedded_total Texts and images embedded.",
                      "# TYPE embedder_items_embedded_total counter"]
            for kind, count in sorted(self.items.items()):
                lines.append(f"embedder_items_embedded_total{_labels(kind=kind)} {count}")
            lines += ["# HELP embedder_items_rejected_total Items refused, by reason.",
                      "# TYPE embedder_items_rejected_total counter"]
            for code, count in sorted(self.rejected_items.items()):
                lines.append(f"embedder_items_rejected_total{_labels(code=code)} {count}")
            for name, help_text, table in (
                ("embedder_batch_size", "Items per forward pass.", self.batch_sizes),
                ("embedder_batch_seconds", "Seconds per forward pass.", self.batch_seconds),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                for kind, histogram in sorted(table.items()):
                    for bound, count in zip(histogram.buckets, histogram.counts):
                        lines.append(f"{name}_bucket{_labels(kind=kind, le=str(bound))} {count}")
                    lines.append(f"{name}_bucket{_labels(kind=kind, le='+Inf')} {histogram.total}")
                    lines.append(f"{name}_sum{_labels(kind=kind)} {histogram.sum:g}")
                    lines.append(f"{name}_count{_labels(kind=kind)} {histogram.total}")
        lines += ["# HELP embedder_queue_items Items waiting for the model.", "# TYPE embedder_queue_items gauge",
                  f"embedder_queue_items {queue_depth()}",
                  "# HELP embedder_ready 1 when the model is loaded.", "# TYPE embedder_ready gauge",
                  f"embedder_ready {int(ready)}"]
        return "\n".join(lines) + "\n"
