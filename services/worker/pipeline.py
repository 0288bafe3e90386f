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
from typing import Any, NamedTuple

import numpy as np

from services.common.fetch import FetchError, FetchPolicy, fetch_many
from services.common.images import ClipCrop, ImageRejected, ImageTooLarge, decode_image
from services.common.ports import Embedder, PhotoStore
from services.common.schemas import Failure, PhotoRecord
from services.worker.metrics import timed

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
                 max_image_pixels: int = 64_000_000) -> BatchOutcome:
    """Download, embed (one embedder request) and insert (one store insert) one batch of photos.

    With `crop`, images are decoded and cropped here and the embedder gets 8-bit pixels (same vectors);
    a picture that cannot be decoded fails alone, as it would in the embedder."""
    started = time.perf_counter()
    records, failures = parse_photos(photos)

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
    if not todo:
        return BatchOutcome(0, skipped, failures)

    with timed("download"):
        downloaded = fetch_many([record.photo_image_url for record in todo], policy, concurrency=download_concurrency)
    fetched: list[tuple[PhotoRecord, bytes]] = []
    for record, result in zip(todo, downloaded):
        if isinstance(result, FetchError):
            failures.append(Failure(photo_id=record.photo_id, url=record.photo_image_url, code=result.code,
                                    reason=str(result)))
        else:
            fetched.append((record, result))
    fetched_at = time.perf_counter()
    if not fetched:
        return BatchOutcome(0, skipped, failures)

    with timed("embed"):
        if crop is None:
            results = embedder.embed_images_each([body for _, body in fetched])
        else:
            results = _embed_cropped(fetched, embedder, crop, policy.max_bytes, max_image_pixels)
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
            failures.append(Failure(photo_id=record.photo_id, url=record.photo_image_url, code=code,
                                    reason=reason))
    embedded_at = time.perf_counter()
    if not good:
        return BatchOutcome(0, skipped, failures)

    with timed("insert"):
        written = store.insert_photos(good, np.stack(vectors).astype(np.float32, copy=False))
    done_at = time.perf_counter()
    log.info("batch: %d inserted, %d skipped, %d failed (download %.2fs, embed %.2fs, insert %.2fs)",
             len(good), skipped, len(failures), fetched_at - started, embedded_at - fetched_at,
             done_at - embedded_at)
    return BatchOutcome(int(written) if written is not None else len(good), skipped, failures)


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
