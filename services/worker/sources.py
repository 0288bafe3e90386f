"""Kept copies of uploaded photos: what lets a re-embedding under a new model read them again.

An uploaded photo's bytes wait in Redis only until a worker ingests them; a photo from a folder or a
URL can be read again from there. So ingestion keeps, for each uploaded photo, a JPEG of quality 90
whose shorter side is at most 512 px (SigLIP 2's 512 px input is the largest of the supported models;
CLIP and SigLIP take 224 to 384), in the store's `<table>_sources` (services/photostore/sources.py).
An uploaded video keeps no copy: a re-embedding reads its thumbnail instead.
"""
from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from PIL import Image

from services.common.images import ImageRejected, ImageTooLarge
from services.common.library import upload_digest
from services.media.decode import decode_image, to_rgb

log = logging.getLogger(__name__)

SOURCE_SIDE = 512
SOURCE_QUALITY = 90


def keep_copy(body: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """The copy kept of an uploaded photo: JPEG quality 90, shorter side at most SOURCE_SIDE px (a smaller
    photo keeps its size). Raises ImageRejected for what is not a picture."""
    image = to_rgb(decode_image(body, max_bytes=max_bytes, max_pixels=max_pixels))
    shorter = min(image.size)
    if shorter > SOURCE_SIDE:
        scale = SOURCE_SIDE / shorter
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=SOURCE_QUALITY)
    return out.getvalue()


def keep_uploads(store: Any, items: Sequence[Any], stored: set[str], *, max_bytes: int, max_pixels: int) -> int:
    """Keep a copy of each uploaded photo among `items` (pipeline's Prepared) that was stored; returns how many.
    A store without kept copies (a test's fake) keeps none."""
    if not hasattr(store, "keep_sources"):
        return 0
    copies = []
    for item in items:
        if item.times is None and item.record.photo_id in stored and upload_digest(item.record.photo_image_url):
            try:
                copies.append((item.record.photo_id, keep_copy(item.bodies[0], max_bytes=max_bytes,
                                                               max_pixels=max_pixels)))
            except (ImageRejected, ImageTooLarge):  # embedded, so readable; a copy that fails is only logged
                log.warning("no copy kept of uploaded photo %s", item.record.photo_id)
    return store.keep_sources(copies)
