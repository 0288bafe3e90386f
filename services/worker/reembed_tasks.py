"""The re-embedding task: one batch (reembed.py), then, after a round's last batch, the round's end.

At the end of a round one worker (under the record's Redis lock) drops from the new table the photos
deleted from the old one meanwhile, and lists the photos the new table still lacks (those that reached
the old table during the round, or failed in it). Some missing: a catch-up round of them, unless every
one of them was in the round just finished (then they cannot be re-embedded: the job fails with a
sentence, the active table unchanged, and `make reembed` run again retries them). None missing: the
switch, one row in the store's active record (services/photostore/active.py). A sweep then runs once,
`SWEEP_AFTER_S` later, for photos that an ingestion worker embedded for the old table just before it saw
the switch.
"""
from __future__ import annotations

import functools
import logging
import time

from celery import Task, shared_task

from services.common import request_ids
from services.common.embedder_client import EmbedderBusy
from services.common.jobs import JOB_DONE
from services.common.queue import QUEUE, producer_app
from services.common.reembed_jobs import DONE, FAILED, REEMBED_TASK, RUNNING, ReembedJobs
from services.photostore.active import ActiveRecord
from services.worker import metrics, pipeline, reembed, resources
from services.worker.config import get_settings
from services.worker.media import video_limits
from services.worker.resources import Resources
from services.worker.tasks import TRANSIENT

log = logging.getLogger(__name__)

# Longer than any process trusts the active record it read (RECHECK_S) plus a batch's embedding.
SWEEP_AFTER_S = 30


@functools.lru_cache(maxsize=4)
def _reembeds(redis_url: str, base_table: str) -> ReembedJobs:
    return ReembedJobs(redis_url, base_table)


def reembeds(res: Resources) -> ReembedJobs:
    return _reembeds(res.settings.redis_url, res.store.base_table)


class ReembedTask(Task):
    """A batch that cannot succeed (retries exhausted, a permanent error) is counted with its photos failed,
    so the round still ends; its photos are then retried by the catch-up round, once."""

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        kwargs = getattr(self.request, "kwargs", None) or {}
        return get_settings().max_retries + int(kwargs.get("busy_waits") or 0)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id, batch_id = kwargs.get("job_id"), kwargs.get("batch_id") or task_id
        if not job_id or kwargs.get("sweep"):
            return
        photos = [{"photo_id": photo_id} for photo_id in kwargs.get("photo_ids") or ()]
        reason = f"The batch could not be re-embedded: {getattr(exc, 'message', None) or exc}"
        failures = [f.model_dump() for f in pipeline.failed_batch(photos, getattr(exc, "code", None) or "batch_failed",
                                                                   reason)]
        try:
            res = resources.current()
            if res.jobs.finish_batch(job_id, batch_id, 0, 0, failures, photos) == JOB_DONE:
                finish_round(res, job_id)
        except Exception:
            log.exception("re-embedding %s batch %s: could not record the batch's failure", job_id, batch_id)


@shared_task(name=REEMBED_TASK, base=ReembedTask, bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=TRANSIENT, retry_backoff=2, retry_jitter=True, ignore_result=True)
def reembed_batch(self, job_id: str, batch_id: str, photo_ids: list[str], from_table: str, to_table: str,
                  model: str | None, text_model: str | None = None, sweep: bool = False, busy_waits: int = 0) -> dict:
    try:
        with request_ids.bound(f"job-{job_id}"):
            return _run(job_id, batch_id, photo_ids, from_table, to_table, model, text_model, sweep)
    except EmbedderBusy as exc:
        raise self.retry(exc=exc, countdown=exc.retry_after, max_retries=self.request.retries + 1,
                         kwargs={"job_id": job_id, "batch_id": batch_id, "photo_ids": photo_ids,
                                 "from_table": from_table, "to_table": to_table, "model": model,
                                 "text_model": text_model, "sweep": sweep, "busy_waits": busy_waits + 1}) from None


def _run(job_id: str, batch_id: str, photo_ids: list[str], from_table: str, to_table: str, model: str | None,
         text_model: str | None, sweep: bool) -> dict:
    res = resources.current()
    record = reembeds(res).record()
    if record is None or record["job_id"] != job_id or record["state"] != (DONE if sweep else RUNNING):
        log.info("re-embedding %s is no longer running; batch %s dropped", job_id, batch_id)
        return {"dropped": True}
    source = res.store.for_table(from_table)
    if sweep:
        photo_ids = source.missing_from(to_table)
    outcome = run_batch(res, photo_ids, source, res.store.for_table(to_table), model, text_model)
    metrics.record_batch(outcome)
    if sweep:
        return {"succeeded": outcome.succeeded}
    failures = [failure.model_dump() for failure in outcome.failures]
    counted = res.jobs.finish_batch(job_id, batch_id, outcome.succeeded, outcome.skipped, failures,
                                    [{"photo_id": photo_id} for photo_id in photo_ids])
    if counted == JOB_DONE:
        finish_round(res, job_id)
    return {"succeeded": outcome.succeeded, "skipped": outcome.skipped, "failed": len(failures)}


def run_batch(res: Resources, photo_ids: list[str], source, target, model: str | None,
              text_model: str | None) -> pipeline.BatchOutcome:
    embedder = reembed.bound(res.embedder, model, text_model)
    crop = pipeline.choose_crop(embedder.model_info(), res.settings.preprocess)
    return reembed.reembed_batch(photo_ids, source, target, embedder, res.policy,
                                 roots=res.settings.library_root_list, crop=crop,
                                 max_image_pixels=res.settings.max_image_pixels,
                                 download_concurrency=res.settings.download_concurrency, video=video_limits(res.settings))


def finish_round(res: Resources, job_id: str) -> None:
    """After a round's last batch: catch up, fail, or switch (see the module docstring)."""
    jobs = reembeds(res)
    lock = jobs.lock()
    if not lock.acquire(blocking=False):
        return
    try:
        record = jobs.record()
        if record is None or record["job_id"] != job_id or record["state"] != RUNNING:
            return
        source, target = res.store.for_table(record["from_table"]), res.store.for_table(record["to_table"])
        target.remove_rows(target.missing_from(record["from_table"]))  # deleted from the old table meanwhile
        missing = source.missing_from(record["to_table"])
        if missing and set(missing) <= jobs.round_ids():
            jobs.update(state=FAILED, error=(
                f"{len(missing)} photos could not be re-embedded (neither their source nor their thumbnail "
                f"could be read), for example {', '.join(missing[:3])}: see the failures below; restore or "
                f"delete them, then run make reembed MODEL={record['to_model']} again to finish (what is done "
                "is kept). Searches still use the old table."))
            log.warning("re-embedding %s failed: %d photos cannot be re-embedded", job_id, len(missing))
        elif missing:
            log.info("re-embedding %s: a catch-up round of %d photos", job_id, len(missing))
            jobs.enqueue_round(record, missing, next_round=True)
        else:
            switch(res, jobs, record, target.known_dim())
    finally:
        try:
            lock.release()
        except Exception:  # the lock expired: nothing to release
            log.debug("re-embedding lock already released", exc_info=True)


def switch(res: Resources, jobs: ReembedJobs, record: dict, dim: int | None) -> None:
    """Every photo is in the new table: record it as the active one, in one row."""
    active = res.store.active_record(fresh=True)
    res.store.record_active(ActiveRecord(
        record["to_table"], record["to_model"], record["to_text_model"], dim, previous=record["from_table"],
        previous_model=active.model if active.table == record["from_table"] else record["from_model"],
        previous_text_model=active.text_model if active.table == record["from_table"] else record["from_text_model"]))
    jobs.update(state=DONE, switched_at=time.time())
    log.info("re-embedding %s done: %s now answers with %s", record["job_id"], record["to_table"], record["to_model"])
    producer_app(res.settings.redis_url).send_task(REEMBED_TASK, queue=QUEUE, countdown=SWEEP_AFTER_S, kwargs={
        "job_id": record["job_id"], "batch_id": f"{record['job_id']}-sweep", "photo_ids": [],
        "from_table": record["from_table"], "to_table": record["to_table"], "model": record["to_model"],
        "text_model": record["to_text_model"], "sweep": True})
