"""A re-embedding's state in Redis, and the enqueueing of its batches: shared by the gateway and the workers.

One re-embedding per library (per base table) at a time. Its record is one hash,
`{prefix}reembed:{base}`: state (running | done | failed), from/to tables and models, the JobStore
job that counts its batches (so progress, rate, ETA and failures by reason are an ingestion job's,
`services/common/jobs.py`), the round (0 for the first pass; each catch-up round adds one), when it
started and switched, and the sentence of a failure. `{...}:round` is the set of photo ids the current
round was given: a photo still missing after a round that had it cannot be re-embedded. A Redis lock
(`{...}:lock`) lets exactly one worker finish a round: catch up, or switch.

Batches go on the ingestion queue (`services/common/queue.py`) as `REEMBED_TASK`, acknowledged late
like ingestion batches, so a killed worker's batch is delivered again; the batch itself is idempotent.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from services.common.errors import DependencyUnavailable
from services.common.jobs import JobStore
from services.common.queue import QUEUE, producer_app

REEMBED_TASK = "imagesearch.reembed_batch"
BATCH_SIZE = 32
RUNNING, DONE, FAILED = "running", "done", "failed"
_TEXT = ("state", "job_id", "from_table", "from_model", "from_text_model", "to_table", "to_model",
         "to_text_model", "error")
_NUMBERS = ("round", "started_at", "switched_at")


class ReembedJobs:
    def __init__(self, redis_url: str, base_table: str, *, key_prefix: str = "imagesearch:",
                 ttl_seconds: int = 30 * 24 * 3600):
        self.redis_url = redis_url
        self._redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10,
                                           socket_connect_timeout=5)
        self.jobs = JobStore(redis_url, ttl_seconds=ttl_seconds, key_prefix=key_prefix)
        self.key = f"{key_prefix}reembed:{base_table}"
        self._ttl = ttl_seconds

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise DependencyUnavailable("The job queue (Redis) cannot be reached; try again shortly.",
                                        code="queue_unavailable") from exc

    def record(self) -> dict[str, Any] | None:
        """The re-embedding's own fields (no progress), or None when none was ever started."""
        fields = self._call(self._redis.hgetall, self.key)
        if not fields:
            return None
        record: dict[str, Any] = {name: fields.get(name) or None for name in _TEXT}
        record.update({name: float(fields[name]) if fields.get(name) else None for name in _NUMBERS})
        record["round"] = int(record["round"] or 0)
        return record

    def get(self) -> dict[str, Any] | None:
        """The record with its job's progress: total, done, failed, fell_back, failures_by_reason, failures,
        rate, eta_s (see JobStore.get; photos re-embedded from their thumbnails count as done)."""
        record = self.record()
        if record is None:
            return None
        job = self.jobs.get(record["job_id"]) if record["job_id"] else None
        job = job or {"total": 0, "succeeded": 0, "skipped": 0, "failed": 0, "failures_by_reason": {},
                      "failures": [], "rate": 0.0, "eta_s": None}
        reasons = dict(job["failures_by_reason"])
        fell_back = int(reasons.pop("from_thumbnail", 0))
        record.update(total=job["total"], done=job["succeeded"] + job["skipped"], fell_back=fell_back,
                      failed=max(0, job["failed"] - fell_back), failures_by_reason=reasons,
                      failures=job["failures"], rate=job["rate"], updated_at=job.get("updated_at"),
                      eta_s=0.0 if record["state"] != RUNNING else job["eta_s"])
        return record

    def start(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Replace the record with a new running re-embedding (a new job id, round 0)."""
        job_id = f"reembed-{uuid.uuid4().hex[:12]}"
        values = {**{name: "" for name in (*_TEXT, *_NUMBERS)}, **{k: "" if v is None else v for k, v in fields.items()},
                  "state": RUNNING, "job_id": job_id, "round": 0, "started_at": time.time()}
        self.jobs.create(job_id)

        def write() -> None:
            pipe = self._redis.pipeline()
            pipe.delete(self.key, f"{self.key}:round")
            pipe.hset(self.key, mapping=values)
            pipe.expire(self.key, self._ttl)
            pipe.execute()

        self._call(write)
        return self.record() or {}

    def update(self, **fields: Any) -> None:
        self._call(self._redis.hset, self.key, mapping={k: "" if v is None else v for k, v in fields.items()})

    def clear(self) -> None:
        self._call(self._redis.delete, self.key, f"{self.key}:round")

    def lock(self) -> Any:
        """The lock one worker holds while it finishes a round (released on exit, or after 10 minutes)."""
        return self._redis.lock(f"{self.key}:lock", timeout=600, blocking_timeout=0)

    def round_ids(self) -> set[str]:
        return set(self._call(self._redis.smembers, f"{self.key}:round"))

    def enqueue_round(self, record: dict[str, Any], photo_ids: list[str], *, next_round: bool = False,
                      batch_size: int = BATCH_SIZE) -> int:
        """Announce and enqueue a round of these photos (one empty batch when there are none, so that a
        worker still finishes the round); returns the number of batches."""
        batches = [photo_ids[i:i + batch_size] for i in range(0, len(photo_ids), batch_size)] or [[]]
        key = f"{self.key}:round"

        def write() -> None:
            pipe = self._redis.pipeline()
            pipe.delete(key)
            for start in range(0, len(photo_ids), 10_000):
                pipe.sadd(key, *photo_ids[start:start + 10_000])
            pipe.expire(key, self._ttl)
            if next_round:
                pipe.hincrby(self.key, "round", 1)
            pipe.execute()

        self._call(write)
        self.jobs.add_batches(record["job_id"], len(batches), len(photo_ids))
        app = producer_app(self.redis_url)
        for batch in batches:
            batch_id = uuid.uuid4().hex
            app.send_task(REEMBED_TASK, queue=QUEUE, task_id=batch_id, kwargs={
                "job_id": record["job_id"], "batch_id": batch_id, "photo_ids": batch,
                "from_table": record["from_table"], "to_table": record["to_table"],
                "model": record["to_model"], "text_model": record["to_text_model"]})
        return len(batches)

    def close(self) -> None:
        self.jobs.close()
        self._redis.close()
