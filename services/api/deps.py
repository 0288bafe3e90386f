"""The gateway's wiring: the adapters it talks to, built once per app, and its FastAPI dependencies.

`build_services` is the one place where real adapters (embedder client, store, job store, queue,
fetcher) are constructed; tests hand `create_app` a `Services` of small fakes instead. Nothing is
built at import time.
"""
from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from services.api.config import ApiSettings
from services.api.resultcache import ResultCache
from services.api.textcache import TextVectorCache
from services.common.errors import DependencyUnavailable, ServiceError, Unauthorized
from services.common.ports import AsyncEmbedder, PhotoStore

log = logging.getLogger(__name__)

# (job_id, photos, batch_size) -> number of batches enqueued.
EnqueueFn = Callable[[str, list[dict], int], int]
# url -> image bytes; raises services.common.fetch.FetchError.
FetchFn = Callable[[str], Awaitable[bytes]]


@runtime_checkable
class JobTracker(Protocol):
    """What the gateway needs of the job store (`services.common.jobs.JobStore`): start a job, announce
    its batches, read its progress and failures. Blocking calls, like the store's."""

    def create(self, job_id: str | None = None, *, retry_of: str | None = None) -> str: ...

    def add_batches(self, job_id: str, batches: int, photos: int) -> None: ...

    def get(self, job_id: str) -> dict[str, Any] | None: ...

    def failures(self, job_id: str, offset: int = 0, limit: int = 100) -> tuple[int, list[dict[str, Any]]]: ...

    def failed_records(self, job_id: str) -> list[dict[str, Any]]: ...

    def ping(self) -> bool: ...


class Cached:
    """An async getter's answer, reused for `ttl_s` seconds: every query reports the model and checks
    the table, and neither changes from one query to the next. A None answer is never kept, so a
    table created a moment ago is seen at once."""

    def __init__(self, getter: Callable[[], Awaitable[Any]], ttl_s: float):
        self._getter = getter
        self._ttl_s = ttl_s
        self._value: Any = None
        self._fetched_at = 0.0

    async def get(self, *, fresh: bool = False) -> Any:
        now = time.monotonic()
        if fresh or self._value is None or now - self._fetched_at > self._ttl_s:
            self._value = await self._getter()
            self._fetched_at = now
        return self._value


# The active table a query was embedded for (services/photostore/active.py): set once per search, so its
# embedder calls, model check, caches and search all use one table and its model, even across a switch.
_query_table: ContextVar[Any] = ContextVar("query_table", default=None)


class PerTable:
    """A `Cached` getter per active table: the model and the table of the table that answers now (or that
    the current query was pinned to), each kept `ttl_s` seconds. `make(record)` builds the getter."""

    def __init__(self, services: Services, make: Callable[[Any], Callable[[], Awaitable[Any]]], ttl_s: float):
        self._services, self._make, self._ttl_s = services, make, ttl_s
        self._by_table: dict[Any, Cached] = {}

    async def get(self, *, fresh: bool = False) -> Any:
        record = await self._services.current_table()
        cached = self._by_table.get(record)
        if cached is None:
            cached = self._by_table[record] = Cached(self._make(record), self._ttl_s)
        return await cached.get(fresh=fresh)


class QueryStore:
    """`services.store` as handlers see it: the client bound to the table the current query is pinned to
    (`Services.pin_table`), else the store itself, which follows the active record. Every attribute is
    that client's, so a search, a stored photo's vector and a data version all come from one table."""

    def __init__(self, services: Services):
        object.__setattr__(self, "_services", services)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services.table_store(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._services.table_store(), name, value)


@dataclass
class Services:
    """Everything a request handler may call. Store and job store are synchronous: call them
    through `blocking()` so they never stall the event loop.

    `table_info` is the gateway's only cache of the store's table (model, dim): every route that
    needs it asks this one, never `store.table_info` directly."""

    embedder: AsyncEmbedder
    store: PhotoStore
    jobs: JobTracker
    enqueue: EnqueueFn
    fetch: FetchFn
    model_info_ttl_s: float = 30.0
    table_info_ttl_s: float = 5.0
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Text vectors by (model fingerprint, text); None: a local LRU of 10000 texts.
    text_cache: TextVectorCache | None = None
    # Search answers by (vector, filters, ...) for one data version of the table; None: 256 answers.
    result_cache: ResultCache | None = None
    # Re-embeddings (services/common/reembed_jobs.py); None: this gateway starts none.
    reembeds: Any = None

    def __post_init__(self) -> None:
        self.model_info = PerTable(self, lambda record: partial(self.embedder.model_info, **_options(record)),
                                   self.model_info_ttl_s)
        self.table_info = PerTable(self, lambda record: partial(blocking, self.table_store(record).table_info),
                                   self.table_info_ttl_s)
        self._active = Cached(self._read_active, 2.0)
        self.base_store, self.store = self.store, QueryStore(self)  # type: ignore[assignment]
        if self.text_cache is None:
            self.text_cache = TextVectorCache(10000)
        if self.result_cache is None:
            self.result_cache = ResultCache(256)

    async def embed_texts(self, texts: list[str]) -> Any:
        """The texts' vectors, through the text cache: only texts it lacks reach the embedder. The key
        carries the fingerprints of both towers, so another model, or another text tower over the same
        image model, never gets this one's vectors."""
        cache = self.text_cache
        options = _options(await self.current_table())
        if cache is None or not cache.enabled:
            return await self.embedder.embed_texts(texts, **options)
        info = await self.model_info.get()
        fingerprint = str(info.get("fingerprint") or info.get("name") or "")
        text_fingerprint = info.get("text_fingerprint")
        if text_fingerprint and text_fingerprint != fingerprint:
            fingerprint = f"{fingerprint}+{text_fingerprint}"
        return await cache.embed(fingerprint, texts, partial(self.embedder.embed_texts, **options))

    async def embed_images(self, images: list[bytes]) -> Any:
        """The images' vectors from the model of the table that answers."""
        return await self.embedder.embed_images(images, **_options(await self.current_table()))

    async def _read_active(self) -> Any:
        reader = getattr(self.base_store, "active_record", None)
        return await blocking(reader) if reader is not None else None

    async def current_table(self) -> Any:
        """The active record (services/photostore/active.py) the current query is pinned to, else the latest
        (read at most every 2 s); None for a store that keeps none (a test's fake)."""
        pinned = _query_table.get()
        return pinned if pinned is not None else await self._active.get()

    async def refresh_active(self) -> Any:
        """Read the active record now rather than at the next 2 s check (after a switch or a rollback)."""
        return await self._active.get(fresh=True)

    async def pin_table(self) -> Token:
        """Pin the current query to the table that answers now; `unpin` with the token when it is done."""
        return _query_table.set(await self._active.get())

    @staticmethod
    def unpin(token: Token) -> None:
        _query_table.reset(token)

    def table_store(self, record: Any = None) -> PhotoStore:
        """The store bound to the table of `record` (by default the current query's), or the store itself."""
        record = record if record is not None else _query_table.get()
        return self.base_store.for_table(record.table) if record is not None else self.base_store

    async def aclose(self) -> None:
        for close in self.closers:
            try:
                result = close()
                if hasattr(result, "__await__"):
                    await result
            except Exception:  # closing must not hide the reason we are shutting down
                log.warning("closing %r failed", close, exc_info=True)


def _options(record: Any) -> dict[str, str]:
    """The embedder keyword arguments picking the model of `record`'s table (none: the embedder's own)."""
    return record.embed_options() if record is not None else {}


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous adapter call in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def jobs_call(fn: Callable[..., Any], *args: Any) -> Any:
    """A job-store (Redis) call whose connection errors become a 503 with a sentence."""
    try:
        return await blocking(fn, *args)
    except ServiceError:
        raise
    except Exception as exc:
        if _is_redis_outage(exc):
            raise DependencyUnavailable(
                "The job queue (Redis) cannot be reached; try again shortly.", code="queue_unavailable"
            ) from exc
        raise


def _is_redis_outage(exc: BaseException) -> bool:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis is in the api extra
        return isinstance(exc, (ConnectionError, TimeoutError))
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError))


def build_services(settings: ApiSettings) -> Services:
    """The real adapters, from settings. Imports live here so that importing the app stays cheap."""
    from services.common.embedder_client import AsyncEmbedderClient
    from services.common.fetch import FetchPolicy, fetch_bytes_async
    from services.common.jobs import JobStore
    from services.common.queue import enqueue_ingest
    from services.common.reembed_jobs import ReembedJobs
    from services.photostore import PhotoStore

    embedder = AsyncEmbedderClient(settings.embedder_urls, timeout=settings.embedder_timeout_s)
    store = PhotoStore(settings.store_url, settings.store_table,
                       connect_timeout=settings.store_connect_timeout_s,
                       query_timeout=settings.store_query_timeout_s, **settings.store_options())
    jobs = JobStore(settings.redis_url)
    policy = FetchPolicy(allow_hosts=tuple(settings.fetch_allow_list), max_bytes=settings.max_image_bytes,
                         timeout_s=settings.fetch_timeout_s, deny_urls=(settings.store_url,))

    def enqueue(job_id: str, photos: list[dict], batch_size: int) -> int:
        return enqueue_ingest(settings.redis_url, job_id, photos, batch_size)

    async def fetch(url: str) -> bytes:
        return await fetch_bytes_async(url, policy)

    reembeds = ReembedJobs(settings.redis_url, settings.store_table)
    text_cache = TextVectorCache(settings.text_cache_size, ttl_s=settings.text_cache_ttl_s,
                                 redis_url=settings.redis_url if settings.text_cache_redis else None)
    return Services(embedder=embedder, store=store, jobs=jobs, enqueue=enqueue, fetch=fetch,
                    model_info_ttl_s=settings.model_info_ttl_s, table_info_ttl_s=settings.table_info_ttl_s,
                    closers=[embedder.aclose, store.close, jobs.close, reembeds.close, text_cache.aclose],
                    text_cache=text_cache, reembeds=reembeds,
                    result_cache=ResultCache(settings.result_cache_size, settings.result_cache_depth))


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_app_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[ApiSettings, Depends(get_app_settings)]

# Declared as a security scheme so that /docs offers an "Authorize" box for the key.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="One of the keys in API_KEYS.")
ApiKeyDep = Annotated[str | None, Depends(_api_key_header)]


def _check_key(given: str | None, settings: ApiSettings) -> None:
    keys = settings.api_key_list
    if not keys:
        raise Unauthorized("This gateway has no API keys configured (API_KEYS is empty), so it accepts "
                           "no requests that need one.")
    if not given:
        raise Unauthorized("This request needs an API key: send one of the gateway's keys in the "
                           "X-API-Key header.")
    # compare_digest on every key, so the time taken does not say which key was close.
    matches = [secrets.compare_digest(given.encode(), key.encode()) for key in keys]
    if not any(matches):
        raise Unauthorized("The API key in the X-API-Key header is not one this gateway accepts.")


async def require_write_key(request: Request, settings: SettingsDep, api_key: ApiKeyDep = None) -> None:
    _check_key(api_key, settings)
    await request.app.state.rate_limits.check(True, api_key, None)


async def require_read_key(request: Request, settings: SettingsDep, api_key: ApiKeyDep = None) -> None:
    if settings.require_key_for_reads:
        _check_key(api_key, settings)
    # Counted per key only when the key is one of ours: a made-up key per request must not dodge the limit.
    known = api_key if api_key and any(secrets.compare_digest(api_key.encode(), key.encode())
                                       for key in settings.api_key_list) else None
    await request.app.state.rate_limits.check(False, known, request.client.host if request.client else None)
