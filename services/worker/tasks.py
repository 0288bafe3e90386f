"""The ingestion task: thin glue between Celery and pipeline.ingest_batch.

A `shared_task`, so that this module never imports the app (celery_app.py lists this module in its
`imports`). Its clients are the worker process's own (resources.py), opened when the process starts.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from services.common import request_ids
from services.common.embedder_client import EmbedderBusy
from services.common.errors import DependencyTimeout, DependencyUnavailable
from services.common.jobs import JOB_DONE
from services.common.queue import TASK_NAME
from services.worker import metrics, pipeline, reembed, resources
from services.worker.config import get_settings
from services.worker.media import video_limits
from services.worker.resources import Resources

log = logging.getLogger(__name__)

# EmbedderUnavailable, EmbedderTimeout and StoreUnavailable all derive from these two: the
# dependency is down or slow, so the same batch may well succeed later.
TRANSIENT = (DependencyUnavailable, DependencyTimeout)


class IngestTask(Task):
    """Takes its retry limits from the settings, and records a batch as failed when it cannot
    succeed (retries exhausted or a permanent error), so that its job still finishes and says why."""

    # Written as `max_retries=get_settings().max_retries` in the decorator, the limits would be read
    # when this module is imported. Celery reads them from the task instead when they are not passed
    # to the decorator: `max_retries` at each retry, `retry_backoff_max` once, when it builds the task
    # on the worker's app at start-up. So both are properties reading the settings then.
    # A wait asked for by a busy embedder (EmbedderBusy) is a retry to Celery too; the waits so far
    # travel in the task's kwargs and are added to the limit, so they never use it up.
    @property
    def max_retries(self) -> int:  # type: ignore[override]
        kwargs = getattr(self.request, "kwargs", None) or {}
        return get_settings().max_retries + int(kwargs.get("busy_waits") or 0)

    @property
    def retry_backoff_max(self) -> int:
        return get_settings().retry_backoff_max_s

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
            res = resources.current()
            if res.jobs.finish_batch(job_id, batch_id, 0, 0, failures, photos) == JOB_DONE:
                build_index_if_due(res, job_id)
        except Exception:
            log.exception("job %s batch %s: could not record the batch's failure", job_id, batch_id)


@shared_task(
    name=TASK_NAME,
    base=IngestTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_jitter=True,
    ignore_result=True,
)
def ingest_batch(self, job_id: str, batch_id: str, photos: list[dict], busy_waits: int = 0) -> dict:
    try:
        return _ingest(job_id, batch_id, photos)
    except EmbedderBusy as exc:
        # The embedder is up but loading or saturated, and said when to come back: slow down to its
        # pace instead of backing off exponentially into a failure. Photos never fail for this.
        log.info("job %s batch %s: the embedder is busy; retrying in %s s", job_id, batch_id, exc.retry_after)
        raise self.retry(exc=exc, countdown=exc.retry_after, max_retries=self.request.retries + 1,
                         kwargs={"job_id": job_id, "batch_id": batch_id, "photos": photos,
                                 "busy_waits": busy_waits + 1}) from None


def _ingest(job_id: str, batch_id: str, photos: list[dict]) -> dict:
    res = resources.current()
    # The embedder's log lines for this batch carry the job's id (services/common/request_ids.py).
    with request_ids.bound(f"job-{job_id}"):
        # The active table and its model, read once for the batch: a switch during it leaves this batch in the
        # old table, which the re-embedding's sweep then copies (services/worker/reembed_tasks.py).
        store, embedder = active_clients(res)
        if res.model is None or res.model.get("table") != store.table:
            res.model = {**pipeline.prepare_store(embedder, store), "table": store.table}
            res.crop = pipeline.choose_crop(res.model, res.settings.preprocess)
            log.info("images are decoded and cropped %s", "here" if res.crop else "by the embedder")
        outcome = pipeline.ingest_batch(photos, embedder, store, res.policy,
                                        download_concurrency=res.settings.download_concurrency, crop=res.crop,
                                        max_image_pixels=res.settings.max_image_pixels,
                                        roots=res.settings.library_root_list, spool=res.spool,
                                        video=video_limits(res.settings))
    metrics.record_batch(outcome)
    failures = [failure.model_dump() for failure in outcome.failures]
    counted = res.jobs.finish_batch(job_id, batch_id, outcome.succeeded, outcome.skipped, failures, photos)
    if not counted:
        log.info("job %s batch %s was already recorded (a redelivery); not counted again", job_id, batch_id)
    elif counted == JOB_DONE:
        build_index_if_due(res, job_id)
    return {"succeeded": outcome.succeeded, "skipped": outcome.skipped, "failed": len(failures)}


def active_clients(res: Resources) -> tuple[Any, Any]:
    """The store bound to the active table and the embedder bound to its model (services/photostore/active.py);
    the process's own clients where the store keeps no record (a test's fake)."""
    if not hasattr(res.store, "active_record"):
        return res.store, res.embedder
    active = res.store.active_record()
    return res.store.for_table(active.table), reembed.bound(res.embedder, active.model, active.text_model)


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
