"""Ingestion jobs' progress and failures, kept in Redis.

Written by workers, read by the gateway; a job is a set of batches, each a Celery task.
Counting is idempotent per batch (a retried batch is not counted twice).

Keys, all under `key_prefix` and all expiring after `ttl_seconds` of inactivity:
  {prefix}job:{id}           hash: state, counters, timestamps, retry_of
  {prefix}job:{id}:batches   set of finished batch ids (what makes a retried batch count once)
  {prefix}job:{id}:failures  list of JSON failures, each with the photo's record when known (so that
                             `POST /v1/jobs/{id}/retry` can resubmit it); the first MAX_FAILURES are kept
  {prefix}job:{id}:reasons   hash: failure code -> count (complete, even past MAX_FAILURES)
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from services.common.errors import DependencyUnavailable

# A safety bound on one job's stored failures (about 1 KB each with its record); counts stay exact past it.
MAX_FAILURES = 100_000
# Failures shown inline in a job's progress; the rest are paged through `failures`.
FAILURES_SHOWN = 20
# What finish_batch says of a batch.
BATCH_REPEATED, BATCH_COUNTED, JOB_DONE = 0, 1, 2
_COUNTERS = ("total", "succeeded", "skipped", "failed", "batches_total", "batches_done")

# One script per write so that a batch is counted and the state decided atomically, even with
# many workers finishing batches of the same job at once.
_FINISH_BATCH = """
local job, batches, failures, reasons = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local batch_id, succeeded, skipped, now, ttl, cap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('SADD', batches, batch_id) == 0 then return 0 end
if redis.call('EXISTS', job) == 0 then
  redis.call('HSET', job, 'job_id', ARGV[7], 'created_at', now, 'state', 'queued')
end
local nfail = (#ARGV - 7) / 2
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
  for i = 8, #ARGV, 2 do
    redis.call('HINCRBY', reasons, ARGV[i], 1)
    if room > 0 then
      redis.call('RPUSH', failures, ARGV[i + 1])
      room = room - 1
    end
  end
  redis.call('EXPIRE', reasons, ttl)
end
redis.call('EXPIRE', job, ttl)
redis.call('EXPIRE', batches, ttl)
if redis.call('EXISTS', failures) == 1 then redis.call('EXPIRE', failures, ttl) end
if redis.call('EXISTS', reasons) == 1 then redis.call('EXPIRE', reasons, ttl) end
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

    def create(self, job_id: str | None = None, *, retry_of: str | None = None) -> str:
        """A new job id (uuid4 hex unless given); state 'queued'. An existing id is left as it is.
        `retry_of` names the job whose failures this one retries."""
        job_id = job_id or uuid.uuid4().hex
        now = _now()
        key = self._key(job_id)
        fields = {"job_id": job_id, "state": "queued", "created_at": now, "updated_at": now}
        fields.update({name: 0 for name in _COUNTERS})
        if retry_of:
            fields["retry_of"] = retry_of

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
                     failures: list[dict[str, Any]], photos: list[dict[str, Any]] | None = None) -> int:
        """Record one batch's outcome once: BATCH_REPEATED (0, falsy) if this batch_id was already
        recorded, BATCH_COUNTED, or JOB_DONE when it was the job's last batch (exactly one batch of
        a job gets JOB_DONE, however many workers finish at once).

        `photos` are the batch's records: each failure keeps its photo's record, so it can be retried."""
        key = self._key(job_id)
        records = {str(photo.get("photo_id")): photo for photo in photos or () if isinstance(photo, dict)}
        encoded: list[str] = []
        for failure in failures:
            record = records.get(str(failure.get("photo_id")))
            if record is not None and "record" not in failure:
                failure = {**failure, "record": record}
            encoded += [str(failure.get("code") or "unknown"), json.dumps(failure, separators=(",", ":"))]
        recorded = self._call(self._finish, keys=[key, f"{key}:batches", f"{key}:failures", f"{key}:reasons"],
                              args=[batch_id, int(succeeded), int(skipped), _now(), self._ttl, MAX_FAILURES,
                                    job_id, *encoded])
        return int(recorded)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """{"job_id", "state": queued|running|done, "total", "succeeded", "skipped", "failed",
        "batches_total", "batches_done", "failures_by_reason": {code: count}, "rate" (photos/s since the
        job was created), "eta_s" (seconds left at that rate; None before the first batch, 0 when done),
        "failures": the first FAILURES_SHOWN [{"photo_id","url","code","reason"}, ...] (`failures` pages
        through all), "created_at", "updated_at", and "retry_of" for a retry} or None."""
        key = self._key(job_id)

        def read():
            pipe = self._redis.pipeline()
            pipe.hgetall(key)
            pipe.lrange(f"{key}:failures", 0, FAILURES_SHOWN - 1)
            pipe.hgetall(f"{key}:reasons")
            return pipe.execute()

        fields, failures, reasons = self._call(read)
        if not fields:
            return None
        job: dict[str, Any] = {"job_id": fields.get("job_id", job_id), "state": fields.get("state", "queued")}
        for name in _COUNTERS:
            job[name] = int(fields.get(name, 0))
        job["failures"] = [_public(item) for item in failures]
        job["failures_by_reason"] = dict(sorted(((code, int(n)) for code, n in reasons.items()),
                                                key=lambda item: (-item[1], item[0])))
        job["created_at"] = float(fields.get("created_at", 0))
        job["updated_at"] = float(fields.get("updated_at", 0))
        job["rate"], job["eta_s"] = progress_rate(job, _now())
        if fields.get("retry_of"):
            job["retry_of"] = fields["retry_of"]
        return job

    def failures(self, job_id: str, offset: int = 0, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
        """(how many failures are stored, the page `offset:offset+limit` of them, each with its record)."""
        key = f"{self._key(job_id)}:failures"

        def read():
            pipe = self._redis.pipeline()
            pipe.llen(key)
            pipe.lrange(key, offset, offset + limit - 1)
            return pipe.execute()

        stored, items = self._call(read)
        return int(stored), [json.loads(item) for item in items]

    def failed_records(self, job_id: str) -> list[dict[str, Any]]:
        """The records of the job's failed photos, once each, in the order they failed: what a retry
        resubmits. Failures without a record (a malformed one) are left out."""
        items = self._call(self._redis.lrange, f"{self._key(job_id)}:failures", 0, -1)
        records: dict[str, dict[str, Any]] = {}
        for item in items:
            record = json.loads(item).get("record")
            if isinstance(record, dict) and record.get("photo_id"):
                records.setdefault(str(record["photo_id"]), record)
        return list(records.values())

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()


def _now() -> float:
    return round(time.time(), 3)


def _public(item: str) -> dict[str, Any]:
    failure = json.loads(item)
    failure.pop("record", None)
    return failure


def progress_rate(job: dict[str, Any], now: float) -> tuple[float, float | None]:
    """(photos per second since the job was created, seconds left at that rate): a job's elapsed time
    ends at its last update once it is done. ETA is None until a photo is processed, 0 when done."""
    processed = job["succeeded"] + job["skipped"] + job["failed"]
    end = job["updated_at"] if job["state"] == "done" else now
    elapsed = max(end - job["created_at"], 1e-3)
    rate = processed / elapsed if processed else 0.0
    if job["state"] == "done":
        return round(rate, 3), 0.0
    if not rate:
        return 0.0, None
    return round(rate, 3), round(max(job["total"] - processed, 0) / rate, 3)
