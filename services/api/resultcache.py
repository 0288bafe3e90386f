"""The gateway's cache of search answers, so a repeated query and its next pages skip the store's search.

The text vector cache (`textcache.py`) spares the embedder, but the store's search is most of a query:
an exact scan of 25,000 photos takes about 30 ms on 2 cores (bench/results/search-cpu.json). So the
gateway also keeps the store's answers, in a bounded LRU (`cachetools.LRUCache`, `API_RESULT_CACHE_SIZE`
answers):

- keyed by everything that decides an answer: the table searched (a re-embedded library answers from a
  new one), the query vector's bytes, filters, min_score, collapse and the stored photos' terms (a new
  model makes new vectors, hence new keys);
- each answer is asked `API_RESULT_CACHE_DEPTH` results deep (50: five pages of ten), so "Load more"
  and the pages after it are sliced from the same answer;
- each answer carries the store's data version (`PhotoStore.data_version`: the table's active parts),
  read before every search, and is reused only while the version is the same. Any insert, delete or
  merge changes it, so a new photo shows and a deleted one is gone at the next query. That check costs
  one small query (about 4 ms), a tenth of the search it replaces;
- with no version (no rows yet, or a cluster whose parts live on every shard) nothing is reused.

A request with `Cache-Control: no-cache` is answered by the store (and its answer kept for the next).
Each gateway keeps its own answers, as tuples: an answer of 50 results with short metadata measured 23 KB
(56 KB as dicts), so the default 256 take a few MB; long descriptions make that a few times more.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache


@dataclass(frozen=True)
class _Answer:
    version: tuple
    columns: tuple[str, ...]
    rows: list[tuple | dict]  # values in `columns` order (under half the memory of a dict), or a row of other keys
    complete: bool  # the store had no more results than these


def answer_key(vector: np.ndarray, *, filters: Any = None, min_score: float | None = None,
               collapse: float | None = None, stored_terms: Sequence[tuple[str, float]] = (), table: str = "") -> tuple:
    """What decides a search's answer, as a hashable key (offset and top_k are not in it: pages are slices).
    `table`: the table searched, so a re-embedded library's answers never mix with the old table's."""
    return (str(table), np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
            json.dumps(filters, sort_keys=True, default=str), min_score, collapse,
            tuple((str(photo_id), float(weight)) for photo_id, weight in stored_terms))


class ResultCache:
    """Search answers by key, each valid for one data version of the table."""

    def __init__(self, size: int, depth: int = 50) -> None:
        self.depth = max(1, depth)
        self._answers: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._answers is not None

    def __len__(self) -> int:
        return len(self._answers) if self._answers is not None else 0

    def deep(self, wanted: int, most: int) -> int:
        """How many results to ask the store for, when a query wants its first `wanted` (at most `most`)."""
        return min(most, max(wanted, self.depth))

    def get(self, key: tuple, version: tuple | None, offset: int, wanted: int) -> list[dict[str, Any]] | None:
        """Results `offset` to `wanted` of the answer kept for `key` at `version`; None if it is not kept, is
        stale, or is too short."""
        answer: _Answer | None = self._answers.get(key) if self._answers is not None else None
        if answer is None or version is None or answer.version != version or (
                len(answer.rows) < wanted and not answer.complete):
            self.misses += 1
            return None
        self.hits += 1
        return [dict(row) if isinstance(row, dict) else dict(zip(answer.columns, row))
                for row in answer.rows[offset:wanted]]

    def put(self, key: tuple, version: tuple | None, rows: list[dict[str, Any]], asked: int) -> None:
        """Keep the store's answer to a search asked `asked` results deep, read at `version`."""
        if self._answers is None or version is None:
            return
        columns = tuple(rows[0]) if rows else ()
        kept = [tuple(row.values()) if tuple(row) == columns else dict(row) for row in rows]
        self._answers[key] = _Answer(version, columns, kept, complete=len(rows) < asked)
