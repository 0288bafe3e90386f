"""Backups on a timer (BACKUP_EVERY), the newest BACKUP_KEEP kept.

Why a timer in the workers and not Celery beat: beat is one more process to deploy, and exactly one of
it may run (`worker -B` in each of `--scale worker=4` would back up four times). A timer thread in every
worker's main process needs nothing new, and a Redis lock (SET NX with the interval as its expiry) lets
one worker per interval win, however many run. The backup itself streams, so it costs the worker a few
MiB while it runs, and it runs beside the ingest tasks, not in their pool.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from services.backup.dump import backup
from services.backup.manifest import backups_in

logger = logging.getLogger(__name__)


def prune(directory: Path, table: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete backups of `table`; the deleted folders."""
    old = backups_in(directory, table)[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def _age_s(directory: Path, table: str) -> float | None:
    found = backups_in(directory, table)
    return time.time() - found[-1].stat().st_mtime if found else None


class BackupSchedule:
    """A daemon thread: every `every_s` seconds, if `claim()` agrees (the Redis lock), a backup, then prune.

    The first backup is due `every_s` after the newest one in `directory` (at once when there is none)."""

    def __init__(self, store_url: str, table: str, directory: Path, every_s: float, keep: int,
                 claim: Callable[[], bool] = lambda: True):
        self.store_url, self.table, self.directory = store_url, table, directory
        self.every_s, self.keep, self.claim = every_s, keep, claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backup-schedule", daemon=True)

    def start(self) -> BackupSchedule:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> Path | None:
        if not self.claim():
            return None
        path = backup(self.store_url, self.table, self.directory, now=datetime.now(UTC))
        for old in prune(self.directory, self.table, self.keep):
            logger.info("deleted the old backup %s (BACKUP_KEEP=%d)", old, self.keep)
        return path

    def _run(self) -> None:
        age = _age_s(self.directory, self.table)
        wait = 0.0 if age is None else max(0.0, self.every_s - age)
        while not self._stop.wait(wait):
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a failed backup is logged and tried again next time
                logger.exception("the scheduled backup of %s failed; the next try is in %.0f s", self.table,
                                 self.every_s)
            wait = max(0.0, self.every_s - (time.monotonic() - started))
