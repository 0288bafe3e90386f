"""A fixed sample of the library's vectors, the same photos every time it is read.

The gateway turns a cosine similarity into "closer than this share of the library" (its relevance,
services/api/relevance.py) by comparing it with the query's similarities to a few thousand stored
vectors. The sample must not change from one read to the next while the table does not, or the same
query would score differently: the photos are the first `n` by a hash of their id, so a read is
deterministic and a new photo joins it only when its hash ranks it among the first.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from services.photostore.connection import is_unknown_table
from services.photostore.errors import StoreError
from services.photostore.sql import table_ref


def sample_sql(database: str, table: str) -> str:
    """The vectors of the first `n` photos by cityHash64(photo_id). FINAL folds a photo written twice
    (until a merge), so no photo counts twice."""
    return (f"SELECT photo_embed FROM {table_ref(database, table)} FINAL "
            "ORDER BY cityHash64(photo_id) LIMIT {n:UInt32}")


def vectors_sql(database: str, table: str) -> str:
    return (f"SELECT photo_id, photo_embed FROM {table_ref(database, table)} FINAL "
            "WHERE photo_id IN {photo_ids:Array(String)}")


def vectors_of(store: Any, photo_ids: list[str]) -> dict[str, np.ndarray]:
    """The stored vectors of some photos, by photo_id (one read; a photo not stored is absent): what the
    gateway computes the cosines of a word search's page with, when that search ran without the vector."""
    if not photo_ids:
        return {}
    rows = store.connection.read_rows("vectors lookup", vectors_sql(store.database, store.table),
                                      {"photo_ids": list(photo_ids)})
    return {str(photo_id): np.asarray(vector, dtype=np.float32) for photo_id, vector in rows}


def sample_vectors(store: Any, n: int) -> np.ndarray:
    """Up to `n` stored vectors as an (m, dim) float32 matrix, m <= n; (0, 0) with no table or no rows.
    `store` is a `PhotoStore` (its connection, database and table are used)."""
    if n <= 0:
        return np.zeros((0, 0), np.float32)
    try:
        rows = store.connection.read_rows("relevance sample", sample_sql(store.database, store.table), {"n": int(n)})
    except StoreError as error:
        if is_unknown_table(error):
            return np.zeros((0, 0), np.float32)
        raise
    if not rows:
        return np.zeros((0, 0), np.float32)
    return np.asarray([row[0] for row in rows], dtype=np.float32)
