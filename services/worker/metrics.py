"""The workers' Prometheus metrics (prometheus_client), summed over Celery's prefork children.

Tasks are counted by outcome, photos by outcome and failure reason, and the seconds a batch spends
downloading, embedding and inserting go into histograms. Celery runs tasks in forked child processes,
so each child's counts live in its own files under a multiprocess folder (prometheus_client's
multiprocess mode) and the main worker process serves their sum on WORKER_METRICS_PORT with a
MultiProcessCollector: `curl :9808/metrics`.

`start_worker_metrics` runs in the main process on `worker_init`, before the pool forks: it points
PROMETHEUS_MULTIPROC_DIR at WORKER_METRICS_DIR (or a fresh temporary folder), empties it (files of a
previous run would be summed in), builds the metrics there and starts the HTTP server. Without it
(tests calling the pipeline directly, `--pool solo` with the port at 0) the metrics count in memory.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server, values

log = logging.getLogger(__name__)

# Seconds per batch stage: a download of a few images takes ~0.1 s, a CPU embed of 64 several seconds.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STAGES = ("download", "embed", "insert")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.tasks = Counter("worker_tasks", "Ingestion tasks by outcome (succeeded, retried, failed).",
                             ["outcome"], registry=registry)
        self.photos = Counter("worker_photos", "Photos by outcome (inserted, skipped, failed) and failure reason.",
                              ["outcome", "reason"], registry=registry)
        self.seconds = Histogram("worker_stage_duration_seconds",
                                 "Seconds one batch spent in a stage: download, embed or insert.",
                                 ["stage"], buckets=BUCKETS, registry=registry)


_metrics: WorkerMetrics | None = None
_own_folder: Path | None = None  # a temporary folder made here, removed when the worker stops


def current() -> WorkerMetrics:
    """This process's metrics: the multiprocess ones set up on worker_init, else in-memory ones."""
    global _metrics
    if _metrics is None:
        _metrics = WorkerMetrics(CollectorRegistry())
    return _metrics


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time one stage of a batch (download, embed, insert), whether it ends normally or raises."""
    started = time.perf_counter()
    try:
        yield
    finally:
        current().seconds.labels(stage).observe(time.perf_counter() - started)


def record_batch(outcome) -> None:
    """Count one batch's photos: `outcome` is pipeline.BatchOutcome."""
    photos = current().photos
    if outcome.succeeded:
        photos.labels("inserted", "").inc(outcome.succeeded)
    if outcome.skipped:
        photos.labels("skipped", "").inc(outcome.skipped)
    for failure in outcome.failures:
        photos.labels("failed", failure.code or "unknown").inc()


def start_worker_metrics(port: int, directory: str = "") -> int | None:
    """In the main worker process, before the pool forks: multiprocess mode and the HTTP server.
    Returns the port served, or None when off (port 0) or when the port is taken (logged, not fatal:
    ingestion matters more than its metrics)."""
    global _metrics, _own_folder
    if not port:
        return None
    folder = Path(directory or tempfile.mkdtemp(prefix="worker-metrics-"))
    _own_folder = None if directory else folder
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    # prometheus_client chooses how values are kept when it is imported, from this variable; it may have
    # been imported before the worker's settings were read, so let it choose again (its own function).
    values.ValueClass = values.get_value_class()
    # Not registered anywhere: in multiprocess mode the values are read back from the files.
    _metrics = WorkerMetrics(None)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning("worker metrics: could not listen on port %d (%s); set WORKER_METRICS_PORT to a free port "
                    "or 0", port, exc)
        return None
    log.info("worker metrics on :%d/metrics (children's files in %s)", port, folder)
    return port


def on_worker_init(**_) -> None:
    from services.worker.config import get_settings

    settings = get_settings()
    start_worker_metrics(settings.metrics_port, settings.metrics_dir)


def on_worker_shutdown(**_) -> None:
    """The main process stops: a temporary metrics folder goes with it (a configured one is kept)."""
    if _own_folder is not None:
        shutil.rmtree(_own_folder, ignore_errors=True)


def on_process_shutdown(pid=None, **_) -> None:
    """A child leaves: its live gauges go (counters and histograms stay in the sum, as Prometheus expects)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())


def on_task_success(**_) -> None:
    current().tasks.labels("succeeded").inc()


def on_task_retry(**_) -> None:
    current().tasks.labels("retried").inc()


def on_task_failure(sender=None, exception=None, kwargs=None, **_) -> None:
    """A task that failed for good (retries exhausted, or a permanent error): its photos failed with it."""
    current().tasks.labels("failed").inc()
    photos = (kwargs or {}).get("photos") or []
    if photos:
        reason = getattr(exception, "code", None) or "batch_failed"
        current().photos.labels("failed", reason).inc(len(photos))
