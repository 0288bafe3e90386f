"""The workers' Celery app: `python -m celery -A services.worker.celery_app worker -Q ingest`.

Configured from services/common/queue.py, like the gateway's producer, so both sides agree on the
queue, the serializer (JSON only) and the delivery guarantees (acks late, one task prefetched).
"""
from __future__ import annotations

from celery import Celery
from celery.signals import after_setup_logger, worker_process_shutdown

from services.common.queue import celery_config
from services.worker.config import get_settings

app = Celery("imagesearch")
app.conf.update(celery_config(get_settings().redis_url))
app.conf.update(
    # Batches are small; a process that has run many of them is recycled to bound memory growth.
    worker_max_tasks_per_child=500,
    worker_hijack_root_logger=False,
    # WORKER_CONCURRENCY, unless the command line says --concurrency.
    worker_concurrency=get_settings().concurrency,
    # On a lost broker connection, running batches are cancelled and redelivered: they are idempotent.
    worker_cancel_long_running_tasks_on_connection_loss=True,
)
# Registers the task; imported for its side effect, after the app exists.
app.conf.imports = ("services.worker.tasks",)


@after_setup_logger.connect
def _configure_logging(logger, loglevel=None, **_):
    logger.setLevel(loglevel or get_settings().log_level.upper())


@worker_process_shutdown.connect
def _close_resources(**_):
    from services.worker.tasks import close_resources

    close_resources()
