"""One ingestion batch as plain functions: skip known photos, download, embed, insert.

The Celery task (tasks.py) is a thin wrapper around `ingest_batch`; tests call it directly with
fakes or real clients. Per-photo problems become `Failure`s; only whole-batch problems (embedder or
store unreachable) raise, so that the task can retry the batch, which is safe because photos already
in the store are skipped.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from services.common.fetch import FetchError, FetchPolicy, fetch_many
from services.common.images import ClipCrop, ImageRejected, ImageTooLarge
from services.common.library import is_local, path_of, upload_digest
from services.common.ports import Embedder, PhotoStore
from services.common.schemas import Failure, PhotoRecord
from services.media.decode import decode_image
from services.media.exif import read_exif
from services.media.formats import kind_of_name, sniff
from services.worker.local import (
    LocalReadError,
    LocalVideo,
    check_local_video,
    make_thumbnail,
    read_local_file,
    read_upload,
)
from services.worker.media import Prepared, VideoLimits, combine, prepare
from services.worker.metrics import timed
from services.worker.sources import keep_uploads

log = logging.getLogger(__name__)


class BatchOutcome(NamedTuple):
    succeeded: int
    skipped: int
    failures: list[Failure]


def prepare_store(embedder: Embedder, store: PhotoStore) -> dict:
    """Make sure the table exists for the embedder's model; returns the model info.

    A worker calls this once per process, before its first insert: the store refuses (ModelMismatch)
    when the table holds another model's vectors, so two models never mix.
    """
    info = embedder.model_info()
    store.ensure_table(int(info["dim"]), str(info["name"]))
    return info


def choose_crop(info: dict, preprocess: str) -> ClipCrop | None:
    """Where images are decoded and cropped: here (a ClipCrop) or in the embedder (None).

    "auto" decodes here when the embedder runs on a GPU: there, decoding would be its limit (one CPU
    core decodes and crops about 600 images/s; an H100 embeds many times that), and workers scale
    out. On a CPU embedder the forward pass is the limit and sending encoded images is smaller on the
    wire (bench: 125 vs 130 images/s at batch 64 on 2 cores). "worker" and "embedder" force it."""
    recipe = info.get("pixel_input")
    if preprocess == "embedder":
        return None
    if not recipe:
        if preprocess == "worker":
            log.warning("the embedder's model takes no pre-cropped pixels; sending encoded images instead")
        return None
    if preprocess == "worker" or str(info.get("device", "")).startswith("cuda"):
        return ClipCrop.from_dict(recipe)
    return None


def parse_photos(photos: Sequence[dict | PhotoRecord]) -> tuple[list[PhotoRecord], list[Failure]]:
    """Validate task arguments; a malformed record fails alone."""
    records: list[PhotoRecord] = []
    failures: list[Failure] = []
    for index, photo in enumerate(photos):
        if isinstance(photo, PhotoRecord):
            records.append(photo)
            continue
        try:
            records.append(PhotoRecord.model_validate(photo))
        except Exception as exc:
            photo_id = str(photo.get("photo_id", "")) if isinstance(photo, dict) else ""
            url = str(photo.get("photo_image_url", "")) if isinstance(photo, dict) else ""
            failures.append(Failure(photo_id=photo_id or f"#{index}", url=url, code="invalid_record",
                                    reason=f"The photo record is invalid: {_first_line(exc)}."))
    return records, failures


def ingest_batch(photos: Sequence[dict | PhotoRecord], embedder: Embedder, store: PhotoStore, policy: FetchPolicy,
                 *, download_concurrency: int = 16, crop: ClipCrop | None = None,
                 max_image_pixels: int = 64_000_000, roots: Sequence[Path] = (), spool: Any = None,
                 video: VideoLimits | None = None) -> BatchOutcome:
    """Read or download, embed (one embedder request) and insert (one store insert) one batch of photos,
    with a thumbnail each (one insert) and, for photos from a folder, the record of their files.

    With `crop`, images are decoded and cropped here and the embedder gets 8-bit pixels (same vectors);
    a picture that cannot be decoded fails alone, as it would in the embedder. `roots` are the library
    roots local files may be read from; `spool` holds uploaded files (services/common/uploads.py)."""
    started = time.perf_counter()
    records, failures = parse_photos(photos)
    # Every copy of a local photo that is stored (now or before) gets its path recorded.
    # A file:// photo is recorded at the path the worker read (the gateway checked it is under a root).
    files = [(path_of(r.photo_image_url) or r.file.path, r.photo_id, r.file.size, r.file.mtime)
             for r in records if r.file is not None]
    uploads = [d for d in (upload_digest(r.photo_image_url) for r in records) if d]

    # A photo named twice in one batch is ingested once.
    unique: dict[str, PhotoRecord] = {}
    skipped = 0
    for record in records:
        if record.photo_id in unique:
            skipped += 1
        else:
            unique[record.photo_id] = record
    if not unique:
        return BatchOutcome(0, skipped, failures)

    # Idempotence: a retried or repeated batch does not insert the same photo twice.
    known = store.existing_ids(list(unique))
    skipped += len(known)
    todo = [record for photo_id, record in unique.items() if photo_id not in known]
    with timed("download"):
        fetched = _read_all(todo, policy, download_concurrency, roots, spool, failures, video or VideoLimits())
    fetched_at = time.perf_counter()

    prepared: list[Prepared] = []
    thumbnails: dict[str, bytes] = {}
    for record, body in fetched:
        try:
            item = prepare(record, body, max_pixels=max_image_pixels, video=video or VideoLimits())
            if item.times is None:  # a photo that makes no thumbnail is not worth an embedding
                thumbnails[record.photo_id] = make_thumbnail(item.bodies[0], max_bytes=policy.max_bytes,
                                                             max_pixels=max_image_pixels)
            prepared.append(item)
        except (ImageRejected, ImageTooLarge) as rejected:
            failures.append(_failure(record, rejected.code, f"The {_what(body)} {rejected.message}"))
    # A stage with nothing to do is not timed, so its histogram counts the batches that ran it.
    with timed("embed") if prepared else nullcontext():
        before = len(failures)
        combined = embed_items(prepared, embedder, crop, policy.max_bytes, max_image_pixels, failures)
        failures[before:] = list({failure.photo_id: failure for failure in reversed(failures[before:])}.values())[::-1]
    good: list[PhotoRecord] = []
    vectors: list[np.ndarray] = []
    for record, vector, shown in combined:
        if record.photo_id not in thumbnails:  # a video: the frame that stands for it
            thumbnails[record.photo_id] = make_thumbnail(shown, max_bytes=policy.max_bytes, max_pixels=max_image_pixels)
        good.append(record)
        vectors.append(vector)
    embedded_at = time.perf_counter()

    written = 0
    if good:
        with timed("insert"):
            written = store.insert_photos(good, np.stack(vectors).astype(np.float32, copy=False))
            store.insert_thumbnails([(record.photo_id, thumbnails[record.photo_id]) for record in good])
            keep_uploads(store, prepared, {record.photo_id for record in good}, max_bytes=policy.max_bytes,
                         max_pixels=max_image_pixels)
    stored = {record.photo_id for record in good} | set(known)
    store.record_files([row for row in files if row[1] in stored])
    if uploads and spool is not None:
        spool.delete(uploads)
    done_at = time.perf_counter()
    log.info("batch: %d inserted, %d skipped, %d failed (download %.2fs, embed %.2fs, insert %.2fs)",
             len(good), skipped, len(failures), fetched_at - started, embedded_at - fetched_at,
             done_at - embedded_at)
    return BatchOutcome(int(written) if written is not None else len(good), skipped, failures)


def _what(body) -> str:
    return "video" if isinstance(body, LocalVideo) or sniff(body[:64]) == "video" else "image"


def _failure(record: PhotoRecord, code: str, reason: str) -> Failure:
    where = record.file.path if record.file is not None else record.photo_image_url
    if record.file is not None and where not in reason:  # a local file's id says nothing to a person
        reason = f"{where}: {reason}"
    return Failure(photo_id=record.photo_id, url=where, code=code, reason=reason)


def _read_all(todo: list[PhotoRecord], policy: FetchPolicy, concurrency: int, roots: Sequence[Path], spool: Any,
              failures: list[Failure], video: VideoLimits) -> list[tuple[PhotoRecord, bytes]]:
    """The bytes of each photo: local files and uploads read here, the rest downloaded concurrently."""
    local = [record for record in todo if is_local(record.photo_image_url)]
    web = [record for record in todo if not is_local(record.photo_image_url)]
    fetched: list[tuple[PhotoRecord, bytes]] = []
    for record in local:
        try:
            if upload_digest(record.photo_image_url):
                body = read_upload(record.photo_image_url, record.photo_id, spool)
            elif kind_of_name(record.photo_image_url) == "video":  # streamed by the decoder, never read whole
                fetched.append((record, check_local_video(record.photo_image_url, record.photo_id, list(roots),
                                                          video.max_bytes)))
                continue
            else:
                body = read_local_file(record.photo_image_url, record.photo_id, list(roots), policy.max_bytes)
            fetched.append((with_exif(record, body), body))
        except LocalReadError as exc:
            failures.append(_failure(record, exc.code, str(exc)))
    if web:
        downloaded = fetch_many([record.photo_image_url for record in web], policy, concurrency=concurrency)
        for record, result in zip(web, downloaded):
            if isinstance(result, FetchError):
                failures.append(_failure(record, result.code, str(result)))
            else:
                fetched.append((with_exif(record, result), result))
    return fetched


def embed_items(prepared: Sequence[Prepared], embedder: Embedder, crop: ClipCrop | None, max_bytes: int,
                max_pixels: int, failures: list[Failure]) -> list[tuple[PhotoRecord, np.ndarray, Any]]:
    """One embedder request for every picture of `prepared` (photos, and each video's frames), then
    (record, vector, the picture that stands for it) for each item whose pictures were all embedded, in
    order; one the embedder refused is left out, with a failure in `failures` saying why."""
    pictures = [(item.record, body) for item in prepared for body in item.bodies]
    embedded, vectors = _embed(pictures, embedder, crop, max_bytes, max_pixels, failures)
    by_id: dict[str, list[np.ndarray]] = {}
    for record, vector in zip(embedded, vectors):
        by_id.setdefault(record.photo_id, []).append(vector)
    return [combine(item, by_id[item.record.photo_id]) for item in prepared
            if len(by_id.get(item.record.photo_id, ())) == len(item.bodies)]


def _embed(fetched: list[tuple[PhotoRecord, bytes]], embedder: Embedder, crop: ClipCrop | None, max_bytes: int,
           max_pixels: int, failures: list[Failure]) -> tuple[list[PhotoRecord], list[np.ndarray]]:
    """One embedder request for the batch; an image it refuses fails alone."""
    if not fetched:
        return [], []
    if crop is None:
        results = embedder.embed_images_each([body for _, body in fetched])
    else:
        results = _embed_cropped(fetched, embedder, crop, max_bytes, max_pixels)
    if len(results) != len(fetched):
        raise RuntimeError(f"the embedder returned {len(results)} results for {len(fetched)} images")
    good: list[PhotoRecord] = []
    vectors: list[np.ndarray] = []
    for (record, _), result in zip(fetched, results):
        if isinstance(result, np.ndarray):
            good.append(record)
            vectors.append(result)
        else:
            code = getattr(result, "code", None) or "embed_failed"
            if isinstance(result, (ImageRejected, ImageTooLarge)):  # refused here, while cropping
                reason = f"The image {result.message}"
            else:
                message = getattr(result, "message", None) or str(result)
                reason = f"The embedder could not read the image: {message}"
            failures.append(_failure(record, code, reason))
    return good, vectors


def _embed_cropped(fetched: list[tuple[PhotoRecord, bytes]], embedder: Embedder, crop: ClipCrop,
                   max_bytes: int, max_pixels: int) -> list[Any]:
    """Decode and crop each image here, embed the crops in one request; a refused image keeps its place
    as an ImageRejected (code and message), like the embedder's per-item answers."""
    results: list[Any] = []
    crops = []
    for _, body in fetched:
        try:
            crops.append(crop(decode_image(body, max_bytes=max_bytes, max_pixels=max_pixels)))
            results.append(None)
        except (ImageRejected, ImageTooLarge) as rejected:
            results.append(rejected)
    if crops:
        vectors = iter(embedder.embed_pixels(np.stack(crops)))
        results = [next(vectors) if result is None else result for result in results]
    return results


def with_exif(record: PhotoRecord, body: bytes) -> PhotoRecord:
    """The record with what the photo's EXIF says (time taken, camera, GPS) where the source said
    nothing: a source's own values (Unsplash's columns) win."""
    found = {name: value for name, value in read_exif(body).items() if getattr(record, name) in (None, "")}
    if {"photo_location_latitude", "photo_location_longitude"} - found.keys():  # a position is a pair
        found.pop("photo_location_latitude", None)
        found.pop("photo_location_longitude", None)
    return record.model_copy(update=found) if found else record


def failed_batch(photos: Sequence[dict], code: str, reason: str) -> list[Failure]:
    """Every photo of a batch that could not be processed at all (retries exhausted, table refused...)."""
    failures = []
    for index, photo in enumerate(photos):
        photo = photo if isinstance(photo, dict) else {}
        failures.append(Failure(photo_id=str(photo.get("photo_id") or f"#{index}"),
                                url=str(photo.get("photo_image_url") or ""), code=code, reason=reason))
    return failures


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3]) if text else exc.__class__.__name__
