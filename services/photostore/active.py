"""Which table answers: the active record, so a library can be re-embedded under a new model without downtime.

`PhotoStore(url, table)` takes `table` (STORE_TABLE) as the library's base name. A re-embedding fills
`<table>_<8 hex>` (named by a hash of the new model and text model, with its own `_meta`), and the switch
is one row appended to `<table>_active`: (table, model, text_model, dim, previous, previous_model,
previous_text_model, switched_at), the latest row winning. With no such table, or no row, the base table
answers, as it always did, with the embedder's own model (model None). Every process re-reads the record
at most every `RECHECK_S` seconds, so all gateways and workers follow a switch within that time.

Thumbnails, file records and kept copies of uploaded photos stay keyed to the base name: they do not
depend on the model. `for_table(name)` gives a client bound to one table that ignores the record: the
re-embedding job's view of the old and the new table, and the gateway's view of the one table a query
was embedded for.
"""
from __future__ import annotations

import copy
import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from services.photostore import sql
from services.photostore.cluster import Layout
from services.photostore.columns import PHOTO_COLUMNS
from services.photostore.connection import Connection, is_unknown_table
from services.photostore.errors import StoreError

# How long a process trusts the active record it read: a switch reaches every process within this.
RECHECK_S = 2.0
_FIELDS = ("table", "model", "text_model", "dim", "previous", "previous_model", "previous_text_model")


def active_table_name(base: str) -> str:
    return f"{base}_active"


def reembed_table_name(base: str, model: str, text_model: str | None = None) -> str:
    """The table a re-embedding under `model` (and `text_model`) fills: the same name on every run, so a
    re-embedding that was stopped resumes into the table it had started."""
    digest = hashlib.sha256(f"{model}\n{text_model or ''}".encode()).hexdigest()[:8]
    name = f"{base}_{digest}"
    sql.quote_identifier(name)
    return name


def create_active_sql(database: str, base: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {sql.table_ref(database, active_table_name(base))}\n"
            "(\n    table String,\n    model String,\n    text_model String,\n    dim UInt32,\n"
            "    previous String,\n    previous_model String,\n    previous_text_model String,\n"
            "    switched_at DateTime64(6) DEFAULT now64(6)\n)\nENGINE = MergeTree\nORDER BY switched_at")


def read_active_sql(database: str, base: str) -> str:
    # The latest row wins; each switch appends one, so the history stays readable.
    return (f"SELECT {', '.join(_FIELDS)}, toFloat64(switched_at) FROM "
            f"{sql.table_ref(database, active_table_name(base))} ORDER BY switched_at DESC LIMIT 1")


def missing_ids_sql(database: str, table: str, other: str) -> str:
    """The photo ids of `table` that `other` lacks (no FINAL: DISTINCT folds a photo written twice)."""
    return (f"SELECT DISTINCT photo_id FROM {sql.table_ref(database, table)} WHERE photo_id NOT IN "
            f"(SELECT photo_id FROM {sql.table_ref(database, other)}) ORDER BY photo_id")


def photos_by_id_sql(database: str, table: str) -> str:
    return (f"SELECT {', '.join(PHOTO_COLUMNS)} FROM {sql.table_ref(database, table)} FINAL "
            "WHERE photo_id IN {photo_ids:Array(String)}")


@dataclass(frozen=True)
class ActiveRecord:
    """The table that answers and the model that made its vectors (None: the embedder's own model)."""

    table: str
    model: str | None = None
    text_model: str | None = None
    dim: int | None = None
    previous: str | None = None
    previous_model: str | None = None
    previous_text_model: str | None = None
    switched_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*_FIELDS, "switched_at")}

    def embed_options(self) -> dict[str, str]:
        """The embedder keyword arguments that pick this table's model (none when it is the embedder's own)."""
        return {key: value for key, value in (("model", self.model), ("text_model", self.text_model)) if value}


def record_from_row(row: tuple | list) -> ActiveRecord:
    table, model, text_model, dim, previous, previous_model, previous_text_model, switched_at = row
    return ActiveRecord(str(table), str(model) or None, str(text_model) or None, int(dim) or None,
                        str(previous) or None, str(previous_model) or None, str(previous_text_model) or None,
                        float(switched_at))


class ActiveTables:
    """The active record and the table resolution (mixed into PhotoStore)."""

    connection: Connection
    layout: Layout
    database: str
    _info: dict[str, Any] | None
    _columns_checked: bool
    _rows_seen: tuple[float, int] | None

    def _init_active(self, base: str, pinned: str | None = None) -> None:
        sql.quote_identifier(base)
        sql.quote_identifier(active_table_name(base))
        self.base_table = base
        self._pinned = pinned
        self._active: ActiveRecord | None = None
        self._active_read_at = -math.inf
        self._bound: dict[str, Any] = {}
        self._bound_lock = threading.Lock()

    @property
    def table(self) -> str:
        """The table this client reads and writes now: its own when bound, else the active one."""
        return self._pinned or self.active_record().table

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    def active_record(self, fresh: bool = False) -> ActiveRecord:
        """The latest active record (re-read at most every RECHECK_S s, or now with `fresh`); the base table
        with no model when none was ever written. A change resets this client's per-table caches."""
        now = time.monotonic()
        if fresh or self._active is None or now - self._active_read_at > RECHECK_S:
            try:
                record = self._read_active()
            except StoreError:
                # The store is away: keep the table last seen; before any, the base table, not kept (every
                # call fails until the store is back, and then the record is read).
                if self._active is None:
                    return ActiveRecord(self.base_table)
                record = self._active
            if self._active is not None and record.table != self._active.table and self._pinned is None:
                self._info, self._columns_checked, self._rows_seen = None, False, None
            self._active, self._active_read_at = record, now
        return self._active

    def _read_active(self) -> ActiveRecord:
        try:
            rows = self.connection.read_rows("active table lookup", read_active_sql(self.database, self.base_table))
        except StoreError as error:
            if not is_unknown_table(error):
                raise
            rows = []
        return record_from_row(rows[0]) if rows else ActiveRecord(self.base_table)

    def record_active(self, record: ActiveRecord) -> ActiveRecord:
        """Append `record` as the active one: the switch, in one row. Returns it as stored."""
        sql.quote_identifier(record.table)
        name = active_table_name(self.base_table)
        for statement in self.layout.create_everywhere(create_active_sql(self.database, self.base_table),
                                                       self.database, name):
            self.connection.command("active table creation", statement)
        values = [record.table, record.model or "", record.text_model or "", int(record.dim or 0),
                  record.previous or "", record.previous_model or "", record.previous_text_model or ""]
        self.connection.insert("active table record", name, [[value] for value in values], list(_FIELDS),
                               ["String", "String", "String", "UInt32", "String", "String", "String"])
        return self.active_record(fresh=True)

    def for_table(self, name: str) -> Any:
        """A client of the same server bound to table `name` (sharing this one's connection), which ignores
        the active record; one per name, kept."""
        if name == self._pinned:
            return self
        sql.quote_identifier(name)
        with self._bound_lock:
            bound = self._bound.get(name)
            if bound is None:
                bound = copy.copy(self)
                bound._init_active(self.base_table, pinned=name)
                bound._info, bound._columns_checked, bound._rows_seen = None, False, None
                bound.__dict__.pop("_lexical_state", None)  # another table's word statistics
                self._bound[name] = bound
        return bound

    def missing_from(self, other: str) -> list[str]:
        """The photo ids of this client's table that table `other` lacks; all of them when `other` is absent."""
        try:
            rows = self.connection.read_rows("missing photo lookup", missing_ids_sql(self.database, self.table, other))
        except StoreError as error:
            if not is_unknown_table(error):
                raise
            return []
        return [row[0] for row in rows]

    def photos_by_id(self, photo_ids: list[str]) -> list[dict[str, Any]]:
        """The stored rows (every column but the vector) of these photos, those that are stored."""
        if not photo_ids:
            return []
        rows = self.connection.read_rows("photo lookup", photos_by_id_sql(self.database, self.table),
                                         {"photo_ids": list(dict.fromkeys(photo_ids))})
        return [dict(zip(PHOTO_COLUMNS, row)) for row in rows]

    def remove_rows(self, photo_ids: list[str]) -> None:
        """Delete these photos' vectors from this client's table only (thumbnails and files stay)."""
        if photo_ids:
            self.connection.command("delete", self.layout.on_rows(sql.delete_sql(self.database, self.table),
                                                                  self.database, self.table),
                                    {"photo_ids": list(photo_ids)})

    def drop_photo_table(self, name: str) -> None:
        """Drop a photo table of this library and its model record (never the active one)."""
        if name == self.active_record(fresh=True).table:
            raise ValueError(f"{name} is the active table; switch away from it before dropping it.")
        for table in (name, sql.meta_table_name(name)):
            statement = f"DROP TABLE IF EXISTS {sql.table_ref(self.database, table)}"
            if self.layout.cluster:
                statement += f" ON CLUSTER {sql.quote_identifier(self.layout.cluster)} SYNC"
            self.connection.command("table drop", statement)
        with self._bound_lock:
            self._bound.pop(name, None)
