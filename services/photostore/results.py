"""From search rows to results: one row per photo, ties in photo_id order, near-duplicates collapsed,
`min_score` and the page applied; and the limits a result list is checked against."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.common.errors import BadRequest
from services.common.vectors import collapse_near_duplicates
from services.photostore.columns import PHOTO_COLUMNS

# Deepest result a search may reach (offset + top_k).
MAX_RESULTS = 10_000


def check_count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not least <= value <= MAX_RESULTS:
        raise BadRequest(f"{name} must be a whole number from {least} to {MAX_RESULTS}, not {value!r}.")
    return int(value)


def search_rows(rows: Sequence[Sequence[Any]], with_vector: bool) -> list[dict[str, Any]]:
    """Rows (columns, [vector,] distance) as photos, best first, one per photo_id; equal scores in
    photo_id order (the SQL cannot order ties without turning the vector index off)."""
    ordered = sorted(rows, key=lambda row: (float(row[-1]), row[0]))
    photos: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in ordered:
        if row[0] in seen:
            continue  # an older version of a photo written twice, not merged yet
        seen.add(row[0])
        photo = dict(zip(PHOTO_COLUMNS, row))
        if with_vector:
            photo["vector"] = row[len(PHOTO_COLUMNS)]
        photo["score"] = 1.0 - float(row[-1])
        photos.append(photo)
    return photos


def collapsed(photos: list[dict[str, Any]], threshold: float, dim: int) -> list[dict[str, Any]]:
    """The photos less similar than `threshold` to a better one; their vectors are dropped."""
    vectors = (np.array([p.pop("vector") for p in photos], dtype=np.float32) if photos
               else np.zeros((0, dim), np.float32))
    return [photos[i] for i in collapse_near_duplicates(vectors, threshold)]


def ranked(photos: list[dict[str, Any]], wanted: int, offset: int, min_score: float | None) -> list[dict[str, Any]]:
    """The page `offset:wanted` of the photos scoring at least `min_score`, each with its 1-based rank."""
    results = []
    for photo in photos[:wanted]:
        if min_score is not None and photo["score"] < min_score:
            break  # best first: the rest score lower still
        photo["rank"] = len(results) + 1
        results.append(photo)
    return results[offset:]
