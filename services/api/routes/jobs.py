"""Ingestion jobs: submit photos (needs an API key), follow a job's progress, page through its failures and
retry them as a new job (needs an API key)."""
from __future__ import annotations

import functools
import logging
import math
from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.deps import ServicesDep, jobs_call, require_read_key, require_write_key
from services.api.schemas import BATCH_SIZE_MAX, IngestAccepted, IngestRequest, Job, JobFailures, RetryAccepted
from services.common.errors import DependencyUnavailable, NotFound, ServiceError

log = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])


@router.post("/v1/ingest", status_code=202, response_model=IngestAccepted,
             dependencies=[Depends(require_write_key)],
             summary="Queue photos for ingestion (download, embed, store) by the workers")
async def ingest(body: IngestRequest, services: ServicesDep) -> dict[str, Any]:
    if body.job_id is not None:
        if await jobs_call(services.jobs.get, body.job_id) is None:
            raise NotFound(f"No job with job_id {body.job_id!r}; leave job_id out to start a new job.",
                           code="job_not_found")
        job_id = body.job_id
    else:
        job_id = await jobs_call(services.jobs.create)
    photos = [photo.model_dump() for photo in body.photos]
    queued = await _queue(services, job_id, photos, body.batch_size)
    return {"job_id": job_id, "photos": len(photos), "batches": queued}


async def _queue(services, job_id: str, photos: list[dict], batch_size: int) -> int:
    batches = math.ceil(len(photos) / batch_size)
    # Announce the work before queuing it: a fast worker must never finish a batch of a job that
    # does not yet know it has that batch, or the job would look done too early.
    await jobs_call(services.jobs.add_batches, job_id, batches, len(photos))
    try:
        queued = await jobs_call(services.enqueue, job_id, photos, batch_size)
    except ServiceError:
        raise
    except Exception as exc:
        log.exception("enqueue failed for job %s", job_id)
        raise DependencyUnavailable("The job queue refused the batches; try again shortly.",
                                    code="queue_unavailable") from exc
    if queued != batches:
        log.warning("job %s: expected %d batches, the queue took %d", job_id, batches, queued)
    log.info("job %s: queued %d photos in %d batches", job_id, len(photos), queued)
    return queued


@router.get("/v1/jobs/{job_id}", response_model=Job, dependencies=[Depends(require_read_key)],
            summary="A job's progress and per-photo failures")
async def get_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    job = await jobs_call(services.jobs.get, job_id)
    if job is None:
        raise NotFound(f"No job with job_id {job_id!r} (jobs are kept for a week).", code="job_not_found")
    return job


@router.get("/v1/jobs/{job_id}/failures", response_model=JobFailures, dependencies=[Depends(require_read_key)],
            summary="A job's failed photos with their reasons and records, a page at a time")
async def get_failures(job_id: str, services: ServicesDep, offset: int = Query(0, ge=0),
                       limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    if await jobs_call(services.jobs.get, job_id) is None:
        raise NotFound(f"No job with job_id {job_id!r} (jobs are kept for a week).", code="job_not_found")
    total, failures = await jobs_call(services.jobs.failures, job_id, offset, limit)
    return {"job_id": job_id, "total": total, "offset": offset, "limit": limit, "failures": failures}


@router.post("/v1/jobs/{job_id}/retry", status_code=202, response_model=RetryAccepted,
             dependencies=[Depends(require_write_key)],
             summary="Start a new job with only this job's failed photos")
async def retry_job(job_id: str, services: ServicesDep,
                    batch_size: int = Query(32, ge=1, le=BATCH_SIZE_MAX)) -> dict[str, Any]:
    job = await jobs_call(services.jobs.get, job_id)
    if job is None:
        raise NotFound(f"No job with job_id {job_id!r} (jobs are kept for a week).", code="job_not_found")
    photos = await jobs_call(services.jobs.failed_records, job_id)
    if not photos:
        raise ServiceError(f"Job {job_id!r} has no failed photos to retry"
                           + (" yet; it is still running." if job["state"] != "done" else "."),
                           code="nothing_to_retry", status_code=409)
    new_id = await jobs_call(functools.partial(services.jobs.create, retry_of=job_id))
    queued = await _queue(services, new_id, photos, batch_size)
    return {"job_id": new_id, "photos": len(photos), "batches": queued, "retry_of": job_id}
