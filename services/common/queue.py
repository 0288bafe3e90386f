"""Enqueueing ingestion batches: the producer side of the worker's Celery queue.

The gateway calls `enqueue_ingest`; the workers (services/worker/celery_app.py) consume. Both build
their Celery app from `celery_config`, so the two sides always agree on serializer and routing.
This module imports neither torch nor clickhouse_connect, nor any service: the gateway stays light.
"""
from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)

TASK_NAME = "imagesearch.ingest_batch"
QUEUE = "ingest"
MAX_BATCH_SIZE = 256
# How long a delivered batch stays invisible to other workers; living workers renew it
# (services/worker/lease.py), so it only bounds how long a killed worker's batches wait.
VISIBILITY_TIMEOUT_S = 60


def celery_config(redis_url: str, visibility_timeout_s: int = VISIBILITY_TIMEOUT_S) -> dict[str, Any]:
    """Settings shared by producer and consumer."""
    return {
        "broker_url": redis_url,
        # Progress lives in JobStore; task results are not read by anyone, so none are stored.
        "result_backend": None,
        "task_ignore_result": True,
        # JSON only: producer and consumer share no code objects (no pickle).
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_default_queue": QUEUE,
        "task_routes": {TASK_NAME: {"queue": QUEUE}},
        # Long tasks: a worker takes one batch at a time and acknowledges it only when done, so a
        # worker killed mid-batch hands the batch back to the queue (the batch is idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Redis redelivers a task unacknowledged for this long. A living worker renews the time of
        # what it holds (services/worker/lease.py), so the timeout need not exceed the longest batch
        # or retry countdown; it is how long a SIGKILLed worker's batches wait. Every consumer sweeps
        # for such batches every `unacked_restore_interval` s (the throttle of 1 makes that the
        # whole period; kombu's default is 10 x 10 s).
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, visibility_timeout_s // 6)),
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "task_create_missing_queues": True,
    }


@functools.lru_cache(maxsize=8)
def producer_app(redis_url: str) -> Celery:
    """A Celery app that only sends tasks (one per broker URL, kept for the process's life)."""
    app = Celery("imagesearch-producer", set_as_current=False)
    app.conf.update(celery_config(redis_url))
    return app


def split_batches(photos: list[dict], batch_size: int) -> list[list[dict]]:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    return [photos[start:start + batch_size] for start in range(0, len(photos), batch_size)]


def enqueue_ingest(redis_url: str, job_id: str, photos: list[dict], batch_size: int = 32) -> int:
    """Send one task per batch of `photos` (plain JSON dicts of PhotoRecord); returns the number of batches.

    Announce the batches in JobStore (add_batches) before calling this, so that progress can never
    run ahead of the total. Raises kombu's OperationalError when the broker cannot be reached.
    """
    app = producer_app(redis_url)
    batches = split_batches(photos, batch_size)
    for batch in batches:
        batch_id = uuid.uuid4().hex
        # The task id is the batch id: a redelivered task keeps both, which is what makes
        # JobStore count it once.
        app.send_task(TASK_NAME, kwargs={"job_id": job_id, "batch_id": batch_id, "photos": batch},
                      queue=QUEUE, task_id=batch_id)
    log.info("job %s: enqueued %d photos in %d batches", job_id, len(photos), len(batches))
    return len(batches)
