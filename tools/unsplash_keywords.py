"""Unsplash Lite's `keywords.tsv*`: the best keywords of each photo being ingested, into `photo_keywords`.

The file has many rows per photo (photo_id, keyword, ai_service_1_confidence, ai_service_2_confidence,
suggested_by_user), in no order we rely on, over millions of rows. Photos are read a window at a time
(`WINDOW` of them); for each window the keyword files are streamed once and, for the photos in it, at
most the `MAX_KEYWORDS` best are kept (a bounded heap per photo): those a person suggested first, then
by the higher of the two confidences; a machine's keyword under `MIN_CONFIDENCE` is dropped. Memory is
bounded by the window, whatever the size of the files; the whole Lite dataset (25,000 photos) is one
window, so its keyword file is read once.
"""
from __future__ import annotations

import csv
import gzip
import heapq
import io
import itertools
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TextIO

from services.common.schemas import PhotoRecord

MAX_KEYWORDS = 20
MIN_CONFIDENCE = 20.0
WINDOW = 25_000
MAX_CHARS = 4096  # PhotoRecord.photo_keywords' limit

# Opens one keyword file as text (a context manager), each time it is called.
KeywordFile = Callable[[], AbstractContextManager[TextIO]]


@contextmanager
def member_text(archive: zipfile.ZipFile, member: str) -> Iterator[TextIO]:
    """A member of the dataset zip (gzipped or not) as text, streamed; closed with everything it opened."""
    with archive.open(member) as raw:
        binary = gzip.GzipFile(fileobj=raw) if member.endswith(".gz") else raw
        with io.TextIOWrapper(binary, encoding="utf-8", newline="") as stream:
            yield stream


def _confidence(value: str | None) -> float:
    try:
        return float(value) if value and value.strip() else 0.0
    except ValueError:
        return 0.0


def best_keywords(rows: Iterable[dict[str, str]], wanted: set[str], heaps: dict[str, list] | None = None,
                  limit: int = MAX_KEYWORDS) -> dict[str, list]:
    """Fold keyword rows into `heaps` (photo_id -> a min-heap of the `limit` best (rank, keyword)) for the
    photos in `wanted`; returns the heaps."""
    heaps = {} if heaps is None else heaps
    for row in rows:
        photo_id = (row.get("photo_id") or "").strip()
        if photo_id not in wanted:
            continue
        keyword = " ".join((row.get("keyword") or "").replace(",", " ").split())
        if not keyword:
            continue
        by_user = (row.get("suggested_by_user") or "").strip().lower() in ("t", "true", "1")
        confidence = max(_confidence(row.get("ai_service_1_confidence")),
                         _confidence(row.get("ai_service_2_confidence")))
        if not by_user and confidence < MIN_CONFIDENCE:
            continue
        heap = heaps.setdefault(photo_id, [])
        if any(item[1] == keyword for item in heap):
            # The same word twice (two services): keep its better rank.
            heap[:] = [item if item[1] != keyword else max(item, ((by_user, confidence), keyword)) for item in heap]
            heapq.heapify(heap)
            continue
        entry = ((by_user, confidence), keyword)
        if len(heap) < limit:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
    return heaps


def keywords_text(heap: list) -> str:
    """The kept keywords, best first, comma-separated, within the column's limit."""
    words = [keyword for _, keyword in sorted(heap, reverse=True)]
    text = ""
    for word in words:
        candidate = f"{text},{word}" if text else word
        if len(candidate) > MAX_CHARS:
            break
        text = candidate
    return text


def read_rows(stream: TextIO) -> Iterator[dict[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    return csv.DictReader(stream, delimiter="\t")


def with_keywords(records: Iterable[PhotoRecord], files: list[KeywordFile],
                  window: int = WINDOW) -> Iterator[PhotoRecord]:
    """`records` with the best keywords of each in `photo_keywords` (a photo's own are kept first);
    `records` unchanged when there is no keyword file."""
    if not files:
        yield from records
        return
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, max(1, window))):
        wanted = {record.photo_id for record in chunk}
        heaps: dict[str, list] = {}
        for open_file in files:
            with open_file() as stream:
                best_keywords(read_rows(stream), wanted, heaps)
        for record in chunk:
            heap = heaps.get(record.photo_id)
            if heap:
                found = keywords_text(heap)
                text = f"{record.photo_keywords},{found}" if record.photo_keywords else found
                record = record.model_copy(update={"photo_keywords": text[:MAX_CHARS]})
            yield record
