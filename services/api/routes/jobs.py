"""Ingestion jobs: submit photos (needs an API key), follow a job's progress, page through its failures and
retry them as a new job (needs an API key)."""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.deps import Services, ServicesDep, SettingsDep, jobs_call, require_read_key, require_write_key
from services.api.schemas import BATCH_SIZE_MAX, IngestAccepted, IngestRequest, Job, JobFailures, RetryAccepted
from services.common.errors import BadRequest, DependencyUnavailable, NotFound, ServiceError
from services.common.library import UPLOAD_SCHEME, listed_under, outside_sentence, path_of
from services.common.schemas import PhotoRecord

log = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])


@router.post("/v1/ingest", status_code=202, response_model=IngestAccepted,
             dependencies=[Depends(require_write_key)],
             summary="Queue photos for ingestion (download, embed, store) by the workers")
async def ingest(body: IngestRequest, services: ServicesDep, settings: SettingsDep) -> dict[str, Any]:
    check_local_paths(body.photos, settings.library_root_list)
    return await queue_photos(services, body.job_id, [photo.model_dump() for photo in body.photos], body.batch_size)


def check_local_paths(photos: list[PhotoRecord], roots: list[Path]) -> None:
    """A file:// photo must lie under a library root (the workers would refuse it anyway, one by one);
    upload:// photos come only from POST /v1/ingest/upload."""
    for photo in photos:
        path = path_of(photo.photo_image_url)
        if path is not None and listed_under(path, roots) is None:
            raise BadRequest(outside_sentence(path, roots), code="path_outside_library")
        if photo.photo_image_url.startswith(UPLOAD_SCHEME):
            raise BadRequest("upload:// photos are made by POST /v1/ingest/upload; send the file there.",
                             code="invalid_record")


async def queue_photos(services: Services, job_id: str | None, photos: list[dict], batch_size: int) -> dict[str, Any]:
    """Start a job (or add to `job_id`) and queue `photos` in batches of `batch_size`."""
    if job_id is not None:
        if await jobs_call(services.jobs.get, job_id) is None:
            raise NotFound(f"No job with job_id {job_id!r}; leave job_id out to start a new job.",
                           code="job_not_found")
    else:
        job_id = await jobs_call(services.jobs.create)
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
    return {"job_id": job_id, "photos": len(photos), "batches": queued}


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
    return {**await queue_photos(services, new_id, photos, batch_size), "retry_of": job_id}
