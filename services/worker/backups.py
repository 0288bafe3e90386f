"""Scheduled backups (BACKUP_EVERY, BACKUP_KEEP) from the worker's main process: services/backup/schedule.py
says why a timer here rather than Celery beat. Every worker runs the timer; a Redis lock that expires
after one interval lets one of them back up per interval."""
from __future__ import annotations

import logging
import socket

import redis

from services.backup import BackupSchedule
from services.worker.config import get_settings

logger = logging.getLogger(__name__)
_schedule: BackupSchedule | None = None


def lock_key(table: str) -> str:
    return f"backup:scheduled:{table}"


def on_worker_ready(**_) -> None:
    global _schedule
    settings = get_settings()
    every_s = settings.backup_every_s
    if every_s is None or _schedule is not None:
        return
    client = redis.Redis.from_url(settings.redis_url)
    key, holder = lock_key(settings.store_table), f"{socket.gethostname()}"

    def claim() -> bool:
        # Expires a little before the next tick, so the same worker (or another) can claim the next one.
        return bool(client.set(key, holder, nx=True, px=max(1, int(every_s * 900))))

    _schedule = BackupSchedule(settings.store_url, settings.store_table, settings.backup_dir, every_s,
                               settings.backup_keep, claim).start()
    logger.info("backups of %s every %s into %s, the newest %d kept", settings.store_table, settings.backup_every,
                settings.backup_dir, settings.backup_keep)


def on_worker_shutdown(**_) -> None:
    global _schedule
    if _schedule is not None:
        _schedule.stop(timeout=5)
        _schedule = None
