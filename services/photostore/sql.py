"""Pure SQL builders for the photo table (unit-tested without a server).

Every value reaches the server as a bound parameter (`{name:Type}`) or a query setting; only
identifiers (validated against a strict pattern) and integers (the vector dimension) are written into
SQL text. What differs between servers (distance, index DDL, settings) is in `dialects`.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.schemas import METADATA_FIELDS
from services.photostore.columns import PHOTO_COLUMNS, column_type
from services.photostore.filters import filter_sql

if TYPE_CHECKING:
    from services.photostore.dialects import Dialect

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name or ""):
        raise ValueError(
            f"{name!r} is not a valid table or database name: use letters, digits and underscores, "
            "starting with a letter or underscore."
        )
    return f"`{name}`"


def table_ref(database: str, table: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


def check_dim(dim: Any) -> int:
    """The vector dimension as an int; it is written into DDL text, so nothing else passes."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < int(dim) <= 65536:
        raise ValueError(f"The vector dimension must be a positive integer, not {dim!r}.")
    return int(dim)


def meta_table_name(table: str) -> str:
    return f"{table}_meta"


def create_table_sql(database: str, table: str, dim: int) -> str:
    dim = check_dim(dim)
    columns = [
        "id UInt64",
        "photo_id String",
        "photo_image_url String",
        "photo_embed Array(Float32)",
        *(f"{name} {column_type(name)}" for name in METADATA_FIELDS),
        "inserted_at DateTime64(3) DEFAULT now64(3)",
        # `dim` is an int checked above; DDL cannot take bound parameters.
        f"CONSTRAINT vector_len CHECK length(photo_embed) = {dim}",
    ]
    body = ",\n    ".join(columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {table_ref(database, table)}\n(\n    {body}\n)\n"
        "ENGINE = ReplacingMergeTree(inserted_at)\nORDER BY photo_id"
    )


def create_meta_sql(database: str, table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table_ref(database, meta_table_name(table))}\n"
        "(\n    model String,\n    dim UInt32,\n    created_at DateTime64(3) DEFAULT now64(3)\n)\n"
        "ENGINE = MergeTree\nORDER BY created_at"
    )


def columns_sql() -> str:
    return "SELECT name FROM system.columns WHERE database = {db:String} AND table = {name:String}"


def add_column_sql(database: str, table: str, name: str) -> str:
    """`name` must be one of METADATA_FIELDS (identifiers cannot be bound; checked here)."""
    if name not in METADATA_FIELDS:
        raise ValueError(f"{name!r} is not a metadata column")
    return (f"ALTER TABLE {table_ref(database, table)} ADD COLUMN IF NOT EXISTS {quote_identifier(name)} "
            f"{column_type(name)}")


def table_exists_sql() -> str:
    return "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}"


def read_meta_sql(database: str, table: str) -> str:
    # The first record wins: if two processes raced to create the table, the later one sees the
    # earlier one's model and refuses, instead of both believing they own it.
    return f"SELECT model, dim FROM {table_ref(database, meta_table_name(table))} ORDER BY created_at LIMIT 1"


def search_sql(dialect: Dialect, database: str, table: str, *, filters: Mapping[str, Any] | None = None,
               exclude_photo_id: str | None = None, with_vector: bool = False,
               where: tuple[list[str], dict[str, Any]] | None = None) -> tuple[str, dict[str, Any]]:
    """SELECT of the nearest photos; returns (sql, params without `q` and `k`, which the caller binds).

    The shape is exactly `ORDER BY dist LIMIT k`, which is what vector indexes recognise: no FINAL
    (duplicates are folded by the caller), no tie-breaking column (ties are ordered by the caller), and
    `min_score` applied by the caller to the rows, which arrive best first. `where`: more conditions and
    their bound values, ANDed in (e.g. `lexical.exclusion_sql`).
    """
    conditions, params = filter_sql(filters)
    if exclude_photo_id is not None:
        conditions.append("photo_id != {exclude_photo_id:String}")
        params["exclude_photo_id"] = exclude_photo_id
    if where is not None:
        conditions.extend(where[0])
        params.update(where[1])
    distance = dialect.distance("photo_embed", "q")
    columns = [*PHOTO_COLUMNS, *(["photo_embed"] if with_vector else [])]
    sql = (
        f"SELECT {', '.join(columns)}, {distance} AS dist\n"
        f"FROM {table_ref(database, table)}\n"
        + (f"WHERE {' AND '.join(conditions)}\n" if conditions else "")
        + "ORDER BY dist ASC\nLIMIT {k:UInt32}"
    )
    return sql, params


def photo_sql(database: str, table: str, with_vector: bool = False) -> str:
    columns = ", ".join([*PHOTO_COLUMNS, *(["photo_embed"] if with_vector else [])])
    return f"SELECT {columns} FROM {table_ref(database, table)} FINAL WHERE photo_id = {{photo_id:String}} LIMIT 1"


def random_photo_sql(database: str, table: str, where: Sequence[str] = ()) -> str:
    """One photo drawn at random among those meeting `where` (from `filter_sql`; all when empty).
    A full scan; fine at tens of thousands of photos. Sampling by id range would be the next step at millions."""
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {', '.join(PHOTO_COLUMNS)} FROM {table_ref(database, table)} FINAL{condition} ORDER BY rand() LIMIT 1"


def data_version_sql() -> str:
    """The active parts of one table: their number, rows and a hash of their names. An insert adds a part, a
    lightweight delete (a mutation) renames every part it touches and a merge replaces parts, so the answer
    changes whenever the rows may have: what the gateway's result cache checks before reusing an answer."""
    return ("SELECT count(), sum(rows), groupBitXor(cityHash64(name)) FROM system.parts "
            "WHERE database = {db:String} AND table = {table:String} AND active")


def count_sql(database: str, table: str) -> str:
    return f"SELECT count() FROM {table_ref(database, table)} FINAL"


def row_count_sql(database: str, table: str) -> str:
    # Without FINAL: rows on disk, read from part metadata; what decides exact or indexed search.
    return f"SELECT count() FROM {table_ref(database, table)}"


def delete_sql(database: str, table: str) -> str:
    # A lightweight delete: rows vanish from every reader at once, the disk space goes at the next merge.
    return f"DELETE FROM {table_ref(database, table)} WHERE photo_id IN {{photo_ids:Array(String)}}"


def existing_ids_sql(database: str, table: str) -> str:
    # No FINAL: a duplicate row still proves the photo is stored, and DISTINCT folds it.
    return (f"SELECT DISTINCT photo_id FROM {table_ref(database, table)} "
            "WHERE photo_id IN {photo_ids:Array(String)}")


def facet_sql(database: str, table: str, column: str) -> str:
    """The most common values of one text column, with how many photos have each. `column` must be one
    of FACET_COLUMNS (checked by the caller: identifiers cannot be bound). uniqExact(photo_id) counts
    a photo once even before a merge folds its duplicate rows."""
    return (f"SELECT {column} AS value, uniqExact(photo_id) AS photos FROM {table_ref(database, table)} "
            f"WHERE {column} != '' GROUP BY {column} ORDER BY photos DESC, value LIMIT {{limit:UInt32}}")


def stable_id(photo_id: str) -> int:
    """A 64-bit id that depends only on photo_id, so re-ingesting a photo gives it the same id."""
    return int.from_bytes(hashlib.blake2b(photo_id.encode("utf-8"), digest_size=8).digest(), "big")
