"""Which tables make up a library, read from the server rather than listed here: the photo table and
every `<table>_*` table beside it (thumbnails, files, the model record, the active record, kept copies of
uploads, a re-embedding's `<table>_<8 hex>` table and its model record, and whatever side table a later
version adds), so a backup copies every column of every table without knowing them.

`photos_random_demo` starts with `photos_` but is a library of its own (it has its own
`photos_random_demo_meta`); a table belongs to the library with the longest name it extends.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.backup.store import StoreHttp

META_SUFFIX = "_meta"
# Views and the like hold no rows of their own (or hold someone else's): only tables that store data.
STORED_ENGINES = ("MergeTree", "Log", "Memory")


@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str

    def suffix(self, library: str) -> str:
        """'' for the photo table, '_thumbs' for `<library>_thumbs`."""
        return self.name[len(library):]

    @property
    def folds_versions(self) -> bool:
        """ReplacingMergeTree and kin keep a row's old versions until a merge; FINAL reads the folded rows."""
        return "Replacing" in self.engine or "Collapsing" in self.engine


def owner(name: str, libraries: set[str]) -> str | None:
    found = [lib for lib in libraries if name == lib or name.startswith(lib + "_")]
    return max(found, key=len) if found else None


def library_tables(store: StoreHttp, table: str) -> list[TableInfo]:
    """The tables of library `table` in the store's database, the photo table first."""
    rows = store.rows("table listing", "SELECT name, engine FROM system.tables WHERE database = {db:String} "
                      "AND (name = {t:String} OR startsWith(name, {prefix:String})) ORDER BY name",
                      {"db": store.database, "t": table, "prefix": table + "_"})
    names = {row["name"] for row in rows}
    # A re-embedding's table (`<table>_<8 hex>`, with its own model record) is part of this library.
    own = re.compile(re.escape(table) + r"_[0-9a-f]{8}")
    libraries = {name[: -len(META_SUFFIX)] for name in names
                 if name.endswith(META_SUFFIX) and not own.fullmatch(name[: -len(META_SUFFIX)])} | {table}
    found = [TableInfo(row["name"], row["engine"]) for row in rows
             if owner(row["name"], libraries) == table and any(kind in row["engine"] for kind in STORED_ENGINES)]
    return sorted(found, key=lambda info: (info.name != table, info.name))


def row_count(store: StoreHttp, info: TableInfo) -> int:
    final = " FINAL" if info.folds_versions else ""
    return int(store.rows("row count", f"SELECT count() AS n FROM {store.ref(info.name)}{final}")[0]["n"])


def model_record(store: StoreHttp, table: str, present: list[TableInfo]) -> dict[str, Any] | None:
    """The model record of the library (`<table>_meta`, its first row, every column), or None."""
    meta = table + META_SUFFIX
    if not any(info.name == meta for info in present):
        return None
    rows = store.rows("model lookup", f"SELECT * FROM {store.ref(meta)} ORDER BY created_at LIMIT 1")
    return {key: value for key, value in rows[0].items() if key != "created_at"} if rows else None


def server_version(store: StoreHttp) -> str:
    return str(store.rows("version check", "SELECT version() AS v")[0]["v"])
