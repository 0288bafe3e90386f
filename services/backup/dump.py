"""Writing a backup: each table of the library to `<table>.native.zst` (ClickHouse's Native format, as
the server's zstd-compressed HTTP answer, written as it arrives) beside its `SHOW CREATE TABLE` in
`<table>.sql`, then manifest.json. The folder is written as `<name>.partial` and renamed when complete,
so an interrupted backup is never mistaken for one (and never counted among those kept).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.backup import tables as library
from services.backup.errors import BackupError
from services.backup.manifest import FORMAT_VERSION, PARTIAL, sha256_of, write_manifest
from services.backup.store import StoreHttp

logger = logging.getLogger(__name__)
# A table written to while it is copied gives a count that does not match its file: copy it again.
ATTEMPTS = 3


def folder_name(table: str, when: datetime) -> str:
    return f"{table}-{when.strftime('%Y%m%dT%H%M%S.%f')}Z"


def _dump_table(store: StoreHttp, info: library.TableInfo, path: Path) -> tuple[int, str]:
    """(rows, sha256) of one table written to `path`; rows counted before and after, equal."""
    final = " FINAL" if info.folds_versions else ""
    for _ in range(ATTEMPTS):
        before = library.row_count(store, info)
        digest = hashlib.sha256()
        with path.open("wb") as file, store.stream_out(f"copy of {info.name}",
                                                       f"SELECT * FROM {store.ref(info.name)}{final} "
                                                       "FORMAT Native") as chunks:
            for chunk in chunks:
                file.write(chunk)
                digest.update(chunk)
        if library.row_count(store, info) == before:
            return before, digest.hexdigest()
        logger.info("%s changed while it was copied; copying it again", info.name)
    raise BackupError(f"{info.name} kept changing while it was copied ({ATTEMPTS} tries): pause ingestion "
                      "(stop the workers) and back up again.")


def backup(store_url: str, table: str, directory: Path, *, now: datetime | None = None) -> Path:
    """Back up library `table` of the store at `store_url` into a new folder under `directory`; its path."""
    when = now or datetime.now(UTC)
    with StoreHttp(store_url) as store:
        present = library.library_tables(store, table)
        if not any(info.name in (table, f"{table}_active") for info in present):  # re-embedded: maybe no base
            raise BackupError(f"The store at {store.safe_url} has no table {store.database}.{table} to back up "
                              "(is STORE_TABLE right?).")
        directory.mkdir(parents=True, exist_ok=True)
        final_path = directory / folder_name(table, when)
        partial = final_path.with_name(final_path.name + PARTIAL)
        partial.mkdir()
        try:
            manifest = _write(store, table, present, partial, when)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(final_path)
    logger.info("backed up %s (%d rows in all) to %s", table, manifest["rows"], final_path)
    return final_path


def _write(store: StoreHttp, table: str, present: list[library.TableInfo], folder: Path,
           when: datetime) -> dict[str, Any]:
    entries = []
    for info in present:
        schema = store.rows("schema read", f"SHOW CREATE TABLE {store.ref(info.name)}")[0]["statement"]
        schema_file = f"{info.name}.sql"
        (folder / schema_file).write_text(schema + "\n", encoding="utf-8")
        data_file = f"{info.name}.native.zst"
        rows, digest = _dump_table(store, info, folder / data_file)
        entries.append({"name": info.name, "suffix": info.suffix(table), "engine": info.engine, "rows": rows,
                        "file": data_file, "schema_file": schema_file, "bytes": (folder / data_file).stat().st_size,
                        "sha256": {"file": digest, "schema_file": sha256_of(folder / schema_file)}})
    manifest = {
        "format": "imagesearch-backup", "format_version": FORMAT_VERSION, "created_at": when.isoformat(),
        "table": table, "database": store.database,
        "store": {"url": store.safe_url, "version": library.server_version(store)},
        "model": library.model_record(store, table, present),
        "rows": sum(entry["rows"] for entry in entries),
        "bytes": sum(entry["bytes"] for entry in entries), "tables": entries,
    }
    write_manifest(folder, manifest)
    return manifest
