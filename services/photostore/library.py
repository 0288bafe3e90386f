"""The store's side tables for your own photos: thumbnails, and the files each local photo was read from.

`<table>_thumbs` holds one small JPEG per photo (a String column of bytes, always bound as a parameter);
`<table>_files` one row per file path (size, mtime and the content id it held), which is what lets a
re-run skip unchanged files and `--prune` find the ones that are gone. Both are ReplacingMergeTree
tables keyed like the photo table, so a repeated insert folds away, and both live on the same server as
the photos (the embedded store, a ClickHouse cluster or MyScale alike). `LibraryTables` is mixed into
`PhotoStore`; its methods use the store's connection.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from services.photostore import sql
from services.photostore.cluster import Layout
from services.photostore.connection import Connection, is_unknown_table
from services.photostore.errors import StoreError


def thumbs_table(table: str) -> str:
    return f"{table}_thumbs"


def files_table(table: str) -> str:
    return f"{table}_files"


def sources_table(table: str) -> str:
    """Kept copies of uploaded photos (services/photostore/sources.py)."""
    return f"{table}_sources"


def create_bytes_table_sql(database: str, name: str, column: str) -> str:
    """A side table of one byte string per photo (`column`; checked by the caller: identifiers cannot be
    bound), the latest written kept: thumbnails, kept copies of uploads."""
    return (f"CREATE TABLE IF NOT EXISTS {sql.table_ref(database, name)}\n"
            f"(\n    photo_id String,\n    {column} String,\n    inserted_at DateTime64(3) DEFAULT now64(3)\n)\n"
            "ENGINE = ReplacingMergeTree(inserted_at)\nORDER BY photo_id")


def create_thumbs_sql(database: str, table: str) -> str:
    return create_bytes_table_sql(database, thumbs_table(table), "thumbnail")


def create_files_sql(database: str, table: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {sql.table_ref(database, files_table(table))}\n"
            "(\n    path String,\n    photo_id String,\n    size UInt64,\n    mtime Float64,\n"
            "    inserted_at DateTime64(3) DEFAULT now64(3)\n)\n"
            "ENGINE = ReplacingMergeTree(inserted_at)\nORDER BY path")


class LibraryTables:
    """Thumbnails and file records beside the photo table (mixed into PhotoStore)."""

    connection: Connection
    layout: Layout
    database: str
    base_table: str  # the library's base name (STORE_TABLE), whichever table is active

    def _ref(self, name: str) -> str:
        return sql.table_ref(self.database, name)

    def ensure_library_tables(self) -> None:
        for ddl, name in ((create_thumbs_sql(self.database, self.base_table), thumbs_table(self.base_table)),
                          (create_files_sql(self.database, self.base_table), files_table(self.base_table))):
            for statement in self.layout.create_everywhere(ddl, self.database, name):
                self.connection.command("library table creation", statement)

    def insert_thumbnails(self, thumbnails: Sequence[tuple[str, bytes]]) -> int:
        """(photo_id, JPEG bytes) pairs, one insert."""
        if not thumbnails:
            return 0
        self.connection.insert("thumbnail insert", thumbs_table(self.base_table),
                               [[p for p, _ in thumbnails], [bytes(t) for _, t in thumbnails]],
                               ["photo_id", "thumbnail"], ["String", "String"])
        return len(thumbnails)

    def get_thumbnail(self, photo_id: str) -> bytes | None:
        try:
            result = self.connection.client().query(
                f"SELECT thumbnail FROM {self._ref(thumbs_table(self.base_table))} FINAL "
                "WHERE photo_id = {photo_id:String} LIMIT 1",
                parameters={"photo_id": photo_id}, column_formats={"thumbnail": "bytes"})
        except Exception as error:  # noqa: BLE001 - mapped like every other store call
            translated = self.connection.translate(error, "thumbnail lookup")
            if is_unknown_table(translated):  # nothing ingested yet
                return None
            raise translated from error
        rows = result.result_rows
        return bytes(rows[0][0]) if rows else None

    def record_files(self, files: Sequence[tuple[str, str, int, float]]) -> int:
        """(path, photo_id, size, mtime) rows; a path recorded again replaces its old row."""
        if not files:
            return 0
        columns = [list(column) for column in zip(*files)]
        self.connection.insert("file record", files_table(self.base_table), columns,
                               ["path", "photo_id", "size", "mtime"], ["String", "String", "UInt64", "Float64"])
        return len(files)

    def files_under(self, prefix: str, after: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        """The recorded files whose path starts with `prefix` (a folder path ending in '/'), in path order:
        those after the path `after`, at most `limit` (all when None). A keyset page on the table's
        sorting key, so each page costs its own rows however deep into the folder it starts."""
        page = " LIMIT {limit:UInt32}" if limit is not None else ""
        rows = self.connection.read_rows(
            "file listing", f"SELECT path, photo_id, size, mtime FROM {self._ref(files_table(self.base_table))} FINAL "
            "WHERE startsWith(path, {prefix:String}) AND path > {after:String} ORDER BY path" + page,
            {"prefix": prefix, "after": after, **({"limit": limit} if limit is not None else {})})
        return [{"path": p, "photo_id": i, "size": int(s), "mtime": float(m)} for p, i, s, m in rows]

    def files_of(self, photo_ids: Sequence[str]) -> dict[str, list[str]]:
        """The recorded paths of each photo (those with none are left out)."""
        wanted = list(dict.fromkeys(photo_ids))
        if not wanted:
            return {}
        rows = self.connection.read_rows(
            "file lookup", f"SELECT photo_id, path FROM {self._ref(files_table(self.base_table))} FINAL "
            "WHERE photo_id IN {ids:Array(String)} ORDER BY path", {"ids": wanted})
        found: dict[str, list[str]] = {}
        for photo_id, path in rows:
            found.setdefault(photo_id, []).append(path)
        return found

    def forget_files(self, paths: Sequence[str]) -> list[str]:
        """Drop the records of `paths`; returns the photo ids that no longer have any recorded file."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            return []
        table = self._ref(files_table(self.base_table))
        rows = self.connection.read_rows("file lookup", f"SELECT DISTINCT photo_id FROM {table} "
                                         "WHERE path IN {paths:Array(String)}", {"paths": wanted})
        ids = [row[0] for row in rows]
        self.connection.command("file forget", f"DELETE FROM {table} WHERE path IN {{paths:Array(String)}}",
                                {"paths": wanted})
        still = self.files_of(ids)
        return [photo_id for photo_id in ids if photo_id not in still]

    def delete_library_rows(self, photo_ids: Sequence[str]) -> None:
        """The thumbnails and file records of deleted photos."""
        for name in (thumbs_table(self.base_table), files_table(self.base_table), sources_table(self.base_table)):
            try:
                self.connection.command("delete", f"DELETE FROM {self._ref(name)} WHERE photo_id IN "
                                        "{photo_ids:Array(String)}", {"photo_ids": list(photo_ids)})
            except StoreError as error:
                if not is_unknown_table(error):
                    raise


def etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
