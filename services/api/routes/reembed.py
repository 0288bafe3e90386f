"""Re-embedding the library under a new model without downtime (needs an API key to change anything).

`POST /v1/reembed {"model", "text_model"}` loads the model in the embedder first (refused, 422, with the
embedder's sentence when it cannot, or when it is the model that already answers; 409 while another
re-embedding runs), then creates the new table (`<STORE_TABLE>_<8 hex>`, services/photostore/active.py)
and queues batches of the photos it lacks; run again with the same model, it resumes (queuing the
missing photos again if no batch finished for STALLED_S): photos already in the new table are never
embedded again. Workers fill the table and switch the store's active record
when every photo is in (services/worker/reembed_tasks.py); until then every query is answered from the
old table. `GET /v1/reembed` is the job (state, total, done, failed by reason, rate, ETA, from/to) and the
active record; `POST /v1/reembed/rollback` switches back to the previous table; `POST
/v1/reembed/drop-old` drops it.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.api.deps import Services, ServicesDep, blocking, jobs_call, require_read_key, require_write_key
from services.common.embedder_client import EmbedderRejected
from services.common.errors import BadRequest, DependencyUnavailable, ServiceError
from services.common.queue import MAX_BATCH_SIZE
from services.common.reembed_jobs import BATCH_SIZE, RUNNING
from services.photostore.active import ActiveRecord, reembed_table_name
from services.photostore.errors import ModelMismatch

log = logging.getLogger(__name__)

router = APIRouter(tags=["reembed"])
# A running re-embedding with no batch finished for this long is queued again when asked to resume
# (batches are idempotent, so one still queued costs only its lookup).
STALLED_S = 120


class ReembedRequest(BaseModel):
    model: str = Field(min_length=1, max_length=1024, description="The model to re-embed the library with, "
                       "as the embedder names it (EMBEDDER_MODEL's form: a hub id or a folder on its machine).")
    text_model: str | None = Field(None, max_length=1024, description="Its text tower; none: the model's own.")
    batch_size: int = Field(BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="Photos per worker task.")


def _conflict(message: str, code: str) -> ServiceError:
    return ServiceError(message, code=code, status_code=409)


def _reembeds(services: Services) -> Any:
    if services.reembeds is None:
        raise DependencyUnavailable("This gateway cannot run re-embeddings (it has no job store).",
                                    code="reembed_unavailable")
    return services.reembeds


async def _active(services: Services) -> ActiveRecord:
    reader = getattr(services.base_store, "active_record", None)
    if reader is None:
        raise DependencyUnavailable("This store keeps no active table record.", code="reembed_unavailable")
    record = await blocking(reader, True)
    # This gateway's queries follow a switch or a rollback it has just seen at once, not at its next check.
    await services.refresh_active()
    return record


async def _status(services: Services) -> dict[str, Any]:
    active = await _active(services)
    job = await jobs_call(_reembeds(services).get)
    return {"active": active.as_dict(), "job": job}


async def _refuse_while_running(services: Services, doing: str) -> None:
    job = await jobs_call(_reembeds(services).record)
    if job is not None and job["state"] == RUNNING:
        raise _conflict(f"A re-embedding to {job['to_model']} is running; {doing} once it has finished "
                        "(make reembed shows its progress).", "reembed_running")


@router.get("/v1/reembed", dependencies=[Depends(require_read_key)],
            summary="The table and model that answer queries, and the re-embedding in progress or last run")
async def reembed_status(services: ServicesDep) -> dict[str, Any]:
    return await _status(services)


@router.post("/v1/reembed", status_code=202, dependencies=[Depends(require_write_key)],
             summary="Re-embed every photo under a new model into a new table, then switch (or resume)")
async def start_reembed(body: ReembedRequest, services: ServicesDep) -> dict[str, Any]:
    reembeds = _reembeds(services)
    model, text_model = body.model.strip(), (body.text_model or "").strip() or None
    if not model:
        raise BadRequest("model must name the model to re-embed with.", code="invalid_model")
    store = services.base_store
    active = await _active(services)
    to_table = reembed_table_name(store.base_table, model, text_model)
    job = await jobs_call(reembeds.get)
    if job is not None and job["state"] == RUNNING:
        if job["to_table"] == to_table:
            if time.time() - float(job.get("updated_at") or job["started_at"] or 0) > STALLED_S:
                # No batch finished for a while (the broker lost them?): queue the photos still missing again.
                missing = await blocking(store.for_table(job["from_table"]).missing_from, to_table)
                await jobs_call(partial(reembeds.enqueue_round, job, missing, next_round=True,
                                        batch_size=body.batch_size))
            return {**await _status(services), "resumed": True}
        raise _conflict(f"A re-embedding to {job['to_model']} is already running; wait for it to finish (make "
                        f"reembed MODEL={job['to_model']} shows it) before starting another.", "reembed_running")
    if to_table == active.table:
        raise BadRequest(f"{model} already answers queries (table {to_table}); there is nothing to re-embed.",
                         code="model_already_active")
    try:
        info = await services.embedder.load_model(model, text_model)
    except EmbedderRejected as exc:
        raise BadRequest(f"The embedder cannot load {model}, so nothing was changed: "
                         f"{getattr(exc, 'message', None) or exc}", code="model_failed") from exc
    current = await services.model_info.get(fresh=True)
    if _same_model(info, current):
        raise BadRequest(f"{model} is the model that already answers queries (table {active.table}); there is "
                         "nothing to re-embed.", code="model_already_active")
    source = store.for_table(active.table)
    if await blocking(source.table_info) is None:
        raise BadRequest("The library is empty: there is nothing to re-embed; ingest photos first.",
                         code="nothing_to_reembed")
    target = store.for_table(to_table)
    try:
        await blocking(target.ensure_table, int(info["dim"]), str(info["name"]))
    except ModelMismatch as exc:
        raise _conflict(str(exc), "table_conflict") from exc
    resumed = bool(await blocking(target.count))
    missing = await blocking(source.missing_from, to_table)
    record = await jobs_call(reembeds.start, {
        "from_table": active.table, "from_model": active.model, "from_text_model": active.text_model,
        "to_table": to_table, "to_model": model, "to_text_model": text_model})
    await jobs_call(partial(reembeds.enqueue_round, record, missing, batch_size=body.batch_size))
    log.info("re-embedding %s: %d photos of %s to %s (%s)", record["job_id"], len(missing), active.table, to_table,
             model)
    return {**await _status(services), "resumed": resumed}


def _same_model(info: dict[str, Any], current: dict[str, Any]) -> bool:
    keys = ("fingerprint", "text_fingerprint") if info.get("fingerprint") else ("name", "text_model")
    return all(info.get(key) == current.get(key) for key in keys)


@router.post("/v1/reembed/rollback", dependencies=[Depends(require_write_key)],
             summary="Switch queries back to the table (and model) that answered before the last switch")
async def rollback(services: ServicesDep) -> dict[str, Any]:
    await _refuse_while_running(services, "roll back")
    store = services.base_store
    active = await _active(services)
    if not active.previous:
        raise _conflict("There is no previous table to switch back to (none was kept, or it was dropped).",
                        "nothing_to_roll_back")
    info = await blocking(store.for_table(active.previous).table_info)
    if info is None:
        raise _conflict(f"The previous table {active.previous} is gone.", "nothing_to_roll_back")
    if active.previous_model:
        try:
            await services.embedder.load_model(active.previous_model, active.previous_text_model)
        except EmbedderRejected as exc:
            raise BadRequest(f"The embedder cannot load {active.previous_model}, so nothing was changed: "
                             f"{getattr(exc, 'message', None) or exc}", code="model_failed") from exc
    await blocking(store.record_active, ActiveRecord(
        active.previous, active.previous_model, active.previous_text_model, int(info["dim"]), previous=active.table,
        previous_model=active.model, previous_text_model=active.text_model))
    return await _status(services)


@router.post("/v1/reembed/drop-old", dependencies=[Depends(require_write_key)],
             summary="Drop the table that answered before the last switch (no rollback after this)")
async def drop_old(services: ServicesDep) -> dict[str, Any]:
    await _refuse_while_running(services, "drop the old table")
    store = services.base_store
    active = await _active(services)
    if not active.previous or active.previous == active.table:
        raise _conflict("There is no old table to drop.", "nothing_to_drop")
    await blocking(store.drop_photo_table, active.previous)
    await blocking(store.record_active, dataclasses.replace(active, previous=None, previous_model=None,
                                                             previous_text_model=None))
    return {**await _status(services), "dropped": active.previous}
