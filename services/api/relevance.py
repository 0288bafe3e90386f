"""Calibrated relevance: a cosine similarity as the share of the library that is farther from the query.

A fixed `min_score` means different things for different queries: CLIP's similarities of a text to
photos sit around 0.2-0.3, of a photo to photos around 0.5-0.9, and each model has its own range. So
each result also gets `relevance`, in 0..1: the fraction of a fixed sample of the library's vectors
(`API_RELEVANCE_SAMPLE`, 2,000 by default) whose cosine to the query vector is below the result's
score. 0.99 then means "closer to the query than 99% of the library", for any query and any model, and
`min_relevance` is turned into a cosine threshold (the sample's quantile) applied as `min_score` is.

The sample is read once (`services/photostore/sample.py`: the first photos by a hash of their id, so the
same each time) and kept per store; the table's data version is checked at most every
`CHECK_EVERY_S` seconds, and the sample read again when it or the table (model, dim) has changed. One
matrix-vector product and one sort per query: 2,000 x 512 floats take well under a millisecond.
"""
from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from services.api.deps import Services, blocking

CHECK_EVERY_S = 5.0
DEFAULT_SAMPLE = 2000


@dataclass(frozen=True)
class Calibration:
    """The query's cosine similarities to the sample, sorted ascending."""

    similarities: np.ndarray

    @property
    def size(self) -> int:
        return int(self.similarities.size)

    def relevance(self, score: float) -> float:
        """The share of the sample strictly less similar to the query than `score`."""
        below = int(np.searchsorted(self.similarities, np.float32(score), side="left"))
        return below / self.size

    def threshold(self, min_relevance: float) -> float | None:
        """The least cosine whose relevance is at least `min_relevance` (None: every score passes). It is
        just above the sample's k-th smallest similarity, k = ceil(min_relevance * n)."""
        needed = math.ceil(min_relevance * self.size - 1e-9)
        if needed <= 0:
            return None
        return float(np.nextafter(np.float32(self.similarities[needed - 1]), np.float32(np.inf)))


def calibrate(sample: np.ndarray | None, vector: np.ndarray) -> Calibration | None:
    """The calibration of one query vector against the sample; None when there is no usable sample (an
    empty table, or vectors of another size than the query's)."""
    if sample is None or sample.ndim != 2 or sample.shape[0] == 0:
        return None
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if sample.shape[1] != query.size:
        return None
    norm = float(np.linalg.norm(query))
    if not norm > 0:
        return None
    return Calibration(np.sort(sample @ (query / norm)))


class SampleKeeper:
    """The sample of one store's table, read again when the table's data version or its model changes.
    `read(n)` returns the (m, dim) sample; `version()` the table's data version (None: no rows)."""

    def __init__(self, read: Callable[[int], np.ndarray], version: Callable[[], Any], size: int,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self._read, self._version, self.size, self.check_every_s = read, version, size, check_every_s
        self._sample: np.ndarray | None = None
        self._key: tuple | None = None
        self._checked_at = -math.inf
        self._lock = asyncio.Lock()
        self.reads = 0

    async def get(self, table: dict[str, Any] | None) -> np.ndarray | None:
        """The current sample, for a table described by `table` (model, dim; None: no table, no sample)."""
        if table is None or self.size <= 0:
            return None
        shape = (table.get("table"), table.get("model"), table.get("dim"))
        now = time.monotonic()
        if self._key is not None and self._key[0] == shape and now - self._checked_at < self.check_every_s:
            return self._sample
        async with self._lock:
            if self._key is not None and self._key[0] == shape and time.monotonic() - self._checked_at < \
                    self.check_every_s:
                return self._sample  # another query read it while this one waited
            version = await blocking(self._version)
            self._checked_at = time.monotonic()
            if self._key != (shape, version):
                # A cluster has no data version (None): its sample is read once and kept.
                self._sample = await blocking(self._read, self.size)
                self._key = (shape, version)
                self.reads += 1
            return self._sample


# One keeper per store object, so every gateway (and every test's app) has its own.
_keepers: weakref.WeakKeyDictionary[Any, SampleKeeper] = weakref.WeakKeyDictionary()


def keeper_for(services: Services, size: int = DEFAULT_SAMPLE) -> SampleKeeper | None:
    """The sample keeper of the gateway's store; None when the store cannot read a sample (a test's fake
    without `sample_vectors`) or the sample is turned off (size 0)."""
    store = services.store
    kept = _keepers.get(store)
    if kept is not None and kept.size == size:
        return kept
    read = getattr(store, "sample_vectors", None)
    if read is None:
        # A real store's client (or the gateway's view of it, which follows the table a query is pinned
        # to): the sample is read through its connection, of its current table.
        if getattr(store, "connection", None) is None:
            return None
        from services.photostore.sample import sample_vectors

        read = partial(sample_vectors, store)
    if size <= 0:
        return None
    kept = SampleKeeper(read, store.data_version, size)
    _keepers[store] = kept
    return kept


async def calibration(services: Services, vector: np.ndarray | None,
                      size: int = DEFAULT_SAMPLE) -> Calibration | None:
    """The query vector's calibration against the current sample of the gateway's table; None without one
    (or without a whole query vector)."""
    keeper = keeper_for(services, size)
    if keeper is None or vector is None or vector.size == 0:
        return None
    return calibrate(await keeper.get(await services.table_info.get()), vector)


def min_score(min_score: float | None, min_relevance: float | None, calibrated: Calibration | None) -> float | None:
    """The cosine cutoff a query applies: `min_score`, raised to what `min_relevance` needs when there is a
    sample to calibrate it against (without one, an empty library, min_relevance asks nothing)."""
    threshold = calibrated.threshold(min_relevance) if calibrated is not None and min_relevance is not None else None
    if threshold is None:
        return min_score
    return threshold if min_score is None else max(min_score, threshold)


def add_relevance(results: list[dict[str, Any]], calibrated: Calibration | None) -> None:
    """Each result's `relevance` from its cosine `score` (null without a sample), in place."""
    for result in results:
        score = result.get("score")
        result["relevance"] = (round(calibrated.relevance(float(score)), 6)
                               if calibrated is not None and score is not None else None)
