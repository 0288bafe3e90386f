"""Vector maths shared by the gateway, the store client and the tests: normalising, combining, de-duplicating."""
from __future__ import annotations

import numpy as np


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise along the last axis; float32 out. Zero vectors stay zero."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


def combine(text: np.ndarray | None, image: np.ndarray | None, weight: float = 0.5) -> np.ndarray:
    """One query vector from a text vector, an image vector, or both.

    Both: `weight` is the image's share. At 0.5 this is the original article's rule, the mean of the two
    unit vectors, normalised again.
    """
    if text is None and image is None:
        raise ValueError("a query needs a text vector, an image vector, or both")
    if image is None:
        return normalize(text)
    if text is None:
        return normalize(image)
    if not 0.0 <= weight <= 1.0:
        raise ValueError("weight must be between 0 and 1")
    return normalize(weight * normalize(image) + (1.0 - weight) * normalize(text))


def collapse_near_duplicates(vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices of the rows to keep, best first: a row goes if its cosine similarity to a row already
    kept is `threshold` or more (the same photo uploaded twice, bursts of nearly identical shots)."""
    kept: list[int] = []
    if len(vectors) == 0:
        return kept
    unit = np.asarray(vectors, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    for i in range(len(unit)):
        if not kept or float(np.max(unit[kept] @ unit[i])) < threshold:
            kept.append(i)
    return kept
