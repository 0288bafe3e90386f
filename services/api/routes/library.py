"""Your own photos at the gateway: thumbnails, originals, deleting a photo, the files a folder holds,
and uploading a folder's files when the workers cannot read it (services/common/library.py)."""
from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from services.api.deps import ServicesDep, SettingsDep, blocking, require_write_key
from services.api.routes.jobs import queue_photos
from services.api.routes.search import _limited
from services.api.schemas import BATCH_SIZE_MAX, FILES_PAGE_MAX, FilesPage, IngestAccepted
from services.api.signing import read_key_or_signature
from services.common.errors import BadRequest, NotFound, PayloadTooLarge
from services.common.library import content_id, outside_sentence, root_of, upload_url
from services.common.schemas import LocalFile, PhotoRecord
from services.media.formats import MEDIA_SUFFIXES, sniff
from services.photostore.library import etag

router = APIRouter(tags=["library"])
# Thumbnails never change for a content id; a day's cache still lets a re-ingested URL photo refresh.
THUMBNAIL_CACHE = "private, max-age=86400"
# Originals served: every photo and video format a folder ingest takes (services/media/formats.py).
IMAGE_SUFFIXES = MEDIA_SUFFIXES


# With API_REQUIRE_KEY_FOR_READS an <img> cannot send the key: a signed URL (services/api/signing.py) does instead.
@router.get("/v1/photos/{photo_id}/thumbnail", dependencies=[read_key_or_signature("thumbnail")],
            summary="The photo's thumbnail (JPEG, about 320 px on the long side)",
            responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}})
async def thumbnail(photo_id: str, request: Request, services: ServicesDep) -> Response:
    data = await blocking(services.store.get_thumbnail, photo_id)
    if data is None:
        raise NotFound(f"No thumbnail for photo_id {photo_id!r}: the photo is not stored, or was ingested "
                       "before thumbnails were kept (ingest it again to make one).", code="thumbnail_not_found")
    tag = etag(data)
    headers = {"ETag": tag, "Cache-Control": THUMBNAIL_CACHE}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="image/jpeg", headers=headers)


@router.get("/v1/photos/{photo_id}/original", dependencies=[read_key_or_signature("original")],
            summary="The original file of a photo read from a folder, while it is still under a library root")
async def original(photo_id: str, services: ServicesDep, settings: SettingsDep) -> Response:
    paths = (await blocking(services.store.files_of, [photo_id])).get(photo_id, [])
    roots = settings.library_root_list
    for path in paths:
        if Path(path).suffix.lower() in IMAGE_SUFFIXES and root_of(path, roots) and await blocking(_is_image, path):
            media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
            return FileResponse(os.path.realpath(path), media_type=media_type,
                                headers={"Cache-Control": "private, max-age=3600"})
    raise NotFound(f"The original of photo_id {photo_id!r} is not available: it was not read from a folder "
                   "under the library roots, or its file is gone; its thumbnail still is.",
                   code="original_not_found")


def _is_image(path: str) -> bool:
    """Whether the file still holds a photo or video (its first bytes), not whatever now has its name."""
    try:
        with open(os.path.realpath(path), "rb") as handle:
            if sniff(handle.read(65536)) is not None:
                return True
        with Image.open(os.path.realpath(path)):
            return True
    except Exception:  # noqa: BLE001 - anything Pillow cannot open is not served
        return False


@router.delete("/v1/photos/{photo_id}", dependencies=[Depends(require_write_key)],
               summary="Remove one photo, its thumbnail and its file records")
async def delete_photo(photo_id: str, services: ServicesDep) -> dict[str, Any]:
    if not await blocking(services.store.delete_photos, [photo_id]):
        raise NotFound(f"No photo with photo_id {photo_id!r} is in the store.", code="photo_not_found")
    return {"deleted": photo_id}


@router.get("/v1/files", dependencies=[Depends(require_write_key)], response_model=FilesPage,
            summary="The recorded files under a folder, a page at a time, and whether the workers may read it")
async def files(services: ServicesDep, settings: SettingsDep,
                folder: Annotated[str, Query(min_length=1, max_length=4096,
                                             description="An absolute folder path.")],
                after: Annotated[str, Query(max_length=4096, description="List the files whose path sorts "
                                            "after this one: the `next` of the page before.")] = "",
                limit: Annotated[int, Query(ge=1, le=FILES_PAGE_MAX, description="Files per page.")] = FILES_PAGE_MAX,
                ) -> dict[str, Any]:
    """What the ingest command asks before a run: the files already stored (path, size, mtime), so that
    unchanged ones are neither read nor sent again, and whether to send paths or upload the files.

    Paged by path (`after`, `limit`, `next`), so that neither the gateway nor the command ever holds a
    whole folder's records: a caller that asks for no page gets the first FILES_PAGE_MAX and `next`."""
    if not os.path.isabs(folder):
        raise BadRequest(f"folder must be an absolute path, not {folder!r}.", code="invalid_folder")
    roots = settings.library_root_list
    readable = root_of(folder, roots) is not None
    prefix = folder.rstrip("/") + "/"
    table = await services.table_info.get(fresh=True)
    # One row more than the page says whether another page follows, without asking for an empty one.
    rows = await blocking(services.store.files_under, prefix, after, limit + 1) if table is not None else []
    more = len(rows) > limit
    del rows[limit:]
    return {"folder": folder, "readable": readable, "reason": None if readable else outside_sentence(folder, roots),
            "files": rows, "next": rows[-1]["path"] if more else None}


class LookupRequest(BaseModel):
    photo_ids: list[str] = Field(min_length=1, max_length=10_000)


@router.post("/v1/files/lookup", dependencies=[Depends(require_write_key)],
             summary="The recorded files of stored photos: where a picture is already kept")
async def lookup(body: LookupRequest, services: ServicesDep) -> dict[str, Any]:
    table = await services.table_info.get(fresh=True)
    return {"files": await blocking(services.store.files_of, body.photo_ids) if table is not None else {}}


class ForgetRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=10_000)


@router.post("/v1/files/forget", dependencies=[Depends(require_write_key)],
             summary="Forget files that are gone; photos left with no file are deleted (make ingest --prune)")
async def forget(body: ForgetRequest, services: ServicesDep) -> dict[str, Any]:
    orphans = await blocking(services.store.forget_files, body.paths)
    deleted = await blocking(services.store.delete_photos, orphans) if orphans else 0
    return {"forgotten": len(body.paths), "deleted": deleted, "photo_ids": orphans}


@router.post("/v1/ingest/upload", status_code=202, response_model=IngestAccepted,
             dependencies=[Depends(require_write_key)],
             summary="Upload photo files for ingestion (when the workers cannot read the folder)")
async def upload(request: Request, services: ServicesDep, settings: SettingsDep) -> dict[str, Any]:
    """multipart/form-data: the files as `file` parts, and `files`, JSON text listing each file's
    {path, size, mtime} in the same order; optional `job_id` and `batch_size`."""
    limit = settings.max_upload_bytes * settings.max_upload_files + 1024 * 1024
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The upload is larger than this gateway accepts at once ({settings.max_upload_files} "
                              f"files of {settings.max_upload_bytes // (1024 * 1024)} MiB at most).")
    form = await _limited(request, limit).form(max_files=settings.max_upload_files, max_fields=8,
                                               max_part_size=4 * 1024 * 1024)
    uploads = [value for name, value in form.multi_items() if isinstance(value, UploadFile) and name == "file"]
    try:
        described = [LocalFile.model_validate(item) for item in json.loads(str(form.get("files") or "[]"))]
        batch_size = int(str(form.get("batch_size") or 32))
    except (ValueError, ValidationError, TypeError) as exc:
        raise BadRequest("files must be JSON text listing {path, size, mtime} for each file part, and "
                         "batch_size a whole number.", code="invalid_upload") from exc
    if not uploads or len(uploads) != len(described):
        raise BadRequest(f"Send one or more `file` parts and, in `files`, one {{path, size, mtime}} for each "
                         f"({len(uploads)} files, {len(described)} descriptions).", code="invalid_upload")
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise BadRequest(f"batch_size must be between 1 and {BATCH_SIZE_MAX}.", code="invalid_upload")
    spool = _spool(request, settings.redis_url)
    photos = []
    for part, local in zip(uploads, described):
        data = await part.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"{local.path} is larger than {settings.max_upload_bytes // (1024 * 1024)} MiB, "
                                  "the most this gateway accepts for one photo.")
        digest = hashlib.sha256(data).hexdigest()
        await blocking(spool.put, digest, data)
        photos.append(PhotoRecord(photo_id=content_id(data), photo_image_url=upload_url(digest), file=local,
                                  photo_description=_description(local.path)).model_dump())
    job_id = str(form.get("job_id") or "") or None
    return await queue_photos(services, job_id, photos, batch_size)


def _description(path: str) -> str:
    return Path(path).stem.replace("_", " ").replace("-", " ")


def _spool(request: Request, redis_url: str):
    """The upload spool in Redis, opened on first use (tests may set app.state.upload_spool)."""
    spool = getattr(request.app.state, "upload_spool", None)
    if spool is None:
        from services.common.uploads import UploadSpool

        spool = request.app.state.upload_spool = UploadSpool(redis_url)
    return spool
