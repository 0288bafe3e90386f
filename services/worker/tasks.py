"""The ingestion task: thin glue between Celery and pipeline.ingest_batch.

Clients (embedder, store, job store) are built once per worker process, on its first task, so that
nothing is opened in the parent before the pool forks.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from celery import Task

from services.common import request_ids
from services.common.errors import DependencyTimeout, DependencyUnavailable
from services.common.fetch import FetchPolicy
from services.common.jobs import JOB_DONE, JobStore
from services.common.queue import TASK_NAME
from services.worker import pipeline
from services.worker.celery_app import app
from services.worker.config import WorkerSettings, get_settings

log = logging.getLogger(__name__)

# EmbedderUnavailable, EmbedderTimeout and StoreUnavailable all derive from these two: the
# dependency is down or slow, so the same batch may well succeed later.
TRANSIENT = (DependencyUnavailable, DependencyTimeout)


@dataclass
class Resources:
    settings: WorkerSettings
    embedder: Any
    store: Any
    jobs: JobStore
    policy: FetchPolicy
    model: dict | None = None
    crop: Any = None  # a ClipCrop when this worker decodes and crops (pipeline.choose_crop)


_resources: Resources | None = None
_resources_pid: int | None = None
_lock = threading.Lock()


def build_resources(settings: WorkerSettings) -> Resources:
    """Real clients from the settings (imported here: the store client pulls clickhouse_connect)."""
    from services.common.embedder_client import EmbedderClient
    from services.photostore import PhotoStore

    return Resources(
        settings=settings,
        embedder=EmbedderClient(settings.embedder_urls, timeout=settings.embedder_timeout_s),
        store=PhotoStore(settings.store_url, settings.store_table, connect_timeout=settings.store_connect_timeout_s,
                         query_timeout=settings.store_query_timeout_s, **settings.store_options()),
        jobs=JobStore(settings.redis_url, ttl_seconds=settings.job_ttl_s),
        policy=settings.fetch_policy(),
    )


def resources() -> Resources:
    global _resources, _resources_pid
    with _lock:
        if _resources is None or _resources_pid != os.getpid():
            _resources = build_resources(get_settings())
            _resources_pid = os.getpid()
        return _resources


def close_resources() -> None:
    global _resources
    with _lock:
        if _resources is not None and _resources_pid == os.getpid():
            for client, method in ((_resources.embedder, "close"), (_resources.store, "close"),
                                   (_resources.jobs, "close")):
                try:
                    getattr(client, method)()
                except Exception:  # closing is best effort at shutdown
                    log.debug("closing %s failed", client, exc_info=True)
        _resources = None


class IngestTask(Task):
    """Records a batch as failed when it cannot succeed (retries exhausted or a permanent error), so
    that its job still finishes and says why."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id, batch_id, photos = kwargs.get("job_id"), kwargs.get("batch_id") or task_id, kwargs.get("photos") or []
        if not job_id:
            return
        if isinstance(exc, TRANSIENT):
            reason = f"Gave up after {self.max_retries} retries: {exc}"
        else:
            reason = f"The batch could not be ingested: {getattr(exc, 'message', None) or exc}"
        code = getattr(exc, "code", None) or "batch_failed"
        failures = [failure.model_dump() for failure in pipeline.failed_batch(photos, code, reason)]
        try:
            res = resources()
            if res.jobs.finish_batch(job_id, batch_id, 0, 0, failures) == JOB_DONE:
                build_index_if_due(res, job_id)
        except Exception:
            log.exception("job %s batch %s: could not record the batch's failure", job_id, batch_id)


@app.task(
    name=TASK_NAME,
    base=IngestTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=get_settings().retry_backoff_max_s,
    retry_jitter=True,
    max_retries=get_settings().max_retries,
    ignore_result=True,
)
def ingest_batch(self, job_id: str, batch_id: str, photos: list[dict]) -> dict:
    res = resources()
    # The embedder's log lines for this batch carry the job's id (services/common/request_ids.py).
    with request_ids.bound(f"job-{job_id}"):
        if res.model is None:
            res.model = pipeline.prepare_store(res.embedder, res.store)
            res.crop = pipeline.choose_crop(res.model, res.settings.preprocess)
            log.info("images are decoded and cropped %s", "here" if res.crop else "by the embedder")
        outcome = pipeline.ingest_batch(photos, res.embedder, res.store, res.policy,
                                        download_concurrency=res.settings.download_concurrency, crop=res.crop,
                                        max_image_pixels=res.settings.max_image_pixels)
    failures = [failure.model_dump() for failure in outcome.failures]
    counted = res.jobs.finish_batch(job_id, batch_id, outcome.succeeded, outcome.skipped, failures)
    if not counted:
        log.info("job %s batch %s was already recorded (a redelivery); not counted again", job_id, batch_id)
    elif counted == JOB_DONE:
        build_index_if_due(res, job_id)
    return {"succeeded": outcome.succeeded, "skipped": outcome.skipped, "failed": len(failures)}


def build_index_if_due(res: Resources, job_id: str) -> None:
    """After a job's last batch: once the table has outgrown exact search and has no vector index,
    start building one. The build runs on the store server in the background (minutes for hundreds
    of thousands of rows); searches stay exact until it is done, and later inserts are indexed as
    they arrive. A failure here costs nothing but the index: it is logged with the command to run."""
    if not res.settings.auto_index:
        return
    try:
        if not res.store.wants_index():
            return
        log.info("job %s is done and the table has outgrown exact search: building its vector index", job_id)
        res.store.build_index(wait=False)
    except Exception as exc:
        log.warning("job %s: could not start building the vector index (%s); run `make index ACTION=build`",
                    job_id, exc)
