"""The workers' Celery app: `python -m celery -A services.worker.celery_app worker -Q ingest`.

This module only builds and configures the app; the task lives in tasks.py (a `shared_task`, which
never imports this module), listed in `imports` so that the worker loads it. Configured from
services/common/queue.py, like the gateway's producer, so both sides agree on the queue, the
serializer (JSON only) and the delivery guarantees (acks late, one task prefetched). Delivery
survives any kill: a killed pool child's batch is requeued at once (`task_reject_on_worker_lost`), a
killed main process's batches within `WORKER_VISIBILITY_TIMEOUT_S` (lease.py explains how).
"""
from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, worker_process_init, worker_process_shutdown, worker_shutdown

from services.common.queue import celery_config
from services.worker import resources
from services.worker.config import get_settings
from services.worker.lease import UnackedLease

app = Celery("imagesearch")
app.conf.update(
    imports=("services.worker.tasks",),
    # Batches are small; a process that has run many of them is recycled to bound memory growth.
    worker_max_tasks_per_child=500,
    worker_hijack_root_logger=False,
    # On a lost broker connection, running batches are cancelled and redelivered: they are idempotent.
    worker_cancel_long_running_tasks_on_connection_loss=True,
)


def _settings_config() -> dict[str, Any]:
    settings = get_settings()
    # WORKER_CONCURRENCY, unless the command line says --concurrency.
    return {**celery_config(settings.redis_url, visibility_timeout_s=settings.visibility_timeout_s),
            "worker_concurrency": settings.concurrency}


# A callable is read when the configuration is first needed (the worker starting, a task applied),
# not when this module is imported: importing the app reads no settings.
app.add_defaults(_settings_config)
# Living workers renew the visibility of the batches they hold, so the timeout can be short.
app.steps["consumer"].add(UnackedLease)

worker_process_init.connect(resources.open_for_process)
worker_process_shutdown.connect(resources.close_for_process)
worker_shutdown.connect(resources.close_for_process)


@after_setup_logger.connect
def _configure_logging(logger, loglevel=None, **_):
    logger.setLevel(loglevel or get_settings().log_level.upper())
