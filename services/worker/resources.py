"""What a worker process holds open for its tasks: embedder, store and job-store clients.

Celery's prefork pool forks its processes from the worker's main process, and a socket opened
before the fork would be shared by all of them; so each pool process opens its own clients when
it starts (`worker_process_init`, also sent by the solo pool) and closes them when it ends
(`worker_process_shutdown`; `worker_shutdown` for the solo pool, which sends no such signal).
celery_app.py connects those signals. Code that runs a task in its own process (tests, eager
`apply`) opens them explicitly with `opened(...)`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from services.common.fetch import FetchPolicy
from services.common.images import ClipCrop
from services.common.jobs import JobStore
from services.common.ports import Embedder, PhotoStore
from services.worker.config import WorkerSettings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: WorkerSettings
    embedder: Embedder
    store: PhotoStore
    jobs: JobStore
    policy: FetchPolicy
    # Learnt from the embedder on this process's first batch (pipeline.prepare_store / choose_crop).
    model: dict[str, Any] | None = None
    crop: ClipCrop | None = None  # set when this worker decodes and crops the images itself
    spool: Any = None  # uploaded photos waiting in Redis (services/common/uploads.py)

    def close(self) -> None:
        for client in (self.embedder, self.store, self.jobs, *([self.spool] if self.spool else [])):
            try:
                client.close()
            except Exception:  # closing is best effort when the process ends
                log.debug("closing %s failed", client, exc_info=True)


def open_resources(settings: WorkerSettings) -> Resources:
    """Real clients from the settings (imported here: the store client pulls in clickhouse_connect)."""
    from services.common.embedder_client import EmbedderClient
    from services.common.uploads import UploadSpool
    from services.photostore import PhotoStore as StoreClient

    return Resources(
        settings=settings,
        embedder=EmbedderClient(settings.embedder_urls, timeout=settings.embedder_timeout_s),
        store=StoreClient(settings.store_url, settings.store_table, connect_timeout=settings.store_connect_timeout_s,
                          query_timeout=settings.store_query_timeout_s, **settings.store_options()),
        jobs=JobStore(settings.redis_url, ttl_seconds=settings.job_ttl_s),
        policy=settings.fetch_policy(),
        spool=UploadSpool(settings.redis_url),
    )


# This process's resources; a process holds one set at a time (a pool process runs one task at a time).
_current: Resources | None = None


def current() -> Resources:
    if _current is None:
        raise RuntimeError("this process has no worker resources: tasks run in a Celery worker (prefork or solo "
                           "pool), or in a process that opened them with services.worker.resources.opened()")
    return _current


def install(resources: Resources) -> None:
    """Make `resources` this process's own, closing any it held before."""
    global _current
    previous, _current = _current, resources
    if previous is not None and previous is not resources:
        previous.close()


def close() -> None:
    global _current
    previous, _current = _current, None
    if previous is not None:
        previous.close()


@contextmanager
def opened(resources: Resources | None = None) -> Iterator[Resources]:
    """This process's resources for the duration of the block: the given ones (fakes, in tests),
    else real clients from the settings; closed at the end."""
    install(resources if resources is not None else open_resources(get_settings()))
    try:
        yield current()
    finally:
        close()


def open_for_process(**_: Any) -> None:
    """`worker_process_init` handler."""
    install(open_resources(get_settings()))


def close_for_process(**_: Any) -> None:
    """`worker_process_shutdown` / `worker_shutdown` handler (nothing to do where nothing was opened)."""
    close()
