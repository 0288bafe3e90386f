"""Kept copies of uploaded photos, so a re-embedding under a new model can read them again.

A photo read from a folder or a URL can be read again from there; an uploaded one is gone once a worker
has ingested it (its bytes wait in Redis only until then). So ingestion keeps, for each uploaded photo,
a JPEG (quality 90, shorter side at most 512 px: larger than any supported model's input, SigLIP 2's
512 the largest) in `<table>_sources`, keyed to the library's base name like the thumbnails. A
ReplacingMergeTree by photo_id, so a repeated insert folds away; the bytes are a String column, always
bound as parameters. Mixed into `PhotoStore`.
"""
from __future__ import annotations

from collections.abc import Sequence

from services.photostore import sql
from services.photostore.cluster import Layout
from services.photostore.connection import Connection, is_unknown_table
from services.photostore.library import create_bytes_table_sql, sources_table


def create_sources_sql(database: str, base: str) -> str:
    return create_bytes_table_sql(database, sources_table(base), "source")


class SourceCopies:
    """Kept copies of uploaded photos beside the photo table (mixed into PhotoStore)."""

    connection: Connection
    layout: Layout
    database: str
    base_table: str
    _sources_ready: bool = False

    def keep_sources(self, copies: Sequence[tuple[str, bytes]]) -> int:
        """(photo_id, JPEG bytes) pairs, one insert (the table is created on first use)."""
        if not copies:
            return 0
        name = sources_table(self.base_table)
        if not self._sources_ready:
            for statement in self.layout.create_everywhere(create_sources_sql(self.database, self.base_table),
                                                           self.database, name):
                self.connection.command("source table creation", statement)
            self._sources_ready = True
        self.connection.insert("source copy insert", name, [[p for p, _ in copies], [bytes(b) for _, b in copies]],
                               ["photo_id", "source"], ["String", "String"])
        return len(copies)

    def get_sources(self, photo_ids: Sequence[str]) -> dict[str, bytes]:
        """The kept copies of these photos (those without one are left out)."""
        wanted = list(dict.fromkeys(photo_ids))
        if not wanted:
            return {}
        try:
            result = self.connection.client().query(
                f"SELECT photo_id, source FROM {sql.table_ref(self.database, sources_table(self.base_table))} "
                "FINAL WHERE photo_id IN {ids:Array(String)}",
                parameters={"ids": wanted}, column_formats={"source": "bytes"})
        except Exception as error:  # noqa: BLE001 - mapped like every other store call
            translated = self.connection.translate(error, "source copy lookup")
            if is_unknown_table(translated):  # no photo was ever uploaded
                return {}
            raise translated from error
        return {str(photo_id): bytes(body) for photo_id, body in result.result_rows}
