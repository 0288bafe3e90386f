"""The query builder's terms: the main query and the extra "add term" rows turned into the gateway's
`terms` list, each term exactly one of `text`, `image_base64` or `photo_id` with a `weight`.

The gateway sums the terms' unit vectors times their weights and normalises the sum, so the main
query (words and/or an image, split by the "image vs text" share) counts as weight 1 in all, and each
extra row adds its own weight from -1 ("less like") to +1 ("more like"). Plain functions, no Gradio:
every rule and every sentence is tested on its own.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Extra rows on the page; with the main query's text and image that is at most 6 of the gateway's 8 terms.
MAX_ROWS = 4
# Each row's inputs, in the order the page passes them: words, an image file, a photo id, the weight.
ROW_FIELDS = ("text", "image", "photo", "weight")
LESS_LIKE_WEIGHT = -1.0


class TermError(ValueError):
    """A row the gateway could not make sense of; the message is the sentence to show."""


def rows_of(values: Sequence[Any]) -> list[dict[str, Any]]:
    """The flat list of row inputs (text, image, photo, weight, text, ...) as one dict per row."""
    size = len(ROW_FIELDS)
    return [dict(zip(ROW_FIELDS, values[start:start + size], strict=True))
            for start in range(0, len(values) - len(values) % size, size)]


def is_empty(row: dict[str, Any]) -> bool:
    return not (str(row.get("text") or "").strip() or row.get("image") or str(row.get("photo") or "").strip())


def image_base64(path: str) -> str:
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError as error:
        raise TermError("An uploaded image could not be read; please upload it again.") from error


def row_term(number: int, row: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """Row `number` (1-based) as (term, words for the status line), or None when it adds nothing:
    empty, or at weight 0."""
    text = str(row.get("text") or "").strip()
    photo = str(row.get("photo") or "").strip()
    image = row.get("image")
    given = [name for name, value in (("words", text), ("an image", image), ("a photo id", photo)) if value]
    if not given:
        return None
    if len(given) > 1:
        raise TermError(f"Term {number} has {' and '.join(given)}; keep one of them (or add another term).")
    weight = round(float(row.get("weight") or 0.0), 3)
    if weight == 0:
        return None
    if text:
        term, label = {"text": text}, f"“{text}”"
    elif photo:
        term, label = {"photo_id": photo}, f"photo {photo}"
    else:
        term, label = {"image_base64": image_base64(str(image))}, f"image {number}"
    strength = "" if abs(weight) == 1 else f" (×{abs(weight):g})"
    return {**term, "weight": weight}, f"{'more' if weight > 0 else 'less'} like {label}{strength}"


def extra_terms(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows' terms and their words for the status line, empty and zero-weight rows left out."""
    terms, words = [], []
    for number, row in enumerate(rows, start=1):
        made = row_term(number, row)
        if made:
            terms.append(made[0])
            words.append(made[1])
    return terms, words


def main_terms(text: str, image: bytes | None, share: float) -> list[dict[str, Any]]:
    """The main query as terms: the words at 1 - share and the image at share (the same mix as the
    gateway's `weight` for text plus image), or whichever one there is at 1."""
    encoded = base64.b64encode(image).decode("ascii") if image else None
    if text and encoded:
        parts = [({"text": text}, round(1.0 - share, 3)), ({"image_base64": encoded}, round(share, 3))]
    elif text:
        parts = [({"text": text}, 1.0)]
    elif encoded:
        parts = [({"image_base64": encoded}, 1.0)]
    else:
        parts = []
    return [{**term, "weight": weight} for term, weight in parts if weight]


def free_row(rows: Sequence[dict[str, Any]], shown: Sequence[bool]) -> int | None:
    """The row a new term goes into: the first shown row that is empty, else the first hidden one."""
    for index, row in enumerate(rows):
        if shown[index] and is_empty(row):
            return index
    return next((index for index, visible in enumerate(shown) if not visible), None)


NO_FREE_ROW = f"All {MAX_ROWS} extra terms are in use; remove one (✕) first."
ONLY_LESS_LIKE = ("Every term is “less like”: add words, an image or a photo to search like, "
                  "then press Search.")
