"""Uploaded photos waiting for a worker, kept in Redis under `upload:<sha256>`.

Chosen over a spool folder because the gateway and the workers already share Redis wherever they run,
while a folder would need a volume mounted on both. What bounds the memory: each file is size-capped by
the gateway, the ingest command keeps only a window of uploaded-but-unprocessed photos in flight, a
worker deletes the bytes once its batch is done, and every key expires after `ttl_s` in any case.
"""
from __future__ import annotations

import redis

KEY_PREFIX = "upload:"


class UploadSpool:
    def __init__(self, redis_url: str, ttl_s: int = 24 * 3600):
        self.client = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=5)
        self.ttl_s = ttl_s

    def put(self, digest: str, data: bytes) -> None:
        self.client.set(KEY_PREFIX + digest, data, ex=self.ttl_s)

    def get(self, digest: str) -> bytes | None:
        return self.client.get(KEY_PREFIX + digest)

    def delete(self, digests: list[str]) -> None:
        if digests:
            self.client.delete(*(KEY_PREFIX + digest for digest in digests))

    def close(self) -> None:
        self.client.close()
