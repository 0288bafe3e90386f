"""Reading the collection: a random photo, one photo by id, field values, and the collection's stats."""
from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.api.deps import ServicesDep, blocking, require_read_key
from services.api.query import shape_result
from services.api.schemas import Facet, Photo, Stats
from services.api.signing import sign_urls
from services.common.errors import NotFound, ServiceError
from services.photostore.filters import parse_filters_json

log = logging.getLogger(__name__)

STORE_EMPTY = "The store has no photos yet; ingest some first (make ingest)."

router = APIRouter(tags=["photos"], dependencies=[Depends(require_read_key)])


def _as_photo(row: dict[str, Any], request: Request) -> dict[str, Any]:
    photo = shape_result(row)
    photo.pop("score", None)
    photo.pop("rank", None)
    return sign_urls(photo, request)


@router.get("/v1/photos/random", response_model=Photo, summary="A random stored photo")
async def random_photo(
    services: ServicesDep,
    request: Request,
    filters: Annotated[str | None, Query(description=(
        'Draw among the photos matching these metadata filters, as JSON text in the shape of '
        '/v1/search\'s: {"photo_location_country": ["Japan", "Peru"]}.'))] = None,
) -> dict[str, Any]:
    wanted = parse_filters_json(filters)
    table = await services.table_info.get()
    if table is None:
        raise NotFound(STORE_EMPTY, code="store_empty")
    row = await blocking(services.store.random_photo, wanted)
    if row is None:
        if wanted:
            raise NotFound("No stored photo matches these filters; loosen or clear them.", code="no_match")
        raise NotFound(STORE_EMPTY, code="store_empty")
    return _as_photo(row, request)


@router.get("/v1/photos/{photo_id:path}", response_model=Photo, summary="One stored photo by its id")
async def get_photo(photo_id: str, services: ServicesDep, request: Request) -> dict[str, Any]:
    table = await services.table_info.get()
    row = await blocking(services.store.get_photo, photo_id) if table is not None else None
    if row is None:
        raise NotFound(f"No photo with photo_id {photo_id!r} is in the store.", code="photo_not_found")
    return _as_photo(row, request)


@router.get("/v1/facets/{field}", response_model=Facet, summary="The most common values of a metadata field")
async def facet(field: str, services: ServicesDep,
                limit: Annotated[int, Query(ge=1, le=1000, description="How many values at most.")] = 100,
                ) -> dict[str, Any]:
    """What a filter on `field` can match (photo_location_country, photo_location_city,
    photographer_username), most photos first: the page's filter lists come from here."""
    # Before the first ingest there is no table: no values, not an error.
    return {"field": field, "values": await blocking(services.store.facet, field, limit)}


@router.get("/v1/stats", response_model=Stats, summary="How many photos, which model, which table")
async def stats(services: ServicesDep) -> dict[str, Any]:
    # Fresh: the stats are what a person checks right after an ingest or a change of table.
    table = await services.table_info.get(fresh=True)
    photos = await blocking(services.store.count) if table is not None else 0
    try:
        model = await services.model_info.get(fresh=True)
    except ServiceError as exc:
        # Stats stay useful while the embedder is down; the model is then unknown.
        log.warning("stats without model info: %s", exc.message)
        model = None
    return {"photos": photos, "model": model,
            "random_weights": bool(model and model.get("random_weights")), "table": table}
