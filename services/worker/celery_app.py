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
from celery.signals import (
    after_setup_logger,
    task_failure,
    task_retry,
    task_success,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from services.common.queue import celery_config
from services.worker import backups, metrics, resources
from services.worker.config import get_settings
from services.worker.lease import UnackedLease

app = Celery("imagesearch")
app.conf.update(
    imports=("services.worker.tasks", "services.worker.reembed_tasks"),
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
# Metrics (services/worker/metrics.py): served by the main process, counted in the children.
worker_init.connect(metrics.on_worker_init)
worker_shutdown.connect(metrics.on_worker_shutdown)
worker_process_shutdown.connect(metrics.on_process_shutdown)
task_success.connect(metrics.on_task_success)
task_retry.connect(metrics.on_task_retry)
task_failure.connect(metrics.on_task_failure)
# Scheduled backups (BACKUP_EVERY): a timer in the main process once the worker is up (backups.py).
worker_ready.connect(backups.on_worker_ready)
worker_shutdown.connect(backups.on_worker_shutdown)


@after_setup_logger.connect
def _configure_logging(logger, loglevel=None, **_):
    logger.setLevel(loglevel or get_settings().log_level.upper())
