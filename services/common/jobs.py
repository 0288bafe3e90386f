"""Ingestion jobs' progress and failures, kept in Redis.

Written by workers, read by the gateway; a job is a set of batches, each a Celery task.
Counting is idempotent per batch (a retried batch is not counted twice).

Keys, all under `key_prefix` and all expiring after `ttl_seconds` of inactivity:
  {prefix}job:{id}           hash: state, counters, timestamps
  {prefix}job:{id}:batches   set of finished batch ids (what makes a retried batch count once)
  {prefix}job:{id}:failures  list of JSON failures, capped at MAX_FAILURES (the first ones are kept)
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from services.common.errors import DependencyUnavailable

MAX_FAILURES = 1000
# What finish_batch says of a batch.
BATCH_REPEATED, BATCH_COUNTED, JOB_DONE = 0, 1, 2
_COUNTERS = ("total", "succeeded", "skipped", "failed", "batches_total", "batches_done")

# One script per write so that a batch is counted and the state decided atomically, even with
# many workers finishing batches of the same job at once.
_FINISH_BATCH = """
local job, batches, failures = KEYS[1], KEYS[2], KEYS[3]
local batch_id, succeeded, skipped, now, ttl, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('SADD', batches, batch_id) == 0 then return 0 end
if redis.call('EXISTS', job) == 0 then
  redis.call('HSET', job, 'job_id', ARGV[7], 'created_at', now, 'state', 'queued')
end
local nfail = #ARGV - 7
redis.call('HINCRBY', job, 'succeeded', succeeded)
redis.call('HINCRBY', job, 'skipped', skipped)
redis.call('HINCRBY', job, 'failed', nfail)
local done = redis.call('HINCRBY', job, 'batches_done', 1)
local total = tonumber(redis.call('HGET', job, 'batches_total') or '0')
local result = 1
if done >= total then
  redis.call('HSET', job, 'state', 'done')
  result = 2
else
  redis.call('HSET', job, 'state', 'running')
end
redis.call('HSET', job, 'updated_at', now)
if nfail > 0 then
  local room = cap - redis.call('LLEN', failures)
  for i = 8, math.min(#ARGV, 7 + room) do redis.call('RPUSH', failures, ARGV[i]) end
end
redis.call('EXPIRE', job, ttl)
redis.call('EXPIRE', batches, ttl)
if redis.call('EXISTS', failures) == 1 then redis.call('EXPIRE', failures, ttl) end
return result
"""

_ADD_BATCHES = """
local job = KEYS[1]
local batches, photos, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', job) == 0 then
  redis.call('HSET', job, 'job_id', ARGV[5], 'created_at', now, 'state', 'queued')
end
local total = redis.call('HINCRBY', job, 'batches_total', batches)
redis.call('HINCRBY', job, 'total', photos)
local done = tonumber(redis.call('HGET', job, 'batches_done') or '0')
if done < total and redis.call('HGET', job, 'state') == 'done' then
  redis.call('HSET', job, 'state', 'running')
end
redis.call('HSET', job, 'updated_at', now)
redis.call('EXPIRE', job, ttl)
return total
"""


class JobStore:
    def __init__(self, redis_url: str, *, ttl_seconds: int = 7 * 24 * 3600, key_prefix: str = "imagesearch:"):
        self._redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10,
                                           socket_connect_timeout=5)
        self._url = redis_url
        self._ttl = ttl_seconds
        self._prefix = key_prefix
        self._finish = self._redis.register_script(_FINISH_BATCH)
        self._add = self._redis.register_script(_ADD_BATCHES)

    def _key(self, job_id: str) -> str:
        return f"{self._prefix}job:{job_id}"

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise DependencyUnavailable(f"Redis at {self._url} cannot be reached ({exc}); job progress is "
                                        f"unavailable until it is back.", code="redis_unavailable") from None

    def create(self, job_id: str | None = None) -> str:
        """A new job id (uuid4 hex unless given); state 'queued'. An existing id is left as it is."""
        job_id = job_id or uuid.uuid4().hex
        now = _now()
        key = self._key(job_id)
        fields = {"job_id": job_id, "state": "queued", "created_at": now, "updated_at": now}
        fields.update({name: 0 for name in _COUNTERS})

        def write() -> None:
            pipe = self._redis.pipeline()
            for name, value in fields.items():
                pipe.hsetnx(key, name, value)
            pipe.expire(key, self._ttl)
            pipe.execute()

        self._call(write)
        return job_id

    def exists(self, job_id: str) -> bool:
        return bool(self._call(self._redis.exists, self._key(job_id)))

    def add_batches(self, job_id: str, batches: int, photos: int) -> None:
        """Announce work added to the job (a job may grow over several submissions).

        Call it before enqueueing the batches, so that a fast worker cannot finish them all and
        mark the job done before they are counted.
        """
        self._call(self._add, keys=[self._key(job_id)], args=[int(batches), int(photos), _now(), self._ttl, job_id])

    def finish_batch(self, job_id: str, batch_id: str, succeeded: int, skipped: int,
                     failures: list[dict[str, Any]]) -> int:
        """Record one batch's outcome once: BATCH_REPEATED (0, falsy) if this batch_id was already
        recorded, BATCH_COUNTED, or JOB_DONE when it was the job's last batch (exactly one batch of
        a job gets JOB_DONE, however many workers finish at once)."""
        key = self._key(job_id)
        encoded = [json.dumps(failure, separators=(",", ":")) for failure in failures]
        recorded = self._call(self._finish, keys=[key, f"{key}:batches", f"{key}:failures"],
                              args=[batch_id, int(succeeded), int(skipped), _now(), self._ttl, MAX_FAILURES,
                                    job_id, *encoded])
        return int(recorded)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """{"job_id", "state": queued|running|done, "total", "succeeded", "skipped", "failed",
        "batches_total", "batches_done", "failures": [{"photo_id","url","code","reason"}, ...] (first 1000),
        "created_at", "updated_at"} or None."""
        key = self._key(job_id)

        def read():
            pipe = self._redis.pipeline()
            pipe.hgetall(key)
            pipe.lrange(f"{key}:failures", 0, MAX_FAILURES - 1)
            return pipe.execute()

        fields, failures = self._call(read)
        if not fields:
            return None
        job: dict[str, Any] = {"job_id": fields.get("job_id", job_id), "state": fields.get("state", "queued")}
        for name in _COUNTERS:
            job[name] = int(fields.get(name, 0))
        job["failures"] = [json.loads(item) for item in failures]
        job["created_at"] = float(fields.get("created_at", 0))
        job["updated_at"] = float(fields.get("updated_at", 0))
        return job

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()


def _now() -> float:
    return round(time.time(), 3)
