"""Backups of one library (the photo table, its vectors and every `<table>_*` side table) and their restore,
through the ClickHouse HTTP interface only, so one command serves the embedded store, a ClickHouse server
and MyScale. A library: it imports no service part (the tools and the worker's timer call it).

    config     BACKUP_DIR, BACKUP_EVERY, BACKUP_KEEP (mixed into the settings of whoever runs backups)
    store      the store over HTTP: small queries, and Native bodies streamed out and in (httpx)
    tables     which tables belong to a library, and its model record
    manifest   manifest.json: what a backup holds, its checksums, and the checks before a restore
    dump       writing a backup
    load       restoring one
    schedule   backups on a timer, the newest BACKUP_KEEP kept
"""
from services.backup.config import BackupOptions, parse_every
from services.backup.dump import backup
from services.backup.errors import BackupError
from services.backup.load import restore
from services.backup.manifest import FORMAT_VERSION, latest_backup, read_manifest
from services.backup.schedule import BackupSchedule, prune
from services.backup.store import StoreHttp

__all__ = ["FORMAT_VERSION", "BackupError", "BackupOptions", "BackupSchedule", "StoreHttp", "backup",
           "latest_backup", "parse_every", "prune", "read_manifest", "restore"]
