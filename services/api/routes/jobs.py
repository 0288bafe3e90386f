"""Ingestion jobs: submit photos (needs an API key) and follow a job's progress and failures."""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import APIRouter, Depends

from services.api.deps import ServicesDep, jobs_call, require_read_key, require_write_key
from services.api.schemas import IngestAccepted, IngestRequest, Job
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
    batches = math.ceil(len(photos) / body.batch_size)
    # Announce the work before queuing it: a fast worker must never finish a batch of a job that
    # does not yet know it has that batch, or the job would look done too early.
    await jobs_call(services.jobs.add_batches, job_id, batches, len(photos))
    try:
        queued = await jobs_call(services.enqueue, job_id, photos, body.batch_size)
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
