"""Restoring a backup into the library `table` of a store: every check first, then the writes.

Before anything is written: the manifest is read (a newer format is refused), every file is present
and matches its sha256, the store's table (if it has one) holds the backup's model, and the store is
empty unless `replace`. Then each table is dropped if present, created from its saved schema (renamed
to this library's name), its Native file streamed in, and its rows counted against the manifest.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.backup import tables as library
from services.backup.errors import BackupError
from services.backup.manifest import read_manifest, verify_files
from services.backup.store import CHUNK, StoreHttp

logger = logging.getLogger(__name__)
_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[^\n(]+", re.IGNORECASE)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


def _renamed(schema: str, ref: str) -> str:
    if not _CREATE.match(schema):
        raise BackupError(f"The saved schema does not start with CREATE TABLE: {schema[:80]!r}.")
    return _CREATE.sub(f"CREATE TABLE {ref} ", schema, count=1).strip()


def _same_model(saved: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    if not saved or not current:
        return True
    return str(saved.get("model")) == str(current.get("model")) and int(saved.get("dim", 0)) == int(current.get("dim", 0))


def check(store: StoreHttp, table: str, folder: Path, replace: bool) -> tuple[dict[str, Any], list[library.TableInfo]]:
    """Every refusal, before any write: (the manifest, the library's tables now in the store)."""
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    present = library.library_tables(store, table)
    current = library.model_record(store, table, present)
    saved = manifest.get("model")
    if not _same_model(saved, current):
        raise BackupError(
            f"This backup's vectors come from {saved.get('model')} ({saved.get('dim')} dimensions) but "
            f"{store.database}.{table} holds vectors of {current.get('model')} ({current.get('dim')} "
            "dimensions); nothing was restored. Restore into another table (STORE_TABLE=...) or drop "
            f"{store.database}.{table} and its side tables first.")
    filled = {info.name: n for info in present if (n := library.row_count(store, info))}
    if filled and not replace:
        described = ", ".join(f"{name} ({n} row{'s' if n != 1 else ''})" for name, n in filled.items())
        raise BackupError(f"The store is not empty ({described}); nothing was restored. Run again with "
                          "ARGS=--replace (python -m tools.restore FOLDER --replace) to replace what it holds.")
    return manifest, present


def restore(store_url: str, table: str, folder: Path, *, replace: bool = False) -> dict[str, Any]:
    """Restore the backup in `folder` into library `table`; returns its manifest, with the rows restored."""
    with StoreHttp(store_url) as store:
        manifest, present = check(store, table, folder, replace)
        for info in present:  # empty, or replaced: the store becomes exactly the backup
            store.command("table drop", f"DROP TABLE IF EXISTS {store.ref(info.name)} SYNC")
        restored = {}
        for entry in manifest["tables"]:
            name = table + entry["suffix"]
            schema = (folder / entry["schema_file"]).read_text(encoding="utf-8")
            store.command("table creation", _renamed(schema, store.ref(name)))
            store.stream_in(f"load of {name}", f"INSERT INTO {store.ref(name)} FORMAT Native",
                            _file_chunks(folder / entry["file"]))
            count = library.row_count(store, library.TableInfo(name, entry["engine"]))
            if count != entry["rows"]:
                raise BackupError(f"{name} holds {count} rows after the restore, but the backup has "
                                  f"{entry['rows']}; the restore is incomplete, run it again with --replace.")
            restored[name] = count
    logger.info("restored %s from %s: %s", table, folder, restored)
    return {**manifest, "restored": restored}
