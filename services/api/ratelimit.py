"""Rate limits per API key (or per client address for anonymous reads), counted where every gateway sees
the same count: Redis (REDIS_URL), through the `limits` library (moving windows, one Lua script per hit).

`API_RATE_LIMIT` (e.g. `600/minute`) limits reads, `API_WRITE_RATE_LIMIT` writes; either is off when
unset. A caller over the limit gets 429 with `Retry-After` and a sentence.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from services.common.errors import BadRequest, ServiceError

log = logging.getLogger(__name__)


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"


def parse_limit(text: str, setting: str) -> RateLimitItem | None:
    """`600/minute` as a limit; empty is none. A bad value names the setting (at start, not per request)."""
    if not text.strip():
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise BadRequest(f"{setting}={text!r} is not a rate limit: write it like 600/minute or 10/second.",
                         code="invalid_setting") from exc


def storage_uri(redis_url: str) -> str:
    """The `limits` URI of the asyncio storage for a Redis URL (or `memory://`, one gateway's own count)."""
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


class RateLimits:
    """The gateway's two limits and where they are counted."""

    def __init__(self, reads: RateLimitItem | None, writes: RateLimitItem | None, storage: str):
        self.reads, self.writes = reads, writes
        self._limiter = None
        if reads or writes:
            options = {"implementation": "redispy"} if storage.startswith("async+redis") else {}
            self._limiter = MovingWindowRateLimiter(storage_from_string(storage, **options))
        self._warned_at = 0.0

    async def check(self, write: bool, api_key: str | None, address: str | None) -> None:
        item = self.writes if write else self.reads
        if item is None or self._limiter is None:
            return
        # Keyed by a digest of the key, so Redis never holds the key itself.
        who = ("key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]) if api_key else f"addr:{address}"
        scope = "write" if write else "read"
        try:
            allowed = await self._limiter.hit(item, scope, who)
            if not allowed:
                stats = await self._limiter.get_window_stats(item, scope, who)
        except Exception as exc:  # noqa: BLE001 - any storage failure
            # Fail open: a Redis outage must not take searching down with it (writes need Redis for
            # their job anyway and say so themselves). One log line per minute, not one per request.
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limits not counted (their store is unreachable: %s); letting requests through",
                            exc)
            return
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            per = "API key" if api_key else "client address"
            window = (f"{item.multiples} {item.GRANULARITY.name}s" if item.multiples > 1
                      else item.GRANULARITY.name)
            raise RateLimited(f"Too many {scope}s: this gateway allows {item.amount} {scope}s per {window} per "
                              f"{per}; try again in {retry_after} s.", retry_after=retry_after)
