"""The gateway's cache of text vectors, so a repeated query (or its next page) never reaches the embedder.

Keyed by (model fingerprint, text): a new model means new keys, never a stale vector from the old one.
The local cache is an LRU bounded by `API_TEXT_CACHE_SIZE` entries (`cachetools.LRUCache`); with
`API_TEXT_CACHE_REDIS` the vectors are also shared between gateways in Redis, as float32 bytes under
`textvec:<fingerprint>:<sha256 of the text>` with a TTL. Redis down is not an error: the local cache
answers alone and a log line says so. Only the texts neither cache holds go to the embedder, in one call.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from cachetools import LRUCache

log = logging.getLogger(__name__)

EmbedTexts = Callable[[Sequence[str]], Awaitable[Any]]
# After a Redis failure, Redis is left alone for this long (the local cache answers), so an outage costs
# one timeout and one log line per interval, not one per query.
REDIS_RETRY_AFTER_S = 30.0


class TextVectorCache:
    """Text vectors by (fingerprint, text): a bounded local LRU, optionally backed by Redis."""

    def __init__(self, size: int, *, redis_url: str | None = None, ttl_s: float = 86400.0,
                 redis_timeout_s: float = 0.5) -> None:
        self._local: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self._ttl_s = max(1, int(ttl_s))
        self._redis: Any = None
        self._redis_down_until = 0.0
        self.hits = self.misses = 0  # distinct texts per call found in a cache / sent to the embedder
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=redis_timeout_s,
                                                  socket_connect_timeout=redis_timeout_s)

    @property
    def enabled(self) -> bool:
        return self._local is not None or self._redis is not None

    def __len__(self) -> int:
        return len(self._local) if self._local is not None else 0

    async def embed(self, fingerprint: str, texts: Sequence[str], embed_texts: EmbedTexts) -> np.ndarray:
        """The vectors of `texts` (one row each, in order): from the caches where they are, from one
        embedder call for the rest."""
        if not self.enabled:
            return np.asarray(await embed_texts(list(texts)), dtype=np.float32)
        found: dict[str, np.ndarray] = {}
        if self._local is not None:
            for text in texts:
                vector = self._local.get((fingerprint, text))
                if vector is not None:
                    found[text] = vector
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing and self._redis is not None:
            shared = await self._redis_get(fingerprint, missing)
            found.update(shared)
            self._remember(fingerprint, shared)
            missing = [text for text in missing if text not in shared]
        self.misses += len(missing)
        self.hits += len(set(texts)) - len(missing)
        if missing:
            new = dict(zip(missing, np.asarray(await embed_texts(missing), dtype=np.float32)))
            found.update(new)
            self._remember(fingerprint, new)
            await self._redis_set(fingerprint, new)
        return np.stack([found[text] for text in texts]).astype(np.float32, copy=False)

    def _remember(self, fingerprint: str, vectors: dict[str, np.ndarray]) -> None:
        if self._local is None:
            return
        for text, vector in vectors.items():
            kept = np.array(vector, dtype=np.float32)
            kept.setflags(write=False)  # shared by every query that asks for this text
            self._local[(fingerprint, text)] = kept

    @staticmethod
    def redis_key(fingerprint: str, text: str) -> str:
        return f"textvec:{fingerprint}:{hashlib.sha256(text.encode()).hexdigest()}"

    def _redis_usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
        log.warning("text vector cache: Redis cannot be reached (%s); using the local cache alone for %.0f s",
                    exc, REDIS_RETRY_AFTER_S)

    async def _redis_get(self, fingerprint: str, texts: list[str]) -> dict[str, np.ndarray]:
        if not self._redis_usable():
            return {}
        try:
            values = await self._redis.mget([self.redis_key(fingerprint, text) for text in texts])
        except Exception as exc:  # any Redis failure: answer from the local cache and the embedder
            self._redis_failed(exc)
            return {}
        return {text: np.frombuffer(value, dtype=np.float32) for text, value in zip(texts, values) if value}

    async def _redis_set(self, fingerprint: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors or not self._redis_usable():
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for text, vector in vectors.items():
                    pipe.set(self.redis_key(fingerprint, text), np.asarray(vector, np.float32).tobytes(),
                             ex=self._ttl_s)
                await pipe.execute()
        except Exception as exc:  # the vectors are still in the local cache
            self._redis_failed(exc)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
