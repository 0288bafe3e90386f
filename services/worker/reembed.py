"""One re-embedding batch as plain functions: read each photo again from its source, embed it with the new
model, insert it with the same metadata into the new table.

A photo's source is where ingestion read it: its file under LIBRARY_ROOTS (`file://`), its URL (through
the address-checking fetcher), or, for an uploaded photo, the copy ingestion kept (`sources.py`, in the
store's `<table>_sources`). A photo whose source is gone fails alone and falls back to its thumbnail
(a 320 px JPEG: a poorer vector than the original gives, but the photo stays searchable), reported
as `from_thumbnail` with the reason; only a photo with neither blocks the switch. The batch is
idempotent: photos already in the new table are skipped. Tasks (reembed_tasks.py) wrap this; tests
call it with real or fake clients.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.common.fetch import FetchPolicy
from services.common.images import ClipCrop, ImageRejected, ImageTooLarge
from services.common.library import upload_digest
from services.common.schemas import Failure, PhotoRecord
from services.worker import pipeline
from services.worker.media import Prepared, VideoLimits, prepare

log = logging.getLogger(__name__)

FROM_THUMBNAIL = "from_thumbnail"


class ModelBound:
    """The embedder with one model picked: every call carries `model` / `text_model` (the embedder serves
    several at once). With no model it is the embedder's own, and calls go as they always did."""

    def __init__(self, embedder: Any, model: str | None, text_model: str | None = None):
        self.embedder = embedder
        self.options = {key: value for key, value in (("model", model), ("text_model", text_model)) if value}

    def model_info(self) -> dict:
        return self.embedder.model_info(**self.options)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_texts(texts, **self.options)

    def embed_images_each(self, images: Sequence[bytes]) -> list[Any]:
        return self.embedder.embed_images_each(images, **self.options)

    def embed_pixels(self, crops: np.ndarray) -> np.ndarray:
        return self.embedder.embed_pixels(crops, **self.options)

    def close(self) -> None:
        """The wrapped client belongs to the worker process, which closes it."""


def bound(embedder: Any, model: str | None, text_model: str | None = None) -> Any:
    return ModelBound(embedder, model, text_model) if model or text_model else embedder


def record_of(row: dict[str, Any]) -> PhotoRecord:
    """A stored row as the record it was inserted from (the vector aside)."""
    values = {key: value for key, value in row.items() if value is not None}
    if hasattr(values.get("taken_at"), "isoformat"):
        values["taken_at"] = values["taken_at"].isoformat()
    return PhotoRecord.model_validate(values)


def reembed_batch(photo_ids: Sequence[str], source: Any, target: Any, embedder: Any, policy: FetchPolicy, *,
                  roots: Sequence[Path] = (), crop: ClipCrop | None = None, max_image_pixels: int = 64_000_000,
                  download_concurrency: int = 16, video: VideoLimits | None = None) -> pipeline.BatchOutcome:
    """Re-embed these photos of table `source` into table `target` (clients bound to each) with `embedder`
    (bound to the new model): one embedder call, one insert. Photos no longer in `source` are skipped."""
    video = video or VideoLimits()
    ids = list(dict.fromkeys(str(photo_id) for photo_id in photo_ids))
    known = target.existing_ids(ids) if ids else set()
    rows = source.photos_by_id([photo_id for photo_id in ids if photo_id not in known])
    skipped = len(ids) - len(rows)
    failures: list[Failure] = []
    records: list[PhotoRecord] = []
    for row in rows:
        try:
            records.append(record_of(row))
        except Exception as exc:  # a row an older version stored in a shape the record refuses
            failures.append(Failure(photo_id=str(row.get("photo_id")), url=str(row.get("photo_image_url")),
                                    code="invalid_record", reason=f"The stored row cannot be read back: {exc}"))
    unreadable: list[Failure] = []
    uploads = [record for record in records if upload_digest(record.photo_image_url)]
    others = [record for record in records if not upload_digest(record.photo_image_url)]
    fetched = pipeline._read_all(others, policy, download_concurrency, list(roots), None, unreadable, video)
    kept = source.get_sources([record.photo_id for record in uploads]) if uploads else {}
    for record in uploads:
        if record.photo_id in kept:
            fetched.append((record, kept[record.photo_id]))
        else:
            unreadable.append(Failure(photo_id=record.photo_id, url=record.photo_image_url, code="no_kept_copy",
                                      reason="The uploaded photo has no kept copy (it was ingested before copies "
                                             "were kept)."))
    fetched += _thumbnails_for(unreadable, records, source, failures)

    prepared: list[Prepared] = []
    for record, body in fetched:
        try:
            prepared.append(prepare(record, body, max_pixels=max_image_pixels, video=video))
        except (ImageRejected, ImageTooLarge) as rejected:
            failures.append(pipeline._failure(record, rejected.code, f"The file {rejected.message}"))
    combined = pipeline.embed_items(prepared, embedder, crop, policy.max_bytes, max_image_pixels, failures)
    good = [record for record, _, _ in combined]
    rows_out = [vector for _, vector, _ in combined]
    if good:
        target.insert_photos(good, np.stack(rows_out).astype(np.float32, copy=False))
    log.info("re-embedding batch: %d inserted, %d skipped, %d failed", len(good), skipped, len(failures))
    return pipeline.BatchOutcome(len(good), skipped, failures)


def _thumbnails_for(unreadable: list[Failure], records: list[PhotoRecord], source: Any,
                    failures: list[Failure]) -> list[tuple[PhotoRecord, bytes]]:
    """Photos whose source is gone, from their thumbnails: each reported as `from_thumbnail` with the
    reason; one without a thumbnail either fails with its reason."""
    by_id = {record.photo_id: record for record in records}
    found: list[tuple[PhotoRecord, bytes]] = []
    for failure in unreadable:
        thumbnail = source.get_thumbnail(failure.photo_id)
        if thumbnail:
            found.append((by_id[failure.photo_id], thumbnail))
            failures.append(failure.model_copy(update={
                "code": FROM_THUMBNAIL, "reason": f"{failure.reason} Re-embedded from its thumbnail instead."}))
        else:
            failures.append(failure.model_copy(update={
                "reason": f"{failure.reason} It has no thumbnail either, so it cannot be re-embedded."}))
    return found
